"""``GET /metrics`` in Prometheus text format (``prometheus-client``).

State that lives in PostgreSQL (jobs by state and the age of the oldest, recordings still at
the platform, holds, open requests) is read from the database, so every replica reports the
same truth and nothing depends on which replica did the work. Scrapes must never compete with
webhooks: those figures are read at most every ``CALLVAULT_METRICS_CACHE`` seconds, by one
scrape at a time (the others wait for it and share its result), over a pool of its own with one
connection. When the database cannot be reached the scrape still answers, with the process's
own counters (the calls let through unrecorded among them), the last figures read, their age,
and ``callvault_database_reachable 0``. With ``CALLVAULT_METRICS_TOKEN`` set, a scrape must send
it as a bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from service import jobs
from service.context import SETTINGS
from service.db import queries, tenancy
from service.db.pool import reach
from service.errors import DatabaseUnavailable, Unauthorized

log = logging.getLogger(__name__)
Q = queries.load("service.jobs")
RQ = queries.load("retention")
routes = web.RouteTableDef()
JOB_STATES = ("queued", "running", "done", "dead")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Gauge("callvault_jobs", "Jobs by state", ["state"], registry=self.registry)
        self.oldest = Gauge(
            "callvault_jobs_oldest_age_seconds",
            "Age of the oldest job in each state",
            ["state"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "callvault_http_requests",
            "HTTP requests by route pattern, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "callvault_http_request_duration_seconds",
            "Time to answer, by route pattern",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.consent_outcomes = Counter(
            "callvault_consent_outcomes",
            "Calls whose outcome this replica decided, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.voice_fallbacks = Counter(
            "callvault_voice_fallbacks",
            "Calls let through without recording because the database could not be reached",
            ["step"],
            registry=self.registry,
        )
        self.intake_bytes = Counter(
            "callvault_intake_bytes", "Bytes of recordings stored", registry=self.registry
        )
        self.intake_duration = Histogram(
            "callvault_intake_duration_seconds",
            "Download, upload and verification of one recording",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
            registry=self.registry,
        )
        self.draining = Gauge(
            "callvault_draining", "1 while this replica shuts down", registry=self.registry
        )
        self.purged = Counter(
            "callvault_purged_recordings",
            "Recordings purged by this replica",
            registry=self.registry,
        )
        self.purge_failures = Counter(
            "callvault_purge_failures",
            "Recordings whose deletion the store refused (retried next pass)",
            registry=self.registry,
        )
        self.holds = Gauge("callvault_holds_active", "Legal holds in force", registry=self.registry)
        # per tenant (at most TENANT_LABELS of them by name; the rest summed as "_other")
        self.dsar_open = Gauge(
            "callvault_dsar_open",
            "Data-subject requests not completed or rejected",
            ["tenant"],
            registry=self.registry,
        )
        self.dsar_overdue = Gauge(
            "callvault_dsar_overdue",
            "Open data-subject requests past a deadline (acknowledge: 2 working days; "
            "complete: due_at), by the database's clock",
            ["tenant", "deadline"],
            registry=self.registry,
        )
        self.dsar_due_soon = Gauge(
            "callvault_dsar_due_soon",
            "Open data-subject requests whose deadline is within the next 2 days",
            ["tenant", "deadline"],
            registry=self.registry,
        )
        self.at_platform = Gauge(
            "callvault_recordings_at_platform",
            "Recordings the platform still holds: intake or deletion not finished (or dead)",
            registry=self.registry,
        )
        self.database_reachable = Gauge(
            "callvault_database_reachable",
            "1 if the last read of the database figures succeeded",
            registry=self.registry,
        )
        self.figures_age = Gauge(
            "callvault_database_figures_age_seconds",
            "Age of the database figures shown (jobs, holds, requests, at platform)",
            registry=self.registry,
        )


METRICS = web.AppKey("metrics", Metrics)
# Scrapes read the database over this pool of one connection, never the webhooks' pool.
METRICS_POOL: web.AppKey[asyncpg.Pool[Any]] = web.AppKey("metrics_pool")


# A label value per tenant, for so many tenants at most: beyond them (the fewest open requests
# first) they are summed under "_other", so a BPO with thousands of tenants cannot blow up the
# number of series a scrape returns.
TENANT_LABELS = 50
OTHER_TENANTS = "_other"
DSAR_COUNTS = (
    "open",
    "complete_overdue",
    "acknowledge_overdue",
    "complete_due_soon",
    "acknowledge_due_soon",
)


@dataclass(frozen=True)
class Figures:
    jobs: dict[str, tuple[int, float]]
    at_platform: int
    holds: int
    # tenant label -> the DSAR_COUNTS
    dsar: dict[str, dict[str, int]]


def bounded_by_tenant(rows: list[Any], limit: int = TENANT_LABELS) -> dict[str, dict[str, int]]:
    """Per-tenant counts with at most ``limit`` tenants named (the most open requests first);
    the rest summed under ``_other``."""
    ranked = sorted(rows, key=lambda r: (-r["open"], r["tenant_id"]))
    out: dict[str, dict[str, int]] = {}
    for i, row in enumerate(ranked):
        label = row["tenant_id"] if i < limit else OTHER_TENANTS
        into = out.setdefault(label, dict.fromkeys(DSAR_COUNTS, 0))
        for key in DSAR_COUNTS:
            into[key] += int(row[key])
    return out


async def read_figures(conn: Any) -> Figures:
    from retention.clock import DUE_SOON_S

    by_state = await jobs.stats(conn)
    at_platform = await conn.fetchval(Q["recordings_at_platform"])
    holds_active = await conn.fetchval(RQ["active_holds_count"])
    dsar = await conn.fetch(RQ["request_counts_by_tenant"], float(DUE_SOON_S))
    return Figures(by_state, at_platform, holds_active, bounded_by_tenant(list(dsar)))


class FiguresCache:
    """The database figures, read at most every ``max_age_s``, one read at a time."""

    def __init__(self, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self.reads = 0  # reads attempted, for tests and curiosity
        self.figures: Figures | None = None
        self.read_at = -math.inf  # when the figures shown were read
        self.reachable = False
        self._tried_at = -math.inf  # when a read was last attempted, successful or not
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self.clock() - self._tried_at < self.max_age_s

    async def get(self, read: Callable[[], Awaitable[Figures]]) -> Figures | None:
        if self._fresh():
            return self.figures
        async with self._lock:
            if self._fresh():  # another scrape read them while this one waited
                return self.figures
            self.reads += 1
            try:
                self.figures = await read()
            except DatabaseUnavailable:
                self.reachable = False  # keep the last figures; their age says how old
            else:
                self.reachable = True
                self.read_at = self.clock()
            finally:
                self._tried_at = self.clock()
        return self.figures


FIGURES = web.AppKey("metrics_figures", FiguresCache)


def _check_token(request: web.Request, expected: str | None) -> None:
    if expected is None:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized("/metrics wants the scrape token as a bearer token")


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    _check_token(request, settings.metrics_token)
    m = request.app[METRICS]
    cache = request.app[FIGURES]

    async def read() -> Figures:
        # the figures are the deployment's, across tenants (requests carry a tenant label)
        with tenancy.as_tenant(tenancy.ALL):
            async with reach(
                request.app[METRICS_POOL],
                acquire_timeout_s=settings.db_acquire_timeout_s,
                work_timeout_s=max(settings.db_statement_timeout_s, 10.0),
            ) as conn:
                return await read_figures(conn)

    figures = await cache.get(read)
    m.database_reachable.set(1 if cache.reachable else 0)
    if figures is not None:
        for state in JOB_STATES:
            count, oldest = figures.jobs.get(state, (0, 0.0))
            m.jobs.labels(state).set(count)
            m.oldest.labels(state).set(oldest)
        m.at_platform.set(figures.at_platform)
        m.holds.set(figures.holds)
        for gauge in (m.dsar_open, m.dsar_overdue, m.dsar_due_soon):
            gauge.clear()  # a tenant with nothing open any more has no series left
        for tenant, counts in figures.dsar.items():
            m.dsar_open.labels(tenant).set(counts["open"])
            for deadline in ("acknowledge", "complete"):
                m.dsar_overdue.labels(tenant, deadline).set(counts[f"{deadline}_overdue"])
                m.dsar_due_soon.labels(tenant, deadline).set(counts[f"{deadline}_due_soon"])
        m.figures_age.set(cache.clock() - cache.read_at)
    return web.Response(
        body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
