"""A test-side Stringee on loopback: its REST API for recordings, and its side of the webhooks.

REST (as developer.stringee.com documents it and its users report it):
- ``GET /v1/call/recording/{id}`` wants the REST JWT in ``X-STRINGEE-AUTH`` or an
  ``access_token`` query parameter: HS256 under the API key secret, header
  ``cty: stringee-api;v=1``, payload ``iss`` = the key SID, ``jti``, ``exp`` in the future and
  ``rest_api: true``. Anything else is ``401`` with Stringee's ``{"r": ..., "message": ...}``.
- ``GET /v1/call/log?id=`` (docs /docs/call-rest-api/call-rest-api-call-log), the same JWT:
  ``{"r": 0, "message": "Load call(s) success", "data": {"totalCalls": "N", "totalPages",
  "currentPage", "limit", "calls": [...]}}``, each call with the documented ``id``, ``uuid``,
  ``project_id``, ``from_number``/``to_number`` (no "+"), ``start_time``/``stop_time`` (ms),
  ``created`` (s) and ``recorded`` (0 or 1). A call is logged when it ends.
- A recording can answer ``429`` with ``Retry-After`` a given number of times first
  (``rate_limited``), be served through a ``302`` to a second host (a CDN) that counts any
  request carrying the JWT (``cdn_credentials`` must stay 0), or answer a small JSON body
  instead of audio while "processing" (``processing_for``).

Webhooks: it signs as Stringee documents (base64 HMAC-SHA1 under the project's signing secret,
over the raw body of a POST and the Request-URI of a GET, spaces as ``%20``). Stringee
documents no retry, duplicate or ordering behaviour for its webhooks, and none was found
reported, so :meth:`FakeStringee.deliver` treats them as a hostile network would: it can send a
payload twice, shuffle the order, and re-send after a non-2xx answer or a dropped connection,
so that handlers are shown to be idempotent and order-independent under each.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from service.platforms.stringee.signature import SIGNATURE_HEADER, sign


def mp3_bytes(frames: int = 40) -> bytes:
    """An MPEG-1 Layer III stream as far as magic bytes go: an ID3v2 header, then frames."""
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    frame = b"\xff\xfb\x90\x64" + bytes(413)  # 128 kb/s, 44.1 kHz frame header + payload
    return id3 + frame * frames


def call_id() -> str:
    """An id shaped like Stringee's: call-vn-1-<10 uppercase>-<ms timestamp>."""
    letters = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(10))
    return f"call-vn-1-{letters}-{int(time.time() * 1000)}"


def call_event(call: str, status: str, **extra: Any) -> dict[str, Any]:
    """An event_url body shaped like docs/server/call-events."""
    event: dict[str, Any] = {
        "call_status": status,
        "project_id": 25,
        "request_from_user_id": "",
        "account_sid": "ACab9b9bcf6391c6af9fe1663c729e3a6b",
        "timestamp_ms": int(time.time() * 1000),
        "from": {"number": "84899199866", "alias": "84899199866", "type": "external"},
        "to": {"number": "842473082686", "alias": "842473082686", "type": "external"},
        "clientCustomData": "",
        "type": "stringee_call",
        "call_id": call,
    }
    if status == "ended":
        event |= {
            "callCreatedReason": "EXTERNAL_CALL_IN",
            "endCallCause": "USER_END_CALL",
            "endedBy": "EXTERNAL",
            "callType": "CALL",
            "duration": 9,
            "answerDuration": 7,
        }
    return event | extra


@dataclass
class Caller:
    """What the fake caller does: the key pressed at an ``input`` (None: silence, the input
    times out), or hanging up while the notice plays."""

    digits: str | None = None
    hang_up_during_notice: bool = False
    number: str = "84909986668"
    recording: bytes = field(default_factory=mp3_bytes)


@dataclass
class PlayedCall:
    """What happened on a call the fake ran: the SCCOs it was given, the notice actions it
    played, what each request to callvault answered, and whether Stringee recorded."""

    call_id: str
    sccos: list[list[dict[str, Any]]] = field(default_factory=list)
    played: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)
    recorded: bool = False
    connected: dict[str, Any] | None = None


@dataclass
class Recording:
    body: bytes
    content_type: str = "audio/mpeg"
    rate_limited: int = 0  # answer 429 this many times first
    retry_after: str = "1"
    via_cdn: bool = False
    processing_for: int = 0  # answer a small JSON body this many times first


@dataclass
class FakeStringee:
    key_sid: str
    key_secret: str
    signing_secret: str
    clock: Callable[[], float] = time.time
    project_id: int = 25  # the project's id in its event_url posts
    recordings: dict[str, Recording] = field(default_factory=dict)
    call_log: dict[str, dict[str, Any]] = field(default_factory=dict)  # by call id
    log_gets: Counter[str] = field(default_factory=Counter)  # call-log questions, by ?id=
    gets: Counter[str] = field(default_factory=Counter)
    unauthorised: int = 0
    rate_limited: int = 0
    cdn_credentials: int = 0  # requests to the CDN that carried the JWT
    server: TestServer | None = None
    cdn: TestServer | None = None
    _cdn_links: dict[str, str] = field(default_factory=dict)

    # ---- REST side ----------------------------------------------------------------------

    def add(self, media_id: str, body: bytes, **options: Any) -> None:
        self.recordings[media_id] = Recording(body=body, **options)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/call/recording/{id}", self._recording)
        app.router.add_get("/v1/call/log", self._call_log)
        cdn = web.Application()
        cdn.router.add_get("/cdn/{token}", self._cdn)
        self.server = TestServer(app, host="127.0.0.1")
        self.cdn = TestServer(cdn, host="127.0.0.1")
        await self.server.start_server()
        await self.cdn.start_server()

    async def close(self) -> None:
        for server in (self.server, self.cdn):
            if server is not None:
                await server.close()

    def token_problem(self, token: str | None) -> str | None:
        """Why a REST token would be refused, or None when Stringee would accept it."""
        if not token:
            return "missing X-STRINGEE-AUTH"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.key_secret,
                algorithms=["HS256"],
                options={"verify_exp": False, "require": ["exp", "iss", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return f"bad token: {type(exc).__name__}"
        if header.get("cty") != "stringee-api;v=1":
            return "header cty is not stringee-api;v=1"
        if claims.get("iss") != self.key_sid:
            return "iss is not the API key SID"
        if claims.get("rest_api") is not True:
            return "rest_api is not true"
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self.clock():
            return "expired"
        return None

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        media_id = request.match_info["id"]
        token = request.headers.get("X-STRINGEE-AUTH") or request.query.get("access_token")
        problem = self.token_problem(token)
        if problem is not None:
            self.unauthorised += 1
            return web.json_response({"r": 2, "message": problem}, status=401)
        self.gets[media_id] += 1
        recording = self.recordings.get(media_id)
        if recording is None:
            return web.json_response({"r": 3, "message": "record not found"}, status=404)
        if recording.rate_limited > 0:
            recording.rate_limited -= 1
            self.rate_limited += 1
            return web.json_response(
                {"r": 429, "message": "too many requests"},
                status=429,
                headers={"Retry-After": recording.retry_after},
            )
        if recording.processing_for > 0:
            recording.processing_for -= 1
            return web.json_response({"r": 0, "message": "processing"})
        if recording.via_cdn:
            assert self.cdn is not None
            link = secrets.token_hex(8)
            self._cdn_links[link] = media_id
            location = str(self.cdn.make_url(f"/cdn/{link}")) + f"?sig={secrets.token_hex(8)}"
            return web.Response(status=302, headers={"Location": location})
        return web.Response(body=recording.body, content_type=recording.content_type)

    def log_call(self, cid: str, caller: str, to: str, *, recorded: bool) -> None:
        """The call-log entry Stringee keeps for an ended call (the documented fields)."""
        now_ms = int(self.clock() * 1000)
        self.call_log[cid] = {
            "id": cid,
            "uuid": cid,  # see run_call: the answer_url's uuid is the call's id here
            "project_id": str(self.project_id),
            "from_user_id": None,
            "from_number": caller,
            "to_number": to,
            "from_internal": 0,
            "to_internal": 0,
            "start_time": now_ms - 9000,
            "answer_time": now_ms - 7000,
            "stop_time": now_ms,
            "amount": "0.00000",
            "created": now_ms // 1000,
            "recorded": 1 if recorded else 0,
        }

    async def _call_log(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("X-STRINGEE-AUTH") or request.query.get("access_token")
        problem = self.token_problem(token)
        if problem is not None:
            self.unauthorised += 1
            return web.json_response({"r": 2, "message": problem}, status=401)
        wanted = request.query.get("id")
        self.log_gets[wanted or ""] += 1
        calls = [c for c in self.call_log.values() if wanted is None or c["id"] == wanted]
        return web.json_response(
            {
                "r": 0,
                "message": "Load call(s) success",
                "data": {
                    "totalCalls": str(len(calls)),
                    "totalPages": 1,
                    "currentPage": 1,
                    "limit": 100,
                    "calls": calls[:100],
                },
            }
        )

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        if "X-STRINGEE-AUTH" in request.headers:
            self.cdn_credentials += 1
            return web.Response(status=400, text="credentials sent to the CDN")
        media_id = self._cdn_links.pop(request.match_info["token"], None)
        if media_id is None:
            return web.Response(status=403)
        recording = self.recordings[media_id]
        return web.Response(body=recording.body, content_type=recording.content_type)

    # ---- webhook side -------------------------------------------------------------------

    def sign_body(self, body: bytes) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign(self.signing_secret, body)}

    @staticmethod
    def request_uri(path: str, params: Mapping[str, str]) -> str:
        """The answer_url Request-URI as Stringee builds it: parameters appended, spaces as
        ``%20`` (docs/validating-requests-are-coming-from-stringee)."""
        return path + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)

    def sign_uri(self, request_uri: str) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign(self.signing_secret, request_uri.encode("utf-8"))}

    async def answer(
        self, session: aiohttp.ClientSession, base_url: str, path: str, params: Mapping[str, str]
    ) -> tuple[int, Any]:
        """GET the answer_url as Stringee does; the status and the JSON (SCCO) it answered."""
        uri = self.request_uri(path, params)
        url = URL(base_url.rstrip("/") + uri, encoded=True)
        async with session.get(url, headers=self.sign_uri(uri)) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post(
        self, session: aiohttp.ClientSession, url: str, payload: Mapping[str, Any]
    ) -> tuple[int, bytes]:
        """POST a JSON body signed over its exact bytes (event_url, input and record eventUrls)."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"} | self.sign_body(body)
        async with session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def run_call(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        answer_path: str,
        event_url: str,
        caller: Caller,
        to: str = "842473082686",
        max_steps: int = 20,
        call_id_: str | None = None,
        send_record_event: bool = True,
    ) -> PlayedCall:
        """Play one call from the phone network to a number whose answer_url is
        ``base_url + answer_path``, running the SCCOs callvault answers as Stringee runs them:
        actions in order; ``talk``/``play``/``stream`` (the notice) played; an ``input`` posts
        the caller's key (or a timeout) to its ``eventUrl`` and the SCCO that answers replaces
        the rest; ``record`` starts recording; ``connect`` hands the call to the contact centre.
        When the call ends, ``ended`` goes to the event_url and, if it was recorded, the
        recording is stored for the REST API and announced to the record ``eventUrl``.

        Assumed where Stringee documents nothing: the number's answer_url ``uuid`` equals the
        ``call_id`` of the call's events, the input eventUrl is called with ``"timeout": true``
        on silence, and the record eventUrl gets ``{"call_id", "recordId"}``
        (service/platforms/stringee/README.md). ``call_id_``: the call's id, when a test
        needs a given one (two projects can use the same); ``send_record_event`` False: the
        record eventUrl is lost on the way (the call log still says the call was recorded)."""
        played = PlayedCall(call_id_ or call_id())
        cid = played.call_id
        params = {"from": caller.number, "to": to, "uuid": cid, "fromInternal": "false"}
        status, answer = await self.answer(session, base_url, answer_path, params)
        played.statuses.append(("answer", status))
        record_url: str | None = None
        actions: list[dict[str, Any]] = list(answer) if status == 200 else []
        played.sccos.append(list(actions))
        steps = 0
        while actions and steps < max_steps:
            steps += 1
            action = actions.pop(0)
            kind = action.get("action")
            if kind in ("talk", "play", "stream"):
                played.played.append(action)
                if caller.hang_up_during_notice:
                    actions = []
                    break
            elif kind == "input":
                keyed = (caller.digits or "")[: int(action.get("maxDigits") or 1)]
                payload = {
                    "time": str(int(self.clock() * 1000)),
                    "dtmf": keyed,
                    "call_id": cid,
                    "customField": action.get("customField", ""),
                    "timeout": not keyed,
                }
                status, body = await self.post(session, action["eventUrl"], payload)
                played.statuses.append(("input", status))
                actions = list(json.loads(body)) if status == 200 else []
                played.sccos.append(list(actions))
            elif kind == "record":
                played.recorded = True
                record_url = action.get("eventUrl") or None
            elif kind == "connect":
                played.connected = action
                break
        ended = call_event(cid, "ended", project_id=self.project_id)
        ended["from"]["number"] = caller.number
        ended["to"]["number"] = ended["to"]["alias"] = to
        status, _ = await self.post(session, event_url, ended)
        played.statuses.append(("ended", status))
        self.log_call(cid, caller.number, to, recorded=played.recorded)
        if played.recorded:
            self.add(cid, caller.recording)
            if record_url and send_record_event:
                status, _ = await self.post(session, record_url, {"call_id": cid, "recordId": cid})
                played.statuses.append(("record", status))
        return played

    async def deliver(
        self,
        session: aiohttp.ClientSession,
        url: str,
        payloads: Sequence[Mapping[str, Any]],
        *,
        duplicate: Iterable[int] = (),
        shuffle: random.Random | None = None,
        retries: int = 0,
    ) -> list[int]:
        """Deliver ``payloads`` to ``url``: the ones at the indexes in ``duplicate`` twice, in an
        order ``shuffle`` scrambles, each re-sent up to ``retries`` times after a non-2xx answer
        or a failed connection. The final status of each delivery, in delivery order."""
        twice = set(duplicate)
        queue = [p for i, p in enumerate(payloads) for _ in range(2 if i in twice else 1)]
        if shuffle is not None:
            shuffle.shuffle(queue)
        statuses: list[int] = []
        for payload in queue:
            status = 0
            for _ in range(retries + 1):
                try:
                    status, _body = await self.post(session, url, payload)
                except aiohttp.ClientError:
                    status = 0
                if 200 <= status < 300:
                    break
            statuses.append(status)
        return statuses
