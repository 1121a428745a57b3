"""``callvault purge``: delete expired, unheld recordings now."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from service.cli.common import object_stores, settings_for


def cmd_purge(args: argparse.Namespace) -> int:
    from retention import purge
    from service.db import roles, tenancy
    from service.db.pool import create_pool

    settings = settings_for(database=True, secrets=False)

    async def bind(conn: Any) -> None:
        await roles.bind_to_rls(conn, allow_bypass=settings.allow_rls_bypass)

    async def run() -> int:
        assert settings.database_url
        # each tenant's pass confined by row-level security, as serve's is: the embedded URL is
        # a superuser, which callvault.tenant alone confines to nothing
        pool = await create_pool(settings.database_url, min_size=1, max_size=2, bind=bind)
        try:
            if args.dry_run:
                with tenancy.as_tenant(tenancy.ALL):  # what any tenant's purge would take
                    async with pool.acquire() as conn:
                        for line in await purge.dry_run_report(conn, limit=args.limit):
                            print(line)
                return 0
            stores = object_stores(settings, reader=pool.acquire)
            try:
                report = await purge.purge_once(pool, stores)
            finally:
                await stores.close()
            print(
                f"purged {report.purged}, kept by holds {report.held}, "
                f"refused by the store {len(report.failed)}"
            )
            for rid, why in list(report.failed.items())[:20]:
                print(f"REFUSED {rid}: {why}", file=sys.stderr)
            if report.bundles or report.bundles_failed:
                print(
                    f"expired access bundles removed {report.bundles}, "
                    f"refused by the store {len(report.bundles_failed)}"
                )
            if report.stale_uploads:
                print(
                    f"uploads of access-bundle runs that never committed removed "
                    f"{report.stale_uploads}"
                )
            if report.left_recording_uploads:
                print(
                    "recordings' uploads left in a store their tenant moved from removed "
                    f"{report.left_recording_uploads}"
                )
            if report.batch_errors:
                print(
                    f"{report.batch_errors} purge batch(es) failed with an error and were "
                    "rolled back; run purge again",
                    file=sys.stderr,
                )
            return 1 if report.failed or report.bundles_failed or report.batch_errors else 0
        finally:
            await pool.close()

    return asyncio.run(run())


def add_parser(sub: Any) -> None:
    p = sub.add_parser("purge", help="delete expired, unheld recordings now")
    p.add_argument("--dry-run", action="store_true", help="list what would go and why")
    p.add_argument("--limit", type=int, default=1000, help="with --dry-run: rows to list")
    p.set_defaults(func=cmd_purge)
