"""``create_app(settings)``: the aiohttp application with its resources in ``cleanup_ctx``.

Settings must be complete (database URL resolved, secrets present): the CLI's ``serve`` does
that, tests build their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from prompts.render import ensure_built
from service import health, prompts_http
from service.config import Settings
from service.context import POOL, PROMPTS, SETTINGS, VAULT
from service.db.migrations import migrate
from service.db.pool import create_pool
from service.errors import ConfigError
from service.http_errors import error_middleware
from service.personal_data import PhoneVault
from service.prompt_library import PromptLibrary
from service.twilio import routes as twilio_routes

log = logging.getLogger(__name__)


def create_app(settings: Settings, *, apply_migrations: bool = True) -> web.Application:
    if not settings.database_url:
        raise ConfigError("CALLVAULT_DATABASE_URL: not resolved (the CLI starts the embedded one)")
    if not settings.secret_key:
        raise ConfigError("CALLVAULT_SECRET_KEY: not set")
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[VAULT] = PhoneVault(settings.secret_key)

    async def database(app: web.Application) -> AsyncIterator[None]:
        url = settings.database_url
        assert url is not None
        pool = await create_pool(url)
        if apply_migrations:
            async with pool.acquire() as conn:
                for m in await migrate(conn):
                    log.info("applied migration %04d_%s", m.version, m.name)
        app[POOL] = pool
        yield
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

    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(prompt_library)
    app.add_routes(health.routes)
    app.add_routes(prompts_http.routes)
    app.add_routes(twilio_routes.routes)
    if not settings.defaults.continue_url:
        log.warning("CALLVAULT_CONTINUE_URL is not set: calls end after the consent step")
    return app
