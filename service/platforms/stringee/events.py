"""The four requests Stringee makes, parsed into typed events (after the signature is checked).

- :class:`AnswerRequest`: the GET to a number's (or project's) answer_url. Query fields from
  developer.stringee.com/docs/server/event-url-and-answer-url: ``from``, ``to``,
  ``fromInternal``, and ``uuid`` for a call from the phone network; ``userId``, ``projectId``,
  ``callId``, ``custom`` for one made from an app.
- :class:`CallEvent`: the project's event_url, JSON (docs/server/call-events): ``call_status``
  (created, started, ringing, answered, ended, agentEnded), ``call_id``, ``timestamp_ms``,
  ``from``/``to`` parties, and on ``ended`` ``endCallCause``, ``endedBy``, ``duration``,
  ``answerDuration``.
- :class:`InputEvent`: an ``input`` action's eventUrl, JSON as in Stringee's sample
  (stringeecom/server-samples auto-call/php/event_url_dtmf.php): ``dtmf``, ``call_id``, ``time``,
  ``timeout``, ``customField``.
- :class:`RecordEvent`: a ``record`` action's eventUrl. Stringee documents no payload for it, so
  the spellings seen in the wild are all accepted (see :data:`RECORDING_ID_FIELDS`) and a
  recording without its own id is fetched by its call id, which Stringee's download accepts.

Bad input is a :class:`service.errors.BadRequest` whose message names the field, never its value.
Unknown extra fields are ignored (Stringee adds fields over time); unknown ``call_status`` values
are kept as text so that a new status never turns a webhook into a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from service.errors import BadRequest
from service.web.untrusted import check_text, loads_json, parse_int

CODE = "bad_stringee_request"
# call-vn-1-ABCDWXKUQM-1542377678921, a uuid, a recording id: a path segment we may build a URL
# from, so no "/", "?", "%" or whitespace can get through
EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
MAX_TEXT = 1024  # numbers, aliases, custom data: anything longer is not a Stringee field
RECORDING_ID_FIELDS = ("recordId", "record_id", "recordingId", "recording_id", "id")
RECORDING_URL_FIELDS = ("recordUrl", "record_url", "recordingUrl", "recording_url", "url")
CALL_ID_FIELDS = ("call_id", "callId")


class CallStatus(StrEnum):
    CREATED = "created"
    STARTED = "started"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    AGENT_ENDED = "agentEnded"  # an agent's leg ended; the caller's call may go on


def _bad(message: str) -> BadRequest:
    return BadRequest(message, code=CODE)


def _text(value: object, name: str, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise _bad(f"`{name}` is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(f"`{name}` must be a string")
    text = check_text(str(value), f"`{name}`", code=CODE)
    if len(text) > MAX_TEXT:
        raise _bad(f"`{name}` is longer than {MAX_TEXT} characters")
    return text


def _external_id(value: object, name: str) -> str:
    text = _text(value, name, required=True)
    assert text is not None
    if not EXTERNAL_ID.match(text):
        raise _bad(f"`{name}` is not a Stringee id (letters, digits, '.', '_', ':', '-')")
    return text


def _bool(value: object, name: str, *, default: bool | None = None) -> bool:
    """JSON true/false, or the strings "true"/"false" (Stringee's query strings and some of its
    JSON spell booleans as text)."""
    if value is None or value == "":
        if default is None:
            raise _bad(f"`{name}` is missing")
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(f"`{name}` must be true or false")


def _int(value: object, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _bad(f"`{name}` must be an integer")
    if isinstance(value, int):
        number: int | None = value
    elif isinstance(value, str):
        number = parse_int(value.strip())
    else:
        number = None
    if number is None or not -(2**63) <= number < 2**63:
        raise _bad(f"`{name}` must be an integer")
    return number


def _first(data: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        if data.get(name) not in (None, ""):
            return name, data[name]
    return names[0], None


def _object(raw: bytes, what: str) -> dict[str, Any]:
    data = loads_json(raw)
    if not isinstance(data, dict):
        raise _bad(f"the {what} body must be a JSON object")
    return data


@dataclass(frozen=True)
class Party:
    number: str | None
    alias: str | None
    type: str | None  # "internal" (an app user) or "external" (a phone number)


def _party(value: object, name: str) -> Party | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(f"`{name}` must be an object with `number`")
    return Party(
        number=_text(value.get("number"), f"{name}.number"),
        alias=_text(value.get("alias"), f"{name}.alias"),
        type=_text(value.get("type"), f"{name}.type"),
    )


@dataclass(frozen=True)
class AnswerRequest:
    """answer_url's query. ``external_id`` is the id callvault keys the call on: ``callId``
    (app calls) or ``uuid`` (calls from the phone network). Whether that ``uuid`` equals the
    ``call_id`` of later event_url posts is not documented; see this folder's README.md."""

    from_: str | None  # None: the caller withheld their number
    to: str
    from_internal: bool
    call_id: str | None
    uuid: str | None
    user_id: str | None
    project_id: int | None
    custom: str | None

    @property
    def external_id(self) -> str:
        external = self.call_id or self.uuid
        assert external is not None  # parse_answer requires one of them
        return external


def parse_answer(query: Mapping[str, str]) -> AnswerRequest:
    """The answer_url GET's query parameters (already percent-decoded by the web framework)."""
    call_id = query.get("callId") or None
    uuid = query.get("uuid") or None
    if call_id is None and uuid is None:
        raise _bad("`callId` (app calls) or `uuid` (phone calls) is missing")
    to = _text(query.get("to"), "to", required=True)
    assert to is not None
    return AnswerRequest(
        # a withheld caller ID must not turn the call away: the notice is still played
        from_=_text(query.get("from"), "from"),
        to=to,
        from_internal=_bool(query.get("fromInternal"), "fromInternal", default=False),
        call_id=_external_id(call_id, "callId") if call_id else None,
        uuid=_external_id(uuid, "uuid") if uuid else None,
        user_id=_text(query.get("userId"), "userId"),
        project_id=_int(query.get("projectId"), "projectId"),
        custom=_text(query.get("custom"), "custom"),
    )


@dataclass(frozen=True)
class CallEvent:
    call_id: str
    status: CallStatus | None  # None: a status this code does not know; see raw_status
    raw_status: str
    timestamp_ms: int | None
    project_id: int | None
    account_sid: str | None
    from_: Party | None
    to: Party | None
    end_call_cause: str | None
    ended_by: str | None
    duration_s: int | None
    answer_duration_s: int | None

    @property
    def call_over(self) -> bool:
        """The caller's call has ended (``agentEnded`` is one agent leg, not the call)."""
        return self.status is CallStatus.ENDED


def parse_call_event(raw: bytes) -> CallEvent:
    data = _object(raw, "call event")
    raw_status = _text(data.get("call_status"), "call_status", required=True)
    assert raw_status is not None
    try:
        status: CallStatus | None = CallStatus(raw_status)
    except ValueError:
        status = None
    name, call_id = _first(data, CALL_ID_FIELDS)
    return CallEvent(
        call_id=_external_id(call_id, name),
        status=status,
        raw_status=raw_status,
        timestamp_ms=_int(data.get("timestamp_ms"), "timestamp_ms"),
        project_id=_int(data.get("project_id"), "project_id"),
        account_sid=_text(data.get("account_sid"), "account_sid"),
        from_=_party(data.get("from"), "from"),
        to=_party(data.get("to"), "to"),
        end_call_cause=_text(data.get("endCallCause"), "endCallCause"),
        ended_by=_text(data.get("endedBy"), "endedBy"),
        duration_s=_int(data.get("duration"), "duration"),
        answer_duration_s=_int(data.get("answerDuration"), "answerDuration"),
    )


@dataclass(frozen=True)
class InputEvent:
    """What the caller keyed during an ``input`` action. ``timed_out`` with no digits is silence,
    which is not consent."""

    call_id: str
    dtmf: str  # "" when nothing was pressed
    timed_out: bool
    time_ms: int | None
    custom_field: str | None

    @property
    def digit(self) -> str | None:
        """The first key pressed, or None."""
        return self.dtmf[0] if self.dtmf else None


DTMF = re.compile(r"^[0-9*#A-Da-d]{0,64}$")


def parse_input_event(raw: bytes) -> InputEvent:
    data = _object(raw, "input event")
    name, call_id = _first(data, CALL_ID_FIELDS)
    dtmf_name, dtmf_value = _first(data, ("dtmf", "digits"))
    dtmf = _text(dtmf_value, dtmf_name) or ""
    if not DTMF.match(dtmf):
        raise _bad(f"`{dtmf_name}` holds something other than keypad keys")
    return InputEvent(
        call_id=_external_id(call_id, name),
        dtmf=dtmf,
        timed_out=_bool(data.get("timeout"), "timeout", default=not dtmf),
        time_ms=_int(data.get("time"), "time"),
        custom_field=_text(data.get("customField"), "customField"),
    )


@dataclass(frozen=True)
class RecordEvent:
    call_id: str
    recording_id: str | None  # None: Stringee sent none; the media is fetched by call id
    recording_url: str | None  # kept for the record, never fetched (no SSRF)
    duration_s: int | None
    format: str | None

    @property
    def media_id(self) -> str:
        """The id for ``GET /v1/call/recording/{id}``."""
        return self.recording_id or self.call_id


def parse_record_event(raw: bytes) -> RecordEvent:
    data = _object(raw, "record event")
    name, call_id = _first(data, CALL_ID_FIELDS)
    id_name, recording_id = _first(data, RECORDING_ID_FIELDS)
    url_name, url = _first(data, RECORDING_URL_FIELDS)
    duration_name, duration = _first(data, ("duration", "recordDuration", "record_duration"))
    return RecordEvent(
        call_id=_external_id(call_id, name),
        recording_id=_external_id(recording_id, id_name) if recording_id is not None else None,
        recording_url=_text(url, url_name),
        duration_s=_int(duration, duration_name),
        format=_text(data.get("format"), "format"),
    )
