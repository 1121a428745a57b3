"""Voice webhook throughput and p99 latency at 32 connections: callvault (signature check, call
row, ledger events, TwiML) against a bare aiohttp handler doing one INSERT, alternately."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import sys
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

from tests.bench.harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    free_port,
    load,
    postgres,
    report,
    serve,
    serve_env,
    wait_listening,
)

CONNECTIONS = 32
SECONDS = 4.0
ROUNDS = 3
# distinct signed requests per side: more than either sends in a run of this bench or of
# cpu_voice_webhook (callvault's cursor never wraps: a repeated CallSid is a retried start)
POOL = 100_000
FORM = "application/x-www-form-urlencoded"


def signed_requests(base: str, n: int) -> list[tuple[dict[str, str], str]]:
    validator = RequestValidator(AUTH_TOKEN)
    url = base + "/telephony/twilio/voice"
    out = []
    for i in range(n):
        params = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": "CA" + secrets.token_hex(16),
            "From": f"+8490{i % 10_000_000:07d}",
            "To": "+842873001234",
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        out.append((params, validator.compute_signature(url, params)))
    return out


def encoded_requests(base: str, n: int) -> list[tuple[bytes, dict[str, str]]]:
    """``signed_requests`` as the bytes and headers of a POST, as Twilio sends them."""
    return [
        (
            urllib.parse.urlencode(params).encode(),
            {"Content-Type": FORM, "X-Twilio-Signature": sig},
        )
        for params, sig in signed_requests(base, n)
    ]


Request = Callable[[aiohttp.ClientSession, int], Awaitable[int]]


@dataclass(frozen=True)
class Sides:
    """One signed voice webhook to callvault, one POST to the baseline, and their processes."""

    callvault: Request
    baseline: Request
    callvault_pid: int
    baseline_pid: int


@contextlib.asynccontextmanager
async def sides(url: str, prefix: str) -> AsyncIterator[Sides]:
    """``callvault serve`` (no job workers) and the one-INSERT baseline on the same PostgreSQL,
    both listening; the requests this bench and ``cpu_voice_webhook`` load them with."""
    env = serve_env(Path(tempfile.mkdtemp(prefix=prefix)), url, CALLVAULT_WORKERS="0")
    port = free_port()
    base = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.baseline_server", url, str(port)
    )
    try:
        async with serve(env) as (cv_url, cv_pid):
            await wait_listening(port, base)
            # encoded and signed up front, so the load generator's work per request is the same
            # for both sides and as small as aiohttp's client allows
            pool = encoded_requests(env["CALLVAULT_PUBLIC_URL"], POOL)
            ours, theirs = itertools.count(), itertools.count()

            def poster(url: str, cursor: Iterator[int]) -> Request:
                async def post(session: aiohttp.ClientSession, _: int) -> int:
                    i = next(cursor)
                    if i >= len(pool):  # a repeated CallSid would take callvault's retry path
                        raise RuntimeError(f"more than {len(pool)} requests: raise POOL")
                    body, headers = pool[i]
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        return resp.status

                return post

            path = "/telephony/twilio/voice"
            callvault = poster(cv_url + path, ours)
            baseline = poster(f"http://127.0.0.1:{port}{path}", theirs)
            yield Sides(callvault, baseline, cv_pid, base.pid)
    finally:
        base.terminate()
        await base.wait()


async def run(url: str) -> None:
    async with sides(url, "bench-voice-") as both:
        await load(both.callvault, connections=CONNECTIONS, seconds=1)  # warm up both
        await load(both.baseline, connections=CONNECTIONS, seconds=1)
        ours, theirs = [], []
        for _ in range(ROUNDS):  # A B A B ...
            ours.append(await load(both.callvault, connections=CONNECTIONS, seconds=SECONDS))
            theirs.append(await load(both.baseline, connections=CONNECTIONS, seconds=SECONDS))
    rps = sum(r.requests for r in ours) / sum(r.seconds for r in ours)
    base_rps = sum(r.requests for r in theirs) / sum(r.seconds for r in theirs)
    p99 = max(r.p99_ms for r in ours)
    errors = sum(r.errors for r in ours) + sum(r.errors for r in theirs)
    ratio = rps / base_rps
    report(
        "voice_webhook",
        f"voice webhook: {rps:.0f} req/s vs baseline {base_rps:.0f} req/s = {ratio:.2f} "
        f"(goal >= 0.6); p99 {p99:.1f} ms at {CONNECTIONS} connections (goal <= 50 ms); "
        f"errors {errors}",
        rps=rps,
        baseline_rps=base_rps,
        ratio=ratio,
        p99_ms=p99,
        errors=errors,
        goal_ratio=0.6,
        goal_p99_ms=50,
    )


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
