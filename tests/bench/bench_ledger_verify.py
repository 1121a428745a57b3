"""Ledger verification over 1,000,000 events (100,000 calls of 10) and a Merkle seal over the
100,000 calls, beside the floor: reading the same rows through the same cursor without checking
anything."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from service import ledger
from service.db.pool import connect
from service.ledger import GENESIS, event_hash, seals
from tests.bench.harness import postgres, report

CALLS = 100_000
PER_CALL = 10
GOAL = 100_000


async def seed(url: str) -> None:
    import json

    import asyncpg

    conn = await asyncpg.connect(url)
    # COPY is binary: jsonb's binary form is a version byte and the text
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="binary",
        encoder=lambda v: b"\x01" + json.dumps(v).encode(),
        decoder=lambda b: json.loads(b[1:]),
    )
    try:
        await _seed(conn)
    finally:
        await conn.close()


async def _seed(conn: object) -> None:
    at = datetime.now(UTC)
    call_rows, event_rows = [], []
    for _ in range(CALLS):
        cid = uuid.uuid4()
        call_rows.append((cid, "twilio", cid.hex, "{}"))
        prev = GENESIS
        for seq in range(1, PER_CALL + 1):
            details = {"n": seq, "reason": "benchmark"}
            digest = event_hash(cid, seq, "e", at, details, None, prev)
            event_rows.append((cid, seq, "e", at, details, None, prev, digest))
            prev = digest
    await conn.copy_records_to_table(  # type: ignore[attr-defined]
        "calls", records=call_rows, columns=["id", "platform", "external_id", "policy"]
    )
    # the chain check is skipped for the seed (migration 0026 merged it with the tenant stamp):
    # each event then takes tenant_id's default, the tenant its call just took from the same one
    await conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_link_tenant")  # type: ignore[attr-defined]
    await conn.copy_records_to_table(  # type: ignore[attr-defined]
        "ledger_events",
        records=event_rows,
        columns=["call_id", "seq", "type", "at", "details", "dedupe_key", "prev_hash", "hash"],
    )
    await conn.execute("ALTER TABLE ledger_events ENABLE TRIGGER ledger_events_link_tenant")  # type: ignore[attr-defined]
    await conn.execute("ANALYZE ledger_events")  # type: ignore[attr-defined]


async def fetch_only(conn: object) -> int:
    n = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):  # type: ignore[attr-defined]
        async for _ in conn.cursor(ledger.Q["all_events"], prefetch=5000):  # type: ignore[attr-defined]
            n += 1
    return n


async def run(url: str) -> None:
    conn = await connect(url)
    try:
        started = time.perf_counter()
        await seed(url)
        seeded_s = time.perf_counter() - started
        # verification includes recomputing the newest seal's Merkle tree over every call
        t = time.perf_counter()
        assert await seals.seal(conn) is not None
        seal_s = time.perf_counter() - t
        ours, floor = [], []
        for _ in range(2):  # A B A B
            t = time.perf_counter()
            result = await ledger.verify(conn)
            ours.append(time.perf_counter() - t)
            assert result.ok and result.events == CALLS * PER_CALL and result.seals == 1
            t = time.perf_counter()
            assert await fetch_only(conn) == CALLS * PER_CALL
            floor.append(time.perf_counter() - t)
    finally:
        await conn.close()
    events = CALLS * PER_CALL
    rate, floor_rate = events / min(ours), events / min(floor)
    report(
        "ledger_verify",
        f"ledger verify: {rate:,.0f} events/s vs reading them only {floor_rate:,.0f} "
        f"events/s = {rate / floor_rate:.2f}; goal >= {GOAL:,} events/s: ratio "
        f"{rate / GOAL:.2f} (goal >= 1)",
        events_per_s=rate,
        fetch_only_per_s=floor_rate,
        ratio=rate / GOAL,
        seed_s=seeded_s,
        seal_s=seal_s,
    )


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
