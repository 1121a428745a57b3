"""``callvault ledger verify|seal``: the consent ledger's hash chains and seals."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from service.cli.common import on_connection, shown, tenant_option
from service.errors import CallvaultError


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    from service import ledger

    call_id = None
    if args.call:
        try:
            call_id = uuid.UUID(args.call)
        except ValueError:
            raise CallvaultError(f"--call: not a call id: {args.call!r}") from None

    async def work(conn: Any) -> int:
        if args.tenant != "*" and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", args.tenant
        ):
            raise CallvaultError(f"--tenant: no tenant {args.tenant!r}")
        report = await ledger.verify(conn, call_id)
        if args.json:
            print(json.dumps(report.as_json()))
        else:
            print(
                f"verified {report.events} events in {report.calls} calls"
                + (f" and {report.seals} seals" if report.seals else "")
            )
            if len(report.tenant_seals) > 1:
                for tenant, n in sorted(report.tenant_seals.items()):
                    print(f"tenant {shown(tenant)}: {n} seals, chained on their own")
        if not report.ok:
            for item in report.breaks[:20]:
                print(f"BROKEN: {item}", file=sys.stderr)
            print(f"ledger broken: first at {report.breaks[0]}", file=sys.stderr)
            return 1
        return 0

    return on_connection(work, tenant=args.tenant)


def cmd_ledger_seal(args: argparse.Namespace) -> int:
    from service.ledger import seals

    async def work(conn: Any) -> int:
        seal_id = await seals.seal(conn)
        print(f"sealed: seal {seal_id}" if seal_id else "nothing new to seal (or sealing now)")
        return 0

    return on_connection(work, tenant=args.tenant)


def add_parser(sub: Any) -> None:
    ledger_p = sub.add_parser("ledger", help="the consent ledger")
    ledger_sub = ledger_p.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    p = ledger_sub.add_parser("verify", help="recompute every hash chain; exit 1 if one is broken")
    p.add_argument("--call", help="verify one call (its id)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--tenant",
        default="*",
        help="verify one tenant's chains and seals (default: every tenant, each seal chain "
        "on its own)",
    )
    p.set_defaults(func=cmd_ledger_verify)
    p = ledger_sub.add_parser("seal", help="seal every call's chain head now (serve does hourly)")
    tenant_option(p)
    p.set_defaults(func=cmd_ledger_seal)
