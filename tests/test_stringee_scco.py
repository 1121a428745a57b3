"""SCCO answers for each step of the consent gate, and the tenant's continue actions checked."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import BadRequest
from service.platforms.stringee import scco

NOTICE_URL = "https://cc.example.vn/prompts/notice-vi/3.wav"
SHA = "ab" * 32
CONNECT: dict[str, Any] = {
    "action": "connect",
    "from": {"type": "external", "number": "842473082686", "alias": "842473082686"},
    "to": {"type": "internal", "number": "agent_1", "alias": "agent_1"},
    "peerToPeerCall": False,
}


def notice(kind: scco.NoticeKind = scco.NoticeKind.STREAM, **kw: Any) -> scco.Notice:
    defaults: dict[str, Any] = {"text": "Cuộc gọi có thể được ghi âm.", "language": "vi"}
    if kind is not scco.NoticeKind.TALK:
        defaults |= {"file": NOTICE_URL, "sha256": SHA}
    return scco.Notice(kind=kind, **(defaults | kw))


def test_explicit_mode_plays_the_whole_notice_then_asks_for_one_key() -> None:
    ask = scco.Ask(event_url="https://cc.example.vn/telephony/stringee/input", explicit=True)
    answer = scco.notice_answer(notice(), ask)
    assert answer == [
        {"action": "stream", "fileName": NOTICE_URL, "bargeIn": False, "loop": 1},
        {
            "action": "input",
            "eventUrl": "https://cc.example.vn/telephony/stringee/input",
            "submitOnHash": False,
            "timeout": 10,
            "maxDigits": 1,
        },
    ]


def test_implied_mode_uses_a_short_input_whose_timeout_means_stayed() -> None:
    ask = scco.Ask(event_url="https://x.vn/in", explicit=False, timeout_s=1, custom_field="c-9")
    answer = scco.notice_answer(notice(), ask)
    assert answer[1]["timeout"] == 1 and answer[1]["customField"] == "c-9"


def test_talk_where_no_file_can_be_used_records_text_and_voice() -> None:
    spoken = notice(scco.NoticeKind.TALK)
    assert spoken.action() == {
        "action": "talk",
        "text": "Cuộc gọi có thể được ghi âm.",
        "speed": 0,
        "voice": "hn_male_xuantin_vdts_48k-hsmm",
        "bargeIn": False,
        "loop": 1,
    }
    assert spoken.heard() == {
        "stringee_action": "talk",
        "text": "Cuộc gọi có thể được ghi âm.",
        "voice": "hn_male_xuantin_vdts_48k-hsmm",
        "speed": "0",
        "language": "vi",
    }


def test_heard_names_the_file_and_its_hash() -> None:
    assert notice().heard() == {
        "stringee_action": "stream",
        "text": "Cuộc gọi có thể được ghi âm.",
        "file": NOTICE_URL,
        "sha256": SHA,
        "language": "vi",
    }
    uploaded = notice(scco.NoticeKind.PLAY, file="notice-vi-v3.wav")
    assert uploaded.action()["action"] == "play"
    assert uploaded.heard()["file"] == "notice-vi-v3.wav"


@pytest.mark.parametrize(
    "kw",
    [
        {"kind": scco.NoticeKind.STREAM, "file": "http://cc.example.vn/notice.wav"},
        {"kind": scco.NoticeKind.STREAM, "file": "https://user:pw@cc.example.vn/n.wav"},
        {"kind": scco.NoticeKind.PLAY, "file": None},
        {"kind": scco.NoticeKind.TALK, "text": "  "},
    ],
)
def test_unusable_notices_refused(kw: dict[str, Any]) -> None:
    kind = kw.pop("kind")
    with pytest.raises(ValueError):
        notice(kind, **kw)


def test_consent_starts_recording_before_the_continue_actions() -> None:
    record = scco.Record(event_url="https://cc.example.vn/telephony/stringee/recording")
    answer = scco.consented_answer(record, [CONNECT])
    assert answer == [
        {
            "action": "record",
            "eventUrl": "https://cc.example.vn/telephony/stringee/recording",
            "format": "mp3",
            "recordStereo": False,
        },
        CONNECT,
    ]
    assert scco.unrecorded_answer([CONNECT]) == [CONNECT]
    assert all(a["action"] != "record" for a in scco.unrecorded_answer([CONNECT]))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([], "non-empty"),
        ({"action": "connect"}, "non-empty JSON array"),
        (["connect"], "must be an object"),
        ([{"action": "dial"}], "must be one of"),
        ([{"action": "record", "eventUrl": "https://x"}], "only after consent"),
        ([CONNECT, {"action": "recordMessage"}], "continue_scco[1]"),
        ([CONNECT | {"peerToPeerCall": True}], "peerToPeerCall"),
        ([CONNECT] * 33, "more than 32"),
    ],
)
def test_bad_continue_scco(value: object, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        scco.parse_continue_scco(value)
    assert fragment in caught.value.message


@pytest.mark.parametrize("seconds", [0, 121])
def test_input_timeouts_out_of_range_refused(seconds: int) -> None:
    with pytest.raises(ValueError):
        scco.Ask(event_url="https://x.vn/in", explicit=True, timeout_s=seconds)


def test_good_continue_scco_is_copied_not_shared() -> None:
    parsed = scco.parse_continue_scco([CONNECT])
    assert parsed == [CONNECT]
    parsed[0]["timeout"] = 5
    assert "timeout" not in CONNECT


def test_the_gates_notice_as_stringee_plays_it() -> None:
    from prompts import catalogue
    from service.notices.library import Notice as PromptNotice

    prompt = catalogue.find("explicit", "vi-VN")
    rendered = PromptNotice(prompt, SHA)
    streamed = scco.notice_from_prompt(rendered, "https://cc.example.vn/")
    assert streamed.action()["fileName"] == (
        f"https://cc.example.vn/prompts/{prompt.id}/{prompt.version}.wav"
    )
    assert streamed.heard()["sha256"] == SHA and streamed.heard()["text"] == prompt.text
    uploaded = scco.notice_from_prompt(rendered, "https://x.vn", uploaded_file="consent-vi.wav")
    assert uploaded.action()["action"] == "play" and uploaded.heard()["sha256"] == SHA
    # no rendered audio: Stringee speaks the text, in its Vietnamese voice
    spoken = scco.notice_from_prompt(PromptNotice(prompt, None), "https://cc.example.vn")
    assert spoken.action()["action"] == "talk" and spoken.action()["text"] == prompt.text
    assert spoken.heard()["voice"] == "hn_male_xuantin_vdts_48k-hsmm"
    english = scco.notice_from_prompt(
        PromptNotice(catalogue.find("explicit", "en-US"), None), "https://cc.example.vn"
    )
    assert "voice" not in english.action()  # Stringee's default voice; none is guessed
