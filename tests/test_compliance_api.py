"""Compliance through the API on the real service: roles on every route, holds, and
data-subject requests carried out by the job worker against moto's S3 server."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cryptography.exceptions import InvalidTag

from service import auth
from service.config import Settings
from service.db import tenancy
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage.s3 import S3Store
from tests.conftest import SECRET_KEY, Service
from tests.intake_helpers import objects, settle
from tests.qa_fixtures import call_api
from tests.seed import seed_recording
from tests.waiting import eventually

VAULT = PhoneVault(SECRET_KEY)
PERSON = "+84905550123"
Conn = asyncpg.Connection


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    from dataclasses import replace

    svc = Service(replace(intake_settings, purge_interval_s=1))
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


@pytest.fixture
async def tokens(db: Conn) -> dict[str, str]:
    made = {}
    for role in auth.ROLES:
        # the operator's is a platform token: created for the tenant '*'
        await tenancy.set_tenant(db, tenancy.ALL if role == "operator" else tenancy.DEFAULT)
        made[role], _ = await auth.create_token(db, f"{role}-test", role, "test")
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    revoked, row = await auth.create_token(db, "revoked", "compliance", "test")
    await auth.revoke_token(db, row["id"])
    made["revoked"] = revoked
    return made


ROUTES = [
    ("GET", "/api/holds", None),
    ("POST", "/api/holds", {"phone": "+84900000001", "reason": "r"}),
    ("DELETE", "/api/holds/00000000-0000-0000-0000-000000000000", None),
    ("POST", "/api/dsar", {"kind": "access", "phone": "+84900000002"}),
    ("GET", "/api/dsar/00000000-0000-0000-0000-000000000000", None),
    ("POST", "/api/dsar/00000000-0000-0000-0000-000000000000/bundle", None),
    ("GET", "/api/audit", None),
    ("GET", "/api/ledger/verify", None),
    ("GET", "/api/tokens", None),
    ("POST", "/api/tokens", {"name": "n", "role": "qa_trainer"}),
    ("DELETE", "/api/tokens/00000000-0000-0000-0000-000000000000", None),
]
# the platform operator manages tokens; it never reaches holds, requests, audit or ledger
ALLOWED = {"/api/tokens": {"admin", "operator"}}


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_every_route_enforces_tokens_and_roles(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    method: str,
    path: str,
    body: Any,
) -> None:
    allowed = ALLOWED.get(path.split("/00000000")[0], {"compliance", "admin"})
    for who, expected in (("missing", 401), ("unknown", 401), ("revoked", 401)):
        token = {"missing": None, "unknown": "cv_" + "x" * 43}.get(who, tokens.get(who))
        status, resp = await call_api(http, service, method, path, token, body)
        assert status == expected, (who, status, resp)
        assert resp["error"]["code"] == "unauthorized"
    for role in auth.ROLES:
        status, resp = await call_api(http, service, method, path, tokens[role], body)
        if role in allowed:
            assert status not in (401, 403), (role, status, resp)
        else:
            assert status == 403 and resp["error"]["code"] == "forbidden", (role, status)


async def test_repeated_bad_tokens_are_slowed_down(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    statuses = [
        (await call_api(http, service, "GET", "/api/holds", "cv_wrong"))[0] for _ in range(12)
    ]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    # a good token from the same address is not refused for others' failures
    assert (await call_api(http, service, "GET", "/api/holds", tokens["compliance"]))[0] == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"reason": "x"}, "invalid_body"),
        ({"phone": "0905", "reason": "x"}, "invalid_body"),
        ({"phone": "0905 550 123", "reason": "x"}, "bad_phone"),
        ({"phone": PERSON, "reason": "  "}, "invalid_body"),
        ({"call_id": "nope", "reason": "x"}, "invalid_body"),
        ({"call_id": "00000000-0000-0000-0000-000000000001", "reason": "x"}, "not_found"),
        ([1, 2], "invalid_body"),
        (
            {"phone": PERSON, "call_id": "00000000-0000-0000-0000-000000000001", "reason": "x"},
            "invalid_body",
        ),
    ],
)
async def test_bad_hold_requests_are_clear_4xx(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], body: Any, code: str
) -> None:
    status, resp = await call_api(http, service, "POST", "/api/holds", tokens["compliance"], body)
    assert 400 <= status < 500 and resp["error"]["code"] == code


async def test_access_request_yields_a_bundle_through_a_short_lived_link(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    store: S3Store,
    tmp_path: Path,
) -> None:
    mine = [
        await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
        for _ in range(2)
    ]
    await seed_recording(db, store, VAULT, tmp_path, caller="+84900000009", expired=False)
    status, req = await call_api(
        http,
        service,
        "POST",
        "/api/dsar",
        tokens["compliance"],
        {"kind": "access", "phone": "+84 905 550 123"},
    )
    assert status == 201 and req["status"] == "received"
    assert req["due_at"] > req["received_at"]
    await settle(db)
    status, req = await call_api(
        http, service, "GET", f"/api/dsar/{req['id']}", tokens["compliance"]
    )
    assert req["status"] == "completed" and req["bundle_ready"]
    status, link = await call_api(
        http, service, "POST", f"/api/dsar/{req['id']}/bundle", tokens["compliance"]
    )
    assert status == 200
    path = link["url"].split("/files/", 1)[1]
    async with http.get(f"{service.base_url}/files/{path}") as resp:
        assert resp.status == 200
        bundle = zipfile.ZipFile(io.BytesIO(await resp.read()))
    calls = json.loads(bundle.read("calls.json"))
    assert {c["id"] for c in calls} == {str(r["call_id"]) for r in mine}
    for call in calls:
        (rec,) = call["recordings"]
        original = next(r for r in mine if str(r["recording_id"]) == rec["id"])
        assert bundle.read(rec["audio_file"]) == original["body"]
        assert [e["type"] for e in call["consent_events"]][:1] == ["call_started"]
    # a tampered link opens nothing
    async with http.get(f"{service.base_url}/files/{path[:-2]}xx") as resp:
        assert resp.status == 404
    actions = [r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY id")]
    for action in ("dsar_received", "dsar_completed", "dsar_bundle_link", "dsar_bundle_downloaded"):
        assert action in actions


async def _status_is(
    http: aiohttp.ClientSession,
    service: Service,
    tokens: dict[str, str],
    request_id: str,
    status: str,
) -> bool:
    _, body = await call_api(http, service, "GET", f"/api/dsar/{request_id}", tokens["compliance"])
    return bool(body["status"] == status)


async def test_erasure_waits_for_a_hold_then_leaves_no_trace_of_the_number(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    store: S3Store,
    tmp_path: Path,
    moto_url: str,
    intake_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    held = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    free = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    other = await seed_recording(db, store, VAULT, tmp_path, caller="+84900000009", expired=False)
    # earlier: an access request (its bundle holds the audio) and a finished hold on the number
    status, access = await call_api(
        http,
        service,
        "POST",
        "/api/dsar",
        tokens["compliance"],
        {"kind": "access", "phone": PERSON},
    )
    await eventually(
        lambda: _status_is(http, service, tokens, access["id"], "completed"),
        what="the access bundle is built",
    )
    bundle_key = await db.fetchval(
        "SELECT bundle_key FROM dsar_requests WHERE id = $1", access["id"]
    )
    assert await store.head(bundle_key) is not None
    status, old_hold = await call_api(
        http, service, "POST", "/api/holds", tokens["compliance"], {"phone": PERSON, "reason": "r"}
    )
    status, _ = await call_api(
        http, service, "DELETE", f"/api/holds/{old_hold['id']}", tokens["compliance"]
    )
    assert status == 204
    status, hold = await call_api(
        http,
        service,
        "POST",
        "/api/holds",
        tokens["compliance"],
        {"call_id": str(held["call_id"]), "reason": "court order", "case_ref": "TAND-123"},
    )
    assert status == 201 and hold["held_recordings"] == [str(held["recording_id"])]
    status, req = await call_api(
        http, service, "POST", "/api/dsar", tokens["compliance"], {"kind": "erase", "phone": PERSON}
    )
    await eventually(
        lambda: _status_is(http, service, tokens, req["id"], "waiting_for_hold"),
        what="the erasure waits for the hold",
    )
    # the hold wins: the held recording is still there, the other one is gone
    assert await store.head(held["key"]) is not None
    assert await store.head(free["key"]) is None
    status, _ = await call_api(
        http, service, "DELETE", f"/api/holds/{hold['id']}", tokens["compliance"]
    )
    assert status == 204
    await eventually(
        lambda: _status_is(http, service, tokens, req["id"], "completed"),
        what="the erasure completes after the release",
    )
    keys = {o["key"] for o in await objects(moto_url, intake_settings.s3_bucket or "")}
    assert keys == {other["key"]}  # the access bundle went with the recordings
    status, refused = await call_api(
        http, service, "POST", f"/api/dsar/{access['id']}/bundle", tokens["compliance"]
    )
    assert (status, refused["error"]["code"]) == (410, "bundle_erased")
    _, access_now = await call_api(
        http, service, "GET", f"/api/dsar/{access['id']}", tokens["compliance"]
    )
    assert access_now["bundle_ready"] is False and access_now["bundle_removed"] == "erased"
    states = await db.fetch(
        "SELECT state FROM recordings WHERE call_id = ANY($1::uuid[])",
        [held["call_id"], free["call_id"]],
    )
    assert {r["state"] for r in states} == {"erased"}
    for call in (held, free):
        types = [
            r["type"]
            for r in await db.fetch(
                "SELECT type FROM ledger_events WHERE call_id = $1 ORDER BY seq", call["call_id"]
            )
        ]
        assert "erased" in types
    # no trace of the number anywhere in the database: not in clear, not as ciphertext under
    # our key, not as its lookup hash; the only thing kept is the erase request's receipt digest
    receipt = VAULT.erasure_digest(PERSON)
    seen = await _scan_database(db, PERSON, receipt)
    for spelling in (PERSON, PERSON[1:], "0" + PERSON[3:], PERSON[3:]):
        assert spelling not in seen.text and spelling not in caplog.text
    assert VAULT.lookup_hash(PERSON).hex() not in seen.text
    assert seen.decrypted == []
    assert seen.receipts == [("dsar_requests", "subject_digest", req["id"])]
    rows = await db.fetch(
        "SELECT caller_enc, caller_hash FROM calls WHERE id = ANY($1::uuid[])",
        [held["call_id"], free["call_id"]],
    )
    assert all(r["caller_enc"] is None and r["caller_hash"] is None for r in rows)
    assert await db.fetchval("SELECT count(*) FROM dsar_requests WHERE phone_enc IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM holds WHERE phone_enc IS NOT NULL") == 0


@dataclass
class Scan:
    text: str = ""  # every row of every table, as text
    decrypted: list[tuple[str, str]] = field(default_factory=list)  # (table, column) of the number
    receipts: list[tuple[str, str, str]] = field(default_factory=list)  # (table, column, row id)


async def _scan_database(db: Conn, number: str, receipt: bytes) -> Scan:
    """Every table of the schema, whatever it is: rows as text, and every bytea value tried as
    a ciphertext of ``number`` under our key and compared with its receipt digest."""
    scan = Scan()
    tables = [
        r["table_name"]
        for r in await db.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    ]
    texts = []
    for table in tables:
        ident = '"' + table.replace('"', '""') + '"'
        rows = await db.fetch(f"SELECT to_jsonb(t) AS j, t::text AS s FROM {ident} t")  # noqa: S608
        blobs = await db.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = $1 AND data_type = 'bytea'",
            table,
        )
        texts += [r["s"] for r in rows]
        for col in (b["column_name"] for b in blobs):
            quoted = '"' + col.replace('"', '""') + '"'
            values = await db.fetch(
                f"SELECT {quoted} AS v, to_jsonb(t) ->> 'id' AS id FROM {ident} t"  # noqa: S608
                f" WHERE {quoted} IS NOT NULL"
            )
            for v in values:
                if v["v"] == receipt:
                    scan.receipts.append((table, col, v["id"]))
                    continue
                try:
                    if VAULT.decrypt(v["v"]) == number:
                        scan.decrypted.append((table, col))
                except (ValueError, InvalidTag):
                    pass  # not a ciphertext (a hash, a digest), or not ours
    scan.text = " ".join(texts)
    return scan


async def test_withdrawal_stops_recording_and_erases(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    store: S3Store,
    tmp_path: Path,
    twilio: FakeTwilio,
) -> None:
    rec = await seed_recording(db, store, VAULT, tmp_path, caller=PERSON, expired=False)
    status, req = await call_api(
        http,
        service,
        "POST",
        "/api/dsar",
        tokens["compliance"],
        {"kind": "withdraw", "phone": PERSON},
    )
    assert status == 201
    await settle(db)
    assert (await call_api(http, service, "GET", f"/api/dsar/{req['id']}", tokens["compliance"]))[
        1
    ]["status"] == "completed"
    assert await store.head(rec["key"]) is None
    trace = await twilio.place_call(PERSON, "+842873001234", Caller.parse("stay"))
    assert not trace.recording_started and trace.played == []  # not asked again
    outcome = await db.fetchval("SELECT outcome FROM calls WHERE external_id = $1", trace.call_sid)
    assert outcome == "not_asked"


async def test_a_caller_intake_kept_as_e164_can_be_held_and_asked_for(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    twilio: FakeTwilio,
) -> None:
    """A From phonenumbers finds impossible but E.164-shaped is stored as E.164 by intake;
    holds and requests refused it (bad_phone), so the caller could not be held or erased."""
    number = "+38012345678901"
    trace = await twilio.place_call(number, "+842873001234", Caller.parse("stay"))
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", trace.call_sid)
    assert call_id is not None
    typed = "+380 1234 5678 901"
    status, hold = await call_api(
        http, service, "POST", "/api/holds", tokens["compliance"], {"phone": typed, "reason": "r"}
    )
    assert status == 201, hold
    status, req = await call_api(
        http, service, "POST", "/api/dsar", tokens["compliance"], {"kind": "access", "phone": typed}
    )
    assert status == 201, req  # not 404 no_calls: the request found the call
    events = await db.fetch("SELECT type, details FROM ledger_events WHERE call_id = $1", call_id)
    assert {"hold_placed", "dsar_received"} <= {e["type"] for e in events}


async def test_metrics_show_holds_and_requests(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], db: Conn
) -> None:
    await call_api(
        http,
        service,
        "POST",
        "/api/holds",
        tokens["compliance"],
        {"phone": PERSON, "reason": "investigation"},
    )
    # by the database's clock: one past both deadlines, one due within 2 days and not yet
    # acknowledged (acknowledge also soon), one done, one restriction in force (no deadline)
    await db.execute(
        "INSERT INTO dsar_requests (kind, requested_by, due_at, acknowledge_by, status) VALUES "
        "('access', 't', now() - interval '1 hour', now() - interval '2 hours', 'received'),"
        "('erase', 't', now() + interval '1 day', now() + interval '3 hours', 'in_progress'),"
        "('erase', 't', now() - interval '1 day', now() - interval '3 days', 'completed'),"
        "('restrict', 't', now() - interval '1 day', now() - interval '3 days', 'in_force')"
    )
    async with http.get(service.base_url + "/metrics") as resp:
        text = await resp.text()
    assert 'callvault_holds_active{tenant="default"} 1.0' in text
    lines = set(text.splitlines())
    for line in (
        'callvault_dsar_open{tenant="default"} 3.0',
        'callvault_dsar_overdue{deadline="complete",tenant="default"} 1.0',
        'callvault_dsar_overdue{deadline="acknowledge",tenant="default"} 1.0',
        'callvault_dsar_due_soon{deadline="complete",tenant="default"} 1.0',
        'callvault_dsar_due_soon{deadline="acknowledge",tenant="default"} 1.0',
    ):
        assert line in lines, line
