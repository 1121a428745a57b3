"""``callvault tenant offboard ID``: at contract end, hand the client its data and erase the rest,
keeping only the ledger's proof.

Refused for the tenant ``default`` and while any hold of the tenant is active (a legal
obligation outlives the contract). Otherwise: first the tenant is cut off, so that what is
exported and erased next is all there is: its API tokens revoked (a PBX's token names its
tenant without any account) and its platform accounts and numbers removed, announced to every
replica's directory (no webhook lands in it any more). Then the export
(:mod:`service.tenants.export`, unless the operator says ``--skip-export``); every call erased
through the erasure a data-subject request uses (:func:`retention.dsar.erase_call`: objects
deleted from the store each row names, the number destroyed, an ``erased`` ledger event), and
again until no call is left un-erased (one a request already past authentication started); every
access bundle deleted from its store; every object a recording row still names deleted; then the
rows of the tenant's call data deleted (recordings, callbacks, reconciliations, requests, holds,
do-not-record entries, jobs), any token created meanwhile revoked, an audit entry
``tenant_offboarded`` written in its trail, and its ledger sealed. Calls stay, without numbers,
because ledger events hang from them; ledger events, seals and the audit trail stay.

Every step can run again: a crash part-way is finished by running the command again (the
erasure of a call is deduplicated by the offboarding's id, derived from the tenant).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retention import dsar
from service import auth
from service.config import Settings
from service.db import Conn, queries, tenancy
from service.errors import CallvaultError, Conflict
from service.intake import possible_objects
from service.ledger import seals
from service.observability import audit
from service.storage.registry import StoreRegistry
from service.tenants import store
from service.tenants.export import ExportReport, Target, export

Q = queries.load("service.tenants", "offboard.sql")
_NAMESPACE = uuid.UUID("4f0c8a52-7d1e-4e57-9d7a-2b8f1c3e6a90")


class OffboardRefused(Conflict):
    code = "offboard_refused"


@dataclass
class OffboardReport:
    offboard_id: uuid.UUID
    export: ExportReport | None = None
    calls: int = 0
    bundles: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    tokens_revoked: int = 0


async def check(conn: Conn, tenant: str) -> uuid.UUID:
    """Refuse what must not be offboarded; the offboarding's id otherwise."""
    if tenant == tenancy.DEFAULT:
        raise OffboardRefused(
            "the tenant default is the deployment's own and cannot be offboarded",
            code="default_tenant",
        )
    created = await conn.fetchval(Q["tenant_created"], tenant)
    if created is None:
        raise CallvaultError(f"no tenant {tenant!r}", code="no_tenant")
    held = int(await conn.fetchval(Q["active_holds"], tenant))
    if held:
        raise OffboardRefused(
            f"tenant {tenant} has {held} active legal hold(s); release them before offboarding",
            code="tenant_held",
        )
    return uuid.uuid5(_NAMESPACE, f"{tenant}:{created.isoformat()}")


async def offboard(
    conn: Conn,
    stores: StoreRegistry,
    tenant: str,
    *,
    actor: str,
    out: Path | Target | None,
    settings: Settings | None = None,
) -> OffboardReport:
    """Offboard ``tenant`` (``conn`` acts for it); ``out`` None only when the operator said
    ``--skip-export``."""
    report = OffboardReport(await check(conn, tenant))
    # cut off first: no request (webhook or PBX, whose token needs no account) starts a call
    # or uploads a recording any more, so what is exported and erased next is all there is
    async with conn.transaction():
        report.tokens_revoked += await _revoke_tokens(conn, tenant)
        accounts = await conn.fetchrow(Q["delete_accounts"], tenant)
        assert accounts is not None
        await store.announce(conn)  # every replica's directory is told at commit
    removed = {"accounts": int(accounts["accounts"]), "numbers": int(accounts["numbers"])}
    if out is not None:
        report.export = await export(conn, stores, tenant, out, settings=settings)
    await _erase_calls(conn, stores, tenant, report, Q["calls"])
    where = await stores.for_tenant(tenant, conn)
    async with conn.transaction():
        # a hold placed after the check, on a call already erased, still wins
        if int(await conn.fetchval(Q["active_holds"], tenant)):
            raise OffboardRefused(
                f"tenant {tenant} was put under a hold while offboarding", code="tenant_held"
            )
        # a call a request already past authentication started while we erased: erased too
        # (its lock-step with intake is erase_call's), until none is left
        while await _erase_calls(conn, stores, tenant, report, Q["unerased_calls"]):
            pass
        # no object outlives the row that names it (the rows are locked until they are gone)
        left: list[tuple[str, str]] = []
        for r in await conn.fetch(Q["recordings_left"], tenant):
            if r["object_key"]:
                left.append((r["object_store"], r["object_key"]))
            if r["state"] != "stored":
                left += possible_objects(tenant, where, r)
        # the requests' bundles, locked until their rows are gone: a bundle run announcing an
        # upload waits and then finds its request deleted; one already uploading is listed
        # here (deleted now) and deletes its own again when it finds the request gone
        for r in await conn.fetch(Q["bundles"], tenant):
            if r["bundle_key"]:
                left.append((r["bundle_store"], r["bundle_key"]))
                report.bundles += 1
            # uploads that never reached their run's commit
            left += dsar.listed_uploads(r)
        if left:
            await dsar.delete_located(conn, stores, tenant, left)
        deleted = await conn.fetchrow(Q["delete_call_data"], tenant)
        assert deleted is not None
        report.deleted = {k: int(v) for k, v in dict(deleted).items()}
        report.tokens_revoked += await _revoke_tokens(conn, tenant)  # any made meanwhile
        details: dict[str, Any] = {
            "offboard_id": str(report.offboard_id),
            "calls_erased": report.calls,
            "bundles_deleted": report.bundles,
            "deleted": report.deleted,
            "tokens_revoked": report.tokens_revoked,
            "accounts_removed": removed["accounts"],
            "numbers_removed": removed["numbers"],
            "export": None,
        }
        if report.export is not None:
            details["export"] = {
                "recordings": report.export.recordings,
                "shredded": report.export.shredded,
                "bytes": report.export.bytes,
                "ledger_events": report.export.ledger_events,
            }
        await audit.record(conn, actor, "tenant_offboarded", "tenant", tenant, details)
    # the final state of every chain, sealed: what the tenant's proof ends with
    await seals.seal(conn)
    return report


async def _revoke_tokens(conn: Conn, tenant: str) -> int:
    revoked = 0
    for token in await conn.fetch(Q["active_tokens"], tenant):
        revoked += await auth.revoke_token(conn, token["id"])
    return revoked


async def _erase_calls(
    conn: Conn, stores: StoreRegistry, tenant: str, report: OffboardReport, query: str
) -> int:
    """Erase the calls ``query`` lists; how many."""
    erased = 0
    for row in await conn.fetch(query, tenant):
        outcome = await dsar.erase_call(conn, stores, tenant, row["id"], report.offboard_id)
        if outcome == "held":
            raise OffboardRefused(
                f"call {row['id']} was put under a hold while offboarding; release it and "
                "run offboard again",
                code="tenant_held",
            )
        erased += 1
    report.calls += erased
    return erased
