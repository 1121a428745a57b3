"""The whole life of a recording on a laptop, without a Twilio account: ``callvault demo``
(``--platform stringee``: the same calls as Stringee makes them, with its stand-in too;
``--platform pbx``: as a PBX makes them through callvault's PBX API, uploading the recordings).

Two halves:

* **A stand-in for Twilio's recording media API, inside ``serve``.** It is mounted only in demo
  mode: the embedded database and generated Twilio credentials, with no
  ``CALLVAULT_TWILIO_API_URL``, no ``CALLVAULT_DATABASE_URL`` and no ``CALLVAULT_TWILIO_*``
  credentials given. Generated credentials cannot reach a real Twilio account anyway, so nothing
  is lost; with any of those set (production) it is never mounted. In demo mode ``serve`` points
  ``CALLVAULT_TWILIO_API_URL`` at its own loopback ``/_demo/twilio`` and intake downloads and
  deletes there exactly as it would at api.twilio.com: by RecordingSid, with HTTP Basic auth.
  It also adds two queues, ``demo`` (implied consent) and ``demo-explicit`` (press 1 or 2), that
  keep recordings for an hour, so a purge can be watched too.
* **The command**, run against that ``serve``. It plays a handful of calls as Twilio would
  (signed webhooks, following the TwiML), puts each consented call's audio on the stand-in as
  Twilio's recorder would, sends the signed recording callbacks, waits (bounded) until callvault
  has stored the recordings, then prints a QA token, the ``/qa`` URL and what ``callvault purge
  --dry-run`` says about when each recording goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import logging
import math
import re
import secrets
import struct
import time
import wave
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import jwt
from aiohttp import web

from service.config import Settings
from service.errors import CallvaultError
from service.platforms.stringee.events import EXTERNAL_ID
from service.platforms.stringee.rest_auth import AUTH_HEADER, ApiKey, TokenSource
from service.platforms.twilio.media import check_recording_sid
from service.vocabulary import Outcome, Role

log = logging.getLogger(__name__)
T = TypeVar("T")

STANDIN_PATH = "/_demo/twilio"
_ACCOUNT = STANDIN_PATH + "/2010-04-01/Accounts/{account}"
_CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
MAX_MEDIA_BYTES = 16 * 1024 * 1024  # demo calls are seconds long
DEMO_RETENTION = "1h"
DEMO_QUEUES: dict[str, dict[str, Any]] = {
    "demo": {"consent_mode": "implied", "retention": DEMO_RETENTION},
    "demo-explicit": {"consent_mode": "explicit", "retention": DEMO_RETENTION},
}
# Stringee names no queue in its answer_url: the called number picks the demo queue
DEMO_NUMBERS: dict[str, dict[str, Any]] = {
    "+842873009000": {"queue": "demo"},
    "+842873009001": {"queue": "demo-explicit"},
}
PLAYERS = {"twilio": "Twilio", "stringee": "Stringee", "pbx": "a PBX"}  # "... as X would"
STRINGEE_STANDIN_PATH = "/v1/call/recording"  # Stringee's own path: its hosts are origins


def stringee_demo_keys(secret_key: str) -> tuple[str, ApiKey]:
    """The demo Stringee project's signing secret and API key, derived from the secret key, so
    ``serve`` and ``callvault demo`` (same home) agree without storing more secrets."""

    def derive(label: str) -> str:
        return hmac.new(secret_key.encode(), label.encode(), hashlib.sha256).hexdigest()

    sid = "SKdemo" + derive("stringee-api-key-sid")[:16]
    return derive("stringee-signing-secret")[:40], ApiKey(sid, derive("stringee-api-key-secret"))


# --- serve's side: demo mode and the media stand-in ---------------------------------------------


def with_standin(loaded: Settings, resolved: Settings) -> Settings:
    """``resolved`` in demo mode when ``loaded`` (what the operator set) is the embedded default:
    no database URL, no Twilio credentials, no Twilio API URL. Anything else is returned as is."""
    if (
        loaded.database_url
        or loaded.twilio_account_sid
        or loaded.twilio_auth_token
        or loaded.twilio_api_url != Settings().twilio_api_url
    ):
        return resolved
    host = resolved.host
    if host in ("", "0.0.0.0", "::", "localhost"):  # noqa: S104 - a comparison, not a bind
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    demo = replace(
        resolved,
        twilio_api_url=f"http://{host}:{resolved.port}{STANDIN_PATH}",
        twilio_standin=True,
        queues={**DEMO_QUEUES, **resolved.queues},
        numbers={**DEMO_NUMBERS, **resolved.numbers},
    )
    if resolved.secret_key and not (loaded.stringee_signing_secret or loaded.stringee_api_key_sid):
        # a demo Stringee project too, its recordings on the same stand-in server
        signing, key = stringee_demo_keys(resolved.secret_key)
        demo = replace(
            demo,
            stringee_signing_secret=signing,
            stringee_api_key_sid=key.sid,
            stringee_api_key_secret=key.secret,
            stringee_api_urls=(f"http://{host}:{resolved.port}",),
        )
    return demo


class StringeeStandIn:
    """Stringee's ``GET /v1/call/recording/{id}`` with the REST JWT in ``X-STRINGEE-AUTH`` (401
    otherwise, 404 for an unknown recording), plus a PUT with which ``callvault demo`` plays
    Stringee's recorder. Files under ``$CALLVAULT_HOME/stringee-standin``. Stringee has no
    delete, so neither has this: the copies stay, as they would at Stringee."""

    def __init__(self, settings: Settings) -> None:
        assert settings.stringee_api_key_sid and settings.stringee_api_key_secret
        self.key = ApiKey(settings.stringee_api_key_sid, settings.stringee_api_key_secret)
        self.folder = settings.home / "stringee-standin"

    def _authorised(self, request: web.Request) -> bool:
        token = request.headers.get(AUTH_HEADER, "")
        try:
            claims = jwt.decode(token, self.key.secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return False
        return claims.get("iss") == self.key.sid and claims.get("rest_api") is True

    async def recording(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"r": 2, "message": "unauthorised"}, status=401)
        media_id = request.match_info["id"]
        if not EXTERNAL_ID.match(media_id):
            return web.json_response({"r": 3, "message": "record not found"}, status=404)
        path = self.folder / f"{media_id}.wav"
        if request.method == "PUT":
            body = await request.read()
            if len(body) > MAX_MEDIA_BYTES or body[:4] != b"RIFF" or body[8:12] != b"WAVE":
                return web.json_response({"r": 1, "message": "not a WAV"}, status=400)
            await asyncio.to_thread(_write, path, body)
            return web.Response(status=201)
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return web.json_response({"r": 3, "message": "record not found"}, status=404)
        return web.Response(body=body, content_type="audio/x-wav")

    async def call_log(self, request: web.Request) -> web.Response:
        """``GET /v1/call/log?id=`` as Stringee answers it, so the reconciler that looks for
        lost record eventUrls gets a true answer in demo mode: every call asked about was made
        "at Stringee" here, recorded if its file is here (a ``simulate`` call has none)."""
        if not self._authorised(request):
            return web.json_response({"r": 2, "message": "unauthorised"}, status=401)
        call_id = request.query.get("id", "")
        if not EXTERNAL_ID.match(call_id):
            return web.json_response({"r": 1, "message": "id is required"}, status=400)
        recorded = await asyncio.to_thread((self.folder / f"{call_id}.wav").exists)
        entry = {"id": call_id, "uuid": call_id, "recorded": 1 if recorded else 0}
        return web.json_response(
            {
                "r": 0,
                "message": "Load call(s) success",
                "data": {"totalCalls": "1", "totalPages": 1, "currentPage": 1, "calls": [entry]},
            }
        )


class MediaStandIn:
    """Twilio's ``/2010-04-01/Accounts/{AC}/Recordings/{RE}.{wav,mp3,json}`` for GET and DELETE
    as Twilio documents them (Basic auth, 404 for an unknown or deleted recording), plus a PUT
    with which ``callvault demo`` plays Twilio's recorder. Recordings are files under
    ``$CALLVAULT_HOME/twilio-standin`` so a restart of ``serve`` loses none.

    ``GET .../Recordings.json?CallSid=`` lists a call's recordings as Twilio does (an empty list
    for a call with none), so the reconciler that looks for lost recording callbacks gets a
    true answer in demo mode too: without it every consented ``callvault simulate`` call, which
    has no recording, was asked about 8 times over two hours and then logged as an error."""

    def __init__(self, settings: Settings) -> None:
        assert settings.twilio_account_sid and settings.twilio_auth_token
        self.account = settings.twilio_account_sid
        self.auth = aiohttp.encode_basic_auth(
            settings.twilio_account_sid, settings.twilio_auth_token
        )
        self.folder = settings.home / "twilio-standin"

    def _check(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), self.auth.encode()):
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.match_info["account"] != self.account:
            return _not_found()
        return None

    async def account_info(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        return web.json_response(
            {"sid": self.account, "friendly_name": "callvault demo stand-in", "status": "active"}
        )

    async def update_recording(self, request: web.Request) -> web.Response:
        """``POST .../Calls/{CallSid}/Recordings/Twilio.CURRENT.json`` (pause and resume): the
        demo's calls have no live recorder, so any call callvault says is recording is; the
        form is checked as Twilio documents it."""
        refused = self._check(request)
        if refused is not None:
            return refused
        form = await request.post()
        status, behaviour = form.get("Status"), form.get("PauseBehavior", "silence")
        if not _CALL_SID.match(request.match_info["call"]) or request.match_info["sid"] != (
            "Twilio.CURRENT"
        ):
            return _not_found()
        if status not in ("paused", "in-progress", "stopped") or behaviour not in (
            "skip",
            "silence",
        ):
            return web.json_response({"code": 21220, "message": "bad Status"}, status=400)
        return web.json_response(
            {"call_sid": request.match_info["call"], "status": status, "sid": None}
        )

    async def recording(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        sid = check_recording_sid(request.match_info["sid"])
        ext = request.match_info["ext"]
        path = self.folder / f"{sid}.wav"
        if request.method == "PUT" and ext == "wav":
            body = await request.read()
            if len(body) > MAX_MEDIA_BYTES or body[:4] != b"RIFF" or body[8:12] != b"WAVE":
                return web.json_response({"code": 21620, "message": "not a WAV"}, status=400)
            call_sid = request.query.get("CallSid", "")
            if call_sid and not _CALL_SID.match(call_sid):
                return web.json_response({"code": 20001, "message": "bad CallSid"}, status=400)
            await asyncio.to_thread(_write, path, body)
            if call_sid:
                await asyncio.to_thread(_write, path.with_suffix(".call"), call_sid.encode())
            return web.Response(status=201)
        if request.method == "DELETE" and ext == "json":
            try:
                await asyncio.to_thread(path.unlink)
            except FileNotFoundError:
                return _not_found()
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.with_suffix(".call").unlink)
            return web.Response(status=204)
        if request.method == "GET" and ext in ("wav", "mp3"):
            try:
                body = await asyncio.to_thread(path.read_bytes)
            except FileNotFoundError:
                return _not_found()
            if ext == "mp3":
                body = await asyncio.to_thread(_to_mp3, body)
                return web.Response(body=body, content_type="audio/mpeg")
            return web.Response(body=body, content_type="audio/x-wav")
        return _not_found()

    async def list_recordings(self, request: web.Request) -> web.Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        call_sid = request.query.get("CallSid", "")
        if not _CALL_SID.match(call_sid):
            return web.json_response({"code": 20001, "message": "CallSid is required"}, status=400)
        items = await asyncio.to_thread(self._recordings_of, call_sid)
        return web.json_response(
            {"recordings": items, "next_page_uri": None, "page": 0, "page_size": len(items)}
        )

    def _recordings_of(self, call_sid: str) -> list[dict[str, Any]]:
        if not self.folder.is_dir():
            return []
        items = []
        for marker in sorted(self.folder.glob("*.call")):
            wav = marker.with_suffix(".wav")
            if marker.read_text() != call_sid or not wav.exists():
                continue
            with wave.open(str(wav), "rb") as w:
                duration = w.getnframes() // max(w.getframerate(), 1)
            items.append(
                {
                    "sid": marker.stem,
                    "account_sid": self.account,
                    "call_sid": call_sid,
                    "status": "completed",
                    "duration": str(duration),
                    "channels": 1,
                    "source": "StartCallRecordingTwiML",
                }
            )
        return items


def _not_found() -> web.Response:
    return web.json_response(
        {"code": 20404, "message": "The requested resource was not found"}, status=404
    )


def _write(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(path)


def _to_mp3(wav: bytes) -> bytes:
    from prompts.audio import pydub

    out = io.BytesIO()
    pydub().from_file(io.BytesIO(wav), format="wav").export(out, format="mp3", bitrate="32k")
    return out.getvalue()


def mount_standin(app: web.Application, settings: Settings) -> None:
    standin = MediaStandIn(settings)
    app.router.add_get(_ACCOUNT + ".json", standin.account_info)
    app.router.add_get(_ACCOUNT + "/Recordings.json", standin.list_recordings)
    app.router.add_route("*", _ACCOUNT + "/Recordings/{sid}.{ext}", standin.recording)
    app.router.add_post(_ACCOUNT + "/Calls/{call}/Recordings/{sid}.json", standin.update_recording)
    if settings.stringee_api_key_sid and settings.stringee_api_key_secret:
        stringee = StringeeStandIn(settings)
        app.router.add_route("GET", STRINGEE_STANDIN_PATH + "/{id}", stringee.recording)
        app.router.add_route("PUT", STRINGEE_STANDIN_PATH + "/{id}", stringee.recording)
        app.router.add_get("/v1/call/log", stringee.call_log)
    log.warning(
        "demo mode: Twilio's media API is a local stand-in (generated credentials, embedded "
        "database); set CALLVAULT_TWILIO_ACCOUNT_SID and CALLVAULT_TWILIO_AUTH_TOKEN for a real "
        "account",
        extra={"twilio_api_url": settings.twilio_api_url},
    )


# --- the command --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoCall:
    label: str
    behaviour: str
    queue: str
    outcome: Outcome  # what callvault must decide
    seconds: int  # how long the recorded part lasts, when there is one

    @property
    def recorded(self) -> bool:
        return self.outcome == Outcome.CONSENTED


CALLS = (
    DemoCall("stayed on the line", "stay", "demo", Outcome.CONSENTED, 4),
    DemoCall("hung up during the notice", "hang-up", "demo", Outcome.HUNG_UP_DURING_NOTICE, 0),
    DemoCall("pressed 1 (allow)", "press-1", "demo-explicit", Outcome.CONSENTED, 3),
    DemoCall("pressed 2 (refuse)", "press-2", "demo-explicit", Outcome.REFUSED, 0),
    DemoCall("pressed nothing", "silent", "demo-explicit", Outcome.NO_INPUT, 0),
)


def call_audio(seconds: int, seed: int) -> bytes:
    """What Twilio's recorder would hand over: 8 kHz 16-bit mono WAV. A few tones stand in for
    the conversation, different for each call so each stored object is distinct."""
    rate = 8000
    notes = [392.0, 440.0, 494.0, 523.0, 587.0, 659.0]
    frames = bytearray()
    for i in range(seconds * rate):
        freq = notes[(i // (rate // 2) + seed) % len(notes)]
        frames += struct.pack("<h", int(6000 * math.sin(2 * math.pi * freq * i / rate)))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return out.getvalue()


@dataclass
class Played:
    call: DemoCall
    call_sid: str
    recording_sid: str | None = None
    outcome: str | None = None
    state: str | None = None  # of the recording, once callvault knows it

    @property
    def settled(self) -> bool:
        return self.outcome == self.call.outcome and (
            self.recording_sid is None or self.state == "stored"
        )


def main(settings: Settings, *, timeout_s: float, platform: str = "twilio") -> int:
    """``callvault demo``: ``settings`` with secrets resolved; the database is found only once
    ``serve`` is known to answer (the embedded one is serve's)."""
    return asyncio.run(run(settings, timeout_s=timeout_s, platform=platform))


class _Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def run(self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        from service.db import tenancy
        from service.db.pool import connect
        from service.db.server import database_url

        if not self.settings.database_url:
            url = await asyncio.to_thread(database_url, self.settings)
            self.settings = replace(self.settings, database_url=url)
        assert self.settings.database_url
        conn = await connect(self.settings.database_url)
        try:
            await tenancy.set_tenant(conn, tenancy.DEFAULT)  # the demo plays the default tenant
            return await work(conn)
        finally:
            await conn.close()


async def run(settings: Settings, *, timeout_s: float, platform: str = "twilio") -> int:
    """Plays :data:`CALLS` against ``settings.public_url`` and prints what happened. The token
    and the purge lines come from the same code as ``callvault token create`` and ``callvault
    purge --dry-run``."""
    from retention import purge
    from service.cli.token import issue_token
    from service.platforms.twilio.simulate import Caller, FakeTwilio

    public = settings.public_url.rstrip("/")
    assert settings.twilio_account_sid and settings.twilio_auth_token
    auth = aiohttp.encode_basic_auth(settings.twilio_account_sid, settings.twilio_auth_token)
    account_url = f"{public}{STANDIN_PATH}/2010-04-01/Accounts/{settings.twilio_account_sid}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await _check_demo_mode(session, public, account_url, auth)
        twilio = FakeTwilio(
            session,
            public,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
        )
        print(f"playing {len(CALLS)} calls against {public} as {PLAYERS[platform]} would:")
        played = []
        db = _Database(settings)
        # one player per platform; Twilio's is the loop below
        calls = CALLS if platform == "twilio" else ()
        if platform == "stringee":
            played = await _play_stringee(session, settings, public)
        elif platform == "pbx":
            pbx_token = await db.run(
                lambda conn: issue_token(conn, f"demo-pbx-{secrets.token_hex(4)}", Role.TELEPHONY)
            )
            played = await _play_pbx(session, public, pbx_token)
        for n, call in enumerate(calls):
            trace = await twilio.place_call(
                f"+849055500{n:02d}",
                "+842873001234",
                Caller.parse(call.behaviour),
                voice_path=f"/telephony/twilio/voice?queue={call.queue}",
            )
            if trace.errors:
                raise CallvaultError(f"call '{call.label}': {'; '.join(trace.errors)}")
            item = Played(call, trace.call_sid)
            if trace.recording_callback:
                # Twilio's recorder: the media exists at the API before the callback is sent
                item.recording_sid = "RE" + secrets.token_hex(16)
                audio = await asyncio.to_thread(call_audio, call.seconds, n)
                url = f"{account_url}/Recordings/{item.recording_sid}.wav"
                put = f"{url}?CallSid={trace.call_sid}"  # so the stand-in can list it by call
                async with session.put(put, data=audio, headers={"Authorization": auth}) as r:
                    if r.status != 201:
                        raise CallvaultError(f"{url}: HTTP {r.status} from the media stand-in")
                status, body = await twilio.post(
                    trace.recording_callback,
                    _recording_params(twilio, trace.call_sid, item.recording_sid, call.seconds),
                )
                if status >= 300:
                    raise CallvaultError(f"recording callback: HTTP {status}: {body[:200]}")
            played.append(item)
        token = await db.run(
            lambda conn: issue_token(conn, f"demo-{secrets.token_hex(4)}", Role.QA_TRAINER)
        )
        await _wait_until_settled(session, public, token, played, timeout_s)
        purge_lines = await db.run(lambda conn: purge.dry_run_report(conn, upcoming=50))

    for item in played:
        what = f"recording {item.state}" if item.recording_sid else "not recorded (nothing fetched)"
        print(f"  {item.call.label:<27} -> {item.outcome}: {what}")
    print()
    print("A QA token (role qa_trainer; shown once, only its hash is stored):")
    print(token)
    print()
    print(f"Open {public}/qa, paste the token, open a consented call, give a reason and play it.")
    print()
    print(f"`callvault purge --dry-run` now (the demo queues keep recordings {DEMO_RETENTION}):")
    for line in purge_lines:
        print(f"  {line}")
    bad = [
        p
        for p in played
        if p.outcome != p.call.outcome or (p.recording_sid and p.state != "stored")
    ]
    for p in bad:
        print(
            f"callvault: error: '{p.call.label}' ended {p.outcome}, recording {p.state}; "
            f"expected {p.call.outcome}" + (", stored" if p.call.recorded else ""),
        )
    return 1 if bad else 0


async def _play_stringee(
    session: aiohttp.ClientSession, settings: Settings, public: str
) -> list[Played]:
    """The demo's calls as Stringee would make them: to the demo numbers (the number picks the
    queue), SCCOs followed; each consented call's audio put on the stand-in as Stringee's
    recorder would, then the signed record eventUrl."""
    from service.platforms.stringee.simulate import FakeStringee
    from service.platforms.twilio.simulate import Caller

    assert settings.secret_key
    signing, key = stringee_demo_keys(settings.secret_key)
    fake = FakeStringee(session, public, signing_secret=settings.stringee_signing_secret or signing)
    tokens = TokenSource(key)
    numbers = {policy["queue"]: number for number, policy in DEMO_NUMBERS.items()}
    played = []
    for n, call in enumerate(CALLS):
        trace = await fake.place_call(
            f"+849055500{n:02d}", numbers[call.queue], Caller.parse(call.behaviour)
        )
        if trace.errors:
            raise CallvaultError(f"call '{call.label}': {'; '.join(trace.errors)}")
        item = Played(call, trace.call_sid)
        if trace.recording_callback:
            item.recording_sid = trace.call_sid  # Stringee's recording is fetched by call id
            audio = await asyncio.to_thread(call_audio, call.seconds, n)
            url = f"{public}{STRINGEE_STANDIN_PATH}/{trace.call_sid}"
            async with session.put(url, data=audio, headers=tokens.headers()) as r:
                if r.status != 201:
                    raise CallvaultError(f"{url}: HTTP {r.status} from the media stand-in")
            status, body = await fake.post(
                trace.recording_callback,
                {"call_id": trace.call_sid, "recordId": trace.call_sid, "duration": call.seconds},
            )
            if status >= 300:
                raise CallvaultError(f"record eventUrl: HTTP {status}: {body[:200]}")
        played.append(item)
    return played


async def _play_pbx(session: aiohttp.ClientSession, public: str, token: str) -> list[Played]:
    """The demo's calls as a PBX would make them through callvault's PBX API (the queue named
    in the call start, as the Asterisk recipe does); each consented call's recording uploaded
    with a streamed ``PUT`` as MixMonitor's post-command does, answered once it is stored."""
    from service.platforms.pbx.simulate import FakePbx
    from service.platforms.twilio.simulate import Caller

    fake = FakePbx(session, public, token=token)
    played = []
    for n, call in enumerate(CALLS):
        trace = await fake.place_call(
            f"+849055500{n:02d}", "+842873001234", Caller.parse(call.behaviour), queue=call.queue
        )
        if trace.errors:
            raise CallvaultError(f"call '{call.label}': {'; '.join(trace.errors)}")
        # the PBX's call id as it sent it, as /api/calls knows it
        item = Played(call, trace.call_sid)
        if trace.recording_callback:
            audio = await asyncio.to_thread(call_audio, call.seconds, n)
            status, body = await fake.upload(trace.call_sid, audio)
            if status != 201:
                raise CallvaultError(f"recording upload: HTTP {status}: {str(body)[:200]}")
            item.recording_sid = str(body["recording_id"])
        played.append(item)
    return played


async def _check_demo_mode(
    session: aiohttp.ClientSession, public: str, account_url: str, auth: str
) -> None:
    try:
        async with session.get(account_url + ".json", headers={"Authorization": auth}) as r:
            status = r.status
    except aiohttp.ClientError as exc:
        raise CallvaultError(
            f"cannot reach callvault at {public} ({type(exc).__name__}): start it first with "
            "`make serve` (or `callvault serve`)"
        ) from None
    if status == 404:
        raise CallvaultError(
            f"{public} is not in demo mode (it has a database URL, Twilio credentials or "
            "CALLVAULT_TWILIO_API_URL), so it has no Twilio stand-in; run `callvault demo` "
            "against `make serve` with none of them set"
        )
    if status != 200:
        raise CallvaultError(
            f"{account_url}.json: HTTP {status}; is this the same CALLVAULT_HOME as serve's "
            "(its generated-secrets.toml)?"
        )


def _recording_params(
    twilio: Any, call_sid: str, recording_sid: str, seconds: int
) -> dict[str, str]:
    """The parameters Twilio documents for a recording status callback."""
    return {
        "AccountSid": twilio.account_sid,
        "CallSid": call_sid,
        "RecordingSid": recording_sid,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{twilio.account_sid}"
        f"/Recordings/{recording_sid}",
        "RecordingStatus": "completed",
        "RecordingDuration": str(seconds),
        "RecordingChannels": "1",
        "RecordingStartTime": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        "RecordingSource": "StartCallRecordingTwiML",
        "RecordingTrack": "both",
        "ErrorCode": "0",
    }


async def _wait_until_settled(
    session: aiohttp.ClientSession,
    public: str,
    token: str,
    played: list[Played],
    timeout_s: float,
) -> None:
    """Polls ``/api/calls`` (as the QA page does) until every call has its outcome and every
    recording is stored, or ``timeout_s`` passes; the caller reports what it found."""
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        for item in played:
            url = f"{public}/api/calls?external_id={item.call_sid}"
            async with session.get(url, headers=headers) as r:
                if r.status != 200:
                    raise CallvaultError(f"{url}: HTTP {r.status}: {(await r.text())[:200]}")
                items = (await r.json())["items"]
            if items:
                item.outcome = items[0]["outcome"]
                recs = items[0]["recordings"]
                item.state = (
                    recs[0]["state"] if recs else ("waiting" if item.recording_sid else None)
                )
        done = all(
            p.outcome == p.call.outcome and (not p.recording_sid or p.state == "stored")
            for p in played
        )
        if done or time.monotonic() > deadline:
            if not done:
                print(
                    f"not everything settled within {timeout_s:.0f} s; "
                    "`callvault jobs list` shows dead letters"
                )
            return
        await asyncio.sleep(0.25)  # intake runs in serve's workers; look again shortly
