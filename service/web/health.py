"""``/healthz`` (the process answers, and its job worker, if it runs one, still claims) and
``/readyz`` (the database and the object store answer).

A worker process (``callvault worker``) answers both on ``CALLVAULT_PORT`` too, so it is probed
like a web replica: liveness fails when its claim loop has ended, readiness when it cannot reach
what its jobs need."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from service.errors import DatabaseUnavailable
from service.jobs.worker import JOB_WORKER
from service.storage import StorageError
from service.web.context import LIFECYCLE, RLS_BYPASS, STORE, database
from service.web.http_errors import error_response

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    worker = request.app.get(JOB_WORKER)
    if worker is not None and not worker.alive:
        # nothing else brings the loop back: a restart does
        return error_response(503, "worker_stopped", "the job worker has stopped claiming jobs")
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    response = await _readiness(request)
    if request.app.get(RLS_BYPASS) and isinstance(response.body, bytes):
        # loudly, on every answer, ready or not: tenants are not isolated
        body = json.loads(response.body)
        body["rls_bypass"] = True
        return web.json_response(body, status=response.status)
    return response


async def _readiness(request: web.Request) -> web.Response:
    if request.app[LIFECYCLE].draining:
        return error_response(503, "draining", "shutting down; send new work elsewhere")
    try:
        # bounded like a webhook: a hung database must not hang the probe (and its connection)
        async with database(request.app) as conn:
            await conn.fetchval("SELECT 1")
    except DatabaseUnavailable:
        # probes poll often: the 503 is the report, the log would only repeat it
        return error_response(503, "not_ready", "database unreachable")
    try:
        async with asyncio.timeout(3):
            await request.app[STORE].check()
    except (StorageError, TimeoutError):
        return error_response(503, "not_ready", "object store unreachable")
    return web.json_response({"status": "ready", "database": "ok", "store": "ok"})
