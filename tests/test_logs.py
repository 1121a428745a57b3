"""Log lines as an operator reads them during an outage: one line each, no library traceback."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg

from service.observability import logs
from tests.tcp_proxy import TcpProxy
from tests.waiting import eventually


async def test_a_pool_that_cannot_reconnect_logs_one_line_without_a_traceback(
    database_url: str,
) -> None:
    # With the database stopped under serve, asyncpg logged "Failed to restore the pool
    # connection floor; retrying" with a multi-kilobyte traceback of its own connect path.
    logs.install_filters()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    pool_logger = logging.getLogger("asyncpg.pool")
    pool_logger.addHandler(handler)
    socket_dir = parse_qs(urlsplit(database_url).query)["host"][0]
    pg_socket = next(p for p in Path(socket_dir).glob(".s.PGSQL.*") if p.suffix != ".lock")
    proxy = TcpProxy("", 0, unix_path=str(pg_socket))
    await proxy.start()
    name = urlsplit(database_url).path.lstrip("/")
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}"
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    assert pool is not None
    try:
        proxy.go_down()  # the floor connection is cut and cannot be made again

        async def logged() -> bool:
            return "connection floor" in out.getvalue()

        await eventually(logged, what="asyncpg's reconnect warning", timeout_s=30)
    finally:
        pool_logger.removeHandler(handler)
        proxy.come_back()
        await pool.close()
        await proxy.close()
    line = next(x for x in out.getvalue().splitlines() if "connection floor" in x)
    entry = json.loads(line)
    assert "exception" not in entry and "Traceback" not in line, line
    assert entry["why"], entry  # the error's type and message, in one field
