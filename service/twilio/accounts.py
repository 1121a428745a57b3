"""Which tenant a Twilio webhook belongs to, and the auth token its signature is checked with.

The configured ``CALLVAULT_TWILIO_ACCOUNT_SID`` is the ``default`` tenant's account (a deployment
without tenants behaves as before). Rows of ``tenant_accounts`` (platform ``twilio``) map an
AccountSid to its tenant; an account registered to several tenants is told apart by the contact
centre's number through ``tenant_numbers``. Both are read from the replica's tenant directory
(:mod:`service.tenants.policies`), which ``tenant apply`` refreshes on every replica through
NOTIFY. An account or number the directory does not know is refused only when the directory was
read moments ago; otherwise it is read again, and when the database cannot tell, the webhook
answers 503 rather than refusing an account that may well be known.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from service.context import SETTINGS
from service.db import tenancy
from service.errors import DatabaseUnavailable, Forbidden
from service.tenants.policies import TENANT_DIRECTORY, Snapshot

PLATFORM = "twilio"


@dataclass(frozen=True)
class Account:
    tenant: str
    auth_token: str


def _token(refs: Mapping[str, str]) -> str:
    """The auth token a reference names, read now (so a rotated token is used at once)."""
    if name := refs.get("auth_token_env"):
        return os.environ.get(name, "")
    if path := refs.get("auth_token_file"):
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return ""
    return ""


def _choose(
    snapshot: Snapshot, account_sid: str, centre: str | None, configured: bool
) -> tuple[str, Mapping[str, str] | None] | str:
    """(tenant, its secret references; None for the configured account), or the code of the
    refusal: ``unknown_account`` or ``unknown_number``."""
    candidates: dict[str, Mapping[str, str] | None] = dict(
        snapshot.accounts.get(PLATFORM, {}).get(account_sid, {})
    )
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
    snapshot = directory.snapshot
    choice = _choose(snapshot, account_sid, centre, configured) if snapshot is not None else None
    if not isinstance(choice, tuple):
        try:
            snapshot = await directory.for_miss()
        except DatabaseUnavailable:
            if configured and snapshot is None:  # never read: the configured account is default's
                return Account(tenancy.DEFAULT, settings.twilio_auth_token or "")
            raise
        choice = _choose(snapshot, account_sid, centre, configured)
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
