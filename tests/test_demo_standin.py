"""The Twilio media stand-in ``serve`` mounts in demo mode, on its own: it must answer intake the
way Twilio's recordings API does (Basic auth, by RecordingSid, WAV or MP3, 404 once deleted)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.config import Settings
from service.demo.laptop import STANDIN_PATH, call_audio, mount_standin
from service.platforms.twilio.media import TwilioMedia

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


async def test_it_lists_a_calls_recordings_for_the_reconciler(
    client: TestClient[web.Request, web.Application],
) -> None:
    # The reconciler asks `Recordings.json?CallSid=` for consented calls whose recording
    # callback never came; the stand-in answered 404, so every `callvault simulate` call (no
    # recording) ended, two hours later, as "gave up reconciling ... check it at Twilio".
    call, other = "CA" + "1" * 32, "CA" + "2" * 32
    put = await client.put(f"{BASE}/{RE}.wav?CallSid={call}", data=call_audio(2, 0), headers=AUTH)
    assert put.status == 201
    api = str(client.make_url(STANDIN_PATH))
    settings = Settings(twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_api_url=api)
    async with aiohttp.ClientSession() as session:
        media = TwilioMedia(settings, session)
        listed = await media.list_recordings(call)
        assert [(r.sid, r.call_sid, r.status, r.duration_s) for r in listed] == [
            (RE, call, "completed", 2)
        ]
        assert await media.list_recordings(other) == []  # a call with none: an empty list
        assert (await client.delete(f"{BASE}/{RE}.json", headers=AUTH)).status == 204
        assert await media.list_recordings(call) == []
    unsigned = await client.get(f"{BASE}.json?CallSid={call}")
    assert unsigned.status == 401


async def test_it_pauses_and_resumes_a_calls_recording_for_the_agent_desktop(
    client: TestClient[web.Request, web.Application],
) -> None:
    from service.platforms.port import PlatformUnavailable, RecordingNotActive

    api = str(client.make_url(STANDIN_PATH))
    settings = Settings(twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_api_url=api)
    async with aiohttp.ClientSession() as session:
        media = TwilioMedia(settings, session)
        await media.set_recording_paused("CA" + "1" * 32, True)
        await media.set_recording_paused("CA" + "1" * 32, False)
        with pytest.raises(RecordingNotActive):  # not a CallSid: never sent
            await media.set_recording_paused("call-1", True)
        wrong = replace(settings, twilio_auth_token="wrong")
        with pytest.raises(PlatformUnavailable, match="401"):
            await TwilioMedia(wrong, session).set_recording_paused("CA" + "1" * 32, True)
    unsigned = await client.post(
        f"{STANDIN_PATH}/2010-04-01/Accounts/{SID}/Calls/CA{'1' * 32}/Recordings/"
        "Twilio.CURRENT.json",
        data={"Status": "paused"},
    )
    assert unsigned.status == 401
