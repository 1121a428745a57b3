"""Lost recording callbacks, for any platform that fetches: the pass that finds the calls to ask
the platform about, and the book-keeping around each question.

A platform that can be asked which recordings a call has (Twilio's Recordings list, Stringee's
call log) gives :func:`run_pass` an ``ask`` that asks about one call and hands what it finds to
the callback's own path (:func:`service.intake.callbacks.recording_callback`). Each pass takes
up every call of that platform that ended at least ``CALLVAULT_RECONCILE_GRACE`` ago with an
outcome and no terminal recording callback, and asks about each until the platform's answer
settles it, at most ``max_attempts`` times and never once it ended more than ``horizon_s``
ago. Replicas run the same pass safely: calls are claimed with ``FOR UPDATE SKIP LOCKED`` and
a short lease, so no two replicas ask about the same call at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.db import queries, tenancy

log = logging.getLogger(__name__)
Q = queries.load("service.platforms", "reconcile.sql")
MAX_ATTEMPTS = 8
HORIZON_S = 86400  # a call that ended more than a day ago is no longer asked about
LEASE_S = 300  # a replica that dies mid-pass leaves its claims to others after this


@dataclass
class ReconcileReport:
    calls: int = 0  # calls asked about
    settled: int = 0
    found: int = 0  # recordings handed on as lost callbacks
    failed: int = 0  # questions that got no answer (asked again next pass)


# one call's question: (the tenant, the claimed row, the pass's report)
Ask = Callable[[str, asyncpg.Record, ReconcileReport], Awaitable[None]]


async def run_pass(
    pool: asyncpg.Pool[Any],
    platform: str,
    ask: Ask,
    *,
    grace_s: float,
    retry_after_s: float = 0.0,
    batch: int = 100,
    max_batches: int = 50,
    concurrency: int = 4,
    max_attempts: int = MAX_ATTEMPTS,
    horizon_s: float = HORIZON_S,
) -> ReconcileReport:
    """One pass over every tenant; ``retry_after_s`` spaces the attempts on an unsettled call
    (the scheduler passes half the interval, so every pass may ask once)."""
    report = ReconcileReport()

    async def one_tenant(tenant: str) -> None:
        # per tenant: the jobs and ledger events it writes belong to the call's tenant, and
        # enroll names its tenant by the setting (an index's form), so run as '*' it would
        # enroll no call: refused loudly rather than a pass that silently does nothing
        tenancy.require_one(f"the {platform} reconcile pass", tenant)
        async with pool.acquire() as conn:
            await conn.execute(Q["enroll"], float(grace_s), float(horizon_s), platform)
            started = await conn.fetchval(Q["pass_started"])
        limit = asyncio.Semaphore(concurrency)

        async def one(row: asyncpg.Record) -> None:
            async with limit:
                await ask(tenant, row, report)

        for _ in range(max_batches):
            async with pool.acquire() as conn:
                claimed = await conn.fetch(
                    Q["claim"],
                    batch,
                    started,
                    float(horizon_s),
                    max_attempts,
                    float(LEASE_S),
                    float(retry_after_s),
                    platform,
                )
            report.calls += len(claimed)
            await asyncio.gather(*(one(row) for row in claimed))
            if len(claimed) < batch:
                break

    await tenancy.for_each_tenant(pool, one_tenant)
    return report


async def finish(
    pool: asyncpg.Pool[Any],
    row: asyncpg.Record,
    report: ReconcileReport,
    *,
    settled: bool,
    found: int = 0,
    error: str | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    platform: str,
) -> None:
    """Write down what asking about one call came to; the last attempt that settles nothing
    is logged as an error (the operator checks the call at the platform)."""
    async with pool.acquire() as conn:
        await conn.execute(
            Q["finish"], row["call_id"], settled, found, error[:500] if error else None
        )
    report.found += found
    if error is not None:
        report.failed += 1
    elif settled:
        report.settled += 1
    if not settled and row["attempts"] >= max_attempts:
        log.error(
            f"gave up reconciling a call's recordings; check it at {platform.title()}",
            extra={
                "call_id": str(row["call_id"]),
                "attempts": row["attempts"],
                "why": (error or "recordings still in progress at the platform")[:300],
            },
        )
    if found:
        log.warning(
            "recording callbacks were lost; recordings found by asking the platform",
            extra={"call_id": str(row["call_id"]), "found": found, "outcome": row["outcome"]},
        )
