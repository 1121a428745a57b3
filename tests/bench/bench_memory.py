"""Memory: one 1 GiB recording through intake (downloaded, sealed with its own data key since
issue 17, uploaded); how much the serve process's peak RSS grows, beside a plain script that
downloads the same media and ``upload_file``s it with boto3."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

from tests.bench.harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    intake_env,
    make_bucket,
    media_api,
    moto,
    postgres,
    report,
    serve,
)

SIZE = 1024 * 1024 * 1024
GOAL_MIB = 100


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


async def signed_post(
    session: aiohttp.ClientSession, base: str, path: str, params: dict[str, str]
) -> int:
    sig = RequestValidator(AUTH_TOKEN).compute_signature(base + path, params)
    async with session.post(base + path, data=params, headers={"X-Twilio-Signature": sig}) as r:
        return r.status


async def one_recording(db_url: str, cv: str, media_url: str, size: int) -> None:
    import asyncpg

    call_sid = "CA" + secrets.token_hex(16)
    rec_sid = "RE" + secrets.token_hex(12) + ("0" * 8 if size < SIZE else "1" * 8)
    params = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": call_sid,
        "From": "+84901234567",
        "To": "+842873001234",
        "CallStatus": "ringing",
    }
    async with aiohttp.ClientSession() as session:
        await signed_post(session, cv, "/telephony/twilio/voice", params)
        await signed_post(
            session, cv, "/telephony/twilio/consent", {**params, "CallStatus": "in-progress"}
        )
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
    conn = await asyncpg.connect(db_url)
    try:
        while await conn.fetchval("SELECT count(*) FROM jobs WHERE state <> 'done'"):
            await asyncio.sleep(0.2)
        stored = await conn.fetchval(
            "SELECT size_bytes FROM recordings WHERE external_id = $1", rec_sid
        )
        assert stored == size, stored
    finally:
        await conn.close()


BASELINE = r"""
import asyncio, os, sys, tempfile, aiohttp, boto3
from boto3.s3.transfer import TransferConfig
def peak():
    for l in open(f"/proc/{os.getpid()}/status"):
        if l.startswith("VmHWM:"): return int(l.split()[1])
async def get(url, path):
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        with open(path, "wb") as f:
            async for c in r.content.iter_chunked(1 << 20): f.write(c)
media, endpoint, bucket = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
path = tempfile.mktemp()
s3.list_buckets()
before = peak()
asyncio.run(get(media, path))
s3.upload_file(path, bucket, "baseline.wav", ExtraArgs={"ServerSideEncryption": "AES256"},
               Config=TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4))
os.unlink(path)
print(peak() - before)
"""


async def run(db_url: str, endpoint: str) -> None:
    async with media_api(SIZE) as media_url:
        env = intake_env(
            "bench-mem-", db_url, endpoint, media_url, CALLVAULT_MAX_RECORDING_BYTES=str(2 * SIZE)
        )
        async with serve(env) as (cv, pid):
            await one_recording(db_url, cv, media_url, 1024 * 1024)  # warm-up loads boto3
            before = peak_kib(pid)
            await one_recording(db_url, cv, media_url, SIZE)
            grown_mib = (peak_kib(pid) - before) / 1024
        base = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BASELINE,
            f"{media_url}/2010-04-01/Accounts/x/Recordings/REbase.wav",
            endpoint,
            make_bucket(endpoint),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await base.communicate()
        base_mib = int(out.decode().strip().splitlines()[-1]) / 1024
    report(
        "memory",
        f"memory: 1 GiB recording (sealed) grew serve's peak RSS by {grown_mib:.1f} MiB vs plain "
        f"boto3 script {base_mib:.1f} MiB; goal < {GOAL_MIB} MiB: ratio "
        f"{GOAL_MIB / max(grown_mib, 0.1):.1f} (goal >= 1)",
        grown_mib=grown_mib,
        baseline_mib=base_mib,
        ratio=GOAL_MIB / max(grown_mib, 0.1),
    )


if __name__ == "__main__":
    with postgres() as database_url, moto() as s3:
        asyncio.run(run(database_url, s3))
