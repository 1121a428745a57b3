"""Which tenant a Stringee request belongs to, the secret its signature is checked with, the
API key its recordings are fetched with, and the tenant's ``continue_scco``.

A Stringee project is a ``tenant_accounts`` row (platform ``stringee``, account id = the project
id; secrets ``signing_secret_env``/``_file`` and ``api_key_secret_env``/``_file``, setting
``api_key_sid``). The tenant ``default`` has the project of the environment
(``CALLVAULT_STRINGEE_SIGNING_SECRET``, ``_API_KEY_SID``, ``_API_KEY_SECRET``), whose id
callvault is not told: its calls keep ``platform_account`` NULL, as Twilio's configured account.

How a request finds its tenant (DESIGN "Tenants"):

- the answer_url carries no project id: the ``to`` number decides (``tenant_numbers``); a number
  of no tenant belongs to the tenant ``default`` when the environment has a project, else it is
  refused. The signature is then checked with each of that tenant's projects' secrets (the one
  that matches is the call's project).
- the event_url carries ``project_id``: the project's tenant (a project of several tenants: the
  called number decides), or the environment's project for an unknown id.
- the input and record eventUrls are built by callvault with ``?project=ID&tenant=T`` (the
  signature covers the body only, so these only pick which secret must have signed it).

Everything is read from the replica's tenant directory (:mod:`service.tenants.policies`, kept
fresh by NOTIFY), as Twilio's accounts are: a project or number found there is used as is; one
that is not is believed only from a copy read moments ago, else read again first, and when the
database cannot tell the request answers 503 rather than a refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from service.config import Settings
from service.db import tenancy
from service.errors import DatabaseUnavailable, Forbidden
from service.errors import NoApiKey as NoApiKey
from service.personal.numbers import normalise_phone
from service.platforms.stringee.rest_auth import ApiKey
from service.platforms.tables import read_secret
from service.tenants import policies
from service.tenants.policies import TENANT_DIRECTORY
from service.web.context import SETTINGS

PLATFORM = "stringee"


@dataclass(frozen=True)
class Project:
    tenant: str
    project_id: str | None  # None: the environment's project (tenant default)
    secret_refs: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Stringee's part of the tenant directory."""

    # project id -> tenant id -> its row
    projects: Mapping[str, Mapping[str, Project]]
    numbers: Mapping[str, str]  # E.164 number -> tenant
    tenants: Mapping[str, policies.TenantPolicies]

    @classmethod
    def of(cls, directory: policies.Snapshot) -> Snapshot:
        settings = directory.account_settings.get(PLATFORM, {})
        projects = {
            pid: {
                tenant: Project(tenant, pid, refs, settings.get(pid, {}).get(tenant, {}))
                for tenant, refs in rows.items()
            }
            for pid, rows in directory.accounts.get(PLATFORM, {}).items()
        }
        return cls(projects, directory.numbers, directory.tenants)

    def continue_scco(self, tenant: str, number: str | None) -> list[dict[str, Any]] | None:
        """The number's, else its queue's, else the tenant's ``continue_scco``; None if unset."""
        found = self.tenants.get(tenant)
        stored = found.stored("continue_scco", number) if found is not None else None
        return None if stored is None else [dict(a) for a in stored]


def e164(number: str | None) -> str | None:
    """Stringee writes numbers in international form without the ``+`` (``842473082686``);
    tables key on E.164. One that starts with 0 is national (read as Vietnam's); anything not
    a phone number (an app user's id) is kept as it is."""
    if not number:
        return None
    text = number.strip()
    digits = text[1:] if text.startswith("+") else text
    if not (digits.isascii() and digits.isdigit()):
        return text
    return normalise_phone(digits if digits.startswith("0") else "+" + digits)


def _env_project(settings: Settings) -> Project | None:
    return Project(tenancy.DEFAULT, None) if settings.stringee_signing_secret else None


def _unknown_number() -> Forbidden:
    return Forbidden("request is for a number of no tenant", code="unknown_number")


def _unknown_project() -> Forbidden:
    return Forbidden("request is for an unknown Stringee project", code="unknown_account")


C = TypeVar("C")


async def _look_up(
    app: web.Application, choose: Callable[[Snapshot], C | Forbidden], unread: C | None
) -> C:
    """What ``choose`` finds in the directory's copy. A refusal (``choose`` returns the
    :class:`Forbidden`) is believed only from a copy recent enough (``for_miss``), as Twilio's;
    when the tables were never read and cannot be now, ``unread`` (the environment's project)
    if there is one, else :class:`DatabaseUnavailable`."""
    directory = app[TENANT_DIRECTORY]
    read = directory.snapshot
    choice = choose(Snapshot.of(read)) if read is not None else None
    if choice is None or isinstance(choice, Forbidden):
        try:
            read = await directory.for_miss()
        except DatabaseUnavailable:
            if read is None and unread is not None:
                return unread
            raise
        choice = choose(Snapshot.of(read))
    if isinstance(choice, Forbidden):
        raise choice
    return choice


async def projects_for_number(app: web.Application, to: str | None) -> list[Project]:
    """The projects whose secrets may have signed an answer_url to ``to`` (all of one tenant)."""
    env = _env_project(app[SETTINGS])

    def choose(snapshot: Snapshot) -> list[Project] | Forbidden:
        owner = snapshot.numbers.get(e164(to) or "")
        tenant = owner or tenancy.DEFAULT
        found = [p for ps in snapshot.projects.values() for t, p in ps.items() if t == tenant]
        if tenant == tenancy.DEFAULT and env is not None:
            found.append(env)
        if not found:
            return _unknown_number() if owner is None else _unknown_project()
        return found

    return await _look_up(app, choose, [env] if env is not None else None)


async def project(
    app: web.Application, project_id: str | None, tenant: str | None, number: str | None
) -> Project:
    """The project a POST names (event_url: ``project_id``; eventUrls: our ``?project=``)."""
    env = _env_project(app[SETTINGS])

    def choose(snapshot: Snapshot) -> Project | Forbidden:
        rows = snapshot.projects.get(project_id or "", {})
        if not rows:
            if env is not None and tenant in (None, tenancy.DEFAULT):
                return env
            return _unknown_project()
        if tenant is not None:
            return rows[tenant] if tenant in rows else _unknown_project()
        if len(rows) == 1:
            return next(iter(rows.values()))
        owner = snapshot.numbers.get(e164(number) or "", "")
        return rows[owner] if owner in rows else _unknown_number()

    return await _look_up(app, choose, env if project_id is None else None)


async def signing_secrets(project: Project, settings: Settings) -> list[str]:
    if project.project_id is None:
        return [settings.stringee_signing_secret or ""]
    return [await asyncio.to_thread(read_secret, project.secret_refs, "signing_secret")]


async def continue_scco(
    app: web.Application, tenant: str, number: str | None
) -> list[dict[str, Any]]:
    """What the call does after the consent step: the number's, its queue's or the tenant's
    ``continue_scco``, else the deployment's (``CALLVAULT_STRINGEE_CONTINUE_SCCO``)."""
    read = await app[TENANT_DIRECTORY].latest()
    found = Snapshot.of(read).continue_scco(tenant, e164(number)) if read is not None else None
    return found if found is not None else [dict(a) for a in app[SETTINGS].stringee_continue_scco]


def api_key(
    settings: Settings, snapshot: Snapshot | None, tenant: str, account: str | None
) -> ApiKey:
    """The REST API key of ``account`` as registered to ``tenant`` (blocking: may read a file)."""
    if account is None:
        if tenant == tenancy.DEFAULT and settings.stringee_api_key_sid:
            try:
                return ApiKey(settings.stringee_api_key_sid, settings.stringee_api_key_secret or "")
            except ValueError as exc:
                raise NoApiKey(f"CALLVAULT_STRINGEE_API_KEY_SID/_SECRET: {exc}") from None
        if snapshot is None:
            raise NoApiKey("the tenant accounts could not be read (the database does not answer)")
        owned = sorted(pid for pid, rows in snapshot.projects.items() if tenant in rows)
        if len(owned) != 1:
            raise NoApiKey(
                f"the call records no Stringee project and tenant {tenant!r} has {len(owned)}"
            )
        account = owned[0]
    if snapshot is None:
        raise NoApiKey("the tenant accounts could not be read (the database does not answer)")
    row = snapshot.projects.get(account, {}).get(tenant)
    if row is None:
        raise NoApiKey(f"Stringee project {account} is not registered to tenant {tenant!r}")
    sid = str(row.settings.get("api_key_sid") or "")
    secret = read_secret(row.secret_refs, "api_key_secret")
    try:
        return ApiKey(sid, secret)
    except ValueError as exc:
        raise NoApiKey(
            f"Stringee project {account} of tenant {tenant!r}: {exc} (its api_key_sid and "
            "api_key_secret_env/_file in the tenant file)"
        ) from None
