"""Media per platform account: a BPO gives each client a Twilio subaccount, so each call's
recording is fetched, listed and deleted with the credentials of the account the call came
through (stored on the call), never another's. The fake Twilio holds two subaccounts with
different credentials and refuses either's credentials for the other's recordings, as Twilio
documents; the deployment's own account still serves the tenant ``default``."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.config import Settings
from service.db import migrations, tenancy
from service.db.pool import connect, create_pool
from service.platforms.twilio.accounts import Snapshot, TwilioMediaSources, credentials
from service.platforms.twilio.media import Credentials, MediaError, TwilioMedia
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, Service, db_url, service_role
from tests.intake_helpers import send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

Conn = asyncpg.Connection
SID_A, SID_B = ("AC" + secrets.token_hex(16) for _ in range(2))
TOKEN_A, TOKEN_B = (secrets.token_hex(16) for _ in range(2))
KEY_B, KEY_SECRET_B = "SK" + secrets.token_hex(16), secrets.token_hex(16)
NUMBER_A, NUMBER_B = "+842873001111", "+842873002222"


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    """As the service connects: row-level security keeps each tenant's pass to its calls."""
    p = await create_pool(service_role(database_url))
    yield p
    await p.close()


@pytest.fixture
async def tenants(db: Conn, monkeypatch: pytest.MonkeyPatch, twilio_media: FakeTwilioMedia) -> None:
    """Tenant a on subaccount A (auth token); tenant b on subaccount B, whose media API is
    called with an API key made in B (its auth token still signs B's webhooks)."""
    monkeypatch.setenv("TEST_TWILIO_TOKEN_A", TOKEN_A)
    monkeypatch.setenv("TEST_TWILIO_TOKEN_B", TOKEN_B)
    monkeypatch.setenv("TEST_TWILIO_KEY_SECRET_B", KEY_SECRET_B)
    rows: list[tuple[str, str, dict[str, str], dict[str, str], str]] = [
        ("tenant-a", SID_A, {}, {"auth_token_env": "TEST_TWILIO_TOKEN_A"}, NUMBER_A),
        (
            "tenant-b",
            SID_B,
            {"api_key_sid": KEY_B},
            {
                "auth_token_env": "TEST_TWILIO_TOKEN_B",
                "api_key_secret_env": "TEST_TWILIO_KEY_SECRET_B",
            },
            NUMBER_B,
        ),
    ]
    for tenant, sid, plain, refs, number in rows:
        await db.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant)
        await db.execute(
            "INSERT INTO tenant_accounts (platform, account_id, tenant_id, settings, secrets) "
            "VALUES ('twilio', $1, $2, $3, $4)",
            sid,
            tenant,
            plain,
            refs,
        )
        await db.execute(
            "INSERT INTO tenant_numbers (number, tenant_id) VALUES ($1, $2)", number, tenant
        )
    twilio_media.add_subaccount(SID_A, TOKEN_A)
    twilio_media.add_subaccount(SID_B, TOKEN_B)
    twilio_media.add_api_key(SID_B, KEY_B, KEY_SECRET_B)


def fake(http: aiohttp.ClientSession, service: Service, sid: str, token: str) -> FakeTwilio:
    return FakeTwilio(http, PUBLIC_URL, account_sid=sid, auth_token=token, send_to=service.base_url)


async def call_row(db: Conn, call_sid: str) -> asyncpg.Record:
    await tenancy.set_tenant(db, tenancy.ALL)
    row = await db.fetchrow(
        "SELECT c.tenant_id, c.platform, c.platform_account, c.outcome, r.state, "
        "r.platform_deleted_at FROM calls c LEFT JOIN recordings r ON r.call_id = c.id "
        "WHERE c.external_id = $1",
        call_sid,
    )
    assert row is not None
    return row


def usernames(media: FakeTwilioMedia, account: str) -> set[tuple[str, str]]:
    """(username, method) of every authenticated request to ``account``'s URLs."""
    return {(user, method) for (acc, user, method) in media.used if acc == account}


async def test_each_recording_is_fetched_and_deleted_with_its_own_accounts_credentials(
    tenants: None,
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
) -> None:
    a, b = fake(http, service, SID_A, TOKEN_A), fake(http, service, SID_B, TOKEN_B)
    call_a = await a.place_call("+84901230001", NUMBER_A, Caller.parse("stay"))
    call_b = await b.place_call("+84901230002", NUMBER_B, Caller.parse("stay"))
    refused_b = await b.place_call("+84901230003", NUMBER_B, Caller.parse("hang-up"))
    call_d = await twilio.place_call("+84901230004", "+842873001234", Caller.parse("stay"))
    rec_a, rec_b, rec_refused, rec_d = (new_recording_sid() for _ in range(4))
    twilio_media.add(rec_a, wav_bytes(1), call_sid=call_a.call_sid, account=SID_A)
    twilio_media.add(rec_b, wav_bytes(1), call_sid=call_b.call_sid, account=SID_B)
    twilio_media.add(rec_refused, wav_bytes(1), call_sid=refused_b.call_sid, account=SID_B)
    twilio_media.add(rec_d, wav_bytes(1), call_sid=call_d.call_sid)  # the main account's
    for sender, trace, rec in (
        (a, call_a, rec_a),
        (b, call_b, rec_b),
        (b, refused_b, rec_refused),
        (twilio, call_d, rec_d),
    ):
        status, _ = await send_recording(sender, trace.call_sid, rec)
        assert status == 204
    assert await settle(db) == {"done": 4}

    # each call says which account it came through
    row_a, row_b = await call_row(db, call_a.call_sid), await call_row(db, call_b.call_sid)
    row_d, row_refused = await call_row(db, call_d.call_sid), await call_row(db, refused_b.call_sid)
    assert (row_a["tenant_id"], row_a["platform"], row_a["platform_account"]) == (
        "tenant-a",
        "twilio",
        SID_A,
    )
    assert (row_b["tenant_id"], row_b["platform_account"]) == ("tenant-b", SID_B)
    assert (row_d["tenant_id"], row_d["platform_account"]) == (tenancy.DEFAULT, ACCOUNT_SID)
    for row in (row_a, row_b, row_d):
        assert row["state"] == "stored" and row["platform_deleted_at"] is not None
    assert row_refused["outcome"] == "hung_up_during_notice" and row_refused["state"] is None

    # every request to an account's URLs carried that account's own credentials, never the
    # main account's: A's auth token, B's API key, the configured account for `default`
    assert usernames(twilio_media, SID_A) == {(SID_A, "GET"), (SID_A, "DELETE")}
    assert usernames(twilio_media, SID_B) == {(KEY_B, "GET"), (KEY_B, "DELETE")}
    assert usernames(twilio_media, ACCOUNT_SID) == {(ACCOUNT_SID, "GET"), (ACCOUNT_SID, "DELETE")}
    assert twilio_media.unauthorised == 0
    assert twilio_media.gets[rec_refused] == 0  # refused: deleted unread, with B's key
    assert twilio_media.deletes == {rec_a: 1, rec_b: 1, rec_refused: 1, rec_d: 1}
    assert twilio_media.recordings == {}


async def test_the_fake_refuses_one_subaccounts_credentials_for_anothers_recording(
    tenants: None,
    intake_settings: Settings,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    tmp_path: Any,
) -> None:
    rec_b = new_recording_sid()
    twilio_media.add(rec_b, wav_bytes(1), account=SID_B)
    with_a = TwilioMedia(intake_settings, http, Credentials(SID_B, SID_A, TOKEN_A))
    with pytest.raises(MediaError, match="HTTP 401"):
        await with_a.download(rec_b, tmp_path / "a.wav")
    with pytest.raises(MediaError, match="HTTP 401"):
        await with_a.delete(rec_b)
    assert twilio_media.unauthorised == 2 and rec_b in twilio_media.recordings
    with_b = TwilioMedia(intake_settings, http, Credentials(SID_B, KEY_B, KEY_SECRET_B))
    got = await with_b.download(rec_b, tmp_path / "b.wav")
    assert got.size == len(wav_bytes(1))


async def test_the_reconciler_lists_each_call_with_its_own_account(
    tenants: None,
    service: Service,
    http: aiohttp.ClientSession,
    intake_settings: Settings,
    twilio_media: FakeTwilioMedia,
    pool: asyncpg.Pool[Any],
    db: Conn,
) -> None:
    from service.platforms.twilio.reconcile import reconcile_once

    a, b = fake(http, service, SID_A, TOKEN_A), fake(http, service, SID_B, TOKEN_B)
    call_a = await a.place_call("+84901230005", NUMBER_A, Caller.parse("stay"))
    call_b = await b.place_call("+84901230006", NUMBER_B, Caller.parse("stay"))
    rec_a, rec_b = new_recording_sid(), new_recording_sid()
    # the recording callbacks are lost: only a listing finds them
    twilio_media.add(rec_a, wav_bytes(1), call_sid=call_a.call_sid, account=SID_A)
    twilio_media.add(rec_b, wav_bytes(1), call_sid=call_b.call_sid, account=SID_B)

    sources = TwilioMediaSources.for_pool(intake_settings, http, pool)
    report = await reconcile_once(pool, sources, grace_s=0)
    assert (report.calls, report.found, report.failed) == (2, 2, 0)
    # each call listed once, under its own account's URL (the fake counts a listing only once
    # the credentials are that account's: A's token, B's key; see `usernames` below)
    assert twilio_media.lists == {call_a.call_sid: 1, call_b.call_sid: 1}

    assert await settle(db) == {"done": 2}
    for trace in (call_a, call_b):
        row = await call_row(db, trace.call_sid)
        assert row["state"] == "stored" and row["platform_deleted_at"] is not None
    assert usernames(twilio_media, SID_A) == {(SID_A, "GET"), (SID_A, "DELETE")}
    assert usernames(twilio_media, SID_B) == {(KEY_B, "GET"), (KEY_B, "DELETE")}
    assert twilio_media.unauthorised == 0 and twilio_media.recordings == {}


def test_credentials_fall_back_to_the_configured_account_only_for_the_default_tenant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_TWILIO_TOKEN_A", TOKEN_A)
    settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN)
    snapshot = Snapshot(
        accounts={
            SID_A: {"tenant-a": {"auth_token_env": "TEST_TWILIO_TOKEN_A"}},
            SID_B: {"tenant-b": {"auth_token_env": "TEST_UNSET_TWILIO_TOKEN"}},
        },
        numbers={},
    )
    configured = Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)
    assert credentials(settings, snapshot, tenancy.DEFAULT, None) == configured
    assert credentials(settings, snapshot, tenancy.DEFAULT, ACCOUNT_SID) == configured
    # the database away: the configured account still serves `default`
    assert credentials(settings, None, tenancy.DEFAULT, ACCOUNT_SID) == configured
    # a call from before calls recorded their account: the tenant's only account
    assert credentials(settings, snapshot, "tenant-a", None) == Credentials(SID_A, SID_A, TOKEN_A)
    with pytest.raises(MediaError, match="not registered to tenant 'tenant-a'"):
        credentials(settings, snapshot, "tenant-a", SID_B)  # another tenant's account
    with pytest.raises(MediaError, match="not registered to tenant 'tenant-a'"):
        credentials(settings, snapshot, "tenant-a", ACCOUNT_SID)  # never the configured one
    with pytest.raises(MediaError, match="unset or unreadable") as refused:
        credentials(settings, snapshot, "tenant-b", SID_B)
    assert TOKEN_A not in str(refused.value) and AUTH_TOKEN not in str(refused.value)


@pytest.fixture
async def database_before_0013(pg_base_url: str) -> AsyncIterator[str]:
    conn = await asyncpg.connect(pg_base_url)
    await conn.execute("CREATE DATABASE before_platform_account")
    await conn.close()
    yield db_url(pg_base_url, "before_platform_account")
    conn = await asyncpg.connect(pg_base_url)
    await conn.execute("DROP DATABASE before_platform_account WITH (FORCE)")
    await conn.close()


async def test_migration_backfills_the_account_where_it_is_known(
    database_before_0013: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls of a tenant with one Twilio account get it; `default` keeps NULL (its account is
    the configured one, in the environment); a tenant with two accounts cannot be told."""
    before = [m for m in migrations.available() if m.version < 13]
    conn = await connect(database_before_0013)
    try:
        monkeypatch.setattr(migrations, "available", lambda: before)
        await migrations.migrate(conn)
        monkeypatch.undo()
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('one', 'One'), ('two', 'Two')")
        for tenant, sid in (("one", SID_A), ("two", SID_A), ("two", SID_B)):
            await conn.execute(
                "INSERT INTO tenant_accounts (platform, account_id, tenant_id) "
                "VALUES ('twilio', $1, $2)",
                sid,
                tenant,
            )
        for tenant in ("default", "one", "two"):
            await conn.execute(
                "INSERT INTO calls (platform, external_id, policy, tenant_id) "
                "VALUES ('twilio', $1, '{}', $2)",
                "CA" + secrets.token_hex(16),
                tenant,
            )
        applied = await migrations.migrate(conn)
        assert [m.version for m in applied] == [
            m.version for m in migrations.available() if m.version >= 13
        ]
        rows = await conn.fetch("SELECT tenant_id, platform_account FROM calls ORDER BY tenant_id")
        assert [(r["tenant_id"], r["platform_account"]) for r in rows] == [
            ("default", None),
            ("one", SID_A),
            ("two", None),
        ]
        assert (
            await conn.fetchval(
                "INSERT INTO calls (external_id, policy, tenant_id) "
                "VALUES ('CA1', '{}', 'default') RETURNING platform"
            )
            == "twilio"
        )
    finally:
        await conn.close()
