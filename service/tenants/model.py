"""A tenant as configuration: the typed, validated spec that `tenant apply` and
``PUT /api/tenants/{id}`` write, read from a TOML file (``[tenants.ID]``) or a JSON body.

Validation is complete before anything is written: the first problem raises
:class:`TenantSpecError` whose message starts with the TOML path of the bad key
(``tenants.acme.numbers."+84...".queue: no queue named "sales"``). Secrets are never values in a
spec: a secret is named by ``*_env`` (an environment variable) or ``*_file`` (a file), and a key
that looks like a plain secret is refused before any other check.
"""

from __future__ import annotations

import datetime
import json
import re
import tomllib
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import phonenumbers

from service.config import CONSENT_MODES, LANGUAGES, parse_duration
from service.errors import ConfigError
from service.errors import TenantSpecError as TenantSpecError

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
DEFAULT = "default"
_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class Platform(StrEnum):
    TWILIO = "twilio"
    STRINGEE = "stringee"
    PBX = "pbx"


def key_path(*parts: str) -> str:
    """``tenants.acme.numbers."+84..."``: parts joined as TOML writes keys (quoted if need be)."""
    return ".".join(p if _BARE_KEY.match(p) else json.dumps(p) for p in parts)


# Keys of a policy (tenant, queue or number level); durations are stored in whole seconds.
POLICY_KEYS = {
    "consent_mode",
    "language",
    "notice_version",
    "continue_url",
    "continue_scco",
    "retention",
    "never_record",
    "gather_timeout",
    "gather_retries",
}
DURATION_KEYS = {"retention", "retention_min", "retention_max", "gather_timeout"}
# Only at the tenant level: the bounds of retention, deadlines, days off, time zone.
TENANT_POLICY_KEYS = POLICY_KEYS | {
    "retention_min",
    "retention_max",
    "deadlines",
    "days_off",
    "time_zone",
    "processor",
}
# Per kind of data-subject request, the acknowledgement (working days) and the one extension's
# longest (at most 15 days; retention/clock.py).
DEADLINE_KEYS = (
    "acknowledge",
    "access",
    "correct",
    "erase",
    "withdraw",
    "restrict",
    "extension",
)
MAX_EXTENSION_S = 15 * 86400
TENANT_TABLES = {"queues", "numbers", "twilio", "stringee", "pbx", "storage", "data_keys"}

# Per platform: the key naming the account, its other plain settings, and its secrets (each
# given as NAME_env or NAME_file); the first secret listed is required.
ACCOUNT_SHAPES: dict[Platform, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    Platform.TWILIO: ("account_sid", ("api_key_sid",), ("auth_token", "api_key_secret")),
    Platform.STRINGEE: ("project_id", ("api_key_sid",), ("signing_secret", "api_key_secret")),
    Platform.PBX: ("name", (), ("token",)),
}
STORAGE_KEYS = {"bucket", "endpoint_url", "region", "sse", "kms_key_id"}
STORAGE_SECRETS = ("access_key_id", "secret_access_key")
# The tenant's own KMS key, wrapping each recording's data key (issue 17) instead of the key
# derived from CALLVAULT_SECRET_KEY; credentials as for storage (or the default chain).
DATA_KEYS_KEYS = {"kms_key_id", "endpoint_url", "region"}
_SECRET_WORDS = ("token", "secret", "password", "secret_access_key", "private_key")


def is_plain_secret(key: str) -> bool:
    """``auth_token``, ``api_key_secret``, ``signing_secret``, ``password``, ...: a key that would
    hold a secret's value rather than name where it lives."""
    if key.endswith(("_env", "_file")):
        return False
    return key.endswith(_SECRET_WORDS)


def _refuse_plain_secrets(node: Any, path: tuple[str, ...]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if is_plain_secret(str(key)):
                raise TenantSpecError(
                    f"{key_path(*path, str(key))}: secrets are never written in a tenant file; "
                    f"name the environment variable ({key}_env) or the file ({key}_file) "
                    "that holds it",
                    code="plain_secret",
                )
            _refuse_plain_secrets(value, (*path, str(key)))
    elif isinstance(node, list):
        for item in node:
            _refuse_plain_secrets(item, path)


@dataclass
class TenantSpec:
    """One tenant's desired state, normalised so that equal configurations compare equal."""

    id: str
    name: str
    policy: dict[str, Any] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    # number -> {"queue": name or None, "policy": {...}}
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (platform, account id) -> {"settings": {...}, "secrets": {"auth_token_env": "NAME"}}
    accounts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    storage: dict[str, Any] | None = None
    # {"kms_key_id", "endpoint_url"?, "region"?, "credentials": {...}}; None: derived key
    data_keys: dict[str, Any] | None = None

    def flat(self) -> dict[str, Any]:
        """Every setting by its TOML path (an entity by itself maps to None): what plans diff."""
        out: dict[str, Any] = {}
        base = ("tenants", self.id)
        out[key_path(*base)] = None
        out[key_path(*base, "name")] = self.name
        for key, value in self.policy.items():
            if isinstance(value, dict):  # deadlines: one line per kind
                for sub, item in value.items():
                    out[key_path(*base, key, sub)] = item
            else:
                out[key_path(*base, key)] = value
        for qname, policy in self.queues.items():
            out[key_path(*base, "queues", qname)] = None
            for key, value in policy.items():
                out[key_path(*base, "queues", qname, key)] = value
        for number, entry in self.numbers.items():
            out[key_path(*base, "numbers", number)] = None
            if entry["queue"] is not None:
                out[key_path(*base, "numbers", number, "queue")] = entry["queue"]
            for key, value in entry["policy"].items():
                out[key_path(*base, "numbers", number, key)] = value
        for (platform, account_id), entry in self.accounts.items():
            where = (*base, platform, account_id)
            out[key_path(*where)] = None
            for key, value in {**entry["settings"], **entry["secrets"]}.items():
                out[key_path(*where, key)] = value
        if self.storage is not None:
            out[key_path(*base, "storage")] = None
            storage = {**self.storage, **self.storage["credentials"]}
            storage.pop("credentials")
            for key, value in storage.items():
                out[key_path(*base, "storage", key)] = value
        if self.data_keys is not None:
            out[key_path(*base, "data_keys")] = None
            data_keys = {**self.data_keys, **self.data_keys["credentials"]}
            data_keys.pop("credentials")
            for key, value in data_keys.items():
                out[key_path(*base, "data_keys", key)] = value
        return out


def show_value(path: str, value: Any) -> str:
    """A value as a plan prints it: durations as ``180d``, the rest as JSON."""
    last = path.rsplit(".", 1)[-1]
    duration = last in DURATION_KEYS or path.rsplit(".", 2)[-2:-1] == ["deadlines"]
    if isinstance(value, int) and not isinstance(value, bool) and duration:
        return format_duration(value)
    return json.dumps(value, ensure_ascii=False)


def format_duration(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ---------------------------------------------------------------------------------------------
# Parsing


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise TenantSpecError(f"{path}: not valid TOML: {exc}") from None
    return data


def parse_file(data: Mapping[str, Any]) -> list[TenantSpec]:
    """The tenants a file names (``[tenants.ID]`` tables), each validated completely."""
    _refuse_plain_secrets(data, ())
    for key in data:
        if key != "tenants":
            raise TenantSpecError(
                f"{key_path(str(key))}: unknown key (a tenant file holds [tenants.ID] tables)"
            )
    tenants = data.get("tenants")
    if not isinstance(tenants, Mapping) or not tenants:
        raise TenantSpecError("tenants: expected one or more [tenants.ID] tables")
    specs = [parse_tenant(str(tid), body) for tid, body in tenants.items()]
    check_numbers_unique(specs)
    return specs


def check_numbers_unique(specs: list[TenantSpec]) -> None:
    owner: dict[str, str] = {}
    for spec in specs:
        for number in spec.numbers:
            if number in owner:
                raise TenantSpecError(
                    f"{key_path('tenants', spec.id, 'numbers', number)}: the number is also "
                    f"claimed by tenant {owner[number]!r} (a number belongs to one tenant)"
                )
            owner[number] = spec.id


def parse_tenant(tenant_id: str, body: Any) -> TenantSpec:
    """One tenant's table (or JSON object), validated; paths in errors start ``tenants.ID``."""
    base = ("tenants", tenant_id)
    _refuse_plain_secrets(body, base)
    if not SLUG.match(tenant_id):
        raise TenantSpecError(
            f"{key_path(*base)}: a tenant id is 2 to 40 lower-case letters, digits and '-', "
            "starting with a letter or digit"
        )
    if not isinstance(body, Mapping):
        raise TenantSpecError(f"{key_path(*base)}: expected a table")
    for key in body:
        if key not in TENANT_POLICY_KEYS | TENANT_TABLES | {"name"}:
            raise TenantSpecError(f"{key_path(*base, str(key))}: unknown key")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise TenantSpecError(f"{key_path(*base, 'name')}: required, 1 to 200 printable characters")
    spec = TenantSpec(id=tenant_id, name=name.strip())
    if tenant_id == DEFAULT:
        changed = sorted(k for k in body if k != "name")
        if changed:
            raise TenantSpecError(
                f"{key_path(*base, changed[0])}: the default tenant's policy, numbers, accounts "
                "and storage come from the environment and CALLVAULT_CONFIG; tenant apply may "
                "only rename it",
                code="default_tenant_policy",
            )
        return spec
    own = {k: v for k, v in body.items() if k not in TENANT_TABLES and k != "name"}
    spec.policy = _policy(own, TENANT_POLICY_KEYS, base)
    low, high = spec.policy.get("retention_min"), spec.policy.get("retention_max")
    if low is not None and high is not None and low > high:
        raise TenantSpecError(
            f"{key_path(*base, 'retention_min')}: {format_duration(low)} is above "
            f"retention_max {format_duration(high)}"
        )
    _check_retention(spec.policy, spec.policy, base)
    queues = _table_of_tables(body.get("queues", {}), (*base, "queues"))
    for qname, raw in queues.items():
        where = (*base, "queues", qname)
        if not _QUEUE.match(qname):
            raise TenantSpecError(
                f"{key_path(*where)}: a queue name is letters, digits, '_', '.', '-' (1 to 64)"
            )
        spec.queues[qname] = _policy(raw, POLICY_KEYS, where)
        _check_retention(spec.queues[qname], spec.policy, where)
    numbers = _table_of_tables(body.get("numbers", {}), (*base, "numbers"))
    for number, raw in numbers.items():
        where = (*base, "numbers", number)
        _check_number(number, where)
        queue = raw.get("queue")
        if queue is not None and (not isinstance(queue, str) or queue not in spec.queues):
            raise TenantSpecError(
                f"{key_path(*where, 'queue')}: no queue named {json.dumps(queue)}"
            )
        policy = _policy({k: v for k, v in raw.items() if k != "queue"}, POLICY_KEYS, where)
        _check_retention(policy, spec.policy, where)
        spec.numbers[number] = {"queue": queue, "policy": policy}
    for platform in Platform:
        for raw, at in _one_or_many(body.get(platform.value), (*base, platform.value)):
            account_id, entry = _account(platform, raw, at)
            if (platform.value, account_id) in spec.accounts:
                raise TenantSpecError(f"{key_path(*at)}: account {account_id!r} listed twice")
            spec.accounts[(platform.value, account_id)] = entry
    if "storage" in body:
        spec.storage = _storage(body["storage"], (*base, "storage"))
    if "data_keys" in body:
        spec.data_keys = _data_keys(body["data_keys"], (*base, "data_keys"))
    return spec


def _table_of_tables(value: Any, where: tuple[str, ...]) -> dict[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise TenantSpecError(f"{key_path(*where)}: expected a table of tables")
    return {str(k): v for k, v in value.items()}


def _one_or_many(
    value: Any, where: tuple[str, ...]
) -> list[tuple[Mapping[str, Any], tuple[str, ...]]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [(value, where)]
    if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        return [(v, (*where[:-1], f"{where[-1]}[{i}]")) for i, v in enumerate(value)]
    raise TenantSpecError(f"{key_path(*where)}: expected a table or an array of tables")


def _check_number(number: str, where: tuple[str, ...]) -> None:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if (
        parsed is None
        or not phonenumbers.is_valid_number(parsed)
        or phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != number
    ):
        raise TenantSpecError(
            f"{key_path(*where)}: not a valid phone number in E.164 form (like +842873001234)"
        )


def _config(path: tuple[str, ...], fn: Any, *args: Any) -> Any:
    """Run a config.py validator, re-raising its error with the tenant path."""
    try:
        return fn(key_path(*path), *args)
    except ConfigError as exc:
        raise TenantSpecError(exc.message) from None


def _whole_number(path: tuple[str, ...], value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TenantSpecError(
            f"{key_path(*path)}: must be a whole number from {low} to {high}, got {value!r}"
        )
    return value


def _policy(raw: Mapping[str, Any], allowed: set[str], where: tuple[str, ...]) -> dict[str, Any]:
    from service import config

    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = (*where, key)
        if key not in allowed:
            raise TenantSpecError(f"{key_path(*path)}: unknown key")
        if key == "consent_mode":
            if value not in CONSENT_MODES:
                raise TenantSpecError(
                    f"{key_path(*path)}: must be one of {', '.join(CONSENT_MODES)}, got {value!r}"
                )
            out[key] = value
        elif key == "language":
            if value not in LANGUAGES:
                raise TenantSpecError(
                    f"{key_path(*path)}: must be one of {', '.join(LANGUAGES)}, got {value!r}"
                )
            out[key] = value
        elif key == "notice_version":
            out[key] = _notice_version(value, path)
        elif key == "continue_url":
            out[key] = _config(path, config.check_url, value)
        elif key == "continue_scco":
            out[key] = _scco(value, path)
        elif key in DURATION_KEYS:
            out[key] = _config(path, parse_duration, value)
        elif key in ("never_record", "processor"):
            if not isinstance(value, bool):
                raise TenantSpecError(f"{key_path(*path)}: must be true or false, got {value!r}")
            out[key] = value
        elif key == "gather_retries":
            out[key] = _whole_number(path, value, 0, 5)
        elif key == "deadlines":
            out[key] = _deadlines(value, path)
        elif key == "days_off":
            out[key] = _days_off(value, path)
        elif key == "time_zone":
            try:
                if not isinstance(value, str):
                    raise ValueError(value)
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise TenantSpecError(
                    f"{key_path(*path)}: not an IANA time zone (like Asia/Ho_Chi_Minh): {value!r}"
                ) from None
            out[key] = str(value)
    return out


def _notice_version(value: Any, path: tuple[str, ...]) -> int:
    from prompts.catalogue import catalogue

    versions = {p.version for p in catalogue()}
    if isinstance(value, bool) or not isinstance(value, int) or value not in versions:
        raise TenantSpecError(
            f"{key_path(*path)}: no notice version {value!r} in the prompt catalogue "
            f"(versions: {', '.join(map(str, sorted(versions)))})"
        )
    return value


def _scco(value: Any, path: tuple[str, ...]) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if (
        not isinstance(value, list)
        or not all(isinstance(a, Mapping) and isinstance(a.get("action"), str) for a in value)
        or "\\u0000" in json.dumps(value)  # PostgreSQL's jsonb cannot hold NUL
    ):
        raise TenantSpecError(
            f'{key_path(*path)}: must be a JSON array of SCCO actions, each with an "action"'
        )
    return [dict(a) for a in value]


def _deadlines(value: Any, path: tuple[str, ...]) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise TenantSpecError(f"{key_path(*path)}: expected a table of durations")
    out = {}
    for key, item in value.items():
        if key not in DEADLINE_KEYS:
            raise TenantSpecError(
                f"{key_path(*path, str(key))}: unknown key (one of {', '.join(DEADLINE_KEYS)})"
            )
        out[str(key)] = _config((*path, str(key)), parse_duration, item)
        if key == "extension" and out[key] > MAX_EXTENSION_S:
            raise TenantSpecError(
                f"{key_path(*path, str(key))}: at most 15d (one extension of up to 15 days)"
            )
    return out


def _days_off(value: Any, path: tuple[str, ...]) -> list[str]:
    if not isinstance(value, list):
        raise TenantSpecError(f"{key_path(*path)}: expected a list of dates like 2026-12-24")
    days = set()
    for item in value:
        if isinstance(item, datetime.date) and not isinstance(item, datetime.datetime):
            days.add(item.isoformat())
            continue
        try:
            days.add(datetime.date.fromisoformat(str(item)).isoformat())
        except ValueError:
            raise TenantSpecError(
                f"{key_path(*path)}: not a date like 2026-12-24: {item!r}"
            ) from None
    return sorted(days)


def _check_retention(
    policy: Mapping[str, Any], tenant: Mapping[str, Any], where: tuple[str, ...]
) -> None:
    value = policy.get("retention")
    if value is None:
        return
    low, high = tenant.get("retention_min"), tenant.get("retention_max")
    path = key_path(*where, "retention")
    if low is not None and value < low:
        raise TenantSpecError(
            f"{path}: {format_duration(value)} is below the tenant's retention_min "
            f"{format_duration(low)}"
        )
    if high is not None and value > high:
        raise TenantSpecError(
            f"{path}: {format_duration(value)} is above the tenant's retention_max "
            f"{format_duration(high)}"
        )


def _secret_refs(
    raw: Mapping[str, Any], names: tuple[str, ...], where: tuple[str, ...], required: str | None
) -> tuple[dict[str, str], set[str]]:
    refs: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        given = [f"{name}_{kind}" for kind in ("env", "file") if f"{name}_{kind}" in raw]
        if len(given) > 1:
            raise TenantSpecError(
                f"{key_path(*where, given[1])}: give {name}_env or {name}_file, not both"
            )
        if not given:
            if name == required:
                raise TenantSpecError(
                    f"{key_path(*where, name + '_env')}: required ({name}_env or {name}_file)"
                )
            continue
        key = given[0]
        used.add(key)
        value = raw[key]
        if key.endswith("_env"):
            if not isinstance(value, str) or not _ENV_NAME.match(value):
                raise TenantSpecError(
                    # (the value is not echoed: it may be the secret itself, put in by mistake)
                    f"{key_path(*where, key)}: must name an environment variable (letters, "
                    "digits and _)"
                )
        elif not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
            raise TenantSpecError(f"{key_path(*where, key)}: must be an absolute file path")
        refs[key] = value
    return refs, used


def _account(
    platform: Platform, raw: Mapping[str, Any], where: tuple[str, ...]
) -> tuple[str, dict[str, Any]]:
    id_key, setting_keys, secret_names = ACCOUNT_SHAPES[platform]
    account_id = raw.get(id_key)
    if not isinstance(account_id, str) or not account_id.strip():
        raise TenantSpecError(f"{key_path(*where, id_key)}: required")
    if platform is Platform.TWILIO and not re.fullmatch(r"AC[0-9a-f]{32}", account_id):
        raise TenantSpecError(
            f"{key_path(*where, id_key)}: a Twilio AccountSid is AC and 32 hex digits"
        )
    if platform is Platform.STRINGEE and not re.fullmatch(r"[1-9][0-9]{0,17}", account_id):
        # Stringee sends it as a number in every event_url post (service/platforms/stringee)
        raise TenantSpecError(
            f"{key_path(*where, id_key)}: a Stringee project id is a number (as a string)"
        )
    if platform is not Platform.TWILIO and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", account_id):
        raise TenantSpecError(f"{key_path(*where, id_key)}: letters, digits and _.:- only")
    secrets, used = _secret_refs(raw, secret_names, where, secret_names[0])
    settings: dict[str, Any] = {}
    for key, value in raw.items():
        if key == id_key or key in used:
            continue
        if key not in setting_keys:
            raise TenantSpecError(f"{key_path(*where, str(key))}: unknown key")
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            raise TenantSpecError(f"{key_path(*where, str(key))}: must be printable text")
        settings[key] = value
    return account_id, {"settings": settings, "secrets": secrets}


def _aws_table(raw: Any, where: tuple[str, ...], allowed: Iterable[str]) -> dict[str, str]:
    """A table naming an AWS service (``storage``, ``data_keys``): only ``allowed`` keys and
    the credential references, given as a pair or not at all; the references."""
    if not isinstance(raw, Mapping):
        raise TenantSpecError(f"{key_path(*where)}: expected a table")
    secrets, used = _secret_refs(raw, STORAGE_SECRETS, where, None)
    if bool(secrets) and len(secrets) != 2:
        raise TenantSpecError(
            f"{key_path(*where)}: give both access_key_id_env/_file and "
            "secret_access_key_env/_file, or neither (the default credential chain)"
        )
    for key in raw:
        if key not in allowed and key not in used:
            raise TenantSpecError(f"{key_path(*where, str(key))}: unknown key")
    return secrets


def _texts(raw: Mapping[str, Any], keys: Iterable[str], where: tuple[str, ...]) -> dict[str, str]:
    """Those of ``keys`` present in ``raw``, each checked to be printable text."""
    out = {}
    for key in keys:
        if key in raw:
            value = raw[key]
            if not isinstance(value, str) or not value.strip() or not value.isprintable():
                raise TenantSpecError(f"{key_path(*where, key)}: must be printable text")
            out[key] = value
    return out


def _storage(raw: Any, where: tuple[str, ...]) -> dict[str, Any]:
    from service import config

    secrets = _aws_table(raw, where, STORAGE_KEYS)
    bucket = raw.get("bucket")
    if not isinstance(bucket, str) or not _BUCKET.match(bucket):
        raise TenantSpecError(f"{key_path(*where, 'bucket')}: required, an S3 bucket name")
    out: dict[str, Any] = {"bucket": bucket}
    if "endpoint_url" in raw:
        out["endpoint_url"] = _config(
            (*where, "endpoint_url"), config.check_url, raw["endpoint_url"]
        )
    out.update(_texts(raw, ("region", "kms_key_id"), where))
    if "region" in out:
        _check_region(out["region"], (*where, "region"))
    sse = raw.get("sse", "aws:kms" if "kms_key_id" in raw else "AES256")
    if sse not in ("AES256", "aws:kms"):
        raise TenantSpecError(f"{key_path(*where, 'sse')}: must be AES256 or aws:kms, got {sse!r}")
    out["sse"] = sse
    out["credentials"] = secrets
    return out


def _check_region(region: str, path: tuple[str, ...]) -> None:
    """The region as botocore will check it when a client is made: refused here, at apply,
    rather than as an error on every intake afterwards."""
    from botocore.exceptions import InvalidRegionError
    from botocore.utils import validate_region_name

    try:
        validate_region_name(region)
    except InvalidRegionError:
        raise TenantSpecError(
            f"{key_path(*path)}: not an AWS region name (like eu-west-1), got {region!r}"
        ) from None


def _data_keys(raw: Any, where: tuple[str, ...]) -> dict[str, Any]:
    from service import config

    secrets = _aws_table(raw, where, DATA_KEYS_KEYS)
    out: dict[str, Any] = _texts(raw, ("kms_key_id", "region"), where)
    if "region" in out:
        _check_region(out["region"], (*where, "region"))
    if "kms_key_id" not in out:
        raise TenantSpecError(
            f"{key_path(*where, 'kms_key_id')}: required, the KMS key (id, ARN or alias) that "
            "wraps this tenant's recording data keys"
        )
    if "endpoint_url" in raw:
        out["endpoint_url"] = _config(
            (*where, "endpoint_url"), config.check_url, raw["endpoint_url"]
        )
    out["credentials"] = secrets
    return out
