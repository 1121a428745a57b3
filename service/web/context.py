"""Typed keys for what the application holds (settings, pool, prompts, personal-data vault)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from asyncpg.pool import PoolConnectionProxy

from service.config import Settings
from service.db.pool import reach
from service.notices.library import PromptLibrary
from service.personal.numbers import PhoneVault
from service.storage import ObjectStore
from service.storage.registry import StoreRegistry

SETTINGS = web.AppKey("settings", Settings)
POOL: web.AppKey[asyncpg.Pool[Any]] = web.AppKey("pool")
PROMPTS = web.AppKey("prompts", PromptLibrary)
VAULT = web.AppKey("vault", PhoneVault)
STORE: web.AppKey[ObjectStore] = web.AppKey("store")  # the shared store (readiness checks it)
STORES = web.AppKey("stores", StoreRegistry)  # every tenant's store (service.storage.registry)
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)
# the database role bypasses row-level security (CALLVAULT_ALLOW_RLS_BYPASS=1): said on /readyz
RLS_BYPASS = web.AppKey("rls_bypass", bool)


def database(app: web.Application) -> AbstractAsyncContextManager[PoolConnectionProxy[Any]]:
    """A connection for a request that must answer in seconds (webhooks, authentication), within
    the configured timeouts, or :class:`~service.errors.DatabaseUnavailable`."""
    settings = app[SETTINGS]
    return reach(
        app[POOL],
        acquire_timeout_s=settings.db_acquire_timeout_s,
        work_timeout_s=settings.db_statement_timeout_s,
    )


class Lifecycle:
    """Mutable process state the probes read: set when SIGTERM starts the drain."""

    draining: bool = False


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
