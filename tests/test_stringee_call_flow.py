"""Whole calls played by the fake Stringee (running the SCCOs it is answered, as Stringee does)
against a stand-in consent step made of the Stringee modules: the explicit-mode outcomes and a
hang-up during the notice, and a consented recording fetched back with the REST JWT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.platforms.stringee import events, scco, signature
from service.platforms.stringee.media import StringeeMedia
from service.platforms.stringee.rest_auth import ApiKey, TokenSource
from tests.stringee_fake import Caller, FakeStringee, PlayedCall, mp3_bytes

KEY = ApiKey("SK9ntgoHY5m0y38x39kXPQ1xI6PX5nOrJE", "QUoyb2cyUHA1c0U2NUtCV0o1VTVpaHczc0ZVWXI4Mw==")
SIGNING = "project-signing-secret"
CONTINUE = [
    {
        "action": "connect",
        "from": {"type": "external", "number": "842473082686", "alias": "842473082686"},
        "to": {"type": "internal", "number": "agent_1", "alias": "agent_1"},
        "peerToPeerCall": False,
    }
]


@dataclass
class StandIn:
    """Answers as the platform port will, keeping outcomes in memory instead of the ledger."""

    base: str = ""
    outcomes: dict[str, str] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    recordings: list[events.RecordEvent] = field(default_factory=list)

    async def answer(self, request: web.Request) -> web.Response:
        header = request.headers.get(signature.SIGNATURE_HEADER)
        if not signature.verify_request_uri([SIGNING], request.raw_path, header):
            return web.Response(status=403)
        call = events.parse_answer(request.query)
        self.outcomes[call.external_id] = "in_progress"
        notice = scco.Notice(
            scco.NoticeKind.STREAM,
            text="Cuộc gọi có thể được ghi âm. Nhấn 1 để đồng ý, 2 để từ chối.",
            file="https://cc.example.vn/prompts/notice-explicit-vi/1.wav",
            sha256="ab" * 32,
        )
        ask = scco.Ask(event_url=f"{self.base}/input", explicit=True, timeout_s=8)
        return web.json_response(scco.notice_answer(notice, ask))

    async def input(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not signature.verify_body(
            [SIGNING], raw, request.headers.get(signature.SIGNATURE_HEADER)
        ):
            return web.Response(status=403)
        event = events.parse_input_event(raw)
        if event.digit == "1":
            self.outcomes[event.call_id] = "consented"
            record = scco.Record(event_url=f"{self.base}/recording")
            return web.json_response(scco.consented_answer(record, CONTINUE))
        self.outcomes[event.call_id] = "refused" if event.digit == "2" else "no_input"
        return web.json_response(scco.unrecorded_answer(CONTINUE))

    async def event(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not signature.verify_body(
            [SIGNING], raw, request.headers.get(signature.SIGNATURE_HEADER)
        ):
            return web.Response(status=403)
        event = events.parse_call_event(raw)
        if event.call_over:
            self.ended.add(event.call_id)
            if self.outcomes.get(event.call_id) == "in_progress":
                self.outcomes[event.call_id] = "hung_up_during_notice"
        return web.json_response({})

    async def recording(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not signature.verify_body(
            [SIGNING], raw, request.headers.get(signature.SIGNATURE_HEADER)
        ):
            return web.Response(status=403)
        self.recordings.append(events.parse_record_event(raw))
        return web.json_response({})


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    gate = StandIn()
    app = web.Application()
    app.router.add_get("/answer", gate.answer)
    app.router.add_post("/input", gate.input)
    app.router.add_post("/event", gate.event)
    app.router.add_post("/recording", gate.recording)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    gate.base = str(server.make_url("")).rstrip("/")
    yield gate
    await server.close()


@pytest.fixture
async def cloud() -> AsyncIterator[FakeStringee]:
    fake = FakeStringee(KEY.sid, KEY.secret, SIGNING)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def play(
    cloud: FakeStringee, session: aiohttp.ClientSession, gate: StandIn, caller: Caller
) -> PlayedCall:
    return await cloud.run_call(
        session,
        base_url=gate.base,
        answer_path="/answer",
        event_url=f"{gate.base}/event",
        caller=caller,
    )


async def test_consent_records_and_the_recording_comes_back_with_the_jwt(
    cloud: FakeStringee, session: aiohttp.ClientSession, stand_in: StandIn, tmp_path: Path
) -> None:
    audio = mp3_bytes(frames=60)
    call = await play(cloud, session, stand_in, Caller(digits="1", recording=audio))
    assert stand_in.outcomes[call.call_id] == "consented"
    assert [a["action"] for a in call.played] == ["stream"]
    assert call.recorded and call.connected is not None
    assert [a["action"] for a in call.sccos[1]] == ["record", "connect"]
    assert all(status == 200 for _, status in call.statuses)
    [announced] = stand_in.recordings
    media = StringeeMedia(session, TokenSource(KEY), [cloud.base_url], max_bytes=1_000_000)
    got = await media.download(announced.media_id, tmp_path / "r.mp3")
    assert got.path.read_bytes() == audio and cloud.unauthorised == 0


@pytest.mark.parametrize(
    ("digits", "outcome"), [("2", "refused"), (None, "no_input"), ("7", "no_input")]
)
async def test_refusal_and_silence_are_never_recorded(
    cloud: FakeStringee,
    session: aiohttp.ClientSession,
    stand_in: StandIn,
    digits: str | None,
    outcome: str,
) -> None:
    call = await play(cloud, session, stand_in, Caller(digits=digits))
    assert stand_in.outcomes[call.call_id] == outcome
    assert not call.recorded and stand_in.recordings == [] and cloud.recordings == {}
    assert call.connected is not None  # the caller still reaches the contact centre


async def test_hang_up_during_the_notice(
    cloud: FakeStringee, session: aiohttp.ClientSession, stand_in: StandIn
) -> None:
    call = await play(cloud, session, stand_in, Caller(hang_up_during_notice=True))
    assert stand_in.outcomes[call.call_id] == "hung_up_during_notice"
    assert [kind for kind, _ in call.statuses] == ["answer", "ended"]  # no input was posted
    assert call.call_id in stand_in.ended and not call.recorded
