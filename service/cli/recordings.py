"""``callvault recordings encrypt``: seal recordings stored before callvault encrypted them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.cli.common import object_stores, on_connection, phone_vault, settings_for
from service.errors import CallvaultError


def cmd_recordings_encrypt(args: argparse.Namespace) -> int:
    from service.storage.reseal import encrypt_all

    if not args.all:
        raise CallvaultError("--all: say that every stored recording is meant")
    settings = settings_for(database=True)

    async def work(conn: Any) -> int:
        stores = object_stores(settings)
        try:
            report = await encrypt_all(conn, phone_vault(settings), stores, settings.home / "tmp")
        finally:
            await stores.close()
        print(
            f"sealed {report.sealed} recordings, {report.already} already sealed"
            + (f", {report.missing} missing from the store" if report.missing else "")
            + (f", {report.skipped} purged or erased meanwhile" if report.skipped else "")
            + (f", {len(report.failed)} failed" if report.failed else "")
        )
        for recording_id, why in report.failed.items():
            print(f"{recording_id}: {why}", file=sys.stderr)
        return 1 if report.failed else 0

    return on_connection(work, tenant="*", settings=settings)


def add_parser(sub: Any) -> None:
    recordings_p = sub.add_parser("recordings", help="stored recordings")
    recordings_sub = recordings_p.add_subparsers(
        dest="recordings_command", required=True, metavar="ACTION"
    )
    p = recordings_sub.add_parser(
        "encrypt",
        help="seal recordings stored before callvault encrypted them, each under its own key "
        "(resumable: sealed ones are left as they are)",
    )
    p.add_argument("--all", action="store_true", help="every stored recording of every tenant")
    p.set_defaults(func=cmd_recordings_encrypt)
