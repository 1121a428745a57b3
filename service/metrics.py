"""``GET /metrics`` in Prometheus text format (``prometheus-client``).

State that lives in PostgreSQL (jobs by state and the age of the oldest, recordings still at
the platform) is read at scrape time, so every replica reports the same truth and nothing
depends on which replica did the work.
"""

from __future__ import annotations

import logging

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
from service.context import POOL
from service.db import queries
from service.http_errors import error_response

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
        self.dsar_open = Gauge(
            "callvault_dsar_open", "Data-subject requests not completed", registry=self.registry
        )
        self.dsar_overdue = Gauge(
            "callvault_dsar_overdue",
            "Data-subject requests not completed past their due date",
            registry=self.registry,
        )
        self.at_platform = Gauge(
            "callvault_recordings_at_platform",
            "Recordings the platform still holds: intake or deletion not finished (or dead)",
            registry=self.registry,
        )


METRICS = web.AppKey("metrics", Metrics)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    try:
        async with request.app[POOL].acquire() as conn:
            by_state = await jobs.stats(conn)
            at_platform = await conn.fetchval(Q["recordings_at_platform"])
            holds_active = await conn.fetchval(RQ["active_holds_count"])
            dsar = await conn.fetchrow(RQ["request_counts"])
            assert dsar is not None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("metrics: database unreachable: %s", exc)
        return error_response(503, "not_ready", "database unreachable")
    for state in JOB_STATES:
        count, oldest = by_state.get(state, (0, 0.0))
        m.jobs.labels(state).set(count)
        m.oldest.labels(state).set(oldest)
    m.at_platform.set(at_platform)
    m.holds.set(holds_active)
    m.dsar_open.set(dsar["open"])
    m.dsar_overdue.set(dsar["overdue"])
    return web.Response(
        body=generate_latest(m.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
