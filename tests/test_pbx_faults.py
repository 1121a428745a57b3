"""The PBX upload in a real ``callvault serve`` process: a recording far larger than the memory
it may use streams through the MixMonitor upload script with flat peak memory. (The bucket down
and a replica killed mid-upload, as for every platform: tests/test_platforms_faults.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.conftest import make_bucket
from tests.serve_process import ServeProcess, serve_env
from tests.test_pbx import CALLER, HOTLINE, _script_env, _token, run_upload
from tests.twilio_media import wav_bytes

Conn = asyncpg.Connection


async def _consent(http: aiohttp.ClientSession, base: str, token: str, call_id: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"call_id": call_id, "from": CALLER, "to": HOTLINE}
    async with http.post(f"{base}/telephony/pbx/calls", json=body, headers=headers) as resp:
        assert resp.status == 200
    path = f"{base}/telephony/pbx/calls/{call_id}/consent"
    async with http.post(path, json={"stayed": True}, headers=headers) as resp:
        assert (await resp.json())["record"] is True


@pytest.fixture
async def serve(tmp_path: Path, database_url: str, moto_url: str) -> AsyncIterator[ServeProcess]:
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)  # versioned: see duplicates
    proc = ServeProcess(
        serve_env(tmp_path / "home", database_url, moto_url, bucket, "http://127.0.0.1:9"),
        tmp_path / "serve.log",
    )
    proc.bucket = bucket  # type: ignore[attr-defined]
    yield proc
    await proc.stop()


@pytest.mark.slow
async def test_an_upload_much_larger_than_memory_streams_through(
    serve: ServeProcess, db: Conn, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    token = await _token(db, "default")
    token_file = tmp_path / "token"
    token_file.write_text(token)
    await serve.start()
    env = {**_script_env(serve.url, token_file, tmp_path), "CALLVAULT_RETRIES": "0"}
    # warm up: the first store loads boto3 and friends
    await _consent(http, serve.url, token, "warm")
    small = tmp_path / "warm.wav"
    small.write_bytes(wav_bytes(1))
    assert (await run_upload(env, "warm", small))[0] == 0
    before = serve.peak_rss_kib()

    size = 256 * 1024 * 1024
    big = tmp_path / "big.wav"
    with big.open("wb") as out:  # a WAV header, then silence: written in pieces
        out.write(wav_bytes(0.01)[:44])
        out.truncate(size)
    await _consent(http, serve.url, token, "big")
    code, err = await run_upload(env, "big", big)
    assert code == 0, err
    grown_mib = (serve.peak_rss_kib() - before) / 1024
    stored = await db.fetchval(
        "SELECT size_bytes FROM recordings WHERE state = 'stored' ORDER BY size_bytes DESC LIMIT 1"
    )
    assert stored == size
    print(f"peak RSS growth for a 256 MiB PBX upload: {grown_mib:.1f} MiB")
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB for a 256 MiB upload"
