"""The four Stringee requests parse into typed events; bad ones are a 400 naming the field."""

from __future__ import annotations

import json

import pytest
from multidict import MultiDict

from service.errors import BadRequest
from service.platforms.stringee import events
from tests.stringee_fake import call_event


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_answer_from_an_app_call_as_documented() -> None:
    # docs/server/event-url-and-answer-url, 1.1 App-to-app, App-to-phone
    parsed = events.parse_answer(
        MultiDict(
            {
                "from": "84899199866",
                "to": "84909988668",
                "fromInternal": "true",
                "userId": "huydn",
                "projectId": "25",
                "custom": "custom",
                "callId": "call-vn-1-ABCDWXKXYZ-1542377678717",
            }
        )
    )
    assert parsed.external_id == "call-vn-1-ABCDWXKXYZ-1542377678717"
    assert parsed.from_internal is True
    assert (parsed.from_, parsed.to, parsed.user_id, parsed.project_id, parsed.custom) == (
        "84899199866",
        "84909988668",
        "huydn",
        25,
        "custom",
    )


def test_answer_from_the_phone_network_is_keyed_on_uuid() -> None:
    # docs 1.2 Phone-to-app: from, to, uuid, fromInternal=false
    parsed = events.parse_answer(
        MultiDict(
            {
                "from": "84909986668",
                "to": "84899199866",
                "uuid": "890ccbe2-f9a6-11e7-be7b-b7890f26c79d",
                "fromInternal": "false",
            }
        )
    )
    assert parsed.external_id == "890ccbe2-f9a6-11e7-be7b-b7890f26c79d"
    assert parsed.call_id is None and parsed.from_internal is False


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ({"from": "1", "to": "2"}, "callId"),
        ({"from": "1", "to": "2", "uuid": "../../etc"}, "uuid"),
        ({"from": "1", "uuid": "u1"}, "to"),
        ({"from": "1", "to": "2", "uuid": "u1", "fromInternal": "maybe"}, "fromInternal"),
        ({"from": "1", "to": "2", "uuid": "u1", "projectId": "²"}, "projectId"),
        ({"from": "1\x00", "to": "2", "uuid": "u1"}, "from"),
        ({"from": "1" * 2000, "to": "2", "uuid": "u1"}, "from"),
    ],
)
def test_bad_answer_queries(query: dict[str, str], names: str) -> None:
    with pytest.raises(BadRequest) as caught:
        events.parse_answer(MultiDict(query))
    assert caught.value.code == "bad_stringee_request"
    assert names in caught.value.message
    assert "\x00" not in caught.value.message and "1111111" not in caught.value.message


def test_a_withheld_caller_id_is_still_answered() -> None:
    parsed = events.parse_answer(MultiDict({"from": "", "to": "842473082686", "uuid": "u1"}))
    assert parsed.from_ is None and parsed.to == "842473082686"


def test_call_events_as_documented() -> None:
    ended = events.parse_call_event(body(call_event("call-vn-1-ZD3IDIXS1J-1515820305478", "ended")))
    assert ended.status is events.CallStatus.ENDED and ended.call_over
    assert (ended.end_call_cause, ended.ended_by, ended.answer_duration_s) == (
        "USER_END_CALL",
        "EXTERNAL",
        7,
    )
    assert ended.from_ is not None and ended.from_.type == "external"
    ringing = events.parse_call_event(body(call_event("call-vn-1-X", "ringing")))
    assert ringing.status is events.CallStatus.RINGING and not ringing.call_over
    agent = events.parse_call_event(body(call_event("call-vn-1-X", "agentEnded")))
    assert agent.status is events.CallStatus.AGENT_ENDED and not agent.call_over


def test_an_unknown_status_is_kept_not_refused() -> None:
    parsed = events.parse_call_event(body(call_event("call-vn-1-X", "connect_failed")))
    assert parsed.status is None and parsed.raw_status == "connect_failed"
    assert not parsed.call_over


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (body({"call_id": "call-vn-1-X"}), "call_status"),
        (body({"call_status": "ended"}), "call_id"),
        (body({"call_status": "ended", "call_id": "a/b"}), "call_id"),
        (body({"call_status": "ended", "call_id": "c1", "duration": "9s"}), "duration"),
        (body({"call_status": "ended", "call_id": "c1", "from": "84909"}), "from"),
        (body({"call_status": ["ended"], "call_id": "c1"}), "call_status"),
        (b'{"call_status": "ended", "call_status": "ringing", "call_id": "c1"}', "twice"),
    ],
)
def test_bad_call_events(raw: bytes, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        events.parse_call_event(raw)
    assert fragment in caught.value.message


def test_input_event_from_stringees_sample() -> None:
    # server-samples auto-call/php/event_url_dtmf.php
    raw = (
        b'{"time":"1530870073736","dtmf":"0","call_id":"call-vn-1-Y8JUX5TVSZ-1530721745779",'
        b'"customField":"","timeout":false}'
    )
    parsed = events.parse_input_event(raw)
    assert (parsed.digit, parsed.timed_out, parsed.time_ms) == ("0", False, 1530870073736)
    assert parsed.call_id == "call-vn-1-Y8JUX5TVSZ-1530721745779"


def test_silence_is_a_timeout_with_no_digit() -> None:
    parsed = events.parse_input_event(body({"call_id": "c1", "dtmf": "", "timeout": True}))
    assert parsed.digit is None and parsed.timed_out
    # timeout spelled as text, or left out with no digits: still silence
    assert events.parse_input_event(
        body({"call_id": "c1", "dtmf": "", "timeout": "true"})
    ).timed_out
    assert events.parse_input_event(body({"call_id": "c1"})).timed_out


@pytest.mark.parametrize(
    "payload",
    [
        {"call_id": "c1", "dtmf": "1; DROP TABLE"},
        {"call_id": "c1", "dtmf": 1.5},
        {"dtmf": "1"},
        {"call_id": "c1", "dtmf": "1", "timeout": "soon"},
    ],
)
def test_bad_input_events(payload: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        events.parse_input_event(body(payload))


@pytest.mark.parametrize(
    ("payload", "media_id", "recording_id"),
    [
        ({"call_id": "call-vn-1-A"}, "call-vn-1-A", None),
        ({"call_id": "call-vn-1-A", "recordId": "rec-1"}, "rec-1", "rec-1"),
        ({"callId": "call-vn-1-A", "record_id": "rec-2"}, "rec-2", "rec-2"),
        ({"call_id": "call-vn-1-A", "recording_id": "rec-3", "duration": "12"}, "rec-3", "rec-3"),
    ],
)
def test_record_event_spellings(
    payload: dict[str, str], media_id: str, recording_id: str | None
) -> None:
    parsed = events.parse_record_event(body(payload))
    assert parsed.media_id == media_id and parsed.recording_id == recording_id


def test_record_event_url_is_kept_but_its_id_must_be_safe() -> None:
    parsed = events.parse_record_event(
        body({"call_id": "c1", "recordUrl": "https://evil.example/x"})
    )
    assert parsed.recording_url == "https://evil.example/x" and parsed.media_id == "c1"
    with pytest.raises(BadRequest) as caught:
        events.parse_record_event(body({"call_id": "c1", "recordId": "../../v1/account"}))
    assert "recordId" in caught.value.message
