"""Settings: environment variables with the ``CALLVAULT_`` prefix over an optional TOML file.

The TOML file named by ``CALLVAULT_CONFIG`` may set the same keys as the environment, in lower
case without the prefix (``port = 8080``); the environment wins. It also holds the call
policies: defaults at top level, ``[queues.NAME]`` tables and ``[numbers."+E164"]`` tables for
the called numbers (a number may name its queue). Every invalid value raises
:class:`ConfigError` whose message starts with the bad key, so start-up stops with one line.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from service.errors import ConfigError
from service.personal_data import E164_PATTERN

ENV_PREFIX = "CALLVAULT_"
ConsentMode = Literal["implied", "explicit"]
CONSENT_MODES: tuple[ConsentMode, ...] = ("implied", "explicit")
LANGUAGES = ("vi-VN", "en-US")
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(key: str, value: object) -> int:
    """``90d``/``12h``/``30s``/``5m``/``2w`` (or a bare number of seconds) → seconds (> 0)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like 90d, 12h or 30s, got {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(f"{key}: expected a duration like 90d, 12h or 30s, got {value!r}")
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{key}: must be longer than zero, got {value!r}")
    return seconds


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
        }


# Policy keys as they appear in TOML and (for the defaults) in the environment.
_POLICY_KEYS = {
    "consent_mode",
    "language",
    "continue_url",
    "never_record",
    "retention",
    "gather_timeout",
    "gather_retries",
}


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
    secret_key: str | None = None
    previous_secret_key: str | None = None  # during a key rotation: still read, never written
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    # set only by `serve` in demo mode (service/demo.py), never from the environment or file
    twilio_standin: bool = False
    purge_interval_s: int = 300
    workers: int = 4
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
    dsar_deadline_s: int = 72 * 3600  # Decree 13/2023; Decree 356/2025 allows 15 days
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
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    metrics_token: str | None = None  # when set, /metrics wants it as a bearer token
    metrics_cache_s: float = 15.0  # database figures on /metrics are at most this old
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

    @property
    def prompts_dir(self) -> Path:
        return self.home / "prompts"

    @property
    def pg_dir(self) -> Path:
        return self.home / "pg"

    def policy_for(self, called: str | None, queue: str | None = None) -> Policy:
        """The policy for a call to ``called``; an explicit ``queue`` (from the webhook URL) wins
        over the number's own queue, and the number's own keys win over both."""
        number = dict(self.numbers.get(called or "", {}))
        queue_name = queue or number.pop("queue", None)
        number.pop("queue", None)
        policy = self.defaults
        if queue_name is not None:
            if queue_name not in self.queues:
                raise ConfigError(f"queue: unknown queue {queue_name!r}")
            policy = _apply_policy(policy, self.queues[queue_name], f"queues.{queue_name}")
            policy = replace(policy, queue=queue_name)
        return _apply_policy(policy, number, f"numbers.{called}")


def _apply_policy(base: Policy, raw: Mapping[str, Any], where: str) -> Policy:
    for key, value in raw.items():
        base = _apply_one(base, key, value, f"{where}.{key}")
    return base


def _apply_one(base: Policy, key: str, value: object, name: str) -> Policy:
    changes: dict[str, Any] = {}
    if key == "consent_mode":
        changes["consent_mode"] = _consent_mode(name, value)
    elif key == "language":
        changes["language"] = _language(name, value)
    elif key == "continue_url":
        changes["continue_url"] = _url(name, value)
    elif key == "never_record":
        changes["never_record"] = _bool(name, value)
    elif key == "retention":
        changes["retention_s"] = parse_duration(name, value)
    elif key == "gather_timeout":
        changes["gather_timeout_s"] = parse_duration(name, value)
    elif key == "gather_retries":
        changes["gather_retries"] = _int(name, value, 0, 5)
    else:
        raise ConfigError(f"{name}: unknown key")
    return replace(base, **changes)


def _consent_mode(key: str, value: object) -> ConsentMode:
    for mode in CONSENT_MODES:
        if value == mode:
            return mode
    raise ConfigError(f"{key}: must be 'implied' or 'explicit', got {value!r}")


def _language(key: str, value: object) -> str:
    if value not in LANGUAGES:
        raise ConfigError(f"{key}: must be one of {', '.join(LANGUAGES)}, got {value!r}")
    return str(value)


def _url(key: str, value: object) -> str:
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: must be an absolute http(s) URL, got {value!r}")
    return text.rstrip("/") if parts.path in ("", "/") and not parts.query else text


def _bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: must be true or false, got {value!r}")


def _int(key: str, value: object, low: int, high: int) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise ConfigError(f"{key}: must be a whole number from {low} to {high}, got {value!r}")
    return number


def _networks(key: str, value: object) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``10.0.0.5, 10.1.0.0/16 fd00::/8`` (commas or spaces; a TOML list works too)."""
    items = value if isinstance(value, list) else re.split(r"[\s,]+", str(value))
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(f"{key}: not an IP address or CIDR block: {text!r}") from None
    return tuple(networks)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"CALLVAULT_CONFIG: no such file {str(path)!r}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"CALLVAULT_CONFIG: {path} is not valid TOML: {exc}") from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``) and its TOML file."""
    env = os.environ if environ is None else environ
    raw: dict[str, tuple[str, object]] = {}  # key -> (name for messages, value)
    file_values: dict[str, Any] = {}
    config_path = env.get(ENV_PREFIX + "CONFIG")
    queues: dict[str, dict[str, Any]] = {}
    numbers: dict[str, dict[str, Any]] = {}
    if config_path:
        file_values = _read_toml(Path(config_path))
        for table, target in (("queues", queues), ("numbers", numbers)):
            section = file_values.pop(table, {})
            if not isinstance(section, dict) or not all(
                isinstance(v, dict) for v in section.values()
            ):
                raise ConfigError(f"{table}: must be a table of tables")
            target.update(section)
        for key, value in file_values.items():
            raw[key] = (key, value)
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG":
            raw[name[len(ENV_PREFIX) :].lower()] = (name, value)

    known = {
        "home",
        "host",
        "port",
        "public_url",
        "database_url",
        "s3_bucket",
        "s3_endpoint_url",
        "s3_region",
        "secret_key",
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_api_url",
        "purge_interval",
        "max_body_bytes",
        "log_level",
        "s3_sse",
        "s3_kms_key_id",
        "s3_threads",
        "workers",
        "job_max_attempts",
        "job_lease",
        "job_backoff",
        "job_backoff_cap",
        "max_recording_bytes",
        "download_timeout",
        "failpoints",
        "recording_format",
        "recording_transcode",
        "shutdown_timeout",
        "previous_secret_key",
        "dsar_deadline",
        "link_ttl",
        "seal_interval",
        "reconcile_grace",
        "reconcile_interval",
        "db_acquire_timeout",
        "db_statement_timeout",
        "trusted_proxies",
        "metrics_token",
        "metrics_cache",
        "job_retention",
        "header_timeout",
        "max_connections",
        "bundle_ttl",
        "allow_rls_bypass",
    } | _POLICY_KEYS
    values: dict[str, Any] = {}
    defaults = Policy()
    for key, (name, value) in raw.items():
        if key not in known:
            where = "environment" if name.startswith(ENV_PREFIX) else config_path
            raise ConfigError(f"{name}: unknown setting (in {where})")
        if key in _POLICY_KEYS:
            defaults = _apply_one(defaults, key, value, name)
            continue
        text = value if not isinstance(value, str) else value.strip()
        if key == "port":
            values["port"] = _int(name, text, 1, 65535)
        elif key == "max_body_bytes":
            values["max_body_bytes"] = _int(name, text, 1024, 1 << 30)
        elif key == "max_recording_bytes":
            values["max_recording_bytes"] = _int(name, text, 1024, 1 << 40)
        elif key == "s3_threads":
            values["s3_threads"] = _int(name, text, 1, 64)
        elif key == "workers":
            values["workers"] = _int(name, text, 0, 64)
        elif key == "max_connections":
            values[key] = _int(name, text, 16, 1_000_000)
        elif key == "allow_rls_bypass":
            values[key] = _bool(name, text)
        elif key == "trusted_proxies":
            values[key] = _networks(name, text)
        elif key == "job_max_attempts":
            values["job_max_attempts"] = _int(name, text, 1, 100)
        elif key in (
            "job_lease",
            "job_backoff",
            "job_backoff_cap",
            "download_timeout",
            "shutdown_timeout",
            "dsar_deadline",
            "link_ttl",
            "seal_interval",
            "reconcile_grace",
            "reconcile_interval",
            "db_acquire_timeout",
            "db_statement_timeout",
            "metrics_cache",
            "job_retention",
            "header_timeout",
            "bundle_ttl",
        ):
            field_name = {"job_backoff": "job_backoff_base_s"}.get(key, key + "_s")
            values[field_name] = parse_duration(name, text)
        elif key == "s3_sse":
            if text not in ("AES256", "aws:kms"):
                raise ConfigError(f"{name}: must be AES256 or aws:kms, got {value!r}")
            values[key] = str(text)
        elif key == "recording_format":
            if text not in ("wav", "mp3"):
                raise ConfigError(f"{name}: must be wav or mp3, got {value!r}")
            values[key] = str(text)
        elif key == "recording_transcode":
            if text not in ("none", "mp3"):
                raise ConfigError(f"{name}: must be none or mp3, got {value!r}")
            values[key] = None if text == "none" else str(text)
        elif key == "failpoints":
            # testing only: named points where the process kills itself (crash tests)
            values[key] = frozenset(p for p in str(text).split(",") if p)
        elif key == "purge_interval":
            values["purge_interval_s"] = parse_duration(name, text)
        elif key == "home":
            values["home"] = Path(str(text))
        elif key in ("public_url", "twilio_api_url", "s3_endpoint_url"):
            values[key] = _url(name, text).rstrip("/")
        elif key == "log_level":
            level = str(text).upper()
            if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise ConfigError(f"{name}: must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
            values["log_level"] = level
        elif key in ("secret_key", "previous_secret_key"):
            if len(str(text)) < 32:
                raise ConfigError(f"{name}: must be at least 32 characters of random text")
            values[key] = str(text)
        elif key == "database_url":
            if not str(text).startswith(("postgresql://", "postgres://")):
                raise ConfigError(f"{name}: must be a postgresql:// URL")
            values[key] = str(text)
        elif text != "":
            values[key] = str(text)

    if "public_url" not in values:
        host = values.get("host", "127.0.0.1")
        values["public_url"] = f"http://{host}:{values.get('port', 8080)}"
    settings = Settings(
        **values,
        config_path=Path(config_path) if config_path else None,
        defaults=defaults,
        queues=queues,
        numbers=numbers,
    )
    _check_policies(settings)
    return settings


def _check_policies(settings: Settings) -> None:
    """Resolve every configured number and queue once, so a bad key stops start-up."""
    for name in settings.queues:
        settings.policy_for(None, name)
    for number in settings.numbers:
        if not E164_PATTERN.match(number):
            raise ConfigError(
                f"numbers.{number}: table names must be E.164 numbers like +842812345678"
            )
        queue = settings.numbers[number].get("queue")
        if queue is not None and queue not in settings.queues:
            raise ConfigError(f"numbers.{number}.queue: unknown queue {queue!r}")
        settings.policy_for(number)


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
