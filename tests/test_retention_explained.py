"""Why is this recording still here? ``GET /api/recordings/{id}/retention``, the purge's dry run
and the purge itself read one explanation (``recording_retention()``): two tenants side by side,
on real PostgreSQL as the service's role, moto's S3 server, the database's clock."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from retention import explain, holds
from retention.purge import dry_run_report, purge_once
from service import auth
from service.config import Settings
from service.db import tenancy
from service.db.pool import create_pool
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage.s3 import S3Store
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, SECRET_KEY, Service, make_bucket
from tests.intake_helpers import send_recording, settle
from tests.qa_fixtures import call_api
from tests.seed import seed_recording
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

VAULT = PhoneVault(SECRET_KEY)
OTHER = "beta"
SHARED_CALLER = "+84977000111"  # a number both tenants have calls of
Conn = asyncpg.Connection


@pytest.fixture
async def store(moto_url: str) -> AsyncIterator[S3Store]:
    s = S3Store(await asyncio.to_thread(make_bucket, moto_url, True), endpoint_url=moto_url)
    yield s
    await s.close()


@pytest.fixture
async def service_pool(service_url: str) -> AsyncIterator[Any]:
    # the service's own role: row-level security binds it, as in production
    p = await create_pool(service_url, min_size=1, max_size=4)
    yield p
    await p.close()


async def make_token(db: Conn, tenant: str, role: str) -> str:
    await tenancy.set_tenant(db, tenant)
    try:
        token, _ = await auth.create_token(db, f"{tenant}-{role}", role, "test")
    finally:
        await tenancy.set_tenant(db, tenancy.DEFAULT)
    return token


async def as_tenant(db: Conn, tenant: str) -> None:
    await tenancy.set_tenant(db, tenant)


async def open_request(db: Conn, phone: str, kind: str = "access", status: str = "received") -> str:
    request_id = await db.fetchval(
        "INSERT INTO dsar_requests (kind, status, phone_hash, requested_by, due_at) "
        "VALUES ($1, $2, $3, 'test', now() + interval '15 days') RETURNING id",
        kind,
        status,
        VAULT.lookup_hash(phone),
    )
    return str(request_id)


async def two_tenants(db: Conn, store: S3Store, tmp_path: Path) -> dict[str, Any]:
    """In tenant default: expired recordings kept by a call hold, a number hold, an open access
    request; one kept by nothing; one a completed request and an open erasure do not keep; one
    not yet expired. In tenant beta: an expired recording of the same number as default's, with
    beta's own hold on that number (which must keep beta's only)."""
    await db.execute(
        "INSERT INTO tenants (id, name) VALUES ($1, 'Beta') ON CONFLICT DO NOTHING", OTHER
    )
    await as_tenant(db, tenancy.DEFAULT)
    seeded = {
        "by_call_hold": await seed_recording(db, store, VAULT, tmp_path, caller="+84901000001"),
        "by_phone_hold": await seed_recording(db, store, VAULT, tmp_path, caller="+84901000002"),
        "by_request": await seed_recording(db, store, VAULT, tmp_path, caller="+84901000003"),
        "free": await seed_recording(db, store, VAULT, tmp_path, caller=SHARED_CALLER),
        "done_request": await seed_recording(db, store, VAULT, tmp_path, caller="+84901000004"),
        "young": await seed_recording(db, store, VAULT, tmp_path, expired=False),
    }
    seeded["call_hold"] = (
        await holds.place(
            db, VAULT, "test", call_id=seeded["by_call_hold"]["call_id"], reason="court order 7"
        )
    ).id
    seeded["phone_hold"] = (
        await holds.place(db, VAULT, "test", phone="+84901000002", reason="police inquiry")
    ).id
    seeded["request"] = await open_request(db, "+84901000003")
    await open_request(db, "+84901000004", status="completed")
    await open_request(db, "+84901000004", kind="erase", status="waiting_for_hold")
    await as_tenant(db, OTHER)
    seeded["beta"] = await seed_recording(db, store, VAULT, tmp_path, caller=SHARED_CALLER)
    seeded["beta_hold"] = (
        await holds.place(db, VAULT, "test", phone=SHARED_CALLER, reason="beta's own case")
    ).id
    await as_tenant(db, tenancy.DEFAULT)
    return seeded


def ts(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw is not None else None


async def test_the_api_says_what_keeps_each_recording_and_when_it_goes(
    db: Conn, store: S3Store, tmp_path: Path, service: Service, http: aiohttp.ClientSession
) -> None:
    s = await two_tenants(db, store, tmp_path)
    compliance = await make_token(db, tenancy.DEFAULT, "compliance")
    beta = await make_token(db, OTHER, "compliance")

    async def explained(key: str, token: str = compliance) -> dict[str, Any]:
        status, body = await call_api(
            http, service, "GET", f"/api/recordings/{s[key]['recording_id']}/retention", token
        )
        assert status == 200, body
        assert body["recording_id"] == str(s[key]["recording_id"])
        return dict(body)

    held = await explained("by_call_hold")
    assert [(h["id"], h["reason"], h["on"]) for h in held["holds"]] == [
        (str(s["call_hold"]), "court order 7", "call")
    ]
    assert ts(held["holds"][0]["placed_at"]) is not None
    assert held["purge_at"] is None and held["requests"] == []
    assert held["source"] == "tenant" and held["state"] == "stored"

    by_phone = await explained("by_phone_hold")
    assert [(h["id"], h["on"]) for h in by_phone["holds"]] == [(str(s["phone_hold"]), "phone")]
    assert by_phone["purge_at"] is None

    by_request = await explained("by_request")
    assert by_request["requests"] == [{"id": s["request"], "kind": "access", "status": "received"}]
    assert by_request["holds"] == [] and by_request["purge_at"] is None

    # nothing keeps these: expired ones go at the next pass (purge_at is the database's now)
    for key in ("free", "done_request"):
        free = await explained(key)
        assert free["holds"] == [] and free["requests"] == []
        assert ts(free["retain_until"]) < ts(free["purge_at"]) == ts(free["checked_at"])  # type: ignore[operator]
    young = await explained("young")
    assert young["purge_at"] == young["retain_until"] and ts(young["purge_at"]) > ts(  # type: ignore[operator]
        young["checked_at"]
    )

    # beta's hold on the same number keeps beta's recording, not default's ("free" above)
    beta_side = await explained("beta", beta)
    assert [h["id"] for h in beta_side["holds"]] == [str(s["beta_hold"])]
    assert beta_side["purge_at"] is None
    # each tenant's recording is another's 404
    for token, key in ((compliance, "beta"), (beta, "free")):
        status, body = await call_api(
            http, service, "GET", f"/api/recordings/{s[key]['recording_id']}/retention", token
        )
        assert status == 404 and body["error"]["code"] == "not_found"
    status, _ = await call_api(
        http, service, "GET", f"/api/recordings/{secrets.token_hex(4)}/retention", compliance
    )
    assert status == 404

    # published in /openapi.json with the shape above
    status, spec = await call_api(http, service, "GET", "/openapi.json")
    answer = spec["paths"]["/api/recordings/{id}/retention"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    assert {"retain_until", "source", "holds", "requests", "purge_at"} <= set(schema["required"])
    assert schema["properties"]["source"]["enum"] == ["tenant", "queue", "number", None]


async def test_roles_a_trainer_sees_that_a_hold_keeps_it_but_not_why(
    db: Conn, store: S3Store, tmp_path: Path, service: Service, http: aiohttp.ClientSession
) -> None:
    s = await two_tenants(db, store, tmp_path)
    path = f"/api/recordings/{s['by_call_hold']['recording_id']}/retention"
    for role, reason in (("qa_trainer", None), ("admin", "court order 7")):
        status, body = await call_api(
            http, service, "GET", path, await make_token(db, "default", role)
        )
        assert status == 200
        assert [h["reason"] for h in body["holds"]] == [reason]
        assert body["purge_at"] is None
    status, _ = await call_api(
        http, service, "GET", path, await make_token(db, "default", "telephony")
    )
    assert status == 403


async def test_purge_and_dry_run_take_exactly_what_the_explanation_says(
    db: Conn, store: S3Store, tmp_path: Path, service_pool: Any
) -> None:
    s = await two_tenants(db, store, tmp_path)
    keys = ["by_call_hold", "by_phone_hold", "by_request", "free", "done_request", "young", "beta"]
    with tenancy.as_tenant(tenancy.ALL):
        async with service_pool.acquire() as conn:
            before = {k: await explain.explain(conn, s[k]["recording_id"]) for k in keys}
            lines = await dry_run_report(conn)
    due = {k for k, e in before.items() if e is not None and e.due}
    assert due == {"free", "done_request"}

    # the dry run lists every expired recording with what keeps it, the same as the API
    by_id = {line.split()[0]: line for line in lines}
    for key in ("by_call_hold", "by_phone_hold", "beta"):
        assert "kept: under a legal hold" in by_id[str(s[key]["recording_id"])]
    assert str(s["call_hold"]) in by_id[str(s["by_call_hold"]["recording_id"])]
    assert f"an open access request {s['request']}" in by_id[str(s["by_request"]["recording_id"])]
    for key in due:
        assert by_id[str(s[key]["recording_id"])].endswith("retention ended")
    assert "source tenant" in by_id[str(s["free"]["recording_id"])]
    assert "2 would be purged, 3 kept by holds, 1 kept by open requests" in lines
    assert "goes in 89d" in by_id[str(s["young"]["recording_id"])]

    report = await purge_once(service_pool, store)
    assert report.purged == 2 and report.failed == {}
    with tenancy.as_tenant(tenancy.ALL):
        async with service_pool.acquire() as conn:
            after = {k: await explain.explain(conn, s[k]["recording_id"]) for k in keys}
    purged = {k for k, e in after.items() if e is not None and e.state == "purged"}
    assert purged == due
    assert all(after[k].purge_at is None for k in purged)  # type: ignore[union-attr]
    for key in set(keys) - due:
        assert await store.head(s[key]["key"]) is not None

    # the request completes: nothing keeps that recording any more, and the purge takes it
    await db.execute("UPDATE dsar_requests SET status = 'completed' WHERE id = $1", s["request"])
    with tenancy.as_tenant(tenancy.DEFAULT):
        async with service_pool.acquire() as conn:
            freed = await explain.explain(conn, s["by_request"]["recording_id"])
    assert freed is not None and freed.due
    assert (await purge_once(service_pool, store)).purged == 1
    assert await store.head(s["by_request"]["key"]) is None


SALES, DIRECT = "+842873005555", "+842873006666"


@pytest.fixture
async def policy_service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(
        replace(
            intake_settings,
            queues={"sales": {"retention": "30d"}, "plain": {}},
            numbers={
                SALES: {"queue": "sales"},
                DIRECT: {"queue": "sales", "retention": "7d"},
                "+842873007777": {"queue": "plain"},
            },
        )
    )
    await svc.start()
    yield svc
    await svc.stop()


async def test_source_names_the_policy_level_that_set_retention(
    db: Conn,
    policy_service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
) -> None:
    twilio = FakeTwilio(
        http,
        PUBLIC_URL,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        send_to=policy_service.base_url,
    )
    expected = {
        "+842873001234": ("tenant", 90),
        SALES: ("queue", 30),
        DIRECT: ("number", 7),
        "+842873007777": ("tenant", 90),  # a queue without retention of its own
    }
    for called in expected:
        trace = await twilio.place_call("+84901234678", called, Caller.parse("stay"))
        rec_sid = new_recording_sid()
        twilio_media.add(rec_sid, wav_bytes(1))
        await send_recording(twilio, trace.call_sid, rec_sid)
    await settle(db)
    token = await make_token(db, tenancy.DEFAULT, "compliance")
    rows = await db.fetch(
        "SELECT r.id, c.called, extract(epoch FROM r.retain_until - r.stored_at) AS kept_s "
        "FROM recordings r JOIN calls c ON c.id = r.call_id"
    )
    assert len(rows) == len(expected)
    for row in rows:
        source, days = expected[row["called"]]
        assert row["kept_s"] == days * 86400
        status, body = await call_api(
            http, policy_service, "GET", f"/api/recordings/{row['id']}/retention", token
        )
        assert status == 200 and body["source"] == source, (row["called"], body)
