"""``GET /metrics`` in Prometheus text format (``prometheus-client``).

State that lives in PostgreSQL (jobs by state and the age of the oldest, recordings still at
the platform, holds, open requests) is read from the database, so every replica reports the
same truth and nothing depends on which replica did the work. Those figures carry a ``tenant``
label, grouped by ``tenant_id`` in one read as the platform: at most
``CALLVAULT_METRICS_TENANTS`` tenants (the oldest first) are named, the rest summed under
``_other`` (a tenant id never starts with ``_``), so a BPO with thousands of clients cannot
blow up the number of series. Scrapes must never compete with
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
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from service.db import queries, tenancy
from service.db.pool import reach
from service.errors import DatabaseUnavailable, Unauthorized
from service.web.context import SETTINGS

log = logging.getLogger(__name__)
RQ = queries.load("retention")
MQ = queries.load("service.observability", "metrics.sql")
routes = web.RouteTableDef()
JOB_STATES = ("queued", "running", "done", "dead")
OTHER_TENANTS = "_other"  # the tenants beyond the bound, summed


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_open_fds beside process_max_fds: on uvloop a replica out of descriptors
        # closes the connections it cannot take without logging them (libuv's EMFILE trick),
        # so this is where an operator sees it coming
        ProcessCollector(registry=self.registry)
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.jobs = Gauge(
            "callvault_jobs", "Jobs by state", ["state", "tenant"], registry=self.registry
        )
        self.oldest = Gauge(
            "callvault_jobs_oldest_age_seconds",
            "Age of the oldest job in each state",
            ["state", "tenant"],
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
        self.purge_batch_errors = Counter(
            "callvault_purge_batch_errors",
            "Purge batches that failed with an error and rolled back (retried next pass)",
            registry=self.registry,
        )
        self.holds = Gauge(
            "callvault_holds_active", "Legal holds in force", ["tenant"], registry=self.registry
        )
        # per tenant (at most CALLVAULT_METRICS_TENANTS of them by name; the rest as "_other")
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
            ["tenant"],
            registry=self.registry,
        )
        self.paused = Gauge(
            "callvault_recordings_paused",
            "Calls of the last day whose recording is paused (card payments): call=in_progress, "
            "paused now; call=ended, the pause was never resumed (the rest of the call is not "
            "recorded)",
            ["tenant", "call"],
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

    def http_children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The request counter's and latency histogram's children for one route, method and
        status: looked up once (``labels`` takes a lock and builds its key every time). Only a
        route's own methods are kept: an unmatched request may say any method it likes."""
        key = (route, method, status)
        found = self._http.get(key)
        if found is None:
            found = (
                self.http_requests.labels(route, method, str(status)),
                self.http_latency.labels(route),
            )
            if route != "unmatched":
                self._http[key] = found
        return found


METRICS = web.AppKey("metrics", Metrics)
# Scrapes read the database over this pool of one connection, never the webhooks' pool.
METRICS_POOL: web.AppKey[asyncpg.Pool[Any]] = web.AppKey("metrics_pool")


OTHER_TENANTS = "_other"
PAUSED_CALLS = ("in_progress", "ended")
DSAR_COUNTS = (
    "open",
    "complete_overdue",
    "acknowledge_overdue",
    "complete_due_soon",
    "acknowledge_due_soon",
)


@dataclass(frozen=True)
class Figures:
    # tenant label -> state -> (jobs, age of the oldest in seconds)
    jobs: dict[str, dict[str, tuple[int, float]]]
    at_platform: dict[str, int]  # tenant label -> recordings still at the platform
    holds: dict[str, int]  # tenant label -> active holds
    # tenant label -> the DSAR_COUNTS
    dsar: dict[str, dict[str, int]]
    # tenant label -> PAUSED_CALLS -> calls whose recording is paused
    paused: dict[str, dict[str, int]] = field(default_factory=dict)


class TenantLabels:
    """Which label a tenant's figures go under: its id for the labelled ones, else ``_other``.
    Every labelled tenant (and ``_other``, when some tenant is folded into it) is listed, so a
    tenant with nothing to count shows zeros instead of no series."""

    def __init__(self, labelled: list[str], total: int) -> None:
        self._named = set(labelled)
        self.all = [*labelled, *([OTHER_TENANTS] if total > len(labelled) else [])]

    def __call__(self, tenant_id: str) -> str:
        return tenant_id if tenant_id in self._named else OTHER_TENANTS


def _counts(rows: list[Any], label: TenantLabels) -> dict[str, int]:
    out = dict.fromkeys(label.all, 0)
    for r in rows:
        key = label(r["tenant_id"])
        out[key] = out.get(key, 0) + int(r["n"])
    return out


def _dsar_counts(
    rows: list[Any], label: TenantLabels, keys: tuple[str, ...] = DSAR_COUNTS
) -> dict[str, dict[str, int]]:
    out = {t: dict.fromkeys(keys, 0) for t in label.all}
    for r in rows:
        into = out.setdefault(label(r["tenant_id"]), dict.fromkeys(keys, 0))
        for key in keys:
            into[key] += int(r[key])
    return out


async def read_figures(conn: Any, max_tenants: int = 100) -> Figures:
    from retention.clock import DUE_SOON_S

    label = TenantLabels(
        [r["id"] for r in await conn.fetch(MQ["labelled_tenants"], max_tenants)],
        await conn.fetchval(MQ["tenant_count"]),
    )
    by_tenant: dict[str, dict[str, tuple[int, float]]] = {t: {} for t in label.all}
    for r in await conn.fetch(MQ["jobs_by_tenant"]):
        states = by_tenant.setdefault(label(r["tenant_id"]), {})
        count, oldest = states.get(r["state"], (0, 0.0))
        states[r["state"]] = (count + r["jobs"], max(oldest, float(r["oldest_s"])))
    at_platform = _counts(await conn.fetch(MQ["at_platform_by_tenant"]), label)
    holds_active = _counts(await conn.fetch(MQ["holds_by_tenant"]), label)
    dsar = await conn.fetch(RQ["request_counts_by_tenant"], float(DUE_SOON_S))
    paused = _dsar_counts(list(await conn.fetch(MQ["paused_by_tenant"])), label, PAUSED_CALLS)
    return Figures(by_tenant, at_platform, holds_active, _dsar_counts(list(dsar), label), paused)


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
        # one read of every tenant's figures, grouped by tenant in the database
        with tenancy.as_tenant(tenancy.ALL):
            async with reach(
                request.app[METRICS_POOL],
                acquire_timeout_s=settings.db_acquire_timeout_s,
                work_timeout_s=max(settings.db_statement_timeout_s, 10.0),
            ) as conn:
                return await read_figures(conn, settings.metrics_tenants)

    figures = await cache.get(read)
    m.database_reachable.set(1 if cache.reachable else 0)
    if figures is not None:
        for gauge in (m.jobs, m.oldest, m.at_platform, m.holds):
            gauge.clear()  # a tenant gone since the last read leaves no series behind
        for tenant, states in figures.jobs.items():
            for state in JOB_STATES:
                count, oldest = states.get(state, (0, 0.0))
                m.jobs.labels(state, tenant).set(count)
                m.oldest.labels(state, tenant).set(oldest)
        for tenant, n in figures.at_platform.items():
            m.at_platform.labels(tenant).set(n)
        for tenant, n in figures.holds.items():
            m.holds.labels(tenant).set(n)
        for gauge in (m.dsar_open, m.dsar_overdue, m.dsar_due_soon, m.paused):
            gauge.clear()
        for tenant, calls in figures.paused.items():
            for state, n in calls.items():
                m.paused.labels(tenant, state).set(n)
        for tenant, counts in figures.dsar.items():
            m.dsar_open.labels(tenant).set(counts["open"])
            for deadline in ("acknowledge", "complete"):
                m.dsar_overdue.labels(tenant, deadline).set(counts[f"{deadline}_overdue"])
                m.dsar_due_soon.labels(tenant, deadline).set(counts[f"{deadline}_due_soon"])
        m.figures_age.set(cache.clock() - cache.read_at)
    return web.Response(
        body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
