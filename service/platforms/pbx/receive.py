"""Receive an uploaded recording's body into a local file: streamed, capped, hashed, checked.

The body is never held in memory: it is read in chunks, hashed as it passes and written off the
event loop. Before the first byte is kept it must look like the audio its ``Content-Type``
says; past the size cap the upload is refused (413) at once; a body that ends before its
``Content-Length`` is refused. When the PBX drops the connection, aiohttp cancels the handler
and the caller's temporary folder goes with it (nothing was written to the database or the
store yet). An optional ``Digest: sha-256=<base64>`` (RFC 3230), or ``Content-Digest:
sha-256=:<base64>:`` (RFC 9530), must match what arrived.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from aiohttp import web

from service.errors import BadRequest
from service.errors import TooLarge as TooLarge
from service.errors import UnsupportedMediaType as UnsupportedMediaType
from service.platforms.pieces import Pieces

# Content-Type → the stored format (and what its first bytes must look like)
FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3"}
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
READ_BYTES = 1 << 20
_DIGEST = re.compile(r"^\s*sha-256\s*=\s*:?([A-Za-z0-9+/=]{40,48}):?\s*$", re.IGNORECASE)


def upload_format(content_type: str) -> str:
    """``wav`` or ``mp3`` from the request's media type, or 415."""
    fmt = FORMATS.get(content_type.lower())
    if fmt is None:
        raise UnsupportedMediaType(
            "Content-Type must be audio/wav or audio/mpeg", code="unsupported_media_type"
        )
    return fmt


def looks_like(fmt: str, head: bytes) -> bool:
    """The magic bytes of a RIFF/WAVE file, or of an MP3 (ID3 tag or an MPEG frame sync)."""
    if fmt == "wav":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    return head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def expected_digest(request: web.Request) -> str | None:
    """The SHA-256 (hex) the client says the body has, or None; 400 for a malformed one. Other
    algorithms in the header are ignored (RFC 3230 lets a client list several)."""
    for header in ("Digest", "Content-Digest"):
        for value in request.headers.getall(header, []):
            for part in value.split(","):
                if not part.strip().lower().startswith("sha-256"):
                    continue
                match = _DIGEST.match(part)
                try:
                    raw = base64.b64decode(match.group(1), validate=True) if match else b""
                except (binascii.Error, ValueError):
                    raw = b""
                if len(raw) != 32:
                    raise BadRequest(
                        f"{header}: sha-256 must be the base64 of 32 bytes", code="bad_digest"
                    )
                return raw.hex()
    return None


async def receive(request: web.Request, dest: Path, fmt: str, max_bytes: int) -> tuple[int, str]:
    """Stream the body into ``dest``; returns its size and SHA-256 (hex)."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise TooLarge(f"the recording is larger than the cap of {max_bytes} bytes")
    size = 0
    head = b""
    # opened and closed on the loop (one syscall each): a file opened in a thread whose
    # awaiting task is cancelled meanwhile would be left open
    out = dest.open("wb")
    pieces = Pieces(out)
    try:
        async for chunk in request.content.iter_chunked(READ_BYTES):
            if len(head) < 12:
                head += chunk[: 12 - len(head)]
                if len(head) >= 12 and not looks_like(fmt, head):
                    raise BadRequest(f"the body is not {fmt} audio", code="not_audio")
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"the recording is larger than the cap of {max_bytes} bytes")
            await pieces.add(chunk)
        await pieces.flush()
    finally:
        out.close()
    if size == 0:
        raise BadRequest("the body is empty", code="empty_body")
    if not looks_like(fmt, head):
        raise BadRequest(f"the body is not {fmt} audio", code="not_audio")
    if declared is not None and size != declared:
        raise BadRequest(f"got {size} of {declared} bytes", code="truncated_body")
    return size, pieces.digest.hexdigest()
