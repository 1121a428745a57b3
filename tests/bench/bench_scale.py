"""A million calls over 100 tenants (issue 18 goal 4): ``GET /api/calls`` with each filter
(date range, outcome, external id) through ``callvault serve`` (the non-superuser role,
row-level security, a tenant's compliance token) at p99 <= 50 ms, and a purge pass over
100,000 expired recordings against one over 20,000 (the rate ratio, goal ~1: a pass must not
slow down as the backlog grows).

Seeding is COPY (asyncpg's binary ``copy_records_to_table``), as the superuser into the tables
the API reads: calls (1,000,000; ``CALLVAULT_BENCH_CALLS`` to change), recordings, their data
keys and one ledger event per call that has a recording (the purge appends after it, so the
ledger's link trigger looks its predecessor up as in production). COPY fires the tenant and link
triggers; the other calls get no ledger events: the list reads only pause events from the ledger,
by call id. The purge's store is a local folder holding every object, so the figure is the
database's and the purge's own, not an S3 emulator's.

The calls are a deployment's in its steady state: each caller's lookup hash is the one intake
writes, and the start-up pass that re-hashes numbers stored before today's normalisation
(service/personal/rehash.py) is marked done, as on any deployment after its first start. With
random hashes and no mark, serve re-hashed (rewrote) all million calls in the background while
the lists were being timed, and the figures were that pass's more than the list's."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from retention.purge import purge_once
from service import ledger
from service.auth import create_token
from service.db import tenancy
from service.db.pool import create_pool
from service.db.roles import url_for_role
from service.ledger import NewEvent
from service.observability import audit
from service.personal import rehash
from service.personal.numbers import PhoneVault
from service.storage.local import LocalStore
from tests.bench.harness import SECRET_KEY, SEEDING_TENANT, postgres, report, serve, serve_env

CALLS = int(os.environ.get("CALLVAULT_BENCH_CALLS", "1000000"))
TENANTS = 100
# each pass's expired recordings are spread over 10 tenants of their own: 2,000 then 10,000 a
# tenant (all of its calls), so both passes take full batches and differ in the backlog only
PURGE_TENANTS = 10
SMALL, LARGE = 20_000, 100_000
REQUESTS = 300  # per filter
P99_GOAL_MS = 50.0
OUTCOMES = ["consented"] * 6 + ["refused"] * 2 + ["hung_up_during_notice", "no_input", "not_asked"]
BODY = b"RIFF" + bytes(1020)


def _tenant(i: int) -> str:
    return f"scale-{i:03d}"


async def seed_calls(conn: asyncpg.Connection[Any], now: datetime) -> list[tuple[str, str]]:
    """CALLS calls over TENANTS tenants and 90 days, in one COPY; returns a sample of
    (tenant, external id) for the external-id filter."""
    vault = PhoneVault(SECRET_KEY)
    plain = [f"+8490{i:07d}" for i in range(200)]
    numbers = [vault.encrypt(number) for number in plain]
    hashes = [vault.lookup_hash(number) for number in plain]  # as intake stores them
    rnd = random.Random(18)
    sample: list[tuple[str, str]] = []
    span = 90 * 86400

    def records(ids: list[int]) -> Any:
        for n, key in enumerate(ids):
            tenant = _tenant(n % TENANTS)
            started = now - timedelta(seconds=rnd.random() * span)
            rnd.randbytes(32)  # what was the hash: drawn still, so the times are as before
            outcome = OUTCOMES[n % len(OUTCOMES)]
            external = f"CA{n:032x}"
            if n % 3331 == 0:
                sample.append((tenant, external))
            yield (
                uuid.UUID(int=key, version=4),
                tenant,
                "twilio",
                external,
                numbers[n % len(numbers)],
                hashes[n % len(hashes)],
                "+842873000000",
                json.dumps({"queue": f"q{n % 7}"}),
                outcome,
                started + timedelta(seconds=20),
                started,
                started + timedelta(seconds=200),
            )

    # A bulk load's usual order: the secondary indexes are built once after the rows are in
    # (their definitions read from the catalogue, so they are the migrations' own), and the
    # rows come in primary-key order.
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def"
        " FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid"
        " WHERE i.indrelid = 'calls'::regclass AND c.oid IS NULL"
    )
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    ids = sorted(rnd.getrandbits(128) for _ in range(CALLS))
    await conn.copy_records_to_table(
        "calls",
        records=records(ids),
        columns=[
            "id",
            "tenant_id",
            "platform",
            "external_id",
            "caller_enc",
            "caller_hash",
            "called",
            "policy",
            "outcome",
            "outcome_at",
            "started_at",
            "ended_at",
        ],
    )
    for index in indexes:
        await conn.execute(index["def"])
    return sample


async def seed_expired(
    conn: asyncpg.Connection[Any], root: Path, count: int, tag: str, tenants: list[str]
) -> None:
    """``count`` expired stored recordings (each with its data key and its call's first ledger
    event) spread evenly over the calls of ``tenants``, and their objects in ``root``."""
    rows = await conn.fetch(
        "SELECT id, tenant_id FROM (SELECT id, tenant_id,"
        " row_number() OVER (PARTITION BY tenant_id ORDER BY id) AS n"
        " FROM calls WHERE tenant_id = ANY($1::text[])) c WHERE n <= $2",
        tenants,
        count // len(tenants),
    )
    assert len(rows) == count, (len(rows), count)
    recordings = [(uuid.uuid4(), r["id"], r["tenant_id"]) for r in rows]
    folder = root / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    for rid, _, _ in recordings:
        (folder / f"{rid}.wav").write_bytes(BODY)
    at = datetime.now(UTC)
    events = []
    for r in rows:
        first = NewEvent("call_started", {"tag": tag})
        digest = ledger.event_hash(r["id"], 1, first.type, at, first.details, None, ledger.GENESIS)
        details = json.dumps(first.details)
        events.append((r["id"], 1, first.type, at, details, ledger.GENESIS, digest))
    await conn.copy_records_to_table(
        "ledger_events",
        records=events,
        columns=["call_id", "seq", "type", "at", "details", "prev_hash", "hash"],
    )
    expired = at - timedelta(days=1)
    await conn.copy_records_to_table(
        "recordings",
        records=[
            (rid, cid, "twilio", f"RE{rid.hex}", "stored", f"recordings/{rid}.wav", "x", len(BODY),
             at, expired)
            for rid, cid, _ in recordings
        ],
        columns=[
            "id", "call_id", "platform", "external_id", "state", "object_key", "sha256",
            "size_bytes", "stored_at", "retain_until",
        ],
    )  # fmt: skip
    await conn.copy_records_to_table(
        "recording_keys",
        records=[(rid, "tink-streaming-v1", bytes(48), bytes(8)) for rid, _, _ in recordings],
        columns=["recording_id", "format", "wrapped_key", "kek_id"],
    )
    await conn.execute("ANALYZE recordings; ANALYZE recording_keys; ANALYZE ledger_events")


async def purge_rate(url: str, root: Path, count: int, tag: str, tenants: list[str]) -> float:
    """Recordings a second of one purge pass over ``count`` expired ones, as the service role."""
    conn = await asyncpg.connect(url)
    try:
        await seed_expired(conn, root, count, tag, tenants)
    finally:
        await conn.close()
    pool = await create_pool(url_for_role(url.replace("&" + SEEDING_TENANT, "")), max_size=4)
    store = LocalStore(root)
    try:
        started = time.perf_counter()
        result = await purge_once(pool, store)
        seconds = time.perf_counter() - started
    finally:
        await store.close()
        await pool.close()
    assert result.purged == count and not result.failed, result
    return count / seconds


async def timed(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> float:
    started = time.perf_counter()
    async with session.get(url, params=params) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert "items" not in body or body["items"] or "external_id" not in params, body
    return time.perf_counter() - started


def p99_ms(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000


async def run(url: str) -> None:
    now = datetime.now(UTC)
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO tenants (id, name) VALUES ($1, $1)",
            [(_tenant(i),) for i in range(TENANTS)],
        )
        t = time.perf_counter()
        sample = await seed_calls(conn, now)
        seed_s = time.perf_counter() - t
        await conn.execute("VACUUM (ANALYZE) calls")  # as after any bulk load
        # the platform-wide mark of a finished start-up re-hash (see the docstring)
        await conn.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        await tenancy.set_tenant(conn, tenancy.ALL)
        await audit.record(
            conn, "bench", rehash.ACTION, details={"normalisation": rehash.NORMALISATION}
        )
        tokens = {}
        for i in (0, 37, 99):
            await tenancy.set_tenant(conn, _tenant(i))
            tokens[_tenant(i)], _ = await create_token(conn, "bench", "compliance", "bench")
    finally:
        await conn.close()
    print(f"seeded {CALLS:,} calls over {TENANTS} tenants with COPY in {seed_s:.1f} s", flush=True)

    home = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = serve_env(home, url, CALLVAULT_PURGE_INTERVAL="90d")
    rnd = random.Random(4)
    figures: dict[str, float] = {}
    floor = 0.0
    async with serve(env) as (base, _), aiohttp.ClientSession() as session:
        filters: dict[str, Any] = {
            # the floor: an authenticated request that reads nothing (the token lookup, the
            # tenant, the JSON), measured beside the lists on the same busy machine
            "whoami": lambda: {},
            "date range": lambda: {
                "from": (start := now - timedelta(days=rnd.uniform(1, 80))).isoformat(),
                "to": (start + timedelta(days=rnd.uniform(0.5, 7))).isoformat(),
            },
            "outcome": lambda: {"outcome": rnd.choice(["refused", "no_input", "consented"])},
            "external id": lambda: {"external_id": rnd.choice(sample)[1]},
        }
        for name, make in filters.items():
            latencies = []
            for n in range(REQUESTS):
                tenant = _tenant((0, 37, 99)[n % 3])
                params = make()
                if name == "external id":  # one of the token's tenant's own calls
                    params = {"external_id": rnd.choice([e for t, e in sample if t == tenant])}
                session.headers["Authorization"] = f"Bearer {tokens[tenant]}"
                path = "/api/whoami" if name == "whoami" else "/api/calls"
                latencies.append(await timed(session, base + path, params))
            p99 = p99_ms(latencies[20:])  # the first requests warm the caches
            median = statistics.median(latencies[20:]) * 1000
            what = f"GET {path}" + (" (the floor)" if name == "whoami" else f" by {name}")
            print(f"{what}: p99 {p99:.1f} ms, p50 {median:.1f} ms", flush=True)
            if name == "whoami":
                floor = p99
            else:
                figures[name] = p99

    root = Path(tempfile.mkdtemp(prefix="bench-scale-store-"))
    first, second = range(PURGE_TENANTS), range(PURGE_TENANTS, 2 * PURGE_TENANTS)
    small = await purge_rate(url, root, SMALL, "small", [_tenant(i) for i in first])
    print(f"purge pass over {SMALL:,}: {small:,.0f}/s", flush=True)
    large = await purge_rate(url, root, LARGE, "large", [_tenant(i) for i in second])
    print(f"purge pass over {LARGE:,}: {large:,.0f}/s", flush=True)
    ratio = large / small
    worst = max(figures.values())
    report(
        "scale",
        f"scale: {CALLS:,} calls/{TENANTS} tenants, GET /api/calls p99 "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in figures.items())
        + f" (goal <= {P99_GOAL_MS:.0f}; whoami {floor:.1f} ms); purge {LARGE:,} at "
        f"{large:,.0f}/s vs {SMALL:,} at "
        f"{small:,.0f}/s = {ratio:.2f} (goal ~1)",
        calls=CALLS,
        floor_p99_ms=floor,
        seed_seconds=seed_s,
        p99_ms=figures,
        worst_p99_ms=worst,
        purge_small_per_s=small,
        purge_large_per_s=large,
        ratio=ratio,
    )


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
