"""The worker loop every replica runs: claim due jobs, run their handlers, renew leases, retry.

It wakes on ``NOTIFY callvault_jobs`` (sent when a job is enqueued, by any replica) and polls as
well, so a lost notification only delays work. On shutdown it stops claiming and hands the
leases of unfinished jobs back at once, so another replica picks them up without waiting for the
lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web

from service import jobs
from service.db import tenancy
from service.jobs import Defer, Job, LeaseLost, Permanent

if TYPE_CHECKING:
    from service.jobs.registry import Resources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    job: Job
    pool: asyncpg.Pool[Any]
    shared: Resources | None = None

    @property
    def resources(self) -> Resources:
        """The application's shared resources (store, settings, media sources, ...)."""
        if self.shared is None:
            raise RuntimeError("this worker was started without resources")
        return self.shared


Handler = Callable[[JobContext], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 4
    lease_s: float = 30.0
    poll_s: float = 1.0
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 600.0


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        handlers: Mapping[str, Handler],
        config: WorkerConfig,
        resources: Resources | None = None,
    ) -> None:
        self.pool = pool
        self.handlers = dict(handlers)
        self.config = config
        self.resources = resources
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._running: dict[asyncio.Task[None], Job] = {}
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._claims_failing = False  # logged once per outage, not once per poll

    def start(self, on_died: Callable[[BaseException | None], None] | None = None) -> None:
        """Start the claim loop; ``on_died`` is called (with what ended it, if anything was
        raised) should it end by itself rather than by :meth:`stop`."""
        # claiming and the queue's bookkeeping see every tenant's jobs; each handler runs as
        # its job's tenant (see _run)
        with tenancy.as_tenant(tenancy.ALL):
            self._loop_task = asyncio.create_task(self._loop(), name="callvault-worker")
        if on_died is not None:
            report = on_died

            def ended(task: asyncio.Task[None]) -> None:
                if self._stopping:
                    return
                report(None if task.cancelled() else task.exception())

            self._loop_task.add_done_callback(ended)

    @property
    def alive(self) -> bool:
        """Whether the claim loop runs (or has not started yet, or was stopped on purpose): a
        loop that ended by itself claims nothing more, and the process should be restarted."""
        task = self._loop_task
        return self._stopping or task is None or not task.done()

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming, cancel unfinished jobs and give their leases back."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        running = dict(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for job in running.values():
            try:
                with tenancy.as_tenant(tenancy.ALL):
                    async with self.pool.acquire() as conn:
                        await jobs.defer(conn, job, "released at shutdown", 0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # not fatal: the lease then expires and another replica takes the job over
                log.warning("cannot hand job %s back at shutdown: %s", job.id, exc)

    async def _loop(self) -> None:
        listener = await self.pool.acquire()
        try:
            # inside the try: a stop() right after start() (a port already in use) cancels us
            # here, and a listener never given back would hang the pool's close for ever
            await listener.add_listener(jobs.CHANNEL, self._on_notify)
            while not self._stopping:
                try:
                    wait_s = await self._claim_and_start()
                except Exception:  # the loop must outlive any one failure
                    log.exception("job worker iteration failed")
                    wait_s = self.config.poll_s
                if wait_s <= 0:
                    continue  # there may be more due work
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
        finally:
            # a connection that broke has no listener left to remove; release it either way
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await listener.remove_listener(jobs.CHANNEL, self._on_notify)
            await self.pool.release(listener)

    async def _claim_and_start(self) -> float:
        """Claim what fits and start it; returns how long to wait before looking again."""
        free = self.config.concurrency - len(self._running)
        if free <= 0:
            return self.config.poll_s
        wait_s = self.config.poll_s
        try:
            async with self.pool.acquire() as conn:
                claimed = await jobs.claim(conn, free, self.config.lease_s, self.name)
                if not claimed:
                    due = await jobs.next_due_in(conn)
                    if due is not None:
                        wait_s = min(wait_s, max(due, 0.01))
        except (OSError, asyncpg.PostgresError) as exc:
            # Every poll (each second) fails the same way while the database is away: one line
            # when it starts and one when it ends, not 86,400 a day of a bare "[Errno 2]".
            if not self._claims_failing:
                self._claims_failing = True
                log.warning(
                    "cannot claim jobs: the database does not answer (%s: %s); "
                    "retrying every %g s, logged again when it answers",
                    type(exc).__name__,
                    exc,
                    self.config.poll_s,
                )
            return self.config.poll_s
        if self._claims_failing:
            self._claims_failing = False
            log.info("claiming jobs again: the database answers")
        for job in claimed:
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            self._running[task] = job
            task.add_done_callback(self._finished)
        if claimed and len(self._running) < self.config.concurrency:
            return 0.0
        return wait_s

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()

    async def _run(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        if job.attempts > job.max_attempts:
            await self._retry(job, "attempts exhausted (worker lost while running)", True)
            return
        if handler is None:
            await self._retry(job, f"no handler for job kind {job.kind!r}", False)
            return
        with tenancy.as_tenant(job.tenant):
            work = asyncio.create_task(handler(JobContext(job, self.pool, self.resources)))
        beat = asyncio.create_task(self._heartbeat(job, work))
        try:
            await work
        except asyncio.CancelledError:
            if not work.cancelled() or self._stopping:
                raise
            log.warning("job lost its lease", extra={"job_id": job.id, "kind": job.kind})
            return
        except LeaseLost:
            log.warning("job lost its lease", extra={"job_id": job.id, "kind": job.kind})
            return
        except Defer as exc:
            async with self.pool.acquire() as conn:
                await jobs.defer(conn, job, exc.reason, exc.delay_s)
            return
        except Permanent as exc:
            await self._retry(job, exc.message, True)
            return
        except Exception as exc:
            # a platform that said when to come back (HTTP 429 Retry-After) is not asked sooner
            wait = getattr(exc, "retry_after_s", None)
            at_least = float(wait) if isinstance(wait, int | float) else 0.0
            await self._retry(job, f"{type(exc).__name__}: {exc}", False, at_least_s=at_least)
            return
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if not work.done():
                work.cancel()
        async with self.pool.acquire() as conn:
            await jobs.complete(conn, job)
        log.info("job done", extra={"job_id": job.id, "kind": job.kind, "attempt": job.attempts})

    async def _retry(
        self, job: Job, error: str, permanent: bool, *, at_least_s: float = 0.0
    ) -> None:
        delay = jobs.backoff_s(job.attempts, self.config.backoff_base_s, self.config.backoff_cap_s)
        delay = max(delay, at_least_s)
        try:
            async with self.pool.acquire() as conn:
                state = await jobs.retry(conn, job, error, delay, permanent=permanent)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot record a job failure (the lease will expire): %s", exc)
            return
        level = logging.ERROR if state == "dead" else logging.WARNING
        log.log(
            level,
            "job failed",
            extra={
                "job_id": job.id,
                "kind": job.kind,
                "attempt": job.attempts,
                "state": state,
                "retry_in_s": round(delay, 3),
                "error": error[:500],
            },
        )

    async def _heartbeat(self, job: Job, work: asyncio.Task[None]) -> None:
        interval = self.config.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.pool.acquire() as conn:
                    alive = await jobs.heartbeat(conn, job, self.config.lease_s)
            except (OSError, asyncpg.PostgresError):
                continue  # the fence still protects commits; try again next beat
            if not alive:
                work.cancel()
                return


# the application's worker, when its process runs jobs (service.app; /healthz asks it)
JOB_WORKER = web.AppKey("job_worker", Worker)
