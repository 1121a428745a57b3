"""The reconciler on its schedule inside two ``callvault serve`` processes on one database: a
consented call whose recording callback Twilio never delivered ends stored, Twilio's copy
deleted, and Twilio was asked about the call once, not once per replica or per pass."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, make_bucket
from tests.intake_helpers import objects
from tests.serve_process import ServeProcess, serve_env
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

pytestmark = pytest.mark.slow
PUBLIC = "https://callvault.example.vn"


async def test_scheduled_reconcile_in_two_replicas_stores_a_recording_whose_callback_was_lost(
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
) -> None:
    bucket = await asyncio.to_thread(make_bucket, moto_url)
    replicas = [
        ServeProcess(
            serve_env(
                tmp_path / name,
                database_url,
                moto_url,
                bucket,
                twilio_media.base_url,
                public_url=PUBLIC,
                CALLVAULT_RECONCILE_INTERVAL="1s",
                CALLVAULT_RECONCILE_GRACE="1s",
            ),
            tmp_path / f"{name}.log",
        )
        for name in ("a", "b")
    ]
    await asyncio.gather(*(r.start() for r in replicas))
    try:
        async with aiohttp.ClientSession() as session:
            platform = FakeTwilio(
                session,
                PUBLIC,
                account_sid=ACCOUNT_SID,
                auth_token=AUTH_TOKEN,
                send_to=replicas[0].url,
            )
            trace = await platform.place_call("+84901234678", "+842873001234", Caller.parse("stay"))
        assert trace.recording_started
        rec_sid, body = new_recording_sid(), wav_bytes(1)
        twilio_media.add(rec_sid, body, call_sid=trace.call_sid)  # its callback never comes

        async def stored_and_deleted_at_twilio() -> bool:
            state = await db.fetchval(
                "SELECT state FROM recordings WHERE external_id = $1", rec_sid
            )
            return state == "stored" and twilio_media.deletes[rec_sid] == 1

        await eventually(stored_and_deleted_at_twilio, what="the scheduled reconcile finds it")
    finally:
        await asyncio.gather(*(r.stop() for r in replicas))
    assert twilio_media.lists[trace.call_sid] == 1
    assert await db.fetchval("SELECT settled_at IS NOT NULL FROM recording_reconciliations")
    assert [o["size"] for o in await objects(moto_url, bucket)] == [sealed.sealed_size(len(body))]
    logs = "".join(r.log.read_text() for r in replicas)
    assert logs.count('"message": "reconcile pass"') == 1
