"""TwiML for each decision of the consent gate, built with ``twilio``'s VoiceResponse."""

from __future__ import annotations

import functools

from twilio.twiml.voice_response import Gather, Start, VoiceResponse

from service.notices.library import Notice

PATH_CONSENT = "/telephony/twilio/consent"
PATH_RECORDING = "/telephony/twilio/recording"


def _say_or_play(target: VoiceResponse | Gather, notice: Notice, public_url: str) -> None:
    if notice.wav_sha256:
        target.play(public_url + notice.path)
    else:  # the rendered audio is missing: Twilio's own voice reads the same text
        target.say(
            notice.prompt.text, language=notice.prompt.language, voice=notice.prompt.say_voice
        )


@functools.lru_cache(maxsize=256)
def notice(notice: Notice, public_url: str, *, attempt: int, gather_timeout_s: int) -> str:
    """The same for every call of a policy, so built once (the cache key is all it depends on)."""
    response = VoiceResponse()
    if notice.prompt.mode == "implied":
        _say_or_play(response, notice, public_url)
        # Reaching the consent URL means the caller heard the whole notice and stayed.
        response.redirect(public_url + PATH_CONSENT, method="POST")
        return str(response)
    gather = Gather(
        num_digits=1,
        timeout=gather_timeout_s,
        action=f"{public_url}{PATH_CONSENT}?attempt={attempt}",
        method="POST",
        action_on_empty_result=False,
    )
    _say_or_play(gather, notice, public_url)
    response.append(gather)
    # Twilio falls through to the next verb when the caller presses nothing.
    response.redirect(f"{public_url}{PATH_CONSENT}?attempt={attempt}", method="POST")
    return str(response)


@functools.lru_cache(maxsize=256)
def record_then_continue(public_url: str, continue_url: str | None) -> str:
    response = VoiceResponse()
    start = Start()
    start.recording(
        recording_status_callback=public_url + PATH_RECORDING,
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
    )
    response.append(start)
    _continue(response, continue_url)
    return str(response)


def continue_without_recording(continue_url: str | None) -> str:
    response = VoiceResponse()
    _continue(response, continue_url)
    return str(response)


def _continue(response: VoiceResponse, continue_url: str | None) -> None:
    if continue_url:
        response.redirect(continue_url, method="POST")
    # Without a continue URL the document ends here and Twilio ends the call; `serve` warns.


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)
