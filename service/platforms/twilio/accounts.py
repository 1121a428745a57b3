"""Which tenant a Twilio webhook belongs to, the auth token its signature is checked with, and the
credentials its recording is fetched with.

The configured ``CALLVAULT_TWILIO_ACCOUNT_SID`` is the ``default`` tenant's account (a deployment
without tenants behaves as before). Rows of ``tenant_accounts`` (platform ``twilio``) map an
AccountSid to its tenant; an account registered to several tenants is told apart by the contact
centre's number through ``tenant_numbers``. Both are read from the replica's tenant directory
(:mod:`service.tenants.policies`), which ``tenant apply`` refreshes on every replica through
NOTIFY. An account or number the directory does not know is refused only when the directory was
read moments ago; otherwise it is read again, and when the database cannot tell, the webhook
answers 503 rather than refusing an account that may well be known.

The same tables give the media API its credentials (:class:`TwilioMediaSources`): a call's
recording is fetched, listed and deleted with the account the call came through (stored on the
call as ``platform_account``), the configured account serving the tenant ``default``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from service.config import Settings
from service.db import tenancy
from service.errors import DatabaseUnavailable, Forbidden
from service.platforms.tables import read_secret
from service.platforms.twilio.media import Credentials, MediaError, TwilioMedia
from service.tenants import policies
from service.tenants.policies import TENANT_DIRECTORY
from service.web.context import SETTINGS

PLATFORM = "twilio"


@dataclass(frozen=True)
class Snapshot:
    """Twilio's part of the tenant directory."""

    # AccountSid -> {tenant id: secret references}
    accounts: Mapping[str, Mapping[str, Mapping[str, str]]]
    numbers: Mapping[str, str]
    # AccountSid -> {tenant id: plain settings (api_key_sid)}
    settings: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, directory: policies.Snapshot) -> Snapshot:
        # every webhook asks, and the directory changes only when a tenant is applied: the
        # last one's view is kept (directories are immutable, so identity says it is current)
        global _LAST_VIEW
        last = _LAST_VIEW
        if last is not None and last[0] is directory:
            return last[1]
        view = cls(
            directory.accounts.get(PLATFORM, {}),
            directory.numbers,
            directory.account_settings.get(PLATFORM, {}),
        )
        _LAST_VIEW = (directory, view)
        return view


_LAST_VIEW: tuple[policies.Snapshot, Snapshot] | None = None


@dataclass(frozen=True)
class Account:
    tenant: str
    auth_token: str


def _token(refs: Mapping[str, str], which: str = "auth_token") -> str:
    """The secret a reference names (``auth_token_env`` or ``auth_token_file``, ...)."""
    return read_secret(refs, which)


def _choose(
    snapshot: Snapshot, account_sid: str, centre: str | None, configured: bool
) -> tuple[str, Mapping[str, str] | None] | str:
    """(tenant, its secret references; None for the configured account), or the code of the
    refusal: ``unknown_account`` or ``unknown_number``."""
    candidates: dict[str, Mapping[str, str] | None] = dict(snapshot.accounts.get(account_sid, {}))
    if configured:
        candidates.setdefault(tenancy.DEFAULT, None)
    if not candidates:
        return "unknown_account"
    if len(candidates) == 1:
        tenant = next(iter(candidates))
    else:
        owner = snapshot.numbers.get(centre or "")
        if owner in candidates:
            tenant = owner
        elif tenancy.DEFAULT in candidates and configured:
            tenant = tenancy.DEFAULT
        else:
            return "unknown_number"
    return tenant, candidates[tenant]


async def resolve(app: web.Application, account_sid: str, centre: str | None) -> Account:
    """The tenant and token for this AccountSid and contact-centre number, or :class:`Forbidden`
    (``unknown_account``/``unknown_number``); :class:`DatabaseUnavailable` when only the
    database could tell."""
    settings = app[SETTINGS]
    configured = bool(settings.twilio_account_sid) and account_sid == settings.twilio_account_sid
    directory = app[TENANT_DIRECTORY]
    read = directory.snapshot
    choice = (
        _choose(Snapshot.of(read), account_sid, centre, configured) if read is not None else None
    )
    if not isinstance(choice, tuple):
        try:
            read = await directory.for_miss()
        except DatabaseUnavailable:
            if configured and read is None:  # never read: the configured account is default's
                return Account(tenancy.DEFAULT, settings.twilio_auth_token or "")
            raise
        choice = _choose(Snapshot.of(read), account_sid, centre, configured)
    if isinstance(choice, str):
        what = "Twilio account" if choice == "unknown_account" else "number"
        raise Forbidden(f"webhook is for an unknown {what}", code=choice)
    tenant, refs = choice
    if refs is None:
        token = settings.twilio_auth_token or ""
    elif "auth_token_file" in refs:
        token = await asyncio.to_thread(_token, refs)  # a file read stays off the event loop
    else:
        token = _token(refs)
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
        """Read through the replica's tenant directory (kept fresh by NOTIFY)."""
        return cls(app[SETTINGS], session, policies.directory_view(app, Snapshot.of))

    @classmethod
    def for_pool(
        cls, settings: Settings, session: aiohttp.ClientSession, pool: Any
    ) -> TwilioMediaSources:
        """Read the tables afresh on each lookup (the CLI and tests: no application)."""
        return cls(settings, session, policies.pool_view(pool, settings.defaults, Snapshot.of))

    async def source(self, tenant: str, account: str | None) -> TwilioMedia:
        snapshot = await self._snapshot()
        found = await asyncio.to_thread(credentials, self.settings, snapshot, tenant, account)
        return TwilioMedia(self.settings, self.session, found)
