"""The voice-webhook baseline: a bare aiohttp handler doing one asyncpg INSERT per request on the
same database, what any webhook that records something must at least do."""

from __future__ import annotations

import sys

import asyncpg
from aiohttp import web


async def make_app(url: str) -> web.Application:
    app = web.Application()
    pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    async with pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_baseline "
            "(id bigserial PRIMARY KEY, sid text, at timestamptz DEFAULT now())"
        )

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO bench_baseline (sid) VALUES ($1)", form.get("CallSid"))
        return web.Response(text="<Response/>", content_type="text/xml")

    app.router.add_post("/telephony/twilio/voice", handle)
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None
    )
