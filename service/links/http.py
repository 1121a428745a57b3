"""``GET|HEAD /files/{token}``: stream one stored object named by a signed, short-lived link,
with HTTP Range support (a browser's audio element seeks with Range requests)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from retention import dsar
from service.db import tenancy
from service.errors import NotFound
from service.errors import RangeNotSatisfiable as RangeNotSatisfiable
from service.links.signed import LINKS
from service.observability import audit
from service.storage import ObjectStore, StoredObject, recording_keys, sealed
from service.web.context import POOL, STORES, VAULT
from service.web.http_errors import error_response

routes = web.RouteTableDef()
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$", re.ASCII)
_HUGE = 10**18  # beyond any object; stands in for positions too long for int()


def _position(digits: str) -> int:
    # A Range header may carry thousands of digits: int() refuses more than 4,300 of them and
    # any value past 18 digits is past the end of every object anyway.
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else _HUGE


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single byte range; None for the whole object."""
    match = _RANGE.match(header.strip())
    if not match:
        return None  # several ranges or another unit: the whole object, as RFC 9110 allows
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        length = _position(last)
        if length == 0:
            raise RangeNotSatisfiable("empty suffix range")
        return max(size - length, 0), size - 1
    start = _position(first)
    end = min(_position(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(f"range outside the object's {size} bytes")
    return start, end


@routes.route("GET", "/files/{token}")
async def file(request: web.Request) -> web.StreamResponse:
    link = request.app[LINKS].verify(request.match_info["token"])
    if link.purpose.startswith(("playback:", "dsar_bundle:")):
        # a link handed out before the subject's restriction came into force opens nothing
        with tenancy.as_tenant(link.tenant):
            async with request.app[POOL].acquire() as conn:
                await dsar.check_link_not_restricted(conn, link.purpose)
    # the store the object's row named when the link was made, as the link's tenant resolves it
    with tenancy.as_tenant(link.tenant):
        store = await request.app[STORES].for_object(link.tenant, link.store)
    head = await store.head(link.key)
    if head is None:
        raise NotFound("the file is no longer stored")
    opened: SealedRecording | None = None
    size = head.size
    if sealed.is_sealed(head.metadata):
        # sealed by callvault (issue 17): played by decrypting only the segments asked for
        opened = await _open(request, link.tenant, head)
        size = opened.layout.plain_size(head.size)
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "Content-Type": head.content_type or "application/octet-stream",
        "X-Content-Type-Options": "nosniff",
    }
    if link.download_name:
        headers["Content-Disposition"] = f'attachment; filename="{link.download_name}"'
    try:
        wanted = _parse_range(request.headers.get("Range", ""), size)
    except RangeNotSatisfiable as exc:
        refused = error_response(exc.status, exc.code, exc.message)
        refused.headers["Content-Range"] = f"bytes */{size}"
        return refused
    start, end = wanted if wanted else (0, size - 1)
    status = 206 if wanted else 200
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if link.purpose.startswith("dsar_bundle:") and request.method == "GET":
        with tenancy.as_tenant(link.tenant):
            async with request.app[POOL].acquire() as conn:
                await audit.record(
                    conn,
                    "link",
                    "dsar_bundle_downloaded",
                    "dsar",
                    link.purpose.split(":", 1)[1],
                    {},
                )
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start + 1 if size else 0
    await response.prepare(request)
    if request.method == "GET" and size:
        chunks = (
            store.read_range(link.key, start, end)
            if opened is None
            else plain_range(store, head, opened, start, end)
        )
        async with _closing(chunks):
            async for chunk in chunks:
                await response.write(chunk)
    await response.write_eof()
    return response


@asynccontextmanager
async def _closing(chunks: AsyncIterator[bytes]) -> AsyncGenerator[AsyncIterator[bytes], None]:
    """Close a store's stream when the reader stops early (a client gone mid-response)."""
    try:
        yield chunks
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


class SealedRecording:
    """A sealed recording's segment layout (from its data key) and associated data."""

    def __init__(self, keyset: bytes, aad: bytes) -> None:
        self.layout = sealed.Layout.of(keyset)
        self.aad = aad


async def _open(request: web.Request, tenant: str, head: StoredObject) -> SealedRecording:
    """The data key of a sealed recording, or 410 ``recording_shredded`` once it is
    destroyed (purged, erased), even while the store still holds the object."""
    try:
        recording_id = uuid.UUID(head.metadata.get("recording-id", ""))
    except ValueError:
        raise NotFound("the file cannot be opened") from None
    with tenancy.as_tenant(tenant):
        async with request.app[POOL].acquire() as conn:
            keyset = await recording_keys.open_key(conn, request.app[VAULT], recording_id)
    if keyset is None:
        raise recording_keys.KeyDestroyed(
            "the recording's data key is destroyed: it can no longer be played"
        )
    return SealedRecording(keyset, sealed.associated_data(recording_id))


async def _read_all(store: ObjectStore, key: str, start: int, end: int) -> bytes:
    parts = []
    async with _closing(store.read_range(key, start, end)) as chunks:
        async for chunk in chunks:
            parts.append(chunk)
    return b"".join(parts)


async def _given(header: bytes) -> bytes:
    return header


async def plain_range(
    store: ObjectStore, head: StoredObject, opened: SealedRecording, start: int, end: int
) -> AsyncIterator[bytes]:
    """Plaintext bytes ``start``..``end`` of a sealed object: only the segments holding them
    are fetched (ranged GETs) and decrypted, one segment in memory at a time."""
    layout = opened.layout
    span = layout.span(start, end, head.size)
    loop = asyncio.get_running_loop()
    # the header (salt, nonce prefix) from the object's metadata; else (an object sealed
    # without it) fetched beside the segments, not before them
    known = sealed.header_of(head.metadata)
    header = asyncio.ensure_future(
        _given(known) if known else _read_all(store, head.key, 0, layout.header_size - 1)
    )
    try:
        segment, want = span.first, layout.segment_cipher_size(span.first, head.size)
        skip, left = span.skip, span.length
        buffer = bytearray()
        opener: sealed.SegmentOpener | None = None
        async with _closing(store.read_range(head.key, span.cipher_start, span.cipher_end)) as it:
            async for chunk in it:
                buffer += chunk
                while len(buffer) >= want and left > 0:
                    if opener is None:
                        opener = layout.opener(await header, opened.aad, head.size)
                    # not sealed.EXECUTOR: whole-file intakes must not delay a playback
                    plain = await loop.run_in_executor(
                        sealed.SEGMENT_EXECUTOR, opener.open, segment, bytes(buffer[:want])
                    )
                    del buffer[:want]
                    piece = plain[skip : skip + left]
                    skip, left = 0, left - len(piece)
                    yield piece
                    segment += 1
                    if segment <= span.last:
                        want = layout.segment_cipher_size(segment, head.size)
        if left > 0:
            raise sealed.Undecryptable("the sealed object ended early")
    finally:
        if not header.done():
            header.cancel()
        await asyncio.gather(header, return_exceptions=True)
