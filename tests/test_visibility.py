"""Who sees what in a call's ledger: QA trainers and the data subject's access bundle see the
consent story and the recording's life, never the controller's casework (legal holds, other
data-subject requests, who played a recording and why); compliance sees everything, verifiable.
Checked on the raw JSON text, so a secret cannot hide in an unexpected field."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.config import Settings
from service.ledger import Event
from service.ledger.visibility import Audience, Viewer, view
from service.personal.numbers import PhoneVault
from service.storage.s3 import S3Store
from tests.conftest import SECRET_KEY, Service
from tests.intake_helpers import settle
from tests.qa_fixtures import access_bundle, call_api
from tests.seed import seed_recording

VAULT = PhoneVault(SECRET_KEY)
PERSON = "+84905550177"
HOLD_REASON = "subpoena 2026/55, do not disclose to the subject"
CASE_REF = "CASE-SECRET-4242"
THEIR_REASON = "internal fraud review of this agent"
OWN_REASON = "coaching: greeting"
Conn = asyncpg.Connection


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(replace(intake_settings, purge_interval_s=3600))
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def store(intake_settings: Settings) -> AsyncIterator[S3Store]:
    s = S3Store(
        intake_settings.s3_bucket or "", endpoint_url=intake_settings.s3_endpoint_url, region="x"
    )
    yield s
    await s.close()


async def _casework(
    http: aiohttp.ClientSession,
    service: Service,
    tokens: dict[str, str],
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> dict[str, str]:
    """A recorded call with everything a controller does to it: playbacks by compliance and by
    the trainer, a legal hold with a reason and case reference, and an earlier access request."""
    rec = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    rec_id, call_id = str(rec["recording_id"]), str(rec["call_id"])
    for role, reason in (("compliance", THEIR_REASON), ("qa_trainer", OWN_REASON)):
        status, _ = await call_api(
            http,
            service,
            "POST",
            f"/api/recordings/{rec_id}/playback",
            tokens[role],
            {"reason": reason},
        )
        assert status == 200
    status, _ = await call_api(
        http,
        service,
        "POST",
        "/api/holds",
        tokens["compliance"],
        {"phone": PERSON, "reason": HOLD_REASON, "case_ref": CASE_REF},
    )
    assert status == 201
    status, earlier = await call_api(
        http,
        service,
        "POST",
        "/api/dsar",
        tokens["compliance"],
        {"kind": "access", "phone": PERSON},
    )
    assert status == 201
    await settle(db)
    return {"call_id": call_id, "recording_id": rec_id, "earlier_request": earlier["id"]}


def _assert_no_casework(text: str, *, earlier_request: str) -> None:
    for secret in (
        HOLD_REASON,
        CASE_REF,
        "hold_placed",
        THEIR_REASON,
        "token:compliance",
        earlier_request,
    ):
        assert secret not in text, secret


async def test_qa_trainer_sees_the_consent_story_and_compliance_sees_everything(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> None:
    made = await _casework(http, service, tokens, db, store, tmp_path)
    path = f"{service.base_url}/api/calls/{made['call_id']}"

    async def raw(role: str) -> str:
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        async with http.get(path, headers=headers) as resp:
            assert resp.status == 200
            return await resp.text()

    trainer_text = await raw("qa_trainer")
    _assert_no_casework(trainer_text, earlier_request=made["earlier_request"])
    for hidden_type in ("dsar_received", "subject_access"):
        assert hidden_type not in trainer_text
    trainer = json.loads(trainer_text)
    types = [e["type"] for e in trainer["events"]]
    assert types[:2] == ["call_started", "recording_stored"]
    assert types.count("accessed") == 2  # both playbacks are shown to have happened ...
    theirs, own = [e for e in trainer["events"] if e["type"] == "accessed"]
    assert theirs["redacted"] == ["actor", "reason"] and "actor" not in theirs["details"]
    assert own["details"]["reason"] == OWN_REASON  # ... and the trainer's own in full
    # hold_placed, dsar_received and subject_access were withheld, and the answer says so
    assert trainer["events_withheld"] == 3

    compliance_text = await raw("compliance")
    for secret in (HOLD_REASON, CASE_REF, THEIR_REASON, "token:compliance", "dsar_received"):
        assert secret in compliance_text
    full = json.loads(compliance_text)
    assert full["events_withheld"] == 0
    assert len(full["events"]) == len(trainer["events"]) + 3
    # what compliance sees is the ledger itself: every hash recomputes
    report = await ledger.verify(db, uuid.UUID(made["call_id"]))
    assert report.ok and report.events == len(full["events"])
    stored = {e.seq: e.hash.hex() for e in await ledger.events_of(db, uuid.UUID(made["call_id"]))}
    assert {e["seq"]: e["hash"] for e in full["events"]} == stored


async def test_access_bundle_carries_the_consent_story_not_the_casework(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> None:
    made = await _casework(http, service, tokens, db, store, tmp_path)
    req, bundle = await access_bundle(http, service, tokens["compliance"], PERSON, db)
    text = bundle.read("calls.json").decode("utf-8")
    _assert_no_casework(text, earlier_request=made["earlier_request"])
    assert OWN_REASON not in text and "token:" not in text  # no staff's names or reasons
    (call,) = json.loads(text)
    events = call["consent_events"]
    assert [e["type"] for e in events] == [
        "call_started",
        "recording_stored",
        "accessed",
        "accessed",
        "dsar_received",  # this request's own receipt, nothing of the earlier one
    ]
    assert events[-1]["details"]["request_id"] == req["id"]
    # no position in the chain, so nothing shows that events were left out
    assert all("seq" not in e and "prev_hash" not in e for e in events)
    assert "withheld" not in text


def _event(type_: str, details: dict[str, object]) -> Event:
    return Event(uuid.uuid4(), 1, type_, datetime.now(UTC), details, None, bytes(32), bytes(32))


def test_unknown_event_types_are_for_compliance_only() -> None:
    events = [
        _event("call_started", {"called": "+842873001234"}),
        _event("something_new", {"note": "n"}),
        _event("erased", {"request_id": "r1", "phone_data": "destroyed"}),
    ]
    assert len(view(events, Viewer(Audience.COMPLIANCE)).events) == 3
    for viewer in (Viewer.for_role("qa_trainer", "token:a"), Viewer.subject("r2")):
        seen = view(events, viewer)
        assert [e["type"] for e in seen.events] == ["call_started", "erased"]
        assert seen.withheld == 1
        assert seen.events[1]["details"] == {"phone_data": "destroyed"}  # no link to a request
    # an unknown role sees least; admin sees as compliance
    assert view(events, Viewer.for_role("telephony", "token:t")).withheld == 1
    assert view(events, Viewer.for_role("admin", "token:x")).withheld == 0


def test_pauses_are_part_of_the_recordings_life_without_the_actor_for_the_subject() -> None:
    details = {"reason": "card payment", "actor": "token:desk-7", "source": "api"}
    events = [_event("recording_paused", details), _event("recording_resumed", details)]
    trainer = view(events, Viewer.for_role("qa_trainer", "token:a"))
    assert trainer.withheld == 0 and trainer.events[0]["details"] == details
    subject = view(events, Viewer.subject("r1"))
    assert [e["details"] for e in subject.events] == [
        {"reason": "card payment", "source": "api"}
    ] * 2
    assert subject.events[0]["redacted"] == ["actor"]
