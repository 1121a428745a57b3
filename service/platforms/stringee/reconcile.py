"""Lost record eventUrls: ask Stringee's call log whether it recorded a call, and act as if the
record eventUrl had come.

Stringee documents no retry of its webhooks, so a record eventUrl lost to a deploy or a
database restart would leave a consented call's recording at Stringee, never stored. Each pass
(every ``CALLVAULT_RECONCILE_INTERVAL``; :func:`service.platforms.reconcile.run_pass`) takes up
every Stringee call that ended at least ``CALLVAULT_RECONCILE_GRACE`` ago with an outcome and no
recording callback, asks the call log (``GET /v1/call/log?id=``, the project's REST JWT,
:meth:`StringeeMedia.call_log`) and hands each entry whose ``recorded`` is 1 to
:func:`service.intake.callbacks.recording_callback`, the path the eventUrl takes: fetched by
call id (which ``/v1/call/recording/{id}`` accepts) if the call consented, never fetched if
not; deduplicated against an eventUrl that arrives late. The ledger says
``recording_callback_missed`` (``found_by: call_log``). A call the log does not list yet is
asked again on later passes, within the pass's bounds.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from service import ledger
from service.intake.callbacks import recording_callback
from service.ledger import NewEvent
from service.platforms.reconcile import (
    HORIZON_S,
    MAX_ATTEMPTS,
    ReconcileReport,
    finish,
    run_pass,
)
from service.platforms.stringee.accounts import NoApiKey
from service.platforms.stringee.media import LoggedCall, MediaError
from service.platforms.stringee.sources import StringeeMediaSources

PLATFORM = "stringee"


async def reconcile_once(
    pool: asyncpg.Pool[Any],
    stringee: StringeeMediaSources,
    *,
    grace_s: float,
    retry_after_s: float = 0.0,
    job_max_attempts: int = 12,
    max_attempts: int = MAX_ATTEMPTS,
    horizon_s: float = HORIZON_S,
) -> ReconcileReport:
    async def ask(tenant: str, row: asyncpg.Record, report: ReconcileReport) -> None:
        call_sid: str = row["external_id"]
        account: str | None = row["platform_account"]
        try:
            source = await stringee.source(tenant, account)
            logged = await source.media.call_log(call_sid)
        except (MediaError, NoApiKey) as exc:
            await finish(
                pool,
                row,
                report,
                settled=False,
                error=str(exc),
                max_attempts=max_attempts,
                platform=PLATFORM,
            )
            return
        found = 0
        for entry in logged:
            if entry.recorded and await _hand_on(pool, row, entry, account, job_max_attempts):
                found += 1
        await finish(
            pool,
            row,
            report,
            # not in the log yet: Stringee may still be writing it; ask again
            settled=bool(logged),
            found=found,
            max_attempts=max_attempts,
            platform=PLATFORM,
        )

    return await run_pass(
        pool,
        PLATFORM,
        ask,
        grace_s=grace_s,
        retry_after_s=retry_after_s,
        max_attempts=max_attempts,
        horizon_s=horizon_s,
    )


async def _hand_on(
    pool: asyncpg.Pool[Any],
    row: asyncpg.Record,
    entry: LoggedCall,
    account: str | None,
    job_max_attempts: int,
) -> bool:
    """The record eventUrl Stringee would have sent, with a ledger event saying how it came;
    False when it had arrived after all (deduplicated: nothing done)."""
    async with pool.acquire() as conn, conn.transaction():
        fresh = await recording_callback(
            conn,
            platform=PLATFORM,
            recording_sid=entry.id,  # the call id: the download endpoint takes it
            call_sid=row["external_id"],
            status="completed",
            duration_s=None,
            max_attempts=job_max_attempts,
            platform_account=account,
        )
        if fresh:
            await ledger.append(
                conn,
                row["call_id"],
                [
                    NewEvent(
                        "recording_callback_missed",
                        {"recording_sid": entry.id, "status": "completed", "found_by": "call_log"},
                        dedupe_key=f"recording_callback_missed:{entry.id}:completed",
                    )
                ],
            )
    return fresh
