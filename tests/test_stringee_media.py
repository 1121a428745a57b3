"""Recording downloads from the fake Stringee: JWT accepted, 429 honoured, regions, redirects."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from service.jobs import Permanent
from service.platforms.stringee import media as stringee_media
from service.platforms.stringee.media import (
    MediaError,
    MediaNotFound,
    MediaNotReady,
    RateLimited,
    StringeeMedia,
)
from service.platforms.stringee.rest_auth import ApiKey, TokenSource
from tests.stringee_fake import FakeStringee, call_id, mp3_bytes

KEY = ApiKey("SK9ntgoHY5m0y38x39kXPQ1xI6PX5nOrJE", "QUoyb2cyUHA1c0U2NUtCV0o1VTVpaHczc0ZVWXI4Mw==")


@pytest.fixture
async def fake() -> AsyncIterator[FakeStringee]:
    cloud = FakeStringee(KEY.sid, KEY.secret, "signing")
    await cloud.start()
    yield cloud
    await cloud.close()
    assert cloud.cdn_credentials == 0, "the JWT was sent to the redirected host"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Sleeps:
    """An injected sleep: records what it was asked to wait, waits for nothing."""

    def __init__(self) -> None:
        self.waited: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)


def client(
    session: aiohttp.ClientSession,
    hosts: list[str],
    sleeps: Sleeps | None = None,
    key: ApiKey = KEY,
    max_bytes: int = 10_000_000,
    max_waits: int = 3,
) -> StringeeMedia:
    return StringeeMedia(
        session,
        TokenSource(key),
        hosts,
        max_bytes=max_bytes,
        max_waits=max_waits,
        sleep=sleeps or Sleeps(),
    )


async def test_download_with_the_rest_jwt(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    audio = mp3_bytes()
    cid = call_id()
    fake.add(cid, audio)
    got = await client(session, [fake.base_url]).download(cid, tmp_path / "r.mp3")
    assert got.path.read_bytes() == audio
    assert (got.size, got.sha256, got.content_type) == (
        len(audio),
        hashlib.sha256(audio).hexdigest(),
        "audio/mpeg",
    )
    assert fake.gets[cid] == 1 and fake.unauthorised == 0


async def test_a_wrong_secret_is_refused_by_stringee(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cid = call_id()
    fake.add(cid, mp3_bytes())
    wrong = ApiKey(KEY.sid, "V3JvbmdXcm9uZ1dyb25nV3JvbmdXcm9uZ1dyb25nV3I=")
    with pytest.raises(MediaError, match=r"HTTP 401.*API key"):
        await client(session, [fake.base_url], key=wrong).download(cid, tmp_path / "r.mp3")
    assert fake.unauthorised == 1 and fake.gets[cid] == 0


async def test_429_waits_out_retry_after_then_downloads(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cid = call_id()
    fake.add(cid, mp3_bytes(), rate_limited=1, retry_after="7")
    sleeps = Sleeps()
    got = await client(session, [fake.base_url], sleeps).download(cid, tmp_path / "r.mp3")
    assert got.size > 0
    assert sleeps.waited == [7.0]  # exactly what Stringee asked for, before asking again
    assert fake.rate_limited == 1 and fake.gets[cid] == 2


async def test_a_long_retry_after_goes_back_to_the_job_queue(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cid = call_id()
    fake.add(cid, mp3_bytes(), rate_limited=1, retry_after="120")
    sleeps = Sleeps()
    with pytest.raises(RateLimited) as caught:
        await client(session, [fake.base_url], sleeps).download(cid, tmp_path / "r.mp3")
    assert caught.value.retry_after_s == 120.0
    assert sleeps.waited == []


async def test_429_waits_are_bounded_in_number(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cid = call_id()
    fake.add(cid, mp3_bytes(), rate_limited=10, retry_after="1")
    sleeps = Sleeps()
    with pytest.raises(RateLimited):
        await client(session, [fake.base_url], sleeps, max_waits=3).download(cid, tmp_path / "r")
    assert sleeps.waited == [1.0, 1.0, 1.0] and fake.rate_limited == 4


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    # Fri, 15 Jan 2027 08:00:30 GMT is 30 s after `now`
    assert stringee_media.retry_after_seconds("Fri, 15 Jan 2027 08:00:30 GMT", now=now) == 30.0
    assert stringee_media.retry_after_seconds("soon", now=now) == 5.0
    assert stringee_media.retry_after_seconds(None, now=now) == 5.0


async def test_the_recording_is_found_in_the_second_region(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    region = FakeStringee(KEY.sid, KEY.secret, "signing")
    await region.start()
    try:
        cid = call_id()
        region.add(cid, mp3_bytes())
        got = await client(session, [fake.base_url, region.base_url]).download(cid, tmp_path / "r")
        assert got.host == region.base_url
        assert fake.gets[cid] == 1 and region.gets[cid] == 1  # asked the first, found in the second
    finally:
        await region.close()


async def test_404_everywhere_is_not_found(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    with pytest.raises(MediaNotFound, match="404 from"):
        await client(session, [fake.base_url]).download(call_id(), tmp_path / "r.mp3")


async def test_redirect_is_followed_without_the_jwt(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cid = call_id()
    fake.add(cid, mp3_bytes(), via_cdn=True)
    got = await client(session, [fake.base_url]).download(cid, tmp_path / "r.mp3")
    assert got.size == len(mp3_bytes())
    assert fake.cdn_credentials == 0


async def test_json_instead_of_audio_is_not_ready_yet(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cid = call_id()
    fake.add(cid, mp3_bytes(), processing_for=1)
    media = client(session, [fake.base_url])
    with pytest.raises(MediaNotReady, match="JSON"):
        await media.download(cid, tmp_path / "r.mp3")
    assert (await media.download(cid, tmp_path / "r.mp3")).content_type == "audio/mpeg"


async def test_not_audio_and_too_large_are_permanent(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    page = call_id()
    fake.add(page, b"<html>login</html>" * 10, content_type="text/html")
    with pytest.raises(Permanent, match="not MP3, WAV or MP4"):
        await client(session, [fake.base_url]).download(page, tmp_path / "r")
    big = call_id()
    fake.add(big, mp3_bytes(frames=100))
    with pytest.raises(Permanent, match="cap"):
        await client(session, [fake.base_url], max_bytes=1000).download(big, tmp_path / "r")


@pytest.mark.parametrize("bad", ["../v1/account", "a/b", "", "x" * 200, "id?access_token=1"])
async def test_ids_that_are_not_stringee_ids_are_never_requested(
    fake: FakeStringee, session: aiohttp.ClientSession, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(Permanent):
        await client(session, [fake.base_url]).download(bad, tmp_path / "r")
    assert sum(fake.gets.values()) == 0 and fake.unauthorised == 0


@pytest.mark.parametrize(
    "hosts",
    [["http://api.stringee.com"], ["https://api.stringee.com/v1"], [], ["https://u:p@x.com"]],
)
def test_bad_host_lists_refused(session: aiohttp.ClientSession, hosts: list[str]) -> None:
    with pytest.raises(ValueError):
        client(session, hosts)


def test_host_list_from_configuration_text() -> None:
    from service.platforms.stringee.hosts import parse_hosts

    assert parse_hosts(" https://asia-3.api.stringee.com/ ,https://api.stringee.com,") == (
        "https://asia-3.api.stringee.com",
        "https://api.stringee.com",
    )
