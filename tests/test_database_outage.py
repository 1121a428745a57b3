"""A database that refuses or hangs must not take the calls down (issue 12, item 8): the voice
and consent steps let the call go on without recording, quickly; callbacks answer 503 so the
platform may retry; nothing is written. The service reaches PostgreSQL through a TCP proxy that
refuses or hangs on command."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from service.config import Settings
from service.db.roles import SERVICE_ROLE
from service.platforms.twilio.simulate import FakeTwilio
from tests.conftest import CONTINUE_URL, Service, new_sid
from tests.stringee_fake import FakeStringee, call_event
from tests.tcp_proxy import TcpProxy

CALLER = "+84901234678"
HOTLINE = "+842873001234"
# Each webhook below must answer within this bound; the service's own timeouts are 0.5 s.
ANSWER_BOUND_S = 20.0


@pytest.fixture
async def db_proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    socket_dir = parse_qs(urlsplit(database_url).query)["host"][0]
    socket = next(p for p in Path(socket_dir).glob(".s.PGSQL.*") if p.suffix != ".lock")
    proxy = TcpProxy("", 0, unix_path=str(socket))
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def service(
    settings: Settings, database_url: str, db_proxy: TcpProxy
) -> AsyncIterator[Service]:
    name = urlsplit(database_url).path.lstrip("/")
    svc = Service(
        replace(
            settings,
            database_url=f"postgresql://{SERVICE_ROLE}@127.0.0.1:{db_proxy.port}/{name}",
            db_acquire_timeout_s=0.5,
            db_statement_timeout_s=0.5,
        )
    )
    await svc.start()
    yield svc
    await svc.stop()


async def _counts(db: asyncpg.Connection) -> tuple[int, int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM calls) AS calls, (SELECT count(*) FROM ledger_events) AS ev,"
        " (SELECT count(*) FROM jobs) AS jobs"
    )
    assert row is not None
    return row["calls"], row["ev"], row["jobs"]


def _continues_unrecorded(body: str) -> None:
    root = ET.fromstring(body)
    assert root.tag == "Response"
    assert root.find("Start") is None and root.find(".//Recording") is None, body
    assert [(el.tag, el.text) for el in root] == [("Redirect", CONTINUE_URL)], body


async def _metrics(twilio: FakeTwilio, service: Service) -> str:
    async with twilio.session.get(service.base_url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name}")


async def _webhook(twilio: FakeTwilio, path: str, params: dict[str, str]) -> tuple[int, str]:
    return await asyncio.wait_for(twilio.post(twilio.url(path), params), ANSWER_BOUND_S)


@pytest.mark.parametrize("fault", ["refused", "hung"])
async def test_voice_continues_without_recording_when_the_database_is_out_of_reach(
    twilio: FakeTwilio, service: Service, db_proxy: TcpProxy, db: asyncpg.Connection, fault: str
) -> None:
    # a call answered normally first, so the pool holds live connections when the fault hits
    status, _ = await _webhook(
        twilio, "/telephony/twilio/voice", twilio.call_params(new_sid(), CALLER, HOTLINE)
    )
    assert status == 200
    before = await _counts(db)
    db_proxy.go_down() if fault == "refused" else db_proxy.hang()

    status, body = await _webhook(
        twilio, "/telephony/twilio/voice", twilio.call_params(new_sid(), CALLER, HOTLINE)
    )
    assert status == 200
    _continues_unrecorded(body)
    # a caller who pressed 1 while the database was away is not recorded either
    status, body = await _webhook(
        twilio,
        "/telephony/twilio/consent?attempt=1",
        {**twilio.call_params(new_sid(), CALLER, HOTLINE), "Digits": "1"},
    )
    assert status == 200
    _continues_unrecorded(body)
    assert await _counts(db) == before
    # the scrape still answers during the outage, and counts the calls let through
    metrics = await _metrics(twilio, service)
    assert _sample(metrics, 'callvault_voice_fallbacks_total{step="voice"}') == 1
    assert _sample(metrics, 'callvault_voice_fallbacks_total{step="consent"}') == 1
    assert _sample(metrics, "callvault_database_reachable") == 0

    db_proxy.come_back()
    status, body = await _webhook(
        twilio, "/telephony/twilio/voice", twilio.call_params(new_sid(), CALLER, HOTLINE)
    )
    assert status == 200 and "<Play" in body  # the notice again, once the database is back


@pytest.mark.parametrize("fault", ["refused", "hung"])
async def test_callbacks_answer_503_when_the_database_is_out_of_reach(
    twilio: FakeTwilio, service: Service, db_proxy: TcpProxy, db: asyncpg.Connection, fault: str
) -> None:
    db_proxy.go_down() if fault == "refused" else db_proxy.hang()
    sid = new_sid()
    recording = {
        **twilio.call_params(sid, CALLER, HOTLINE, "completed"),
        "RecordingSid": "RE" + "a" * 32,
        "RecordingStatus": "completed",
        "RecordingDuration": "12",
    }
    for path, params in (
        ("/telephony/twilio/recording", recording),
        ("/telephony/twilio/status", twilio.call_params(sid, CALLER, HOTLINE, "completed")),
    ):
        status, body = await _webhook(twilio, path, params)
        assert status == 503, (path, body)
        assert '"database_unavailable"' in body
    db_proxy.come_back()
    assert await _counts(db) == (0, 0, 0)


def test_outage_and_listener_settings_are_read_from_the_environment() -> None:
    from service.config import load_settings

    settings = load_settings(
        {
            "CALLVAULT_DB_ACQUIRE_TIMEOUT": "1s",
            "CALLVAULT_DB_STATEMENT_TIMEOUT": "4s",
            "CALLVAULT_HEADER_TIMEOUT": "10s",
            "CALLVAULT_MAX_CONNECTIONS": "500",
            "CALLVAULT_METRICS_CACHE": "30s",
            "CALLVAULT_JOB_RETENTION": "14d",
            "CALLVAULT_METRICS_TOKEN": "scrape-me",
        }
    )
    assert (settings.db_acquire_timeout_s, settings.db_statement_timeout_s) == (1, 4)
    assert (settings.header_timeout_s, settings.max_connections) == (10, 500)
    assert (settings.metrics_cache_s, settings.job_retention_s) == (30, 14 * 86400)
    assert settings.metrics_token == "scrape-me"
    defaults = load_settings({})
    assert (defaults.db_acquire_timeout_s, defaults.db_statement_timeout_s) == (2.0, 3.0)
    assert defaults.metrics_token is None and defaults.trusted_proxies == ()


STRINGEE_SIGNING = "stringee-project-signing-secret"
STRINGEE_CONTINUE = ({"action": "talk", "text": "Xin chờ trong giây lát"},)


@pytest.mark.parametrize("fault", ["refused", "hung"])
async def test_stringee_calls_continue_unrecorded_and_its_callbacks_answer_503(
    service: Service, db_proxy: TcpProxy, db: asyncpg.Connection, http: Any, fault: str
) -> None:
    await service.reconfigure(
        stringee_signing_secret=STRINGEE_SIGNING, stringee_continue_scco=STRINGEE_CONTINUE
    )
    fake = FakeStringee("SKoutage0123456", "outage-key-secret", STRINGEE_SIGNING)

    async def answer(call: str) -> tuple[int, Any]:
        params = {"from": "84901234678", "to": "842873001234", "uuid": call}
        return await asyncio.wait_for(
            fake.answer(http, service.base_url, "/telephony/stringee/answer", params),
            ANSWER_BOUND_S,
        )

    status, scco = await answer("call-vn-1-OUTAGE0001-1")
    assert status == 200 and scco[0]["action"] == "stream"  # the notice, database up
    before = await _counts(db)
    db_proxy.go_down() if fault == "refused" else db_proxy.hang()

    status, scco = await answer("call-vn-1-OUTAGE0002-1")
    assert (status, scco) == (200, list(STRINGEE_CONTINUE))
    # a caller who pressed 1 while the database was away is not recorded either
    status, body = await asyncio.wait_for(
        fake.post(
            http,
            service.base_url + "/telephony/stringee/input?tenant=default&attempt=1",
            {"call_id": "call-vn-1-OUTAGE0001-1", "dtmf": "1", "timeout": False},
        ),
        ANSWER_BOUND_S,
    )
    assert (status, json.loads(body)) == (200, list(STRINGEE_CONTINUE))
    for path, payload in (
        ("/telephony/stringee/event", call_event("call-vn-1-OUTAGE0001-1", "ended")),
        (
            "/telephony/stringee/recording?tenant=default",
            {"call_id": "call-vn-1-OUTAGE0001-1", "recordId": "rec-1"},
        ),
    ):
        status, body = await asyncio.wait_for(
            fake.post(http, service.base_url + path, payload), ANSWER_BOUND_S
        )
        assert status == 503, (path, body)
        assert b'"database_unavailable"' in body
    db_proxy.come_back()
    assert await _counts(db) == before
