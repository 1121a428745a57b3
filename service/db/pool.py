"""The asyncpg pool and the codecs every connection gets (jsonb as Python objects).

A database that cannot be reached raises :class:`DatabaseUnavailable` naming the URL (without
its password), so ``callvault serve`` and every command say which database failed."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from service.errors import CallvaultError
from service.redact import url_without_password

# What asyncpg raises when it cannot connect: socket errors and timeouts (OSError), the server's
# refusal (wrong password, no such database, starting up), a malformed URL (ValueError).
_CONNECT_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError)


class DatabaseUnavailable(CallvaultError):
    """PostgreSQL cannot be reached or refuses the connection."""

    status = 503
    code = "database_unavailable"

    @classmethod
    def of(cls, what: str, exc: BaseException) -> DatabaseUnavailable:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        return cls(f"{what}: {reason or type(exc).__name__}")


def _named(url: str) -> str:
    return f"database {url_without_password(url)}"


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset(conn: asyncpg.Connection[Any]) -> None:
    """Cheaper than asyncpg's default reset (a round trip on every release): callvault leaves no
    session state behind (listeners are removed, advisory locks released where taken), so only
    an abandoned transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool[Any]:
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_reset,
            server_settings={"application_name": "callvault"},
        )
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable.of(_named(url), exc) from exc
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection[Any]:
    try:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            url, server_settings={"application_name": "callvault"}
        )
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable.of(_named(url), exc) from exc
    await _init_connection(conn)
    return conn
