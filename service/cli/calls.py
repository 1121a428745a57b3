"""``callvault calls mark-outbound|rehash``: repairs to stored calls."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.common import actor, on_connection, phone_vault, settings_for, tenant_option
from service.errors import CallvaultError


def cmd_calls_mark_outbound(args: argparse.Namespace) -> int:
    from service.consent.legacy import mark_outbound
    from service.personal.numbers import mask_phone, parse_e164

    # Anything else would match no call and report "marked 0" as if the repair were done.
    if parse_e164(args.centre_number) is None:
        raise CallvaultError("--from: not an E.164 number like +842873001234")
    settings = settings_for(database=True)

    async def work(conn: Any) -> int:
        n = await mark_outbound(conn, phone_vault(settings), args.centre_number, actor=actor())
        print(f"marked {n} calls from {mask_phone(args.centre_number)} as outbound")
        return 0

    return on_connection(work, tenant=args.tenant, settings=settings)


def cmd_calls_rehash(args: argparse.Namespace) -> int:
    from service.db import roles
    from service.personal.rehash import RehashReport, rehash_every_tenant

    settings = settings_for(database=True)

    async def work(conn: Any) -> int:
        # tenant by tenant, each confined by row-level security (as serve's pass is)
        await roles.bind_to_rls(conn, allow_bypass=settings.allow_rls_bypass)
        reports = await rehash_every_tenant(conn, phone_vault(settings), actor())
        total = RehashReport.total(reports.values())
        print(
            f"re-hashed {total.calls} calls, {total.do_not_record} do-not-record entries, "
            f"{total.holds} holds and {total.requests} requests in {len(reports)} tenant(s)"
        )
        if total.unreadable:
            print(f"{total.unreadable} numbers sealed under another key: left as they are")
        return 0

    return on_connection(work, tenant="*", settings=settings)


def add_parser(sub: Any) -> None:
    calls_p = sub.add_parser("calls", help="repairs to stored calls")
    calls_sub = calls_p.add_subparsers(dest="calls_command", required=True, metavar="ACTION")
    p = calls_sub.add_parser(
        "mark-outbound",
        help="calls stored before directions were read whose caller is this contact-centre "
        "number were outbound: make the callee's number private and erasable",
    )
    p.add_argument("--from", dest="centre_number", required=True, help="the centre's number")
    tenant_option(p)
    p.set_defaults(func=cmd_calls_mark_outbound)
    p = calls_sub.add_parser(
        "rehash",
        help="recompute the lookup hashes of numbers stored before they were normalised to "
        "E.164 (serve does it once by itself; idempotent)",
    )
    p.set_defaults(func=cmd_calls_rehash)
