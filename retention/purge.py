"""The purge: expired recordings nothing keeps leave the store, and the ledger says so.

What the purge takes is what ``retention.explain`` says (``purge_at <= now()``): stored,
expired, and kept by no active hold and no open access, correct or restrict request. A pass
claims up to ``batch`` of them with ``FOR UPDATE SKIP LOCKED`` (so replicas running it at once
share the work and never touch the same row), looks again in a fresh snapshot for holds and
requests placed meanwhile, deletes the objects (``DeleteObjects``, every version on a versioned
bucket) while the rows stay locked, and only for the objects the store confirms deleted marks the
rows ``purged`` and writes a ``purged`` ledger event. A store that refuses leaves the rows
``stored`` for the next pass, and the pass reports them. A hold racing the purge waits for the
row lock and then sees the recording purged: it can never be "held" with the object gone.

Each tenant's objects are deleted from the store its rows name (``object_store``,
``bundle_store``; see :mod:`service.storage.registry`), so a tenant whose bucket is down only
leaves its own rows for the next pass.

A tenant's pass runs ``workers`` batches at once (each its own transaction and connection,
claiming with ``SKIP LOCKED`` exactly as replicas do), so one batch's ``DeleteObjects`` call
overlaps another's database work. A batch takes the database a fixed number of statements
whatever its size: claim, second look, shred the keys, mark purged, and one ledger append for
every ``key_destroyed`` and ``purged`` event of the batch (its calls locked once, in id order:
batches of one pass or of several replicas never deadlock on them).

A batch that raises (a bug, a constraint) rolls back alone: it is counted in the pass's report
(``batch_errors``, the ``callvault_purge_batch_errors`` metric) and its rows are taken again by
the next pass; the batches beside it commit and the other tenants' passes go on. A batch's
counts reach the report only once its transaction has committed. A lost database (a connection
refused, cut or timed out) is not a batch's fault: once the batches beside it have finished, the
pass stops and raises, as it did before, rather than wait on every remaining tenant.

The same pass removes access bundles whose ``bundle_expires_at`` (``CALLVAULT_BUNDLE_TTL`` after
they were built) has passed by the database's clock, claimed the same way.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from retention import dsar, explain, scheduler
from service import ledger
from service.db import queries, tenancy
from service.errors import DatabaseUnavailable
from service.intake import possible_keys
from service.ledger import NewEvent
from service.observability import audit
from service.storage import ObjectStore, StorageError, recording_keys
from service.storage.registry import StoreRegistry, key_in

log = logging.getLogger(__name__)
Q = queries.load("retention")
ACTOR = "system:purge"
REASON = "retention ended"


@dataclass
class PurgeReport:
    purged: int = 0
    held: int = 0  # claimed, then found kept by a hold or request committed meanwhile
    failed: dict[str, str] = field(default_factory=dict)  # recording id -> why
    bundles: int = 0  # expired access bundles removed
    bundles_failed: dict[str, str] = field(default_factory=dict)  # request id -> why
    stale_uploads: int = 0  # uploads of bundle runs that never committed, on closed requests
    # recordings' uncommitted uploads left in a store their tenant moved from
    left_recording_uploads: int = 0
    batch_errors: int = 0  # batches that raised (rolled back, taken again by the next pass)

    def add(self, part: PurgeReport) -> None:
        """Add a committed batch's counts."""
        self.purged += part.purged
        self.held += part.held
        self.failed.update(part.failed)
        self.bundles += part.bundles
        self.bundles_failed.update(part.bundles_failed)
        self.stale_uploads += part.stale_uploads
        self.left_recording_uploads += part.left_recording_uploads
        self.batch_errors += part.batch_errors


# The database is out of reach (not one batch's fault): the pass stops rather than wait on
# every remaining tenant. Builtin TimeoutError (asyncio's, since 3.11) is an OSError.
_OUTAGE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,  # ConnectionDoesNotExistError and the like
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    DatabaseUnavailable,
)


@dataclass(frozen=True)
class Due:
    recording_id: str
    call_id: str
    retain_until: str
    held: bool  # kept: by a legal hold or an open data-subject request


async def due(conn: Any, limit: int = 1000) -> list[Due]:
    """What a purge would take now, and what a hold or request keeps (``purge --dry-run``)."""
    return [
        Due(e.recording_id, e.call_id, _iso(e.retain_until), e.kept)
        for e in await explain.expired(conn, limit=limit)
    ]


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "-"


async def dry_run_report(conn: Any, limit: int = 1000, upcoming: int = 10) -> list[str]:
    """The lines ``callvault purge --dry-run`` prints: what a purge would take now and why, then
    when the next stored recordings will go (by the database's clock). Every line is read from
    the same explanation as ``GET /api/recordings/{id}/retention`` and the purge's claim."""
    lines = []
    expired = await explain.expired(conn, limit=limit)
    for e in expired:
        lines.append(
            f"{e.recording_id}  call {e.call_id}  retain_until {_iso(e.retain_until)}  "
            f"source {e.source or '-'}  {e.why()}"
        )
    by_holds = sum(bool(e.holds) for e in expired)
    by_requests = sum(bool(e.requests) and not e.holds for e in expired)
    summary = f"{sum(e.due for e in expired)} would be purged, {by_holds} kept by holds"
    if by_requests:
        summary += f", {by_requests} kept by open requests"
    lines.append(summary)
    rows = await explain.upcoming(conn, limit=upcoming) if upcoming > 0 else []
    if rows:
        lines.append(f"next to go (the {len(rows)} soonest):")
    for e, left in rows:
        kept = ""
        if e.holds:
            kept = "  (under a legal hold: kept until it is released)"
        elif e.requests:
            kinds = ", ".join(sorted({r["kind"] for r in e.requests}))
            kept = f"  (kept while an open request is: {kinds})"
        lines.append(
            f"{e.recording_id}  call {e.call_id}  retain_until {_iso(e.retain_until)}  "
            f"source {e.source or '-'}  goes in {_span(left)}{kept}"
        )
    return lines


def _span(left: timedelta) -> str:
    """``89d 23h``, ``59m 58s``: the two largest units of a time left."""
    seconds = max(int(left.total_seconds()), 0)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


async def purge_once(
    pool: asyncpg.Pool[Any],
    stores: ObjectStore | StoreRegistry,
    *,
    batch: int = 1000,
    max_batches: int = 1000,
    workers: int = 2,
) -> PurgeReport:
    """One pass over every tenant. ``batch``: recordings a transaction takes (1000, what one
    ``DeleteObjects`` call takes); ``workers``: batches of a tenant under way at once (each
    holds a pooled connection while its objects are deleted)."""
    report = PurgeReport()
    registry = stores if isinstance(stores, StoreRegistry) else StoreRegistry.wrapping(stores)

    async def one_tenant(tenant: str) -> None:
        # each tenant's pass writes its ledger events and audit entries in its own trail
        if scheduler.stopping():
            return
        left = max_batches
        outage: list[BaseException] = []

        async def worker() -> None:
            nonlocal left
            # at shutdown no new batch is claimed; the one in flight goes on to its commit
            while left > 0 and not outage and not scheduler.stopping():
                left -= 1
                part = PurgeReport()
                try:
                    taken = await _purge_batch(pool, registry, tenant, batch, part)
                except _OUTAGE as exc:
                    outage.append(exc)  # raised once the siblings have finished
                    return
                except Exception as exc:  # its transaction rolled back: rows stay for next pass
                    _batch_failed(report, tenant, "recordings", exc)
                    return
                report.add(part)  # committed: only now do its counts stand
                if taken < batch:
                    return

        # A failing batch ends only its own worker: its siblings run to their commits (a
        # cancelled one could have deleted its objects and not yet marked its rows), and the
        # other tenants' passes go on.
        async with asyncio.TaskGroup() as group:
            for _ in range(max(workers, 1)):
                group.create_task(worker())
        if outage:
            raise outage[0]
        for _ in range(max_batches):
            if scheduler.stopping():
                break
            part = PurgeReport()
            try:
                taken = await _purge_bundles(pool, registry, tenant, batch, part)
            except _OUTAGE:
                raise
            except Exception as exc:
                _batch_failed(report, tenant, "bundles", exc)
                break
            report.add(part)
            if taken < batch:
                break
        # a batch a pass of each: such leftovers are rare (a run's crash, a storage move)
        for kind, sweep in (
            ("stale uploads", _sweep_stale_uploads),
            ("left recording uploads", _sweep_left_recording_uploads),
        ):
            part = PurgeReport()
            try:
                await sweep(pool, registry, tenant, batch, part)
            except _OUTAGE:
                raise
            except Exception as exc:
                _batch_failed(report, tenant, kind, exc)
            else:
                report.add(part)

    await tenancy.for_each_tenant(pool, one_tenant)
    return report


def _batch_failed(report: PurgeReport, tenant: str, kind: str, exc: Exception) -> None:
    """Count and log a batch that raised: the error's type, its SQLSTATE (a database error's)
    and where it was raised, never its message (a database error's can quote a row's values)."""
    report.batch_errors += 1
    log.error(
        "purge batch failed; its rows are left for the next pass",
        extra={
            "tenant": tenant,
            "batch_of": kind,
            "error": type(exc).__name__,
            "sqlstate": getattr(exc, "sqlstate", None),
            "raised_at": _raised_at(exc),
        },
    )


def _raised_at(exc: BaseException) -> str | None:
    """``package/module.py:line`` of the innermost frame the error passed through."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    last = frames[-1]
    where = "/".join(last.filename.replace("\\", "/").split("/")[-2:])
    return f"{where}:{last.lineno}"


async def _delete_by_store(
    conn: Any, registry: StoreRegistry, tenant: str, located: list[tuple[str, str]]
) -> dict[str, str]:
    """Delete (store reference, key) pairs from the store each names; {key: why} for the
    ones refused (a store that cannot be reached refuses all of its keys)."""
    by_store: dict[str, list[str]] = {}
    for ref, key in located:
        by_store.setdefault(ref, []).append(key)
    refused: dict[str, str] = {}
    for ref, keys in by_store.items():
        try:
            store = await registry.for_object(tenant, ref, conn)
            refused.update(await store.delete_many(keys))
        except StorageError as exc:
            refused.update({key: exc.message for key in keys})
    return refused


async def _purge_bundles(
    pool: asyncpg.Pool[Any],
    registry: StoreRegistry,
    tenant: str,
    batch: int,
    report: PurgeReport,
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(Q["claim_expired_bundles"], batch)
        if not rows:
            return 0
        located = [(r["bundle_store"], r["bundle_key"]) for r in rows]
        # a crashed run's upload, from the store it went to
        located += [pair for r in rows for pair in dsar.listed_uploads(r)]
        refused = await _delete_by_store(conn, registry, tenant, located)
        done = _settled(rows, refused, report, bundle=True)
        if done:
            await conn.execute(Q["mark_bundles_expired"], [r["id"] for r in done])
            await audit.record(
                conn,
                ACTOR,
                "dsar_bundles_expired",
                "dsar",
                None,
                {"count": len(done), "requests": [str(r["id"]) for r in done]},
            )
        report.bundles += len(done)
        # a batch the store refused entirely is not taken again in this pass
        return len(rows) if done else 0


def _settled(
    rows: list[asyncpg.Record], refused: dict[str, str], report: PurgeReport, *, bundle: bool
) -> list[asyncpg.Record]:
    """The requests whose objects (their listed uploads, and their bundle if ``bundle``) the
    stores all deleted; each of the others reports its first refusal and keeps its row as it
    was, for the next pass."""
    done = []
    for r in rows:
        uploads = [key for _, key in dsar.listed_uploads(r)]
        keys = [r["bundle_key"], *uploads] if bundle else uploads
        why = [refused[k] for k in keys if k in refused]
        if why:
            report.bundles_failed[str(r["id"])] = why[0]
        else:
            done.append(r)
    return done


async def _sweep_stale_uploads(
    pool: asyncpg.Pool[Any],
    registry: StoreRegistry,
    tenant: str,
    batch: int,
    report: PurgeReport,
) -> None:
    """Delete what bundle runs of closed requests uploaded and never committed (an orphan copy
    of someone's data otherwise: an erasure or offboarding would no longer look for it)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(Q["claim_stale_uploads"], batch)
        if not rows:
            return
        refused = await _delete_by_store(
            conn, registry, tenant, [pair for r in rows for pair in dsar.listed_uploads(r)]
        )
        done = _settled(rows, refused, report, bundle=False)
        if done:
            await conn.execute(Q["forget_uploads"], [r["id"] for r in done])
            count = sum(len(r["bundle_uploads"]) for r in done)
            await audit.record(
                conn,
                ACTOR,
                "dsar_stale_uploads_removed",
                "dsar",
                None,
                {"count": count, "requests": [str(r["id"]) for r in done]},
            )
            report.stale_uploads += count


async def _sweep_left_recording_uploads(
    pool: asyncpg.Pool[Any],
    registry: StoreRegistry,
    tenant: str,
    batch: int,
    report: PurgeReport,
) -> None:
    """Delete what an earlier intake attempt may have left in a store its tenant moved from,
    when the attempt after it could not delete there (the store down) and stored the recording
    in the tenant's new one: a copy of a caller's voice no reader would look for once the
    recording is purged or erased."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(Q["claim_left_recording_uploads"], batch)
        if not rows:
            return
        located = {
            r["id"]: [
                (r["upload_store"], key_in(tenant, r["upload_store"], k))
                for k in possible_keys(r["id"])
            ]
            for r in rows
        }
        refused = await _delete_by_store(
            conn, registry, tenant, [pair for pairs in located.values() for pair in pairs]
        )
        done = []
        for rid, pairs in located.items():
            why = [refused[k] for _, k in pairs if k in refused]
            if why:  # the row stays named, for the next pass; shown as the store's refusal
                report.failed[str(rid)] = why[0]
            else:
                done.append(rid)
        if done:
            await conn.execute(Q["forget_left_recording_uploads"], done)
            await audit.record(
                conn,
                ACTOR,
                "recording_left_uploads_removed",
                "recording",
                None,
                {"count": len(done), "recordings": [str(rid) for rid in done]},
            )
            report.left_recording_uploads += len(done)


async def _purge_batch(
    pool: asyncpg.Pool[Any],
    registry: StoreRegistry,
    tenant: str,
    batch: int,
    report: PurgeReport,
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(Q["claim_expired"], batch)
        if not rows:
            return 0
        ids = [r["id"] for r in rows]
        held = {r["id"] for r in await conn.fetch(Q["kept_among"], ids)}
        report.held += len(held)
        targets = [r for r in rows if r["id"] not in held]
        # Shredding first (issue 17): the data keys go before the objects, so every copy the
        # store cannot reach (old versions, replicas, backups) is unreadable from now on. A key
        # goes even if the store then refuses the object: retention has ended either way, and
        # the next pass deletes the object (its ``key_destroyed`` is written once). Its ledger
        # event is written below with the ``purged`` ones, in this same transaction.
        shredded = await recording_keys.shred(conn, [r["id"] for r in targets])
        refused = await _delete_by_store(
            conn, registry, tenant, [(r["object_store"], r["object_key"]) for r in targets]
        )
        done = [r for r in targets if r["object_key"] not in refused]
        for r in targets:
            if r["object_key"] in refused:
                report.failed[str(r["id"])] = refused[r["object_key"]]
        per_call: dict[Any, list[NewEvent]] = {}
        for k in shredded:
            per_call.setdefault(k["call_id"], []).append(
                recording_keys.destroyed_event(k["recording_id"], REASON)
            )
        if done:
            await conn.execute(Q["mark_purged"], [r["id"] for r in done])
            for r in done:
                per_call.setdefault(r["call_id"], []).append(
                    NewEvent(
                        "purged",
                        {
                            "recording_id": str(r["id"]),
                            "retain_until": r["retain_until"].isoformat(),
                            "reason": REASON,
                        },
                        dedupe_key=f"purged:{r['id']}",
                    )
                )
        if per_call:  # one append for the batch: each call's key_destroyed, then its purged
            await ledger.append_many(conn, per_call)
        if done:
            await audit.record(
                conn,
                ACTOR,
                "purge",
                "recordings",
                None,
                {"count": len(done), "recording_ids": [str(r["id"]) for r in done]},
            )
        if refused:
            await audit.record(
                conn,
                ACTOR,
                "purge_refused_by_store",
                "recordings",
                None,
                {"count": len(refused)},
            )
        report.purged += len(done)
        # a batch the store refused entirely is not taken again in this pass
        return len(rows) if done or not refused else 0
