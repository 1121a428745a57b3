"""Tenant configuration in PostgreSQL: read it back as :class:`TenantSpec`, create a tenant,
write a spec's rows (named SQL in ``queries.sql``). Callers hold the transaction."""

from __future__ import annotations

import os
from typing import Any

from service.db import Conn, queries
from service.errors import Conflict
from service.tenants.model import SLUG, TenantSpec, TenantSpecError

Q = queries.load("service.tenants")


async def lock(conn: Conn) -> None:
    await conn.execute(Q["lock"])


async def announce(conn: Conn) -> None:
    """Tell every replica's tenant directory (service/tenants/policies.py) that the tenant tables
    changed; PostgreSQL delivers it when the caller's transaction commits, and not on rollback."""
    await conn.execute(Q["announce"])


async def create(conn: Conn, tenant_id: str, name: str) -> dict[str, Any]:
    if not SLUG.match(tenant_id):
        raise TenantSpecError(
            f"id: {tenant_id!r} is not a tenant id (2 to 40 lower-case letters, digits and '-', "
            "starting with a letter or digit)",
            code="bad_id",
        )
    name = name.strip()
    if not name or len(name) > 200 or not name.isprintable():
        raise TenantSpecError("name: 1 to 200 printable characters", code="bad_name")
    row = await conn.fetchrow(Q["create_tenant"], tenant_id, name)
    if row is None:
        raise Conflict(f"tenant {tenant_id!r} exists already", code="tenant_exists")
    await announce(conn)
    return {"id": row["id"], "name": row["name"], "created_at": row["created_at"].isoformat()}


async def list_all(conn: Conn) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "created_at": r["created_at"].isoformat(),
            "updated_at": r["updated_at"].isoformat(),
            "queues": r["queues"],
            "numbers": r["numbers"],
            "accounts": r["accounts"],
            "own_storage": r["own_storage"],
        }
        for r in await conn.fetch(Q["list_tenants"])
    ]


async def load(conn: Conn, ids: list[str]) -> dict[str, TenantSpec]:
    """The stored state of these tenants (those that exist), in the spec's normal form."""
    specs = {
        r["id"]: TenantSpec(id=r["id"], name=r["name"], policy=dict(r["policy"]))
        for r in await conn.fetch(Q["tenants"], ids)
    }
    for r in await conn.fetch(Q["queues"], ids):
        specs[r["tenant_id"]].queues[r["name"]] = dict(r["policy"])
    for r in await conn.fetch(Q["numbers"], ids):
        specs[r["tenant_id"]].numbers[r["number"]] = {
            "queue": r["queue"],
            "policy": dict(r["policy"]),
        }
    for r in await conn.fetch(Q["accounts"], ids):
        specs[r["tenant_id"]].accounts[(r["platform"], r["account_id"])] = {
            "settings": dict(r["settings"]),
            "secrets": dict(r["secrets"]),
        }
    for r in await conn.fetch(Q["storage"], ids):
        storage = {"bucket": r["bucket"]}
        for key in ("endpoint_url", "region", "kms_key_id"):
            if r[key] is not None:
                storage[key] = r[key]
        specs[r["tenant_id"]].storage = {
            **storage,
            "sse": r["sse"],
            "credentials": dict(r["credentials"]),
        }
    for r in await conn.fetch(Q["data_keys"], ids):
        data_keys = {"kms_key_id": r["kms_key_id"]}
        for key in ("endpoint_url", "region"):
            if r[key] is not None:
                data_keys[key] = r[key]
        specs[r["tenant_id"]].data_keys = {**data_keys, "credentials": dict(r["credentials"])}
    return specs


async def number_owners(conn: Conn, numbers: list[str]) -> dict[str, str]:
    return {r["number"]: r["tenant_id"] for r in await conn.fetch(Q["number_owners"], numbers)}


async def write(conn: Conn, specs: list[TenantSpec]) -> None:
    """Make the stored rows of these tenants equal to the specs (rows already equal are not
    touched, so their ``updated_at`` stays)."""
    for spec in specs:
        await conn.execute(Q["upsert_tenant"], spec.id, spec.name, spec.policy)
        for name, policy in spec.queues.items():
            await conn.execute(Q["upsert_queue"], spec.id, name, policy)
    # numbers after every tenant's queues exist, and before queues they leave are deleted
    for spec in specs:
        await conn.execute(Q["delete_numbers_except"], spec.id, list(spec.numbers))
    for spec in specs:
        for number, entry in spec.numbers.items():
            await conn.execute(Q["upsert_number"], number, spec.id, entry["queue"], entry["policy"])
    for spec in specs:
        await conn.execute(Q["delete_queues_except"], spec.id, list(spec.queues))
    stored = await load(conn, [s.id for s in specs])
    for spec in specs:
        for platform, account_id in stored[spec.id].accounts.keys() - spec.accounts.keys():
            await conn.execute(Q["delete_account"], platform, account_id, spec.id)
        for (platform, account_id), entry in spec.accounts.items():
            await conn.execute(
                Q["upsert_account"],
                platform,
                account_id,
                spec.id,
                entry["settings"],
                entry["secrets"],
            )
        if spec.storage is None:
            await conn.execute(Q["delete_storage"], spec.id)
        elif spec.storage != stored[spec.id].storage:
            s = spec.storage
            await conn.execute(
                Q["upsert_storage"],
                spec.id,
                s["bucket"],
                s.get("endpoint_url"),
                s.get("region"),
                s["sse"],
                s.get("kms_key_id"),
                s["credentials"],
            )
        if spec.data_keys is None:
            await conn.execute(Q["delete_data_keys"], spec.id)
        elif spec.data_keys != stored[spec.id].data_keys:
            k = spec.data_keys
            await conn.execute(
                Q["upsert_data_keys"],
                spec.id,
                k["kms_key_id"],
                k.get("endpoint_url"),
                k.get("region"),
                k["credentials"],
            )
    # every replica re-reads its tenant directory when this transaction commits
    await announce(conn)


def resolves(reference_key: str, reference: str) -> bool:
    """Whether a secret reference points at something there (never what it holds)."""
    if reference_key.endswith("_env"):
        return bool(os.environ.get(reference))
    return os.path.isfile(reference) and os.access(reference, os.R_OK)


def _refs(refs: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {key: {"ref": value, "resolves": resolves(key, value)} for key, value in refs.items()}


def as_json(spec: TenantSpec) -> dict[str, Any]:
    """A tenant as ``show`` and the API answer it: secrets only as references."""
    return {
        "id": spec.id,
        "name": spec.name,
        "policy": spec.policy,
        "queues": spec.queues,
        "numbers": spec.numbers,
        "accounts": [
            {
                "platform": platform,
                "account_id": account_id,
                "settings": entry["settings"],
                "secrets": _refs(entry["secrets"]),
            }
            for (platform, account_id), entry in sorted(spec.accounts.items())
        ],
        "storage": None
        if spec.storage is None
        else {**spec.storage, "credentials": _refs(spec.storage["credentials"])},
        "data_keys": None
        if spec.data_keys is None
        else {**spec.data_keys, "credentials": _refs(spec.data_keys["credentials"])},
    }
