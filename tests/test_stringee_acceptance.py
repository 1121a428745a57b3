"""The Twilio path's acceptance, run for Stringee: whole calls played by the fake Stringee
(tests/stringee_fake.py runs the SCCOs it is answered) against the real application (PostgreSQL
as the service role, moto's S3 over HTTP), for two tenants' projects side by side: the tenant
``default`` with the environment's project, and ``acme`` with a project in ``tenant_accounts``
whose number (``tenant_numbers``) decides the answer_url's tenant."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.config import Policy, Settings
from service.db import tenancy
from service.db.pool import create_pool
from service.platforms.stringee import reconcile as stringee_reconcile
from service.platforms.stringee.rest_auth import ApiKey
from service.platforms.stringee.sources import StringeeMediaSources
from service.storage import sealed
from service.tenants.apply import plan_and_apply
from service.tenants.model import parse_file
from tests.conftest import Service
from tests.intake_helpers import objects, settle
from tests.stringee_fake import Caller, FakeStringee, PlayedCall, call_event, call_id
from tests.twilio_media import wav_bytes
from tests.waiting import eventually

DEFAULT_KEY = ApiKey("SKdefault0123456789", "default-api-key-secret-0123456789")
ACME_KEY = ApiKey("SKacme0123456789abc", "acme-api-key-secret-0123456789abc")
DEFAULT_SIGNING = "default-project-signing-secret"
ACME_SIGNING = "acme-project-signing-secret"
ACME_PROJECT = "4242"
ACME_NUMBER = "842473000001"  # as Stringee writes it: no "+"
DEFAULT_NUMBER = "842473082686"
CONTINUE = [
    {
        "action": "connect",
        "from": {"type": "external", "number": DEFAULT_NUMBER, "alias": DEFAULT_NUMBER},
        "to": {"type": "internal", "number": "agent_1", "alias": "agent_1"},
        "peerToPeerCall": False,
    }
]
ACME_CONTINUE = [{"action": "talk", "text": "ACME xin chào", "bargeIn": True}]


@dataclass
class Project:
    tenant: str
    account: str | None
    number: str
    fake: FakeStringee


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeStringee]]:
    made = {
        "default": FakeStringee(DEFAULT_KEY.sid, DEFAULT_KEY.secret, DEFAULT_SIGNING),
        "acme": FakeStringee(
            ACME_KEY.sid, ACME_KEY.secret, ACME_SIGNING, project_id=int(ACME_PROJECT)
        ),
    }
    for fake in made.values():
        await fake.start()
    yield made
    for fake in made.values():
        await fake.close()
        assert fake.cdn_credentials == 0


ACME_FILE = f"""
[tenants.acme]
name = "ACME"
continue_scco = [{{ action = "talk", text = "ACME xin chào", bargeIn = true }}]
[tenants.acme.stringee]
project_id = "{ACME_PROJECT}"
api_key_sid = "{ACME_KEY.sid}"
api_key_secret_env = "ACME_STRINGEE_KEY"
signing_secret_env = "ACME_STRINGEE_SIGNING"
[tenants.acme.numbers."+{ACME_NUMBER}"]
"""


@pytest.fixture
async def acme(db: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The tenant acme, written by ``tenant apply``: its number, its project, its continue."""
    monkeypatch.setenv("ACME_STRINGEE_SIGNING", ACME_SIGNING)
    monkeypatch.setenv("ACME_STRINGEE_KEY", ACME_KEY.secret)
    async with db.transaction():
        await plan_and_apply(db, parse_file(tomllib.loads(ACME_FILE)), "test", dry_run=False)


def stringee_settings(base: Settings, fakes: dict[str, FakeStringee]) -> Settings:
    return replace(
        base,
        defaults=Policy(consent_mode="explicit", gather_retries=1),
        stringee_signing_secret=DEFAULT_SIGNING,
        stringee_api_key_sid=DEFAULT_KEY.sid,
        stringee_api_key_secret=DEFAULT_KEY.secret,
        # one deployment, two projects' keys: each host is asked in turn (a 401 moves on)
        stringee_api_urls=(fakes["default"].base_url, fakes["acme"].base_url),
        stringee_continue_scco=tuple(CONTINUE),
        recording_format="wav",
    )


async def start(settings: Settings) -> Service:
    svc = Service(settings)
    await svc.start()
    # the eventUrls callvault writes into its SCCOs must reach this loopback server
    await svc.reconfigure(public_url=svc.base_url)
    return svc


@pytest.fixture
async def service(
    intake_settings: Settings, fakes: dict[str, FakeStringee], acme: None
) -> AsyncIterator[Service]:
    svc = await start(stringee_settings(intake_settings, fakes))
    yield svc
    await svc.stop()


@pytest.fixture
def projects(fakes: dict[str, FakeStringee]) -> dict[str, Project]:
    return {
        "default": Project("default", None, DEFAULT_NUMBER, fakes["default"]),
        "acme": Project("acme", ACME_PROJECT, ACME_NUMBER, fakes["acme"]),
    }


async def play(
    http: aiohttp.ClientSession,
    service: Service,
    project: Project,
    caller: Caller,
    call_id: str | None = None,
) -> PlayedCall:
    return await project.fake.run_call(
        http,
        base_url=service.base_url,
        answer_path="/telephony/stringee/answer",
        event_url=service.base_url + "/telephony/stringee/event",
        caller=caller,
        to=project.number,
        call_id_=call_id,
    )


async def call_row(db: asyncpg.Connection[Any], played: PlayedCall) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT * FROM calls WHERE platform = 'stringee' AND external_id = $1", played.call_id
    )
    assert row is not None
    return row


async def types_of(db: asyncpg.Connection[Any], played: PlayedCall) -> list[str]:
    return [e.type for e in await ledger.events_of(db, (await call_row(db, played))["id"])]


@pytest.mark.parametrize("tenant", ["default", "acme"])
async def test_consent_records_stores_and_says_the_platform_copy_is_retained(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
    moto_url: str,
    bucket: str,
    tenant: str,
) -> None:
    project = projects[tenant]
    body = wav_bytes(2)
    played = await play(http, service, project, Caller(digits="1", recording=body))
    assert all(status in (200, 204) for _, status in played.statuses), played.statuses
    assert played.recorded
    # record comes first, then the tenant's own continue actions
    assert played.sccos[-1][0]["action"] == "record"
    assert played.sccos[-1][1:] == (ACME_CONTINUE if tenant == "acme" else CONTINUE)
    assert await settle(db) == {"done": 1}

    call = await call_row(db, played)
    assert (call["tenant_id"], call["platform_account"], call["outcome"]) == (
        tenant,
        project.account,
        "consented",
    )
    rec = await db.fetchrow("SELECT * FROM recordings WHERE call_id = $1", call["id"])
    assert rec["state"] == "stored" and rec["sha256"] == hashlib.sha256(body).hexdigest()
    assert rec["platform_deleted_at"] is None  # Stringee's copy is still there
    found = await objects(moto_url, bucket)
    assert len(found) == 1 and found[0]["size"] == sealed.sealed_size(len(body))
    assert project.fake.gets[played.call_id] == 1  # fetched once, with this project's JWT
    types = await types_of(db, played)
    assert types[:3] == ["call_started", "notice_played", "consent_given"]
    assert types.count("recording_stored") == 1 and types.count("platform_copy_retained") == 1
    assert "platform_copy_deleted" not in types
    # the ledger says what the caller heard: Stringee streamed our rendered notice, whose hash
    # is the hash of the file it streamed
    events = await ledger.events_of(db, call["id"])
    notice = next(e for e in events if e.type == "notice_played").details
    streamed = played.played[0]
    assert notice["stringee_action"] == streamed["action"] == "stream"
    assert notice["file"] == streamed["fileName"]
    async with http.get(streamed["fileName"]) as resp:
        assert hashlib.sha256(await resp.read()).hexdigest() == notice["sha256"]
    assert (await ledger.verify(db)).ok


@pytest.mark.parametrize("tenant", ["default", "acme"])
async def test_refusal_is_never_recorded_and_a_late_recording_is_never_downloaded(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
    moto_url: str,
    bucket: str,
    tenant: str,
) -> None:
    project = projects[tenant]
    played = await play(http, service, project, Caller(digits="2"))
    assert not played.recorded
    assert played.sccos[-1] == (ACME_CONTINUE if tenant == "acme" else CONTINUE)
    call = await call_row(db, played)
    assert call["outcome"] == "refused" and call["tenant_id"] == tenant
    # a record eventUrl for it anyway (a replay, or a recording made outside callvault)
    project.fake.add(played.call_id, wav_bytes(1))
    query = f"?tenant={tenant}" + (f"&project={project.account}" if project.account else "")
    status, _ = await project.fake.post(
        http,
        service.base_url + "/telephony/stringee/recording" + query,
        {"call_id": played.call_id, "recordId": played.call_id},
    )
    assert status == 204
    assert await settle(db) == {"done": 1}
    assert project.fake.gets[played.call_id] == 0  # never downloaded
    assert await objects(moto_url, bucket) == []
    types = await types_of(db, played)
    assert "consent_refused" in types and "recording_discarded" in types
    assert types.count("platform_copy_retained") == 1


async def test_a_lost_record_event_is_found_in_the_call_log_and_stored_once(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
    service_url: str,
    moto_url: str,
    bucket: str,
) -> None:
    """Stringee documents no webhook retry: a record eventUrl lost on the way is found by the
    reconciler in Stringee's call log (``recorded: 1``) and stored as if it had come; a refused
    call (``recorded: 0``) and a call whose eventUrl did come are left alone."""
    lost = {
        tenant: await project.fake.run_call(
            http,
            base_url=service.base_url,
            answer_path="/telephony/stringee/answer",
            event_url=service.base_url + "/telephony/stringee/event",
            caller=Caller(digits="1", recording=wav_bytes(1 + n)),
            to=project.number,
            send_record_event=False,
        )
        for n, (tenant, project) in enumerate(projects.items())
    }
    came = await play(http, service, projects["default"], Caller(digits="1"))
    refused = await play(http, service, projects["default"], Caller(digits="2"))
    assert await settle(db) == {"done": 1}  # only the eventUrl that came
    pool = await create_pool(service_url)  # as serve runs it: row-level security holds
    try:
        sources = StringeeMediaSources.for_pool(service.settings, http, pool)
        report = await stringee_reconcile.reconcile_once(pool, sources, grace_s=0)
        assert (report.calls, report.found, report.settled, report.failed) == (3, 2, 3, 0)
        await settle(db)
        again = await stringee_reconcile.reconcile_once(pool, sources, grace_s=0)
        assert again.calls == 0  # settled calls are not asked about again
    finally:
        await pool.close()
    for tenant, played in lost.items():
        fake = projects[tenant].fake
        assert fake.log_gets[played.call_id] == 1 and fake.gets[played.call_id] == 1
        call = await call_row(db, played)
        rec = await db.fetchrow("SELECT * FROM recordings WHERE call_id = $1", call["id"])
        assert rec["state"] == "stored", tenant
        events = await ledger.events_of(db, call["id"])
        missed = [e.details for e in events if e.type == "recording_callback_missed"]
        assert missed == [
            {"recording_sid": played.call_id, "status": "completed", "found_by": "call_log"}
        ]
    assert projects["default"].fake.log_gets[came.call_id] == 0  # its eventUrl came
    assert projects["default"].fake.gets[refused.call_id] == 0  # asked, never downloaded
    assert len(await objects(moto_url, bucket)) == 3
    assert (await ledger.verify(db)).ok


async def test_silence_is_not_consent(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
) -> None:
    played = await play(http, service, projects["acme"], Caller(digits=None))
    assert not played.recorded
    # asked twice (one retry), then the call goes on unrecorded
    assert [a["action"] for a in played.played] == ["stream", "stream", "talk"]
    call = await call_row(db, played)
    assert call["outcome"] == "no_input"
    types = await types_of(db, played)
    assert types.count("notice_played") == 2 and "consent_given" not in types


@pytest.mark.parametrize("tenant", ["default", "acme"])
async def test_hang_up_during_the_notice(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
    tenant: str,
) -> None:
    played = await play(http, service, projects[tenant], Caller(hang_up_during_notice=True))
    assert not played.recorded and ("input", 200) not in played.statuses
    call = await call_row(db, played)
    assert call["outcome"] == "hung_up_during_notice" and call["ended_at"] is not None
    assert (await types_of(db, played))[-2:] == ["call_ended", "hung_up_during_notice"]


async def test_duplicated_and_shuffled_callbacks_change_nothing(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
    moto_url: str,
    bucket: str,
) -> None:
    import random

    project = projects["acme"]
    played = await play(http, service, project, Caller(digits="1", recording=wav_bytes(1)))
    assert await settle(db) == {"done": 1}
    before = await types_of(db, played)
    event_url = service.base_url + "/telephony/stringee/event"
    events = [
        call_event(played.call_id, s, project_id=int(ACME_PROJECT)) for s in ("answered", "ended")
    ]
    statuses = await project.fake.deliver(
        http, event_url, events, duplicate=[0, 1], shuffle=random.Random(7)
    )
    assert statuses == [204] * 4
    record_url = (
        service.base_url + f"/telephony/stringee/recording?tenant=acme&project={ACME_PROJECT}"
    )
    payload = {"call_id": played.call_id, "recordId": played.call_id}
    assert await project.fake.deliver(http, record_url, [payload], duplicate=[0]) == [204, 204]
    assert await settle(db) == {"done": 1}
    assert await types_of(db, played) == before
    assert project.fake.gets[played.call_id] == 1
    assert len(await objects(moto_url, bucket)) == 1


async def test_a_project_shared_by_two_tenants_is_told_apart_by_the_called_number(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
) -> None:
    """A BPO's one Stringee project serving two clients: each client's number decides."""
    beta_number = "842473000002"
    shared = (
        ACME_FILE
        + f"""
[tenants.beta]
name = "Beta"
[tenants.beta.stringee]
project_id = "{ACME_PROJECT}"
api_key_sid = "{ACME_KEY.sid}"
api_key_secret_env = "ACME_STRINGEE_KEY"
signing_secret_env = "ACME_STRINGEE_SIGNING"
[tenants.beta.numbers."+{beta_number}"]
"""
    )
    async with db.transaction():
        await plan_and_apply(db, parse_file(tomllib.loads(shared)), "test", dry_run=False)

    async def beta_known() -> bool:  # tenant apply reaches a running service within seconds
        params = {"from": "84909986668", "to": beta_number, "uuid": "call-vn-1-PROBE00001-1"}
        status, _ = await projects["acme"].fake.answer(
            http, service.base_url, "/telephony/stringee/answer", params
        )
        return status == 200

    await eventually(beta_known, what="the beta tenant's number is routed", timeout_s=20)
    beta = Project("beta", ACME_PROJECT, beta_number, projects["acme"].fake)
    played = {
        name: await play(http, service, project, Caller(digits="2"))
        for name, project in (("acme", projects["acme"]), ("beta", beta))
    }
    for name, call in played.items():
        assert ("ended", 204) in call.statuses
        row = await call_row(db, call)
        # the ended event (project-wide, same project) reached the call of the right tenant
        assert (row["tenant_id"], row["outcome"], row["ended_at"] is not None) == (
            name,
            "refused",
            True,
        )


async def test_two_projects_using_the_same_call_id_each_get_their_own_call_and_recording(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
    moto_url: str,
    bucket: str,
    service_url: str,
) -> None:
    """Platform ids are unique per project, not across tenants: a tenant whose own project
    uses another tenant's callId (and so recordId) neither fails nor blocks the other."""
    same = call_id()
    bodies = {"default": wav_bytes(2), "acme": wav_bytes(3)}
    for name in ("default", "acme"):
        played = await play(
            http, service, projects[name], Caller(digits="1", recording=bodies[name]), same
        )
        assert played.call_id == same
        assert all(status in (200, 204) for _, status in played.statuses), (name, played)
        assert played.recorded
    assert await settle(db) == {"done": 2}
    rows = await db.fetch(
        "SELECT c.tenant_id, c.outcome, r.state, r.sha256, r.external_id FROM calls c "
        "JOIN recordings r ON r.call_id = c.id AND r.tenant_id = c.tenant_id "
        "WHERE c.platform = 'stringee' AND c.external_id = $1 ORDER BY c.tenant_id",
        same,
    )
    assert [tuple(r) for r in rows] == [
        (name, "consented", "stored", hashlib.sha256(bodies[name]).hexdigest(), same)
        for name in ("acme", "default")
    ]
    assert len(await objects(moto_url, bucket)) == 2
    for name in ("default", "acme"):  # each fetched from its own project, once
        assert projects[name].fake.gets[same] == 1
    # and under row-level security each tenant sees only its own
    conn = await asyncpg.connect(service_url)
    try:
        for name in ("default", "acme"):
            await tenancy.set_tenant(conn, name)
            seen = await conn.fetch(
                "SELECT tenant_id FROM calls WHERE platform = 'stringee' AND external_id = $1",
                same,
            )
            assert [r["tenant_id"] for r in seen] == [name]
    finally:
        await conn.close()


async def test_bad_signature_unknown_number_and_malformed_requests_write_nothing(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
) -> None:
    acme = projects["acme"]
    params = {
        "from": "84909986668",
        "to": ACME_NUMBER,
        "uuid": "call-vn-1-FORGED0001-1",
        "fromInternal": "false",
    }
    uri = FakeStringee.request_uri("/telephony/stringee/answer", params)
    # signed with the default project's secret, for acme's number: refused
    wrong = projects["default"].fake.sign_uri(uri)
    async with http.get(service.base_url + uri, headers=wrong) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "bad_signature"
    # the event_url signed by nobody
    body = json.dumps(
        call_event("call-vn-1-FORGED0002-1", "ended", project_id=int(ACME_PROJECT))
    ).encode()
    async with http.post(
        service.base_url + "/telephony/stringee/event",
        data=body,
        headers={"X-STRINGEE-SIGNATURE": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
    ) as resp:
        assert resp.status == 403
    # a project of nobody's
    bad = json.dumps(call_event("call-vn-1-FORGED0003-1", "ended", project_id=999)).encode()
    async with http.post(
        service.base_url + "/telephony/stringee/input?tenant=acme&project=999",
        data=bad,
        headers=acme.fake.sign_body(bad),
    ) as resp:
        assert resp.status == 403
    # signed, but not JSON: 400 with the one error shape
    junk = b"{not json"
    async with http.post(
        service.base_url + f"/telephony/stringee/input?tenant=acme&project={ACME_PROJECT}",
        data=junk,
        headers=acme.fake.sign_body(junk),
    ) as resp:
        assert resp.status == 400
        assert set((await resp.json())["error"]) >= {"code", "message"}
    assert await db.fetchval("SELECT count(*) FROM calls") == 0
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_an_unknown_number_without_a_deployment_project_is_refused(
    intake_settings: Settings,
    fakes: dict[str, FakeStringee],
    acme: None,
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
) -> None:
    settings = replace(stringee_settings(intake_settings, fakes), stringee_signing_secret=None)
    svc = await start(settings)
    try:
        params = {"from": "84909986668", "to": "842400000000", "uuid": "call-vn-1-NOBODY0001-1"}
        uri = FakeStringee.request_uri("/telephony/stringee/answer", params)
        async with http.get(svc.base_url + uri, headers=fakes["acme"].sign_uri(uri)) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "unknown_number"
    finally:
        await svc.stop()
    assert await db.fetchval("SELECT count(*) FROM calls") == 0


async def test_rate_limited_download_waits_as_long_as_stringee_says(
    service: Service,
    projects: dict[str, Project],
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = projects["acme"].fake
    stored = fake.add
    # the recording answers 429 with a Retry-After longer than callvault waits in place
    monkeypatch.setattr(
        fake,
        "add",
        lambda media_id, body, **_: stored(media_id, body, rate_limited=1, retry_after="600"),
    )
    played = await play(http, service, projects["acme"], Caller(digits="1", recording=wav_bytes(1)))
    assert played.recorded

    async def failed_once() -> bool:
        return bool(await db.fetchval("SELECT attempts FROM jobs WHERE state = 'queued'") or 0)

    await eventually(failed_once, what="the recording job ran once and was put back")
    row = await db.fetchrow(
        "SELECT run_after > now() + interval '500 seconds' AS later, last_error FROM jobs"
    )
    assert row["later"] and "429" in row["last_error"]
    assert fake.rate_limited == 1
