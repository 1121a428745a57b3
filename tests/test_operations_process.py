"""Operations with real processes: logs without personal data, a graceful SIGTERM that hands
in-flight work back, and two replicas on one database and bucket, one of them killed mid-way."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, SECRET_KEY, make_bucket
from tests.intake_helpers import objects, send_recording, settle
from tests.serve_process import ServeProcess, serve_env
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

pytestmark = pytest.mark.slow
PUBLIC = "https://callvault.example.vn"
HOTLINE = "+842873001234"


@pytest.fixture
async def versioned_bucket(moto_url: str) -> str:
    return await asyncio.to_thread(make_bucket, moto_url, True)


def _replica(
    tmp_path: Path,
    name: str,
    database_url: str,
    moto_url: str,
    bucket: str,
    media: FakeTwilioMedia,
) -> ServeProcess:
    env = serve_env(
        tmp_path / name,
        database_url,
        moto_url,
        bucket,
        media.base_url,
        public_url=PUBLIC,
        CALLVAULT_WORKERS="2",
    )
    return ServeProcess(env, tmp_path / f"{name}.log")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _platform(session: aiohttp.ClientSession, replica: ServeProcess) -> FakeTwilio:
    """Twilio calling the public URL, routed to one replica as a load balancer would."""
    return FakeTwilio(
        session, PUBLIC, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, send_to=replica.url
    )


async def test_logs_are_json_with_request_ids_and_no_personal_data(
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    versioned_bucket: str,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    session: aiohttp.ClientSession,
) -> None:
    caller = "+84901234678"
    serve = _replica(tmp_path, "a", database_url, moto_url, versioned_bucket, twilio_media)
    await serve.start(CALLVAULT_LOG_LEVEL="DEBUG")
    try:
        platform = _platform(session, serve)
        stay = await platform.place_call(caller, HOTLINE, Caller.parse("stay"))
        await platform.place_call(caller, HOTLINE, Caller.parse("hang-up"))
        rec_sid = new_recording_sid()
        twilio_media.add(rec_sid, wav_bytes(1))
        await send_recording(platform, stay.call_sid, rec_sid)
        assert await settle(db) == {"done": 1}
    finally:
        await serve.stop()
    lines = [line for line in serve.log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    requests = [e for e in entries if e.get("message") == "request"]
    assert len(requests) >= 8
    assert all(len(e["request_id"]) == 32 for e in requests)
    voice = [e for e in entries if e.get("message") == "call start"]
    assert voice and all("request_id" in e for e in voice)
    text = serve.log.read_text()
    spellings = [
        caller,
        caller[1:],
        "0" + caller[3:],
        caller[3:],
        "+84 90 123 4678",
        "090 123 4678",
        "90 123 4678",
        "0901-234-678",
        "84 90 123 4678",
    ]
    for secret in [*spellings, SECRET_KEY, AUTH_TOKEN]:
        assert secret not in text, f"{secret!r} appears in the logs"


async def test_sigterm_hands_in_flight_jobs_back_and_exits_cleanly(
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    versioned_bucket: str,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    session: aiohttp.ClientSession,
) -> None:
    serve = _replica(tmp_path, "a", database_url, moto_url, versioned_bucket, twilio_media)
    await serve.start()
    platform = _platform(session, serve)
    trace = await platform.place_call("+84901234678", HOTLINE, Caller.parse("stay"))
    stall = asyncio.Event()
    rec_sid = new_recording_sid()
    twilio_media.add_stalling(rec_sid, wav_bytes(2), stall)
    await send_recording(platform, trace.call_sid, rec_sid)

    async def downloading() -> bool:
        running = await db.fetchval("SELECT state FROM jobs") == "running"
        return running and twilio_media.gets[rec_sid] > 0

    await eventually(downloading, what="the worker is mid-download")
    assert serve.proc is not None
    serve.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(serve.proc.wait(), 30) == 0
    job = await db.fetchrow("SELECT state, attempts, lease_token FROM jobs")
    # the lease went back at once: another replica need not wait for it to expire
    assert (job["state"], job["attempts"], job["lease_token"]) == ("queued", 0, None)
    assert twilio_media.deletes[rec_sid] == 0
    log = serve.log.read_text()
    assert "draining" in log
    stall.set()
    await serve.start()
    try:
        assert await settle(db) == {"done": 1}
        assert len(await objects(moto_url, versioned_bucket)) == 1
        assert twilio_media.deletes[rec_sid] == 1
    finally:
        await serve.stop()


async def test_two_replicas_one_killed_mid_way_lose_and_duplicate_nothing(
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    versioned_bucket: str,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    session: aiohttp.ClientSession,
) -> None:
    a = _replica(tmp_path, "a", database_url, moto_url, versioned_bucket, twilio_media)
    b = _replica(tmp_path, "b", database_url, moto_url, versioned_bucket, twilio_media)
    await asyncio.gather(a.start(), b.start())
    try:
        via = [_platform(session, a), _platform(session, b)]
        stall = asyncio.Event()
        kept: dict[str, bytes] = {}
        refused: list[str] = []

        async def one_call(i: int) -> None:
            behaviour = "stay" if i % 3 else "hang-up"
            platform = via[i % 2]
            trace = await platform.place_call(f"+849012{i:05d}", HOTLINE, Caller.parse(behaviour))
            rec_sid = new_recording_sid()
            body = wav_bytes(1 + i % 3)
            if trace.recording_started:
                kept[rec_sid] = body
                twilio_media.add_stalling(rec_sid, body, stall)
            else:
                refused.append(rec_sid)
                twilio_media.add(rec_sid, body)
            # the recording callback may reach either replica
            assert (await send_recording(via[(i + 1) % 2], trace.call_sid, rec_sid))[0] == 204

        await asyncio.gather(*(one_call(i) for i in range(12)))
        assert a.proc is not None
        pid_a = a.proc.pid

        async def a_is_downloading() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM jobs WHERE state = 'running' AND locked_by LIKE $1",
                    f"%:{pid_a}",
                )
            )

        await eventually(a_is_downloading, what="replica a is mid-download")
        a.proc.send_signal(signal.SIGKILL)
        assert await a.wait_killed() == -signal.SIGKILL
        stall.set()
        via[0] = via[1]  # the load balancer takes the dead replica out
        await asyncio.gather(*(one_call(i) for i in range(12, 16)))
        states = await settle(db, timeout_s=120)
        assert states == {"done": len(kept) + len(refused)}
    finally:
        await asyncio.gather(a.stop(), b.stop())

    found = await objects(moto_url, versioned_bucket)
    rows = await db.fetch("SELECT * FROM recordings")
    assert len(found) == len(rows) == len(kept)  # one object (one version) per recording
    by_key = {o["key"]: o for o in found}
    for row in rows:
        assert row["state"] == "stored" and row["platform_deleted_at"] is not None
        assert by_key[row["object_key"]]["size"] == sealed.sealed_size(
            len(kept[row["external_id"]])
        )
    # A replica killed after Twilio answered a DELETE but before the job was marked done sends
    # it again on rerun: a second DELETE is harmless (404 counts as deleted); what matters is
    # that no platform copy is left and no refused recording was ever downloaded.
    for rec_sid in kept:
        assert twilio_media.deletes[rec_sid] >= 1 and rec_sid not in twilio_media.recordings
    for rec_sid in refused:
        assert twilio_media.gets[rec_sid] == 0 and twilio_media.deletes[rec_sid] >= 1
        assert rec_sid not in twilio_media.recordings
    stored_events = await db.fetchval(
        "SELECT count(*) FROM ledger_events WHERE type = 'recording_stored'"
    )
    assert stored_events == len(kept)
    assert (await ledger.verify(db)).ok
