"""The voice webhook's floor (issue 18 goal 1): how fast any Python server could answer a new
call while keeping the ledger's guarantees, beside the one-INSERT baseline and callvault itself,
side by side on one PostgreSQL under the same load (32 connections of distinct signed voice
webhooks, as ``bench_voice_webhook``):

- **baseline**: ``tests.bench.baseline_server``, one INSERT into a bare table;
- **floor**: ``tests.bench.floor_server``, only callvault's start-call statement (the call,
  its first two ledger events, chain, dedupe, triggers, row-level security) from a bare handler,
  with arguments captured from the real webhook and only the CallSid changed;
- **callvault**: ``callvault serve`` answering the webhook (signature, tenant, policy, the same
  statement, TwiML).

For each: req/s, p50/p99, errors, and CPU ms per request of the server process, of PostgreSQL
(postmaster and every child) and of this load generator (as ``cpu_voice_webhook``), what the
rest of the machine spent meanwhile, and how busy its cores were (near 100%: CPU was the limit;
well below it: something else was); then the ratios, and a count of the calls and ledger events
written. What lies between floor and baseline is the database work the ledger's guarantees cost;
what lies between callvault and floor is callvault's own Python. Not in ``make bench`` (no
results file): a diagnostic, ``python -m tests.bench.floor_voice_webhook``.

With ``PERF=/usr/bin/perf`` PostgreSQL's processes are sampled during one more floor round after
the measured ones (perf slows what it samples; that round's rate is printed apart), with
``perf record -e cpu-clock --call-graph dwarf``, into ``floor.perf.data``;
``python -m tests.bench.floor_voice_webhook shares floor.perf.data`` prints where their time
went, by category."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg

from tests.bench import procs
from tests.bench.bench_voice_webhook import CONNECTIONS, encoded_requests
from tests.bench.harness import (
    Load,
    free_port,
    load,
    postgres,
    serve,
    serve_env,
    wait_listening,
)

SECONDS = 5.0
ROUNDS = 3
# distinct signed requests: callvault's from the first half, the floor's from the second (both
# insert calls on one table, where a CallSid sent twice would be a retried start); the
# baseline's table is its own, so it reuses them
POOL = 100_000
PATH = "/telephony/twilio/voice"
PERF_FILE = "floor.perf.data"
PERF_HZ = 999


@dataclass
class Side:
    """One server under load, and what its measured rounds added up to."""

    name: str
    url: str
    pid: int
    requests: list[tuple[bytes, dict[str, str]]]
    sent: int = 0  # requests sent so far, warm-up included
    loads: list[Load] = field(default_factory=list)
    cpu_server_s: float = 0.0
    cpu_postgres_s: float = 0.0
    cpu_load_s: float = 0.0
    cpu_machine_s: float = 0.0  # the whole machine: other processes and interrupts too

    async def post(self, session: aiohttp.ClientSession, _: int) -> int:
        if self.sent >= len(self.requests):  # a repeated CallSid would be a retried start
            raise RuntimeError(f"{self.name}: more than {len(self.requests)} requests")
        body, headers = self.requests[self.sent]
        self.sent += 1
        async with session.post(self.url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    @property
    def count(self) -> int:
        return sum(r.requests for r in self.loads)

    @property
    def rps(self) -> float:
        return self.count / sum(r.seconds for r in self.loads)

    @property
    def p50_ms(self) -> float:
        return statistics.median(x for r in self.loads for x in r.latencies) * 1000

    @property
    def p99_ms(self) -> float:  # the worst round's, as bench_voice_webhook reports it
        return max(r.p99_ms for r in self.loads)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.loads)

    def line(self) -> str:
        n = self.count
        ours = self.cpu_server_s + self.cpu_postgres_s + self.cpu_load_s
        # whether the cores were the limit: busy near 100% is CPU-bound, well below it is not
        busy = self.cpu_machine_s / (sum(r.seconds for r in self.loads) * (os.cpu_count() or 1))
        return (
            f"{self.name}: {self.rps:.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 "
            f"{self.p99_ms:.1f} ms, errors {self.errors}; CPU ms per request: server "
            f"{1000 * self.cpu_server_s / n:.2f}, postgres {1000 * self.cpu_postgres_s / n:.2f}, "
            f"load generator {1000 * self.cpu_load_s / n:.2f}, rest of the machine "
            f"{1000 * (self.cpu_machine_s - ours) / n:.2f}; machine {100 * busy:.0f}% busy"
        )


@contextlib.asynccontextmanager
async def server(
    module: str, port: int, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[int]:
    """``python -m module [args] port``, listening; yields its pid."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, str(port), env=env
    )
    try:
        await wait_listening(port, proc, limit_s=120)
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def sides(url: str) -> AsyncIterator[tuple[Side, Side, Side]]:
    """callvault, the floor and the baseline on the PostgreSQL at ``url``, listening."""
    env = serve_env(Path(tempfile.mkdtemp(prefix="floor-voice-")), url, CALLVAULT_WORKERS="0")
    base_port, floor_port = free_port(), free_port()
    async with (
        serve(env) as (cv_url, cv_pid),
        # after serve is ready: the floor's capture starts callvault's app on the same home
        server("tests.bench.floor_server", floor_port, env=env) as floor_pid,
        server("tests.bench.baseline_server", base_port, url) as base_pid,
    ):
        signed = encoded_requests(env["CALLVAULT_PUBLIC_URL"], POOL)
        half = POOL // 2
        yield (
            Side("callvault", cv_url + PATH, cv_pid, signed[:half]),
            Side("floor", f"http://127.0.0.1:{floor_port}{PATH}", floor_pid, signed[half:]),
            Side("baseline", f"http://127.0.0.1:{base_port}{PATH}", base_pid, signed),
        )


@contextlib.asynccontextmanager
async def perf_record(perf: str, pids: list[int]) -> AsyncIterator[None]:
    """``perf record`` of ``pids`` (with DWARF call graphs) while the block runs."""
    proc = await asyncio.create_subprocess_exec(
        perf, "record", "-e", "cpu-clock", "-F", str(PERF_HZ), "--call-graph", "dwarf",
        "-o", PERF_FILE, "-p", ",".join(map(str, pids)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)  # attached to every thread before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # perf writes its file and exits
        await proc.wait()


async def measure(side: Side, postmaster: int) -> None:
    """One measured round of ``side``: its load, and the CPU each process spent on it."""
    server_s, postgres_s = procs.cpu_seconds(side.pid), procs.postgres_cpu_seconds(postmaster)
    ours, machine = sum(os.times()[:2]), procs.machine_cpu_seconds()
    result = await load(side.post, connections=CONNECTIONS, seconds=SECONDS)
    side.cpu_machine_s += procs.machine_cpu_seconds() - machine
    side.cpu_server_s += procs.cpu_seconds(side.pid) - server_s
    side.cpu_postgres_s += procs.postgres_cpu_seconds(postmaster) - postgres_s
    side.cpu_load_s += sum(os.times()[:2]) - ours
    side.loads.append(result)


async def run(url: str) -> None:
    conn = await asyncpg.connect(url)
    data_dir = await conn.fetchval("SHOW data_directory")
    await conn.close()
    postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    perf = os.environ.get("PERF")
    async with sides(url) as (callvault, floor, baseline):
        everyone = (callvault, floor, baseline)
        for side in everyone:  # warm up: pools full, statements prepared, caches filled
            await load(side.post, connections=CONNECTIONS, seconds=1)
        for _ in range(ROUNDS):  # A B C A B C ...
            for side in everyone:
                await measure(side, postmaster)
        sampled = None
        if perf:  # a round of its own: perf slows what it samples
            pids = [postmaster, *(pid for pid, _ in procs.children(postmaster))]
            async with perf_record(perf, pids):
                sampled = await load(floor.post, connections=CONNECTIONS, seconds=SECONDS)
    for side in everyone:
        print(side.line(), flush=True)
    print(
        f"ratios: floor/baseline {floor.rps / baseline.rps:.2f}, callvault/baseline "
        f"{callvault.rps / baseline.rps:.2f}, callvault/floor {callvault.rps / floor.rps:.2f} "
        f"({CONNECTIONS} connections, {ROUNDS} rounds of {SECONDS:.0f} s each)",
        flush=True,
    )
    # every request of callvault and the floor (and the capture) a new call with its two events
    conn = await asyncpg.connect(url)
    calls = await conn.fetchval("SELECT count(*) FROM calls")
    events = await conn.fetchval("SELECT count(*) FROM ledger_events")
    await conn.close()
    print(
        f"ledger: {calls} calls (sent {callvault.sent} to callvault, {floor.sent} to the floor, "
        f"1 captured), {events} events",
        flush=True,
    )
    if sampled is not None:
        print(
            f"PostgreSQL sampled in an extra floor round ({sampled.rps:.0f} req/s under perf, "
            f"not counted above): {PERF_FILE}",
            flush=True,
        )


# Where a PostgreSQL sample's time went: the first category (in this order) with a frame of its
# stack among the names, or starting with a prefix ending in "*". The order decides what holds
# what: an FK check's own executor start-up is the FK check's, the chain trigger's query the
# trigger's; what a category leaves falls to the later, broader ones.
CATEGORIES: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (name, frozenset(frames.split()))
    for name, frames in (
        (
            "other processes (postmaster, WAL writer, checkpointer, autovacuum)",
            "WalWriterMain BackgroundWriterMain CheckpointerMain AutoVacWorkerMain "
            "AutoVacLauncherMain",
        ),
        ("commit: WAL write + fdatasync", "XLogFlush"),
        ("commit: the rest (locks, buffers, portals released)", "CommitTransaction"),
        ("FK checks (RI triggers)", "RI_FKey_check_ins ri_PerformCheck RI_*"),
        ("chain+tenant trigger (BEFORE INSERT, PL/pgSQL)", "ExecBRInsertTriggers"),
        ("other triggers", "ExecARInsertTriggers afterTriggerInvokeEvents"),
        ("CHECK constraints", "ExecConstraints ExecRelCheck"),
        ("row-level security WITH CHECK", "ExecWithCheckOptions"),
        (
            "ON CONFLICT arbiter check",
            "ExecCheckIndexConstraints check_exclusion_or_unique_constraint",
        ),
        ("index inserts", "ExecInsertIndexTuples"),
        ("heap inserts", "heapam_tuple_insert heap_insert"),
        ("jsonb input/output", "jsonb_in jsonb_out json_lex pg_parse_json jsonb_*"),
        ("chain hashing (sha256, to_char)", "pg_sha256 sha256 SHA256_* timestamptz_to_char"),
        ("executor start-up", "standard_ExecutorStart ExecutorStart"),
        ("executor end", "standard_ExecutorEnd ExecutorEnd"),
        (
            "plan cache (revalidation, relation locks, planning)",
            "GetCachedPlan RevalidateCachedQuery BuildCachedPlan pg_plan_query "
            "AcquireExecutorLocks _SPI_prepare_plan exec_prepare_plan",
        ),
        ("PL/pgSQL expressions", "exec_eval_expr exec_assign_expr exec_eval_simple_expr"),
        (
            "function internals (SPI, snapshots, locks, catcache, memory)",
            "plpgsql_call_handler plpgsql_exec_function",
        ),
        (
            "client protocol (read, bind and its parameters, send)",
            "pq_getbyte pq_recvbuf secure_read secure_write pq_flush exec_bind_message "
            "exec_parse_message exec_describe_portal_message ReadCommand "
            "OidReceiveFunctionCall getTypeBinaryInputInfo FetchPreparedStatement CreatePortal "
            "socket_putmessage pg_client_to_server pg_any_to_server pq_getmsgint",
        ),
        ("transaction start", "StartTransactionCommand"),
        ("statement (portal, executor outside the function)", "PortalRun PortalStart"),
    )
)
OTHER = "other"


def category(stack: list[str]) -> str:
    """The first of :data:`CATEGORIES` a frame of ``stack`` belongs to."""
    for name, frames in CATEGORIES:
        for frame in stack:
            if frame in frames or any(f.endswith("*") and frame.startswith(f[:-1]) for f in frames):
                return name
    return OTHER


def stacks(script: str) -> Iterator[list[str]]:
    """Each sample's frames (innermost first) from ``perf script -F comm,tid,ip,sym``."""
    stack: list[str] | None = None
    for line in script.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():  # a sample's header: "comm tid"
            if stack is not None:
                yield stack
            stack = []
            continue
        parts = line.split(None, 1)
        if stack is not None:
            stack.append(parts[1].strip() if len(parts) > 1 else "[unknown]")
    if stack is not None:
        yield stack


def shares(path: str) -> int:
    """Print the share of PostgreSQL's sampled time in ``path`` by category, largest first,
    and the innermost frames of what no category took."""
    perf = os.environ.get("PERF", "perf")
    script = subprocess.run(
        [perf, "script", "-i", path, "-F", "comm,tid,ip,sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: Counter[str] = Counter()
    leftover: Counter[str] = Counter()
    for stack in stacks(script):
        name = category(stack)
        counts[name] += 1
        if name == OTHER:
            leftover[stack[0] if stack else "[empty]"] += 1
    total = sum(counts.values())
    if not total:
        print(f"no samples in {path}")
        return 1
    print(f"{total} samples of PostgreSQL in {path}")
    for name, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")
    if leftover:
        print("other, innermost frames: " + ", ".join(
            f"{frame} {100 * n / total:.1f}%" for frame, n in leftover.most_common(6)
        ))  # fmt: skip
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["shares"]:
        sys.exit(shares(sys.argv[2] if len(sys.argv) > 2 else PERF_FILE))
    with postgres() as database_url:
        asyncio.run(run(database_url))
