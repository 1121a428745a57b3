"""Intake in a real ``callvault serve`` process: killed with SIGKILL at the worst moments, then
restarted, it converges to one object, one row, one ledger entry and no platform copy; and a
recording far larger than the memory it may use streams through with flat peak memory."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.simulate import Caller, FakeTwilio
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, SECRET_KEY, free_port, make_bucket
from tests.intake_helpers import objects, send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

pytestmark = pytest.mark.slow
CALLER = "+84901234678"
HOTLINE = "+842873001234"


class ServeProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.port = int(env["CALLVAULT_PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, **extra_env: str) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "service",
                "serve",
                env={**self.env, **extra_env},
                stdout=log,
                stderr=log,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                if self.proc.returncode is not None:
                    raise AssertionError(f"serve exited: {self.log.read_text()[-2000:]}")
                try:
                    async with session.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)  # waiting for the process to come up
        raise AssertionError("serve did not become ready")

    async def wait_killed(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def peak_rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


@pytest.fixture
async def serve(
    tmp_path: Path, database_url: str, moto_url: str, twilio_media: FakeTwilioMedia
) -> AsyncIterator[ServeProcess]:
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)  # versioned: see duplicates
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(
        CALLVAULT_HOME=str(tmp_path / "home"),
        CALLVAULT_PORT=str(free_port()),
        CALLVAULT_DATABASE_URL=database_url,
        CALLVAULT_S3_BUCKET=bucket,
        CALLVAULT_S3_ENDPOINT_URL=moto_url,
        CALLVAULT_S3_REGION="us-east-1",
        CALLVAULT_SECRET_KEY=SECRET_KEY,
        CALLVAULT_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        CALLVAULT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        CALLVAULT_TWILIO_API_URL=twilio_media.base_url,
        CALLVAULT_CONTINUE_URL="https://contact-centre.example.vn/next",
        CALLVAULT_JOB_LEASE="2s",
        CALLVAULT_JOB_BACKOFF="1s",
        CALLVAULT_JOB_BACKOFF_CAP="2s",
    )
    env["CALLVAULT_PUBLIC_URL"] = f"http://127.0.0.1:{env['CALLVAULT_PORT']}"
    proc = ServeProcess(env, tmp_path / "serve.log")
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
    assert found[0]["key"] == rec["object_key"] and found[0]["size"] == len(body)
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
