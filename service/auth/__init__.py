"""API tokens and roles.

A token is 32 random bytes shown once at creation; only its SHA-256 is stored (a token has far
more entropy than a password, so a fast hash is the right tool), looked up by that hash and
compared in constant time. Roles: ``telephony`` (platform webhooks that use tokens),
``qa_trainer`` (search, play), ``compliance`` (holds, data-subject requests, audit, ledger),
``admin`` (tokens, and everything else), all within one tenant; ``operator`` (tenants, tokens,
health; never call data) for platform tokens only.

Every token belongs to the tenant it was created in (the connection's ``callvault.tenant``).
A platform token, created as ``'*'``, belongs to none: its ``tenant_id`` is NULL. It has the role
``operator``, or a tenant role it uses with a ``Callvault-Tenant`` header naming the tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.db import Conn, queries, tenancy
from service.errors import BadRequest, Conflict
from service.vocabulary import Role

Q = queries.load("service.auth")
ROLES = tuple(role.value for role in Role)
# the platform's own role (tokens created with --tenant '*'): tenants, tokens, health
PLATFORM_ROLE = Role.OPERATOR
PREFIX = "cv_"


@dataclass(frozen=True)
class Principal:
    token_id: uuid.UUID
    name: str
    role: str
    tenant: str | None = "default"  # None: a platform token (created with --tenant '*')

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def create_token(conn: Conn, name: str, role: str, created_by: str) -> tuple[str, Any]:
    name = name.strip()
    if not name or len(name) > 100:
        raise BadRequest("name must be 1 to 100 characters", code="bad_name")
    if not name.isprintable():
        # names are printed by the CLI and read in the audit trail: no control characters,
        # escapes, invisible or direction-changing characters (nor NUL or lone surrogates)
        raise BadRequest("name must be printable text", code="bad_name")
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", code="bad_role")
    tenant = await conn.fetchval("SELECT current_setting('callvault.tenant', true)")
    if tenant == tenancy.ALL and role == Role.TELEPHONY:
        raise BadRequest("a platform token's role is operator or a tenant role", code="bad_role")
    if tenant != tenancy.ALL and role == PLATFORM_ROLE:
        raise BadRequest(
            "the operator role is for platform tokens (created for the tenant '*')",
            code="bad_role",
        )
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        # a savepoint, so that the caller's transaction survives the refusal
        async with conn.transaction():
            row = await conn.fetchrow(Q["create_token"], name, role, _digest(token), created_by)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "api_tokens_name_key":
            raise
        raise Conflict(
            f"a token named {name!r} exists already (names are never reused)",
            code="token_name_taken",
        ) from None
    return token, row


async def authenticate(conn: Conn, token: str) -> Principal | None:
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = _digest(token)
    row = await conn.fetchrow(Q["find_token"], digest)
    if row is None or not hmac.compare_digest(bytes(row["token_sha256"]), digest):
        return None
    return Principal(row["id"], row["name"], row["role"], row["tenant_id"])


async def list_tokens(conn: Conn) -> list[dict[str, Any]]:
    return [
        {
            "id": str(r["id"]),
            "name": r["name"],
            "role": r["role"],
            "tenant": r["tenant_id"],  # None: a platform token
            "created_by": r["created_by"],
            "created_at": r["created_at"].isoformat(),
            "last_used_at": r["last_used_at"].isoformat() if r["last_used_at"] else None,
            "revoked": r["revoked_at"] is not None,
        }
        for r in await conn.fetch(Q["list_tokens"])
    ]


async def revoke_token(conn: Conn, token_id: uuid.UUID) -> bool:
    return await conn.fetchval(Q["revoke_token"], token_id) is not None
