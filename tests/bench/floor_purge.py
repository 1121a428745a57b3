"""The purge's floor (issue 18 goal 3b): where the line of ``bench_purge`` lies on this machine,
side by side in one run, on one PostgreSQL and one moto S3 server:

- **plain**: ``delete_objects`` of 20,000 keys, 1,000 a call, one client (``bench_purge``'s
  baseline);
- **floor**: callvault's purge pass with its ledger appends and audit entries left out: the
  claim (with its second look for holds and requests), the key shredding, ``DeleteObjects`` and
  the rows marked ``purged``, the same batches and workers;
- **callvault**: the whole pass, as ``callvault purge`` runs it (every recording's ``purged``
  event chained to its call's ledger, the audit entry of each batch).

Each side's 20,000 recordings (rows and 1 KiB objects) are seeded just before it runs, in a
bucket of its own; the sides run in turn, in a rotated order each round. For each: seconds,
its ratio to plain, and the CPU seconds spent meanwhile by moto, PostgreSQL (postmaster and
every child), this process (the purge's Python, or boto3's for plain) and the whole machine,
with how busy its cores were (near 100%: CPU was the limit) and the ratio the side would reach
if that CPU kept every core busy all the time (its bound on this machine). What lies between
floor and callvault is the ledger's and audit's cost; between plain and floor, the database
work of a purge that keeps its rows' state. Not in ``make bench`` (no results file): a diagnostic,
``python -m tests.bench.floor_purge``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import asyncpg

from retention import purge
from service.db import tenancy
from service.db.pool import create_pool
from service.storage.s3 import S3Store
from tests.bench import procs
from tests.bench.bench_purge import N, delete_plain, put_many
from tests.bench.harness import make_bucket, moto, postgres

ROUNDS = 2
SIDES = ("plain", "floor", "callvault")


@dataclass
class Side:
    name: str
    cpu: procs.CpuSplit
    seconds: list[float] = field(default_factory=list)

    def line(self, plain_s: float) -> str:
        total = sum(self.seconds)
        each = ", ".join(f"{s:.2f}" for s in self.seconds)
        return (
            f"{self.name:<10} {total / len(self.seconds):6.2f} s ({each})  ratio "
            f"{plain_s / total:.2f}  CPU s a round: {self.cpu.text(len(self.seconds))}; "
            f"every core busy: ratio <= {plain_s / self.cpu.fastest_s:.2f}"
        )


async def _nothing(*_: Any, **__: Any) -> int:
    return 0


@contextlib.contextmanager
def _without_ledger_and_audit() -> Iterator[None]:
    with (
        mock.patch.object(purge, "ledger", SimpleNamespace(append_many=_nothing)),
        mock.patch.object(purge, "audit", SimpleNamespace(record=_nothing)),
    ):
        yield


async def _seed(pool: asyncpg.Pool[Any], endpoint: str, bucket: str) -> list[str]:
    """N expired stored recordings of N calls in tenant ``default``, their objects in ``bucket``."""
    tag = uuid.uuid4().hex[:8]
    with tenancy.as_tenant(tenancy.DEFAULT):
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "WITH c AS (INSERT INTO calls (platform, external_id, policy, outcome, outcome_at)"
                " SELECT 'twilio', 'CA' || $3 || g, '{}', 'consented', now()"
                " FROM generate_series(1, $1) g RETURNING id)"
                " INSERT INTO recordings (call_id, platform, external_id, state, object_key,"
                " sha256, size_bytes, stored_at, retain_until)"
                " SELECT id, 'twilio', 'RE' || id, 'stored', 'recordings/' || id || '.wav', 'x',"
                " $2, now(), now() - interval '1 second' FROM c RETURNING object_key",
                N,
                1024,
                tag,
            )
    keys = [r["object_key"] for r in rows]
    await asyncio.to_thread(put_many, endpoint, bucket, keys)
    return keys


async def _timed(side: Side, work: Callable[[], Awaitable[None]]) -> None:
    with side.cpu.measuring():
        started = time.perf_counter()
        await work()
        side.seconds.append(time.perf_counter() - started)


async def run(url: str, endpoint: str) -> None:
    conn = await asyncpg.connect(url)
    data_dir = await conn.fetchval("SHOW data_directory")
    await conn.close()
    postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    moto_pid = procs.child_running(os.getpid(), "moto.server")
    readers = {
        "moto": lambda: procs.cpu_seconds(moto_pid),
        "postgres": lambda: procs.postgres_cpu_seconds(postmaster),
        "bench": lambda: sum(os.times()[:2]),
    }
    sides = {name: Side(name, procs.CpuSplit(dict(readers))) for name in SIDES}
    pool = await create_pool(url, min_size=1, max_size=4)
    try:
        for round_ in range(ROUNDS):
            order = SIDES[round_ % len(SIDES) :] + SIDES[: round_ % len(SIDES)]
            for name in order:
                bucket = make_bucket(endpoint)
                if name == "plain":
                    keys = [f"plain/{i}.wav" for i in range(N)]
                    await asyncio.to_thread(put_many, endpoint, bucket, keys)

                    async def plain(bucket: str = bucket, keys: list[str] = keys) -> None:
                        await asyncio.to_thread(delete_plain, endpoint, bucket, keys)

                    await _timed(sides[name], plain)
                    continue
                await _seed(pool, endpoint, bucket)
                store = S3Store(bucket, endpoint_url=endpoint, region="us-east-1")

                async def ours(store: S3Store = store, bare: bool = name == "floor") -> None:
                    with _without_ledger_and_audit() if bare else contextlib.nullcontext():
                        result = await purge.purge_once(pool, store)
                    assert result.purged == N and not result.failed, result

                await _timed(sides[name], ours)
                await store.close()
            print(f"round {round_ + 1} of {ROUNDS} done", flush=True)
    finally:
        await pool.close()
    plain_s = sum(sides["plain"].seconds)
    print(f"purge of {N:,} recordings, {ROUNDS} rounds, mean seconds (each round), ratio to plain:")
    for side in sides.values():
        print(side.line(plain_s))


if __name__ == "__main__":
    with postgres() as database_url, moto() as s3:
        asyncio.run(run(database_url, s3))
