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
Replicas run the same pass safely: calls are claimed with ``FOR UPDATE SKIP LOCKED`` and
a short lease, so no two replicas ask about the same call at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from service import ledger
from service.db import queries, tenancy
from service.intake.callbacks import recording_callback
from service.ledger import NewEvent
from service.platforms.twilio.accounts import TwilioMediaSources
from service.platforms.twilio.media import ListedRecording, MediaError

log = logging.getLogger(__name__)
Q = queries.load("service.platforms.twilio", "reconcile.sql")
PLATFORM = "twilio"
FINISHED = frozenset({"completed", "absent", "failed", "deleted"})  # no later state follows
HANDED_ON = frozenset({"completed", "absent", "failed"})  # what a callback would have said
MAX_ATTEMPTS = 8
HORIZON_S = 86400  # a call that ended more than a day ago is no longer asked about
LEASE_S = 300  # a replica that dies mid-pass leaves its claims to others after this


@dataclass
class ReconcileReport:
    calls: int = 0  # calls asked about
    settled: int = 0
    found: int = 0  # recordings handed on as lost callbacks
    failed: int = 0  # listings that did not answer (asked again next pass)


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
    report = ReconcileReport()

    async def one_tenant(tenant: str) -> None:
        # per tenant: the jobs and ledger events it writes belong to the call's tenant
        await _reconcile_tenant(
            pool,
            tenant,
            twilio,
            report,
            grace_s,
            retry_after_s,
            job_max_attempts,
            batch,
            max_batches,
            concurrency,
            max_attempts,
            horizon_s,
        )

    await tenancy.for_each_tenant(pool, one_tenant)
    return report


async def _reconcile_tenant(
    pool: asyncpg.Pool[Any],
    tenant: str,
    twilio: TwilioMediaSources,
    report: ReconcileReport,
    grace_s: float,
    retry_after_s: float,
    job_max_attempts: int,
    batch: int,
    max_batches: int,
    concurrency: int,
    max_attempts: int,
    horizon_s: float,
) -> None:
    async with pool.acquire() as conn:
        await conn.execute(Q["enroll"], float(grace_s), float(horizon_s), PLATFORM)
        started = await conn.fetchval(Q["pass_started"])
    limit = asyncio.Semaphore(concurrency)

    async def one(row: asyncpg.Record) -> None:
        async with limit:
            await _reconcile_call(pool, tenant, twilio, row, report, job_max_attempts, max_attempts)

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
            )
        report.calls += len(claimed)
        await asyncio.gather(*(one(row) for row in claimed))
        if len(claimed) < batch:
            break


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
        report.failed += 1
        async with pool.acquire() as conn:
            await conn.execute(Q["finish"], call_id, False, 0, str(exc)[:500])
        _give_up_if_last(row, max_attempts, str(exc))
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
    async with pool.acquire() as conn:
        await conn.execute(Q["finish"], call_id, settled, found, None)
    report.found += found
    if settled:
        report.settled += 1
    else:
        _give_up_if_last(row, max_attempts, "recordings still in progress at Twilio")
    if found:
        log.warning(
            "recording callbacks were lost; recordings found by listing",
            extra={"call_id": str(call_id), "found": found, "outcome": row["outcome"]},
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


def _give_up_if_last(row: asyncpg.Record, max_attempts: int, why: str) -> None:
    if row["attempts"] >= max_attempts:
        log.error(
            "gave up reconciling a call's recordings; check it at Twilio",
            extra={"call_id": str(row["call_id"]), "attempts": row["attempts"], "why": why[:300]},
        )
