"""Where the voice webhook's CPU goes, beside the baseline's: CPU milliseconds per request of the
server process, of PostgreSQL (postmaster and backends) and of this load generator, under the
same load as ``bench_voice_webhook``. On 2 cores the three share one budget, so the bench's
ratio follows their summed cost per request, whichever process spends it.

Not a benchmark of its own (no results file); a diagnostic:
``python -m tests.bench.cpu_voice_webhook``. With ``PYSPY=/path/to/py-spy`` it also samples the
callvault server during its first measured round (``py-spy record --native``, attached by pid)
into ``voice-webhook.pyspy.txt`` (raw collapsed stacks)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg

from tests.bench import procs
from tests.bench.bench_voice_webhook import CONNECTIONS, sides
from tests.bench.harness import load, postgres

SECONDS = 6.0


async def run(url: str) -> None:
    conn = await asyncpg.connect(url)
    data_dir = await conn.fetchval("SHOW data_directory")
    await conn.close()
    postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    async with sides(url, "cpu-voice-") as both:
        loaded = (
            ("callvault", both.callvault, both.callvault_pid),
            ("baseline", both.baseline, both.baseline_pid),
        )
        spy = os.environ.get("PYSPY")
        for round_ in range(2):
            for name, request, pid in loaded:
                await load(request, connections=CONNECTIONS, seconds=1)  # warm up
                sampler = None
                if spy and round_ == 0 and name == "callvault":
                    sampler = await asyncio.create_subprocess_exec(
                        spy, "record", "--native", "-r", "200", "-f", "raw",
                        "-o", "voice-webhook.pyspy.txt", "--pid", str(pid),
                        "--duration", str(int(SECONDS)),
                    )  # fmt: skip
                server, database = procs.cpu_seconds(pid), procs.postgres_cpu_seconds(postmaster)
                ours = sum(os.times()[:2])
                result = await load(request, connections=CONNECTIONS, seconds=SECONDS)
                server = procs.cpu_seconds(pid) - server
                database = procs.postgres_cpu_seconds(postmaster) - database
                ours = sum(os.times()[:2]) - ours
                if sampler is not None:
                    await sampler.wait()
                n = result.requests
                print(
                    f"{name}: {result.rps:.0f} req/s, p99 {result.p99_ms:.1f} ms, "
                    f"errors {result.errors}; CPU ms per request: server "
                    f"{1000 * server / n:.2f}, postgres {1000 * database / n:.2f}, "
                    f"load generator {1000 * ours / n:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
