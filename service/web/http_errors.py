"""The one place that maps exceptions to HTTP responses, all in one JSON shape:
``{"error": {"code": "...", "message": "..."}}``. Nothing reaches a client as a stack trace."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.errors import CallvaultError, InternalError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InternalError:
        # between callvault's own parts: as unexpected as any other escape, and not for clients
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal", "internal error; it has been logged")
    except CallvaultError as exc:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
        return response
    except web.RequestPayloadError:
        # the body could not be read as sent: a Content-Encoding it does not match, a broken
        # chunked encoding; the client's fault, and nothing about it is worth a traceback.
        # The rest of the body cannot be read past, so aiohttp drops the connection after this
        # answer: say so, or a keep-alive client sends its next request into a reset socket.
        response = error_response(400, "bad_body", "the request body cannot be decoded as sent")
        response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason
        if exc.status == 413:
            message = "request body is too large"
        response = error_response(exc.status, code, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal", "internal error; it has been logged")
