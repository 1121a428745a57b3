"""Recording intake end to end: signed callbacks from the fake Twilio, media from the fake
Twilio REST API, objects in moto's S3 server, state in real PostgreSQL. Every test checks the
same four things: objects in the bucket, rows, ledger events and platform DELETEs."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service import ledger
from service.config import Policy, Settings
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import CONTINUE_URL, Service, new_sid, run_cli
from tests.intake_helpers import get_object, objects, open_sealed, send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

CALLER = "+84901234678"
HOTLINE = "+842873001234"
Conn = asyncpg.Connection


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    yield svc
    await svc.stop()


async def consented_call(twilio: FakeTwilio) -> str:
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert trace.recording_started
    return trace.call_sid


async def types_of(db: Conn, call_sid: str) -> list[str]:
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", call_sid)
    return [e.type for e in await ledger.events_of(db, call_id)]


async def assert_stored_once(
    db: Conn,
    moto_url: str,
    bucket: str,
    media: FakeTwilioMedia,
    call_sid: str,
    rec_sid: str,
    body: bytes,
) -> None:
    rows = await db.fetch("SELECT * FROM recordings WHERE external_id = $1", rec_sid)
    assert len(rows) == 1
    rec = rows[0]
    assert rec["state"] == "stored"
    assert rec["sha256"] == hashlib.sha256(body).hexdigest()
    assert rec["size_bytes"] == len(body)
    assert rec["platform_deleted_at"] is not None
    assert rec["retain_until"] is not None
    found = await objects(moto_url, bucket)
    assert [o["key"] for o in found] == [f"recordings/{rec['id']}.wav"]  # opaque, no number
    head = found[0]["head"]
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == rec["sha256"]
    # sealed by callvault as well (issue 17): only its own data key opens it
    assert head["Metadata"]["callvault-enc"] == "tink-streaming-v1"
    assert head["Metadata"]["callvault-plaintext-size"] == str(len(body))
    assert head["ContentLength"] == sealed.sealed_size(len(body))
    stored = await get_object(moto_url, bucket, found[0]["key"])
    assert body not in stored and body[1000:2000] not in stored
    assert await open_sealed(db, rec["id"], stored) == body
    assert media.deletes[rec_sid] == 1
    assert rec_sid not in media.recordings  # no platform copy left
    types = await types_of(db, call_sid)
    assert types.count("recording_stored") == 1
    assert types.count("platform_copy_deleted") == 1
    assert types.index("recording_stored") < types.index("platform_copy_deleted")
    assert (await ledger.verify(db)).ok


async def test_consented_recording_becomes_one_verified_encrypted_object(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid, body = new_recording_sid(), wav_bytes(3)
    twilio_media.add(rec_sid, body)
    status, _ = await send_recording(twilio, call_sid, rec_sid)
    assert status == 204
    assert await settle(db) == {"done": 1}
    await assert_stored_once(db, moto_url, bucket, twilio_media, call_sid, rec_sid, body)
    # retention comes from the call's policy (default 90 days), by the database's clock
    gap = await db.fetchval("SELECT extract(epoch FROM retain_until - stored_at) FROM recordings")
    assert gap == 90 * 86400
    stored = next(
        e
        for e in await ledger.events_of(db, await db.fetchval("SELECT id FROM calls"))
        if e.type == "recording_stored"
    )
    assert stored.details["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("behaviour", ["press-2", "silent", "hang-up"])
async def test_recording_of_a_call_without_consent_is_never_downloaded(
    service: Service,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    moto_url: str,
    bucket: str,
    behaviour: str,
) -> None:
    await service.reconfigure(defaults=Policy(consent_mode="explicit", continue_url=CONTINUE_URL))
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse(behaviour))
    assert not trace.recording_started
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1))
    await send_recording(twilio, trace.call_sid, rec_sid)
    assert await settle(db) == {"done": 1}
    assert twilio_media.gets[rec_sid] == 0
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    assert await objects(moto_url, bucket) == []
    assert await db.fetchval("SELECT count(*) FROM recordings") == 0
    types = await types_of(db, trace.call_sid)
    assert types[-2:] == ["recording_discarded", "platform_copy_deleted"]


async def test_a_passing_404_is_asked_again_quickly_in_the_same_run(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid, body = new_recording_sid(), wav_bytes(1)
    twilio_media.add(rec_sid, body, not_ready_for=2)
    await send_recording(twilio, call_sid, rec_sid)
    assert await settle(db) == {"done": 1}
    assert twilio_media.gets[rec_sid] == 3
    assert await db.fetchval("SELECT attempts FROM jobs") == 1
    await assert_stored_once(db, moto_url, bucket, twilio_media, call_sid, rec_sid, body)


async def test_six_identical_callbacks_at_once_store_one_object(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid, body = new_recording_sid(), wav_bytes(2)
    twilio_media.add(rec_sid, body)
    results = await asyncio.gather(*(send_recording(twilio, call_sid, rec_sid) for _ in range(6)))
    assert {status for status, _ in results} == {204}
    assert await settle(db) == {"done": 1}
    assert twilio_media.gets[rec_sid] == 1
    await assert_stored_once(db, moto_url, bucket, twilio_media, call_sid, rec_sid, body)


async def test_recording_callback_before_the_consent_step_waits_for_the_outcome(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    call_sid = new_sid()
    await twilio.post(
        twilio.url("/telephony/twilio/voice"),
        twilio.call_params(call_sid, CALLER, HOTLINE, "ringing"),
    )
    rec_sid, body = new_recording_sid(), wav_bytes(1)
    twilio_media.add(rec_sid, body)
    await send_recording(twilio, call_sid, rec_sid)
    # the worker looks, finds no outcome and waits: nothing fetched, nothing deleted
    await _until(
        db,
        "SELECT count(*) FROM jobs WHERE state = 'queued' AND last_error LIKE "
        "'waiting for the call%'",
    )
    assert twilio_media.gets[rec_sid] == 0 and twilio_media.deletes[rec_sid] == 0
    await twilio.post(
        twilio.url("/telephony/twilio/consent"), twilio.call_params(call_sid, CALLER, HOTLINE)
    )
    assert await settle(db) == {"done": 1}
    await assert_stored_once(db, moto_url, bucket, twilio_media, call_sid, rec_sid, body)


async def test_recording_callback_before_a_hang_up_is_discarded(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    call_sid = new_sid()
    await twilio.post(
        twilio.url("/telephony/twilio/voice"),
        twilio.call_params(call_sid, CALLER, HOTLINE, "ringing"),
    )
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1))
    await send_recording(twilio, call_sid, rec_sid)
    await _until(db, "SELECT count(*) FROM jobs WHERE last_error LIKE 'waiting for the call%'")
    await twilio.post(
        twilio.url("/telephony/twilio/status"),
        twilio.call_params(call_sid, CALLER, HOTLINE, "completed"),
    )
    assert await settle(db) == {"done": 1}
    assert twilio_media.gets[rec_sid] == 0 and twilio_media.deletes[rec_sid] == 1
    assert await objects(moto_url, bucket) == []


async def test_recording_url_from_the_callback_is_never_fetched(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    hits: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=wav_bytes(1), content_type="audio/wav")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    other = TestServer(app, host="127.0.0.1")
    await other.start_server()
    try:
        call_sid = await consented_call(twilio)
        rec_sid, body = new_recording_sid(), wav_bytes(1)
        twilio_media.add(rec_sid, body)
        evil = str(other.make_url(f"/2010-04-01/Accounts/x/Recordings/{rec_sid}"))
        await send_recording(twilio, call_sid, rec_sid, recording_url=evil)
        assert await settle(db) == {"done": 1}
    finally:
        await other.close()
    assert hits == []
    await assert_stored_once(db, moto_url, bucket, twilio_media, call_sid, rec_sid, body)


@pytest.mark.parametrize("status", ["absent", "failed"])
async def test_absent_and_failed_recordings_are_recorded_not_retried(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, status: str
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid = new_recording_sid()
    for _ in range(2):
        code, _ = await send_recording(twilio, call_sid, rec_sid, status=status)
        assert code == 204
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0
    assert (await types_of(db, call_sid)).count(f"recording_{status}") == 1
    assert twilio_media.gets[rec_sid] == 0


async def test_not_audio_is_dead_lettered_visibly_and_the_platform_copy_kept(
    service: Service,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    moto_url: str,
    bucket: str,
    database_url: str,
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, b"<html>an error page, not audio</html>")
    await send_recording(twilio, call_sid, rec_sid)
    assert await settle(db) == {"dead": 1}
    assert "not wav audio" in await db.fetchval("SELECT last_error FROM jobs")
    assert twilio_media.deletes[rec_sid] == 0 and rec_sid in twilio_media.recordings
    assert await objects(moto_url, bucket) == []
    assert await db.fetchval("SELECT state FROM recordings") == "pending"
    # dead letters are visible to operators: metrics and the CLI
    async with twilio.session.get(service.base_url + "/metrics") as resp:
        text = await resp.text()
    assert 'callvault_jobs{state="dead",tenant="default"} 1.0' in text
    assert 'callvault_recordings_at_platform{tenant="default"} 1.0' in text
    listed = await asyncio.to_thread(run_cli, database_url, "jobs", "list")
    assert listed.returncode == 0 and "jobs: dead 1" in listed.stdout
    assert rec_sid in listed.stdout and "not wav audio" in listed.stdout
    job_id = await db.fetchval("SELECT id FROM jobs")
    twilio_media.add(rec_sid, wav_bytes(1))  # the platform now serves real audio
    retried = await asyncio.to_thread(run_cli, database_url, "jobs", "retry", str(job_id))
    assert retried.returncode == 0, retried.stderr
    assert await settle(db) == {"done": 1}
    assert await db.fetchval("SELECT state FROM recordings") == "stored"
    again = await asyncio.to_thread(run_cli, database_url, "jobs", "retry", str(job_id))
    assert (
        again.returncode == 1 and again.stderr.strip() == f"callvault: error: no dead job {job_id}"
    )


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("RecordingSid", "../../etc/passwd", "bad_recording_sid"),
        ("RecordingStatus", "exploded", "bad_recording_status"),
    ],
)
async def test_bad_recording_callbacks_are_400_and_write_nothing(
    twilio: FakeTwilio, db: Conn, field: str, value: str, code: str
) -> None:
    from tests.intake_helpers import recording_params

    params = {**recording_params(twilio, new_sid(), new_recording_sid()), field: value}
    status, body = await twilio.post(twilio.url("/telephony/twilio/recording"), params)
    assert status == 400 and code in body
    assert await db.fetchval("SELECT count(*) FROM recording_callbacks") == 0


async def test_forged_recording_callback_is_403_and_writes_nothing(
    twilio: FakeTwilio, db: Conn
) -> None:
    from tests.intake_helpers import recording_params

    params = recording_params(twilio, new_sid(), new_recording_sid())
    status, _ = await twilio.post(
        twilio.url("/telephony/twilio/recording"), params, signature="forged"
    )
    assert status == 403
    assert await db.fetchval("SELECT count(*) FROM recording_callbacks") == 0
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def _until(db: Conn, count_sql: str) -> None:
    async def holds() -> bool:
        return bool(await db.fetchval(count_sql))

    await eventually(holds, what=count_sql, timeout_s=30)


def _get_object(endpoint: str, bucket: str, key: str) -> bytes:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


@pytest.mark.parametrize(
    ("fetch", "transcode", "stored_as"),
    [("mp3", None, "mp3"), ("wav", "mp3", "mp3")],
)
async def test_mp3_fetched_or_transcoded_is_stored_as_playable_mp3(
    service: Service,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    moto_url: str,
    bucket: str,
    fetch: str,
    transcode: str | None,
    stored_as: str,
) -> None:
    from service.platforms.twilio.simulate import decode_audio
    from tests.twilio_media import mp3_bytes

    await service.reconfigure(recording_format=fetch, recording_transcode=transcode)
    call_sid = await consented_call(twilio)
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, mp3_bytes(3) if fetch == "mp3" else wav_bytes(3))
    await send_recording(twilio, call_sid, rec_sid)
    assert await settle(db) == {"done": 1}
    rec = await db.fetchrow("SELECT * FROM recordings")
    assert rec["object_key"].endswith(f".{stored_as}")
    assert rec["content_type"] == "audio/mpeg"
    stored = await asyncio.to_thread(_get_object, moto_url, bucket, rec["object_key"])
    body = await open_sealed(db, rec["id"], stored)
    assert hashlib.sha256(body).hexdigest() == rec["sha256"] and len(body) == rec["size_bytes"]
    duration_ms, rate, channels, _ = await asyncio.to_thread(decode_audio, body, "mp3")
    assert 2800 < duration_ms < 3400 and channels == 1 and rate == 8000
    assert twilio_media.deletes[rec_sid] == 1
