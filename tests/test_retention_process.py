"""Retention with the real scheduler inside two ``callvault serve`` processes on one database
and one bucket: a recording stored with a two-second retention is purged on time, every expired
recording is purged exactly once, and no held one is touched."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from retention import holds
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage.s3 import S3Store
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, SECRET_KEY, make_bucket
from tests.intake_helpers import objects, send_recording
from tests.seed import seed_recording
from tests.serve_process import ServeProcess, serve_env
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

pytestmark = pytest.mark.slow
VAULT = PhoneVault(SECRET_KEY)
PUBLIC = "https://callvault.example.vn"


async def test_scheduled_purge_in_two_replicas(
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
) -> None:
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)
    store = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    expired = [await seed_recording(db, store, VAULT, tmp_path) for _ in range(30)]
    held = [
        await seed_recording(db, store, VAULT, tmp_path, caller="+84933333333") for _ in range(3)
    ]
    await holds.place(db, VAULT, "test", phone="+84933333333", reason="court order")

    replicas = [
        ServeProcess(
            serve_env(
                tmp_path / name,
                database_url,
                moto_url,
                bucket,
                twilio_media.base_url,
                public_url=PUBLIC,
                CALLVAULT_PURGE_INTERVAL="1s",
                CALLVAULT_RETENTION="2s",
            ),
            tmp_path / f"{name}.log",
        )
        for name in ("a", "b")
    ]
    await asyncio.gather(*(r.start() for r in replicas))
    try:
        async with aiohttp.ClientSession() as session:
            platform = FakeTwilio(
                session,
                PUBLIC,
                account_sid=ACCOUNT_SID,
                auth_token=AUTH_TOKEN,
                send_to=replicas[0].url,
            )
            trace = await platform.place_call("+84901234678", "+842873001234", Caller.parse("stay"))
            rec_sid = new_recording_sid()
            twilio_media.add(rec_sid, wav_bytes(1))
            await send_recording(platform, trace.call_sid, rec_sid)

        # wait for the scheduler: the live recording is stored, then purged when its 2 s end
        async def all_purged() -> bool:
            state = await db.fetchval(
                "SELECT state FROM recordings WHERE external_id = $1", rec_sid
            )
            left = await db.fetchval(
                "SELECT count(*) FROM recordings WHERE state = 'stored' AND id <> ALL($1)",
                [r["recording_id"] for r in held],
            )
            return bool(state == "purged" and left == 0)

        await eventually(all_purged, what="the replicas purge every expired recording")
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
        await store.close()
    live = await db.fetchrow("SELECT * FROM recordings WHERE external_id = $1", rec_sid)
    assert live["purged_at"] >= live["retain_until"]  # not a moment early, by the db's clock
    counts = await db.fetch(
        "SELECT call_id, count(*) AS n FROM ledger_events WHERE type = 'purged' GROUP BY call_id"
    )
    assert len(counts) == len(expired) + 1 and all(r["n"] == 1 for r in counts)
    keys = {o["key"] for o in await objects(moto_url, bucket)}
    assert keys == {r["key"] for r in held}
    assert {
        await db.fetchval("SELECT state FROM recordings WHERE id = $1", r["recording_id"])
        for r in held
    } == {"stored"}
    logs = "".join(r.log.read_text() for r in replicas)
    assert logs.count('"message": "purge pass"') >= 1
