"""Isolation (issue 18, goal 2): the voice webhook's p99 at a steady 200 requests/s (an open-loop
load, tests/bench/open_loop.py, in its own process), first on an idle replica, then while the
same deployment takes in four 200 MB recordings (from the test-side Twilio media API) and purges
20,000 expired ones. Measured side by side for two layouts: one ``callvault serve`` doing
everything (``CALLVAULT_ROLE=all``), and a web replica (``serve --role web``) beside a
``callvault worker`` that runs the jobs and the purge.

The purge's rows are seeded before the idle phase with their retention far off, and expire by
the database's clock (one UPDATE) when the loaded phase starts; the purge schedule runs every
second, so the pass begins within one. Their objects are not put in the bucket first (20,000
PUTs would double the run): ``DeleteObjects`` of a key that is not there succeeds as for one
that is, so the replica does the same work; the S3 server does a little less. The loaded phase
lasts exactly as long as the intakes and the purge, and its requests are the ones sent while
they ran."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from dataclasses import dataclass

import aiohttp
import asyncpg
from twilio.request_validator import RequestValidator

from tests.bench.harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    free_port,
    intake_env,
    media_api,
    moto,
    postgres,
    report,
    serve,
)

# the goal's rate; ISOLATION_RATE=50 on a machine too busy to answer 200 req/s even when idle
RATE = float(os.environ.get("ISOLATION_RATE", "200"))
IDLE_S = 15.0
WARM_UP_S = 2.0
INTAKES = 4
INTAKE_BYTES = 200 * 1000 * 1000
PURGE_N = 20_000
GOAL = 2.0
BUSY_LIMIT_S = 280.0  # the intakes and the purge must be done by then (the load's signed span)
# ISOLATION_LAYOUTS=all to measure only the all-in-one replica
LAYOUTS = os.environ.get("ISOLATION_LAYOUTS", "all,split").split(",")


@dataclass
class Phase:
    latencies: list[float]
    errors: int
    seconds: float

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


class Generator:
    """The open-loop load process, signed for ``public`` and aimed at ``base``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started = 0.0

    @classmethod
    async def start(cls, base: str, public: str) -> Generator:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bench.open_loop",
            base,
            public,
            str(RATE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"load generator: {line!r}")
        return cls(proc)

    async def go(self, seconds: float | None = None) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n" if seconds is None else f"go {seconds}\n".encode())
        await self.proc.stdin.drain()
        self.started = time.perf_counter()

    async def result(self, stop: bool = False) -> Phase:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if stop:
            self.proc.stdin.write(b"stop\n")
            await self.proc.stdin.drain()
        seconds = time.perf_counter() - self.started
        out = json.loads((await self.proc.stdout.read()).splitlines()[-1])
        await self.proc.wait()
        return Phase(out["latencies"], out["errors"], seconds)


async def webhook(
    session: aiohttp.ClientSession, cv: str, path: str, params: dict[str, str]
) -> None:
    sig = RequestValidator(AUTH_TOKEN).compute_signature(cv + path, params)
    async with session.post(cv + path, data=params, headers={"X-Twilio-Signature": sig}) as r:
        if r.status >= 400:
            raise RuntimeError(f"{path}: {r.status} {await r.text()}")


async def run_phase(base: str, public: str, seconds: float) -> Phase:
    gen = await Generator.start(base, public)
    await gen.go(seconds)
    return await gen.result()


async def seed_purge(conn: asyncpg.Connection, prefix: str) -> None:
    """PURGE_N stored recordings of calls, kept for a day (until the loaded phase)."""
    await conn.execute(
        "WITH c AS (INSERT INTO calls (platform, external_id, policy, outcome, outcome_at)"
        " SELECT 'twilio', $1 || g, '{}', 'consented', now()"
        " FROM generate_series(1, $2) g RETURNING id, external_id)"
        " INSERT INTO recordings (call_id, platform, external_id, state, object_key, sha256,"
        " size_bytes, stored_at, retain_until)"
        " SELECT id, 'twilio', 'R' || external_id, 'stored', 'recordings/' || id || '.wav', 'x',"
        " 1024, now(), now() + interval '1 day' FROM c",
        prefix,
        PURGE_N,
    )


async def prepare_calls(session: aiohttp.ClientSession, cv: str) -> list[str]:
    """INTAKES consented calls whose recordings are not in yet; their CallSids."""
    sids = []
    for _ in range(INTAKES):
        params = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": "CA" + secrets.token_hex(16),
            "From": "+84901234567",
            "To": "+842873001234",
            "CallStatus": "ringing",
        }
        for path in ("/telephony/twilio/voice", "/telephony/twilio/consent"):
            await webhook(session, cv, path, params)
        sids.append(params["CallSid"])
    return sids


async def loaded_phase(
    conn: asyncpg.Connection, session: aiohttp.ClientSession, cv: str, public: str, prefix: str
) -> tuple[Phase, float]:
    """The load while the intakes and the purge run; and how long they took."""
    calls = await prepare_calls(session, cv)
    gen = await Generator.start(cv, public)
    # the background work starts, then the load at once (within milliseconds: the requests are
    # signed already); the work lasts many seconds
    started = time.perf_counter()
    recordings = []
    for call_sid in calls:
        rec_sid = "RE" + secrets.token_hex(12) + "1" * 8  # a full-size recording
        recordings.append(rec_sid)
        params = {
            "AccountSid": ACCOUNT_SID,
            "CallSid": call_sid,
            "RecordingSid": rec_sid,
            "RecordingStatus": "completed",
            "RecordingDuration": "3600",
        }
        await webhook(session, cv, "/telephony/twilio/recording", params)
    await conn.execute(
        "UPDATE recordings SET retain_until = now() - interval '1 second'"
        " WHERE external_id LIKE $1 AND state = 'stored'",
        "R" + prefix + "%",
    )
    await gen.go()
    while time.perf_counter() - started < BUSY_LIMIT_S:
        stored = await conn.fetchval(
            "SELECT count(*) FROM recordings WHERE external_id = ANY($1) AND state = 'stored'",
            recordings,
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM recordings WHERE external_id LIKE $1 AND state = 'stored'",
            "R" + prefix + "%",
        )
        if stored == INTAKES and left == 0:
            break
        await asyncio.sleep(0.2)
    else:
        raise RuntimeError(f"intake and purge unfinished after {BUSY_LIMIT_S:.0f} s")
    busy_s = time.perf_counter() - started
    sizes = await conn.fetch(
        "SELECT size_bytes FROM recordings WHERE external_id = ANY($1)", recordings
    )
    assert [r["size_bytes"] for r in sizes] == [INTAKE_BYTES] * INTAKES, sizes
    return await gen.result(stop=True), busy_s


async def measure(
    db_url: str, endpoint: str, media_url: str, layout: str
) -> tuple[Phase, Phase, float]:
    env = intake_env(
        "bench-isolation-",
        db_url,
        endpoint,
        media_url,
        CALLVAULT_WORKERS=str(INTAKES),
        CALLVAULT_PURGE_INTERVAL="1s",
        # (the all-in-one layout is serve's default)
        **({"CALLVAULT_ROLE": "web"} if layout == "split" else {}),
    )
    public = env["CALLVAULT_PUBLIC_URL"]
    prefix = f"CAiso{layout}"
    conn = await asyncpg.connect(db_url)
    try:
        await seed_purge(conn, prefix)
        async with serve(env) as (cv, _), aiohttp.ClientSession() as session:
            if layout == "split":
                worker_env = {**env, "CALLVAULT_ROLE": "worker", "CALLVAULT_PORT": str(free_port())}
                async with serve(worker_env, ("worker",)):
                    return await phases(conn, session, cv, public, prefix)
            return await phases(conn, session, cv, public, prefix)
    finally:
        await conn.close()


async def phases(
    conn: asyncpg.Connection, session: aiohttp.ClientSession, cv: str, public: str, prefix: str
) -> tuple[Phase, Phase, float]:
    await run_phase(cv, public, WARM_UP_S)
    idle = await run_phase(cv, public, IDLE_S)
    loaded, busy_s = await loaded_phase(conn, session, cv, public, prefix)
    return idle, loaded, busy_s


async def run(db_url: str, endpoint: str) -> None:
    figures: dict[str, float] = {}
    parts = []
    async with media_api(INTAKE_BYTES) as media_url:
        for layout in LAYOUTS:
            idle, loaded, busy_s = await measure(db_url, endpoint, media_url, layout)
            ratio = loaded.p99_ms / idle.p99_ms
            print(
                f"{layout}: idle p99 {idle.p99_ms:.1f} ms ({len(idle.latencies)} requests), "
                f"loaded p99 {loaded.p99_ms:.1f} ms ({len(loaded.latencies)} requests in "
                f"{busy_s:.1f} s), errors {idle.errors} + {loaded.errors}",
                flush=True,
            )
            name = "all-in-one" if layout == "all" else "web + worker"
            parts.append(
                f"{name} {idle.p99_ms:.1f} -> {loaded.p99_ms:.1f} ms = {ratio:.2f} "
                f"(busy {busy_s:.1f} s, errors {idle.errors + loaded.errors})"
            )
            figures.update(
                {
                    f"{layout}_idle_p99_ms": idle.p99_ms,
                    f"{layout}_loaded_p99_ms": loaded.p99_ms,
                    f"{layout}_ratio": ratio,
                    f"{layout}_busy_s": busy_s,
                    f"{layout}_requests": len(idle.latencies) + len(loaded.latencies),
                    f"{layout}_errors": idle.errors + loaded.errors,
                }
            )
    # the deployment's layout is the one the goal is about (the last measured)
    ratio = figures[f"{LAYOUTS[-1]}_ratio"]
    report(
        "isolation",
        f"isolation: voice webhook p99 at {RATE:.0f} req/s, idle -> during {INTAKES} x 200 MB "
        f"intake + {PURGE_N:,} purge: " + "; ".join(parts) + f" (goal <= {GOAL:g})",
        **figures,
        ratio=ratio,
        goal_ratio=GOAL,
    )


if __name__ == "__main__":
    with postgres() as database_url, moto() as s3:
        asyncio.run(run(database_url, s3))
