"""Intake of 200 recordings of 5 MB (a five-minute call) from the test-side Twilio media API to
the bucket, end to end through callvault's job queue (4 workers), beside a plain script that
downloads the same files and ``upload_file``s them with boto3 (4 threads)."""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import asyncpg
import boto3
from boto3.s3.transfer import TransferConfig

from tests.bench.bench_memory import signed_post
from tests.bench.harness import (
    ACCOUNT_SID,
    intake_env,
    make_bucket,
    media_api,
    moto,
    postgres,
    report,
    serve,
)

N = 200
SIZE = 5 * 1000 * 1000
WORKERS = 4


async def ours(db_url: str, cv: str) -> float:
    sids = []
    async with aiohttp.ClientSession() as session:
        for _ in range(N):
            call_sid = "CA" + secrets.token_hex(16)
            params = {
                "AccountSid": ACCOUNT_SID,
                "CallSid": call_sid,
                "From": "+84901234567",
                "To": "+842873001234",
                "CallStatus": "ringing",
            }
            await signed_post(session, cv, "/telephony/twilio/voice", params)
            await signed_post(session, cv, "/telephony/twilio/consent", params)
            sids.append((call_sid, "RE" + secrets.token_hex(12) + "1" * 8))
        conn = await asyncpg.connect(db_url)
        try:
            started = time.perf_counter()
            for call_sid, rec_sid in sids:
                await signed_post(
                    session,
                    cv,
                    "/telephony/twilio/recording",
                    {
                        "AccountSid": ACCOUNT_SID,
                        "CallSid": call_sid,
                        "RecordingSid": rec_sid,
                        "RecordingStatus": "completed",
                        "RecordingDuration": "300",
                    },
                )
            while await conn.fetchval("SELECT count(*) FROM jobs WHERE state <> 'done'"):
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            stored = await conn.fetchval("SELECT count(*) FROM recordings WHERE state = 'stored'")
            assert stored == N, stored
        finally:
            await conn.close()
    return elapsed


def baseline(media_url: str, endpoint: str, bucket: str) -> float:
    import urllib.request

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    config = TransferConfig(
        multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=4
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-base-"))

    def one(i: int) -> None:
        path = folder / f"{i}.wav"
        url = f"{media_url}/2010-04-01/Accounts/x/Recordings/RE{i:032d}.wav"
        with urllib.request.urlopen(url) as resp, path.open("wb") as out:  # noqa: S310
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        client.upload_file(
            str(path),
            bucket,
            f"baseline/{i}.wav",
            ExtraArgs={"ServerSideEncryption": "AES256"},
            Config=config,
        )
        path.unlink()

    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(one, range(1, N + 1)))
    return time.perf_counter() - started


async def run(db_url: str, endpoint: str) -> None:
    async with media_api(SIZE) as media_url:
        env = intake_env(
            "bench-intake-", db_url, endpoint, media_url, CALLVAULT_WORKERS=str(WORKERS)
        )
        async with serve(env) as (cv, _):
            ours_s = await ours(db_url, cv)
        base_s = await asyncio.to_thread(baseline, media_url, endpoint, make_bucket(endpoint))
    mb = N * SIZE / 1e6
    ratio = base_s / ours_s
    report(
        "intake",
        f"intake: {N} x 5 MB in {ours_s:.1f} s ({mb / ours_s:.0f} MB/s) vs plain download + "
        f"upload_file {base_s:.1f} s ({mb / base_s:.0f} MB/s) = {ratio:.2f} (goal >= 0.8)",
        seconds=ours_s,
        baseline_seconds=base_s,
        ratio=ratio,
    )


if __name__ == "__main__":
    with postgres() as database_url, moto() as s3:
        asyncio.run(run(database_url, s3))
