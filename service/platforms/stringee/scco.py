"""SCCO answers (Stringee Call Control Object: a JSON array of actions run in order,
developer.stringee.com/docs/server/stringee-call-control-object) for the consent gate's steps.

- The notice: ``stream`` of the rendered notice's URL (Stringee: "send an audio file to a
  call"), ``play`` of a file uploaded to Stringee beforehand ("send an uploaded audio file"), or
  ``talk`` (Stringee's text-to-speech) where no file can be used. ``bargeIn`` is false, which
  makes the action synchronous: the whole notice plays before the next action starts, so what
  :meth:`Notice.heard` returns is what the caller heard in full if the call reached the input.
- Then ``input``: in explicit mode one key ("1" allows, "2" refuses; a timeout is silence, not
  consent); in implied mode a short input whose timeout alone tells us the caller stayed to the
  end of the notice. Stringee posts the result to the input's ``eventUrl`` and runs the SCCO
  that request answers.
- That answer is ``record`` (only when the caller consented) followed by the tenant's
  ``continue_scco``, or ``continue_scco`` alone. ``record`` comes first because Stringee records
  only what follows it and never a peer-to-peer call (stringeecom/server-samples
  answer_url/php/project_answer_url.php), which is why :func:`parse_continue_scco` refuses
  ``peerToPeerCall: true`` as well as any recording action of the tenant's own.

Field names and the fields used are listed with their sources in this folder's README.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from yarl import URL

from service.errors import BadRequest
from service.notices.library import Notice as PromptNotice
from service.platforms.stringee.hosts import safe_url

Scco = list[dict[str, Any]]

KNOWN_ACTIONS = frozenset({"connect", "record", "recordMessage", "talk", "play", "stream", "input"})
# a tenant's continue actions run after the consent step: recording there would bypass it
RECORDING_ACTIONS = frozenset({"record", "recordMessage"})
MAX_CONTINUE_ACTIONS = 32
# the voice Stringee's own sample speaks Vietnamese with (server-samples auto-call.php); keyed
# by the language's primary subtag
DEFAULT_TALK_VOICES = {"vi": "hn_male_xuantin_vdts_48k-hsmm"}


class NoticeKind(StrEnum):
    STREAM = "stream"  # an audio file by URL: callvault's rendered notice
    PLAY = "play"  # an audio file uploaded to Stringee, by its file name
    TALK = "talk"  # Stringee's text-to-speech


class RecordFormat(StrEnum):
    MP3 = "mp3"
    WAV = "wav"


@dataclass(frozen=True)
class Notice:
    """The recording notice as the caller will hear it.

    ``file`` is a URL (STREAM) or an uploaded file's name (PLAY); ``sha256`` is the audio's
    content hash (for PLAY, of the file the operator uploaded: callvault cannot read it back);
    ``text`` is what the audio says, or what TALK speaks."""

    kind: NoticeKind
    text: str
    file: str | None = None
    sha256: str | None = None
    voice: str | None = None
    speed: int = 0  # Stringee's talk speed; 0 is normal
    language: str | None = None

    def __post_init__(self) -> None:
        if self.kind is NoticeKind.TALK:
            if not self.text.strip():
                raise ValueError("a spoken notice needs its text")
        elif not self.file:
            raise ValueError(f"a {self.kind} notice needs a file")
        if self.kind is NoticeKind.STREAM and not safe_url(URL(self.file or "")):
            # Stringee fetches it over the internet: plain http would let anyone on the path
            # change what the caller hears while the ledger records our hash
            raise ValueError("the notice URL must be https")

    @property
    def talk_voice(self) -> str | None:
        """The voice ``talk`` speaks with: the one given, else Stringee's Vietnamese voice for
        a Vietnamese notice (``vi`` or ``vi-VN``), else Stringee's default (none sent)."""
        base = (self.language or "").split("-")[0].lower()
        return self.voice or DEFAULT_TALK_VOICES.get(base)

    def action(self) -> dict[str, Any]:
        common = {"bargeIn": False, "loop": 1}
        if self.kind is NoticeKind.TALK:
            voice = self.talk_voice
            spoken: dict[str, Any] = {"action": "talk", "text": self.text, "speed": self.speed}
            if voice:
                spoken["voice"] = voice
            return spoken | common
        return {"action": str(self.kind), "fileName": self.file} | common

    def heard(self) -> dict[str, str]:
        """What the ledger records as played: the action, and the file and its hash, or the
        text and voice Stringee spoke it with."""
        out = {"stringee_action": str(self.kind), "text": self.text}
        if self.kind is NoticeKind.TALK:
            if self.talk_voice:
                out["voice"] = self.talk_voice
            out["speed"] = str(self.speed)
        else:
            assert self.file is not None
            out["file"] = self.file
            if self.sha256:
                out["sha256"] = self.sha256
        if self.language:
            out["language"] = self.language
        return out


def notice_from_prompt(
    prompt_notice: PromptNotice,
    public_url: str,
    *,
    uploaded_file: str | None = None,
    voice: str | None = None,
) -> Notice:
    """The gate's notice for a call as Stringee will play it: ``play`` of the file the operator
    uploaded to Stringee when one is named, else ``stream`` of callvault's rendered WAV, else
    (no rendered audio) ``talk`` of the notice's text."""
    prompt = prompt_notice.prompt
    common: dict[str, Any] = {"text": prompt.text, "language": prompt.language}
    if uploaded_file and prompt_notice.wav_sha256:
        return Notice(
            NoticeKind.PLAY, file=uploaded_file, sha256=prompt_notice.wav_sha256, **common
        )
    if prompt_notice.wav_sha256:
        url = public_url.rstrip("/") + prompt_notice.path
        return Notice(NoticeKind.STREAM, file=url, sha256=prompt_notice.wav_sha256, **common)
    return Notice(NoticeKind.TALK, voice=voice, **common)


@dataclass(frozen=True)
class Ask:
    """The ``input`` after the notice. Explicit: one key within ``timeout_s``. Implied:
    ``explicit=False`` and a short timeout; its expiry means the caller stayed."""

    event_url: str
    explicit: bool
    timeout_s: int = 10
    custom_field: str | None = None  # echoed back by Stringee as ``customField``

    def __post_init__(self) -> None:
        if not 1 <= self.timeout_s <= 120:
            raise ValueError("the input timeout must be between 1 and 120 seconds")

    def action(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": "input",
            "eventUrl": self.event_url,
            "submitOnHash": False,
            # Stringee's own sample spells it `timeout`; see this folder's README.md
            "timeout": self.timeout_s,
            "maxDigits": 1,
        }
        if self.custom_field is not None:
            out["customField"] = self.custom_field
        return out


@dataclass(frozen=True)
class Record:
    event_url: str
    format: RecordFormat = RecordFormat.MP3
    stereo: bool = False

    def action(self) -> dict[str, Any]:
        return {
            "action": "record",
            "eventUrl": self.event_url,
            "format": str(self.format),
            "recordStereo": self.stereo,
        }


def notice_answer(notice: Notice, ask: Ask) -> Scco:
    """answer_url's SCCO when the caller is to be asked: the notice, then the input."""
    return [notice.action(), ask.action()]


def consented_answer(record: Record, continue_scco: Sequence[dict[str, Any]]) -> Scco:
    """The input eventUrl's answer once the caller consented: record, then continue."""
    return [record.action(), *(dict(a) for a in continue_scco)]


def unrecorded_answer(continue_scco: Sequence[dict[str, Any]]) -> Scco:
    """Refused, no input, never-record or a do-not-record caller: continue, no recording."""
    return [dict(a) for a in continue_scco]


def parse_continue_scco(value: object, *, where: str = "continue_scco") -> Scco:
    """A tenant's continue actions, checked: a non-empty JSON array of SCCO actions with no
    recording of their own and no peer-to-peer ``connect`` (which Stringee cannot record)."""
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{where} must be a non-empty JSON array of SCCO actions")
    if len(value) > MAX_CONTINUE_ACTIONS:
        raise BadRequest(f"{where} has more than {MAX_CONTINUE_ACTIONS} actions")
    actions: Scco = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{at} must be an object")
        action = item.get("action")
        if not isinstance(action, str) or action not in KNOWN_ACTIONS:
            raise BadRequest(f"{at}.action must be one of {', '.join(sorted(KNOWN_ACTIONS))}")
        if action in RECORDING_ACTIONS:
            raise BadRequest(
                f"{at} is a `{action}` action: callvault starts recording only after consent"
            )
        if action == "connect" and item.get("peerToPeerCall") in (True, "true"):
            raise BadRequest(
                f"{at}: peerToPeerCall true bypasses Stringee's media server, so a consented "
                "call could not be recorded; set it to false"
            )
        actions.append(dict(item))
    return actions
