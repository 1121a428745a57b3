"""The PBX upload under faults, as for a fetched recording: the bucket is down while the
MixMonitor upload script runs (it keeps its file and the rerun stores it), and ``callvault
serve`` is killed with SIGKILL mid-upload (the PBX's retry converges to one object)."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.config import Settings
from tests.conftest import Service, make_bucket
from tests.intake_helpers import objects
from tests.serve_process import ServeProcess, serve_env
from tests.tcp_proxy import TcpProxy
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
async def proxy(moto_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(moto_url)
    assert target.hostname and target.port
    p = TcpProxy(target.hostname, target.port)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
async def service(intake_settings: Settings, proxy: TcpProxy) -> AsyncIterator[Service]:
    svc = Service(replace(intake_settings, s3_endpoint_url=f"http://127.0.0.1:{proxy.port}"))
    await svc.start()
    yield svc
    await svc.stop()


async def test_bucket_down_the_upload_script_keeps_its_file_and_the_rerun_stores_it(
    service: Service,
    proxy: TcpProxy,
    db: Conn,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    moto_url: str,
) -> None:
    token = await _token(db, "default")
    token_file = tmp_path / "token"
    token_file.write_text(token)
    env = {**_script_env(service.base_url, token_file, tmp_path), "CALLVAULT_RETRIES": "1"}
    await _consent(http, service.base_url, token, "b-1")
    recording = tmp_path / "b-1.wav"
    recording.write_bytes(wav_bytes(1))

    proxy.go_down()
    code, err = await run_upload(env, "b-1", recording)
    assert code == 1 and "file kept" in err, err
    assert recording.exists()  # the only copy stays with the PBX
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE state = 'stored'") == 0

    proxy.come_back()
    code, err = await run_upload(env, "b-1", recording)
    assert code == 0, err
    assert not recording.exists()
    assert service.settings.s3_bucket is not None
    assert len(await objects(moto_url, service.settings.s3_bucket)) == 1
    assert await db.fetchval("SELECT state FROM recordings") == "stored"


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
@pytest.mark.parametrize(
    ("failpoint", "state_before_restart"),
    [("intake.after_upload", "pending"), ("intake.after_commit", "stored")],
)
async def test_killed_mid_upload_the_pbx_retry_converges_to_one_object(
    serve: ServeProcess,
    db: Conn,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    moto_url: str,
    failpoint: str,
    state_before_restart: str,
) -> None:
    bucket: str = serve.bucket  # type: ignore[attr-defined]
    token = await _token(db, "default")
    token_file = tmp_path / "token"
    token_file.write_text(token)
    await serve.start(CALLVAULT_FAILPOINTS=failpoint)
    await _consent(http, serve.url, token, "k-1")
    env = {**_script_env(serve.url, token_file, tmp_path), "CALLVAULT_RETRIES": "0"}
    recording = tmp_path / "k-1.wav"
    body = wav_bytes(2)
    recording.write_bytes(body)
    keep = tmp_path / "copy.wav"
    shutil.copy(recording, keep)

    code, err = await run_upload(env, "k-1", recording)
    assert code == 1, err  # the server died under the upload: no answer, file kept
    assert await serve.wait_killed() == -signal.SIGKILL
    assert await db.fetchval("SELECT state FROM recordings") == state_before_restart
    assert len(await objects(moto_url, bucket)) == 1

    await serve.start()
    code, err = await run_upload(env, "k-1", recording)
    assert code == 0 and "201" in err, err
    found = await objects(moto_url, bucket)
    assert len(found) == 1, [o["key"] for o in found]  # one object, one version
    rec = await db.fetchrow("SELECT * FROM recordings")
    assert rec["state"] == "stored" and found[0]["key"] == rec["object_key"]
    events = [e.type for e in await ledger.events_of(db, rec["call_id"])]
    assert events.count("recording_stored") == 1
    assert (await ledger.verify(db)).ok


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
