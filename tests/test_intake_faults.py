"""Intake under faults, in process: the bucket goes down behind a TCP proxy and comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from service.config import Settings
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import Service
from tests.intake_helpers import objects, send_recording, settle
from tests.tcp_proxy import TcpProxy
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

CALLER = "+84901234678"
HOTLINE = "+842873001234"


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
    from dataclasses import replace

    svc = Service(
        replace(
            intake_settings, s3_endpoint_url=f"http://127.0.0.1:{proxy.port}", job_max_attempts=50
        )
    )
    await svc.start()
    yield svc
    await svc.stop()


async def test_bucket_down_for_a_while_loses_nothing_and_keeps_the_platform_copy(
    service: Service,
    proxy: TcpProxy,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    moto_url: str,
    bucket: str,
) -> None:
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    rec_sid, body = new_recording_sid(), wav_bytes(2)
    twilio_media.add(rec_sid, body)
    proxy.go_down()
    await send_recording(twilio, trace.call_sid, rec_sid)

    # intake fails and retries while the bucket is down
    async def retried() -> bool:
        return bool(await db.fetchval("SELECT attempts FROM jobs") >= 3)

    await eventually(retried, what="intake retried three times")
    job = await db.fetchrow("SELECT state, last_error FROM jobs")
    assert job["state"] in ("queued", "running")
    assert "S3" in job["last_error"]
    # the webhook path does not touch the bucket: calls are still answered
    other = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert other.errors == [] and other.recording_started
    async with twilio.session.get(service.base_url + "/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["error"]["message"] == "object store unreachable"
    # nothing is deleted at the platform until our copy is verified
    assert twilio_media.deletes[rec_sid] == 0 and rec_sid in twilio_media.recordings
    assert await db.fetchval("SELECT state FROM recordings") == "pending"
    assert proxy.refused > 0

    proxy.come_back()
    assert await settle(db) == {"done": 1}
    found = await objects(moto_url, bucket)
    assert len(found) == 1 and found[0]["size"] == sealed.sealed_size(len(body))
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    assert await db.fetchval("SELECT state FROM recordings") == "stored"
