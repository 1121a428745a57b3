"""Seals: periodic digests of every call's chain head, chained to each other.

A call's own chain shows any change to its events; it cannot show the call vanishing with all
its events. A seal folds the heads of all chains (as of the newest event when sealing) into one
SHA-256 and links to the previous seal, and verification recomputes the newest seal's digest:
a call deleted whole since then no longer matches. Sealing runs in the scheduler of every
replica; a transaction-scoped advisory lock lets one seal at a time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from service.db import Conn, queries

Q = queries.load("service.ledger")
GENESIS = bytes(32)
_DOMAIN = b"callvault-seal-v1\n"


@dataclass(frozen=True)
class SealCheck:
    seals: int
    ok: bool
    reason: str | None = None


async def _heads_digest(conn: Conn, max_event_id: int) -> tuple[bytes, int]:
    digest = hashlib.sha256(_DOMAIN)
    calls = 0
    async for row in conn.cursor(Q["heads_upto"], max_event_id, prefetch=10_000):
        digest.update(row["call_id"].bytes + row["seq"].to_bytes(4, "big") + bytes(row["hash"]))
        calls += 1
    return digest.digest(), calls


def seal_hash(prev: bytes, max_event_id: int, calls: int, heads: bytes) -> bytes:
    body = prev + max_event_id.to_bytes(8, "big") + calls.to_bytes(8, "big") + heads
    return hashlib.sha256(_DOMAIN + body).digest()


async def seal(conn: Conn) -> int | None:
    """Write a seal over everything up to now; None when another replica is sealing or nothing
    changed since the last seal."""
    async with conn.transaction(isolation="repeatable_read"):
        if not await conn.fetchval(Q["seal_lock"]):
            return None
        last = await conn.fetchrow(Q["last_seal"])
        upto: int = await conn.fetchval(Q["max_event_id"])
        if last is not None and last["max_event_id"] == upto:
            return None
        heads, calls = await _heads_digest(conn, upto)
        prev = bytes(last["hash"]) if last is not None else GENESIS
        seal_id: int = await conn.fetchval(
            Q["insert_seal"], upto, calls, heads, prev, seal_hash(prev, upto, calls, heads)
        )
        return seal_id


async def check(conn: Conn) -> SealCheck:
    """The seals chain from genesis, and the newest one still matches the ledger."""
    rows: list[Any] = await conn.fetch(Q["all_seals"])
    prev = GENESIS
    for row in rows:
        expected = seal_hash(prev, row["max_event_id"], row["calls"], bytes(row["heads_sha256"]))
        if bytes(row["prev_hash"]) != prev or bytes(row["hash"]) != expected:
            return SealCheck(len(rows), False, f"seal {row['id']} is altered or out of order")
        prev = bytes(row["hash"])
    if rows:
        last = rows[-1]
        heads, calls = await _heads_digest(conn, last["max_event_id"])
        if heads != bytes(last["heads_sha256"]) or calls != last["calls"]:
            return SealCheck(
                len(rows),
                False,
                f"seal {last['id']} no longer matches the ledger: it sealed {last['calls']} "
                f"calls, {calls} remain as they were (a call was removed or rewritten)",
            )
    return SealCheck(len(rows), True)
