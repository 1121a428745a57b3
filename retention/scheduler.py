"""APScheduler (3.x) inside ``callvault serve``: the purge every ``CALLVAULT_PURGE_INTERVAL``,
and beside it the ledger seal and the search for lost recording callbacks (every
``CALLVAULT_RECONCILE_INTERVAL``, see ``service.platforms.twilio.reconcile``).

Every replica runs the schedule; that is safe because a purge pass claims rows with
``FOR UPDATE SKIP LOCKED`` (see ``retention.purge``), and so does a reconcile pass.
``max_instances=1`` and ``coalesce`` keep one replica from stacking passes when one runs long.

At shutdown a pass still running is cancelled and awaited before the pool it uses closes, as the
job worker does with its jobs: every pass is a transaction per batch, so the next start redoes
what was cut short. Left to the event loop's final cancel, APScheduler logged the cancel as a
job that raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

Pass = Callable[[], Awaitable[None]]


class Schedule:
    """The running scheduler and the passes it has in flight."""

    def __init__(self) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._running: set[asyncio.Task[object]] = set()
        self._stopping = False

    def tracked(self, name: str, run: Pass) -> Pass:
        async def pass_() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await run()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                # ours, from stop(): not a failure of the pass
                log.info("%s pass stopped by shutdown; the next start redoes it", name)
            finally:
                self._running.discard(task)

        return pass_

    async def stop(self) -> None:
        """No new passes; cancel those running and wait until they have let go."""
        self._stopping = True
        self.scheduler.shutdown(wait=False)
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def start(
    purge: Pass,
    interval_s: float,
    *,
    seal: Pass | None = None,
    seal_interval_s: float = 3600,
    reconcile: Pass | None = None,
    reconcile_interval_s: float = 900,
) -> Schedule:
    schedule = Schedule()
    scheduler = schedule.scheduler
    if reconcile is not None:
        scheduler.add_job(
            schedule.tracked("reconcile", reconcile),
            IntervalTrigger(seconds=reconcile_interval_s),
            id="reconcile",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(int(reconcile_interval_s), 1),
        )
    if seal is not None:
        # the ledger's seals (see service.ledger.seals): one replica at a time seals
        scheduler.add_job(
            schedule.tracked("seal", seal),
            IntervalTrigger(seconds=seal_interval_s),
            id="seal",
            max_instances=1,
            coalesce=True,
        )
    scheduler.add_job(
        schedule.tracked("purge", purge),
        IntervalTrigger(seconds=interval_s),
        id="purge",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(int(interval_s), 1),
        # first pass shortly after start-up, not a whole interval later
        next_run_time=datetime.now(UTC) + timedelta(seconds=min(interval_s, 5.0)),
    )
    scheduler.start()
    return schedule
