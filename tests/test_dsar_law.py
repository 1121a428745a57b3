"""Data-subject requests under Law 91/2025/QH15 and Decree 356/2025 (issue 15 items 1-2),
through the API, the CLI and the module, on real PostgreSQL (whose clock is "now") and moto's
S3: the five kinds, the deadlines a tenant's policy sets, acknowledge / extend / reject / lift,
a restriction that stops playback and export, corrections, the list of what is due, and bad
input that changes nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sys
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from cryptography.exceptions import InvalidTag

from retention import clock, dsar
from retention.purge import dry_run_report, purge_once
from service.api import compliance
from service.config import Settings
from service.db import tenancy
from service.db.pool import create_pool
from service.errors import CallvaultError
from service.personal.numbers import PhoneVault
from service.storage.s3 import S3Store
from service.web.context import POOL
from tests.conftest import SECRET_KEY, Service, db_url, run_cli
from tests.intake_helpers import settle
from tests.qa_fixtures import call_api, tokens  # noqa: F401 (a fixture)
from tests.seed import seed_recording
from tests.waiting import eventually

VAULT = PhoneVault(SECRET_KEY)
PERSON = "+84905550123"
OTHER = "+84905550999"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
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
        intake_settings.s3_bucket or "",
        endpoint_url=intake_settings.s3_endpoint_url,
        region="us-east-1",
    )
    yield s
    await s.close()


async def _snapshot(db: Conn) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    return (
        await db.fetch("SELECT * FROM dsar_requests ORDER BY id"),
        await db.fetchval("SELECT count(*) FROM audit_log"),
        await db.fetchval("SELECT count(*) FROM ledger_events"),
        await db.fetchval("SELECT count(*) FROM jobs"),
        await db.fetch("SELECT id, caller_hash FROM calls ORDER BY id"),
    )


async def _post(
    http: aiohttp.ClientSession, service: Service, token: str, path: str, body: Any = None
) -> tuple[int, Any]:
    return await call_api(http, service, "POST", path, token, body)


# --- the clock, by the API -------------------------------------------------------------------


async def test_an_emailed_request_gets_deadlines_from_its_received_at_around_tet_2026(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],  # noqa: F811
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    # the access request is another caller's: the erasure below may already be carried out
    # when it is logged, and an erased number's access request finds no calls (404)
    await seed_recording(db, store, VAULT, tmp_path, caller=OTHER, expired=False)
    # Thu 12 Feb 2026, 15:00 in Ho Chi Minh City. Tết 2026: Mon 16 - Fri 20 Feb. Working days
    # after the day of receipt: Fri 13 (1st), then Mon 23 (2nd). 12 Feb + 15 = Fri 27 Feb.
    status, req = await _post(
        http,
        service,
        tokens["compliance"],
        "/api/dsar",
        {"kind": "erase", "phone": PERSON, "received_at": "2026-02-12T15:00:00+07:00"},
    )
    assert status == 201, req
    assert req["received_at"] == "2026-02-12T08:00:00+00:00"
    assert req["acknowledge_by"] == "2026-02-23T17:00:00+00:00"  # 24:00 on 23 Feb, +07:00
    assert req["due_at"] == "2026-02-27T17:00:00+00:00"
    assert req["clock"]["time_zone"] == "Asia/Ho_Chi_Minh"
    assert req["clock"]["days_for_this_kind"] == 15 and req["clock"]["processor"] is False
    assert req["clock"]["holidays"].startswith("holidays ")
    # the database's clock says these are long past; the request shows it
    assert req["overdue"] == {"acknowledge": True, "complete": True}
    assert req["time_left"]["complete_s"] < 0

    # 30 April 2026 is a Thursday, 1 May a Friday: Wed 15 Apr + 15 = Thu 30 Apr, rolled over
    # 1, 2, 3 May to Mon 4 May. Acknowledge: Thu 16, Fri 17 Apr.
    status, req = await _post(
        http,
        service,
        tokens["compliance"],
        "/api/dsar",
        {"kind": "access", "phone": OTHER, "received_at": "2026-04-15T09:00:00+07:00"},
    )
    assert status == 201, req
    assert req["acknowledge_by"] == "2026-04-17T17:00:00+00:00"
    assert req["due_at"] == "2026-05-04T17:00:00+00:00"


async def test_a_tenant_policy_sets_a_processors_20_days_and_its_own_days_off(
    db: Conn, store: S3Store, tmp_path: Path
) -> None:
    await db.execute(
        "INSERT INTO tenants (id, name, policy) VALUES ('acme', 'ACME', $1)",
        {"processor": True, "days_off": ["2026-11-23"], "time_zone": "Asia/Ho_Chi_Minh"},
    )
    await tenancy.set_tenant(db, "acme")
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    # Fri 20 Nov 2026. Working days: Mon 23 is acme's day off, Tue 24 is Vietnam Cultural Day,
    # so Wed 25 (1st) and Thu 26 (2nd). 20 Nov + 20 (a processor) = Thu 10 Dec.
    received = dt.datetime(2026, 11, 20, 9, 0, tzinfo=HCM)
    rid = await dsar.create(
        db, VAULT, kind="erase", phone=PERSON, actor="test", received_at=received
    )
    row = await db.fetchrow("SELECT * FROM dsar_requests WHERE id = $1", rid)
    assert row["tenant_id"] == "acme"
    assert row["acknowledge_by"] == dt.datetime(2026, 11, 27, tzinfo=HCM)
    assert row["due_at"] == dt.datetime(2026, 12, 11, tzinfo=HCM)
    # the tenant default (no processor, no day off) would have said Wed 25 Nov and Mon 7 Dec
    # (20 Nov + 15 = Sat 5 Dec, rolled to Mon 7)
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    rid = await dsar.create(
        db, VAULT, kind="erase", phone=PERSON, actor="test", received_at=received
    )
    row = await db.fetchrow("SELECT * FROM dsar_requests WHERE id = $1", rid)
    assert row["acknowledge_by"] == dt.datetime(2026, 11, 26, tzinfo=HCM)
    assert row["due_at"] == dt.datetime(2026, 12, 8, tzinfo=HCM)


# --- acknowledge, extend, reject -------------------------------------------------------------


async def test_acknowledge_once_then_extend_once_with_a_reason(
    db: Conn, store: S3Store, tmp_path: Path
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    rid = await dsar.create(db, VAULT, kind="erase", phone=PERSON, actor="test")
    shown = dsar.request_json(await dsar.get(db, rid))
    assert shown["status"] == "received" and shown["overdue"]["acknowledge"] is False
    assert 0 < shown["time_left"]["acknowledge_s"] <= shown["time_left"]["complete_s"]
    await dsar.acknowledge(db, rid, "dpo")
    shown = dsar.request_json(await dsar.get(db, rid))
    assert shown["status"] == "acknowledged" and shown["acknowledged_at"] is not None
    assert shown["time_left"]["acknowledge_s"] is None  # that clock has stopped
    before = await _snapshot(db)
    with pytest.raises(CallvaultError) as again:
        await dsar.acknowledge(db, rid, "dpo")
    assert again.value.code == "already_acknowledged" and await _snapshot(db) == before

    due = (await dsar.get(db, rid))["due_at"]
    new_due = await dsar.extend(db, rid, "dpo", days=15, reason="restoring archive")
    assert new_due - due >= dt.timedelta(days=15)  # more if the 15th day is not a working day
    shown = dsar.request_json(await dsar.get(db, rid))
    assert shown["extension"]["days"] == 15 and shown["extension"]["reason"] == "restoring archive"
    assert shown["extension"]["due_before"] == due.isoformat()
    assert shown["due_at"] == new_due.isoformat()
    before = await _snapshot(db)
    with pytest.raises(CallvaultError) as second:
        await dsar.extend(db, rid, "dpo", days=1, reason="once more")
    assert second.value.code == "already_extended" and second.value.status == 409
    assert await _snapshot(db) == before

    await dsar.reject(db, rid, "dpo", reason="identity not verified")
    shown = dsar.request_json(await dsar.get(db, rid))
    assert shown["status"] == "rejected" and shown["rejected_reason"] == "identity not verified"
    assert shown["time_left"] == {"acknowledge_s": None, "complete_s": None}
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    for action in ("dsar_received", "dsar_acknowledged", "dsar_extended", "dsar_rejected"):
        assert action in actions


async def test_an_action_on_a_request_takes_one_pool_connection(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> None:
    # the answer is read on the action's own connection: a second one, asked for while the
    # pool may be at its limit, could keep an applied action from being answered
    assert service.server is not None
    pool = service.server.app[POOL]
    here = str(Path(compliance.__file__))
    taken = 0
    acquire = asyncpg.Pool.acquire

    def counting(self: asyncpg.Pool, *args: Any, **kwargs: Any) -> Any:
        nonlocal taken
        frame = sys._getframe(1)
        if self is pool and frame.f_code.co_filename == here:  # not the worker's or auth's
            taken += 1
        return acquire(self, *args, **kwargs)

    token = tokens["compliance"]
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    status, made = await _post(
        http, service, token, "/api/dsar", {"kind": "access", "phone": PERSON}
    )
    assert status == 201
    monkeypatch.setattr(asyncpg.Pool, "acquire", counting)
    status, acknowledged = await _post(http, service, token, f"/api/dsar/{made['id']}/acknowledge")
    assert (status, acknowledged["status"], taken) == (200, "acknowledged", 1)
    status, extended = await _post(
        http, service, token, f"/api/dsar/{made['id']}/extend", {"days": 3, "reason": "volume"}
    )
    assert (status, extended["extension"]["reason"], taken) == (200, "volume", 2)


async def test_bad_extensions_and_requests_are_refused_and_change_nothing(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],  # noqa: F811
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> None:
    token = tokens["compliance"]
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    # a request received long ago: its deadline has passed, so it can no longer be extended
    status, late = await _post(
        http,
        service,
        token,
        "/api/dsar",
        {"kind": "restrict", "phone": PERSON, "received_at": "2026-01-05T09:00:00+07:00"},
    )
    assert status == 201
    # restrictions are in force at once and their deadlines stop: make it an open request
    await db.execute("UPDATE dsar_requests SET status = 'received' WHERE id = $1", late["id"])
    status, fresh = await _post(
        http, service, token, "/api/dsar", {"kind": "restrict", "phone": PERSON}
    )
    assert status == 201
    await db.execute("UPDATE dsar_requests SET status = 'received' WHERE id = $1", fresh["id"])
    status, in_force = await _post(
        http, service, token, "/api/dsar", {"kind": "restrict", "phone": PERSON}
    )
    assert status == 201 and in_force["status"] == "in_force"
    now = await db.fetchval("SELECT now()")
    future = (now + dt.timedelta(hours=2)).isoformat()
    # the body's schema refuses what it can (invalid_body); the service the rest
    cases: list[tuple[str, Any, int, str]] = [
        (f"/api/dsar/{late['id']}/extend", {"days": 5, "reason": "r"}, 409, "deadline_in_past"),
        (f"/api/dsar/{fresh['id']}/extend", {"days": 16, "reason": "r"}, 400, "invalid_body"),
        (f"/api/dsar/{fresh['id']}/extend", {"days": 0, "reason": "r"}, 400, "invalid_body"),
        (f"/api/dsar/{fresh['id']}/extend", {"days": 3, "reason": " "}, 400, "invalid_body"),
        (f"/api/dsar/{fresh['id']}/extend", {"days": 3}, 400, "invalid_body"),
        (f"/api/dsar/{fresh['id']}/reject", {}, 400, "invalid_body"),
        (f"/api/dsar/{in_force['id']}/reject", {"reason": "r"}, 409, "restriction_in_force"),
        (f"/api/dsar/{fresh['id']}/lift", None, 409, "request_closed"),
        ("/api/dsar", {"kind": "forget", "phone": PERSON}, 400, "invalid_body"),
        ("/api/dsar", {"kind": "erase", "phone": OTHER}, 404, "no_calls"),
        ("/api/dsar", {"kind": "access", "phone": PERSON, "received_at": future}, 400,
         "received_in_future"),
        ("/api/dsar", {"kind": "access", "phone": PERSON, "received_at": "0001-01-02T00:00:00Z"},
         400, "received_before_law"),
        ("/api/dsar", {"kind": "access", "phone": PERSON,
                       "received_at": "2025-12-31T23:59:59+07:00"}, 400, "received_before_law"),
        ("/api/dsar", {"kind": "access", "phone": PERSON, "received_at": "2026-01-05T09:00"},
         400, "invalid_body|bad_received_at"),
        ("/api/dsar", {"kind": "correct", "phone": PERSON, "statement": "x"}, 400,
         "bad_request"),
        ("/api/dsar", {"kind": "erase", "phone": PERSON, "unlink": True}, 400, "bad_request"),
        ("/api/dsar/00000000-0000-0000-0000-000000000000/acknowledge", None, 404, "not_found"),
    ]  # fmt: skip
    for path, body, want_status, want_code in cases:
        before = await _snapshot(db)
        status, answer = await _post(http, service, token, path, body)
        assert status == want_status, (path, body, answer)
        assert answer["error"]["code"] in want_code.split("|"), (path, body, answer)
        assert answer["error"]["message"], (path, body)
        assert await _snapshot(db) == before, (path, body)

    # a tenant whose policy allows 10 days of extension: 12 is refused by the policy's limit
    await db.execute(
        "INSERT INTO tenants (id, name, policy) VALUES ('acme', 'ACME', $1)",
        {"deadlines": {"extension": 10 * 86400}},
    )
    await tenancy.set_tenant(db, "acme")
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    rid = await dsar.create(db, VAULT, kind="access", phone=PERSON, actor="test")
    before = await _snapshot(db)
    with pytest.raises(CallvaultError) as refused:
        await dsar.extend(db, rid, "dpo", days=12, reason="archive")
    assert refused.value.code == "extension_too_long" and "1 to 10 days" in refused.value.message
    assert await _snapshot(db) == before


async def test_the_erased_numbers_second_request_is_told_where_its_calls_went(
    db: Conn, store: S3Store, tmp_path: Path
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    rid = await dsar.create(db, VAULT, kind="erase", phone=PERSON, actor="test")
    assert await dsar.run(db, VAULT, store, rid, tmp_path, retry_s=1) == "completed"
    with pytest.raises(CallvaultError) as gone:
        await dsar.create(db, VAULT, kind="access", phone=PERSON, actor="test")
    assert gone.value.code == "no_calls" and str(rid) in gone.value.message
    # withdrawing needs no call: never being recorded again is the point
    wid = await dsar.create(db, VAULT, kind="withdraw", phone=OTHER, actor="test")
    assert await dsar.run(db, VAULT, store, wid, tmp_path, retry_s=1) == "completed"
    assert await db.fetchval(
        "SELECT count(*) FROM do_not_record WHERE phone_hash = $1", VAULT.lookup_hash(OTHER)
    )


async def test_a_second_runner_of_an_access_request_keeps_the_bundle_the_first_completed(
    db: Conn, store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI runs an access request here and now while the dsar job runs it too: the one that
    read the request before the other completed it must leave the completed bundle as it is
    (it builds none of its own: the request is closed when it would announce its upload)."""
    mine = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    rid = await dsar.create(db, VAULT, kind="access", phone=PERSON, actor="test")
    before = dict(await dsar.get(db, rid))  # what the slower runner read
    assert await dsar.run(db, VAULT, store, rid, tmp_path, retry_s=1) == "completed"

    async def stale(conn: Any, request_id: Any) -> Any:
        return before

    monkeypatch.setattr(dsar, "get", stale)
    assert await dsar.run(db, VAULT, store, rid, tmp_path, retry_s=1) == "completed"
    monkeypatch.undo()
    row = await dsar.get(db, rid)
    out = tmp_path / "bundle.zip"
    await store.download_to(row["bundle_key"], out)
    with zipfile.ZipFile(out) as zf:
        assert zf.read(f"audio/{mine['recording_id']}.wav") == mine["body"]


# --- restrict --------------------------------------------------------------------------------


async def test_a_restriction_keeps_recordings_but_stops_playback_and_export_until_lifted(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],  # noqa: F811
    db: Conn,
    store: S3Store,
    tmp_path: Path,
    intake_settings: Settings,
) -> None:
    mine = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=True)
    theirs = await seed_recording(db, store, VAULT, tmp_path, caller=OTHER, expired=False)
    status, access = await _post(
        http, service, tokens["compliance"], "/api/dsar", {"kind": "access", "phone": PERSON}
    )
    await settle(db)
    # links handed out before the restriction
    play = f"/api/recordings/{mine['recording_id']}/playback"
    bundle = f"/api/dsar/{access['id']}/bundle"
    early = [
        (await _post(http, service, tokens["qa_trainer"], play, {"reason": "coaching"}))[1],
        (await _post(http, service, tokens["compliance"], bundle))[1],
    ]
    status, restriction = await _post(
        http, service, tokens["compliance"], "/api/dsar", {"kind": "restrict", "phone": PERSON}
    )
    assert status == 201 and restriction["status"] == "in_force"
    status, twice = await _post(
        http, service, tokens["compliance"], "/api/dsar", {"kind": "restrict", "phone": PERSON}
    )
    assert (status, twice["error"]["code"]) == (409, "already_restricted")
    assert restriction["id"] in twice["error"]["message"]
    for link in early:  # they open nothing now
        async with http.get(_local(service, link)) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "restricted"
    assert restriction["time_left"]["complete_s"] is None  # carried out: no deadline runs

    for role in ("qa_trainer", "compliance"):
        status, refused = await _post(http, service, tokens[role], play, {"reason": "coaching"})
        assert (status, refused["error"]["code"]) == (403, "restricted"), refused
    status, _ = await _post(
        http,
        service,
        tokens["qa_trainer"],
        f"/api/recordings/{theirs['recording_id']}/playback",
        {"reason": "coaching"},
    )
    assert status == 200  # someone else's call is not restricted
    status, refused = await _post(http, service, tokens["compliance"], bundle)
    assert (status, refused["error"]["code"]) == (403, "restricted")
    # the refused attempts left no playback in the ledger (the one before the restriction did)
    played = await db.fetchval(
        "SELECT count(*) FROM ledger_events WHERE call_id = $1 AND type = 'accessed'",
        mine["call_id"],
    )
    assert played == 1
    # kept: its retention has ended, but the purge leaves it while the restriction is in force
    pool = await create_pool(intake_settings.database_url or "", min_size=1, max_size=2)
    try:
        with tenancy.as_tenant(tenancy.DEFAULT):
            report = await purge_once(pool, store)
        assert report.purged == 0 and not report.failed
        assert await store.head(mine["key"]) is not None
        state = await db.fetchval(
            "SELECT state FROM recordings WHERE id = $1", mine["recording_id"]
        )
        assert state == "stored"
        with tenancy.as_tenant(tenancy.DEFAULT):
            async with pool.acquire() as conn:
                dry = await dry_run_report(conn)
        assert any(
            line.startswith(str(mine["recording_id"])) and "restriction" in line for line in dry
        )
        types = [
            r["type"]
            for r in await db.fetch(
                "SELECT type FROM ledger_events WHERE call_id = $1 ORDER BY seq", mine["call_id"]
            )
        ]
        assert "processing_restricted" in types

        status, lifted = await _post(
            http, service, tokens["compliance"], f"/api/dsar/{restriction['id']}/lift"
        )
        assert status == 200 and lifted["status"] == "completed" and lifted["lifted_at"]
        status, _ = await _post(http, service, tokens["qa_trainer"], play, {"reason": "coaching"})
        assert status == 200
        status, _ = await _post(http, service, tokens["compliance"], bundle)
        assert status == 200
        async with http.get(_local(service, early[0])) as r:
            assert r.status == 200  # the early link opens again until it expires
        status, again = await _post(
            http, service, tokens["compliance"], f"/api/dsar/{restriction['id']}/lift"
        )
        assert (status, again["error"]["code"]) == (409, "request_closed")
        with tenancy.as_tenant(tenancy.DEFAULT):
            assert (await purge_once(pool, store)).purged == 1
    finally:
        await pool.close()


# --- correct ---------------------------------------------------------------------------------


async def test_a_statement_is_attached_encrypted_and_a_wrong_call_is_unlinked(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],  # noqa: F811
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> None:
    token = tokens["compliance"]
    first = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    second = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    other = await seed_recording(db, store, VAULT, tmp_path, caller=OTHER, expired=False)
    statement = "Tôi không đồng ý với ghi chú của cuộc gọi này"
    # someone else's call cannot be named
    before = await _snapshot(db)
    status, refused = await _post(
        http,
        service,
        token,
        "/api/dsar",
        {
            "kind": "correct",
            "phone": PERSON,
            "call_ids": [str(first["call_id"]), str(other["call_id"])],
            "statement": statement,
        },
    )
    assert (status, refused["error"]["code"]) == (404, "not_the_subjects_call")
    assert await _snapshot(db) == before

    status, req = await _post(
        http,
        service,
        token,
        "/api/dsar",
        {
            "kind": "correct",
            "phone": PERSON,
            "call_ids": [str(first["call_id"])],
            "statement": statement,
        },
    )
    assert status == 201 and req["correction"] == "statement" and req["has_statement"]
    await settle(db)
    row = await db.fetchrow("SELECT status, statement_enc FROM dsar_requests WHERE id = $1",
                            req["id"])  # fmt: skip
    assert row["status"] == "completed"
    assert VAULT.decrypt(row["statement_enc"]) == statement
    (event,) = await db.fetch(
        "SELECT details FROM ledger_events WHERE call_id = $1 AND type = 'subject_statement'",
        first["call_id"],
    )
    details = (
        json.loads(event["details"]) if isinstance(event["details"], str) else event["details"]
    )
    assert details["statement_sha256"] == hashlib.sha256(row["statement_enc"]).hexdigest()
    # the words themselves are nowhere in the ledger or the audit trail
    for table in ("ledger_events", "audit_log"):
        dump = await db.fetchval(f"SELECT string_agg(details::text, ' ') FROM {table}")  # noqa: S608
        assert "đồng ý" not in dump and "\\u0111\\u1ed3ng" not in dump

    status, req = await _post(
        http,
        service,
        token,
        "/api/dsar",
        {"kind": "correct", "phone": PERSON, "call_ids": [str(second["call_id"])], "unlink": True},
    )
    assert status == 201
    await settle(db)
    assert (
        await db.fetchval("SELECT caller_hash FROM calls WHERE id = $1", second["call_id"]) is None
    )
    assert await db.fetchval(
        "SELECT count(*) FROM ledger_events WHERE call_id = $1 AND type = 'subject_unlinked'",
        second["call_id"],
    )
    # the unlinked call is no longer the subject's: an erasure leaves it (and its recording)
    rid = await dsar.create(db, VAULT, kind="erase", phone=PERSON, actor="test")
    await settle(db)
    await eventually(lambda: _status_is(db, rid, "completed"), what="the erasure completes")
    assert await store.head(first["key"]) is None
    assert await store.head(second["key"]) is not None
    # and the statement went with the number
    assert not await db.fetchval(
        "SELECT count(*) FROM dsar_requests WHERE statement_enc IS NOT NULL"
    )


def _local(service: Service, link: dict[str, Any]) -> str:
    return f"{service.base_url}/files/{link['url'].split('/files/', 1)[1]}"


async def _status_is(db: Conn, request_id: Any, status: str) -> bool:
    return bool(
        await db.fetchval("SELECT status FROM dsar_requests WHERE id = $1", request_id) == status
    )


# --- what is due: the API list, the CLI, the metrics ------------------------------------------


async def test_dsar_list_due_within_shows_what_is_due_with_the_time_left(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],  # noqa: F811
    db: Conn,
    store: S3Store,
    tmp_path: Path,
    database_url: str,
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    made = []
    for _ in range(3):  # (no job: a restriction is carried out as it is received)
        made.append(await dsar.create(db, VAULT, kind="restrict", phone=PERSON, actor="t"))
        await db.execute("UPDATE dsar_requests SET status = 'in_progress' WHERE id = $1", made[-1])
    soon, later, late = made
    # three open requests, their deadlines set by the database's clock
    await db.execute(
        "UPDATE dsar_requests SET acknowledged_at = now(), due_at = CASE "
        "id WHEN $1 THEN now() + interval '30 hours' WHEN $2 THEN now() + interval '9 days' "
        "ELSE now() - interval '1 day' END",
        soon,
        later,
    )
    status, listed = await call_api(
        http, service, "GET", "/api/dsar?due_within=2d", tokens["compliance"]
    )
    assert status == 200
    assert [i["id"] for i in listed["items"]] == [str(late), str(soon)]  # soonest first
    assert 29 * 3600 < listed["items"][1]["time_left"]["complete_s"] <= 30 * 3600
    assert listed["items"][0]["overdue"]["complete"] is True
    status, everything = await call_api(http, service, "GET", "/api/dsar", tokens["compliance"])
    assert len(everything["items"]) == 3
    status, bad = await call_api(
        http, service, "GET", "/api/dsar?due_within=soon", tokens["compliance"]
    )
    assert (status, bad["error"]["code"]) == (400, "bad_due_within")

    result = await asyncio.to_thread(run_cli, database_url, "dsar", "list", "--due-within", "2d")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [str(late), str(soon)]
    assert "overdue by 1d" in lines[0] and "(1d 5h left)" in lines[1]
    assert "acknowledged" in lines[1]


async def test_cli_logs_an_emailed_request_and_acts_on_it_with_one_line_errors(
    db: Conn, store: S3Store, tmp_path: Path, database_url: str, intake_settings: Settings
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    s3 = {
        "CALLVAULT_S3_BUCKET": intake_settings.s3_bucket or "",
        "CALLVAULT_S3_ENDPOINT_URL": intake_settings.s3_endpoint_url or "",
    }

    def cli(*args: str) -> Any:
        return run_cli(database_url, *args, env_overrides=s3)

    made = await asyncio.to_thread(
        cli, "dsar", "restrict", "--phone", PERSON, "--received-at", "2026-04-15T09:00:00+07:00",
        "--channel", "letter",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    rid = made.stdout.split()[1].rstrip(":")
    row = await db.fetchrow("SELECT * FROM dsar_requests WHERE id = $1::uuid", rid)
    assert row["status"] == "in_force"
    assert row["channel"] == "letter"
    assert row["due_at"] == dt.datetime(2026, 5, 5, tzinfo=HCM)  # end of Mon 4 May 2026
    before = await _snapshot(db)
    for args, named in (
        (("dsar", "extend", rid, "--days", "20", "--reason", "r"), "in force"),
        (("dsar", "acknowledge", "not-an-id"), "not-an-id"),
        (("dsar", "erase", "--phone", OTHER), "no calls"),
        (("dsar", "access", "--phone", PERSON, "--received-at", "yesterday"), "--received-at"),
        (("dsar", "list", "--due-within", "0d"), "--due-within"),
        (("dsar", "list", "--due-within", "99999999999d"), "--due-within: at most 99999w"),
        (
            ("dsar", "access", "--phone", PERSON, "--received-at", "0001-01-02T00:00:00Z"),
            "when Law 91/2025/QH15 took effect",
        ),
    ):
        result = await asyncio.to_thread(cli, *args)
        assert result.returncode != 0, args
        assert result.stderr.count("\n") == 1 and named in result.stderr, (args, result.stderr)
        assert result.stderr.startswith("callvault: error: ")
    assert await _snapshot(db) == before
    lifted = await asyncio.to_thread(cli, "dsar", "lift", rid)
    assert lifted.returncode == 0 and " completed " in lifted.stdout


def test_the_clis_status_choices_are_the_requests_statuses() -> None:
    from service.cli import dsar as cli

    assert cli.STATUS_CHOICES == dsar.STATUSES
    assert cli.DSAR_CHANNELS == dsar.CHANNELS


# --- migration 0015 --------------------------------------------------------------------------


async def test_migration_0015_keeps_old_requests_as_promised(
    pg_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid as uuid_mod

    from service.db import migrations
    from service.db.pool import connect

    name = "m_" + uuid_mod.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_base_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    conn = await connect(db_url(pg_base_url, name))
    try:
        before = [m for m in migrations.available() if m.version < 15]
        monkeypatch.setattr(migrations, "available", lambda: before)
        await migrations.migrate(conn)
        monkeypatch.undo()
        await tenancy.set_tenant(conn, tenancy.DEFAULT)
        rows = {}
        for status in ("received", "in_progress", "waiting_for_hold", "completed", "failed"):
            rows[status] = await conn.fetchval(
                "INSERT INTO dsar_requests (kind, status, requested_by, due_at) "
                "VALUES ('erase', $1, 'cli:x', now() + interval '72 hours') RETURNING id",
                status,
            )
        dues = dict(await conn.fetch("SELECT id, due_at FROM dsar_requests"))
        upto_15 = [m for m in migrations.available() if m.version <= 15]
        monkeypatch.setattr(migrations, "available", lambda: upto_15)
        applied = await migrations.migrate(conn)
        monkeypatch.undo()
        assert [m.version for m in applied] == [15]
        after = {r["id"]: r for r in await conn.fetch("SELECT * FROM dsar_requests")}
        for status, rid in rows.items():
            row = after[rid]
            assert row["due_at"] == dues[rid]  # the deadline promised then stays
            assert row["acknowledge_by"] is None  # Decree 13 had no such step
            assert row["clock"]["rule"].startswith("before migration 0015")
            assert row["status"] == ("in_progress" if status == "failed" else status)
        assert after[rows["failed"]]["result"] == {"status_before_0015": "failed"}
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE dsar_requests SET status = 'failed'")
        with pytest.raises(asyncpg.CheckViolationError):  # one extension, with a reason
            await conn.execute(
                "UPDATE dsar_requests SET extension_days = 3, extended_at = now(), "
                "due_before_extension = due_at WHERE id = $1",
                rows["received"],
            )
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_base_url)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


def test_the_request_metrics_name_the_labelled_tenants_and_sum_the_rest() -> None:
    from service.observability.metrics import DSAR_COUNTS, OTHER_TENANTS, TenantLabels, _dsar_counts

    rows = [
        {"tenant_id": f"t{n:03d}", **dict.fromkeys(DSAR_COUNTS, 1), "open": n} for n in range(1, 61)
    ]
    # the same bounded labels as every other per-tenant gauge (CALLVAULT_METRICS_TENANTS)
    labels = TenantLabels([f"t{n:03d}" for n in range(11, 61)], total=60)
    shown = _dsar_counts(rows, labels)
    assert len(shown) == 51
    assert "t060" in shown and "t010" not in shown
    assert shown[OTHER_TENANTS]["open"] == sum(range(1, 11))
    assert shown[OTHER_TENANTS]["complete_overdue"] == 10
    assert sum(c["open"] for c in shown.values()) == sum(r["open"] for r in rows)


async def test_a_key_rotation_reseals_statements_too(
    db: Conn, store: S3Store, tmp_path: Path
) -> None:
    from service.personal.rekey import rotate

    call = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    rid = await dsar.create(
        db,
        VAULT,
        kind="correct",
        phone=PERSON,
        actor="test",
        call_ids=[call["call_id"]],
        statement="Số này không phải của tôi vào ngày đó",
    )
    new_key = "a-brand-new-secret-key-" + "n" * 30
    new = PhoneVault(new_key)
    report = await rotate(db, PhoneVault(new_key, previous_secret_key=SECRET_KEY))
    assert report.statements == 1
    sealed = await db.fetchval("SELECT statement_enc FROM dsar_requests WHERE id = $1", rid)
    assert new.decrypt(sealed) == "Số này không phải của tôi vào ngày đó"
    with pytest.raises(InvalidTag):  # the old key alone cannot read it any more
        VAULT.decrypt(sealed)


def test_a_tenant_file_sets_the_clock_and_refuses_a_longer_extension() -> None:
    from service.tenants.model import TenantSpecError, parse_tenant

    spec = parse_tenant(
        "acme",
        {
            "name": "ACME",
            "processor": True,
            "days_off": ["2027-04-29"],
            "deadlines": {"acknowledge": "2d", "correct": "10d", "restrict": "5d"},
        },
    )
    policy = clock.policy_from(spec.policy)
    assert policy.processor and policy.days_for("correct") == 10
    assert policy.days_for("erase") == 20 and policy.days_for("restrict") == 5
    for bad, named in (
        ({"deadlines": {"extension": "16d"}}, "tenants.acme.deadlines.extension: at most 15d"),
        ({"processor": "yes"}, "tenants.acme.processor: must be true or false"),
        ({"deadlines": {"forget": "1d"}}, "tenants.acme.deadlines.forget: unknown key"),
    ):
        with pytest.raises(TenantSpecError) as refused:
            parse_tenant("acme", {"name": "ACME", **bad})
        assert refused.value.message.startswith(named), refused.value.message


async def test_an_erasure_ends_the_subjects_restriction_and_forgets_closed_requests(
    db: Conn, store: S3Store, tmp_path: Path
) -> None:
    held = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    restriction = await dsar.create(db, VAULT, kind="restrict", phone=PERSON, actor="t")
    rejected = await dsar.create(db, VAULT, kind="access", phone=PERSON, actor="t")
    await dsar.reject(db, rejected, "dpo", reason="duplicate of an earlier request")
    hold = await db.fetchval(
        "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'court', 't') RETURNING id",
        held["call_id"],
    )
    erase = await dsar.create(db, VAULT, kind="erase", phone=PERSON, actor="t")
    with pytest.raises(Exception, match="legal hold"):
        await dsar.run(db, VAULT, store, erase, tmp_path, retry_s=1)
    # while the erasure waits for the hold, the restriction still keeps the call from playback
    with pytest.raises(CallvaultError) as refused:
        await dsar.check_call_not_restricted(db, held["call_id"])
    assert refused.value.code == "restricted"
    await db.execute("UPDATE holds SET released_at = now(), released_by = 't' WHERE id = $1", hold)
    assert await dsar.run(db, VAULT, store, erase, tmp_path, retry_s=1) == "completed"
    rows = {
        r["id"]: r
        for r in await db.fetch(
            "SELECT id, status, phone_enc, result FROM dsar_requests WHERE id = ANY($1::uuid[])",
            [restriction, rejected],
        )
    }
    assert rows[restriction]["status"] == "completed"
    assert rows[restriction]["result"]["superseded_by_erasure"] == str(erase)
    assert rows[restriction]["phone_enc"] is None and rows[rejected]["phone_enc"] is None
    assert rows[rejected]["status"] == "rejected"


async def test_two_restrictions_received_at_once_make_one(
    db: Conn, store: S3Store, tmp_path: Path, database_url: str
) -> None:
    from service.db.pool import connect

    await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    conns = [await connect(database_url) for _ in range(4)]
    try:
        for conn in conns:
            await tenancy.set_tenant(conn, tenancy.DEFAULT)
        outcomes = await asyncio.gather(
            *(dsar.create(conn, VAULT, kind="restrict", phone=PERSON, actor="t") for conn in conns),
            return_exceptions=True,
        )
    finally:
        for conn in conns:
            await conn.close()
    refused = [o for o in outcomes if isinstance(o, CallvaultError)]
    assert len(refused) == 3 and {o.code for o in refused} == {"already_restricted"}
    assert await db.fetchval("SELECT count(*) FROM dsar_requests WHERE kind = 'restrict'") == 1
