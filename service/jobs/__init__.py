"""The durable job queue in PostgreSQL: enqueue, claim, lease, fence, finish.

Jobs are rows. A worker claims due jobs with ``FOR UPDATE SKIP LOCKED`` and gets a lease with a
fresh fencing token; it renews the lease while it works. Whatever a job commits, it commits
inside :func:`fenced`, which locks the job row and checks the token is still the current one and
unexpired, so a worker that lost its lease (paused, partitioned, presumed dead and replaced)
cannot commit. A crash leaves the lease to expire and another replica claims the job again;
every job is written to converge when run again from any point. Failures retry with
exponential backoff and jitter until ``max_attempts``, then the job is dead-lettered (state
``dead``), visible in ``callvault jobs`` and in metrics.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from service.db import Conn, queries
from service.errors import Defer as Defer
from service.errors import LeaseLost as LeaseLost
from service.errors import Permanent as Permanent

Q = queries.load("service.jobs")
CHANNEL = "callvault_jobs"


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: Mapping[str, Any]
    attempts: int
    max_attempts: int
    lease_token: uuid.UUID
    age_s: float = 0.0  # since the job was enqueued, by the database's clock
    tenant: str = "default"  # the job's handler runs as this tenant (row-level security)


async def enqueue(
    conn: Conn,
    kind: str,
    payload: Mapping[str, Any],
    *,
    dedupe_key: str | None = None,
    max_attempts: int = 12,
    delay_s: float = 0.0,
) -> int | None:
    """Add a job (in the caller's transaction, if any); None if its dedupe key exists."""
    row = await conn.fetchrow(Q["enqueue"], kind, dict(payload), dedupe_key, max_attempts, delay_s)
    return None if row is None else int(row["id"])


async def claim(conn: Conn, limit: int, lease_s: float, worker: str) -> list[Job]:
    rows = await conn.fetch(Q["claim"], limit, lease_s, worker)
    return [
        Job(
            r["id"],
            r["kind"],
            r["payload"],
            r["attempts"],
            r["max_attempts"],
            r["lease_token"],
            float(r["age_s"]),
            r["tenant_id"],
        )
        for r in rows
    ]


async def next_due_in(conn: Conn) -> float | None:
    """Seconds until the earliest queued job is due (negative: overdue), None if none."""
    value = await conn.fetchval(Q["next_due_in"])
    return None if value is None else float(value)


async def heartbeat(conn: Conn, job: Job, lease_s: float) -> bool:
    return await conn.fetchval(Q["heartbeat"], job.id, job.lease_token, lease_s) is not None


@asynccontextmanager
async def fenced(conn: Conn, job: Job) -> AsyncIterator[Conn]:
    """A transaction that commits only while ``job``'s lease is still this worker's."""
    async with conn.transaction():
        if await conn.fetchval(Q["fence"], job.id, job.lease_token) is None:
            raise LeaseLost(f"job {job.id}: lease lost")
        yield conn


async def complete(conn: Conn, job: Job) -> bool:
    return await conn.fetchval(Q["complete"], job.id, job.lease_token) is not None


def backoff_s(attempts: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with equal jitter: half fixed, half random."""
    ceiling = min(cap_s, base_s * float(2 ** max(attempts - 1, 0)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


async def retry(
    conn: Conn, job: Job, error: str, delay_s: float, *, permanent: bool = False
) -> str | None:
    """Queue the job again after ``delay_s``, or dead-letter it; returns the new state."""
    state: str | None = await conn.fetchval(
        Q["retry"], job.id, job.lease_token, delay_s, error[:2000], permanent
    )
    return state


async def defer(conn: Conn, job: Job, reason: str, delay_s: float) -> bool:
    return await conn.fetchval(Q["defer"], job.id, job.lease_token, delay_s, reason) is not None


async def prune_done(pool: Any, retention_s: float, *, batch: int = 1000) -> int:
    """Delete jobs finished more than ``retention_s`` ago, in short transactions; returns how
    many. Without this the table (and every count over it) grows with every call ever taken."""
    pruned = 0
    while True:
        async with pool.acquire() as conn:
            status = await conn.execute(Q["prune_done"], float(retention_s), batch)
        deleted = int(status.split()[-1])
        pruned += deleted
        if deleted < batch:
            return pruned


async def stats(conn: Conn) -> dict[str, tuple[int, float]]:
    return {r["state"]: (r["jobs"], float(r["oldest_s"])) for r in await conn.fetch(Q["stats"])}
