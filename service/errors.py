"""The one exception hierarchy of callvault: every exception class it defines is here.

Every error a user can cause is a :class:`CallvaultError` subclass carrying the HTTP status and
the machine-readable code it maps to; ``service.web.http_errors`` turns them into the one JSON
error shape, and the CLI prints their message as a one-line reason. Errors callvault's parts
raise to one another derive from :class:`InternalError`. The modules that raise a class keep its
name importable (``service.jobs.Defer``), grouped below by that module.
"""

from __future__ import annotations


class CallvaultError(Exception):
    """Base of every error callvault raises on purpose."""

    status: int = 400
    code: str = "bad_request"
    retry_after_s: float | None = None  # sent as Retry-After when set (429, 503)

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


class InternalError(CallvaultError):
    """Base of the errors callvault's own parts raise to one another, never a client's doing: a
    job to defer, a platform that failed, a seal that no longer holds. An HTTP handler that lets
    one escape answers as for any unexpected error (500, logged, its message not shown), and the
    CLI names its class with the message."""

    status = 500
    code = "internal"

    def __init__(self, *args: object) -> None:
        Exception.__init__(self, *args)
        self.message = str(self)


# raised by retention/dsar.py


class BundleGone(CallvaultError):
    """The bundle existed but is no longer handed out."""

    status = 410
    code = "bundle_gone"


# raised by service/links/http.py


class RangeNotSatisfiable(CallvaultError):
    status = 416
    code = "range_not_satisfiable"


# raised by service/links/signed.py


class LinkExpired(CallvaultError):
    status = 410
    code = "link_expired"


class BadLink(CallvaultError):
    status = 404
    code = "not_found"


# raised by service/platforms/stringee/media.py


class StringeeMediaError(InternalError):
    """The download failed in a way that may pass (5xx, network, auth, not ready)."""


class StringeeMediaNotFound(StringeeMediaError):
    """Every configured host answered 404 for the recording."""


class StringeeMediaNotReady(StringeeMediaError):
    """Stringee answered with something other than audio where the recording should be."""


class RateLimited(StringeeMediaError):
    """Stringee asked us to wait longer than we wait in place; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


# raised by service/platforms/stringee/accounts.py


class NoApiKey(InternalError):
    """No usable API key for a project (the message names what to set, never a secret)."""


# raised by service/platforms/twilio/media.py


class TwilioMediaNotFound(InternalError):
    """Twilio answered 404 for a recording's media."""


class TwilioMediaError(InternalError):
    """Twilio's media API failed in a way that may pass (5xx, auth, network)."""


# raised by service/platforms/pbx/receive.py


class TooLarge(CallvaultError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(CallvaultError):
    status = 415
    code = "unsupported_media_type"


# raised by service/platforms/port.py


class PlatformKeepsCopy(InternalError):
    """The platform offers no delete: its copy stays, under the retention set there, and the
    ledger says ``platform_copy_retained`` instead of ``platform_copy_deleted``."""

    event = "platform_copy_retained"


class NoMediaSource(InternalError):
    """No media source for a platform (it uploads, or is not installed)."""


class RecordingNotActive(InternalError):
    """The platform has no recording in progress (or paused) on the call to pause or resume."""


class PlatformUnavailable(InternalError):
    """The platform did not carry out the request: unreachable, timed out (``unreachable``), or
    an answer that is not a success (5xx, refused credentials). The message names no secret."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


# raised by service/db/migrations.py


class MigrationError(CallvaultError):
    code = "migration_error"


# raised by service/tenants/export.py


class ExportError(CallvaultError):
    code = "export_failed"


# raised by service/storage/recording_keys.py


class KeyDestroyed(CallvaultError):
    """The recording is sealed and its data key is gone: nothing can open it (410: it will
    not come back, whatever the store still holds)."""

    status = 410
    code = "recording_shredded"


# raised by service/storage/sealed.py


class Undecryptable(InternalError):
    """A segment failed authentication: wrong key, wrong recording, or altered bytes."""


# raised by service/storage/__init__.py


class StorageError(CallvaultError):
    """The store failed or is unreachable; the operation may be retried."""

    status = 503
    code = "storage_unavailable"


# raised by service/ledger/seals.py


class SealBroken(InternalError):
    """The ledger no longer gives the seal's root: no proof can be made from it."""


# raised by service/receipts/verify.py


class ReceiptInvalid(InternalError):
    """The receipt does not verify; the message says which check failed and why."""


# raised by service/pauses/api.py


class Busy(CallvaultError):
    """Too many pauses and resumes are waiting on the platform in this process: nothing was
    asked or recorded."""

    status = 503
    code = "busy"
    retry_after_s = 2


# raised by service/pauses/__init__.py


class PlatformFailed(CallvaultError):
    """The platform answered, but not with success: nothing was paused or resumed."""

    status = 502
    code = "platform_error"


class PlatformUnreachable(CallvaultError):
    """The platform could not be reached or did not answer in time: nothing is recorded as
    paused (the platform may still be recording)."""

    status = 503
    code = "platform_unavailable"
    retry_after_s = 2


# raised by service/auth/http.py


class TooManyAttempts(CallvaultError):
    status = 429
    code = "too_many_requests"


# raised by service/jobs/__init__.py


class LeaseLost(CallvaultError):
    """This worker's lease ended; another worker owns the job now. Commit nothing."""

    code = "lease_lost"


class Defer(InternalError):
    """The job cannot run yet (e.g. waiting for the call's consent outcome); try again later
    without counting an attempt."""

    def __init__(self, reason: str, delay_s: float = 5.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_s = delay_s


class Permanent(CallvaultError):
    """Retrying cannot help (the media is not audio, too large, ...): dead-letter at once."""

    code = "permanent_failure"


# raised by service/storage/wrapping.py


class KeyWrappingError(CallvaultError):
    """KMS refused or could not be reached: nothing is sealed or opened without it."""

    status = 503
    code = "key_service_unavailable"


# raised by service/storage/handout.py


class NotSealable(Conflict):
    """A sealed hand-out that cannot be made: the tenant has no KMS key of its own, or a
    recording is not sealed under it."""

    code = "not_sealable"


# raised by service/tenants/model.py


class TenantSpecError(BadRequest):
    """An invalid tenant file or body; the message starts with the bad key's path."""

    code = "invalid_tenant_spec"


# raised by service/storage/sealed.py


class Abandoned(InternalError):
    """A write or ``SealingFile.finish`` came after ``SealingFile.abandon``: the download it
    belongs to was given up (failed, cancelled, or replaced by another attempt)."""


# raised by service/db/tenancy.py


class NotOneTenant(InternalError):
    """Work that is one tenant's was started as every tenant (``'*'``) or as none."""
