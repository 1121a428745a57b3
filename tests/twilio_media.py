"""A test-side Twilio REST API for recordings, on loopback: serves media with HTTP Basic auth,
answers 404 for the first N requests of a recording (not ready yet), records every request and
every DELETE, and forgets a recording once it is deleted, as Twilio does."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass
class FakeTwilioMedia:
    account_sid: str
    auth_token: str
    recordings: dict[str, Media] = field(default_factory=dict)
    gets: Counter[str] = field(default_factory=Counter)
    deletes: Counter[str] = field(default_factory=Counter)
    unauthorised: int = 0
    server: TestServer | None = None

    def add(self, sid: str, body: bytes, *, not_ready_for: int = 0) -> None:
        self.recordings[sid] = Media(body=body, not_ready_for=not_ready_for)

    def add_stalling(self, sid: str, body: bytes, until: asyncio.Event) -> None:
        self.recordings[sid] = Media(body=body, stall=until)

    def add_stream(self, sid: str, size: int, make_chunks: Callable[[], object]) -> None:
        self.recordings[sid] = Media(stream=lambda: (size, make_chunks()))

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def _authorised(self, request: web.Request) -> bool:
        expected = encode_basic_auth(self.account_sid, self.auth_token)
        return request.headers.get("Authorization", "") == expected

    async def media(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            self.unauthorised += 1
            return web.json_response({"code": 20003}, status=401)
        if request.match_info["account"] != self.account_sid:
            return web.json_response({"code": 20404}, status=404)
        sid, ext = request.match_info["sid"], request.match_info["ext"]
        if request.method == "DELETE":
            self.deletes[sid] += 1
            if ext != "json" or self.recordings.pop(sid, None) is None:
                return web.json_response({"code": 20404}, status=404)
            return web.Response(status=204)
        self.gets[sid] += 1
        media = self.recordings.get(sid)
        if media is None or ext not in ("wav", "mp3"):
            return web.json_response({"code": 20404}, status=404)
        if media.not_ready_for > 0:
            media.not_ready_for -= 1
            return web.json_response({"code": 20404}, status=404)
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
        app = web.Application()
        app.router.add_route(
            "*", "/2010-04-01/Accounts/{account}/Recordings/{sid}.{ext}", self.media
        )
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


def mp3_bytes(seconds: float = 2.0) -> bytes:
    """A real MP3 of the same tone, encoded by ffmpeg through pydub."""
    import io

    from prompts.audio import pydub

    segment = pydub().from_file(io.BytesIO(wav_bytes(seconds)), format="wav")
    out = io.BytesIO()
    segment.export(out, format="mp3", codec="libmp3lame", bitrate="32k")
    return out.getvalue()
