"""Which tenant a Twilio webhook belongs to, and the auth token its signature is checked with.

The configured ``CALLVAULT_TWILIO_ACCOUNT_SID`` is the ``default`` tenant's account (a deployment
without tenants behaves as before). Rows of ``tenant_accounts`` (platform ``twilio``) map an
AccountSid to its tenant; an account registered to several tenants is told apart by the contact
centre's number through ``tenant_numbers``. These are the operator's tables (no row-level
security). They are cached in the process and re-read after :data:`TTL_S`, so ``tenant apply``
takes effect on every replica within seconds (a NOTIFY would make it immediate: a later step).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from service.context import SETTINGS, database
from service.db import tenancy
from service.errors import DatabaseUnavailable, Forbidden

TTL_S = 5.0
_ACCOUNTS_SQL = (
    "SELECT account_id, tenant_id, secrets FROM tenant_accounts WHERE platform = 'twilio'"
)
_NUMBERS_SQL = "SELECT number, tenant_id FROM tenant_numbers"


@dataclass(frozen=True)
class Snapshot:
    # AccountSid -> {tenant id: secret references}
    accounts: dict[str, dict[str, dict[str, str]]]
    numbers: dict[str, str]


class AccountBook:
    """The cached account and number tables of one application."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.read_at = 0.0
        self._lock = asyncio.Lock()

    async def current(self, app: web.Application) -> Snapshot | None:
        if self.snapshot is not None and time.monotonic() - self.read_at < TTL_S:
            return self.snapshot
        async with self._lock:
            if self.snapshot is not None and time.monotonic() - self.read_at < TTL_S:
                return self.snapshot
            try:
                with tenancy.as_tenant(tenancy.ALL):  # operator's tables: no RLS either way
                    async with database(app) as conn:
                        accounts: dict[str, dict[str, dict[str, str]]] = {}
                        for r in await conn.fetch(_ACCOUNTS_SQL):
                            accounts.setdefault(r["account_id"], {})[r["tenant_id"]] = dict(
                                r["secrets"]
                            )
                        numbers = {
                            r["number"]: r["tenant_id"] for r in await conn.fetch(_NUMBERS_SQL)
                        }
            except DatabaseUnavailable:
                # The last copy (or none) serves while the database is away; with a copy, the
                # next try waits a TTL, so an outage does not add a timeout to every webhook.
                if self.snapshot is not None:
                    self.read_at = time.monotonic()
                return self.snapshot
            self.snapshot = Snapshot(accounts, numbers)
            self.read_at = time.monotonic()
            return self.snapshot


TWILIO_ACCOUNTS = web.AppKey("twilio_accounts", AccountBook)


@dataclass(frozen=True)
class Account:
    tenant: str
    auth_token: str


def _token(refs: dict[str, str]) -> str:
    """The auth token a reference names, read now (so a rotated token is used at once)."""
    if name := refs.get("auth_token_env"):
        return os.environ.get(name, "")
    if path := refs.get("auth_token_file"):
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return ""
    return ""


async def resolve(app: web.Application, account_sid: str, centre: str | None) -> Account:
    """The tenant and token for this AccountSid and contact-centre number, or :class:`Forbidden`
    (``unknown_account``/``unknown_number``); :class:`DatabaseUnavailable` when only the
    database could tell."""
    settings = app[SETTINGS]
    configured = bool(settings.twilio_account_sid) and account_sid == settings.twilio_account_sid
    snapshot = await app[TWILIO_ACCOUNTS].current(app)
    if snapshot is None:
        if configured:
            return Account(tenancy.DEFAULT, settings.twilio_auth_token or "")
        raise DatabaseUnavailable("the tenant accounts could not be read")
    candidates: dict[str, dict[str, str] | None] = dict(snapshot.accounts.get(account_sid, {}))
    if configured:
        candidates.setdefault(tenancy.DEFAULT, None)
    if not candidates:
        raise Forbidden("webhook is for an unknown Twilio account", code="unknown_account")
    if len(candidates) == 1:
        tenant = next(iter(candidates))
    else:
        owner = snapshot.numbers.get(centre or "")
        if owner in candidates:
            tenant = owner
        elif tenancy.DEFAULT in candidates and configured:
            tenant = tenancy.DEFAULT
        else:
            raise Forbidden("webhook is for an unknown number", code="unknown_number")
    refs = candidates[tenant]
    if refs is None:
        token = settings.twilio_auth_token or ""
    else:
        token = await asyncio.to_thread(_token, refs)
    return Account(tenant, token)
