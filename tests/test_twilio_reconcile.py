"""Lost recording callbacks: Twilio has the recording but the callback never reaches callvault
(Twilio retries it at most once by default). The reconciler lists the call's recordings and
hands each one to the callback's own path. Driven directly, with the grace period at zero or
the call's end moved back by the database's clock; the fake Twilio never sends the callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.config import Policy, Settings, load_settings
from service.db import tenancy
from service.db.pool import create_pool
from service.platforms.twilio.accounts import TwilioMediaSources
from service.platforms.twilio.reconcile import reconcile_once
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import CONTINUE_URL, Service
from tests.intake_helpers import objects, send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

CALLER = "+84901234678"
HOTLINE = "+842873001234"
Conn = asyncpg.Connection


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await create_pool(database_url)
    yield p
    await p.close()


@pytest.fixture
def api(
    intake_settings: Settings, http: aiohttp.ClientSession, pool: asyncpg.Pool[Any]
) -> TwilioMediaSources:
    """Each call's account's media API, the accounts read from the database."""
    return TwilioMediaSources.for_pool(intake_settings, http, pool)


async def call(twilio: FakeTwilio, behaviour: str = "stay") -> str:
    """A call that ends (Twilio's status callback), as every reconciled call has."""
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse(behaviour))
    return trace.call_sid


async def types_of(db: Conn, call_sid: str) -> list[str]:
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", call_sid)
    return [e.type for e in await ledger.events_of(db, call_id)]


async def test_a_lost_callback_is_found_stored_and_twilios_copy_deleted_once(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    pool: asyncpg.Pool[Any],
    api: TwilioMediaSources,
    moto_url: str,
    bucket: str,
) -> None:
    call_sid = await call(twilio)
    rec_sid, body = new_recording_sid(), wav_bytes(2)
    twilio_media.add(rec_sid, body, call_sid=call_sid)  # the callback is dropped on the floor

    report = await reconcile_once(pool, api, grace_s=0)
    assert (report.calls, report.found, report.settled) == (1, 1, 1)
    assert await settle(db) == {"done": 1}
    row = await db.fetchrow("SELECT state, sha256, platform_deleted_at FROM recordings")
    assert row["state"] == "stored" and row["platform_deleted_at"] is not None
    assert [o["size"] for o in await objects(moto_url, bucket)] == [sealed.sealed_size(len(body))]
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    types = await types_of(db, call_sid)
    assert types.index("recording_callback_missed") < types.index("recording_stored")
    assert types.count("platform_copy_deleted") == 1
    assert (await ledger.verify(db)).ok

    # another pass, and the callback arriving late after all, change nothing
    again = await reconcile_once(pool, api, grace_s=0)
    assert (again.calls, again.found) == (0, 0)
    assert twilio_media.lists[call_sid] == 1
    status, _ = await send_recording(twilio, call_sid, rec_sid)
    assert status == 204
    assert await settle(db) == {"done": 1}
    assert await db.fetchval("SELECT count(*) FROM recordings") == 1


async def test_the_grace_period_is_measured_by_the_database_clock(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    pool: asyncpg.Pool[Any],
    api: TwilioMediaSources,
) -> None:
    call_sid = await call(twilio)
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1), call_sid=call_sid)
    early = await reconcile_once(pool, api, grace_s=600)
    assert early.calls == 0 and twilio_media.lists[call_sid] == 0  # its callback may yet come
    # eleven minutes pass, as far as the database can tell
    await db.execute(
        "UPDATE calls SET ended_at = now() - interval '11 minutes', "
        "started_at = now() - interval '12 minutes' WHERE external_id = $1",
        call_sid,
    )
    late = await reconcile_once(pool, api, grace_s=600)
    assert (late.calls, late.found) == (1, 1)
    assert await settle(db) == {"done": 1}
    assert await db.fetchval("SELECT state FROM recordings") == "stored"


async def test_a_call_whose_callback_came_is_never_listed(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    pool: asyncpg.Pool[Any],
    api: TwilioMediaSources,
) -> None:
    call_sid = await call(twilio)
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1), call_sid=call_sid)
    await send_recording(twilio, call_sid, rec_sid)
    assert await settle(db) == {"done": 1}
    report = await reconcile_once(pool, api, grace_s=0)
    assert report.calls == 0 and twilio_media.lists[call_sid] == 0


async def test_replicas_reconciling_at_once_ask_about_each_call_once(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    database_url: str,
    api: TwilioMediaSources,
) -> None:
    calls = [await call(twilio) for _ in range(4)]
    for call_sid in calls:
        twilio_media.add(new_recording_sid(), wav_bytes(1), call_sid=call_sid)
    pools = [await create_pool(database_url) for _ in range(3)]
    try:
        reports = await asyncio.gather(
            *(reconcile_once(p, api, grace_s=0, batch=1, concurrency=1) for p in pools)
        )
    finally:
        for p in pools:
            await p.close()
    assert sum(r.found for r in reports) == 4
    assert sum(r.calls for r in reports) == 4
    assert all(twilio_media.lists[c] == 1 for c in calls)
    assert await settle(db) == {"done": 4}
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE state = 'stored'") == 4
    assert await db.fetchval("SELECT count(*) FROM recording_callbacks") == 4


async def test_a_replica_never_asks_about_a_call_another_is_asking_about(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    database_url: str,
    api: TwilioMediaSources,
) -> None:
    call_sid = await call(twilio)
    twilio_media.add(new_recording_sid(), wav_bytes(1), call_sid=call_sid)
    twilio_media.list_hold = asyncio.Event()  # replica A's listing is slow to answer
    a_pool, b_pool = await create_pool(database_url), await create_pool(database_url)
    try:
        a = asyncio.create_task(reconcile_once(a_pool, api, grace_s=0))

        async def a_is_asking() -> bool:
            return twilio_media.lists[call_sid] == 1

        await eventually(a_is_asking, what="replica A lists the call")
        # replica B's whole pass starts after A's claim and must leave the call alone
        b = await asyncio.wait_for(reconcile_once(b_pool, api, grace_s=0), timeout=30)
        assert b.calls == 0
        twilio_media.list_hold.set()
        assert (await a).found == 1
    finally:
        twilio_media.list_hold.set()
        await asyncio.gather(a, return_exceptions=True)
        await a_pool.close()
        await b_pool.close()
    assert twilio_media.lists[call_sid] == 1
    assert await settle(db) == {"done": 1}


async def test_a_refused_calls_stray_recording_is_deleted_without_download(
    service: Service,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    pool: asyncpg.Pool[Any],
    api: TwilioMediaSources,
    moto_url: str,
    bucket: str,
) -> None:
    await service.reconfigure(defaults=Policy(consent_mode="explicit", continue_url=CONTINUE_URL))
    call_sid = await call(twilio, "press-2")
    assert await db.fetchval("SELECT outcome FROM calls") == "refused"
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1), call_sid=call_sid)  # made by something else
    report = await reconcile_once(pool, api, grace_s=0)
    assert report.found == 1
    assert await settle(db) == {"done": 1}
    assert twilio_media.gets[rec_sid] == 0 and twilio_media.cdn_gets[rec_sid] == 0
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    assert await objects(moto_url, bucket) == []
    assert await db.fetchval("SELECT count(*) FROM recordings") == 0
    types = await types_of(db, call_sid)
    assert types[-3:] == [
        "recording_callback_missed",
        "recording_discarded",
        "platform_copy_deleted",
    ]


async def test_every_page_of_the_listing_is_read(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    pool: asyncpg.Pool[Any],
    api: TwilioMediaSources,
) -> None:
    twilio_media.list_page_cap = 1  # Twilio pages; one recording per page here
    call_sid = await call(twilio)
    sids = [new_recording_sid() for _ in range(3)]
    for sid in sids:
        twilio_media.add(sid, wav_bytes(1), call_sid=call_sid)
    report = await reconcile_once(pool, api, grace_s=0)
    assert report.found == 3 and twilio_media.lists[call_sid] == 3
    assert await settle(db) == {"done": 3}
    stored = await db.fetch("SELECT external_id FROM recordings WHERE state = 'stored'")
    assert sorted(r["external_id"] for r in stored) == sorted(sids)


async def test_a_recording_still_processing_is_asked_about_again_within_a_bound(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    pool: asyncpg.Pool[Any],
    api: TwilioMediaSources,
) -> None:
    first, second = await call(twilio), await call(twilio)
    done_later, never = new_recording_sid(), new_recording_sid()
    twilio_media.add(done_later, wav_bytes(1), call_sid=first, status="processing")
    twilio_media.add(never, wav_bytes(1), call_sid=second, status="processing")
    one = await reconcile_once(pool, api, grace_s=0, max_attempts=2)
    assert (one.calls, one.found, one.settled) == (2, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0  # nothing to fetch yet
    twilio_media.recordings[done_later].status = "completed"
    two = await reconcile_once(pool, api, grace_s=0, max_attempts=2)
    assert (two.calls, two.found, two.settled) == (2, 1, 1)
    three = await reconcile_once(pool, api, grace_s=0, max_attempts=2)
    assert three.calls == 0  # the bound: never listed forever
    assert twilio_media.lists[first] == 2 and twilio_media.lists[second] == 2
    assert await settle(db) == {"done": 1}


async def test_a_listing_that_fails_is_remembered_and_asked_again(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    pool: asyncpg.Pool[Any],
    intake_settings: Settings,
    http: aiohttp.ClientSession,
) -> None:
    from dataclasses import replace

    call_sid = await call(twilio)
    twilio_media.add(new_recording_sid(), wav_bytes(1), call_sid=call_sid)
    wrong = TwilioMediaSources.for_pool(
        replace(intake_settings, twilio_auth_token="0" * 32), http, pool
    )
    failed = await reconcile_once(pool, wrong, grace_s=0)
    assert (failed.calls, failed.failed, failed.found) == (1, 1, 0)
    error = await db.fetchval("SELECT last_error FROM recording_reconciliations")
    assert "401" in error and "auth token" in error
    ok = await reconcile_once(
        pool, TwilioMediaSources.for_pool(intake_settings, http, pool), grace_s=0
    )
    assert (ok.calls, ok.found) == (1, 1)


def test_reconcile_settings_are_durations() -> None:
    s = load_settings({"CALLVAULT_RECONCILE_GRACE": "5m", "CALLVAULT_RECONCILE_INTERVAL": "1h"})
    assert (s.reconcile_grace_s, s.reconcile_interval_s) == (300, 3600)
    d = load_settings({})
    assert (d.reconcile_grace_s, d.reconcile_interval_s) == (600, 900)


async def test_a_pass_run_as_every_tenant_is_refused_not_a_silent_no_op(
    twilio: FakeTwilio,
    db: Conn,
    pool: asyncpg.Pool[Any],
    api: TwilioMediaSources,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass's enroll names its tenant by the connection's setting: a caller that ran it as
    '*' (every tenant) would enroll no call and report an empty pass. No caller does today
    (for_each_tenant walks the tenants table, whose ids cannot be '*'); one that did is told."""
    await call(twilio)  # a call the pass takes up

    async def as_every_tenant(pool: Any, work: Any) -> list[Any]:
        with tenancy.as_tenant(tenancy.ALL):
            return [await work(tenancy.ALL)]

    monkeypatch.setattr(tenancy, "for_each_tenant", as_every_tenant)
    with pytest.raises(tenancy.NotOneTenant, match="as one tenant at a time"):
        await reconcile_once(pool, api, grace_s=0)
    monkeypatch.undo()
    assert await db.fetchval("SELECT count(*) FROM recording_reconciliations") == 0
    report = await reconcile_once(pool, api, grace_s=0)  # per tenant, as the scheduler runs it
    assert report.calls == 1
