"""The Twilio media stand-in ``serve`` mounts in demo mode, on its own: it must answer intake the
way Twilio's recordings API does (Basic auth, by RecordingSid, WAV or MP3, 404 once deleted)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.config import Settings
from service.demo import STANDIN_PATH, call_audio, mount_standin

SID, TOKEN = "AC" + "a" * 32, "t" * 32
RE = "RE" + "b" * 32
BASE = f"{STANDIN_PATH}/2010-04-01/Accounts/{SID}/Recordings"
AUTH = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    mount_standin(app, Settings(home=tmp_path, twilio_account_sid=SID, twilio_auth_token=TOKEN))
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_media_as_twilio_serves_it(
    client: TestClient[web.Request, web.Application], tmp_path: Path
) -> None:
    audio = call_audio(2, 0)
    assert (await client.get(f"{BASE}/{RE}.wav", headers=AUTH)).status == 404  # not yet
    assert (await client.put(f"{BASE}/{RE}.wav", data=audio, headers=AUTH)).status == 201
    wav = await client.get(f"{BASE}/{RE}.wav", headers=AUTH)
    assert wav.status == 200 and await wav.read() == audio
    mp3 = await client.get(f"{BASE}/{RE}.mp3", headers=AUTH)
    assert mp3.status == 200 and mp3.content_type == "audio/mpeg"
    head = (await mp3.read())[:3]
    assert head == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0)

    wrong = {"Authorization": aiohttp.encode_basic_auth(SID, "wrong")}
    assert (await client.get(f"{BASE}/{RE}.wav", headers=wrong)).status == 401
    assert (await client.get(f"{BASE}/{RE}.wav")).status == 401
    other = f"{STANDIN_PATH}/2010-04-01/Accounts/AC{'c' * 32}/Recordings/{RE}.wav"
    assert (await client.get(other, headers=AUTH)).status == 404  # another account's
    bad = await client.put(f"{BASE}/{RE}.wav", data=b"not audio at all", headers=AUTH)
    assert bad.status == 400

    assert (await client.delete(f"{BASE}/{RE}.json", headers=AUTH)).status == 204
    assert (await client.get(f"{BASE}/{RE}.wav", headers=AUTH)).status == 404  # forgotten
    assert (await client.delete(f"{BASE}/{RE}.json", headers=AUTH)).status == 404
    assert not list((tmp_path / "twilio-standin").iterdir())
