"""APScheduler (3.x) inside ``callvault serve``: the purge every ``CALLVAULT_PURGE_INTERVAL``,
and beside it the ledger seal and the search for lost recording callbacks (every
``CALLVAULT_RECONCILE_INTERVAL``, see ``service.platforms.twilio.reconcile``).

Every replica runs the schedule; that is safe because a purge pass claims rows with
``FOR UPDATE SKIP LOCKED`` (see ``retention.purge``), and so does a reconcile pass.
``max_instances=1`` and ``coalesce`` keep one replica from stacking passes when one runs long.

At shutdown a pass still running is first asked to stop (:func:`stopping`: the purge claims no
new batch, so the one in flight, whose objects may already be deleted, reaches its commit) and
given ``STOP_GRACE_S`` to finish; one still running then is cancelled and awaited before the pool
it uses closes, as the job worker does with its jobs: every pass is a transaction per batch, so
the next start redoes what was cut short. Left to the event loop's final cancel, APScheduler
logged the cancel as a job that raised.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

Pass = Callable[[], Awaitable[None]]
STOP_GRACE_S = 10.0  # a purge batch in flight commits within this; then it is cancelled
_schedule: contextvars.ContextVar[Schedule | None] = contextvars.ContextVar(
    "callvault_schedule", default=None
)


def stopping() -> bool:
    """Whether the schedule running the current pass is shutting down (false outside one): a
    pass checks it between its transactions and takes no new work."""
    schedule = _schedule.get()
    return schedule is not None and schedule._stopping


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
            _schedule.set(self)  # the task's own context: seen by stopping() in this pass
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

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """No new passes; let those running finish what they are doing for ``grace_s`` (see
        :func:`stopping`), then cancel them and wait until they have let go."""
        self._stopping = True
        # paused, not yet shut down: APScheduler's shutdown cancels the passes it is running
        self.scheduler.pause()
        running = list(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=grace_s)
            for task in late:
                task.cancel()
        self.scheduler.shutdown(wait=False)
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
