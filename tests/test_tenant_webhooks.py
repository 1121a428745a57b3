"""Twilio webhooks find their tenant from the AccountSid (or, for an account several tenants
share, the contact centre's number) and are verified with that account's own token."""

from __future__ import annotations

import json
import secrets

import aiohttp
import asyncpg
import pytest

from service import auth
from service.db import tenancy
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import PUBLIC_URL, Service
from tests.intake_helpers import send_recording
from tests.qa_fixtures import call_api
from tests.waiting import eventually

Conn = asyncpg.Connection
SID_A, SID_B, SID_SHARED = ("AC" + secrets.token_hex(16) for _ in range(3))
TOKEN_A, TOKEN_B, TOKEN_SHARED = (secrets.token_hex(16) for _ in range(3))
NUMBER_A, NUMBER_B = "+842873001111", "+842873002222"
VOICE = "/telephony/twilio/voice"


@pytest.fixture
async def tenants(db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tenants a and b, each with its own subaccount, and a third account both share."""
    monkeypatch.setenv("TEST_TWILIO_TOKEN_A", TOKEN_A)
    monkeypatch.setenv("TEST_TWILIO_TOKEN_B", TOKEN_B)
    monkeypatch.setenv("TEST_TWILIO_TOKEN_SHARED", TOKEN_SHARED)
    for tenant, sid, env, number in (
        ("tenant-a", SID_A, "TEST_TWILIO_TOKEN_A", NUMBER_A),
        ("tenant-b", SID_B, "TEST_TWILIO_TOKEN_B", NUMBER_B),
    ):
        await db.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant)
        for account in (sid, SID_SHARED):
            ref = env if account == sid else "TEST_TWILIO_TOKEN_SHARED"
            await db.execute(
                "INSERT INTO tenant_accounts (platform, account_id, tenant_id, secrets) "
                "VALUES ('twilio', $1, $2, $3)",
                account,
                tenant,
                {"auth_token_env": ref},
            )
        await db.execute(
            "INSERT INTO tenant_numbers (number, tenant_id) VALUES ($1, $2)", number, tenant
        )


def fake(http: aiohttp.ClientSession, service: Service, sid: str, token: str) -> FakeTwilio:
    return FakeTwilio(http, PUBLIC_URL, account_sid=sid, auth_token=token, send_to=service.base_url)


async def tenant_of(db: Conn, call_sid: str) -> str | None:
    await tenancy.set_tenant(db, tenancy.ALL)
    value: str | None = await db.fetchval(
        "SELECT tenant_id FROM calls WHERE external_id = $1", call_sid
    )
    return value


async def call_count(db: Conn) -> int:
    await tenancy.set_tenant(db, tenancy.ALL)
    count: int = await db.fetchval("SELECT count(*) FROM calls")
    return count


async def test_each_subaccount_lands_in_its_tenant_and_stays_there(
    tenants: None, service: Service, http: aiohttp.ClientSession, db: Conn
) -> None:
    a = await fake(http, service, SID_A, TOKEN_A).place_call(
        "+84901230001", NUMBER_A, Caller.parse("stay")
    )
    b = await fake(http, service, SID_B, TOKEN_B).place_call(
        "+84901230002", NUMBER_B, Caller.parse("stay")
    )
    assert await tenant_of(db, a.call_sid) == "tenant-a"
    assert await tenant_of(db, b.call_sid) == "tenant-b"
    await tenancy.set_tenant(db, "tenant-a")
    qa_a = (await auth.create_token(db, "qa-a", "qa_trainer", "test"))[0]
    status, page = await call_api(http, service, "GET", "/api/calls?limit=50", qa_a)
    assert status == 200
    seen = {item["external_id"] for item in page["items"]}
    assert seen == {a.call_sid}


async def test_unknown_account_is_refused_and_nothing_written(
    tenants: None, service: Service, http: aiohttp.ClientSession, db: Conn
) -> None:
    stranger = fake(http, service, "AC" + secrets.token_hex(16), TOKEN_A)
    params = stranger.call_params("CA" + secrets.token_hex(16), "+84901230003", NUMBER_A)
    status, body = await stranger.post(stranger.url(VOICE), params)
    assert status == 403 and json.loads(body)["error"]["code"] == "unknown_account"
    assert await call_count(db) == 0


async def test_token_of_one_tenant_cannot_sign_for_another_account(
    tenants: None, service: Service, http: aiohttp.ClientSession, db: Conn
) -> None:
    forger = fake(http, service, SID_B, TOKEN_A)  # tenant a's token, tenant b's AccountSid
    params = forger.call_params("CA" + secrets.token_hex(16), "+84901230004", NUMBER_B)
    status, body = await forger.post(forger.url(VOICE), params)
    assert status == 403 and json.loads(body)["error"]["code"] == "bad_signature"
    assert await call_count(db) == 0


async def test_shared_account_is_routed_by_the_centre_number(
    tenants: None, service: Service, http: aiohttp.ClientSession, db: Conn
) -> None:
    shared = fake(http, service, SID_SHARED, TOKEN_SHARED)
    to_a = await shared.place_call("+84901230005", NUMBER_A, Caller.parse("stay"))
    to_b = await shared.place_call("+84901230006", NUMBER_B, Caller.parse("stay"))
    # outbound: the centre's number is From
    out_b = await shared.place_call(
        NUMBER_B, "+84901230007", Caller.parse("stay"), direction="outbound-api"
    )
    assert await tenant_of(db, to_a.call_sid) == "tenant-a"
    assert await tenant_of(db, to_b.call_sid) == "tenant-b"
    assert await tenant_of(db, out_b.call_sid) == "tenant-b"
    params = shared.call_params("CA" + secrets.token_hex(16), "+84901230008", "+842873009999")
    status, body = await shared.post(shared.url(VOICE), params)
    assert status == 403 and json.loads(body)["error"]["code"] == "unknown_number"
    assert await call_count(db) == 3


async def test_configured_account_stays_the_default_tenant(
    tenants: None, service: Service, twilio: FakeTwilio, db: Conn
) -> None:
    trace = await twilio.place_call("+84901230009", NUMBER_A, Caller.parse("stay"))
    assert await tenant_of(db, trace.call_sid) == tenancy.DEFAULT
    forged = fake(twilio.session, service, twilio.account_sid, TOKEN_A)
    params = forged.call_params("CA" + secrets.token_hex(16), "+84901230010", NUMBER_A)
    status, _ = await forged.post(forged.url(VOICE), params)
    assert status == 403
    assert await call_count(db) == 1


async def test_an_account_added_later_is_routed_within_seconds(
    tenants: None,
    service: Service,
    http: aiohttp.ClientSession,
    db: Conn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    late_sid, late_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    late = fake(http, service, late_sid, late_token)
    params = late.call_params("CA" + secrets.token_hex(16), "+84901230011", NUMBER_A)
    status, _ = await late.post(late.url(VOICE), params)
    assert status == 403  # not registered yet (and now the table is cached)
    monkeypatch.setenv("TEST_TWILIO_TOKEN_LATE", late_token)
    await db.execute(
        "INSERT INTO tenant_accounts (platform, account_id, tenant_id, secrets) "
        "VALUES ('twilio', $1, 'tenant-a', $2)",
        late_sid,
        {"auth_token_env": "TEST_TWILIO_TOKEN_LATE"},
    )

    async def accepted() -> bool:
        status, _ = await late.post(late.url(VOICE), params)
        return status == 200

    # written by hand (no NOTIFY): an unknown account is re-read, at most every 5 s, before a 403
    await eventually(accepted, what="the new account's webhook is accepted", timeout_s=30)
    assert await tenant_of(db, params["CallSid"]) == "tenant-a"


async def test_two_subaccounts_using_the_same_sids_each_get_their_own_call_and_recording(
    tenants: None, service: Service, http: aiohttp.ClientSession, db: Conn
) -> None:
    """Ids are unique per account, not across tenants: tenant b's CallSid and RecordingSid equal
    to tenant a's neither fail (500), nor reveal a's, nor turn b's callback into a duplicate."""
    call_sid, recording_sid = "CA" + secrets.token_hex(16), "RE" + secrets.token_hex(16)
    placed = {
        tenant: await fake(http, service, sid, token).place_call(
            caller, number, Caller.parse("stay"), call_sid=call_sid
        )
        for tenant, sid, token, caller, number in (
            ("tenant-a", SID_A, TOKEN_A, "+84901230012", NUMBER_A),
            ("tenant-b", SID_B, TOKEN_B, "+84901230013", NUMBER_B),
        )
    }
    for trace in placed.values():
        assert not trace.errors and trace.recording_started
    for sid, token in ((SID_A, TOKEN_A), (SID_B, TOKEN_B)):
        status, _ = await send_recording(fake(http, service, sid, token), call_sid, recording_sid)
        assert status == 204
    await tenancy.set_tenant(db, tenancy.ALL)
    calls = await db.fetch(
        "SELECT id, tenant_id, outcome, ended_at IS NOT NULL AS ended FROM calls "
        "WHERE external_id = $1 ORDER BY tenant_id",
        call_sid,
    )
    assert [tuple(r)[1:] for r in calls] == [
        (t, "consented", True) for t in ("tenant-a", "tenant-b")
    ]
    callbacks = await db.fetch(
        "SELECT tenant_id FROM recording_callbacks WHERE recording_sid = $1 ORDER BY tenant_id",
        recording_sid,
    )
    jobs = await db.fetch(
        "SELECT tenant_id FROM jobs WHERE payload->>'recording_sid' = $1 ORDER BY tenant_id",
        recording_sid,
    )
    both = ["tenant-a", "tenant-b"]
    assert [r["tenant_id"] for r in callbacks] == [r["tenant_id"] for r in jobs] == both
    # each tenant sees its own call only
    await tenancy.set_tenant(db, "tenant-a")
    qa_a = (await auth.create_token(db, "qa-a2", "qa_trainer", "test"))[0]
    status, page = await call_api(http, service, "GET", "/api/calls?limit=50", qa_a)
    assert status == 200
    assert [(item["id"], item["external_id"]) for item in page["items"]] == [
        (str(calls[0]["id"]), call_sid)
    ]
