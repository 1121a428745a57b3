"""Per-request observability: a request id on every log line, HTTP metrics by route.

The id comes from ``X-Request-Id`` when a proxy set a sane one, else a fresh one; it is echoed
in the response and put in a context variable that the JSON log formatter adds to each line
logged while handling the request. Metrics are labelled by the route's pattern (never the raw
path, which could carry ids) and the status code.
"""

from __future__ import annotations

import os
import re
import time
from contextvars import ContextVar

from aiohttp import web, web_response

from service.observability.metrics import METRICS
from service.web.http_errors import Handler

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
SERVER_NAME = "callvault"  # never versions: they only tell a scanner which exploits to try


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


def hide_server_software(app: web.Application) -> None:
    """Every response says ``Server: callvault`` instead of aiohttp's and Python's versions:
    handlers' responses, JSON errors, static files (all prepared through the app's signal), and
    the 400s aiohttp writes itself for requests it cannot parse (no app signal runs for those;
    aiohttp's default for them is a module constant)."""
    app.on_response_prepare.append(_server_header)
    setattr(web_response, "SERVER_SOFTWARE", SERVER_NAME)  # noqa: B010 - not exported


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _SANE_ID.match(given) else os.urandom(16).hex()
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        count, latency = request.app[METRICS].http_children(_route(request), request.method, status)
        count.inc()
        latency.observe(time.perf_counter() - started)
        REQUEST_ID.reset(token)
