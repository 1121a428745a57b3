"""``GET|HEAD /files/{token}``: stream one stored object named by a signed, short-lived link,
with HTTP Range support (a browser's audio element seeks with Range requests)."""

from __future__ import annotations

import re

from aiohttp import web

from retention import requests
from service import audit
from service.context import POOL, STORES
from service.db import tenancy
from service.errors import CallvaultError, NotFound
from service.http_errors import error_response
from service.links import LINKS

routes = web.RouteTableDef()
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$", re.ASCII)
_HUGE = 10**18  # beyond any object; stands in for positions too long for int()


class RangeNotSatisfiable(CallvaultError):
    status = 416
    code = "range_not_satisfiable"


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
                await requests.check_link_not_restricted(conn, link.purpose)
    # the store the object's row named when the link was made, as the link's tenant resolves it
    with tenancy.as_tenant(link.tenant):
        store = await request.app[STORES].for_object(link.tenant, link.store)
    head = await store.head(link.key)
    if head is None:
        raise NotFound("the file is no longer stored")
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "Content-Type": head.content_type or "application/octet-stream",
        "X-Content-Type-Options": "nosniff",
    }
    if link.download_name:
        headers["Content-Disposition"] = f'attachment; filename="{link.download_name}"'
    try:
        wanted = _parse_range(request.headers.get("Range", ""), head.size)
    except RangeNotSatisfiable as exc:
        refused = error_response(exc.status, exc.code, exc.message)
        refused.headers["Content-Range"] = f"bytes */{head.size}"
        return refused
    start, end = wanted if wanted else (0, head.size - 1)
    status = 206 if wanted else 200
    if wanted:
        headers["Content-Range"] = f"bytes {start}-{end}/{head.size}"
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
    response.content_length = end - start + 1 if head.size else 0
    await response.prepare(request)
    if request.method == "GET" and head.size:
        async for chunk in store.read_range(link.key, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response
