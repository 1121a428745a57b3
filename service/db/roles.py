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
