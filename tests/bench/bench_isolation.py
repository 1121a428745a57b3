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
they ran.

On the machine it runs on, every process competes for the same cores: the replica, PostgreSQL,
the load generator, the stand-ins for services that are elsewhere in production (moto, for S3,
receiving 800 MB; the media server, for Twilio's cloud, sending it), and whatever else runs on
the machine. So each layout is measured under several placements (``ISOLATION_PLACEMENTS``,
default ``shared,remote,pods-db,pods``, in this order: a nice value raised here cannot be
lowered; the goal is judged in ``pods``, the last):

* ``shared``: every process as started, competing as if all were on this machine (the worker
  at its own ``CALLVAULT_WORKER_NICE``, as the product sets it);
* ``remote``: the stand-ins for remote services at nice 19 (they get only CPU nobody else here
  wants), and off the disk PostgreSQL's WAL is on: moto keeps what it receives in tmpfs
  (``/dev/shm``), and so does the replicas' scratch space (intake's spool, ``CALLVAULT_HOME``),
  which in production is on their own node's disk, not the database server's. Without this,
  every webhook's commit waits for its WAL flush behind 1.6 GB of other writes to the same disk;
* ``pods``: ``remote``, and the cores split as separate pods would have them: the replica under
  test and the load generator on core 0; the worker, PostgreSQL and the stand-ins on core 1
  (``taskset -a``, thread by thread);
* ``pods-db``: ``remote``, with PostgreSQL on core 0 beside the replica: in production the
  database is a server of its own that the worker's sessions share with the web replica's, not
  a process beside the worker.

Processes of other users are not placed: they use both cores, and the CPU table says how much.
Each measurement prints where each phase's CPU went, process by process (PostgreSQL's by
``application_name``), and the goal line names the placement it is judged in (the last; the
others' figures follow it in the same line, so none is hidden). ``ISOLATION_WORKER_NICE`` sets
the worker's ``CALLVAULT_WORKER_NICE`` (0: as before the worker lowered its priority)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
from twilio.request_validator import RequestValidator

from tests.bench import procs
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
PLACEMENTS = os.environ.get("ISOLATION_PLACEMENTS", "shared,remote,pods-db,pods").split(",")
# ISOLATION_CHECKPOINT=1: a checkpoint as the loaded phase starts (as one every
# checkpoint_timeout would, in production), so the purge's WAL carries its full-page images
CHECKPOINT = os.environ.get("ISOLATION_CHECKPOINT") == "1"
PLACEMENT_NAMES = {
    "shared": "all processes sharing both cores",
    "remote": "S3 and Twilio stand-ins at nice 19, S3's objects and the spool on tmpfs",
    "pods": "remote, and replica + load on core 0, the rest on core 1",
    "pods-db": "remote, and replica + load + PostgreSQL on core 0, worker + stand-ins on core 1",
}
WEB_CORE, OTHER_CORE = {0}, {1}
SCRATCH = "/dev/shm"  # tmpfs
MACHINE = "the whole machine"
OTHERS = "everything else on the machine (not this bench)"


@dataclass
class Machine:
    """The processes of one measurement, by role, and where they are placed."""

    placement: str
    db_url: str
    replica: int  # the serve process the load is aimed at (all-in-one or web)
    worker: int | None
    s3: int
    media: int
    postmaster: int

    def place_services(self) -> None:
        postgres = [self.postmaster] + [pid for pid, _ in procs.children(self.postmaster)]
        worker = [self.worker] if self.worker else []
        if self.placement != "shared":
            procs.place([self.s3, self.media], nice=19)
        if self.placement == "pods":
            procs.place([self.replica], cpus=WEB_CORE)
            procs.place([self.s3, self.media, *postgres, *worker], cpus=OTHER_CORE)
        elif self.placement == "pods-db":
            # the database serves the web replica and the worker alike, as one server would
            procs.place([self.replica, *postgres], cpus=WEB_CORE)
            procs.place([self.s3, self.media, *worker], cpus=OTHER_CORE)
        else:
            procs.place([self.s3, self.media, self.replica, *postgres, *worker], cpus={0, 1})

    def waits(self) -> Waits:
        # (an all-in-one replica's sessions are its worker's too)
        return Waits(self.db_url, ["callvault-web" if self.worker else "callvault"])

    def place_generator(self, pid: int) -> None:
        if self.placement.startswith("pods"):
            procs.place([pid], cpus=WEB_CORE)

    async def cpu(self, conn: asyncpg.Connection) -> dict[int, tuple[str, float]]:
        """Each process's (role, CPU seconds so far), the load generator's aside (it reports its
        own: it has exited by the end of a phase); PostgreSQL's by session name."""
        named = {
            self.replica: "web" if self.worker else "all-in-one",
            self.s3: "moto (S3 stand-in)",
            self.media: "media server (Twilio stand-in)",
            self.postmaster: "postgres: background",
        }
        if self.worker:
            named[self.worker] = "worker"
        sessions = {
            r["pid"]: (r["backend_type"], r["application_name"])
            for r in await conn.fetch(
                "SELECT pid, backend_type, application_name FROM pg_stat_activity"
            )
        }
        for pid, _ in procs.children(self.postmaster):
            kind, app = sessions.get(pid, ("background", ""))
            if kind != "client backend":
                named[pid] = "postgres: background"
            elif app.startswith("callvault"):
                named[pid] = f"postgres: {app} sessions"
            else:
                named[pid] = "postgres: the bench's own session"
        spent = {pid: (role, procs.cpu_seconds(pid)) for pid, role in named.items()}
        spent[0] = (MACHINE, procs.machine_cpu_seconds())
        return spent


def cpu_table(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    seconds: float,
    generator_cpu_s: float,
) -> str:
    """CPU seconds by role between two snapshots (a process started meanwhile counts whole)."""
    by_role: dict[str, float] = {"load generator": generator_cpu_s}
    for pid, (role, spent) in after.items():
        by_role[role] = by_role.get(role, 0.0) + spent - before.get(pid, (role, 0.0))[1]
    # what else ran on the machine meanwhile (other users' work: it competes as much)
    total = by_role.pop(MACHINE)
    by_role[OTHERS] = max(0.0, total - sum(by_role.values()))
    lines = [f"    {'process':<48} {'CPU s':>7} {'cores':>6}"]
    for role, spent in sorted(by_role.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {role:<48} {spent:7.1f} {spent / seconds:6.2f}")
    lines.append(
        f"    {'whole machine (2 cores = ' + format(2 * seconds, '.0f') + ' s)':<48} "
        f"{total:7.1f} {total / seconds:6.2f}"
    )
    return "\n".join(lines)


@dataclass
class Phase:
    latencies: list[float]
    errors: int
    seconds: float
    generator_cpu_s: float  # the load generator's own CPU time over the phase

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


def timeline(phase: Phase) -> str:
    """The slowest request of each second of the phase (its requests in the order they ended,
    ``RATE`` a second), in ms: tells a tail spread over the phase from one stall."""
    per = max(int(RATE), 1)
    worst = [max(phase.latencies[i : i + per]) * 1000 for i in range(0, len(phase.latencies), per)]
    return "  slowest request of each second while loaded (ms): " + " ".join(
        f"{w:.0f}" for w in worst
    )


class Generator:
    """The open-loop load process, signed for ``public`` and aimed at ``base``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started = 0.0

    @classmethod
    async def start(cls, base: str, public: str, machine: Machine) -> Generator:
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
        machine.place_generator(proc.pid)
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
        out = json.loads((await self.proc.stdout.read()).splitlines()[-1])
        await self.proc.wait()
        seconds = time.perf_counter() - self.started
        return Phase(out["latencies"], out["errors"], seconds, out["cpu_s"])


async def webhook(
    session: aiohttp.ClientSession, cv: str, path: str, params: dict[str, str]
) -> None:
    sig = RequestValidator(AUTH_TOKEN).compute_signature(cv + path, params)
    async with session.post(cv + path, data=params, headers={"X-Twilio-Signature": sig}) as r:
        if r.status >= 400:
            raise RuntimeError(f"{path}: {r.status} {await r.text()}")


class Waits:
    """What the replica's busy PostgreSQL sessions are waiting on, sampled every 50 ms on a
    connection of its own (``None``: running on a CPU, or wanting one): tells a wait for a lock
    or for the WAL's flush to disk from one for CPU."""

    def __init__(self, db_url: str, names: list[str]) -> None:
        self.db_url, self.names = db_url, names
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.db_url)
        try:
            while True:
                rows = await conn.fetch(
                    "SELECT wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE application_name = ANY($1) AND state = 'active'",
                    self.names,
                )
                self.samples += 1
                for r in rows:
                    key = f"{r['wait_event_type']}:{r['wait_event']}" if r[0] else "CPU"
                    self.counts[key] = self.counts.get(key, 0) + 1
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> str:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        top = sorted(self.counts.items(), key=lambda kv: -kv[1])[:6]
        seen = ", ".join(f"{k} {v / self.samples:.2f}" for k, v in top) or "none"
        return f"    replica's active sessions per sample ({self.samples} samples): {seen}"


class WalMeter:
    """The WAL written over a phase (PostgreSQL 18): its bytes by LSN (exact), the server's
    ``pg_stat_wal`` (records, full-page images, bytes, buffers full) and ``pg_stat_io``'s WAL
    writes and fsyncs, and each session's own (``pg_stat_get_backend_wal``, by
    ``application_name``): how much of it the worker's intake and purge write, how much of that
    is full-page images, and how many flushes the web replica's commits wait behind. (Backends
    report their counters at most once a second: the by-source figures are approximate.)"""

    _LSN = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
    _WAL = "SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_buffers_full FROM pg_stat_wal"
    _IO = (
        "SELECT coalesce(sum(writes), 0)::bigint AS writes,"
        " coalesce(sum(fsyncs), 0)::bigint AS fsyncs FROM pg_stat_io WHERE object = 'wal'"
    )
    _BY_SESSION = (
        "SELECT a.pid, CASE WHEN a.backend_type <> 'client backend' THEN a.backend_type"
        " WHEN a.application_name LIKE 'callvault%' THEN a.application_name"
        " ELSE 'bench' END AS who, coalesce(w.wal_records, 0) AS wal_records,"
        " coalesce(w.wal_fpi, 0) AS wal_fpi, coalesce(w.wal_bytes, 0)::bigint AS wal_bytes,"
        " (SELECT coalesce(sum(i.fsyncs), 0)::bigint FROM pg_stat_get_backend_io(a.pid) i"
        "  WHERE i.object = 'wal') AS wal_fsyncs"
        " FROM pg_stat_activity a, pg_stat_get_backend_wal(a.pid) w"
    )

    def __init__(self) -> None:
        self.start: dict[str, object] = {}

    @classmethod
    async def snapshot(cls, conn: asyncpg.Connection) -> dict[str, object]:
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("SELECT pg_stat_force_next_flush()")
        sessions = {
            r["pid"]: (r["who"], r["wal_records"], r["wal_fpi"], r["wal_bytes"], r["wal_fsyncs"])
            for r in await conn.fetch(cls._BY_SESSION)
        }
        return {
            "lsn": await conn.fetchval(cls._LSN),
            "wal": dict(await conn.fetchrow(cls._WAL) or {}),
            "io": dict(await conn.fetchrow(cls._IO) or {}),
            "sessions": sessions,
        }

    async def begin(self, conn: asyncpg.Connection) -> None:
        try:
            self.start = await self.snapshot(conn)
        except asyncpg.PostgresError:  # before PostgreSQL 18: no per-session WAL
            self.start = {}

    async def end(self, conn: asyncpg.Connection, seconds: float) -> str:
        if not self.start:
            return "    WAL: (needs PostgreSQL 18)"
        end = await self.snapshot(conn)
        lsn0, lsn1 = self.start["lsn"], end["lsn"]
        assert isinstance(lsn0, int) and isinstance(lsn1, int)
        written = lsn1 - lsn0
        w0, w1 = self.start["wal"], end["wal"]
        io0, io1 = self.start["io"], end["io"]
        assert isinstance(w0, dict) and isinstance(w1, dict)
        assert isinstance(io0, dict) and isinstance(io1, dict)
        d = {k: w1[k] - w0[k] for k in w1}
        fpi_share = f"{d['wal_fpi'] / d['wal_records']:.1%}" if d["wal_records"] else "-"
        lines = [
            f"    WAL: {written / 1e6:.1f} MB by LSN ({written / 1e6 / seconds:.2f} MB/s);"
            f" pg_stat_wal: {d['wal_records']} records, {d['wal_fpi']} full-page images"
            f" ({fpi_share} of records), {d['wal_bytes'] / 1e6:.1f} MB,"
            f" {d['wal_buffers_full']} buffers full; pg_stat_io WAL: "
            f"{io1['writes'] - io0['writes']} writes, {io1['fsyncs'] - io0['fsyncs']} fsyncs"
        ]
        s0, s1 = self.start["sessions"], end["sessions"]
        assert isinstance(s0, dict) and isinstance(s1, dict)
        by: dict[str, list[int]] = {}
        for pid, (who, *counts) in s1.items():
            _, *counts0 = s0.get(pid, (who, 0, 0, 0, 0))
            acc = by.setdefault(who, [0, 0, 0, 0])
            for i, (now, then) in enumerate(zip(counts, counts0, strict=True)):
                acc[i] += now - then
        for who, (rec, fpi, nbytes, fsyncs) in sorted(by.items(), key=lambda kv: -kv[1][2]):
            if rec or fsyncs:
                lines.append(
                    f"      {who:<40} {nbytes / 1e6:8.1f} MB {rec:8d} records"
                    f" {fpi:7d} FPI ({fpi / max(rec, 1):.1%}) {fsyncs:6d} WAL fsyncs"
                )
        return "\n".join(lines)


@dataclass
class Measured:
    idle: Phase
    loaded: Phase
    busy_s: float
    idle_cpu: str
    loaded_cpu: str


async def run_phase(
    conn: asyncpg.Connection, base: str, public: str, seconds: float, machine: Machine
) -> tuple[Phase, str]:
    gen = await Generator.start(base, public, machine)
    waits = machine.waits()
    before = await machine.cpu(conn)
    wal = WalMeter()
    await wal.begin(conn)
    waits.start()
    await gen.go(seconds)
    phase = await gen.result()
    after = await machine.cpu(conn)
    walled = await wal.end(conn, phase.seconds)
    table = cpu_table(before, after, phase.seconds, phase.generator_cpu_s)
    return phase, table + "\n" + await waits.stop() + "\n" + walled


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
    conn: asyncpg.Connection,
    session: aiohttp.ClientSession,
    cv: str,
    public: str,
    prefix: str,
    machine: Machine,
) -> tuple[Phase, float, str]:
    """The load while the intakes and the purge run; how long they took; where the CPU went."""
    calls = await prepare_calls(session, cv)
    gen = await Generator.start(cv, public, machine)
    waits = machine.waits()
    before = await machine.cpu(conn)
    wal = WalMeter()
    await wal.begin(conn)
    waits.start()
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
    if CHECKPOINT:  # the purge's first touch of each page since: a full-page image
        await conn.execute("CHECKPOINT")
    await gen.go()
    done_at: dict[str, float] = {}  # seconds into the load when each part was seen finished
    while time.perf_counter() - started < BUSY_LIMIT_S:
        stored = await conn.fetchval(
            "SELECT count(*) FROM recordings WHERE external_id = ANY($1) AND state = 'stored'",
            recordings,
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM recordings WHERE external_id LIKE $1 AND state = 'stored'",
            "R" + prefix + "%",
        )
        for part, finished in (("intakes", stored == INTAKES), ("purge", left == 0)):
            if finished:
                done_at.setdefault(part, time.perf_counter() - gen.started)
        if stored == INTAKES and left == 0:
            break
        await asyncio.sleep(0.5)  # (each poll is a scan of the 20,000: not too often)
    else:
        raise RuntimeError(f"intake and purge unfinished after {BUSY_LIMIT_S:.0f} s")
    busy_s = time.perf_counter() - started
    after = await machine.cpu(conn)
    waited = await waits.stop() + "\n" + await wal.end(conn, busy_s)
    waited += "\n    finished, seconds into the load (to 0.5 s): " + ", ".join(
        f"{part} {at:.1f}" for part, at in sorted(done_at.items(), key=lambda kv: kv[1])
    )
    sizes = await conn.fetch(
        "SELECT size_bytes FROM recordings WHERE external_id = ANY($1)", recordings
    )
    assert [r["size_bytes"] for r in sizes] == [INTAKE_BYTES] * INTAKES, sizes
    phase = await gen.result(stop=True)
    # (the generator's CPU is over its whole run: the busy span and the few polls after it)
    return phase, busy_s, cpu_table(before, after, busy_s, phase.generator_cpu_s) + "\n" + waited


async def measure(
    db_url: str, endpoint: str, media_url: str, layout: str, placement: str
) -> Measured:
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
    scratch = None
    if placement != "shared":
        # the replicas' scratch space (intake's spool) on tmpfs: in production it is on their
        # own node's disk, not on the database server's
        scratch = tempfile.mkdtemp(prefix="bench-isolation-", dir=SCRATCH)
        env["CALLVAULT_HOME"] = scratch
    public = env["CALLVAULT_PUBLIC_URL"]
    prefix = f"CAiso{layout}{placement}"
    conn = await asyncpg.connect(db_url)
    here = os.getpid()
    try:
        await seed_purge(conn, prefix)
        postmaster = procs.parent(await conn.fetchval("SELECT pg_backend_pid()"))
        s3 = procs.child_running(here, "moto.server")
        media = procs.child_running(here, "tests.bench.media_server")
        async with serve(env) as (cv, replica), aiohttp.ClientSession() as session:
            worker_env = {**env, "CALLVAULT_ROLE": "worker", "CALLVAULT_PORT": str(free_port())}
            if "ISOLATION_WORKER_NICE" in os.environ:  # (0: as before the worker lowered it)
                worker_env["CALLVAULT_WORKER_NICE"] = os.environ["ISOLATION_WORKER_NICE"]
            async with contextlib.AsyncExitStack() as stack:
                worker = None
                if layout == "split":
                    _, worker = await stack.enter_async_context(serve(worker_env, ("worker",)))
                machine = Machine(placement, db_url, replica, worker, s3, media, postmaster)
                machine.place_services()
                await run_phase(conn, cv, public, WARM_UP_S, machine)
                idle, idle_cpu = await run_phase(conn, cv, public, IDLE_S, machine)
                loaded, busy_s, loaded_cpu = await loaded_phase(
                    conn, session, cv, public, prefix, machine
                )
                return Measured(idle, loaded, busy_s, idle_cpu, loaded_cpu)
    finally:
        await conn.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def s3_standin(placement: str) -> Iterator[str]:
    """moto, for this placement: beyond ``shared`` it keeps the objects it receives in tmpfs
    (``TMPDIR``), as S3 keeps them on its own disks, not on the one PostgreSQL's WAL is on."""
    saved = os.environ.get("TMPDIR")
    if placement != "shared":
        os.environ["TMPDIR"] = SCRATCH
    try:
        with moto() as url:  # (its process takes TMPDIR as it starts)
            yield url
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved


async def run(db_url: str) -> None:
    figures: dict[str, float] = {}
    parts: dict[str, list[str]] = {}
    async with media_api(INTAKE_BYTES) as media_url:
        for placement in PLACEMENTS:
            for layout in LAYOUTS:
                with s3_standin(placement) as endpoint:
                    m = await measure(db_url, endpoint, media_url, layout, placement)
                idle, loaded = m.idle, m.loaded
                ratio = loaded.p99_ms / idle.p99_ms
                print(
                    f"{layout}, {placement} ({PLACEMENT_NAMES[placement]}): idle p99 "
                    f"{idle.p99_ms:.1f} ms ({len(idle.latencies)} requests), loaded p99 "
                    f"{loaded.p99_ms:.1f} ms ({len(loaded.latencies)} requests in "
                    f"{m.busy_s:.1f} s), errors {idle.errors} + {loaded.errors}\n"
                    f"  CPU while idle ({idle.seconds:.1f} s):\n{m.idle_cpu}\n"
                    f"  CPU while loaded ({m.busy_s:.1f} s):\n{m.loaded_cpu}\n"
                    f"{timeline(loaded)}",
                    flush=True,
                )
                name = "all-in-one" if layout == "all" else "web + worker"
                parts.setdefault(placement, []).append(
                    f"{name} {idle.p99_ms:.1f} -> {loaded.p99_ms:.1f} ms = {ratio:.2f} "
                    f"(busy {m.busy_s:.1f} s, errors {idle.errors + loaded.errors})"
                )
                key = layout if placement == "shared" else f"{placement}_{layout}"
                figures.update(
                    {
                        f"{key}_idle_p99_ms": idle.p99_ms,
                        f"{key}_loaded_p99_ms": loaded.p99_ms,
                        f"{key}_ratio": ratio,
                        f"{key}_busy_s": m.busy_s,
                        f"{key}_requests": len(idle.latencies) + len(loaded.latencies),
                        f"{key}_errors": idle.errors + loaded.errors,
                    }
                )
    # the goal is judged on the deployment's layout (the last measured) in the last placement,
    # named in the line; the other placements' figures follow it, so none is hidden
    judged, layout = PLACEMENTS[-1], LAYOUTS[-1]
    ratio = figures[(layout if judged == "shared" else f"{judged}_{layout}") + "_ratio"]
    others = [f"{p}: " + "; ".join(parts[p]) for p in PLACEMENTS if p != judged]
    report(
        "isolation",
        f"isolation: voice webhook p99 at {RATE:.0f} req/s, idle -> during {INTAKES} x 200 MB "
        f"intake + {PURGE_N:,} purge, {judged} ({PLACEMENT_NAMES[judged]}): "
        + "; ".join(parts[judged])
        + f" (goal <= {GOAL:g})"
        + "".join(f"; {o}" for o in others),
        **figures,
        placement=judged,
        ratio=ratio,
        goal_ratio=GOAL,
    )


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
