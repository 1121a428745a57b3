"""Seals: each tenant's call chain heads in a Merkle tree, the trees chained seal to seal.

A call's own chain shows any change to its events; it cannot show the call vanishing with all
its events. A seal (format 2) is an RFC 6962 Merkle tree over the tenant's call chain heads as
of its newest event (one leaf per call, in call id order: ``call id || head hash``), and its
hash covers the previous seal of the same tenant, the tenant, the time, the event bound, the
tree size and the root. Verification walks each tenant's chain of seals from genesis and
recomputes the newest seal's root from the ledger: a call deleted whole no longer matches. One
call's inclusion is proven by its audit path, log2(n) hashes (:func:`inclusion`), checkable by
:mod:`service.ledger.merkle` alone with no database.

Seals written before Merkle trees (format 1: one SHA-256 over every head, the tenant's chain
then including the deployment's pre-tenancy seals in ``default``) keep verifying as before.

The bound: every transaction that appends events holds a shared advisory lock from before its
event ids are drawn until it commits (the ``insert_events`` statement takes it). A seal takes
that lock exclusively for one statement to read its bound, so every event at or below the bound
has committed and none can appear below it later (a late commit of a lower id would otherwise
make a sound ledger look tampered with). Sealing runs per tenant in the scheduler of every
replica; a transaction-scoped advisory lock per tenant lets one replica seal a tenant at a time.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from service.db import Conn, queries
from service.errors import SealBroken as SealBroken
from service.ledger import merkle

Q = queries.load("service.ledger")
GENESIS = bytes(32)
_DOMAIN_V1 = b"callvault-seal-v1\n"
_DOMAIN_V2 = b"callvault-seal-v2\n"
FORMAT_DIGEST = 1  # before Merkle trees
FORMAT_MERKLE = 2
_NEVER = -math.inf  # no seal of that format: no event id is under it


@dataclass(frozen=True)
class SealCheck:
    seals: int
    ok: bool
    reason: str | None = None
    tenant: str | None = None


# -- format 1 ------------------------------------------------------------------------------


async def _heads_digest(conn: Conn, tenant: str, max_event_id: int) -> tuple[bytes, int]:
    digest = hashlib.sha256(_DOMAIN_V1)
    calls = 0
    async for row in conn.cursor(Q["heads_upto"], max_event_id, tenant, prefetch=10_000):
        digest.update(row["call_id"].bytes + row["seq"].to_bytes(4, "big") + bytes(row["hash"]))
        calls += 1
    return digest.digest(), calls


def seal_hash(prev: bytes, max_event_id: int, calls: int, heads: bytes) -> bytes:
    """A format-1 seal's hash."""
    body = prev + max_event_id.to_bytes(8, "big") + calls.to_bytes(8, "big") + heads
    return hashlib.sha256(_DOMAIN_V1 + body).digest()


# -- format 2 ------------------------------------------------------------------------------


def leaf_data(call_id: uuid.UUID, head: bytes) -> bytes:
    """A call's leaf: its id and its chain head (the head's hash commits to its position)."""
    return call_id.bytes + head


def seal_hash_v2(
    prev: bytes, tenant: str, at: datetime, max_event_id: int, tree_size: int, root: bytes
) -> bytes:
    """A format-2 seal's hash; the offline receipt verifier recomputes it from the receipt."""
    name = tenant.encode("utf-8")
    micros = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    body = (
        prev
        + len(name).to_bytes(2, "big")
        + name
        + micros.to_bytes(8, "big", signed=True)
        + max_event_id.to_bytes(8, "big")
        + tree_size.to_bytes(8, "big")
        + root
    )
    return hashlib.sha256(_DOMAIN_V2 + body).digest()


@dataclass
class Leaves:
    call_ids: list[uuid.UUID] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)


async def _leaves(conn: Conn, tenant: str, max_event_id: int) -> Leaves:
    leaves = Leaves()
    async for row in conn.cursor(Q["heads_upto"], max_event_id, tenant, prefetch=10_000):
        leaves.call_ids.append(row["call_id"])
        leaves.hashes.append(merkle.leaf_hash(leaf_data(row["call_id"], bytes(row["hash"]))))
    return leaves


def _tenant(conn_tenant: str | None) -> str:
    if not conn_tenant or conn_tenant == "*":
        raise RuntimeError("sealing is per tenant: run it as one tenant")
    return conn_tenant


async def _conn_tenant(conn: Conn) -> str:
    setting: str | None = await conn.fetchval("SELECT current_setting('callvault.tenant', true)")
    return _tenant(setting)


async def seal(conn: Conn) -> int | None:
    """Seal the connection's tenant up to now; None when another replica is sealing it or
    nothing changed since its last seal."""
    tenant = await _conn_tenant(conn)
    async with conn.transaction():
        # every writer that drew an id so far has committed once this is granted
        await conn.execute(Q["writers_barrier"])
        upto: int = await conn.fetchval(Q["max_event_id"], tenant)
    if upto == 0:
        return None  # nothing to seal yet
    async with conn.transaction(isolation="repeatable_read"):
        if not await conn.fetchval(Q["seal_lock"], tenant):
            return None
        last = await conn.fetchrow(Q["last_seal"], tenant)
        if last is not None and last["max_event_id"] >= upto:
            return None
        leaves = await _leaves(conn, tenant, upto)
        tree_root = merkle.root(leaves.hashes)
        prev = bytes(last["hash"]) if last is not None else GENESIS
        at: datetime = await conn.fetchval(Q["clock"])
        size = len(leaves.hashes)
        seal_id: int = await conn.fetchval(
            Q["insert_seal_v2"],
            tenant,
            at,
            upto,
            size,
            tree_root,
            prev,
            seal_hash_v2(prev, tenant, at, upto, size, tree_root),
        )
        return seal_id


def _row_hash(row: Any, prev: bytes) -> bytes:
    if row["format"] == FORMAT_DIGEST:
        return seal_hash(prev, row["max_event_id"], row["calls"], bytes(row["heads_sha256"]))
    return seal_hash_v2(
        prev,
        row["tenant_id"],
        row["at"],
        row["max_event_id"],
        row["tree_size"],
        bytes(row["root"]),
    )


class Plan:
    """Every visible tenant's seals, read before the ledger is scanned, and each tenant's call
    heads under its newest seals gathered from that same scan (:meth:`feed_rows`): verification
    reads the ledger once, not once more per seal."""

    def __init__(self, tenants: list[str], rows: Sequence[Any]) -> None:
        self.tenants = tenants
        self.rows: dict[str, list[Any]] = {t: [] for t in tenants}
        for row in rows:
            self.rows[row["tenant_id"]].append(row)
        # tenant -> format -> the newest seal of that format
        self.newest = {t: {r["format"]: r for r in rs} for t, rs in self.rows.items()}
        # tenant -> the newest seals' event bounds (format 1, format 2), for feed_rows
        self._bounds: dict[str, tuple[float, float]] = {
            t: tuple(  # type: ignore[misc]
                n[f]["max_event_id"] if f in n else _NEVER for f in (FORMAT_DIGEST, FORMAT_MERKLE)
            )
            for t, n in self.newest.items()
            if n
        }
        self._digests: dict[str, Any] = {}
        self._digest_calls: dict[str, int] = {}
        self._leaves: dict[str, list[bytes]] = {}
        self._call: uuid.UUID | None = None
        self._tenant: str | None = None
        self._head_v1: tuple[int, bytes] | None = None
        self._head_v2: bytes | None = None
        self.fed = False

    def feed_rows(self, rows: Sequence[Any]) -> None:
        """Rows of ``all_events`` (call id, seq, ..., hash, id, tenant), in (call id, seq)
        order: each call's last event under each newest seal is its head there. The tenant's
        bounds are looked up when the tenant changes, not for every event."""
        if not rows:
            return
        self.fed = True
        bounds, seen, b1, b2 = self._bounds, None, _NEVER, _NEVER
        for call_id, seq, _, _, _, _, _, head, event_id, tenant in rows:
            if call_id != self._call:
                self._flush()
                self._call, self._tenant = call_id, tenant
            if tenant != seen:
                seen = tenant
                b1, b2 = bounds.get(tenant, (_NEVER, _NEVER))
            if event_id <= b1:
                self._head_v1 = (seq, head)
            if event_id <= b2:
                self._head_v2 = head

    def _flush(self) -> None:
        if self._call is None or self._tenant is None:
            return
        if self._head_v1 is not None:
            seq, head = self._head_v1
            if self._tenant not in self._digests:
                self._digests[self._tenant] = hashlib.sha256(_DOMAIN_V1)
                self._digest_calls[self._tenant] = 0
            self._digests[self._tenant].update(self._call.bytes + seq.to_bytes(4, "big") + head)
            self._digest_calls[self._tenant] += 1
        if self._head_v2 is not None:
            leaf = merkle.leaf_hash(leaf_data(self._call, self._head_v2))
            self._leaves.setdefault(self._tenant, []).append(leaf)
        self._head_v1 = self._head_v2 = None

    def digest(self, tenant: str) -> tuple[bytes, int]:
        self._flush()
        self._call = None
        found = self._digests.get(tenant)
        empty = hashlib.sha256(_DOMAIN_V1).digest()
        return (found.digest() if found else empty), self._digest_calls.get(tenant, 0)

    def leaves(self, tenant: str) -> list[bytes]:
        self._flush()
        self._call = None
        return self._leaves.get(tenant, [])


async def plan(conn: Conn) -> Plan:
    tenants = [r["id"] for r in await conn.fetch(Q["visible_tenants"])]
    return Plan(tenants, await conn.fetch(Q["seals_of_tenants"], tenants))


async def _check_tenant(conn: Conn, tenant: str, known: Plan) -> SealCheck:
    rows = known.rows[tenant]
    prev = GENESIS
    for row in rows:
        if bytes(row["prev_hash"]) != prev or bytes(row["hash"]) != _row_hash(row, prev):
            return SealCheck(len(rows), False, f"seal {row['id']} is altered or out of order")
        prev = bytes(row["hash"])
    # the newest seal of each format still matches the ledger (format 1 only in an upgraded
    # database: a call removed before the first Merkle seal shows there)
    old = known.newest[tenant].get(FORMAT_DIGEST)
    if old is not None:
        if known.fed:
            heads, calls = known.digest(tenant)
        else:
            heads, calls = await _heads_digest(conn, tenant, old["max_event_id"])
        if heads != bytes(old["heads_sha256"]) or calls != old["calls"]:
            return SealCheck(len(rows), False, _mismatch(old, calls))
    new = known.newest[tenant].get(FORMAT_MERKLE)
    if new is not None:
        if known.fed:
            hashes = known.leaves(tenant)
        else:
            hashes = (await _leaves(conn, tenant, new["max_event_id"])).hashes
        if merkle.root(hashes) != bytes(new["root"]):
            return SealCheck(len(rows), False, _mismatch(new, len(hashes)))
    return SealCheck(len(rows), True)


def _mismatch(row: Any, calls: int) -> str:
    return (
        f"seal {row['id']} no longer matches the ledger: it sealed {row['calls']} calls, "
        f"{calls} are there now and their heads differ (a call was removed or rewritten)"
    )


async def check(conn: Conn, known: Plan | None = None) -> list[SealCheck]:
    """Every visible tenant's chain of seals from genesis, and its newest seal against the
    ledger (from the heads ``known`` gathered in a scan of every event, else read now); one
    result per tenant (a connection of one tenant sees only that one)."""
    known = known or await plan(conn)
    results = []
    for tenant in known.tenants:
        result = await _check_tenant(conn, tenant, known)
        results.append(SealCheck(result.seals, result.ok, result.reason, tenant))
    return results


# -- one call's inclusion --------------------------------------------------------------------


@dataclass(frozen=True)
class Inclusion:
    """A call's head in a seal, and the audit path that proves it."""

    seal_id: int
    tenant: str
    at: datetime
    max_event_id: int
    tree_size: int
    root: bytes
    prev_hash: bytes
    hash: bytes
    call_id: uuid.UUID
    head: bytes
    head_seq: int
    leaf_index: int
    path: list[bytes]

    def seal_json(self) -> dict[str, Any]:
        return {
            "id": self.seal_id,
            "format": FORMAT_MERKLE,
            "tenant": self.tenant,
            "at": self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            "max_event_id": self.max_event_id,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "prev_hash": self.prev_hash.hex(),
            "hash": self.hash.hex(),
        }

    def proof_json(self) -> dict[str, Any]:
        return {
            "hashing": "RFC 6962: leaf SHA-256(0x00||call id||head), node SHA-256(0x01||l||r)",
            "call_id": str(self.call_id),
            "head": self.head.hex(),
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "path": [p.hex() for p in self.path],
        }


async def inclusion(
    conn: Conn, tenant: str, call_id: uuid.UUID, cache: dict[int, Leaves] | None = None
) -> Inclusion | None:
    """The newest Merkle seal of ``tenant`` that covers the call, with its audit path; None
    when no such seal has been made yet. ``cache`` keeps each seal's leaves for the next call
    (an access bundle proves many calls under the same seal)."""
    if not conn.is_in_transaction():
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await inclusion(conn, tenant, call_id, cache)
    row = await conn.fetchrow(Q["covering_seal"], call_id, tenant)
    if row is None:
        return None
    cache = {} if cache is None else cache
    if row["id"] not in cache:
        cache[row["id"]] = await _leaves(conn, tenant, row["max_event_id"])
    leaves = cache[row["id"]]
    try:
        index = leaves.call_ids.index(call_id)
    except ValueError:
        raise SealBroken(f"seal {row['id']}: the call's head is no longer in the ledger") from None
    if merkle.root(leaves.hashes) != bytes(row["root"]):
        raise SealBroken(f"seal {row['id']} no longer matches the ledger")
    return Inclusion(
        seal_id=row["id"],
        tenant=tenant,
        at=row["at"],
        max_event_id=row["max_event_id"],
        tree_size=row["tree_size"],
        root=bytes(row["root"]),
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
        call_id=call_id,
        head=bytes(row["head"]),
        head_seq=row["head_seq"],
        leaf_index=index,
        path=merkle.inclusion_path(leaves.hashes, index),
    )


async def next_seal_due(conn: Conn, tenant: str, interval_s: float) -> datetime:
    """When the tenant's next seal is due by the database's clock: an interval after its last
    seal, or an interval from now when that has passed (the scheduler runs every interval)."""
    row = await conn.fetchrow(Q["seal_clock"], tenant)
    assert row is not None
    now: datetime = row["now"]
    step = timedelta(seconds=interval_s)
    if row["last_at"] is not None and row["last_at"] + step > now:
        due: datetime = row["last_at"] + step
        return due
    return now + step
