"""The Twilio path's fault acceptance, one parametrised test run for each platform (issue 14 item
4): the bucket down for a while, and a replica killed with SIGKILL mid-upload while another
finishes. Each call is played by the platform's driver (tests/platform_drivers.py): Twilio and
Stringee announce a recording callvault fetches; a PBX uploads it (``PUT``), keeps its file on
no answer or a 5xx and uploads it again with the Asterisk recipe's script. On every platform:
no consented recording is lost (it opens to the bytes the platform had), no refused one is
kept or even fetched, no object, row or ledger event is duplicated, and the ledger verifies."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.config import Policy, Settings
from service.platforms.twilio.simulate import CallTrace
from tests.conftest import CONTINUE_URL, Service, make_bucket
from tests.intake_helpers import get_object, objects, open_sealed, settle
from tests.platform_drivers import (
    PLATFORMS,
    STRINGEE_KEY_SECRET,
    STRINGEE_KEY_SID,
    STRINGEE_SIGNING,
    Driver,
    driver,
    stringee_env,
    stringee_media,
)
from tests.serve_process import ServeProcess, serve_env
from tests.stringee_fake import FakeStringee as StringeeMedia
from tests.tcp_proxy import TcpProxy
from tests.twilio_media import FakeTwilioMedia, wav_bytes
from tests.waiting import eventually

Conn = asyncpg.Connection
HOTLINE = "+842873001234"  # explicit consent (the default policy here): 1 records, 2 refuses


@pytest.fixture
async def stringee() -> AsyncIterator[StringeeMedia]:
    async with stringee_media() as media:
        yield media


async def call_of(db: Conn, driver: Driver, trace: CallTrace) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT id, outcome FROM calls WHERE platform = $1 AND external_id = $2",
        driver.platform,
        trace.call_sid,
    )
    assert row is not None, trace.steps
    return row


async def assert_kept_once_and_refused_never(
    db: Conn,
    driver: Driver,
    endpoint: str,
    bucket: str,
    consented: CallTrace,
    body: bytes,
    refused: CallTrace,
) -> None:
    """What every fault must leave behind, once the platform and callvault have retried."""
    call = await call_of(db, driver, consented)
    assert call["outcome"] == "consented"
    recs = await db.fetch("SELECT * FROM recordings WHERE call_id = $1", call["id"])
    assert len(recs) == 1 and recs[0]["state"] == "stored", [dict(r) for r in recs]
    rec = recs[0]
    assert rec["sha256"] == hashlib.sha256(body).hexdigest()
    found = await objects(endpoint, bucket)
    # one object, one version (the bucket is versioned: a second PUT would show)
    assert [o["key"] for o in found] == [rec["object_key"]]
    # nothing lost: it opens, with the key callvault committed, to the platform's bytes
    stored = await get_object(endpoint, bucket, rec["object_key"])
    assert await open_sealed(db, rec["id"], stored) == body
    events = [e.type for e in await ledger.events_of(db, call["id"])]
    assert events.count("recording_stored") == 1, events
    if driver.copy_event:
        assert events.count(driver.copy_event) == 1, events
    assert driver.holds(consented) is driver.keeps_copy  # deleted once ours was safe
    if not driver.pushes:
        assert driver.fetched(consented) >= 1

    no = await call_of(db, driver, refused)
    assert no["outcome"] == "refused"
    stored = await db.fetchval(
        "SELECT count(*) FROM recordings WHERE call_id = $1 AND state = 'stored'", no["id"]
    )
    assert stored == 0
    assert driver.fetched(refused) == 0  # never downloaded
    assert driver.holds(refused) is driver.keeps_copy
    events = [e.type for e in await ledger.events_of(db, no["id"])]
    assert events.count("recording_discarded") == 1, events
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE state = 'stored'") == 1
    assert (await ledger.verify(db)).ok


@pytest.fixture
async def proxy(moto_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(moto_url)
    assert target.hostname and target.port
    p = TcpProxy(target.hostname, target.port)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
async def service(
    intake_settings: Settings, proxy: TcpProxy, stringee: StringeeMedia, moto_url: str
) -> AsyncIterator[Service]:
    svc = Service(
        replace(
            intake_settings,
            s3_bucket=await asyncio.to_thread(make_bucket, moto_url, True),
            s3_endpoint_url=f"http://127.0.0.1:{proxy.port}",
            job_max_attempts=50,
            defaults=Policy(consent_mode="explicit", continue_url=CONTINUE_URL),
            stringee_signing_secret=STRINGEE_SIGNING,
            stringee_api_key_sid=STRINGEE_KEY_SID,
            stringee_api_key_secret=STRINGEE_KEY_SECRET,
            stringee_api_urls=(stringee.base_url,),
        )
    )
    await svc.start()
    # every platform's requests and the notice URLs it is given reach this loopback server
    await svc.reconfigure(public_url=svc.base_url)
    yield svc
    await svc.stop()


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_bucket_down_for_a_while_loses_nothing(
    platform: str,
    service: Service,
    proxy: TcpProxy,
    http: aiohttp.ClientSession,
    db: Conn,
    moto_url: str,
    twilio_media: FakeTwilioMedia,
    stringee: StringeeMedia,
    tmp_path: Path,
) -> None:
    bucket = service.settings.s3_bucket
    assert bucket is not None
    drive = await driver(
        platform, http, service.base_url, db, tmp_path / "pbx", twilio_media, stringee
    )
    proxy.go_down()
    # calls are still answered while the bucket is away: the consent gate never touches it
    refused = await drive.call("+84901234001", HOTLINE, "press-2")
    consented = await drive.call("+84901234002", HOTLINE, "press-1")
    assert consented.errors == refused.errors == []
    assert consented.recording_started and not refused.recording_started
    body = wav_bytes(2)
    refusal = await drive.hand_over(refused, wav_bytes(1))
    handed = await drive.hand_over(consented, body)
    if drive.pushes:
        # the PBX is answered at once: not for this call (409), or not now (503, the one error
        # shape), which its upload script retries, keeping its file meanwhile
        assert (refusal.status, refusal.answer["error"]["code"]) == (409, "no_consent")
        assert (handed.status, handed.answer["error"]["code"]) == (503, "storage_unavailable")
        assert await drive.retry(service.base_url) == [1]  # still down: the file stays
        tmp = service.settings.home / "tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == []  # no half-received upload
    else:
        # the announcement is taken (204) and callvault's own job retries the store
        assert (refusal.status, handed.status) == (204, 204)

        async def retried() -> bool:
            return int(await db.fetchval("SELECT max(attempts) FROM jobs") or 0) >= 3

        await eventually(retried, what="intake retried three times")
        assert "S3" in await db.fetchval("SELECT last_error FROM jobs WHERE attempts >= 3")
    async with http.get(service.base_url + "/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["error"]["message"] == "object store unreachable"
    # nothing kept half-way, and the platform still holds the only copy
    assert drive.holds(consented)
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE state <> 'pending'") == 0
    assert await objects(moto_url, bucket) == []
    assert (
        await db.fetchval("SELECT count(*) FROM ledger_events WHERE type = 'recording_stored'") == 0
    )
    assert proxy.refused > 0

    proxy.come_back()
    assert await drive.retry(service.base_url) == ([0] if drive.pushes else [])
    assert set(await settle(db)) <= {"done"}
    # and it all comes again (a duplicated webhook, a PBX uploading its file twice): the same
    # answers, nothing more kept
    again = [await drive.repeat(refused), await drive.repeat(consented)]
    assert [h.status for h in again] == ([409, 201] if drive.pushes else [204, 204]), again
    assert set(await settle(db)) <= {"done"}
    await assert_kept_once_and_refused_never(db, drive, moto_url, bucket, consented, body, refused)


# ---- kill -9 ------------------------------------------------------------------------------


def replica(
    tmp_path: Path,
    name: str,
    database_url: str,
    moto_url: str,
    bucket: str,
    twilio_media: FakeTwilioMedia,
    stringee: StringeeMedia,
) -> ServeProcess:
    env = serve_env(
        tmp_path / name,
        database_url,
        moto_url,
        bucket,
        twilio_media.base_url,
        CALLVAULT_CONSENT_MODE="explicit",
        **stringee_env(stringee),
    )
    return ServeProcess(env, tmp_path / f"{name}.log")


# where the replica dies: after the download (nothing stored), after the object went to the
# bucket (no row says so yet: the worst moment for a duplicate), after the commit (stored, but
# the platform's copy not yet deleted, the PBX not yet answered)
KILLS = [
    ("twilio", "intake.after_download"),
    ("twilio", "intake.after_upload"),
    ("twilio", "intake.after_commit"),
    ("stringee", "intake.after_upload"),
    ("stringee", "intake.after_commit"),
    ("pbx", "intake.after_upload"),
    ("pbx", "intake.after_commit"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("platform", "failpoint"), KILLS)
async def test_a_replica_killed_mid_upload_loses_and_duplicates_nothing(
    platform: str,
    failpoint: str,
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    db: Conn,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    stringee: StringeeMedia,
) -> None:
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)  # versioned: see duplicates
    a = replica(tmp_path, "a", database_url, moto_url, bucket, twilio_media, stringee)
    b = replica(tmp_path, "b", database_url, moto_url, bucket, twilio_media, stringee)
    try:
        await a.start(CALLVAULT_FAILPOINTS=failpoint)
        drive = await driver(platform, http, a.url, db, tmp_path / "pbx", twilio_media, stringee)
        refused = await drive.call("+84901234001", HOTLINE, "press-2")
        consented = await drive.call("+84901234002", HOTLINE, "press-1")
        assert consented.recording_started and not refused.recording_started
        body = wav_bytes(2)
        assert (await drive.hand_over(refused, wav_bytes(1))).status in (204, 409)
        handed = await drive.hand_over(consented, body)
        # a PBX's upload dies with the replica: no answer, so it keeps its file
        assert handed.status == (0 if drive.pushes else 204), handed
        assert await a.wait_killed() == -signal.SIGKILL
        # what the crash left: the platform still holds the recording; the object is there
        # from the failpoint after the upload on
        assert drive.holds(consented)
        left = await objects(moto_url, bucket)
        assert len(left) == (0 if failpoint == "intake.after_download" else 1)
        state = await db.fetchval(
            "SELECT r.state FROM recordings r JOIN calls c ON c.id = r.call_id "
            "WHERE c.external_id = $1",
            consented.call_sid,
        )
        assert state == ("stored" if failpoint == "intake.after_commit" else "pending")

        # the load balancer sends everything to the other replica from now on; it takes up
        # the dead one's job once its lease runs out, and the PBX uploads its file again
        await b.start()
        assert await drive.retry(b.url) == ([0] if drive.pushes else [])
        assert set(await settle(db, timeout_s=120)) <= {"done"}
    finally:
        await asyncio.gather(a.stop(), b.stop())
    await assert_kept_once_and_refused_never(db, drive, moto_url, bucket, consented, body, refused)
