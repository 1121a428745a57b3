"""What every ``callvault`` command shares: its settings, one database connection acting for a
tenant, the actor it audits as, and how text from the database is printed. Errors are not
handled here: :func:`service.cli.main` turns any of them into the one-line, non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from service.config import Settings, load_settings, with_generated_secrets
from service.errors import CallvaultError


def settings_for(*, database: bool, secrets: bool = True) -> Settings:
    """Settings with the secrets (generated ones in embedded mode) and, if asked, the database
    resolved. Commands that never touch personal data don't ask for secrets."""
    settings = load_settings()
    if secrets:
        settings = with_generated_secrets(settings)
    if database and not settings.database_url:
        from service.db.server import database_url

        settings = replace(settings, database_url=database_url(settings))
    return settings


async def _with_connection(
    settings: Settings, work: Callable[[Any], Coroutine[Any, Any, int]], *, tenant: str
) -> int:
    """``work`` on one connection acting for ``tenant`` (``--tenant``; ``'*'`` for the few
    commands that work across tenants: migrate, jobs, secrets rotate). Work for one tenant runs
    as a role row-level security binds: ``callvault.tenant`` alone confines nothing for a
    superuser (the embedded database's URL), so that takes on the service's role."""
    from service.db import roles, tenancy
    from service.db.pool import connect

    assert settings.database_url
    conn = await connect(settings.database_url)
    try:
        if tenant != tenancy.ALL:
            await roles.bind_to_rls(conn, allow_bypass=settings.allow_rls_bypass)
        await tenancy.set_tenant(conn, tenant)
        return await work(conn)
    finally:
        await conn.close()


def on_connection(
    work: Callable[[Any], Coroutine[Any, Any, int]],
    *,
    tenant: str,
    settings: Settings | None = None,
) -> int:
    """A command's ``work`` run on one connection acting for ``tenant``; its exit code.
    ``settings`` default to the database's without secrets (commands that never touch
    personal data)."""
    if settings is None:
        settings = settings_for(database=True, secrets=False)
    return asyncio.run(_with_connection(settings, work, tenant=tenant))


def actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def phone_vault(settings: Settings) -> Any:
    from service.personal.numbers import PhoneVault

    assert settings.secret_key
    return PhoneVault(settings.secret_key, settings.previous_secret_key)


def object_stores(settings: Settings, reader: Any = None) -> Any:
    """Every tenant's object store (:class:`~service.storage.registry.StoreRegistry`)."""
    from service.storage.registry import StoreRegistry

    return StoreRegistry.from_settings(settings, reader=reader)


def shown(text: str) -> str:
    """Text from the database as it may be printed to a terminal: control characters, ANSI
    escapes, invisible and direction-changing characters written as Python escapes (``\\x1b``,
    ``\\n``, ``\\u202e``), backslashes doubled so an escape cannot be faked."""
    return "".join(
        "\\\\" if ch == "\\" else ch if ch.isprintable() else repr(ch)[1:-1] for ch in text
    )


def uuid_arg(raw: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise CallvaultError(f"{name}: not an id: {raw!r}") from None


def tenant_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tenant",
        default="default",
        help="the tenant this acts for (default: default)",
    )
