"""Which tenant a Twilio webhook belongs to, and the auth token its signature is checked with.

The configured ``CALLVAULT_TWILIO_ACCOUNT_SID`` is the ``default`` tenant's account (a deployment
without tenants behaves as before). Rows of ``tenant_accounts`` (platform ``twilio``) map an
AccountSid to its tenant; an account registered to several tenants is told apart by the contact
centre's number through ``tenant_numbers``. These are the operator's tables (no row-level
security). They are cached in the process and re-read after `tables.TTL_S`, so
``tenant apply`` takes effect on every replica within seconds (a NOTIFY would make it
immediate: a later step).

The same tables give the media API its credentials (:class:`TwilioMediaSources`): a call's
recording is fetched, listed and deleted with the account the call came through (stored on the
call as ``platform_account``), the configured account serving the tenant ``default``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from service.config import Settings
from service.context import SETTINGS
from service.db import Conn, tenancy
from service.errors import DatabaseUnavailable, Forbidden
from service.platforms.tables import CachedTables, read_secret
from service.platforms.twilio.media import Credentials, MediaError, TwilioMedia

_ACCOUNTS_SQL = (
    "SELECT account_id, tenant_id, settings, secrets FROM tenant_accounts WHERE platform = 'twilio'"
)
_NUMBERS_SQL = "SELECT number, tenant_id FROM tenant_numbers"


@dataclass(frozen=True)
class Snapshot:
    # AccountSid -> {tenant id: secret references}
    accounts: dict[str, dict[str, dict[str, str]]]
    numbers: dict[str, str]
    # AccountSid -> {tenant id: plain settings (api_key_sid)}
    settings: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


async def read_snapshot(conn: Conn) -> Snapshot:
    """The account and number tables as they are now (the caller says the tenant: ``ALL``)."""
    accounts: dict[str, dict[str, dict[str, str]]] = {}
    plain: dict[str, dict[str, dict[str, Any]]] = {}
    for r in await conn.fetch(_ACCOUNTS_SQL):
        accounts.setdefault(r["account_id"], {})[r["tenant_id"]] = dict(r["secrets"])
        plain.setdefault(r["account_id"], {})[r["tenant_id"]] = dict(r["settings"])
    numbers = {r["number"]: r["tenant_id"] for r in await conn.fetch(_NUMBERS_SQL)}
    return Snapshot(accounts, numbers, plain)


class AccountBook(CachedTables[Snapshot]):
    """The cached account and number tables of one application."""

    def __init__(self) -> None:
        super().__init__(read_snapshot)


TWILIO_ACCOUNTS = web.AppKey("twilio_accounts", AccountBook)


@dataclass(frozen=True)
class Account:
    tenant: str
    auth_token: str


def _token(refs: dict[str, str], which: str = "auth_token") -> str:
    """The secret a reference names (``auth_token_env`` or ``auth_token_file``, ...)."""
    return read_secret(refs, which)


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


def credentials(
    settings: Settings, snapshot: Snapshot | None, tenant: str, account_sid: str | None
) -> Credentials:
    """The REST credentials of ``account_sid`` as registered to ``tenant`` (blocking: may read a
    secret file), or :class:`MediaError` saying which reference to fix (never a secret)."""
    configured = settings.twilio_account_sid
    if (
        tenant == tenancy.DEFAULT
        and configured
        and settings.twilio_auth_token
        and account_sid in (None, configured)
        and (snapshot is None or tenancy.DEFAULT not in snapshot.accounts.get(configured, {}))
    ):
        return Credentials(configured, configured, settings.twilio_auth_token)
    if snapshot is None:
        raise MediaError("the tenant accounts could not be read (the database does not answer)")
    if account_sid is None:
        # a call from before calls recorded their account: the tenant's only Twilio account
        owned = sorted(sid for sid, tenants in snapshot.accounts.items() if tenant in tenants)
        if len(owned) != 1:
            raise MediaError(
                f"the call records no Twilio account and tenant {tenant!r} has {len(owned)}: "
                "set calls.platform_account for it"
            )
        account_sid = owned[0]
    refs = snapshot.accounts.get(account_sid, {}).get(tenant)
    if refs is None:
        raise MediaError(
            f"Twilio account {account_sid} is not registered to tenant {tenant!r} "
            "(its [twilio] account_sid in the tenant file)"
        )
    key_sid = str(snapshot.settings.get(account_sid, {}).get(tenant, {}).get("api_key_sid") or "")
    if key_sid and (key_secret := _token(refs, "api_key_secret")):
        return Credentials(account_sid, key_sid, key_secret)
    if token := _token(refs):
        return Credentials(account_sid, account_sid, token)
    raise MediaError(
        f"no credentials for Twilio account {account_sid} of tenant {tenant!r}: the "
        "auth_token_env/auth_token_file (or api_key_secret_*) it names is unset or unreadable"
    )


SnapshotSource = Callable[[], Awaitable[Snapshot | None]]


class TwilioMediaSources:
    """Twilio's :class:`~service.platforms.port.MediaSources`: each call's media API with the
    credentials of the account the call came through, looked up when asked (a rotated or newly
    applied secret is used at once)."""

    def __init__(
        self, settings: Settings, session: aiohttp.ClientSession, snapshot: SnapshotSource
    ) -> None:
        self.settings = settings
        self.session = session
        self._snapshot = snapshot

    @classmethod
    def for_app(cls, app: web.Application, session: aiohttp.ClientSession) -> TwilioMediaSources:
        """Read through the application's cached book (refreshed every `tables.TTL_S`)."""

        async def snapshot() -> Snapshot | None:
            return await app[TWILIO_ACCOUNTS].current(app)

        return cls(app[SETTINGS], session, snapshot)

    @classmethod
    def for_pool(
        cls, settings: Settings, session: aiohttp.ClientSession, pool: Any
    ) -> TwilioMediaSources:
        """Read the tables afresh on each lookup (the CLI and tests: no application)."""

        async def snapshot() -> Snapshot | None:
            with tenancy.as_tenant(tenancy.ALL):
                async with pool.acquire() as conn:
                    return await read_snapshot(conn)

        return cls(settings, session, snapshot)

    async def source(self, tenant: str, account: str | None) -> TwilioMedia:
        snapshot = await self._snapshot()
        found = await asyncio.to_thread(credentials, self.settings, snapshot, tenant, account)
        return TwilioMedia(self.settings, self.session, found)
