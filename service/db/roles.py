"""The database role the service runs as: one that row-level security binds.

A superuser or a role with BYPASSRLS sees every tenant's rows whatever ``callvault.tenant``
says, so ``serve`` refuses one (:func:`check_service_role`) unless
``CALLVAULT_ALLOW_RLS_BYPASS=1``. In embedded mode migrations run as the embedded superuser and
the service connects as :data:`SERVICE_ROLE`, created here (NOSUPERUSER NOBYPASSRLS, no password:
the embedded server listens on a unix socket only and trusts it) and granted only what the
service does with the tables (no TRUNCATE, no DDL).
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit, urlunsplit

from service.db import Conn
from service.errors import ConfigError

log = logging.getLogger(__name__)

SERVICE_ROLE = "callvault_service"


async def ensure_service_role(conn: Conn, role: str = SERVICE_ROLE) -> None:
    """Create ``role`` if missing and grant it the service's privileges on what exists now (run
    after every migration: new tables need the grant too). ``conn`` must be the schema's owner or
    a superuser."""
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    ident = '"' + role.replace('"', '""') + '"'
    if not exists:
        await conn.execute(f"CREATE ROLE {ident} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB")
    database = await conn.fetchval("SELECT quote_ident(current_database())")
    await conn.execute(
        f"""GRANT CONNECT ON DATABASE {database} TO {ident};
        GRANT USAGE ON SCHEMA public TO {ident};
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ident};
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ident};
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {ident};"""
    )


def url_for_role(url: str, role: str = SERVICE_ROLE) -> str:
    """``url`` with its user replaced by ``role`` and no password (embedded mode: trusted unix
    socket)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(role, safe='')}@{host}"))


async def bypasses_rls(conn: Conn) -> str | None:
    """The connection's role name if it is a superuser or has BYPASSRLS, else None."""
    row = await conn.fetchrow(
        "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    )
    if row is not None and (row["rolsuper"] or row["rolbypassrls"]):
        return str(row["rolname"])
    return None


async def check_service_role(conn: Conn, *, allow_bypass: bool) -> bool:
    """Refuse a role that row-level security does not bind, unless allowed; returns whether the
    service runs with RLS bypassed (then said loudly, here and in every readiness answer)."""
    role = await bypasses_rls(conn)
    if role is None:
        return False
    if not allow_bypass:
        raise ConfigError(
            f"CALLVAULT_DATABASE_URL: role {role!r} is a superuser or has BYPASSRLS, so tenant "
            "isolation would not hold; connect as a role without them (or set "
            "CALLVAULT_ALLOW_RLS_BYPASS=1 to run anyway)"
        )
    log.warning(
        "database role %r bypasses row-level security: tenants are NOT isolated "
        "(CALLVAULT_ALLOW_RLS_BYPASS=1)",
        role,
    )
    return True


async def bind_to_rls(conn: Conn, *, allow_bypass: bool, role: str = SERVICE_ROLE) -> None:
    """Make ``conn`` a connection row-level security binds, for work done for one tenant: a
    superuser or BYPASSRLS role ignores ``callvault.tenant`` (FORCE RLS or not), so it takes on
    ``role`` with ``SET ROLE``. Refused when it cannot (no such role, or not a member of it),
    unless ``allow_bypass`` (``CALLVAULT_ALLOW_RLS_BYPASS=1``)."""
    bypassing = await bypasses_rls(conn)
    if bypassing is None:
        return
    can_become = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1"
        " AND NOT rolsuper AND NOT rolbypassrls)"
        " AND pg_has_role(session_user, $1, 'MEMBER')",
        role,
    )
    if can_become:
        await conn.execute("SET ROLE " + '"' + role.replace('"', '""') + '"')
        return
    if not allow_bypass:
        raise ConfigError(
            f"CALLVAULT_DATABASE_URL: role {bypassing!r} bypasses row-level security and cannot "
            f"act as {role!r} (embedded: `callvault migrate` creates it), so --tenant would not "
            "isolate anything; connect as a role without SUPERUSER/BYPASSRLS (or set "
            "CALLVAULT_ALLOW_RLS_BYPASS=1 to run anyway)"
        )
    log.warning(
        "database role %r bypasses row-level security: this command is NOT confined to its "
        "tenant (CALLVAULT_ALLOW_RLS_BYPASS=1)",
        bypassing,
    )
