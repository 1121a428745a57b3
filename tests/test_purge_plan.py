"""The readers of recording_keepers() over many recordings (the purge's claim, the console's
recordings due per day) keep their plans on tables nobody has analysed yet (a restore, a bulk
COPY, before autovacuum's first pass): the keepers are computed, and read, once per query, not
once per recording, and the answers are still what the explanation (recording_retention())
says. Plans are read from EXPLAIN (ANALYZE, FORMAT JSON) as the service role."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from retention.purge import Q
from service.console.api import Q as CONSOLE
from service.db import tenancy
from service.db.pool import connect

RECORDINGS = 3000
BATCH = 1000
KEEPER_TABLES = {"holds", "dsar_requests"}


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def _outline(plan: dict[str, Any], depth: int = 0) -> str:
    """The plan's nodes, one a line, with the relation each reads and its loops."""
    line = "  " * depth + f"{plan['Node Type']} {plan.get('Relation Name', '')}"
    line += f" loops={plan.get('Actual Loops')}"
    return "\n".join([line] + [_outline(c, depth + 1) for c in plan.get("Plans", [])])


def _keepers_paths(node: dict[str, Any], above: list[dict[str, Any]]) -> Iterator[list[Any]]:
    """For each union of holds and requests (recording_keepers() inlined: an Append over
    them), the nodes from the plan's root down to it."""
    path = [*above, node]
    if node["Node Type"] == "Append" and any(
        n.get("Relation Name") in KEEPER_TABLES for n in _nodes(node)
    ):
        yield path
        return
    for child in node.get("Plans", []):
        yield from _keepers_paths(child, path)


def assert_keepers_read_once(plan: dict[str, Any]) -> None:
    """The keepers ran once, and nothing above them ran more than once: neither computed again
    (a nested loop over the union) nor read again (a nested loop over its materialized rows)
    for each recording."""
    paths = list(_keepers_paths(plan, []))
    assert paths, _outline(plan)
    for path in paths:
        assert [n["Actual Loops"] for n in path] == [1] * len(path), _outline(plan)


async def _seed_unanalysed(db: asyncpg.Connection[Any]) -> set[uuid.UUID]:
    """RECORDINGS expired recordings written with COPY, as a restore or a bulk load writes
    them, with autovacuum off for these tables so that nothing analyses them meanwhile; a hold
    on a call, a hold on a number and an open access request keep some of them (returned).
    ``db``: a plain connection, without the service's jsonb codec (COPY takes the JSON text)."""
    for table in ("calls", "recordings", "holds", "dsar_requests"):
        await db.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    now = await db.fetchval("SELECT now()")  # the database's clock decides what is expired
    numbers = [hashlib.sha256(b"number %d" % i).digest() for i in range(50)]
    calls = [uuid.uuid4() for _ in range(RECORDINGS)]
    recordings = [uuid.uuid4() for _ in range(RECORDINGS)]
    await db.copy_records_to_table(
        "calls",
        records=[
            (c, tenancy.DEFAULT, "twilio", f"CA{i:032x}", numbers[i % len(numbers)], "{}",
             "consented", now)
            for i, c in enumerate(calls)
        ],
        columns=["id", "tenant_id", "platform", "external_id", "caller_hash", "policy",
                 "outcome", "outcome_at"],
    )  # fmt: skip
    await db.copy_records_to_table(
        "recordings",
        records=[
            (r, c, tenancy.DEFAULT, "twilio", f"RE{i}", "stored", f"recordings/{r}.wav", "x",
             1024, now, now - timedelta(days=1, seconds=RECORDINGS - i))
            for i, (r, c) in enumerate(zip(recordings, calls, strict=True))
        ],
        columns=["id", "call_id", "tenant_id", "platform", "external_id", "state",
                 "object_key", "sha256", "size_bytes", "stored_at", "retain_until"],
    )  # fmt: skip
    await db.execute(
        "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'court order', 'test')",
        calls[3],
    )
    await db.execute(
        "INSERT INTO holds (phone_hash, reason, placed_by) VALUES ($1, 'inquiry', 'test')",
        numbers[7],
    )
    await db.execute(
        "INSERT INTO dsar_requests (kind, phone_hash, requested_by, due_at)"
        " VALUES ('access', $1, 'test', now() + interval '30 days')",
        numbers[11],
    )
    return {r for i, r in enumerate(recordings) if i == 3 or i % len(numbers) in (7, 11)}


async def _plan(conn: asyncpg.Connection[Any], sql: str, *args: Any) -> dict[str, Any]:
    """A query's plan as it ran (EXPLAIN ANALYZE executes it: the claim's row locks are rolled
    back)."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    finally:
        await transaction.rollback()
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


@pytest.fixture
async def unanalysed(database_url: str) -> set[uuid.UUID]:
    """The seeded recordings that a hold or a request keeps."""
    db = await asyncpg.connect(database_url)
    try:
        await tenancy.set_tenant(db, tenancy.DEFAULT)
        kept = await _seed_unanalysed(db)
        # what these tests are about: no statistics for the planner to go by
        for table in ("recordings", "calls", "holds", "dsar_requests"):
            assert not await db.fetchval(
                "SELECT count(*) FROM pg_stats WHERE tablename = $1", table
            ), table
    finally:
        await db.close()
    return kept


@pytest.fixture
async def conn(service_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    c = await connect(service_url)
    await tenancy.set_tenant(c, tenancy.DEFAULT)
    yield c
    await c.close()


async def test_claim_computes_the_keepers_once_on_tables_never_analysed(
    unanalysed: set[uuid.UUID], conn: asyncpg.Connection[Any]
) -> None:
    assert_keepers_read_once(await _plan(conn, Q["claim_expired"], BATCH))
    # and the claim takes what the explanation says is due, in its order
    expected = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM recording_retention() WHERE purge_at <= now()"
            " ORDER BY retain_until, id LIMIT $1",
            BATCH,
        )
    ]
    async with conn.transaction():
        claimed = [r["id"] for r in await conn.fetch(Q["claim_expired"], BATCH)]
    assert len(claimed) == BATCH
    assert claimed == expected
    assert not set(claimed) & unanalysed


async def test_due_per_day_reads_the_keepers_once_on_tables_never_analysed(
    unanalysed: set[uuid.UUID], conn: asyncpg.Connection[Any]
) -> None:
    now = await conn.fetchval("SELECT now()")
    args = (now, now + timedelta(days=30), "UTC")
    assert_keepers_read_once(await _plan(conn, CONSOLE["due_per_day"], *args))
    # every recording counted once, as due or as kept, as the explanation has them
    rows = await conn.fetch(CONSOLE["due_per_day"], *args)
    assert [(r["due"], r["kept"]) for r in rows] == [
        (RECORDINGS - len(unanalysed), len(unanalysed))
    ]
    explained = await conn.fetchval(
        "SELECT count(*) FROM recording_retention() WHERE purge_at IS NULL AND state = 'stored'"
    )
    assert explained == len(unanalysed)
