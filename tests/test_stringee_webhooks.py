"""The fake's webhook side against a stand-in receiver built from the Stringee modules: what
the fake signs verifies, anything else is refused before parsing, and duplicated, shuffled or
retried deliveries arrive intact (the routes themselves are wired by the platform port)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.errors import BadRequest
from service.platforms.stringee import events, scco, signature
from tests.stringee_fake import FakeStringee, call_event, call_id

SIGNING = "project-signing-secret"


@dataclass
class Receiver:
    secret: str
    fail_first: int = 0  # answer 503 to this many POSTs first
    seen: list[events.CallEvent] = field(default_factory=list)
    refused: int = 0
    answers: list[events.AnswerRequest] = field(default_factory=list)

    async def answer(self, request: web.Request) -> web.Response:
        if not signature.verify_request_uri(
            [self.secret], request.raw_path, request.headers.get(signature.SIGNATURE_HEADER)
        ):
            self.refused += 1
            return web.json_response({"error": {"code": "bad_signature"}}, status=403)
        self.answers.append(events.parse_answer(request.query))
        notice = scco.Notice(scco.NoticeKind.TALK, text="Cuộc gọi được ghi âm.", language="vi")
        ask = scco.Ask(event_url="https://cc.example.vn/telephony/stringee/input", explicit=True)
        return web.json_response(scco.notice_answer(notice, ask))

    async def event(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not signature.verify_body(
            [self.secret], raw, request.headers.get(signature.SIGNATURE_HEADER)
        ):
            self.refused += 1
            return web.json_response({"error": {"code": "bad_signature"}}, status=403)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        try:
            self.seen.append(events.parse_call_event(raw))
        except BadRequest as exc:
            return web.json_response({"error": {"code": exc.code}}, status=400)
        return web.json_response({})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rx = Receiver(SIGNING)
    app = web.Application()
    app.router.add_get("/telephony/stringee/answer", rx.answer)
    app.router.add_post("/telephony/stringee/event", rx.event)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rx, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_signed_answer_url_get_is_answered_with_scco(
    receiver: tuple[Receiver, str], session: aiohttp.ClientSession
) -> None:
    rx, base = receiver
    cloud = FakeStringee("SK0123456789", "k", SIGNING)
    params = {"from": "84909986668", "to": "842473082686", "uuid": "890ccbe2-f9a6", "custom": "a b"}
    status, answer = await cloud.answer(session, base, "/telephony/stringee/answer", params)
    assert status == 200
    assert [a["action"] for a in answer] == ["talk", "input"]
    assert rx.answers[0].external_id == "890ccbe2-f9a6" and rx.answers[0].custom == "a b"


async def test_wrong_secret_refused_before_anything_is_parsed(
    receiver: tuple[Receiver, str], session: aiohttp.ClientSession
) -> None:
    rx, base = receiver
    impostor = FakeStringee("SK0123456789", "k", "not-the-signing-secret")
    status, _ = await impostor.answer(session, base, "/telephony/stringee/answer", {"from": "1"})
    assert status == 403
    statuses = await impostor.deliver(
        session, f"{base}/telephony/stringee/event", [call_event(call_id(), "ended")]
    )
    assert statuses == [403]
    assert rx.refused == 2 and rx.seen == [] and rx.answers == []


async def test_duplicated_and_shuffled_deliveries_all_verify(
    receiver: tuple[Receiver, str], session: aiohttp.ClientSession
) -> None:
    rx, base = receiver
    cloud = FakeStringee("SK0123456789", "k", SIGNING)
    cid = call_id()
    sent = [call_event(cid, s) for s in ("started", "ringing", "answered", "ended")]
    statuses = await cloud.deliver(
        session,
        f"{base}/telephony/stringee/event",
        sent,
        duplicate={1, 3},
        shuffle=random.Random(7),
    )
    assert statuses == [200] * 6
    got = [e.raw_status for e in rx.seen]
    assert sorted(got) == sorted(["started", "ringing", "ringing", "answered", "ended", "ended"])
    assert got != ["started", "ringing", "ringing", "answered", "ended", "ended"]  # reordered
    # what a handler keys on to be idempotent: each (call, status) once
    assert {(e.call_id, e.raw_status) for e in rx.seen} == {(cid, s["call_status"]) for s in sent}


async def test_a_failed_delivery_is_resent_when_retries_are_on(
    receiver: tuple[Receiver, str], session: aiohttp.ClientSession
) -> None:
    rx, base = receiver
    rx.fail_first = 1
    cloud = FakeStringee("SK0123456789", "k", SIGNING)
    url = f"{base}/telephony/stringee/event"
    assert await cloud.deliver(session, url, [call_event(call_id(), "ended")]) == [503]
    rx.fail_first = 1
    assert await cloud.deliver(session, url, [call_event(call_id(), "ended")], retries=2) == [200]
    assert len(rx.seen) == 1
