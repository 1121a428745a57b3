"""Twilio's media API as it behaves on a real account: the media GET redirected to a second host
with a signed URL (followed with no credentials, https only, at most two hops), and a 404 after
`completed` (asked again quickly, then dead-lettered with what to check). Signed callbacks from
the fake Twilio, media from the fake REST API and its CDN, objects in moto, state in PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from yarl import URL

from service.config import Settings
from service.platforms.twilio.media import redirect_allowed
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import AUTH_TOKEN, Service
from tests.intake_helpers import objects, send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

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


async def dead_letter(db: Conn) -> str:
    assert await settle(db) == {"dead": 1}
    error: str = await db.fetchval("SELECT last_error FROM jobs")
    return error


@pytest.mark.parametrize("hops", [1, 2])
async def test_media_redirected_to_a_second_host_is_stored_and_no_credentials_follow(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    moto_url: str,
    bucket: str,
    hops: int,
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid, body = new_recording_sid(), wav_bytes(2)
    twilio_media.add(rec_sid, body, hops=hops)
    await send_recording(twilio, call_sid, rec_sid)
    assert await settle(db) == {"done": 1}
    assert twilio_media.gets[rec_sid] == 1  # the authenticated request, to the API origin
    assert twilio_media.cdn_gets[rec_sid] == hops  # then the second host, once per hop
    assert twilio_media.cdn_authorization == 0  # which never saw the account's credentials
    row = await db.fetchrow("SELECT state, size_bytes, platform_deleted_at FROM recordings")
    assert row["state"] == "stored" and row["size_bytes"] == len(body)
    assert row["platform_deleted_at"] is not None and twilio_media.deletes[rec_sid] == 1
    assert [o["size"] for o in await objects(moto_url, bucket)] == [sealed.sealed_size(len(body))]


async def test_a_third_redirect_is_refused_and_the_platform_copy_kept(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1), hops=3)
    await send_recording(twilio, call_sid, rec_sid)
    error = await dead_letter(db)
    assert "more than 2 redirects" in error
    assert "Signature" not in error  # a signed URL's query is a credential: never in errors
    assert twilio_media.cdn_gets[rec_sid] == 2  # the third hop was never requested
    assert twilio_media.deletes[rec_sid] == 0 and rec_sid in twilio_media.recordings
    assert await objects(moto_url, bucket) == []


@pytest.mark.parametrize(
    "target",
    [
        "http://cdn.example.com/media/abc?Signature=s3cr3t",  # plain http off loopback
        "ftp://127.0.0.1/media/abc",  # neither https nor http
        "https://ACxx:token@cdn.example.com/media/abc",  # credentials in the URL
    ],
)
async def test_a_redirect_to_a_disallowed_target_is_refused_without_fetching_it(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, target: str
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1), redirect_to=target)
    await send_recording(twilio, call_sid, rec_sid)
    error = await dead_letter(db)
    assert "refused" in error and "s3cr3t" not in error and "token" not in error
    assert twilio_media.gets[rec_sid] == 1
    assert twilio_media.deletes[rec_sid] == 0 and rec_sid in twilio_media.recordings
    assert await db.fetchval("SELECT state FROM recordings") == "pending"


def test_plain_http_is_followed_only_from_a_loopback_http_api_to_loopback() -> None:
    real, fake = "https://api.twilio.com", "http://127.0.0.1:4010"
    cdn = URL("https://media.twiliocdn.com/AC1/abc?Expires=1&Signature=x")
    assert redirect_allowed(real, cdn)
    assert redirect_allowed(fake, cdn)
    assert not redirect_allowed(real, URL("http://127.0.0.1:4011/media"))  # https API: https only
    assert not redirect_allowed(real, URL("http://media.twiliocdn.com/abc"))
    assert redirect_allowed(fake, URL("http://127.0.0.1:4011/media"))
    assert redirect_allowed(fake, URL("http://[::1]:4011/media"))
    assert not redirect_allowed(fake, URL("http://10.0.0.8/media"))
    assert not redirect_allowed("http://10.0.0.7:4010", URL("http://127.0.0.1:4011/media"))
    assert not redirect_allowed(real, URL("https://user:pw@media.twiliocdn.com/abc"))


async def test_a_404_after_completed_is_dead_lettered_quickly_naming_what_to_check(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn, moto_url: str, bucket: str
) -> None:
    call_sid = await consented_call(twilio)
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1), not_ready_for=1000)  # never there
    await send_recording(twilio, call_sid, rec_sid)
    error = await dead_letter(db)
    assert twilio_media.gets[rec_sid] == 3  # a few quick GETs, not twelve backed-off runs
    assert await db.fetchval("SELECT attempts FROM jobs") == 1
    url = (
        f"{twilio_media.base_url}/2010-04-01/Accounts/{twilio.account_sid}/Recordings/{rec_sid}.wav"
    )
    assert url in error
    for what in ("CALLVAULT_TWILIO_ACCOUNT_SID", "region", "deleted"):
        assert what in error
    assert AUTH_TOKEN not in error
    assert twilio_media.deletes[rec_sid] == 0 and rec_sid in twilio_media.recordings
    assert await objects(moto_url, bucket) == []
