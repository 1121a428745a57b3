"""``create_app(settings)``: the aiohttp application with its resources in ``cleanup_ctx``.

Settings must be complete (database URL resolved, secrets present): the CLI's ``serve`` does
that, tests build their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable

import aiohttp
from aiohttp import web

from prompts.render import ensure_built
from retention import dsar  # noqa: F401 - registers its job kind
from retention import scheduler as retention_scheduler
from retention.purge import purge_once
from service.api import admin as admin_api  # noqa: F401 - registers its operations
from service.api import compliance as compliance_api  # noqa: F401 - registers its operations
from service.api import spec as api_spec
from service.api import tenants as tenants_api  # noqa: F401 - registers its operations
from service.auth.http import BRAKE, FailureBrake
from service.config import ProcessRole, Settings
from service.console import api as console_api  # noqa: F401 - registers its operations
from service.console import page as console_page
from service.db import roles, tenancy
from service.db.migrations import migrate
from service.db.pool import create_pool
from service.errors import ConfigError
from service.intake import job as intake_job  # noqa: F401 - registers its job kind
from service.jobs import prune_done as prune_jobs
from service.jobs.registry import Resources, registered
from service.jobs.worker import JOB_WORKER, Worker, WorkerConfig
from service.ledger import seals as ledger_seals
from service.links import http as files_http
from service.links.signed import LINKS, LinkSigner
from service.notices import http as prompts_http
from service.notices.library import PromptLibrary
from service.observability import metrics
from service.observability.metrics import FIGURES, METRICS, METRICS_POOL, FiguresCache, Metrics
from service.observability.observe import hide_server_software, observe_middleware
from service.ops.workdir import remove_stale
from service.pauses import api as pauses_api
from service.personal.numbers import PhoneVault
from service.personal.rehash import startup_ctx as rehash_ctx
from service.platforms import installed as platforms
from service.platforms.reconcile import ReconcileReport
from service.platforms.stringee import reconcile as stringee_reconcile
from service.platforms.stringee.sources import StringeeMediaSources
from service.platforms.twilio import reconcile as twilio_reconcile
from service.platforms.twilio.accounts import TwilioMediaSources
from service.qa import api as qa_api  # noqa: F401 - registers its operations
from service.qa import page as qa_page
from service.receipts import api as receipts_api  # noqa: F401 - registers its operations
from service.storage.registry import StoreRegistry
from service.tenants import policies as tenant_policies
from service.web import health
from service.web.context import (
    HTTP_CLIENT,
    LIFECYCLE,
    POOL,
    PROMPTS,
    RLS_BYPASS,
    SETTINGS,
    STORE,
    STORES,
    VAULT,
    Lifecycle,
)
from service.web.http_errors import error_middleware
from service.web.listener import EXIT_REQUESTED

log = logging.getLogger(__name__)

# purge, seals and reconcile: only in a process that runs jobs (not a web replica)
SCHEDULED_PASSES = web.AppKey("scheduled_passes", retention_scheduler.Schedule)


def create_app(settings: Settings, *, apply_migrations: bool = True) -> web.Application:
    if not settings.database_url:
        raise ConfigError("CALLVAULT_DATABASE_URL: not resolved (the CLI starts the embedded one)")
    if not settings.secret_key:
        raise ConfigError("CALLVAULT_SECRET_KEY: not set")
    if settings.role is ProcessRole.WORKER and not settings.runs_jobs:
        raise ConfigError("CALLVAULT_WORKERS: 0 leaves a worker process nothing to do")
    app = web.Application(
        middlewares=[observe_middleware, error_middleware], client_max_size=settings.max_body_bytes
    )
    hide_server_software(app)
    app[LIFECYCLE] = Lifecycle()
    app[LINKS] = LinkSigner(
        settings.secret_key, public_url=settings.public_url, ttl_s=settings.link_ttl_s
    )
    app[BRAKE] = FailureBrake()
    app[SETTINGS] = settings
    app[EXIT_REQUESTED] = asyncio.Event()  # the listener exits non-zero once it is set
    app[VAULT] = PhoneVault(settings.secret_key, settings.previous_secret_key)

    async def database(app: web.Application) -> AsyncIterator[None]:
        url = settings.database_url
        assert url is not None
        pool = await create_pool(url, application_name=settings.application_name)
        try:
            async with pool.acquire() as conn:
                if apply_migrations:
                    for m in await migrate(conn):
                        log.info("applied migration %04d_%s", m.version, m.name)
                app[RLS_BYPASS] = await roles.check_service_role(
                    conn, allow_bypass=settings.allow_rls_bypass
                )
        except BaseException:
            await pool.close()
            raise
        app[POOL] = pool
        # scrapes get one connection of their own, opened on the first scrape
        app[METRICS_POOL] = await create_pool(
            url, min_size=0, max_size=1, application_name=settings.application_name
        )
        yield
        await app[METRICS_POOL].close()
        await pool.close()

    async def prompt_library(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, ensure_built, settings.prompts_dir)
            library = await loop.run_in_executor(None, PromptLibrary.load, settings.prompts_dir)
        except Exception:
            # Callers must still be told: Twilio's <Say> reads the catalogue text instead.
            log.exception("cannot build the prompt audio; notices fall back to <Say>")
            library = PromptLibrary({})
        app[PROMPTS] = library
        yield

    async def stale_work_files(app: web.Application) -> AsyncIterator[None]:
        # a replica killed mid-intake leaves its temporary folder; a day later it is garbage
        await asyncio.get_running_loop().run_in_executor(None, remove_stale, settings.home / "tmp")
        yield

    async def storage(app: web.Application) -> AsyncIterator[None]:
        # every tenant's store, resolved once and cached (tenant_storage re-read every few
        # seconds); the shared one is also app[STORE], which readiness checks
        stores = StoreRegistry.from_settings(settings, reader=app[POOL].acquire)
        app[STORES] = stores
        app[STORE] = stores.shared
        yield
        await stores.close()

    async def http_client(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        ) as session:
            app[HTTP_CLIENT] = session
            yield

    async def job_worker(app: web.Application) -> AsyncIterator[None]:
        if not settings.runs_jobs:  # a web replica (CALLVAULT_ROLE=web) or CALLVAULT_WORKERS=0
            yield
            return
        # job kinds come from their own modules (service.jobs.registry.job_kind)
        worker = Worker(
            app[POOL],
            registered(),
            WorkerConfig(
                concurrency=settings.workers,
                lease_s=settings.job_lease_s,
                backoff_base_s=settings.job_backoff_base_s,
                backoff_cap_s=settings.job_backoff_cap_s,
            ),
            Resources(
                settings, app[STORES], app[VAULT], platforms.media_sources(app), app[METRICS]
            ),
        )

        def died(cause: BaseException | None) -> None:
            # nothing in the process brings the loop back: exit non-zero so the supervisor
            # restarts it (/healthz says 503 worker_stopped meanwhile)
            log.error(
                "the job worker's claim loop ended by itself (%s); exiting to be restarted",
                "no exception" if cause is None else type(cause).__name__,
            )
            app[EXIT_REQUESTED].set()

        worker.start(on_died=died)
        app[JOB_WORKER] = worker  # /healthz fails if its loop has died
        yield
        await worker.stop()

    async def start_draining(app: web.Application) -> None:
        # aiohttp has stopped accepting connections; in-flight requests get shutdown_timeout
        app[LIFECYCLE].draining = True
        app[METRICS].draining.set(1)
        log.info("draining: no new work is taken")

    async def purge_schedule(app: web.Application) -> AsyncIterator[None]:
        if settings.purge_interval_s <= 0 or not settings.runs_jobs:
            yield
            return
        metrics_ = app[METRICS]

        async def purge() -> None:
            try:
                report = await purge_once(app[POOL], app[STORES])
            except Exception:
                log.exception("purge pass failed; the next pass retries")
                return
            metrics_.purged.inc(report.purged)
            metrics_.purge_failures.inc(len(report.failed))
            metrics_.purge_batch_errors.inc(report.batch_errors)
            if (
                report.purged
                or report.failed
                or report.bundles
                or report.bundles_failed
                or report.stale_uploads
                or report.left_recording_uploads
                or report.batch_errors
            ):
                log.info(
                    "purge pass",
                    extra={
                        "purged": report.purged,
                        "held": report.held,
                        "refused": len(report.failed),
                        "bundles_removed": report.bundles,
                        "bundles_refused": len(report.bundles_failed),
                        "stale_uploads_removed": report.stale_uploads,
                        "left_recording_uploads_removed": report.left_recording_uploads,
                        "batch_errors": report.batch_errors,
                    },
                )

        async def seal() -> None:
            try:
                # each tenant's chain of seals covers its own calls
                async def seal_tenant(tenant: str) -> None:
                    async with app[POOL].acquire() as conn:
                        await ledger_seals.seal(conn)

                await tenancy.for_each_tenant(app[POOL], seal_tenant)
            except Exception:
                log.exception("sealing the ledger failed; the next interval retries")

        twilio = TwilioMediaSources.for_app(app, app[HTTP_CLIENT])

        stringee = StringeeMediaSources.for_app(app, app[HTTP_CLIENT])

        def twilio_pass() -> Awaitable[ReconcileReport]:
            return twilio_reconcile.reconcile_once(
                app[POOL],
                twilio,
                grace_s=settings.reconcile_grace_s,
                retry_after_s=settings.reconcile_interval_s / 2,
                job_max_attempts=settings.job_max_attempts,
            )

        def stringee_pass() -> Awaitable[ReconcileReport]:
            return stringee_reconcile.reconcile_once(
                app[POOL],
                stringee,
                grace_s=settings.reconcile_grace_s,
                retry_after_s=settings.reconcile_interval_s / 2,
                job_max_attempts=settings.job_max_attempts,
            )

        async def reconcile() -> None:
            # each platform that fetches asks about its own calls whose callback never came
            for platform, one_pass in (("twilio", twilio_pass), ("stringee", stringee_pass)):
                try:
                    report = await one_pass()
                except Exception:
                    log.exception("reconcile pass failed; the next pass retries")
                    continue
                if report.found or report.failed:
                    log.info(
                        "reconcile pass",
                        extra={
                            "platform": platform,
                            "calls": report.calls,
                            "found": report.found,
                            "settled": report.settled,
                            "failed": report.failed,
                        },
                    )

        async def prune() -> None:
            # finished jobs leave after CALLVAULT_JOB_RETENTION (the database's clock decides)
            try:
                with tenancy.as_tenant(tenancy.ALL):  # the queue's own housekeeping
                    pruned = await prune_jobs(app[POOL], settings.job_retention_s)
            except Exception:
                log.exception("pruning finished jobs failed; the next pass retries")
                return
            if pruned:
                log.info("finished jobs pruned", extra={"pruned": pruned})

        async def purge_and_prune() -> None:
            await purge()
            await prune()

        schedule = app[SCHEDULED_PASSES] = retention_scheduler.start(
            purge_and_prune,
            settings.purge_interval_s,
            seal=seal,
            seal_interval_s=settings.seal_interval_s,
            reconcile=reconcile,
            reconcile_interval_s=settings.reconcile_interval_s,
        )
        yield
        await schedule.stop()

    app.on_shutdown.append(start_draining)
    app.cleanup_ctx.append(stale_work_files)
    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(tenant_policies.directory_ctx)  # tenants' policies and accounts
    if settings.serves_web:  # only the webhooks play notices
        app.cleanup_ctx.append(prompt_library)
    app.cleanup_ctx.append(storage)
    app.cleanup_ctx.append(http_client)
    app.cleanup_ctx.append(job_worker)
    app.cleanup_ctx.append(purge_schedule)
    app.cleanup_ctx.append(rehash_ctx)  # numbers hashed before today's normalisation, once
    app[METRICS] = Metrics()
    app[FIGURES] = FiguresCache(settings.metrics_cache_s)
    app.add_routes(health.routes)
    app.add_routes(metrics.routes)
    if settings.twilio_standin:
        from service.demo import laptop as demo

        demo.mount_standin(app, settings)  # demo mode only: see service/demo/laptop.py
    if settings.serves_web:
        _add_web_routes(app)
    if not settings.defaults.continue_url and settings.serves_web:
        log.warning("CALLVAULT_CONTINUE_URL is not set: calls end after the consent step")
    return app


def _add_web_routes(app: web.Application) -> None:
    """Webhooks, API and pages; a worker process (CALLVAULT_ROLE=worker) answers only the
    probes and /metrics."""
    app.add_routes(prompts_http.routes)
    platforms.add_routes(app)
    app[pauses_api.CONTROLS] = platforms.recording_controls(app)  # pause/resume at the platform
    app[pauses_api.SLOTS] = asyncio.Semaphore(pauses_api.PLATFORM_SLOTS)
    app.add_routes(files_http.routes)
    api_spec.add_routes(app)  # admin, compliance and QA operations, validated by their spec
    app.add_routes(qa_page.routes)
    app.add_routes(console_page.routes)
