"""Pausing a call's recording for a card payment, and resuming it (issue 17, item 1).

Real PostgreSQL (the service as its row-level-security-bound role), the Twilio REST API faked
over HTTP as Twilio documents recording updates (tests/twilio_media.py), the PBX API as a PBX
would use it."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import auth, ledger, pauses
from service.config import Settings
from service.db import tenancy
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import ACCOUNT_SID, Service, free_port, run_cli
from tests.twilio_media import FakeTwilioMedia, new_recording_sid
from tests.waiting import eventually

Conn = asyncpg.Connection
CALLER = "+84901234678"
HOTLINE = "+842873001234"
CARD = {"reason": "card payment"}
PAUSED = {"Status": "paused", "PauseBehavior": "skip"}
RESUMED = {"Status": "in-progress"}
OTHER = "beta"


@pytest.fixture
async def service(settings: Settings, twilio_media: FakeTwilioMedia) -> AsyncIterator[Service]:
    svc = Service(replace(settings, twilio_api_url=twilio_media.base_url))
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
def clock(twilio_media: FakeTwilioMedia) -> list[float]:
    """The fake Twilio's clock, moved by the tests (no sleeping)."""
    now = [1000.0]
    twilio_media.clock = lambda: now[0]
    return now


async def _token(db: Conn, role: str, tenant: str = tenancy.DEFAULT) -> str:
    await tenancy.set_tenant(db, tenant)
    try:
        return (await auth.create_token(db, f"{role}-{tenant}-{secrets.token_hex(3)}", role, "t"))[
            0
        ]
    finally:
        await tenancy.set_tenant(db, tenancy.DEFAULT)


@pytest.fixture
async def desk(db: Conn) -> str:
    """The agent desktop's token: role telephony, tenant default."""
    return await _token(db, "telephony")


async def _api(
    http: aiohttp.ClientSession,
    service: Service,
    path: str,
    token: str | None,
    body: Any = CARD,
    *,
    method: str = "POST",
    raw: bytes | None = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw
    if body is not None and raw is None:
        data = json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with http.request(method, service.base_url + path, data=data, headers=headers) as r:
        text = await r.text()
        return r.status, json.loads(text) if r.content_type == "application/json" else text


async def _live_call(twilio: FakeTwilio, media: FakeTwilioMedia) -> str:
    """A consented Twilio call still going on, its recording in progress at Twilio."""
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"), send_status=False)
    assert trace.recording_started, trace.errors
    media.start_live(trace.call_sid)
    return trace.call_sid


async def _end(twilio: FakeTwilio, call_sid: str) -> None:
    params = twilio.call_params(call_sid, CALLER, HOTLINE, status="completed")
    params["CallDuration"] = "60"
    status, _ = await twilio.post(twilio.url("/telephony/twilio/status"), params)
    assert status < 300


async def _pause_events(db: Conn, call_sid: str) -> list[ledger.Event]:
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", call_sid)
    return [
        e
        for e in await ledger.events_of(db, call_id)
        if e.type in ("recording_paused", "recording_resumed")
    ]


def _pause(ref: str) -> str:
    return f"/api/calls/{ref}/recording/pause"


def _resume(ref: str) -> str:
    return f"/api/calls/{ref}/recording/resume"


async def test_pause_then_resume_reaches_twilio_as_documented_and_is_in_the_ledger(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    desk: str,
    clock: list[float],
    database_url: str,
) -> None:
    call_sid = await _live_call(twilio, twilio_media)
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", call_sid)
    clock[0] += 30  # 30 s of conversation before the card

    # by Twilio's CallSid
    status, body = await _api(http, service, _pause(call_sid), desk)
    assert status == 200, body
    assert body["paused"] is True and body["call_id"] == str(call_id)
    assert twilio_media.updates == [(ACCOUNT_SID, call_sid, "Twilio.CURRENT", PAUSED)]
    assert twilio_media.live[call_sid].status == "paused"

    clock[0] += 45  # the caller reads the card: left out of the recording
    # by callvault's id
    status, body = await _api(http, service, _resume(str(call_id)), desk, {"reason": "paid"})
    assert status == 200, body
    assert body["paused"] is False and body["paused_s"] >= 0
    assert twilio_media.updates[1:] == [(ACCOUNT_SID, call_sid, "Twilio.CURRENT", RESUMED)]
    assert len(twilio_media.updates) == 2 and twilio_media.unauthorised == 0

    clock[0] += 20
    _, duration = twilio_media.finish_live(call_sid)
    assert duration == 50  # 30 + 20: the 45 s paused with skip are not in the recording

    events = await _pause_events(db, call_sid)
    assert [e.type for e in events] == ["recording_paused", "recording_resumed"]
    name = await db.fetchval("SELECT name FROM api_tokens WHERE role = 'telephony'")
    actor = f"token:{name}"
    assert events[0].details == {
        "reason": "card payment",
        "actor": actor,
        "source": "api",
        "platform": "twilio",
    }
    assert events[1].details["reason"] == "paid" and events[1].details["actor"] == actor

    # the chains and seals still verify with the pause events in them
    result = await asyncio.to_thread(run_cli, database_url, "ledger", "verify")
    assert result.returncode == 0, result.stdout + result.stderr


async def test_409s_name_why_and_nothing_reaches_twilio_or_the_ledger(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    desk: str,
) -> None:
    # consent refused (hung up during the notice): not recording
    refused = await twilio.place_call(CALLER, HOTLINE, Caller.parse("hang-up"))
    status, body = await _api(http, service, _pause(refused.call_sid), desk)
    assert (status, body["error"]["code"]) == (409, "not_recording")

    call_sid = await _live_call(twilio, twilio_media)
    # resume what is not paused
    status, body = await _api(http, service, _resume(call_sid), desk)
    assert (status, body["error"]["code"]) == (409, "not_paused")
    assert twilio_media.updates == []

    # a pause, then a second pause
    assert (await _api(http, service, _pause(call_sid), desk))[0] == 200
    status, body = await _api(http, service, _pause(call_sid), desk)
    assert (status, body["error"]["code"]) == (409, "already_paused")
    assert len(twilio_media.updates) == 1

    # the call ended (paused): neither pause nor resume
    await _end(twilio, call_sid)
    for path in (_pause(call_sid), _resume(call_sid)):
        status, body = await _api(http, service, path, desk)
        assert (status, body["error"]["code"]) == (409, "call_ended")
    assert len(twilio_media.updates) == 1
    assert [e.type for e in await _pause_events(db, call_sid)] == ["recording_paused"]

    # consented, but Twilio has no recording in progress on the call (404 from Twilio)
    quiet = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"), send_status=False)
    status, body = await _api(http, service, _pause(quiet.call_sid), desk)
    assert (status, body["error"]["code"]) == (409, "no_recording_in_progress")
    assert twilio_media.updates[-1][1] == quiet.call_sid
    assert await _pause_events(db, quiet.call_sid) == []

    # a platform that cannot pause on request (Stringee: no such API)
    stringee_call = "call-vn-1-" + secrets.token_hex(5).upper()
    await db.execute(
        "INSERT INTO calls (platform, external_id, policy, outcome, outcome_at) "
        "VALUES ('stringee', $1, '{}', 'consented', now())",
        stringee_call,
    )
    status, body = await _api(http, service, _pause(stringee_call), desk)
    assert (status, body["error"]["code"]) == (409, "platform_cannot_pause")

    # unknown ids, bad bodies
    for ref in (
        "CA" + secrets.token_hex(16),
        "00000000-0000-0000-0000-000000000000",
        "x%00y",  # a NUL byte: PostgreSQL text cannot hold it (was a 500)
        "%C3%A9t%C3%A9",  # not ASCII
        "C" * 129,
    ):
        status, body = await _api(http, service, _pause(ref), desk)
        assert (status, body["error"]["code"]) == (404, "unknown_call")
    for raw in (b"{not json", b'{"reason": "   "}', b"{}", b'{"reason": 5}'):
        status, body = await _api(http, service, _pause(call_sid), desk, raw=raw)
        assert status == 400 and body["error"]["code"] in ("bad_json", "invalid_body"), body
    too_long = {"reason": "x" * 501}
    status, body = await _api(http, service, _pause(call_sid), desk, too_long)
    assert (status, body["error"]["code"]) == (400, "invalid_body")


async def test_two_pauses_at_once_one_succeeds_and_twilio_is_asked_once(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    desk: str,
) -> None:
    call_sid = await _live_call(twilio, twilio_media)
    results = await asyncio.gather(*(_api(http, service, _pause(call_sid), desk) for _ in range(4)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 409, 409, 409], results
    assert {b["error"]["code"] for s, b in results if s == 409} == {"already_paused"}
    assert len(twilio_media.updates) == 1
    assert [e.type for e in await _pause_events(db, call_sid)] == ["recording_paused"]


async def test_pauses_waiting_on_a_slow_twilio_hold_no_connection_and_a_new_call_records(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    desk: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More pauses in flight than the pool has connections (10), Twilio slow to answer: no
    pooled connection waits on Twilio (a new call's voice webhook still starts recording), at
    most PLATFORM_SLOTS ask Twilio at once and the rest are told 503 busy, not queued."""
    from service.pauses import api as pauses_api
    from service.platforms.twilio import media

    monkeypatch.setattr(media, "PAUSE_TIMEOUT_S", 120.0)  # slow, not failed, however slow CI is
    # nor is a transaction held across Twilio cut short by the work deadline while it is looked for
    await service.reconfigure(db_statement_timeout_s=300.0)
    calls = [await _live_call(twilio, twilio_media) for _ in range(12)]
    twilio_media.update_hold = hold = asyncio.Event()
    tasks = [asyncio.create_task(_api(http, service, _pause(c), desk)) for c in calls]
    try:

        async def at_twilio() -> bool:
            return len(twilio_media.updates) >= pauses_api.PLATFORM_SLOTS

        await eventually(at_twilio, what="as many pauses at Twilio as there are slots")

        # no connection is parked in a pause's transaction while Twilio thinks (the old code's
        # last statement there read the pause state or claimed the call). Sampled until it
        # holds: the pauses without a slot pass through their own short first transaction
        # meanwhile (idle in it between two statements on a loaded machine), while one held
        # across Twilio stays for as long as Twilio is held. Only the service's pool counts.
        async def no_pause_transaction_open() -> bool:
            return not await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'callvault' "
                "AND state LIKE 'idle in transaction%' "
                "AND (query LIKE '%recording_paused%' OR query LIKE '%pause_claims%')"
            )

        await eventually(no_pause_transaction_open, what="no pause's transaction open")
        # a new call comes in: its voice webhook gets a connection and recording starts
        trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"), send_status=False)
        assert trace.recording_started, trace.errors

        # the pauses beyond the slots give up waiting for one: busy, nothing asked or recorded
        waiting = len(calls) - pauses_api.PLATFORM_SLOTS

        async def turned_away() -> bool:
            return sum(t.done() for t in tasks) == waiting

        await eventually(turned_away, what="the pauses without a slot answered")
        assert len(twilio_media.updates) == pauses_api.PLATFORM_SLOTS
    finally:
        hold.set()
        twilio_media.update_hold = None
        results = await asyncio.gather(*tasks)
    answers = sorted((status, body.get("error", {}).get("code")) for status, body in results)
    assert answers == [(200, None)] * pauses_api.PLATFORM_SLOTS + [(503, "busy")] * waiting
    paused = [c for c, (status, _) in zip(calls, results, strict=True) if status == 200]
    assert sorted(u[1] for u in twilio_media.updates) == sorted(paused)
    for c in calls:
        expected = ["recording_paused"] if c in paused else []
        assert [e.type for e in await _pause_events(db, c)] == expected
    assert await db.fetchval("SELECT count(*) FROM pause_claims") == 0
    # one turned away pauses now: its 503 left no claim behind
    turned = next(c for c in calls if c not in paused)
    status, body = await _api(http, service, _pause(turned), desk)
    assert status == 200, body


async def test_roles_and_tenants(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    desk: str,
) -> None:
    call_sid = await _live_call(twilio, twilio_media)
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", call_sid)
    status, body = await _api(http, service, _pause(call_sid), None)
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, body = await _api(http, service, _pause(call_sid), "cv_" + "x" * 43)
    assert status == 401
    trainer = await _token(db, "qa_trainer")
    status, body = await _api(http, service, _pause(call_sid), trainer)
    assert (status, body["error"]["code"]) == (403, "forbidden")

    # another tenant's telephony token finds no such call, by either id
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", OTHER)
    theirs = await _token(db, "telephony", OTHER)
    for ref in (call_sid, str(call_id)):
        for path in (_pause(ref), _resume(ref)):
            status, body = await _api(http, service, path, theirs)
            assert (status, body["error"]["code"]) == (404, "unknown_call")
    assert twilio_media.updates == []
    assert await _pause_events(db, call_sid) == []
    # ... and the call's own tenant still can
    assert (await _api(http, service, _pause(call_sid), desk))[0] == 200


async def test_when_twilio_fails_nothing_claims_a_pause(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    desk: str,
) -> None:
    call_sid = await _live_call(twilio, twilio_media)
    twilio_media.updates_fail_with = 500
    status, body = await _api(http, service, _pause(call_sid), desk)
    assert (status, body["error"]["code"]) == (502, "platform_error")
    assert len(twilio_media.updates) == 1  # asked, and it failed
    assert twilio_media.live[call_sid].status == "in-progress"
    assert await _pause_events(db, call_sid) == []

    # Twilio out of reach: 503, to be retried, and still nothing in the ledger
    await service.reconfigure(twilio_api_url=f"http://127.0.0.1:{free_port()}")
    status, body = await _api(http, service, _pause(call_sid), desk)
    assert (status, body["error"]["code"]) == (503, "platform_unavailable")
    assert await _pause_events(db, call_sid) == []

    # back: the pause goes through, once
    await service.reconfigure(twilio_api_url=twilio_media.base_url)
    twilio_media.updates_fail_with = None
    status, body = await _api(http, service, _pause(call_sid), desk)
    assert status == 200, body
    assert [e.type for e in await _pause_events(db, call_sid)] == ["recording_paused"]


async def test_a_pause_never_resumed_shows_in_metrics_and_on_the_recording_in_qa(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    desk: str,
) -> None:
    resumed = await _live_call(twilio, twilio_media)
    left = await _live_call(twilio, twilio_media)
    for call_sid in (resumed, left):
        assert (await _api(http, service, _pause(call_sid), desk))[0] == 200
    assert (await _api(http, service, _resume(resumed), desk))[0] == 200
    for call_sid in (resumed, left):
        await _end(twilio, call_sid)
        # its recording, as intake records it (the pause is the call's, shown on the recording)
        await db.execute(
            "INSERT INTO recordings (call_id, platform, external_id) SELECT id, 'twilio', $2 "
            "FROM calls WHERE external_id = $1",
            call_sid,
            new_recording_sid(),
        )

    async with http.get(service.base_url + "/metrics") as r:
        text = await r.text()
    assert 'callvault_recordings_paused{call="ended",tenant="default"} 1.0' in text
    assert 'callvault_recordings_paused{call="in_progress",tenant="default"} 0.0' in text

    trainer = await _token(db, "qa_trainer")
    pauses = {}
    for call_sid in (resumed, left):
        status, found = await _api(
            http, service, f"/api/calls?external_id={call_sid}", trainer, None, method="GET"
        )
        assert status == 200
        call_id = found["items"][0]["id"]
        status, call = await _api(
            http, service, f"/api/calls/{call_id}", trainer, None, method="GET"
        )
        assert status == 200
        (recording,) = call["recordings"]
        pauses[call_sid] = recording["pauses"]
        # a trainer sees the pause events in the call's ledger too
        assert "recording_paused" in [e["type"] for e in call["events"]]
    (open_pause,) = pauses[left]
    assert open_pause["open"] is True and open_pause["resumed_at"] is None
    assert open_pause["reason"] == "card payment" and open_pause["offset_s"] >= 0
    (closed,) = pauses[resumed]
    assert closed["open"] is False and closed["resumed_at"] is not None
    assert closed["duration_s"] >= 0


async def test_a_pbx_reports_its_own_pause_and_the_api_cannot_pause_it(
    service: Service, http: aiohttp.ClientSession, db: Conn, desk: str
) -> None:
    call = "1733100000." + str(secrets.randbelow(10000))
    status, body = await _api(
        http,
        service,
        "/telephony/pbx/calls",
        desk,
        {"call_id": call, "from": CALLER, "to": HOTLINE},
    )
    assert status == 200, body
    base = f"/telephony/pbx/calls/{call}"
    status, body = await _api(http, service, base + "/consent", desk, {"stayed": True})
    assert status == 200 and body["record"] is True

    # the agent desktop cannot make callvault pause a PBX's recording: the PBX does it
    status, body = await _api(http, service, _pause(call), desk)
    assert (status, body["error"]["code"]) == (409, "platform_cannot_pause")

    status, body = await _api(http, service, base + "/pause", desk, {"reason": "PauseMonitor"})
    assert status == 200 and body["paused"] is True, body
    status, body = await _api(http, service, base + "/pause", desk, {"reason": "PauseMonitor"})
    assert (status, body["error"]["code"]) == (409, "already_paused")
    status, body = await _api(http, service, base + "/resume", desk, {"reason": "UnpauseMonitor"})
    assert status == 200 and body["paused"] is False
    status, body = await _api(http, service, base + "/resume", desk, {"reason": "again"})
    assert (status, body["error"]["code"]) == (409, "not_paused")
    for bad in ({}, {"reason": ""}, {"reason": "x", "extra": 1}):
        status, body = await _api(http, service, base + "/pause", desk, bad)
        assert (status, body["error"]["code"]) == (400, "invalid_body")
    status, body = await _api(http, service, "/telephony/pbx/calls/nope/pause", desk)
    assert (status, body["error"]["code"]) == (404, "unknown_call")

    events = await _pause_events(db, call)
    assert [(e.type, e.details["source"], e.details["reason"]) for e in events] == [
        ("recording_paused", "pbx", "PauseMonitor"),
        ("recording_resumed", "pbx", "UnpauseMonitor"),
    ]


async def test_the_asterisk_recipe_reports_a_pause_and_its_resume(
    service: Service, http: aiohttp.ClientSession, db: Conn, desk: str, tmp_path: Path
) -> None:
    from tests.test_pbx import FakeAsterisk, _script_env

    call = "1733100001." + str(secrets.randbelow(10000))
    start = {"call_id": call, "from": CALLER, "to": HOTLINE}
    assert (await _api(http, service, "/telephony/pbx/calls", desk, start))[0] == 200
    path = f"/telephony/pbx/calls/{call}/consent"
    assert (await _api(http, service, path, desk, {"stayed": True}))[1]["record"] is True
    token_file = tmp_path / "callvault.token"
    token_file.write_text(desk + "\n")
    asterisk = FakeAsterisk(_script_env(service.base_url, token_file, tmp_path), tmp_path)

    # Gosub(callvault-pause,s,1(card payment)), then callvault-resume
    assert await asterisk.run(call, "pause", "card payment") == 0
    assert asterisk.variables == {"CALLVAULT_PAUSED": "1"}
    assert await asterisk.run(call, "pause", "card payment") == 0  # 409: logged, nothing set
    assert asterisk.variables == {"CALLVAULT_PAUSED": "1"}
    assert await asterisk.run(call, "resume", "card taken") == 0
    assert asterisk.variables == {"CALLVAULT_PAUSED": "0"}
    events = await _pause_events(db, call)
    assert [(e.type, e.details["reason"]) for e in events] == [
        ("recording_paused", "card payment"),
        ("recording_resumed", "card taken"),
    ]


def test_spans_place_each_gap_in_the_audio_skipping_earlier_pauses() -> None:
    t0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    events = [
        {"type": "consent_given", "at": at(0), "details": {}},
        {"type": "recording_paused", "at": at(30), "details": {"reason": "card"}},
        {"type": "recording_resumed", "at": at(75), "details": {"reason": "done"}},
        {"type": "recording_paused", "at": at(100), "details": {"reason": "card again"}},
    ]
    first, second = pauses.spans(events)
    assert (first["offset_s"], first["duration_s"], first["open"]) == (30.0, 45.0, False)
    assert first["resumed_at"] == at(75).isoformat() and first["reason"] == "card"
    # 100 s after consent, 45 of them skipped: 55 s into the audio; never resumed
    assert (second["offset_s"], second["duration_s"], second["open"]) == (55.0, None, True)
    assert second["resumed_at"] is None
    assert pauses.spans(events[:1]) == []
