"""The asyncpg pools, the codecs every connection gets (jsonb as Python objects), and
:func:`reach`: a connection for work that must answer quickly or not at all.

A webhook must answer Twilio within seconds whatever the database does: refused, restarting,
out of connections, or hung (packets dropped, a stuck failover). :func:`reach` bounds the wait
for a connection and the whole unit of work, and turns every way the database can be out of
reach into one :class:`~service.errors.DatabaseUnavailable` the caller can answer. Opening a
pool or a connection that fails raises the same error naming the URL (without its password),
so ``callvault serve`` and every command say which database failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from service.db import tenancy
from service.db.redact import url_without_password
from service.errors import DatabaseUnavailable

# How long opening one connection may take (asyncpg's default is a minute).
CONNECT_TIMEOUT_S = 10.0

# What "the database cannot be reached" looks like from here: a refused or reset socket, a
# timeout, a connection lost mid-statement (class 08), a server starting up or shutting down,
# a cancelled statement (class 57), out of connections or memory (class 53).
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)

# What asyncpg raises when it cannot connect: socket errors and timeouts (OSError), the server's
# refusal (wrong password, no such database, starting up), a malformed URL (ValueError).
_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError)


def _named(url: str) -> str:
    return f"database {url_without_password(url)}"


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def json_loads(text: str) -> Any:
    """``json.loads`` without its per-call Python layers (two regex matches and two calls): the
    C scanner json.loads ends in, called directly. PostgreSQL writes jsonb with no whitespace
    around the value; anything else (never seen) goes through json.loads itself, so the result,
    or the error, is always json.loads's."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


class JsonText(str):
    """A value already written as JSON: sent to a jsonb parameter as it is, not encoded again
    (as a plain ``str`` would be, into a JSON string). For what every webhook sends unchanged
    (a policy shared by every call of a number), written once instead of once a call."""

    __slots__ = ()


def json_dumps(value: Any) -> str:
    """The jsonb encoder: ``json.dumps``, except for :class:`JsonText`, which already is JSON
    (PostgreSQL parses it as it would the encoded value)."""
    return value if type(value) is JsonText else json.dumps(value)


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec("jsonb", encoder=json_dumps, decoder=json_loads, schema="pg_catalog")


async def _reset(conn: asyncpg.Connection[Any]) -> None:
    """Cheaper than asyncpg's default reset (a round trip on every release): callvault leaves no
    session state behind (listeners are removed, advisory locks released where taken), so only
    an abandoned transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    bind: Callable[[asyncpg.Connection[Any]], Awaitable[None]] | None = None,
    application_name: str = "callvault",
) -> asyncpg.Pool[Any]:
    """``application_name``: what its sessions are called in ``pg_stat_activity``.
    ``bind``: run on every new connection after the codecs (the CLI's
    :func:`~service.db.roles.bind_to_rls`: a pool on a superuser URL acts as the service's role,
    so row-level security confines each tenant's work as it does serve's)."""

    async def init(conn: asyncpg.Connection[Any]) -> None:
        await _init_connection(conn)
        if bind is not None:
            await bind(conn)

    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=init,
            reset=_reset,
            setup=tenancy.apply,  # the tenant of the task that acquires (row-level security)
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": application_name},
        )
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable.of(_named(url), exc) from exc
    assert pool is not None
    return pool


@asynccontextmanager
async def reach(
    pool: asyncpg.Pool[Any], *, acquire_timeout_s: float, work_timeout_s: float
) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
    """A pooled connection within ``acquire_timeout_s`` (opening one if needed), and the work
    done with it within ``work_timeout_s``; otherwise :class:`DatabaseUnavailable`.

    The body must do only database work: every error of :data:`UNREACHABLE` it raises is
    taken to mean the database is out of reach. A connection whose statement ran out of time is
    closed rather than handed back: asyncpg would wait for the server to acknowledge the
    cancellation, and a hung server never does."""
    try:
        conn = await pool.acquire(timeout=acquire_timeout_s)
    except UNREACHABLE as exc:
        raise _unavailable("no database connection", exc) from exc
    try:
        async with asyncio.timeout(work_timeout_s):
            yield conn
    except UNREACHABLE as exc:
        conn.terminate()
        raise _unavailable("database work did not finish", exc) from exc
    finally:
        # on failure asyncpg closes the connection; the pool opens a fresh one when needed
        with contextlib.suppress(*UNREACHABLE):
            await pool.release(conn, timeout=acquire_timeout_s)


def _unavailable(what: str, exc: BaseException) -> DatabaseUnavailable:
    # not logged here: probes and callbacks would repeat it every second of an outage; the
    # caller reports it once in its own words (the cause stays chained for those who look)
    return DatabaseUnavailable(f"{what} in time; try again shortly")


async def connect(url: str) -> asyncpg.Connection[Any]:
    try:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(
            url, timeout=CONNECT_TIMEOUT_S, server_settings={"application_name": "callvault"}
        )
    except _CONNECT_ERRORS as exc:
        raise DatabaseUnavailable.of(_named(url), exc) from exc
    await _init_connection(conn)
    return conn
