"""A stand-in for Twilio's voice platform: places a call against callvault as Twilio would.

It sends the documented webhook parameters, signs every request with the account's auth token
(Twilio's algorithm, via ``twilio``'s RequestValidator), and follows the TwiML it gets back:
``<Play>`` URLs are fetched and decoded as audio, ``<Gather>`` collects the digits the simulated
caller presses (or falls through on silence), ``<Redirect>`` to callvault is followed, a redirect
elsewhere is the contact centre taking the call over, and the call ends with a status callback.
``callvault simulate`` uses it for demos and smoke tests; the test suite drives it as the
platform, including duplicated, reordered and forged callbacks.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from twilio.request_validator import RequestValidator

from prompts.audio import pydub
from service.personal.numbers import mask_phone


@dataclass(frozen=True)
class Caller:
    """What the simulated caller does: ``keys`` are pressed at successive ``<Gather>`` prompts
    (None = stays silent); ``hang_up_during_notice`` ends the call while the notice plays."""

    keys: tuple[str | None, ...] = ()
    hang_up_during_notice: bool = False

    @classmethod
    def parse(cls, behaviour: str) -> Caller:
        if behaviour == "stay":
            return cls()
        if behaviour == "hang-up":
            return cls(hang_up_during_notice=True)
        if behaviour == "silent":
            return cls(keys=(None, None, None, None))
        if behaviour.startswith("press-"):
            keys = tuple(None if k == "none" else k for k in behaviour[6:].split(","))
            if all(k is None or (len(k) == 1 and k in "0123456789*#") for k in keys):
                return cls(keys=keys)
        raise ValueError(
            f"unknown behaviour {behaviour!r}: use stay, hang-up, silent or press-1 (press-9,1 ...)"
        )


@dataclass(frozen=True)
class PlayedAudio:
    url: str
    sha256: str
    duration_ms: int
    frame_rate: int
    channels: int
    dbfs: float


@dataclass
class CallTrace:
    call_sid: str
    hang_up_on_notice: bool = False
    steps: list[str] = field(default_factory=list)
    played: list[PlayedAudio] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    gathers: int = 0
    recording_callback: str | None = None
    continued_to: str | None = None
    hung_up: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def recording_started(self) -> bool:
        return self.recording_callback is not None


def decode_audio(body: bytes, fmt: str) -> tuple[int, int, int, float]:
    """(duration ms, frame rate, channels, dBFS) of WAV (μ-law or PCM) or MP3 bytes."""
    AudioSegment = pydub()
    if fmt == "mp3":
        segment = AudioSegment.from_file(io.BytesIO(body), format="mp3", codec="mp3")
    else:
        segment = AudioSegment.from_file(io.BytesIO(body), format="wav", codec="pcm_mulaw")
    return len(segment), segment.frame_rate, segment.channels, float(segment.dBFS)


async def fetch_audio(
    session: aiohttp.ClientSession, url: str, fetch_from: str | None = None
) -> PlayedAudio:
    """Fetch a notice as the platform plays it, decoded as a caller would hear it."""
    async with session.get(fetch_from or url) as resp:
        resp.raise_for_status()
        body = await resp.read()
    fmt = "mp3" if urlsplit(url).path.endswith(".mp3") else "wav"
    loop = asyncio.get_running_loop()
    duration, rate, channels, dbfs = await loop.run_in_executor(None, decode_audio, body, fmt)
    return PlayedAudio(url, hashlib.sha256(body).hexdigest(), duration, rate, channels, dbfs)


class FakeTwilio:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        public_url: str,
        *,
        account_sid: str,
        auth_token: str,
        send_to: str | None = None,
    ) -> None:
        """``public_url`` is what callvault was configured with and what signatures cover;
        ``send_to`` (if given) is where requests for it actually go, as through a proxy."""
        self.session = session
        self.public_url = public_url.rstrip("/")
        self.send_to = send_to.rstrip("/") if send_to else None
        self.account_sid = account_sid
        self.validator = RequestValidator(auth_token)
        # Twilio's Direction per call placed: inbound, or outbound-api / outbound-dial
        self._directions: dict[str, str] = {}

    def url(self, path: str) -> str:
        return self.public_url + path

    def _wire(self, url: str) -> str:
        if self.send_to and url.startswith(self.public_url):
            return self.send_to + url[len(self.public_url) :]
        return url

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        return str(self.validator.compute_signature(url, dict(params)))

    def call_params(
        self, call_sid: str, caller: str, called: str, status: str = "in-progress"
    ) -> dict[str, str]:
        """The parameters Twilio sends with every voice request. On an outbound call (placed
        through the REST API) ``From`` is the contact centre's caller id and ``To`` the person."""
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "CallStatus": status,
            "Called": called,
            "Caller": caller,
            "Direction": self._directions.get(call_sid, "inbound"),
            "From": caller,
            "FromCountry": "VN",
            "To": called,
            "ToCountry": "VN",
        }

    async def post(
        self, url: str, params: Mapping[str, str], *, signature: str | None = None
    ) -> tuple[int, str]:
        """POST a webhook signed as Twilio signs it (or with ``signature`` given, for forgeries)."""
        sig = self.sign(url, params) if signature is None else signature
        headers = {"X-Twilio-Signature": sig} if sig else {}
        async with self.session.post(self._wire(url), data=dict(params), headers=headers) as resp:
            return resp.status, await resp.text()

    async def fetch_audio(self, url: str) -> PlayedAudio:
        return await fetch_audio(self.session, url, self._wire(url))

    async def place_call(
        self,
        caller: str,
        called: str,
        behaviour: Caller,
        *,
        call_sid: str | None = None,
        voice_path: str = "/telephony/twilio/voice",
        send_status: bool = True,
        max_requests: int = 20,
        direction: str = "inbound",
    ) -> CallTrace:
        """``direction`` ``outbound-api``: the contact centre (``caller``) called the person
        (``called``) through the REST API; Twilio requests the voice URL when they answer."""
        sid = call_sid or "CA" + secrets.token_hex(16)
        self._directions[sid] = direction
        trace = CallTrace(sid, hang_up_on_notice=behaviour.hang_up_during_notice)
        keys = list(behaviour.keys)
        url: str | None = self.url(voice_path)
        inbound = direction == "inbound"
        params = self.call_params(
            sid, caller, called, status="ringing" if inbound else "in-progress"
        )
        shown = (mask_phone(caller), called) if inbound else (caller, mask_phone(called))
        trace.steps.append(f"{direction} call {sid} from {shown[0]} to {shown[1]}")
        requests = 0
        while url is not None and not trace.hung_up and requests < max_requests:
            requests += 1
            status, body = await self.post(url, params)
            trace.steps.append(f"-> POST {urlsplit(url).path}{_query(url)}: HTTP {status}")
            if status != 200:
                trace.errors.append(f"{url}: HTTP {status}: {body[:200]}")
                break
            url, params = await self._run_twiml(body, trace, keys, sid, caller, called)
        if send_status:
            end = self.call_params(sid, caller, called, status="completed")
            end.update(
                {
                    "CallDuration": "15",
                    "CallbackSource": "call-progress-events",
                    "SequenceNumber": "0",
                }
            )
            status, body = await self.post(self.url("/telephony/twilio/status"), end)
            trace.steps.append(f"-> POST /telephony/twilio/status (completed): HTTP {status}")
            if status >= 300:
                trace.errors.append(f"status callback: HTTP {status}: {body[:200]}")
        return trace

    async def _run_twiml(
        self,
        body: str,
        trace: CallTrace,
        keys: list[str | None],
        sid: str,
        caller: str,
        called: str,
    ) -> tuple[str | None, dict[str, str]]:
        """Execute one TwiML document; returns the next callvault URL to request, if any."""
        root = ET.fromstring(body)  # noqa: S314 - the document comes from the server under test
        if root.tag != "Response":
            trace.errors.append(f"TwiML root is <{root.tag}>, not <Response>")
            return None, {}
        params = self.call_params(sid, caller, called)
        for verb in root:
            if verb.tag in ("Play", "Say"):
                await self._hear(verb, trace)
                if trace.hung_up:
                    return None, {}
            elif verb.tag == "Gather":
                trace.gathers += 1
                for child in verb:
                    await self._hear(child, trace)
                    if trace.hung_up:
                        return None, {}
                digit = keys.pop(0) if keys else None
                if digit is not None:
                    trace.steps.append(f"   caller presses {digit}")
                    action = verb.get("action") or ""
                    return action, {**params, "Digits": digit, "FinishedOnKey": ""}
                trace.steps.append("   caller presses nothing; Gather times out")
            elif verb.tag == "Redirect":
                target = (verb.text or "").strip()
                if target.startswith(self.public_url + "/"):
                    trace.steps.append(f"<- Redirect {urlsplit(target).path}{_query(target)}")
                    return target, params
                trace.continued_to = target
                trace.steps.append(f"<- Redirect {target}: the contact centre takes the call")
                return None, {}
            elif verb.tag == "Start":
                for child in verb:
                    if child.tag == "Recording":
                        trace.recording_callback = child.get("recordingStatusCallback")
                        trace.steps.append("<- Start Recording: the call is being recorded")
            elif verb.tag == "Hangup":
                trace.steps.append("<- Hangup")
                trace.hung_up = True
                return None, {}
            else:
                trace.errors.append(f"unexpected TwiML verb <{verb.tag}>")
        trace.steps.append("   end of TwiML: the call ends")
        return None, {}

    async def _hear(self, verb: ET.Element, trace: CallTrace) -> None:
        if verb.tag == "Play":
            played = await self.fetch_audio((verb.text or "").strip())
            trace.played.append(played)
            trace.steps.append(
                f"<- Play {urlsplit(played.url).path}: {played.duration_ms / 1000:.1f} s, "
                f"{played.frame_rate} Hz, {played.channels} channel(s), sha256 {played.sha256[:12]}"
            )
        elif verb.tag == "Say":
            language, voice = verb.get("language"), verb.get("voice")
            # Twilio: a voice and language that do not go together fail the <Say>
            if (
                voice
                and voice.startswith("Google.")
                and not voice.startswith(f"Google.{language}-")
            ):
                trace.errors.append(f"<Say> voice {voice} does not speak {language}")
            trace.said.append(verb.text or "")
            trace.steps.append(f"<- Say ({language}, {voice or 'default voice'}): {verb.text}")
        if trace.hang_up_on_notice:
            trace.hung_up = True
            trace.steps.append("   caller hangs up during the notice")


def _query(url: str) -> str:
    query = urlsplit(url).query
    return f"?{query}" if query else ""


def summary(trace: CallTrace) -> str:
    if trace.errors:
        return "errors: " + "; ".join(trace.errors)
    if trace.recording_started:
        return "consent given: recording started"
    if trace.hung_up:
        return "caller hung up before any consent step: not recorded"
    return "not recorded" + (f"; continued to {trace.continued_to}" if trace.continued_to else "")
