"""``callvault hold place|release|list``: legal holds."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.common import (
    actor,
    on_connection,
    phone_vault,
    settings_for,
    shown,
    tenant_option,
    uuid_arg,
)
from service.errors import CallvaultError


def cmd_hold_place(args: argparse.Namespace) -> int:
    from retention import holds

    if (args.call is None) == (args.phone is None):
        raise CallvaultError("give exactly one of --call ID or --phone E164")
    settings = settings_for(database=True)
    call_id = uuid_arg(args.call, "--call") if args.call else None

    async def work(conn: Any) -> int:
        placed = await holds.place(
            conn,
            phone_vault(settings),
            actor(),
            call_id=call_id,
            phone=args.phone,
            reason=args.reason,
            case_ref=args.case_ref,
        )
        print(f"hold {placed.id}: {len(placed.held_recordings)} recording(s) held")
        if placed.already_gone:
            print(f"already purged or erased: {', '.join(placed.already_gone)}")
        for e in placed.already_erased:
            print(f"call {e['call_id']} erased at {e['erased_at']} by request {e['request_id']}")
        return 0

    return on_connection(work, tenant=args.tenant, settings=settings)


def cmd_hold_release(args: argparse.Namespace) -> int:
    from retention import holds

    settings = settings_for(database=True)
    hold_id = uuid_arg(args.id, "id")

    async def work(conn: Any) -> int:
        await holds.release(conn, phone_vault(settings), hold_id, actor())
        print(f"released {hold_id}")
        return 0

    return on_connection(work, tenant=args.tenant, settings=settings)


def cmd_hold_list(args: argparse.Namespace) -> int:
    from retention import holds

    settings = settings_for(database=True)
    vault = phone_vault(settings)

    async def work(conn: Any) -> int:
        for h in await holds.list_holds(conn, vault, include_released=args.all, limit=1000):
            target = f"call {h['call_id']}" if h["call_id"] else h["phone"] or "an erased number"
            state = "active" if h["active"] else f"released {h['released_at']}"
            case = shown(h["case_ref"] or "-")
            print(f"{h['id']}  on {target}  {state}  case {case}: {shown(h['reason'])}")
        return 0

    return on_connection(work, tenant=args.tenant, settings=settings)


def add_parser(sub: Any) -> None:
    hold_p = sub.add_parser("hold", help="legal holds")
    hold_sub = hold_p.add_subparsers(dest="hold_command", required=True, metavar="ACTION")
    p = hold_sub.add_parser("place", help="hold a call, or every call of a number")
    p.add_argument("--call")
    p.add_argument("--phone")
    p.add_argument("--reason", required=True)
    p.add_argument("--case-ref")
    tenant_option(p)
    p.set_defaults(func=cmd_hold_place)
    p = hold_sub.add_parser("release", help="release a hold by id")
    p.add_argument("id")
    tenant_option(p)
    p.set_defaults(func=cmd_hold_release)
    p = hold_sub.add_parser("list", help="holds in force (--all: released ones too)")
    p.add_argument("--all", action="store_true")
    tenant_option(p)
    p.set_defaults(func=cmd_hold_list)
