"""What the voice webhook keeps from one call to the next instead of rebuilding it: the ledger
pieces of its constant events, the policy's JSON, the notice. Each must be exactly what would
have been built for the call."""

from __future__ import annotations

import json

import pytest

from service.config import Policy
from service.consent import gate
from service.db.pool import JsonText, json_dumps
from service.ledger import NewEvent, opening_piece, opening_pieces
from service.notices.library import PromptLibrary

STARTED = NewEvent(
    "call_started", {"platform": "twilio", "called": "+842873001234"}, "call_started"
)


def test_kept_pieces_are_what_the_events_give() -> None:
    notice = PromptLibrary({}).notice("implied", "vi-VN")
    events = [
        STARTED,
        NewEvent("notice_played", notice.ledger_details(1), dedupe_key="notice_played:1"),
        NewEvent("not_asked", {"reason": "do_not_record_list"}, dedupe_key="outcome"),
        NewEvent("not_asked", {"reason": "policy_never_record"}, dedupe_key="outcome"),
    ]
    kept = [STARTED, gate._first_notice(notice), *gate._NOT_ASKED]
    assert opening_pieces(kept) == opening_pieces(events)


def test_a_piece_is_only_taken_at_its_own_position() -> None:
    with pytest.raises(AssertionError):
        opening_pieces([opening_piece(STARTED, 2)])


def test_policy_json_is_what_the_codec_would_write() -> None:
    policy = Policy(continue_url="https://contact-centre.example.vn/next", queue="sales")
    text = gate._policy_json(policy)
    assert text == json.dumps(policy.as_json())
    assert gate._policy_json(policy) is text  # kept for the same policy
    assert json_dumps(text) == text  # sent as the JSON it is
    assert json.loads(json_dumps(policy.as_json())) == policy.as_json()
    # an equal policy that is another object is written for itself
    other = Policy(continue_url="https://contact-centre.example.vn/next", queue="sales")
    assert gate._policy_json(other) == text
    assert json_dumps(str(text)) == json.dumps(str(text))  # a plain str stays a JSON string
    assert type(text) is JsonText


def test_the_notice_is_kept_per_mode_and_language() -> None:
    library = PromptLibrary({})
    assert library.notice("explicit", "vi-VN") is library.notice("explicit", "vi-VN")
    assert library.notice("implied", "vi-VN") != library.notice("explicit", "vi-VN")
