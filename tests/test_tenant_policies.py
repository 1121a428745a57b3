"""Tenants' policies come from the database (issue 13 item 8): resolved once per replica (tenant,
then queue, then number, retention within the tenant's bounds), kept fresh on every replica by
NOTIFY, and a webhook for a tenant's account that cannot be resolved while the database is away
answers 503 (counted for the call steps), never 403 and never 500."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.app import create_app
from service.config import Policy, Settings
from service.db import tenancy
from service.db.pool import create_pool
from service.db.roles import SERVICE_ROLE
from service.errors import ConfigError
from service.platforms.twilio.simulate import FakeTwilio
from service.tenants import apply, model, policies
from service.tenants.policies import TENANT_DIRECTORY, Directory, TenantPolicies
from service.web.context import SETTINGS
from tests.conftest import CONTINUE_URL, PUBLIC_URL, Service
from tests.qa_fixtures import call_api
from tests.tcp_proxy import TcpProxy
from tests.test_database_outage import _sample
from tests.waiting import eventually

Conn = asyncpg.Connection
DAY = 86400
SID_ACME = "AC" + "a1" * 16
TOKEN_ACME = secrets.token_hex(16)
ACME_NUMBER, ACME_SALES_NUMBER = "+842873005551", "+842873005552"
ACME_CONTINUE = "https://acme.example.vn/ivr"
CALLER = "+84901234555"
VOICE = "/telephony/twilio/voice"


# --- resolution, without a database ------------------------------------------------------------


def test_tenant_then_queue_then_number_over_the_deployment_defaults() -> None:
    defaults = Policy(language="vi-VN", retention_s=90 * DAY, continue_url=CONTINUE_URL)
    acme = TenantPolicies(
        defaults,
        {"consent_mode": "explicit", "continue_url": ACME_CONTINUE, "notice_version": 1},
        {"sales": {"language": "en-US", "retention": 30 * DAY}},
        {
            ACME_NUMBER: (None, {"never_record": True}),
            ACME_SALES_NUMBER: ("sales", {"gather_timeout": 5}),
            "+842873005553": ("sales", {}),
        },
    )
    base = acme.policy_for(None)
    assert (base.consent_mode, base.language, base.retention_s) == ("explicit", "vi-VN", 90 * DAY)
    assert base.continue_url == ACME_CONTINUE and base.queue is None
    assert acme.policy_for(ACME_NUMBER).never_record is True
    sales = acme.policy_for(ACME_SALES_NUMBER)
    assert (sales.queue, sales.language, sales.retention_s) == ("sales", "en-US", 30 * DAY)
    assert (sales.gather_timeout_s, sales.consent_mode) == (5, "explicit")
    # a queue named by the webhook URL wins over the number's own queue, its keys over both
    crossed = acme.policy_for(ACME_NUMBER, "sales")
    assert (crossed.queue, crossed.language, crossed.never_record) == ("sales", "en-US", True)
    assert acme.policy_for("+842873005553", "sales") is acme.policy_for(None, "sales")
    assert acme.policy_for("+84999999999") is base  # not one of the tenant's numbers
    with pytest.raises(ConfigError, match="unknown queue"):
        acme.policy_for(ACME_NUMBER, "billing")


def test_the_continue_url_is_never_the_deployments_and_retention_stays_in_bounds() -> None:
    defaults = Policy(retention_s=90 * DAY, continue_url=CONTINUE_URL, consent_mode="explicit")
    beta = TenantPolicies(
        defaults,
        {"retention_min": 180 * DAY, "retention_max": 365 * DAY},
        {"vip": {"retention": 200 * DAY}},
        {},
    )
    base = beta.policy_for(None)
    assert base.continue_url is None  # another contact centre's IVR is never the fallback
    assert base.consent_mode == "explicit"  # the deployment's default, not the contact centre's
    assert base.retention_s == 180 * DAY  # the inherited 90 days raised to the tenant's minimum
    assert beta.policy_for(None, "vip").retention_s == 200 * DAY
    short = TenantPolicies(Policy(retention_s=400 * DAY), {"retention_max": 365 * DAY}, {}, {})
    assert short.policy_for(None).retention_s == 365 * DAY


def test_a_platforms_own_key_is_the_numbers_then_its_queues_then_the_tenants() -> None:
    # Stringee's continue_scco: no Policy field carries it, the directory still resolves it
    tenant, queue, number = [{"action": "talk", "text": "ACME"}], [{"action": "connect"}], []
    acme = TenantPolicies(
        Policy(),
        {"continue_scco": tenant},
        {"sales": {"continue_scco": queue}, "support": {}},
        {
            ACME_NUMBER: (None, {"continue_scco": number}),
            ACME_SALES_NUMBER: ("sales", {}),
            "+842873005553": ("support", {}),
        },
    )
    assert acme.stored("continue_scco", ACME_NUMBER) == number  # an empty list is a value
    assert acme.stored("continue_scco", ACME_SALES_NUMBER) == queue
    assert acme.stored("continue_scco", "+842873005553") == tenant  # its queue has none
    assert acme.stored("continue_scco", "+84999999999") == tenant  # not one of its numbers
    assert acme.stored("continue_scco", None) == tenant
    assert TenantPolicies(Policy(), {}, {}, {}).stored("continue_scco", None) is None


# --- through the service ---------------------------------------------------------------------


ACME_SPEC: dict[str, Any] = {
    "name": "ACME Insurance",
    "consent_mode": "implied",
    "continue_url": ACME_CONTINUE,
    "retention_min": "120d",
    "queues": {"sales": {"language": "en-US", "retention": "150d"}},
    "numbers": {ACME_NUMBER: {}, ACME_SALES_NUMBER: {"queue": "sales"}},
    "twilio": {"account_sid": SID_ACME, "auth_token_env": "TEST_ACME_TWILIO_TOKEN"},
}


async def apply_spec(db: Conn, tenant_id: str, body: dict[str, Any]) -> None:
    """What `tenant apply` and PUT /api/tenants/ID do, in one transaction."""
    async with db.transaction():
        await apply.plan_and_apply(db, [model.parse_tenant(tenant_id, body)], "test", dry_run=False)


@pytest.fixture
async def acme(db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ACME_TWILIO_TOKEN", TOKEN_ACME)
    await apply_spec(db, "acme", ACME_SPEC)


def acme_twilio(http: aiohttp.ClientSession, service: Service) -> FakeTwilio:
    return FakeTwilio(
        http, PUBLIC_URL, account_sid=SID_ACME, auth_token=TOKEN_ACME, send_to=service.base_url
    )


async def call_policy(db: Conn, call_sid: str) -> dict[str, Any]:
    await tenancy.set_tenant(db, tenancy.ALL)
    row = await db.fetchrow("SELECT tenant_id, policy FROM calls WHERE external_id = $1", call_sid)
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    assert row is not None
    return {"tenant": row["tenant_id"], **row["policy"]}


async def test_a_tenants_call_gets_the_tenants_policy_and_default_keeps_the_settings(
    acme: None, service: Service, http: aiohttp.ClientSession, twilio: FakeTwilio, db: Conn
) -> None:
    fake = acme_twilio(http, service)
    sales_sid, plain_sid, default_sid = ("CA" + secrets.token_hex(16) for _ in range(3))
    status, body = await fake.post(
        fake.url(VOICE), fake.call_params(sales_sid, CALLER, ACME_SALES_NUMBER)
    )
    assert status == 200 and "<Play" in body, body
    sales = await call_policy(db, sales_sid)
    assert sales["tenant"] == "acme"
    assert (sales["queue"], sales["language"]) == ("sales", "en-US")
    assert sales["retention_s"] == 150 * DAY
    assert sales["continue_url"] == ACME_CONTINUE
    await fake.post(fake.url(VOICE), fake.call_params(plain_sid, CALLER, ACME_NUMBER))
    plain = await call_policy(db, plain_sid)
    # the deployment's 90 days, raised to acme's minimum
    assert (plain["queue"], plain["retention_s"]) == (None, 120 * DAY)
    # the configured account is the tenant `default`: the settings' policy, as before tenants
    await twilio.post(twilio.url(VOICE), twilio.call_params(default_sid, CALLER, ACME_NUMBER))
    default = await call_policy(db, default_sid)
    assert default["tenant"] == tenancy.DEFAULT
    assert (default["continue_url"], default["retention_s"]) == (CONTINUE_URL, 90 * DAY)


async def test_a_policy_applied_on_one_replica_is_used_by_another_without_restart(
    acme: None,
    settings: Settings,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No periodic re-read within the test: only the NOTIFY can bring the change.
    monkeypatch.setattr(policies, "REFRESH_S", 3600.0)
    one, two = Service(settings), Service(settings)
    await one.start()
    await two.start()
    try:
        fake = acme_twilio(http, two)
        status, body = await fake.post(
            fake.url(VOICE), fake.call_params("CA" + secrets.token_hex(16), CALLER, ACME_NUMBER)
        )
        assert status == 200 and "<Gather" not in body  # implied: the notice, then a redirect
        assert two.server is not None
        listening = _listening(two.server.app[TENANT_DIRECTORY])
        await eventually(listening, what="replica two listens", timeout_s=20)

        explicit = {**ACME_SPEC, "consent_mode": "explicit"}
        status, answer = await call_api(
            http, one, "PUT", "/api/tenants/acme", tokens["operator"], explicit
        )
        assert status == 200 and answer["changed"], answer

        async def explicit_on_two() -> bool:
            _, body = await fake.post(
                fake.url(VOICE),
                fake.call_params("CA" + secrets.token_hex(16), CALLER, ACME_NUMBER),
            )
            return "<Gather" in body

        await eventually(explicit_on_two, what="replica two asks for a key press", timeout_s=20)
    finally:
        await one.stop()
        await two.stop()


async def _listeners(db: Conn) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND datname = current_database()",
        policies.LISTENER_NAME,
    )
    return count


async def test_two_listeners_reload_on_notify_and_reconnect_after_losing_the_line(
    acme: None, settings: Settings, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policies, "REFRESH_S", 3600.0)
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url)
    replicas = [Directory(settings, pool), Directory(settings, pool)]
    try:
        for replica in replicas:
            await replica.start()
        await eventually(lambda: _ready(replicas), what="both directories listen", timeout_s=20)
        assert all(r.policy_for("acme", ACME_NUMBER).never_record is False for r in replicas)

        await apply_spec(db, "acme", {**ACME_SPEC, "never_record": True})

        async def both_never_record() -> bool:
            return all(r.policy_for("acme", ACME_NUMBER).never_record for r in replicas)

        await eventually(both_never_record, what="both replicas re-read acme", timeout_s=20)

        # the listening connections are cut; a change made while nobody listens is read when
        # they are back (they re-read after reconnecting)
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            policies.LISTENER_NAME,
        )
        await eventually(
            lambda: _ready(replicas, listening=False), what="the loss is noticed", timeout_s=20
        )
        await apply_spec(db, "acme", {**ACME_SPEC, "never_record": False})

        async def both_back() -> bool:
            return await _ready(replicas) and not any(
                r.policy_for("acme", ACME_NUMBER).never_record for r in replicas
            )

        await eventually(both_back, what="both replicas listen again, up to date", timeout_s=30)

        # sampled until it holds: a terminated backend may still be listed for a moment on a
        # loaded machine; a leaked third listener would stay
        async def two_listeners() -> bool:
            return await _listeners(db) == 2

        await eventually(two_listeners, what="exactly the two replicas' listeners", timeout_s=30)
    finally:
        for replica in replicas:
            await replica.stop()
        await pool.close()


async def test_a_change_nobody_announced_is_read_at_the_next_periodic_refresh(
    acme: None, settings: Settings, db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policies, "REFRESH_S", 0.5)
    assert settings.database_url is not None
    pool = await create_pool(settings.database_url)
    directory = Directory(settings, pool)
    try:
        await directory.start()
        await eventually(_listening(directory), what="the directory listens", timeout_s=20)
        assert directory.policy_for("acme", ACME_NUMBER).consent_mode == "implied"
        # by hand, past `tenant apply`: no NOTIFY is sent
        await db.execute(
            "UPDATE tenants SET policy = policy || $1 WHERE id = 'acme'",
            {"consent_mode": "explicit"},
        )

        async def explicit() -> bool:
            return directory.policy_for("acme", ACME_NUMBER).consent_mode == "explicit"

        await eventually(explicit, what="the periodic re-read finds the change", timeout_s=20)
    finally:
        await directory.stop()
        await pool.close()


async def _ready(replicas: list[Directory], *, listening: bool = True) -> bool:
    return all(r.listening is listening for r in replicas)


# --- the database away -------------------------------------------------------------------------


@pytest.fixture
async def db_proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    """The database behind a proxy that can refuse, as in tests/test_database_outage.py."""
    socket_dir = parse_qs(urlsplit(database_url).query)["host"][0]
    socket = next(p for p in Path(socket_dir).glob(".s.PGSQL.*") if p.suffix != ".lock")
    proxy = TcpProxy("", 0, unix_path=str(socket))
    await proxy.start()
    yield proxy
    await proxy.close()


def _proxied(settings: Settings, database_url: str, proxy: TcpProxy) -> Settings:
    name = urlsplit(database_url).path.lstrip("/")
    return replace(
        settings,
        database_url=f"postgresql://{SERVICE_ROLE}@127.0.0.1:{proxy.port}/{name}",
        db_acquire_timeout_s=0.5,
        db_statement_timeout_s=0.5,
    )


async def _fallbacks(http: aiohttp.ClientSession, base_url: str) -> float:
    async with http.get(base_url + "/metrics") as resp:
        text = await resp.text()
    try:
        return _sample(text, 'callvault_voice_fallbacks_total{step="voice"}')
    except AssertionError:
        return 0.0


@pytest.fixture
async def cold_service(
    acme: None, settings: Settings, database_url: str, db_proxy: TcpProxy
) -> AsyncIterator[Service]:
    """A replica whose database went away after its pool opened and before it read the tenant
    tables: a cold start with the database down."""

    async def database_goes_away(app: web.Application) -> AsyncIterator[None]:
        db_proxy.go_down()
        yield

    app = create_app(_proxied(settings, database_url, db_proxy), apply_migrations=False)
    app.cleanup_ctx.insert(app.cleanup_ctx.index(policies.directory_ctx), database_goes_away)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    svc = Service(app[SETTINGS])
    svc.server, svc.port = server, server.port
    yield svc
    await server.close()


async def test_cold_start_without_the_database_answers_503_never_403(
    cold_service: Service, db_proxy: TcpProxy, http: aiohttp.ClientSession, db: Conn
) -> None:
    assert cold_service.server is not None
    assert cold_service.server.app[TENANT_DIRECTORY].snapshot is None  # never read
    fake = acme_twilio(http, cold_service)
    sid = "CA" + secrets.token_hex(16)
    recording = {
        **fake.call_params(sid, CALLER, ACME_NUMBER, "completed"),
        "RecordingSid": "RE" + "b" * 32,
        "RecordingStatus": "completed",
        "RecordingDuration": "12",
    }
    for path, params in (
        (VOICE, fake.call_params(sid, CALLER, ACME_NUMBER)),
        ("/telephony/twilio/status", fake.call_params(sid, CALLER, ACME_NUMBER, "completed")),
        ("/telephony/twilio/recording", recording),
    ):
        status, body = await fake.post(fake.url(path), params)
        assert status == 503, (path, body)
        assert json.loads(body)["error"]["code"] == "database_unavailable"
    # an account nobody knows cannot be told from one not read yet: 503 as well, not 403
    stranger = FakeTwilio(
        http,
        PUBLIC_URL,
        account_sid="AC" + secrets.token_hex(16),
        auth_token=TOKEN_ACME,
        send_to=cold_service.base_url,
    )
    status, _ = await stranger.post(
        stranger.url(VOICE), stranger.call_params(sid, CALLER, ACME_NUMBER)
    )
    assert status == 503
    # the voice steps that fell through to Twilio's Fallback URL are counted
    assert await _fallbacks(http, cold_service.base_url) == 2
    # the configured account is the tenant `default`'s without reading anything: as before
    default = FakeTwilio(
        http,
        PUBLIC_URL,
        account_sid=cold_service.settings.twilio_account_sid or "",
        auth_token=cold_service.settings.twilio_auth_token or "",
        send_to=cold_service.base_url,
    )
    status, body = await default.post(
        default.url(VOICE), default.call_params("CA" + secrets.token_hex(16), CALLER, ACME_NUMBER)
    )
    assert status == 200 and f'<Redirect method="POST">{CONTINUE_URL}</Redirect>' in body, body

    db_proxy.come_back()

    async def acme_answered() -> bool:
        status, body = await fake.post(
            fake.url(VOICE), fake.call_params("CA" + secrets.token_hex(16), CALLER, ACME_NUMBER)
        )
        return status == 200 and "<Play" in body

    await eventually(acme_answered, what="acme's calls get the notice again", timeout_s=30)
    await tenancy.set_tenant(db, tenancy.ALL)
    assert await db.fetchval("SELECT count(*) FROM calls WHERE external_id = $1", sid) == 0


@pytest.fixture
async def proxied_service(
    acme: None, settings: Settings, database_url: str, db_proxy: TcpProxy
) -> AsyncIterator[Service]:
    svc = Service(_proxied(settings, database_url, db_proxy))
    await svc.start()
    yield svc
    await svc.stop()


async def test_with_the_database_away_a_known_tenant_continues_to_its_own_ivr_and_a_new_one_is_503(
    proxied_service: Service,
    db_proxy: TcpProxy,
    http: aiohttp.ClientSession,
    db: Conn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert proxied_service.server is not None
    directory = proxied_service.server.app[TENANT_DIRECTORY]
    await eventually(_listening(directory), what="the directory listens", timeout_s=20)
    fake = acme_twilio(http, proxied_service)
    db_proxy.go_down()
    await eventually(_listening(directory, False), what="the loss is noticed", timeout_s=20)

    status, body = await fake.post(
        fake.url(VOICE), fake.call_params("CA" + secrets.token_hex(16), CALLER, ACME_NUMBER)
    )
    assert status == 200, body  # read before the outage: verified, and let through unrecorded
    assert body.endswith(f'<Redirect method="POST">{ACME_CONTINUE}</Redirect></Response>'), body
    assert await _fallbacks(http, proxied_service.base_url) == 1

    # a tenant applied while this replica cannot hear about it (written past the proxy)
    late_sid, late_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv("TEST_LATE_TWILIO_TOKEN", late_token)
    await apply_spec(
        db,
        "late",
        {
            "name": "Late",
            "continue_url": "https://late.example.vn/ivr",
            "twilio": {"account_sid": late_sid, "auth_token_env": "TEST_LATE_TWILIO_TOKEN"},
        },
    )
    late = FakeTwilio(
        http,
        PUBLIC_URL,
        account_sid=late_sid,
        auth_token=late_token,
        send_to=proxied_service.base_url,
    )
    params = late.call_params("CA" + secrets.token_hex(16), CALLER, "+842873005559")
    status, body = await late.post(late.url(VOICE), params)
    assert status == 503, body  # it may well be known: never 403
    status, _ = await late.post(
        late.url("/telephony/twilio/status"), {**params, "CallStatus": "completed"}
    )
    assert status == 503

    db_proxy.come_back()

    async def late_answered() -> bool:
        status, _ = await late.post(late.url(VOICE), params)
        return status == 200

    await eventually(late_answered, what="the late tenant's call is answered", timeout_s=30)


def _listening(directory: Directory, wanted: bool = True) -> Any:
    async def check() -> bool:
        return directory.listening is wanted

    return check
