"""The one exception hierarchy of callvault.

Every error a user can cause is a :class:`CallvaultError` subclass carrying the HTTP status and
the machine-readable code it maps to; ``service.web.http_errors`` turns them into the one JSON error
shape, and the CLI prints their message as a one-line reason.
"""

from __future__ import annotations


class CallvaultError(Exception):
    """Base of every error callvault raises on purpose."""

    status: int = 400
    code: str = "bad_request"
    retry_after_s: int | None = None  # sent as Retry-After when set (429, 503)

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(CallvaultError):
    """Invalid configuration; the message names the bad key."""

    code = "config_error"


class BadRequest(CallvaultError):
    status = 400
    code = "bad_request"


class Unauthorized(CallvaultError):
    status = 401
    code = "unauthorized"


class Forbidden(CallvaultError):
    status = 403
    code = "forbidden"


class NotFound(CallvaultError):
    status = 404
    code = "not_found"


class Conflict(CallvaultError):
    status = 409
    code = "conflict"


class PromptsNotBuilt(CallvaultError):
    """The rendered prompt audio is missing or stale."""

    status = 503
    code = "prompts_not_built"


class LedgerBroken(CallvaultError):
    """A ledger chain does not verify."""

    status = 409
    code = "ledger_broken"


class DatabaseUnavailable(CallvaultError):
    """The database could not be reached within the short timeouts a webhook or an API call
    may wait (refused, hung, restarting, out of connections). Clients may retry."""

    status = 503
    code = "database_unavailable"
    retry_after_s = 5

    @classmethod
    def of(cls, what: str, exc: BaseException) -> DatabaseUnavailable:
        """``what: reason`` for a failed connection, e.g. a CLI's one-line error."""
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        return cls(f"{what}: {reason or type(exc).__name__}")
