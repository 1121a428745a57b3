"""Twilio's recording media API: download a recording to a file, delete Twilio's copy.

URLs are built from ``CALLVAULT_TWILIO_API_URL``, the configured account and a RecordingSid
that must look like one: a URL taken from a callback is never fetched (no SSRF). Downloads
stream to disk in chunks, hashed on the way, capped in size and checked to be audio.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from service.config import Settings
from service.errors import BadRequest
from service.jobs import Permanent

RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
WRITE_BYTES = 4 * 1024 * 1024  # memory held per download, and the size of each disk write


class MediaNotReady(Exception):
    """Twilio answered 404 for a recording it just announced: it is not ready yet."""


class MediaError(Exception):
    """Twilio's media API failed in a way that may pass (5xx, auth, network)."""


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    content_type: str


def check_recording_sid(sid: str) -> str:
    if not RECORDING_SID.match(sid):
        raise BadRequest("RecordingSid is not a Twilio recording id", code="bad_recording_sid")
    return sid


def _looks_like(fmt: str, head: bytes) -> bool:
    if fmt == "wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


class TwilioMedia:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            raise ValueError("Twilio credentials are required")
        self.base = f"{settings.twilio_api_url}/2010-04-01/Accounts/{settings.twilio_account_sid}"
        self.headers = {
            "Authorization": aiohttp.encode_basic_auth(
                settings.twilio_account_sid, settings.twilio_auth_token
            )
        }
        self.session = session
        self.max_bytes = settings.max_recording_bytes
        self.timeout = aiohttp.ClientTimeout(
            total=settings.download_timeout_s, sock_connect=10, sock_read=60
        )

    async def download(self, sid: str, dest: Path, fmt: str = "wav") -> Downloaded:
        url = f"{self.base}/Recordings/{check_recording_sid(sid)}.{fmt}"
        digest = hashlib.sha256()
        size = 0
        try:
            async with self.session.get(
                url, headers=self.headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                if resp.status == 404:
                    raise MediaNotReady(f"recording {sid}: 404 (not ready yet)")
                if resp.status != 200:
                    raise MediaError(f"recording {sid}: HTTP {resp.status} from Twilio")
                declared = resp.content_length
                if declared is not None and declared > self.max_bytes:
                    raise Permanent(f"recording {sid}: {declared} bytes exceeds the cap")
                out = await asyncio.to_thread(dest.open, "wb")
                pending = bytearray()  # written off the loop in pieces of WRITE_BYTES
                try:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        if size == 0 and not _looks_like(fmt, chunk[:16]):
                            raise Permanent(f"recording {sid}: the media is not {fmt} audio")
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise Permanent(f"recording {sid}: larger than the cap")
                        digest.update(chunk)
                        pending += chunk
                        if len(pending) >= WRITE_BYTES:
                            await asyncio.to_thread(out.write, bytes(pending))
                            pending.clear()
                    if pending:
                        await asyncio.to_thread(out.write, bytes(pending))
                finally:
                    await asyncio.to_thread(out.close)
                if size == 0:
                    raise MediaError(f"recording {sid}: empty body")
                if declared is not None and size != declared:
                    raise MediaError(f"recording {sid}: got {size} of {declared} bytes")
        except aiohttp.ClientError as exc:
            raise MediaError(f"recording {sid}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise MediaError(f"recording {sid}: download timed out") from exc
        return Downloaded(dest, size, digest.hexdigest(), CONTENT_TYPES[fmt])

    async def delete(self, sid: str) -> None:
        """Delete Twilio's copy; already gone (404) counts as deleted."""
        url = f"{self.base}/Recordings/{check_recording_sid(sid)}.json"
        try:
            async with self.session.delete(
                url,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=30),
                allow_redirects=False,
            ) as resp:
                if resp.status in (200, 204, 404):
                    return
                raise MediaError(f"deleting recording {sid}: HTTP {resp.status} from Twilio")
        except aiohttp.ClientError as exc:
            raise MediaError(f"deleting recording {sid}: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise MediaError(f"deleting recording {sid}: timed out") from exc
