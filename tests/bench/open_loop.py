"""A constant-rate (open-loop) load of distinct signed voice webhooks, as its own process, the
way wrk2 loads a server: request ``i`` is due at ``start + i / rate`` whatever the earlier ones
are doing, and its latency is counted from that due time, not from when it was sent, so a
server that stalls is charged for the requests that queued behind the stall (no coordinated
omission).

``python -m tests.bench.open_loop BASE_URL PUBLIC_URL RATE`` signs its requests first, prints
``ready``, then reads commands from stdin: ``go SECONDS`` (a fixed run) or ``go`` (until a
``stop`` line). At the end it prints one JSON line: ``{"latencies": [...], "errors": n,
"late_ms": worst lateness of a send, "cpu_s": its own CPU time from go to the end}``. Its own
process, so the bench's seeding and polling never delay a send."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from tests.bench.bench_voice_webhook import signed_requests

MAX_SECONDS = 300  # requests signed up front: enough for the longest phase at the rate
CONNECTIONS = 256  # a stalled server gets more connections, as a telephony platform opens


async def run(base: str, public: str, rate: float) -> None:
    pool = signed_requests(public, int(rate * MAX_SECONDS))
    print("ready", flush=True)
    command = (await asyncio.to_thread(sys.stdin.readline)).split()
    cpu_at_go = time.process_time()
    fixed = float(command[1]) if len(command) > 1 else None
    stop = asyncio.Event()
    if fixed is None:

        async def wait_stop() -> None:
            await asyncio.to_thread(sys.stdin.readline)
            stop.set()

        stopper = asyncio.create_task(wait_stop())
    latencies: list[float] = []
    errors = 0
    late = 0.0
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            nonlocal errors
            params, sig = pool[i % len(pool)]
            try:
                async with session.post(
                    base + "/telephony/twilio/voice",
                    data=params,
                    headers={"X-Twilio-Signature": sig},
                ) as resp:
                    await resp.read()
                    if resp.status >= 400:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
            latencies.append(loop.time() - due)

        tasks: set[asyncio.Task[None]] = set()
        start = loop.time()
        i = 0
        while not stop.is_set() and (fixed is None or i < fixed * rate) and i < len(pool):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            late = max(late, loop.time() - due)
            task = asyncio.create_task(one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
    if fixed is None:
        await stopper
    cpu_s = time.process_time() - cpu_at_go
    print(
        json.dumps(
            {"latencies": latencies, "errors": errors, "late_ms": late * 1000, "cpu_s": cpu_s}
        )
    )


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], sys.argv[2], float(sys.argv[3])))
