"""Which tenant the database work of this task is for: the one API every code path uses.

Row-level security (migration 0011) shows and accepts only the rows whose ``tenant_id`` equals
the PostgreSQL setting ``callvault.tenant``; ``'*'`` (:data:`ALL`) is the system's own
cross-tenant work, and an unset setting sees nothing. The tenant of the running task lives in a
context variable: :func:`as_tenant` sets it for a block (and for the tasks started inside it),
and every connection the pool lends is given that tenant on acquire (:func:`apply`, the pool's
``setup``). A task that never said its tenant gets connections that see no rows at all: a
forgotten tenant fails closed, loudly, in tests.

The places that act as :data:`ALL` are few and named: the token lookup by hash (before the
tenant is known), job claiming and bookkeeping, the list of tenants the periodic passes walk,
readiness and metrics figures, migrations, and the CLI's cross-tenant commands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from service.db import Conn
from service.errors import NotOneTenant as NotOneTenant

ALL = "*"
DEFAULT = "default"
SETTING = "callvault.tenant"

# None: no tenant said; the connection's setting is then empty and every tenant-owned table
# looks empty.
_TENANT: ContextVar[str | None] = ContextVar("callvault_tenant", default=None)


# True while the work on a lent connection names its tenant in its own statement (the voice
# webhook's one round trip, migration 0021): the pool's setup then skips its round trip and the
# connection may still carry the previous borrower's tenant, so any other statement on it must
# come after :func:`ensure`.
_NAMED_IN_STATEMENT: ContextVar[bool] = ContextVar("callvault_tenant_in_statement", default=False)


def current() -> str | None:
    return _TENANT.get()


def require_one(what: str, tenant: str) -> None:
    """Refuse to run ``what``, one tenant's work, unless ``tenant`` is one tenant and the one
    this task acts as (the setting its connections get). For work whose statements name their
    tenant by the setting (``tenant_id = current_setting('callvault.tenant')``, a form an index
    can use): run as ``'*'`` they match no row, and the work would silently do nothing."""
    acting = _TENANT.get()
    if tenant in ("", ALL) or acting != tenant:
        raise NotOneTenant(
            f"{what} runs as one tenant at a time (tenancy.for_each_tenant), not as "
            f"{tenant!r} with the connection's tenant {acting!r}: as '*' or none it would "
            "match no row and silently do nothing"
        )


@contextmanager
def named_in_statement() -> Iterator[None]:
    """Connections lent inside this block are not given the tenant on acquire: the one
    statement run on them sets it itself (transaction-local), saving a round trip."""
    token = _NAMED_IN_STATEMENT.set(True)
    try:
        yield
    finally:
        _NAMED_IN_STATEMENT.reset(token)


async def ensure(conn: Conn) -> None:
    """Give the connection this task's tenant now if acquiring it skipped that (inside
    :func:`named_in_statement`); before any statement that does not set the tenant itself."""
    if _NAMED_IN_STATEMENT.get():
        await set_tenant(conn, _TENANT.get())


@contextmanager
def as_tenant(tenant: str) -> Iterator[None]:
    """Database work inside this block (and tasks created inside it) is ``tenant``'s."""
    token = _TENANT.set(tenant)
    try:
        yield
    finally:
        _TENANT.reset(token)


async def set_tenant(conn: Conn, tenant: str | None) -> None:
    """Give a plain connection (the CLI's) its tenant for the rest of its session."""
    await conn.execute("SELECT set_config($1, $2, false)", SETTING, tenant or "")


async def apply(conn: Conn) -> None:
    """The pool's ``setup``: every lent connection carries the tenant of the task that asked.
    Session-wide (not ``SET LOCAL``) because callers use autocommit statements as well as
    transactions; the next acquire overwrites it, so nothing leaks from one task to the next."""
    if _NAMED_IN_STATEMENT.get():
        return  # the work sets its tenant in its statement (named_in_statement)
    try:
        await set_tenant(conn, _TENANT.get())
    except BaseException:
        # asyncpg closes a connection whose setup failed gracefully, which waits for the
        # server: with a hung server, for ever. Cut it instead (the pool opens a fresh one).
        conn.terminate()
        raise


async def for_each_tenant(pool: Any, work: Callable[[str], Awaitable[Any]]) -> list[Any]:
    """Run ``work(tenant)`` once per tenant, each as that tenant (a periodic pass's rows,
    ledger events and audit entries land in the tenant they are about)."""
    with as_tenant(ALL):
        async with pool.acquire() as conn:
            tenants = [r["id"] for r in await conn.fetch("SELECT id FROM tenants ORDER BY id")]
    results = []
    for tenant in tenants:
        with as_tenant(tenant):
            results.append(await work(tenant))
    return results
