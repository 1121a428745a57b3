"""Intake of 200 recordings of 5 MB (a five-minute call) from the test-side Twilio media API to
the bucket, end to end through callvault's job queue (4 workers), beside a plain script that
downloads the same files and ``upload_file``s them with boto3 (4 threads). Each side's timed
stretch also counts the CPU every process spent (serve, moto, PostgreSQL, the media stand-in,
this process) and the whole machine's: both sides keep the 2 cores near busy, so the ratio
follows their CPU totals, and the line gives the ratio callvault's CPU would allow were every
core busy all of its stretch (the limit on this machine)."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import asyncpg
import boto3
from boto3.s3.transfer import TransferConfig

from tests.bench import procs
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


async def ours(db_url: str, cv: str, cpu: procs.CpuSplit) -> float:
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
            with cpu.measuring():
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
    conn = await asyncpg.connect(db_url)
    postmaster = procs.parent(await conn.fetchval("SELECT pg_backend_pid()"))
    await conn.close()
    moto_pid = procs.child_running(os.getpid(), "moto.server")
    async with media_api(SIZE) as media_url:
        media_pid = procs.child_running(os.getpid(), "tests.bench.media_server")
        readers: dict[str, Callable[[], float]] = {
            "moto": lambda: procs.cpu_seconds(moto_pid),
            "postgres": lambda: procs.postgres_cpu_seconds(postmaster),
            "media": lambda: procs.cpu_seconds(media_pid),
            "bench": lambda: sum(os.times()[:2]),
        }
        env = intake_env(
            "bench-intake-", db_url, endpoint, media_url, CALLVAULT_WORKERS=str(WORKERS)
        )
        async with serve(env) as (cv, serve_pid):
            ours_cpu = procs.CpuSplit({"serve": lambda: procs.cpu_seconds(serve_pid)} | readers)
            ours_s = await ours(db_url, cv, ours_cpu)
        base_cpu = procs.CpuSplit(dict(readers))
        bucket = make_bucket(endpoint)
        with base_cpu.measuring():
            base_s = await asyncio.to_thread(baseline, media_url, endpoint, bucket)
    print(f"CPU s, callvault: {ours_cpu.text()}", flush=True)
    print(f"CPU s, plain:     {base_cpu.text()}", flush=True)
    mb = N * SIZE / 1e6
    ratio = base_s / ours_s
    bound = base_s / ours_cpu.fastest_s
    # as busy as plain keeps the cores, the ratio would be this
    cpu_ratio = base_cpu.spent["machine"] / ours_cpu.spent["machine"]
    report(
        "intake",
        f"intake: {N} x 5 MB in {ours_s:.1f} s ({mb / ours_s:.0f} MB/s) vs plain download + "
        f"upload_file {base_s:.1f} s ({mb / base_s:.0f} MB/s) = {ratio:.2f} (goal >= 0.8); "
        f"CPU {ours_cpu.spent['machine']:.1f} s vs {base_cpu.spent['machine']:.1f} s = "
        f"{cpu_ratio:.2f} (<= {bound:.2f} with every core busy)",
        seconds=ours_s,
        baseline_seconds=base_s,
        ratio=ratio,
        cpu_s=ours_cpu.spent,
        baseline_cpu_s=base_cpu.spent,
        bound_ratio=bound,
        cpu_ratio=cpu_ratio,
    )


if __name__ == "__main__":
    with postgres() as database_url, moto() as s3:
        asyncio.run(run(database_url, s3))
