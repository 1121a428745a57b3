"""Typed keys for what the application holds (settings, pool, prompts, personal-data vault)."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from service.config import Settings
from service.personal_data import PhoneVault
from service.prompt_library import PromptLibrary
from service.storage import ObjectStore

SETTINGS = web.AppKey("settings", Settings)
POOL: web.AppKey[asyncpg.Pool[Any]] = web.AppKey("pool")
PROMPTS = web.AppKey("prompts", PromptLibrary)
VAULT = web.AppKey("vault", PhoneVault)
STORE: web.AppKey[ObjectStore] = web.AppKey("store")
HTTP_CLIENT = web.AppKey("http_client", aiohttp.ClientSession)


class Lifecycle:
    """Mutable process state the probes read: set when SIGTERM starts the drain."""

    draining: bool = False


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
