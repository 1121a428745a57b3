"""Tenant files for the tenant tests, and a dump of every tenant table to compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

ACME = """
[tenants.acme]
name = "ACME Insurance"
consent_mode = "explicit"
language = "en-US"
retention = "180d"
retention_min = "30d"
retention_max = "365d"
time_zone = "Asia/Ho_Chi_Minh"
days_off = [2026-12-24]
[tenants.acme.deadlines]
acknowledge = "2d"
access = "15d"
[tenants.acme.twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token_env = "ACME_TWILIO_AUTH_TOKEN"
[tenants.acme.stringee]
project_id = "4827"
api_key_sid = "SKacme"
api_key_secret_env = "ACME_STRINGEE_KEY"
signing_secret_file = "/nonexistent/acme-stringee"
[tenants.acme.storage]
bucket = "acme-recordings"
[tenants.acme.queues.sales]
language = "en-US"
retention = "60d"
[tenants.acme.queues.support]
never_record = true
[tenants.acme.numbers."+842873009999"]
queue = "sales"
[tenants.acme.numbers."+842873009998"]
retention = "90d"

[tenants.beta]
name = "Beta Bank"
[tenants.beta.numbers."+842873008888"]
"""

TABLES = ("tenants", "tenant_queues", "tenant_numbers", "tenant_accounts", "tenant_storage")


async def dump(db: asyncpg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
    """Every row of every tenant table, timestamps included (a rewrite of a row shows)."""
    out = {}
    for table in TABLES:
        rows = await db.fetch(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
        out[table] = sorted((dict(r) for r in rows), key=repr)
    return out


def write(tmp: Path, text: str, name: str = "tenants.toml") -> str:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return str(path)
