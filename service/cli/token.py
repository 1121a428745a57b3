"""``callvault token create|list|revoke``: API tokens (shown once, stored hashed)."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.common import actor, on_connection, shown, tenant_option, uuid_arg
from service.errors import CallvaultError
from service.vocabulary import Role


async def issue_token(conn: Any, name: str, role: str) -> str:
    """A new token and its audit entry, in one transaction (``token create``, ``demo``)."""
    from service import auth
    from service.observability import audit

    async with conn.transaction():
        token, row = await auth.create_token(conn, name, role, actor())
        await audit.record(
            conn,
            actor(),
            "token_created",
            "token",
            str(row["id"]),
            {"name": row["name"], "role": row["role"]},
        )
    return token


def cmd_token_create(args: argparse.Namespace) -> int:
    async def work(conn: Any) -> int:
        print(await issue_token(conn, args.name, args.role))  # alone on its line, once
        return 0

    return on_connection(work, tenant=args.tenant)


def cmd_token_list(args: argparse.Namespace) -> int:
    from service import auth

    async def work(conn: Any) -> int:
        for t in await auth.list_tokens(conn):
            state = "revoked" if t["revoked"] else "active"
            tenant = shown(t["tenant"]) if t["tenant"] is not None else "*"
            print(f"{t['id']}  {t['role']:<11} {state:<8} {tenant:<12} {shown(t['name'])}")
        return 0

    return on_connection(work, tenant=args.tenant)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from service import auth
    from service.observability import audit

    token_id = uuid_arg(args.id, "id")

    async def work(conn: Any) -> int:
        async with conn.transaction():
            if not await auth.revoke_token(conn, token_id):
                raise CallvaultError(f"no active token {token_id}")
            await audit.record(conn, actor(), "token_revoked", "token", str(token_id), {})
        print(f"revoked {token_id}")
        return 0

    return on_connection(work, tenant=args.tenant)


def add_parser(sub: Any) -> None:
    token_p = sub.add_parser("token", help="API tokens (shown once, stored hashed)")
    token_sub = token_p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = token_sub.add_parser("create", help="create a token and print it once")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--role",
        required=True,
        choices=[role.value for role in Role],
    )
    p.add_argument(
        "--tenant",
        default="default",
        help="the tenant the token belongs to (default: default); '*' for a platform token "
        "(role operator, or a tenant role used with a Callvault-Tenant header)",
    )
    p.set_defaults(func=cmd_token_create)
    p = token_sub.add_parser("list", help="list tokens (never their values)")
    tenant_option(p)
    p.set_defaults(func=cmd_token_list)
    p = token_sub.add_parser("revoke", help="revoke a token by id")
    p.add_argument("id")
    tenant_option(p)
    p.set_defaults(func=cmd_token_revoke)
