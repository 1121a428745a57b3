"""The asyncpg pool and the codecs every connection gets (jsonb as Python objects)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _reset(conn: asyncpg.Connection[Any]) -> None:
    """Cheaper than asyncpg's default reset (a round trip on every release): callvault leaves no
    session state behind (listeners are removed, advisory locks released where taken), so only
    an abandoned transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_reset,
        server_settings={"application_name": "callvault"},
    )
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        url, server_settings={"application_name": "callvault"}
    )
    await _init_connection(conn)
    return conn
