"""A test-side Twilio REST API for recordings, on loopback: serves media with HTTP Basic auth,
answers 404 for the first N requests of a recording, records every request and every DELETE,
lists a call's recordings (``Recordings.json?CallSid=``, paged as Twilio pages), and forgets a
recording once it is deleted, as Twilio does.

Like the real one, the media GET answers ``307`` to a second host (a CDN on another loopback
port) with a signed, expiring URL; that host refuses, and counts, any request that carries an
``Authorization`` header (the fixture asserts none ever did). ``hops`` per recording sets how
many redirects lead to the media (0 serves it directly), ``redirect_to`` sends the first
redirect somewhere else entirely.

Accounts as Twilio documents them (docs/iam/api/subaccounts): the main account's AccountSid and
auth token reach its own resources and those of every subaccount; a subaccount's credentials (its
AccountSid and auth token, or an API key made in it) reach that subaccount's only. A recording
belongs to one account and is found only under that account's URL; other credentials get 401
(code 20003) and are counted in ``unauthorised``; ``used`` counts each request by the URL's
account and the username it authenticated with.

Recording controls (docs/voice/api/recording, "Update a Recording resource"): ``start_live``
puts a recording in progress on a call; ``POST .../Calls/{CallSid}/Recordings/{Sid}.json`` with
``Sid`` a RecordingSid or ``Twilio.CURRENT`` (the call's recording in progress or paused) and
``Status`` ``paused`` (``PauseBehavior`` ``skip`` or ``silence``, the default), ``in-progress``
or ``stopped`` changes it and answers the Recording resource; a call with no such recording is
404 (code 20404). ``finish_live`` completes it as a stored recording whose duration leaves out
the spans paused with ``skip`` (``silence`` keeps them, as silence), timed by ``clock``.
Every update is kept in ``updates`` (account, CallSid, Sid, form) to assert what was asked;
``updates_fail_with`` makes them answer that status instead (a Twilio outage)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import encode_basic_auth, web
from aiohttp.test_utils import TestServer


def wav_bytes(seconds: float = 2.0, rate: int = 8000) -> bytes:
    """A real PCM WAV (a 440 Hz tone) so the media is audio, not just a header."""
    import io
    import math
    import struct
    import wave

    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def new_recording_sid() -> str:
    return "RE" + secrets.token_hex(16)


@dataclass
class Media:
    body: bytes | None = None
    stream: Callable[[], tuple[int, object]] | None = None  # (size, async chunk iterator)
    not_ready_for: int = 0
    stall: asyncio.Event | None = None  # serve half, then wait for this before the rest
    call_sid: str | None = None
    status: str = "completed"
    duration: int = 2
    hops: int = 1
    redirect_to: str | None = None
    account: str | None = None  # the (sub)account it belongs to; None: the main account


@dataclass
class Live:
    """A recording in progress on a call (``<Start><Recording>``)."""

    sid: str
    call_sid: str
    account: str | None
    started: float
    status: str = "in-progress"  # or paused
    pause_behavior: str = "silence"
    paused_since: float | None = None
    skipped_s: float = 0.0  # paused with skip: not in the audio


@dataclass
class FakeTwilioMedia:
    account_sid: str
    auth_token: str
    recordings: dict[str, Media] = field(default_factory=dict)
    gets: Counter[str] = field(default_factory=Counter)
    deletes: Counter[str] = field(default_factory=Counter)
    unauthorised: int = 0
    server: TestServer | None = None
    cdn: TestServer | None = None
    cdn_gets: Counter[str] = field(default_factory=Counter)
    cdn_authorization: int = 0  # requests to the second host that carried credentials
    lists: Counter[str] = field(default_factory=Counter)  # list requests per CallSid
    list_page_cap: int = 50  # Twilio's default PageSize; lower it to make listings page
    list_hold: asyncio.Event | None = None  # list requests wait for this (a slow Twilio)
    default_hops: int = 1
    subaccounts: dict[str, str] = field(default_factory=dict)  # AccountSid -> auth token
    api_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # SK -> (account, secret)
    # (account in the URL, username that authenticated, method) -> requests
    used: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # signed CDN links handed out: token -> (RecordingSid, redirects to come, extension, query)
    _signed: dict[str, tuple[str, int, str, str]] = field(default_factory=dict)
    live: dict[str, Live] = field(default_factory=dict)  # CallSid -> its recording in progress
    # (account in the URL, CallSid, Sid in the URL, form) of every update asked
    updates: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    updates_fail_with: int | None = None
    update_hold: asyncio.Event | None = None  # updates, once counted, wait for this (slow Twilio)
    clock: Callable[[], float] = time.monotonic

    def start_live(self, call_sid: str, account: str | None = None) -> str:
        sid = new_recording_sid()
        self.live[call_sid] = Live(sid, call_sid, account, self.clock())
        return sid

    def finish_live(self, call_sid: str) -> tuple[str, float]:
        """The call ended: its recording is completed (a stored Recording), and its duration
        in seconds, paused spans with ``skip`` left out."""
        live = self.live.pop(call_sid)
        now = self.clock()
        skipped = live.skipped_s
        if live.paused_since is not None and live.pause_behavior == "skip":
            skipped += now - live.paused_since
        duration = now - live.started - skipped
        self.add(live.sid, wav_bytes(0.5), call_sid=call_sid, account=live.account)
        self.recordings[live.sid].duration = round(duration)
        return live.sid, duration

    async def update_recording(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self.unauthorised += 1
            return web.json_response({"code": 20003, "status": 401}, status=401)
        account, call_sid = request.match_info["account"], request.match_info["call"]
        sid = request.match_info["sid"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.updates.append((account, call_sid, sid, form))
        if self.update_hold is not None:
            await self.update_hold.wait()
        if self.updates_fail_with is not None:
            return web.json_response({"code": 20500}, status=self.updates_fail_with)
        live = self.live.get(call_sid)
        if (
            live is None
            or (live.account or self.account_sid) != account
            or sid not in ("Twilio.CURRENT", live.sid)
        ):
            return web.json_response(
                {"code": 20404, "message": "The requested resource was not found", "status": 404},
                status=404,
            )
        status = form.get("Status")
        behaviour = form.get("PauseBehavior", "silence")
        if status not in ("paused", "in-progress", "stopped") or behaviour not in (
            "skip",
            "silence",
        ):
            return web.json_response({"code": 21220, "status": 400}, status=400)
        now = self.clock()
        if status == "paused" and live.paused_since is None:
            live.status, live.pause_behavior, live.paused_since = "paused", behaviour, now
        elif status == "in-progress" and live.paused_since is not None:
            if live.pause_behavior == "skip":
                live.skipped_s += now - live.paused_since
            live.status, live.paused_since = "in-progress", None
        elif status == "stopped":
            self.finish_live(call_sid)
            live.status = "stopped"
        resource = self._resource(account, live.sid, Media(call_sid=call_sid, status=live.status))
        return web.json_response(resource)

    def add(
        self,
        sid: str,
        body: bytes,
        *,
        not_ready_for: int = 0,
        call_sid: str | None = None,
        status: str = "completed",
        hops: int | None = None,
        redirect_to: str | None = None,
        account: str | None = None,
    ) -> None:
        self.recordings[sid] = Media(
            body=body,
            not_ready_for=not_ready_for,
            call_sid=call_sid,
            status=status,
            hops=self.default_hops if hops is None else hops,
            redirect_to=redirect_to,
            account=account,
        )

    def add_subaccount(self, sid: str, auth_token: str) -> None:
        self.subaccounts[sid] = auth_token

    def add_api_key(self, account: str, key_sid: str, secret: str) -> None:
        self.api_keys[key_sid] = (account, secret)

    def _owner(self, media: Media) -> str:
        return media.account or self.account_sid

    def add_stalling(self, sid: str, body: bytes, until: asyncio.Event) -> None:
        self.recordings[sid] = Media(body=body, stall=until, hops=self.default_hops)

    def add_stream(self, sid: str, size: int, make_chunks: Callable[[], object]) -> None:
        self.recordings[sid] = Media(stream=lambda: (size, make_chunks()), hops=self.default_hops)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def _authorised(self, request: web.Request) -> bool:
        """Whether the credentials may reach the URL's account; counted in ``used``."""
        account = request.match_info["account"]
        if account != self.account_sid and account not in self.subaccounts:
            return False
        given = request.headers.get("Authorization", "")
        allowed = [(self.account_sid, self.auth_token)]  # the main account reaches them all
        if account in self.subaccounts:
            allowed.append((account, self.subaccounts[account]))
        allowed += [(k, secret) for k, (owner, secret) in self.api_keys.items() if owner == account]
        for username, password in allowed:
            if given == encode_basic_auth(username, password):
                self.used[(account, username, request.method)] += 1
                return True
        return False

    def _redirect(self, sid: str, hops_left: int, ext: str) -> web.Response:
        """307 to the second host with a one-time signed URL, as Twilio hands out CDN links."""
        assert self.cdn is not None
        token = secrets.token_hex(8)
        # percent-escapes as in a real signed URL; the CDN checks they come back unchanged
        query = f"Expires=1800000000&Signature={secrets.token_hex(8)}%2F%2B{secrets.token_hex(8)}"
        self._signed[token] = (sid, hops_left - 1, ext, query)
        url = f"{self.cdn.make_url(f'/media/{token}')}?{query}"
        return web.Response(status=307, headers={"Location": url})

    async def cdn_media(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:
            self.cdn_authorization += 1
            return web.Response(status=400, text="credentials sent to the CDN")
        signed = self._signed.pop(request.match_info["token"], None)
        if signed is None or request.rel_url.raw_query_string != signed[3]:
            return web.Response(status=403, text="bad or used signature")
        sid, hops_left, ext, _ = signed
        self.cdn_gets[sid] += 1
        media = self.recordings.get(sid)
        if media is None:
            return web.Response(status=404)
        if hops_left > 0:
            return self._redirect(sid, hops_left, ext)
        return await self._serve(request, media, ext)

    async def list_recordings(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            self.unauthorised += 1
            return web.json_response({"code": 20003}, status=401)
        account = request.match_info["account"]
        call_sid = request.query.get("CallSid", "")
        self.lists[call_sid] += 1
        if self.list_hold is not None:
            await self.list_hold.wait()
        size = min(int(request.query.get("PageSize", "50")), self.list_page_cap)
        page = int(request.query.get("Page", "0"))
        matching = [
            (sid, m)
            for sid, m in self.recordings.items()
            if (not call_sid or m.call_sid == call_sid) and self._owner(m) == account
        ]
        chunk = matching[page * size : (page + 1) * size]
        path = f"/2010-04-01/Accounts/{account}/Recordings.json"

        def page_uri(n: int) -> str:
            return f"{path}?CallSid={call_sid}&PageSize={size}&Page={n}&PageToken=PA{n}"

        more = (page + 1) * size < len(matching)
        return web.json_response(
            {
                "recordings": [self._resource(account, sid, m) for sid, m in chunk],
                "page": page,
                "page_size": size,
                "start": page * size,
                "end": page * size + max(len(chunk) - 1, 0),
                "uri": page_uri(page),
                "first_page_uri": page_uri(0),
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "next_page_uri": page_uri(page + 1) if more else None,
            }
        )

    @staticmethod
    def _resource(account: str, sid: str, media: Media) -> dict[str, Any]:
        """A Recording resource as Twilio's list returns it (duration is a string there)."""
        return {
            "account_sid": account,
            "api_version": "2010-04-01",
            "call_sid": media.call_sid,
            "conference_sid": None,
            "date_created": "Mon, 23 Nov 2026 04:00:00 +0000",
            "date_updated": "Mon, 23 Nov 2026 04:00:15 +0000",
            "start_time": "Mon, 23 Nov 2026 04:00:00 +0000",
            "duration": str(media.duration) if media.status == "completed" else "-1",
            "sid": sid,
            "price": None,
            "price_unit": "USD",
            "status": media.status,
            "channels": 1,
            "source": "StartCallRecordingTwiML",
            "error_code": None,
            "uri": f"/2010-04-01/Accounts/{account}/Recordings/{sid}.json",
            "encryption_details": None,
        }

    async def media(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            self.unauthorised += 1
            return web.json_response({"code": 20003}, status=401)
        account = request.match_info["account"]
        sid, ext = request.match_info["sid"], request.match_info["ext"]
        media = self.recordings.get(sid)
        if media is not None and self._owner(media) != account:
            media = None  # another account's recording is not found under this one's URL
        if request.method == "DELETE":
            self.deletes[sid] += 1
            if ext != "json" or media is None:
                return web.json_response({"code": 20404}, status=404)
            del self.recordings[sid]
            return web.Response(status=204)
        self.gets[sid] += 1
        if media is None or ext not in ("wav", "mp3"):
            return web.json_response({"code": 20404}, status=404)
        if media.not_ready_for > 0:
            media.not_ready_for -= 1
            return web.json_response({"code": 20404}, status=404)
        if media.redirect_to is not None:
            return web.Response(status=307, headers={"Location": media.redirect_to})
        if media.hops > 0:
            return self._redirect(sid, media.hops, ext)
        return await self._serve(request, media, ext)

    async def _serve(self, request: web.Request, media: Media, ext: str) -> web.StreamResponse:
        ctype = "audio/x-wav" if ext == "wav" else "audio/mpeg"
        if media.body is not None and media.stall is not None:
            resp = web.StreamResponse(headers={"Content-Type": ctype})
            resp.content_length = len(media.body)
            await resp.prepare(request)
            half = len(media.body) // 2
            await resp.write(media.body[:half])
            await media.stall.wait()
            await resp.write(media.body[half:])
            await resp.write_eof()
            return resp
        if media.body is not None:
            return web.Response(body=media.body, content_type=ctype)
        assert media.stream is not None
        size, chunks = media.stream()
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        resp.content_length = size
        await resp.prepare(request)
        async for chunk in chunks:  # type: ignore[attr-defined]
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        cdn = web.Application()
        cdn.router.add_get("/media/{token}", self.cdn_media)
        self.cdn = TestServer(cdn, host="127.0.0.1")
        await self.cdn.start_server()
        app = web.Application()
        app.router.add_get("/2010-04-01/Accounts/{account}/Recordings.json", self.list_recordings)
        app.router.add_post(
            "/2010-04-01/Accounts/{account}/Calls/{call}/Recordings/{sid}.json",
            self.update_recording,
        )
        app.router.add_route(
            "*", "/2010-04-01/Accounts/{account}/Recordings/{sid}.{ext}", self.media
        )
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
        if self.cdn is not None:
            await self.cdn.close()


def mp3_bytes(seconds: float = 2.0) -> bytes:
    """A real MP3 of the same tone, encoded by ffmpeg through pydub."""
    import io

    from prompts.audio import pydub

    segment = pydub().from_file(io.BytesIO(wav_bytes(seconds)), format="wav")
    out = io.BytesIO()
    segment.export(out, format="mp3", codec="libmp3lame", bitrate="32k")
    return out.getvalue()
