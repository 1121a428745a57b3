"""``callvault serve`` and ``callvault migrate``: the service and its database schema (the
process roles, ``serve --role`` and ``callvault worker``, in :mod:`service.cli.worker`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import replace
from typing import Any

from service.cli.common import on_connection, settings_for
from service.cli.worker import add_parsers as add_role_parsers
from service.cli.worker import lower_priority, with_role
from service.config import load_settings


def cmd_serve(args: argparse.Namespace) -> int:
    from service.app import create_app
    from service.demo.laptop import with_standin
    from service.observability import logs
    from service.web import listener

    settings = with_role(load_settings(), args)
    logs.setup(settings.log_level)
    resolved = with_role(settings_for(database=True), args)
    embedded = not settings.database_url
    if embedded:
        # migrations as the embedded superuser; the service as a role row-level security binds
        assert resolved.database_url
        resolved = replace(
            resolved, database_url=asyncio.run(_embedded_service_url(resolved.database_url))
        )
    settings = with_standin(settings, resolved)  # demo mode: service/demo/laptop.py
    # (after the embedded database, if any, has started: it serves web replicas too)
    lower_priority(settings)
    return listener.run(
        create_app(settings, apply_migrations=not embedded),
        host=settings.host,
        port=settings.port,
        header_timeout_s=settings.header_timeout_s,
        max_connections=settings.max_connections,
        access_log_class=logs.AccessLogger,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        on_listening=lambda limit: logging.getLogger("service").info(
            "callvault listening",
            extra={
                "url": f"http://{settings.host}:{settings.port}",
                "public_url": settings.public_url,
                "max_connections": limit,
                "role": settings.role.value,
            },
        ),
    )


async def _embedded_service_url(superuser_url: str) -> str:
    from service.db import roles
    from service.db.migrations import migrate
    from service.db.pool import connect

    conn = await connect(superuser_url)
    try:
        for m in await migrate(conn):
            logging.getLogger("service").info("applied migration %04d_%s", m.version, m.name)
        await roles.ensure_service_role(conn)
    finally:
        await conn.close()
    return roles.url_for_role(superuser_url)


def cmd_migrate(args: argparse.Namespace) -> int:
    from service.db import roles
    from service.db.migrations import migrate

    embedded = not load_settings().database_url

    async def work(conn: Any) -> int:
        applied = await migrate(conn)
        if embedded:  # the role tenant-scoped commands (and serve) act as, as serve makes it
            await roles.ensure_service_role(conn)
        for m in applied:
            print(f"applied {m.version:04d}_{m.name}")
        if not applied:
            print("database is up to date")
        return 0

    return on_connection(work, tenant="*")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (migrates and builds prompts first)")
    p.set_defaults(func=cmd_serve)
    add_role_parsers(sub, p, cmd_serve)  # serve --role, and callvault worker

    p = sub.add_parser("migrate", help="apply pending database migrations")
    p.set_defaults(func=cmd_migrate)
