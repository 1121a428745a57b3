"""Intake in a real ``callvault serve`` process: killed with SIGKILL at the worst moments, then
restarted, it converges to one object, one row, one ledger entry and no platform copy; and a
recording far larger than the memory it may use streams through with flat peak memory."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, make_bucket
from tests.intake_helpers import get_object, objects, open_sealed, send_recording, settle
from tests.serve_process import ServeProcess, serve_env
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

pytestmark = pytest.mark.slow
CALLER = "+84901234678"
HOTLINE = "+842873001234"


@pytest.fixture
async def serve(
    tmp_path: Path, database_url: str, moto_url: str, twilio_media: FakeTwilioMedia
) -> AsyncIterator[ServeProcess]:
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)  # versioned: see duplicates
    proc = ServeProcess(
        serve_env(tmp_path / "home", database_url, moto_url, bucket, twilio_media.base_url),
        tmp_path / "serve.log",
    )
    proc.bucket = bucket  # type: ignore[attr-defined]
    yield proc
    await proc.stop()


@pytest.fixture
async def platform(serve: ServeProcess) -> AsyncIterator[FakeTwilio]:
    async with aiohttp.ClientSession() as session:
        yield FakeTwilio(session, serve.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)


async def _recorded_call(platform: FakeTwilio, media: FakeTwilioMedia, body: bytes) -> str:
    trace = await platform.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert trace.recording_started, trace.errors
    rec_sid = new_recording_sid()
    media.add(rec_sid, body)
    status, _ = await send_recording(platform, trace.call_sid, rec_sid)
    assert status == 204
    return rec_sid


@pytest.mark.parametrize(
    ("failpoint", "object_before_restart", "state_before_restart"),
    [
        ("intake.after_download", False, "pending"),
        ("intake.after_upload", True, "pending"),
        ("intake.after_commit", True, "stored"),
    ],
)
async def test_killed_mid_intake_converges_after_restart(
    serve: ServeProcess,
    platform: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    moto_url: str,
    failpoint: str,
    object_before_restart: bool,
    state_before_restart: str,
) -> None:
    bucket: str = serve.bucket  # type: ignore[attr-defined]
    await serve.start(CALLVAULT_FAILPOINTS=failpoint)
    body = wav_bytes(2)
    rec_sid = await _recorded_call(platform, twilio_media, body)
    assert await serve.wait_killed() == -signal.SIGKILL
    # what the crash left behind
    assert bool(await objects(moto_url, bucket)) is object_before_restart
    assert await db.fetchval("SELECT state FROM recordings") == state_before_restart
    assert twilio_media.deletes[rec_sid] == 0, "platform copy deleted before ours was safe"
    assert await db.fetchval("SELECT state FROM jobs") == "running"  # its lease will expire

    await serve.start()  # no failpoint: the new process reclaims the job after the lease
    assert await settle(db, timeout_s=90) == {"done": 1}
    found = await objects(moto_url, bucket)
    assert len(found) == 1, [o["key"] for o in found]  # one object, one version
    rec = await db.fetchrow("SELECT * FROM recordings")
    assert rec["state"] == "stored" and rec["platform_deleted_at"] is not None
    assert found[0]["key"] == rec["object_key"]
    assert found[0]["size"] == sealed.sealed_size(len(body))
    # nothing lost: the sealed object opens with the key the first run committed
    stored = await get_object(moto_url, bucket, rec["object_key"])
    assert await open_sealed(db, rec["id"], stored) == body
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    events = [e.type for e in await ledger.events_of(db, rec["call_id"])]
    assert events.count("recording_stored") == 1
    assert events.count("platform_copy_deleted") == 1
    assert (await ledger.verify(db)).ok


async def test_a_recording_much_larger_than_memory_streams_through(
    serve: ServeProcess,
    platform: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    moto_url: str,
) -> None:
    await serve.start()
    # warm up: the first intake loads boto3 and friends
    await _recorded_call(platform, twilio_media, wav_bytes(1))
    await settle(db)
    before = serve.peak_rss_kib()

    size = 256 * 1024 * 1024
    header = wav_bytes(0.01)[:44]

    async def chunks() -> Any:
        yield header
        zero = bytes(1 << 20)
        left = size - len(header)
        while left > 0:
            n = min(left, len(zero))
            yield zero[:n]
            left -= n

    trace = await platform.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    rec_sid = new_recording_sid()
    twilio_media.add_stream(rec_sid, size, chunks)
    await send_recording(platform, trace.call_sid, rec_sid)
    assert await settle(db, timeout_s=240) == {"done": 2}
    grown_mib = (serve.peak_rss_kib() - before) / 1024
    stored = await db.fetchval("SELECT size_bytes FROM recordings WHERE external_id = $1", rec_sid)
    assert stored == size
    print(f"peak RSS growth for a 256 MiB recording: {grown_mib:.1f} MiB")
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB for a 256 MiB recording"
