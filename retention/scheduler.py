"""APScheduler (3.x) inside ``callvault serve``: the purge every ``CALLVAULT_PURGE_INTERVAL``,
and beside it the ledger seal and the search for lost recording callbacks (every
``CALLVAULT_RECONCILE_INTERVAL``, see ``service.platforms.twilio.reconcile``).

Every replica runs the schedule; that is safe because a purge pass claims rows with
``FOR UPDATE SKIP LOCKED`` (see ``retention.purge``), and so does a reconcile pass.
``max_instances=1`` and ``coalesce`` keep one replica from stacking passes when one runs long.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger


def start(
    purge: Callable[[], Awaitable[None]],
    interval_s: float,
    *,
    seal: Callable[[], Awaitable[None]] | None = None,
    seal_interval_s: float = 3600,
    reconcile: Callable[[], Awaitable[None]] | None = None,
    reconcile_interval_s: float = 900,
) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=UTC)
    if reconcile is not None:
        scheduler.add_job(
            reconcile,
            IntervalTrigger(seconds=reconcile_interval_s),
            id="reconcile",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(int(reconcile_interval_s), 1),
        )
    if seal is not None:
        # the ledger's seals (see service.ledger.seals): one replica at a time seals
        scheduler.add_job(
            seal,
            IntervalTrigger(seconds=seal_interval_s),
            id="seal",
            max_instances=1,
            coalesce=True,
        )
    scheduler.add_job(
        purge,
        IntervalTrigger(seconds=interval_s),
        id="purge",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(int(interval_s), 1),
        # first pass shortly after start-up, not a whole interval later
        next_run_time=datetime.now(UTC) + timedelta(seconds=min(interval_s, 5.0)),
    )
    scheduler.start()
    return scheduler
