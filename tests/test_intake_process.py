"""Intake in a real ``callvault serve`` process: a recording far larger than the memory it may use
streams through with flat peak memory. (Killed with SIGKILL at the worst moments, for every
platform: tests/test_platforms_faults.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, make_bucket
from tests.intake_helpers import send_recording, settle
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
