"""Lost recording callbacks: ask Twilio which recordings a call has, and act as if it had told us.

Twilio retries a recording status callback at most once by default (connection overrides:
``rc`` defaults to 1), so a callback lost to a deploy, a database restart or a wrong public URL
is never sent again, and that recording would be neither stored nor deleted at Twilio. Each pass
(every ``CALLVAULT_RECONCILE_INTERVAL``) takes up every call that ended at least
``CALLVAULT_RECONCILE_GRACE`` ago with a consent outcome and no terminal recording callback,
lists its recordings (``GET .../Recordings.json?CallSid=``), and hands each finished one to
:func:`service.intake.callbacks.recording_callback`, the path the callback takes: stored if the
call consented, deleted at Twilio unread if not, deduplicated against a callback that arrives
late. The ledger says ``recording_callback_missed`` for each one found this way.

A call is settled once a listing answered and every recording in it was finished (none, or
``completed``/``absent``/``deleted``...). Until then it is asked again on later passes, at most
``MAX_ATTEMPTS`` times and never once it ended more than ``HORIZON_S`` ago, so nothing is listed
forever. Each call is listed with the credentials of the account it came through (per tenant,
per account: :class:`~service.platforms.twilio.accounts.TwilioMediaSources`), and what is found
is handed on with that account, so it is fetched and deleted with the same credentials.
The pass itself (which calls, claims, leases, attempts) is
:func:`service.platforms.reconcile.run_pass`, shared with Stringee's reconciler.
"""

from __future__ import annotations

import uuid
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
from service.platforms.twilio.accounts import TwilioMediaSources
from service.platforms.twilio.media import ListedRecording, MediaError

__all__ = ["ReconcileReport", "reconcile_once"]
PLATFORM = "twilio"
FINISHED = frozenset({"completed", "absent", "failed", "deleted"})  # no later state follows
HANDED_ON = frozenset({"completed", "absent", "failed"})  # what a callback would have said


async def reconcile_once(
    pool: asyncpg.Pool[Any],
    twilio: TwilioMediaSources,
    *,
    grace_s: float,
    retry_after_s: float = 0.0,
    job_max_attempts: int = 12,
    batch: int = 100,
    max_batches: int = 50,
    concurrency: int = 4,
    max_attempts: int = MAX_ATTEMPTS,
    horizon_s: float = HORIZON_S,
) -> ReconcileReport:
    """One pass; ``retry_after_s`` spaces the attempts on an unsettled call (the scheduler
    passes half the interval, so every pass may ask once)."""

    async def ask(tenant: str, row: asyncpg.Record, report: ReconcileReport) -> None:
        await _reconcile_call(pool, tenant, twilio, row, report, job_max_attempts, max_attempts)

    return await run_pass(
        pool,
        PLATFORM,
        ask,
        grace_s=grace_s,
        retry_after_s=retry_after_s,
        batch=batch,
        max_batches=max_batches,
        concurrency=concurrency,
        max_attempts=max_attempts,
        horizon_s=horizon_s,
    )


async def _reconcile_call(
    pool: asyncpg.Pool[Any],
    tenant: str,
    twilio: TwilioMediaSources,
    row: asyncpg.Record,
    report: ReconcileReport,
    job_max_attempts: int,
    max_attempts: int,
) -> None:
    call_id: uuid.UUID = row["call_id"]
    call_sid: str = row["external_id"]
    account: str | None = row["platform_account"]
    try:
        media = await twilio.source(tenant, account)
        listed = await media.list_recordings(call_sid)
    except MediaError as exc:
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
    settled, found = True, 0
    for rec in listed:
        if rec.call_sid and rec.call_sid != call_sid:
            continue  # asked by CallSid; anything else is not this call's to act on
        if rec.status not in FINISHED:
            settled = False  # still recording or processing: its callback may yet come
            continue
        if rec.status in HANDED_ON and await _hand_on(
            pool, call_id, call_sid, media.account_sid, rec, job_max_attempts
        ):
            found += 1
    await finish(
        pool,
        row,
        report,
        settled=settled,
        found=found,
        max_attempts=max_attempts,
        platform=PLATFORM,
    )


async def _hand_on(
    pool: asyncpg.Pool[Any],
    call_id: uuid.UUID,
    call_sid: str,
    account: str,
    rec: ListedRecording,
    job_max_attempts: int,
) -> bool:
    """The callback Twilio would have sent, in one transaction with a ledger event saying how
    it came; False when the callback had arrived after all (deduplicated: nothing done)."""
    async with pool.acquire() as conn, conn.transaction():
        fresh = await recording_callback(
            conn,
            platform=PLATFORM,
            recording_sid=rec.sid,
            call_sid=call_sid,
            status=rec.status,
            duration_s=rec.duration_s,
            max_attempts=job_max_attempts,
            platform_account=account,
        )
        if fresh:
            await ledger.append(
                conn,
                call_id,
                [
                    NewEvent(
                        "recording_callback_missed",
                        {"recording_sid": rec.sid, "status": rec.status, "found_by": "listing"},
                        dedupe_key=f"recording_callback_missed:{rec.sid}:{rec.status}",
                    )
                ],
            )
    return fresh
