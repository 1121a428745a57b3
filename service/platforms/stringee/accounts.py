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

Tables are cached per process for `tables.TTL_S`, like Twilio's (``tenant apply`` takes
effect within seconds), and read as tenant ``*`` (operator tables, no row-level security).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from service.config import Settings
from service.context import SETTINGS
from service.db import Conn, queries, tenancy
from service.errors import DatabaseUnavailable, Forbidden
from service.personal_data import normalise_phone
from service.platforms.stringee.rest_auth import ApiKey
from service.platforms.tables import CachedTables, read_secret

Q = queries.load("service.platforms.stringee")


@dataclass(frozen=True)
class Project:
    tenant: str
    project_id: str | None  # None: the environment's project (tenant default)
    secret_refs: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    # project id -> tenant id -> its row
    projects: dict[str, dict[str, Project]]
    numbers: dict[str, str]  # E.164 number -> tenant
    # (tenant, number or None) -> continue_scco (number's, else its queue's, else the tenant's)
    scco: dict[tuple[str, str | None], list[dict[str, Any]]]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def read_snapshot(conn: Conn) -> Snapshot:
    projects: dict[str, dict[str, Project]] = {}
    for r in await conn.fetch(Q["projects"]):
        projects.setdefault(r["account_id"], {})[r["tenant_id"]] = Project(
            r["tenant_id"], r["account_id"], dict(r["secrets"]), dict(r["settings"])
        )
    numbers = {r["number"]: r["tenant_id"] for r in await conn.fetch(Q["numbers"])}
    scco: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in await conn.fetch(Q["continue_scco"]):
        if r["continue_scco"] is not None:
            scco[(r["tenant_id"], r["number"])] = list(_json(r["continue_scco"]))
    return Snapshot(projects, numbers, scco)


class ProjectBook(CachedTables[Snapshot]):
    """The cached project, number and continue tables of one application."""

    def __init__(self) -> None:
        super().__init__(read_snapshot)


STRINGEE_PROJECTS = web.AppKey("stringee_projects", ProjectBook)


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


async def _book(app: web.Application) -> Snapshot | None:
    return await app[STRINGEE_PROJECTS].current(app)


async def projects_for_number(app: web.Application, to: str | None) -> list[Project]:
    """The projects whose secrets may have signed an answer_url to ``to`` (all of one tenant)."""
    settings = app[SETTINGS]
    env = _env_project(settings)
    snapshot = await _book(app)
    if snapshot is None:
        if env is not None:
            return [env]
        raise DatabaseUnavailable("the tenant accounts could not be read")
    owner = snapshot.numbers.get(e164(to) or "")
    tenant = owner or tenancy.DEFAULT
    found = [p for ps in snapshot.projects.values() for t, p in ps.items() if t == tenant]
    if tenant == tenancy.DEFAULT and env is not None:
        found.append(env)
    if not found:
        raise _unknown_number() if owner is None else _unknown_project()
    return found


def _unknown_project() -> Forbidden:
    return Forbidden("request is for an unknown Stringee project", code="unknown_account")


async def project(
    app: web.Application, project_id: str | None, tenant: str | None, number: str | None
) -> Project:
    """The project a POST names (event_url: ``project_id``; eventUrls: our ``?project=``)."""
    settings = app[SETTINGS]
    env = _env_project(settings)
    snapshot = await _book(app)
    if snapshot is None:
        if env is not None and project_id is None:
            return env
        raise DatabaseUnavailable("the tenant accounts could not be read")
    rows = snapshot.projects.get(project_id or "", {})
    if not rows:
        if env is not None and tenant in (None, tenancy.DEFAULT):
            return env
        raise _unknown_project()
    if tenant is not None:
        if tenant not in rows:
            raise _unknown_project()
        return rows[tenant]
    if len(rows) == 1:
        return next(iter(rows.values()))
    owner = snapshot.numbers.get(e164(number) or "")
    if owner in rows:
        return rows[owner]
    raise _unknown_number()


async def signing_secrets(project: Project, settings: Settings) -> list[str]:
    if project.project_id is None:
        return [settings.stringee_signing_secret or ""]
    return [await asyncio.to_thread(read_secret, project.secret_refs, "signing_secret")]


async def continue_scco(
    app: web.Application, tenant: str, number: str | None
) -> list[dict[str, Any]]:
    """What the call does after the consent step: the number's, its queue's or the tenant's
    ``continue_scco``, else the deployment's (``CALLVAULT_STRINGEE_CONTINUE_SCCO``)."""
    snapshot = await _book(app)
    if snapshot is not None:
        for key in ((tenant, e164(number)), (tenant, None)):
            if key in snapshot.scco:
                return snapshot.scco[key]
    return [dict(a) for a in app[SETTINGS].stringee_continue_scco]


class NoApiKey(Exception):
    """No usable API key for a project (the message names what to set, never a secret)."""


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
