"""Stopping ``callvault serve`` while a scheduled pass runs: the pass is cancelled and awaited
before the database pool closes, and nothing is logged as a failure. Left to the event loop's
final cancel, APScheduler logged it as a job that raised, with a traceback (seen in CI from the
installed wheel's serve)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from retention import scheduler


async def test_a_pass_in_flight_at_shutdown_is_stopped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def purge() -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # a pass that would outlive the shutdown
        finally:
            finished.append("purge let go")

    caplog.set_level(logging.INFO)
    schedule = scheduler.start(purge, 3600.0)
    schedule.scheduler.modify_job("purge", next_run_time=datetime.now(UTC))  # run it now
    await asyncio.wait_for(started.wait(), 30)
    await schedule.stop(grace_s=0.1)  # a pass that does not look at stopping() is then cancelled

    assert finished == ["purge let go"]  # awaited by stop(), not left to the loop's close
    assert not schedule.scheduler.running
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert failures == [], [r.getMessage() for r in failures]
    assert "purge pass stopped by shutdown" in caplog.text


async def test_a_pass_cancelled_by_someone_else_still_counts_as_cancelled() -> None:
    # only stop()'s own cancel is swallowed; any other cancel reaches APScheduler as before
    schedule = scheduler.Schedule()
    entered = asyncio.Event()

    async def run() -> None:
        entered.set()
        await asyncio.Event().wait()

    task = asyncio.ensure_future(schedule.tracked("seal", run)())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
