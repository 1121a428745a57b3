"""Settings: environment variables with the ``CALLVAULT_`` prefix over an optional TOML file.

The TOML file named by ``CALLVAULT_CONFIG`` may set the same keys as the environment, in lower
case without the prefix (``port = 8080``); the environment wins. It also holds the call
policies: defaults at top level, ``[queues.NAME]`` tables and ``[numbers."+E164"]`` tables for
the called numbers (a number may name its queue). Every invalid value raises
:class:`ConfigError` whose message starts with the bad key, so start-up stops with one line.

The keys are typed and validated by a ``pydantic-settings`` model (:class:`_Source`: the
environment as its first source, the TOML file as its second). What it accepts becomes the frozen
:class:`Settings` the rest of the service reads, with durations in seconds (``purge_interval``
→ ``purge_interval_s``). To add a setting: one field on :class:`Settings` (name, type, default)
and one line on :class:`_Source` (the key as users write it, with the validating type).
Policies are resolved into a lookup when a :class:`Settings` is made, not on every webhook.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import json
import os
import re
import secrets
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from service.errors import BadRequest, ConfigError
from service.personal.numbers import E164_PATTERN

ENV_PREFIX = "CALLVAULT_"
ConsentMode = Literal["implied", "explicit"]
CONSENT_MODES: tuple[ConsentMode, ...] = ("implied", "explicit")
LANGUAGES = ("vi-VN", "en-US")
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- values: each check returns the typed value or raises with the reason (never the key) ------


def _invalid(reason: str) -> PydanticCustomError:
    # The reason travels in the context so that braces in it are never taken for a template.
    return PydanticCustomError("callvault", "{reason}", {"reason": reason})


def _duration(value: object) -> int:
    """``90d``/``12h``/``30s``/``5m``/``2w`` (or a bare number of seconds) → seconds (> 0)."""
    if isinstance(value, bool):
        raise _invalid(f"expected a duration like 90d, 12h or 30s, got {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise _invalid(f"expected a duration like 90d, 12h or 30s, got {value!r}")
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise _invalid(f"must be longer than zero, got {value!r}")
    return seconds


def parse_duration(key: str, value: object) -> int:
    """``90d``/``12h``/``30s``/``5m``/``2w`` (or a bare number of seconds) → seconds (> 0)."""
    try:
        return _duration(value)
    except PydanticCustomError as exc:
        raise ConfigError(f"{key}: {_reason(exc)}") from None


def _reason(exc: PydanticCustomError) -> str:
    return str((exc.context or {}).get("reason", exc.message()))


def _consent_mode(value: object) -> ConsentMode:
    for mode in CONSENT_MODES:
        if value == mode:
            return mode
    raise _invalid(f"must be 'implied' or 'explicit', got {value!r}")


def _language(value: object) -> str:
    if value not in LANGUAGES:
        raise _invalid(f"must be one of {', '.join(LANGUAGES)}, got {value!r}")
    return str(value)


def _url(value: object) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid(f"must be an absolute http(s) URL, got {value!r}")
    return text.rstrip("/") if parts.path in ("", "/") and not parts.query else text


def check_url(key: str, value: object) -> str:
    """An absolute http(s) URL, or :class:`ConfigError` naming ``key`` (for other config files,
    such as a tenant's)."""
    try:
        return _url(value)
    except PydanticCustomError as exc:
        raise ConfigError(f"{key}: {_reason(exc)}") from None


def _base_url(value: object) -> str:
    return _url(value).rstrip("/")


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise _invalid(f"must be true or false, got {value!r}")


def _between(low: int, high: int) -> BeforeValidator:
    def check(value: object) -> int:
        try:
            number = int(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise _invalid(f"must be a whole number from {low} to {high}, got {value!r}")
        return number

    return BeforeValidator(check)


def _one_of(*choices: str, transform: Callable[[str], str] = str) -> BeforeValidator:
    def check(value: object) -> str:
        text = transform(str(value).strip())
        if text not in choices:
            shown = ", ".join(choices[:-1]) + " or " + choices[-1]
            raise _invalid(f"must be {shown}, got {value!r}")
        return text

    return BeforeValidator(check)


def _networks(value: object) -> tuple[Network, ...]:
    """``10.0.0.5, 10.1.0.0/16 fd00::/8`` (commas or spaces; a TOML list works too)."""
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", str(value))
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise _invalid(f"not an IP address or CIDR block: {text!r}") from None
    return tuple(networks)


def _stringee_hosts(value: object) -> tuple[str, ...]:
    """``https://asia-3.api.stringee.com, https://api.stringee.com``: tried in that order."""
    from service.platforms.stringee.hosts import parse_hosts

    items = value if isinstance(value, list | tuple) else str(value)
    try:
        return parse_hosts([str(i) for i in items] if not isinstance(items, str) else items)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _stringee_scco(value: object) -> tuple[dict[str, Any], ...]:
    """A JSON array of SCCO actions (the environment gives it as text, the file as a list)."""
    from service.platforms.stringee.scco import parse_continue_scco

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _invalid("must be a JSON array of SCCO actions") from None
    try:
        return tuple(parse_continue_scco(value, where="the continue SCCO"))
    except BadRequest as exc:
        raise _invalid(exc.message) from None


def _secret(value: object) -> str:
    # the value itself is never part of the message
    text = value.get_secret_value() if isinstance(value, SecretStr) else str(value).strip()
    if len(text) < 32:
        raise _invalid("must be at least 32 characters of random text")
    return text


def _database_url(value: object) -> str:
    text = str(value).strip()
    if not text.startswith(("postgresql://", "postgres://")):
        raise _invalid("must be a postgresql:// URL")  # its password is not repeated
    return text


def _failpoints(value: object) -> frozenset[str]:
    # testing only: named points where the process kills itself (crash tests)
    return frozenset(p for p in str(value).split(",") if p)


def _time_zone(value: object) -> str:
    text = str(value).strip()
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _invalid(f"not an IANA time zone (like Asia/Ho_Chi_Minh): {value!r}") from None
    return text


def _days_off(value: object) -> tuple[datetime.date, ...]:
    """``2026-12-24, 2027-04-29`` (commas or spaces; a TOML list of dates works too)."""
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", str(value))
    days = set()
    for item in items:
        if isinstance(item, datetime.date):
            days.add(item)
            continue
        text = str(item).strip()
        if not text:
            continue
        try:
            days.add(datetime.date.fromisoformat(text))
        except ValueError:
            raise _invalid(f"not a date like 2026-12-24: {text!r}") from None
    return tuple(sorted(days))


def _tables(value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _invalid("must be a table of tables")
    return value


Duration = Annotated[int, BeforeValidator(_duration)]
Url = Annotated[str, BeforeValidator(_url)]
BaseUrl = Annotated[str, BeforeValidator(_base_url)]
Flag = Annotated[bool, BeforeValidator(_bool)]
Secret = Annotated[SecretStr, BeforeValidator(_secret)]


# --- policies --------------------------------------------------------------------------------


class RetentionSource(StrEnum):
    """The policy level whose ``retention`` a call's recordings keep (issue 15 item 5)."""

    TENANT = "tenant"
    QUEUE = "queue"
    NUMBER = "number"


@dataclass(frozen=True)
class Policy:
    """What callvault does with a call to one number: resolved defaults ← queue ← number."""

    queue: str | None = None
    consent_mode: ConsentMode = "implied"
    language: str = "vi-VN"
    continue_url: str | None = None
    never_record: bool = False
    retention_s: int = 90 * 86400
    gather_timeout_s: int = 8
    gather_retries: int = 1
    # which level set retention_s; stored with the call's policy, then with its recordings
    retention_source: RetentionSource = RetentionSource.TENANT

    def __post_init__(self) -> None:
        # a policy read back from a call's row carries the level as plain text
        object.__setattr__(self, "retention_source", RetentionSource(self.retention_source))

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "consent_mode": self.consent_mode,
            "language": self.language,
            "continue_url": self.continue_url,
            "never_record": self.never_record,
            "retention_s": self.retention_s,
            "gather_timeout_s": self.gather_timeout_s,
            "gather_retries": self.gather_retries,
            "retention_source": str(self.retention_source),
        }


class _QueueTable(BaseModel):
    """The policy keys of a ``[queues.NAME]`` table (and of the defaults)."""

    model_config = ConfigDict(extra="forbid")

    consent_mode: Annotated[ConsentMode, BeforeValidator(_consent_mode)] | None = None
    language: Annotated[str, BeforeValidator(_language)] | None = None
    continue_url: Url | None = None
    never_record: Flag | None = None
    retention: Duration | None = None
    gather_timeout: Duration | None = None
    gather_retries: Annotated[int, _between(0, 5)] | None = None


class _NumberTable(_QueueTable):
    """A ``[numbers."+E164"]`` table: the policy keys and the number's queue."""

    queue: str | None = None


_POLICY_KEYS = frozenset(_QueueTable.model_fields)
_PolicyTable = dict[tuple[str | None, str | None], Policy]


def _stored_name(key: str, names: frozenset[str]) -> str:
    """Durations are written ``purge_interval = "5m"``, kept in seconds as ``purge_interval_s``."""
    if key == "job_backoff":
        return "job_backoff_base_s"
    return key + "_s" if key + "_s" in names else key


_POLICY_FIELDS = frozenset(f.name for f in fields(Policy))


def _policy_changes(table: BaseModel, level: RetentionSource) -> dict[str, Any]:
    changes = {
        _stored_name(key, _POLICY_FIELDS): getattr(table, key)
        for key in table.model_fields_set
        if key in _POLICY_KEYS
    }
    if "retention_s" in changes:
        changes["retention_source"] = level  # this level set the retention
    return changes


def _table(model: type[_QueueTable], raw: object, where: str) -> _QueueTable:
    def name(loc: tuple[int | str, ...]) -> str:
        return ".".join([where, *map(str, loc)])

    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, name, "unknown key") from None


def _resolve_policies(
    defaults: Policy,
    queues: Mapping[str, Mapping[str, Any]],
    numbers: Mapping[str, Mapping[str, Any]],
) -> _PolicyTable:
    """Every policy a webhook can ask for, keyed by (number, queue); ``None`` stands for "not a
    configured number" and "no queue". A number with keys of its own gets one entry per queue,
    as a webhook URL may name any queue; numbers × queues stays small for a contact centre."""
    resolved: _PolicyTable = {(None, None): defaults}
    for name, raw in queues.items():
        changes = _policy_changes(_table(_QueueTable, raw, f"queues.{name}"), RetentionSource.QUEUE)
        resolved[(None, name)] = replace(defaults, **changes, queue=name)
    for number, raw in numbers.items():
        if not E164_PATTERN.match(number):
            raise ConfigError(
                f"numbers.{number}: table names must be E.164 numbers like +842812345678"
            )
        table = _table(_NumberTable, raw, f"numbers.{number}")
        assert isinstance(table, _NumberTable)
        if table.queue is not None and table.queue not in queues:
            raise ConfigError(f"numbers.{number}.queue: unknown queue {table.queue!r}")
        changes = _policy_changes(table, RetentionSource.NUMBER)
        own = resolved[(None, table.queue)]
        resolved[(number, None)] = replace(own, **changes) if changes else own
        if changes:  # a number without keys of its own takes an explicit queue's policy as is
            for name in queues:
                resolved[(number, name)] = replace(resolved[(None, name)], **changes)
    return resolved


# --- the settings the service reads ----------------------------------------------------------


class ProcessRole(StrEnum):
    """What one callvault process runs (``CALLVAULT_ROLE``, ``serve --role``): everything, the
    HTTP service alone, or the job queue and the scheduled passes alone (``callvault worker``)."""

    ALL = "all"
    WEB = "web"
    WORKER = "worker"


@dataclass(frozen=True)
class Settings:
    home: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    database_url: str | None = None
    # serve refuses a superuser/BYPASSRLS database role (tenant isolation) unless this says so
    allow_rls_bypass: bool = False
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_sse: str = "AES256"
    s3_kms_key_id: str | None = None
    s3_threads: int = 8
    # Secrets are SecretStr while they are parsed (no error or repr shows them) and plain text
    # here, where the vault and signers need them; they are left out of this class's repr.
    secret_key: str | None = field(default=None, repr=False)
    # during a key rotation: still read, never written
    previous_secret_key: str | None = field(default=None, repr=False)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    twilio_api_url: str = "https://api.twilio.com"
    # the tenant default's Stringee project (service/platforms/stringee): the signing secret
    # its webhooks are checked with, the API key its recordings are fetched with, the API hosts
    # tried in order, and what a call does after the consent step (SCCO actions)
    stringee_signing_secret: str | None = field(default=None, repr=False)
    stringee_api_key_sid: str | None = None
    stringee_api_key_secret: str | None = field(default=None, repr=False)
    stringee_api_urls: tuple[str, ...] = ("https://api.stringee.com",)
    stringee_continue_scco: tuple[dict[str, Any], ...] = ()
    # set only by `serve` in demo mode (service/demo/laptop.py), never from the environment or file
    twilio_standin: bool = False
    purge_interval_s: int = 300
    role: ProcessRole = ProcessRole.ALL
    workers: int = 4
    # a worker process (role worker only) lowers its own CPU priority to this niceness, so on a
    # shared node the web replicas' webhooks are scheduled first; 0 leaves it as started
    worker_nice: int = 10
    job_max_attempts: int = 12
    job_lease_s: float = 30.0
    job_backoff_base_s: float = 2.0
    job_backoff_cap_s: float = 600.0
    max_recording_bytes: int = 2 * 1024**3
    recording_format: str = "wav"  # what to fetch from the platform: wav or mp3
    recording_transcode: str | None = None  # transcode locally before storing: mp3
    download_timeout_s: int = 3600
    failpoints: frozenset[str] = frozenset()
    shutdown_timeout_s: float = 20.0
    # The tenant `default`'s data-subject request clock (other tenants: their policy; see
    # retention/clock.py). None: the law's figure, 15 days (20 with dsar_processor).
    dsar_deadline_s: int | None = None
    dsar_processor: bool = False
    time_zone: str = "Asia/Ho_Chi_Minh"
    days_off: tuple[datetime.date, ...] = ()
    link_ttl_s: int = 300  # short-lived download and playback links
    bundle_ttl_s: int = 7 * 86400  # access bundles are handed out, then purged, after this
    seal_interval_s: int = 3600  # how often the ledger is sealed
    reconcile_grace_s: int = 600  # a call's recording callback is awaited this long after it ends
    reconcile_interval_s: int = 900  # how often lost recording callbacks are looked for
    max_body_bytes: int = 1024 * 1024
    # A webhook waits this long for a database connection, and this long for its statements,
    # before it answers without the database (see service.db.pool.reach).
    db_acquire_timeout_s: float = 2.0
    db_statement_timeout_s: float = 3.0
    # Peers whose X-Forwarded-For is believed (the load balancer); nobody's by default.
    trusted_proxies: tuple[Network, ...] = ()
    # when set, /metrics wants it as a bearer token
    metrics_token: str | None = field(default=None, repr=False)
    metrics_cache_s: float = 15.0  # database figures on /metrics are at most this old
    # at most this many tenants get their own `tenant` label on /metrics (the oldest first);
    # the rest are summed under "_other", so a BPO's thousandth client adds no series
    metrics_tenants: int = 100
    job_retention_s: int = 7 * 86400  # finished jobs are deleted this long after they finish
    # A connection must send a whole request head within this time of opening (or of its last
    # response); an idle keep-alive connection is closed after it too.
    header_timeout_s: float = 15.0
    max_connections: int = 1000  # beyond it the oldest idle connection is closed
    log_level: str = "INFO"
    config_path: Path | None = None
    defaults: Policy = field(default_factory=Policy)
    queues: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    numbers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # (number, queue) → Policy, built from the three above whenever a Settings is made (also by
    # dataclasses.replace), so that a webhook only looks its policy up.
    _policies: _PolicyTable = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        resolved = _resolve_policies(self.defaults, self.queues, self.numbers)
        object.__setattr__(self, "_policies", resolved)  # frozen: set once, here

    @property
    def prompts_dir(self) -> Path:
        return self.home / "prompts"

    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    @property
    def serves_web(self) -> bool:
        """Whether this process answers webhooks, the API and the pages."""
        return self.role is not ProcessRole.WORKER

    @property
    def runs_jobs(self) -> bool:
        """Whether this process claims jobs and runs the scheduled passes (purge, seals,
        reconcile, the start-up re-hash): role all or worker, with at least one worker."""
        return self.role is not ProcessRole.WEB and self.workers > 0

    @property
    def application_name(self) -> str:
        """What this process's database sessions call themselves (``pg_stat_activity``), so an
        operator tells a web replica's from a worker's; ``callvault`` when it runs both."""
        return "callvault" if self.role is ProcessRole.ALL else f"callvault-{self.role.value}"

    def policy_for(self, called: str | None, queue: str | None = None) -> Policy:
        """The policy for a call to ``called``; an explicit ``queue`` (from the webhook URL) wins
        over the number's own queue, and the number's own keys win over both."""
        queue = queue or None
        policy = self._policies.get((called, queue)) if called else None
        if policy is None:
            policy = self._policies.get((None, queue))
        if policy is None:
            raise ConfigError(f"queue: unknown queue {queue!r}")
        return policy


_SETTINGS_FIELDS = frozenset(f.name for f in fields(Settings) if f.init)


# --- loading: environment over file ------------------------------------------------------------


class _Source(BaseSettings):
    """Every key a user may set, as written in the TOML file (and, upper case after the prefix,
    in the environment), with the type that validates it. Unset keys keep :class:`Settings`'
    defaults, so none are repeated here."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # CALLVAULT_S3_BUCKET= is as good as unset
        extra="forbid",
        str_strip_whitespace=True,
        hide_input_in_errors=True,
    )

    home: Path | None = None
    host: str | None = None
    port: Annotated[int, _between(1, 65535)] | None = None
    public_url: BaseUrl | None = None
    database_url: Annotated[str, BeforeValidator(_database_url)] | None = None
    allow_rls_bypass: Flag | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: BaseUrl | None = None
    s3_region: str | None = None
    s3_sse: Annotated[str, _one_of("AES256", "aws:kms")] | None = None
    s3_kms_key_id: str | None = None
    s3_threads: Annotated[int, _between(1, 64)] | None = None
    secret_key: Secret | None = None
    previous_secret_key: Secret | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_url: BaseUrl | None = None
    stringee_signing_secret: SecretStr | None = None
    stringee_api_key_sid: str | None = None
    stringee_api_key_secret: SecretStr | None = None
    stringee_api_urls: (
        Annotated[tuple[str, ...], NoDecode, BeforeValidator(_stringee_hosts)] | None
    ) = None
    stringee_continue_scco: (
        Annotated[tuple[dict[str, Any], ...], NoDecode, BeforeValidator(_stringee_scco)] | None
    ) = None
    purge_interval: Duration | None = None
    role: Annotated[ProcessRole, _one_of(*ProcessRole, transform=str.lower)] | None = None
    workers: Annotated[int, _between(0, 64)] | None = None
    worker_nice: Annotated[int, _between(0, 19)] | None = None
    job_max_attempts: Annotated[int, _between(1, 100)] | None = None
    job_lease: Duration | None = None
    job_backoff: Duration | None = None
    job_backoff_cap: Duration | None = None
    max_recording_bytes: Annotated[int, _between(1024, 1 << 40)] | None = None
    recording_format: Annotated[str, _one_of("wav", "mp3")] | None = None
    recording_transcode: Annotated[str, _one_of("none", "mp3")] | None = None
    download_timeout: Duration | None = None
    failpoints: Annotated[frozenset[str], NoDecode, BeforeValidator(_failpoints)] | None = None
    shutdown_timeout: Duration | None = None
    dsar_deadline: Duration | None = None
    dsar_processor: Flag | None = None
    time_zone: Annotated[str, BeforeValidator(_time_zone)] | None = None
    days_off: Annotated[tuple[datetime.date, ...], NoDecode, BeforeValidator(_days_off)] | None = (
        None
    )
    link_ttl: Duration | None = None
    bundle_ttl: Duration | None = None
    seal_interval: Duration | None = None
    reconcile_grace: Duration | None = None
    reconcile_interval: Duration | None = None
    max_body_bytes: Annotated[int, _between(1024, 1 << 30)] | None = None
    db_acquire_timeout: Duration | None = None
    db_statement_timeout: Duration | None = None
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode, BeforeValidator(_networks)] | None = (
        None
    )
    metrics_token: SecretStr | None = None
    metrics_cache: Duration | None = None
    metrics_tenants: Annotated[int, _between(1, 10_000)] | None = None
    job_retention: Duration | None = None
    header_timeout: Duration | None = None
    max_connections: Annotated[int, _between(16, 1_000_000)] | None = None
    log_level: (
        Annotated[str, _one_of("DEBUG", "INFO", "WARNING", "ERROR", transform=str.upper)] | None
    ) = None
    # the defaults of the call policies
    consent_mode: Annotated[ConsentMode, BeforeValidator(_consent_mode)] | None = None
    language: Annotated[str, BeforeValidator(_language)] | None = None
    continue_url: Url | None = None
    never_record: Flag | None = None
    retention: Duration | None = None
    gather_timeout: Duration | None = None
    gather_retries: Annotated[int, _between(0, 5)] | None = None
    # the file's tables; checked key by key when Settings resolves the policies
    queues: Annotated[dict[str, dict[str, Any]], BeforeValidator(_tables)] = {}
    numbers: Annotated[dict[str, dict[str, Any]], BeforeValidator(_tables)] = {}


_FILE_ONLY = frozenset({"queues", "numbers"})
_ENV_KEYS = frozenset(_Source.model_fields) - _FILE_ONLY


class _Environ(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self.environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _read(environ: Mapping[str, str], config_path: Path | None) -> _Source:
    class Loaded(_Source):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            # first source wins: the environment, then the file (when there is one)
            chain: list[PydanticBaseSettingsSource] = [_Environ(settings_cls, environ)]
            if config_path is not None:
                chain.append(TomlConfigSettingsSource(settings_cls, toml_file=config_path))
            return tuple(chain)

    return Loaded()


def _config_error(
    exc: ValidationError, name: Callable[[tuple[int | str, ...]], str], unknown: str
) -> ConfigError:
    """The first error as ``KEY: reason`` (pydantic reports them all; one line is enough)."""
    error = exc.errors(include_input=False)[0]
    if error["type"] == "callvault":
        reason = str((error.get("ctx") or {})["reason"])
    elif error["type"] == "extra_forbidden":
        reason = unknown
    else:
        reason = error["msg"][:1].lower() + error["msg"][1:]
    return ConfigError(f"{name(error['loc'])}: {reason}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) and its TOML file."""
    env = os.environ if environ is None else environ
    given = {
        name: value
        for name, value in env.items()
        if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG"
    }
    for name in given:
        if name[len(ENV_PREFIX) :].lower() not in _ENV_KEYS:
            raise ConfigError(f"{name}: unknown setting (in environment)")
    # (an empty variable counts as unset: env_ignore_empty)
    from_env = {name[len(ENV_PREFIX) :].lower(): name for name, value in given.items() if value}
    config_path = Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None
    if config_path is not None and not config_path.exists():
        raise ConfigError(f"CALLVAULT_CONFIG: no such file {str(config_path)!r}")
    if config_path is not None and config_path.is_dir():  # the TOML source would skip it
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(config_path))

    def key_name(loc: tuple[int | str, ...]) -> str:
        key = str(loc[0]) if loc else ""
        # the environment wins, so a bad value for a key it sets is the environment's
        return ".".join([from_env.get(key, key), *map(str, loc[1:])])

    try:
        source = _read(given, config_path)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CALLVAULT_CONFIG: {config_path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        raise _config_error(exc, key_name, f"unknown setting (in {config_path})") from None

    values: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    for key in source.model_fields_set - _FILE_ONLY:
        value = getattr(source, key)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if key in _POLICY_KEYS:
            policy[_stored_name(key, _POLICY_FIELDS)] = value
        elif key == "recording_transcode":
            values[key] = None if value == "none" else value
        else:
            values[_stored_name(key, _SETTINGS_FIELDS)] = value
    if "public_url" not in values:
        host, port = values.get("host", "127.0.0.1"), values.get("port", 8080)
        values["public_url"] = f"http://{host}:{port}"
    return Settings(
        **values,
        config_path=config_path,
        defaults=Policy(**policy),
        queues=source.queues,
        numbers=source.numbers,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"CALLVAULT_CONFIG: no such file {str(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CALLVAULT_CONFIG: {path} is not valid TOML: {exc}") from None


_SECRETS_FILE = "generated-secrets.toml"


def with_generated_secrets(settings: Settings) -> Settings:
    """Fill a missing secret key and Twilio credentials from ``$CALLVAULT_HOME``, creating them
    once (mode 0600). This is the embedded default for a laptop or a demo; production sets
    ``CALLVAULT_SECRET_KEY`` and ``CALLVAULT_TWILIO_*`` and this file is never read."""
    if settings.secret_key and settings.twilio_auth_token and settings.twilio_account_sid:
        return settings
    if settings.database_url:
        # A shared database means several replicas: a key generated here would differ per
        # replica and make numbers unreadable and unmatchable elsewhere. Refuse instead.
        for key in ("secret_key", "twilio_account_sid", "twilio_auth_token"):
            if not getattr(settings, key):
                raise ConfigError(
                    f"CALLVAULT_{key.upper()}: required when CALLVAULT_DATABASE_URL is set "
                    "(secrets are generated only for the embedded database)"
                )
    path = settings.home / _SECRETS_FILE
    stored: dict[str, Any] = {}
    if path.exists():
        stored = _read_toml(path)
    changed = False
    fresh = {
        "secret_key": secrets.token_urlsafe(48),
        "twilio_auth_token": secrets.token_hex(16),
        "twilio_account_sid": "AC" + secrets.token_hex(16),
    }
    for key, value in fresh.items():
        if key not in stored:
            stored[key] = value
            changed = True
    if changed:
        settings.home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("# generated by callvault for local use; set CALLVAULT_* in production\n")
            for key, value in stored.items():
                fh.write(f'{key} = "{value}"\n')
        os.replace(tmp, path)
    return replace(
        settings,
        secret_key=settings.secret_key or stored["secret_key"],
        twilio_auth_token=settings.twilio_auth_token or stored["twilio_auth_token"],
        twilio_account_sid=settings.twilio_account_sid or stored["twilio_account_sid"],
    )
