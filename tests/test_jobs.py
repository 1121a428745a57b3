"""The job queue on real PostgreSQL: exclusive claims, leases, fencing, retries, dead letters."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from service import jobs
from service.db import tenancy
from service.db.pool import connect, create_pool
from service.jobs import LeaseLost
from service.jobs.worker import JobContext, Worker, WorkerConfig
from tests.tcp_proxy import TcpProxy
from tests.waiting import eventually

Conn = asyncpg.Connection


async def test_concurrent_claimers_never_share_a_job(db: Conn, database_url: str) -> None:
    for i in range(40):
        await jobs.enqueue(db, "k", {"i": i})
    conns = [await connect(database_url) for _ in range(4)]
    try:
        batches = await asyncio.gather(
            *(jobs.claim(c, 15, 30, f"w{n}") for n, c in enumerate(conns))
        )
    finally:
        for c in conns:
            await c.close()
    ids = [job.id for batch in batches for job in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_dedupe_key_enqueues_once(db: Conn) -> None:
    assert await jobs.enqueue(db, "k", {}, dedupe_key="same") is not None
    assert await jobs.enqueue(db, "k", {}, dedupe_key="same") is None
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_an_expired_lease_is_reclaimed_and_the_old_worker_cannot_commit(db: Conn) -> None:
    await jobs.enqueue(db, "k", {})
    (first,) = await jobs.claim(db, 1, 30, "a")
    # the first worker stalls past its lease (moved back by the database clock's terms)
    await db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    assert not await jobs.heartbeat(db, first, 30)
    (second,) = await jobs.claim(db, 1, 30, "b")
    assert second.id == first.id and second.lease_token != first.lease_token
    assert second.attempts == 2
    with pytest.raises(LeaseLost):
        async with jobs.fenced(db, first):
            pass
    assert not await jobs.complete(db, first)
    async with jobs.fenced(db, second):
        pass
    assert await jobs.complete(db, second)


async def test_an_expired_but_unclaimed_lease_cannot_commit_either(db: Conn) -> None:
    await jobs.enqueue(db, "k", {})
    (job,) = await jobs.claim(db, 1, 30, "a")
    await db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    with pytest.raises(LeaseLost):
        async with jobs.fenced(db, job):
            pass


async def test_failures_back_off_then_dead_letter(db: Conn) -> None:
    await jobs.enqueue(db, "k", {}, max_attempts=3)
    states = []
    for _ in range(3):
        await db.execute("UPDATE jobs SET run_after = now()")
        (job,) = await jobs.claim(db, 1, 30, "a")
        states.append(await jobs.retry(db, job, "boom", 60))
    assert states == ["queued", "queued", "dead"]
    row = await db.fetchrow("SELECT state, attempts, last_error, finished_at FROM jobs")
    assert (row["state"], row["attempts"], row["last_error"]) == ("dead", 3, "boom")
    assert row["finished_at"] is not None
    assert await jobs.claim(db, 1, 30, "a") == []


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    for attempt in range(1, 12):
        ceiling = min(600.0, 2.0 * 2 ** (attempt - 1))
        samples = [jobs.backoff_s(attempt, 2.0, 600.0) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        assert len(set(samples)) > 1


async def test_defer_gives_the_attempt_back(db: Conn) -> None:
    await jobs.enqueue(db, "k", {})
    (job,) = await jobs.claim(db, 1, 30, "a")
    assert await jobs.defer(db, job, "later", 0)
    assert await db.fetchval("SELECT attempts FROM jobs") == 0


async def test_worker_runs_jobs_and_releases_leases_at_shutdown(database_url: str) -> None:
    pool = await create_pool(database_url)
    started = asyncio.Event()
    release = asyncio.Event()
    done: list[int] = []

    async def quick(ctx: JobContext) -> None:
        done.append(ctx.job.payload["n"])

    async def slow(ctx: JobContext) -> None:
        started.set()
        await release.wait()

    worker = Worker(
        pool, {"quick": quick, "slow": slow}, WorkerConfig(concurrency=2, lease_s=30, poll_s=0.2)
    )
    try:
        with tenancy.as_tenant(tenancy.DEFAULT):  # the test enqueues as a tenant would
            async with pool.acquire() as conn:
                for n in range(5):
                    await jobs.enqueue(conn, "quick", {"n": n})
                await jobs.enqueue(conn, "slow", {})
        worker.start()
        await asyncio.wait_for(started.wait(), 30)
        async with pool.acquire() as conn:

            async def quick_done() -> bool:
                return not await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE kind = 'quick' AND state <> 'done'"
                )

            await eventually(quick_done, what="the quick jobs are done")
        await worker.stop()
        async with pool.acquire() as conn:
            slow_job = await conn.fetchrow("SELECT * FROM jobs WHERE kind = 'slow'")
        # shut down mid-job: the lease goes back at once, nothing waits for it to expire
        assert slow_job["state"] == "queued" and slow_job["lease_token"] is None
        assert slow_job["attempts"] == 0
        assert sorted(done) == [0, 1, 2, 3, 4]
    finally:
        release.set()
        await pool.close()


async def test_handler_errors_are_retried_then_dead_lettered(database_url: str) -> None:
    pool = await create_pool(database_url)
    calls: list[int] = []

    async def failing(ctx: JobContext) -> None:
        calls.append(ctx.job.attempts)
        raise RuntimeError("the bucket is down")

    worker = Worker(
        pool,
        {"f": failing},
        WorkerConfig(concurrency=1, poll_s=0.05, backoff_base_s=0.01, backoff_cap_s=0.05),
    )
    try:
        with tenancy.as_tenant(tenancy.DEFAULT):
            async with pool.acquire() as conn:
                await jobs.enqueue(conn, "f", {}, max_attempts=4)
        worker.start()
        async with pool.acquire() as conn:

            async def dead() -> bool:
                return bool(await conn.fetchval("SELECT state FROM jobs") == "dead")

            await eventually(dead, what="the job is dead-lettered")
            row: Any = await conn.fetchrow("SELECT * FROM jobs")
        assert calls == [1, 2, 3, 4]
        assert "RuntimeError: the bucket is down" in row["last_error"]
    finally:
        await worker.stop()
        await pool.close()


async def test_a_database_outage_is_logged_once_not_once_per_poll(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # With the embedded database stopped, serve wrote "cannot claim jobs: [Errno 2] No such
    # file or directory" every second per replica, naming nothing.
    socket_dir = parse_qs(urlsplit(database_url).query)["host"][0]
    pg_socket = next(p for p in Path(socket_dir).glob(".s.PGSQL.*") if p.suffix != ".lock")
    proxy = TcpProxy("", 0, unix_path=str(pg_socket))
    await proxy.start()
    name = urlsplit(database_url).path.lstrip("/")
    pool = await create_pool(f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}", min_size=0)
    worker = Worker(pool, {}, WorkerConfig(poll_s=0.01))
    caplog.set_level(logging.INFO, logger="service.jobs.worker")
    try:
        await worker._claim_and_start()
        proxy.go_down()
        for _ in range(5):
            await worker._claim_and_start()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "database" in warnings[0].getMessage()
        proxy.come_back()
        await worker._claim_and_start()
        assert "claiming jobs again" in caplog.records[-1].getMessage()
        proxy.go_down()
        await worker._claim_and_start()
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    finally:
        proxy.come_back()
        await pool.close()
        await proxy.close()
