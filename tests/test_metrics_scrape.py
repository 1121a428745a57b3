"""``/metrics`` must not compete with webhooks (issue 12, item 11): database figures are read at
most once per interval by one scrape at a time, over a pool of their own; a scrape token can be
required; finished jobs are pruned after their retention by the database's clock."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import jobs
from service.db.pool import create_pool
from service.errors import DatabaseUnavailable
from service.observability import metrics
from service.observability.metrics import DSAR_COUNTS, Figures, FiguresCache
from service.web.context import POOL
from tests.conftest import Service

TOKEN = "scrape-" + "t" * 32


async def _scrape(
    http: aiohttp.ClientSession, service: Service, token: str | None = None
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(service.base_url + "/metrics", headers=headers) as resp:
        return resp.status, await resp.text()


async def test_forty_concurrent_scrapes_read_the_database_once(
    service: Service, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    real_read = metrics.read_figures

    async def counted(conn: Any, max_tenants: int = 100) -> Figures:
        nonlocal reads
        reads += 1
        return await real_read(conn, max_tenants)

    monkeypatch.setattr(metrics, "read_figures", counted)
    answers = await asyncio.gather(*(_scrape(http, service) for _ in range(40)))
    assert [status for status, _ in answers] == [200] * 40
    assert all('callvault_jobs{state="queued",tenant="default"}' in text for _, text in answers)
    assert all("callvault_database_reachable 1.0" in text for _, text in answers)
    assert reads == 1


async def test_scrapes_do_not_take_the_webhooks_connections(
    service: Service, http: aiohttp.ClientSession
) -> None:
    assert service.server is not None
    pool = service.server.app[POOL]
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        status, text = await asyncio.wait_for(_scrape(http, service), 20)
    finally:
        for conn in held:
            await pool.release(conn)
    assert status == 200
    assert "callvault_database_reachable 1.0" in text


async def test_scrape_token_is_required_when_set(
    service: Service, http: aiohttp.ClientSession
) -> None:
    assert (await _scrape(http, service))[0] == 200
    await service.reconfigure(metrics_token=TOKEN)
    for token in (None, "wrong", TOKEN + "x"):
        status, body = await _scrape(http, service, token)
        assert status == 401
        assert '"code": "unauthorized"' in body
    status, body = await _scrape(http, service, TOKEN)
    assert status == 200 and "callvault_http_requests" in body


async def test_figures_cache_reads_once_per_interval_and_keeps_the_last_on_failure() -> None:
    now = [100.0]
    cache = FiguresCache(15.0, clock=lambda: now[0])
    figures = Figures(
        {"default": {"done": (3, 1.0)}},
        {"default": 1},
        {"default": 2},
        {"default": dict.fromkeys(DSAR_COUNTS, 3)},
    )
    outcomes: list[Figures | Exception] = [figures, DatabaseUnavailable("down")]

    async def read() -> Figures:
        await asyncio.sleep(0)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    got = await asyncio.gather(*(cache.get(read) for _ in range(40)))
    assert got == [figures] * 40 and cache.reads == 1 and cache.reachable
    now[0] += 14.0
    assert await cache.get(read) is figures and cache.reads == 1
    now[0] += 2.0
    assert await cache.get(read) is figures  # the read failed: the last figures stay
    assert cache.reads == 2 and not cache.reachable and cache.read_at == 100.0
    assert await cache.get(read) is figures and cache.reads == 2  # no retry within the interval


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    p = await create_pool(database_url, min_size=1, max_size=2)
    yield p
    await p.close()


async def test_finished_jobs_are_pruned_after_their_retention_by_the_database_clock(
    pool: asyncpg.Pool[Any], db: asyncpg.Connection
) -> None:
    ids = {}
    for name in ("old_done", "recent_done", "old_dead", "old_queued"):
        ids[name] = await jobs.enqueue(db, "test", {"name": name})
    await db.execute(
        "UPDATE jobs SET state = 'done', finished_at = now() - interval '8 days' WHERE id = $1",
        ids["old_done"],
    )
    await db.execute(
        "UPDATE jobs SET state = 'done', finished_at = now() - interval '6 days' WHERE id = $1",
        ids["recent_done"],
    )
    await db.execute(
        "UPDATE jobs SET state = 'dead', finished_at = now() - interval '30 days' WHERE id = $1",
        ids["old_dead"],
    )
    await db.execute(
        "UPDATE jobs SET created_at = now() - interval '30 days' WHERE id = $1", ids["old_queued"]
    )
    assert await jobs.prune_done(pool, 7 * 86400, batch=1) == 1
    left = {r["id"] for r in await db.fetch("SELECT id FROM jobs")}
    assert left == {ids["recent_done"], ids["old_dead"], ids["old_queued"]}


async def test_pruning_takes_every_batch(pool: asyncpg.Pool[Any], db: asyncpg.Connection) -> None:
    for i in range(7):
        await jobs.enqueue(db, "test", {"i": i})
    await db.execute("UPDATE jobs SET state = 'done', finished_at = now() - interval '8 days'")
    assert await jobs.prune_done(pool, 7 * 86400, batch=3) == 7
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


def _series(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in a scrape, e.g. ``{'tenant="beta"': 2.0}``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            found[labels] = float(value)
    return found


async def test_figures_are_per_tenant_and_the_labels_are_bounded(
    service: Service, http: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    """Issue 13 item 7: each tenant's holds, jobs and recordings at the platform under its own
    ``tenant`` label, read in one grouped pass; past CALLVAULT_METRICS_TENANTS the newest
    tenants are summed under ``_other``."""
    from service.db import tenancy

    for n, tenant in enumerate(("beta", "gamma"), start=1):
        await db.execute(
            "INSERT INTO tenants (id, name, created_at) "
            "VALUES ($1, $1, now() + make_interval(secs => $2))",
            tenant,
            float(n),
        )
    for tenant, holds_n, jobs_n in (("default", 1, 0), ("beta", 2, 3), ("gamma", 4, 1)):
        await tenancy.set_tenant(db, tenant)
        call_id = await db.fetchval(
            "INSERT INTO calls (platform, external_id, policy) VALUES ('twilio', $1, '{}') "
            "RETURNING id",
            f"CA-{tenant}",
        )
        for _ in range(holds_n):
            await db.execute(
                "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'case', 'test')",
                call_id,
            )
        for i in range(jobs_n):
            await jobs.enqueue(db, "recording", {"call_sid": f"CA-{tenant}", "i": i})
    await tenancy.set_tenant(db, tenancy.DEFAULT)

    status, text = await _scrape(http, service)
    assert status == 200
    assert _series(text, "callvault_holds_active") == {
        'tenant="default"': 1.0,
        'tenant="beta"': 2.0,
        'tenant="gamma"': 4.0,
    }
    assert _series(text, "callvault_recordings_at_platform") == {
        'tenant="default"': 0.0,
        'tenant="beta"': 3.0,
        'tenant="gamma"': 1.0,
    }
    queued = _series(text, "callvault_jobs")
    assert queued['state="queued",tenant="beta"'] == 3.0
    assert queued['state="queued",tenant="default"'] == 0.0  # a quiet tenant shows zeros

    await service.reconfigure(metrics_tenants=2)  # the oldest two keep their names
    status, text = await _scrape(http, service)
    assert _series(text, "callvault_holds_active") == {
        'tenant="default"': 1.0,
        'tenant="beta"': 2.0,
        'tenant="_other"': 4.0,
    }
    assert _series(text, "callvault_jobs")['state="queued",tenant="_other"'] == 1.0
    assert not any('tenant="gamma"' in line for line in text.splitlines())


async def test_a_scrape_shows_the_descriptors_open_against_the_limit(
    service: Service, http: aiohttp.ClientSession
) -> None:
    # on uvloop a replica out of descriptors drops connections unlogged: this is the warning
    status, text = await _scrape(http, service)
    assert status == 200
    figures = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(("process_open_fds ", "process_max_fds "))
    }
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert figures["process_max_fds"] == soft
    # the service runs in this process; sockets come and go between the scrape and the count
    assert abs(figures["process_open_fds"] - len(os.listdir("/proc/self/fd"))) <= 10
