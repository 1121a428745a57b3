"""``callvault jobs list|retry``: the work queue's dead letters and retries."""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.common import on_connection, shown
from service.errors import CallvaultError


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from service import jobs

    async def work(conn: Any) -> int:
        counts = await jobs.stats(conn)
        summary = ", ".join(f"{state} {n}" for state, (n, _) in sorted(counts.items()))
        print(f"jobs: {summary or 'none'}")
        rows = await conn.fetch(jobs.Q["list_by_state"], args.state, args.limit)
        for row in rows:
            payload = row["payload"]
            what = payload.get("recording_sid", "") if isinstance(payload, dict) else ""
            print(
                f"{row['id']:>8}  {row['kind']:<10} {what:<34} attempts {row['attempts']}/"
                f"{row['max_attempts']}  updated {row['updated_at']:%Y-%m-%d %H:%M:%S}  "
                f"{shown((row['last_error'] or '')[:120])}"
            )
        return 0

    return on_connection(work, tenant="*")


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    from service import jobs

    async def work(conn: Any) -> int:
        if await conn.fetchval(jobs.Q["requeue_dead"], args.id) is None:
            raise CallvaultError(f"no dead job {args.id}")
        print(f"job {args.id} queued again")
        return 0

    return on_connection(work, tenant="*")


def add_parser(sub: Any) -> None:
    jobs_p = sub.add_parser("jobs", help="the work queue: dead letters, retries")
    jobs_sub = jobs_p.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    p = jobs_sub.add_parser("list", help="count jobs by state and list those in one state")
    p.add_argument("--state", default="dead", choices=["queued", "running", "done", "dead"])
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_jobs_list)
    p = jobs_sub.add_parser("retry", help="queue a dead job again from attempt 1")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_jobs_retry)
