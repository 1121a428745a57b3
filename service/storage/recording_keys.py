"""Each recording's data key (issue 17): issued before its object is sealed, read to play or
export it, destroyed (shredded) by purge and erasure before its objects are deleted, re-wrapped
by ``callvault secrets rotate``. Only the wrapped form is stored (``recording_keys``), with
what wrapped it: the tenant's key derived from the secret
(:class:`~service.personal.numbers.PhoneVault`) or the tenant's own KMS key
(:mod:`service.storage.wrapping`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service import ledger
from service.db import Conn, queries
from service.errors import KeyDestroyed as KeyDestroyed
from service.ledger import NewEvent
from service.personal.numbers import PhoneVault
from service.storage import ObjectStore, sealed, wrapping

Q = queries.load("service.storage", "recording_keys.sql")


@dataclass(frozen=True)
class Issued:
    keyset: bytes = field(repr=False)
    # made by this call: nothing can have been sealed with it yet (else an earlier run's,
    # whose object may already be stored)
    fresh: bool


async def issue(
    conn: Conn, vault: PhoneVault, recording_id: uuid.UUID, *, state: str = "pending"
) -> bytes | None:
    """The recording's data key, made and stored (wrapped) on first use; None if the
    recording is no longer in ``state`` (``pending`` for an intake: erased while it was on its
    way, nothing may be sealed for it; ``stored`` for one sealed after the fact). Run in a
    transaction: the recording row is share-locked, so an erasure either comes after (and
    destroys this key) or before (and no key is made)."""
    issued = await issue_key(conn, vault, recording_id, state=state)
    return None if issued is None else issued.keyset


async def issue_key(
    conn: Conn, vault: PhoneVault, recording_id: uuid.UUID, *, state: str = "pending"
) -> Issued | None:
    """:func:`issue`, saying whether the key was made now."""
    row = await conn.fetchrow(Q["recording_for_key"], recording_id)
    if row is None or row["state"] != state:
        return None
    found = await open_key(conn, vault, recording_id)
    if found is not None:
        return Issued(found, fresh=False)  # a run cut short after issuing it
    keyset = sealed.new_data_key()
    tenant = row["tenant_id"]
    kms = await wrapping.tenant_kms(conn, tenant)
    w = await wrapping.wrap(kms, vault, tenant, str(recording_id), keyset)
    if await conn.fetchval(
        Q["insert_key"], recording_id, sealed.FORMAT, w.blob, w.kek_id, w.wrapper, w.kms_key_arn
    ):
        return Issued(keyset, fresh=True)
    # issued by a transaction that committed while this one waited on it: that key it is,
    # never one that is not stored
    found = await open_key(conn, vault, recording_id)
    return None if found is None else Issued(found, fresh=False)


async def open_key(conn: Conn, vault: PhoneVault, recording_id: uuid.UUID) -> bytes | None:
    """The recording's data key, or None if it was destroyed (or never made)."""
    row = await conn.fetchrow(Q["wrapped_key"], recording_id)
    if row is None:
        return None
    tenant = row["tenant_id"]
    kms = (
        await wrapping.tenant_kms(conn, tenant) if row["wrapper"] == wrapping.Wrapper.KMS else None
    )
    return await wrapping.unwrap(
        kms,
        vault,
        tenant,
        str(recording_id),
        row["wrapped_key"],
        row["wrapper"],
        row["kms_key_arn"],
    )


async def destroy(conn: Conn, recording_ids: Sequence[Any], reason: str) -> list[uuid.UUID]:
    """Shred: delete the wrapped keys of these recordings and write ``key_destroyed`` to each
    call's ledger, in the caller's transaction (before its objects are deleted). Returns the
    recordings whose key was destroyed now (one already gone, or never made, is not)."""
    rows = await shred(conn, recording_ids)
    per_call: dict[Any, list[NewEvent]] = {}
    for r in rows:
        per_call.setdefault(r["call_id"], []).append(destroyed_event(r["recording_id"], reason))
    if per_call:
        await ledger.append_many(conn, per_call)
    return [r["recording_id"] for r in rows]


async def shred(conn: Conn, recording_ids: Sequence[Any]) -> list[Any]:
    """The first half of :func:`destroy`: the wrapped keys deleted, one statement; rows of
    (recording_id, call_id) for the keys destroyed now. The caller writes
    :func:`destroyed_event` for each to the call's ledger in the same transaction (the purge
    writes them with its ``purged`` events, one ledger append a batch)."""
    if not recording_ids:
        return []
    return list(await conn.fetch(Q["destroy_keys"], list(recording_ids)))


def destroyed_event(recording_id: Any, reason: str) -> NewEvent:
    """The ledger's record of a shredded key."""
    return NewEvent(
        "key_destroyed",
        {"recording_id": str(recording_id), "reason": reason},
        dedupe_key=f"key_destroyed:{recording_id}",
    )


async def shredded_among(conn: Conn, recording_ids: Sequence[Any]) -> set[uuid.UUID]:
    """Of these recordings, the ones whose key is destroyed though their object may still be
    in the store (a purge the store refused: the row stays ``stored`` until the next pass
    deletes it). Every reader treats them as gone: export, access bundle, playback."""
    if not recording_ids:
        return set()
    return {r["id"] for r in await conn.fetch(Q["shredded_among"], list(recording_ids))}


async def rewrap(conn: Conn, vault: PhoneVault, *, page: int = 500) -> int:
    """Re-wrap every data key not wrapped by what its tenant configures now: one under the
    previous secret under the current one; under another KMS key than the tenant names, by
    KMS ``ReEncrypt``; between the derived key and KMS (a tenant that gained or dropped its
    KMS key), unwrapped and wrapped again. The objects are untouched. Page by page, each in
    its own transaction; interruptible and repeatable; a key destroyed between read and write
    stays destroyed (compare-and-set). A KMS key's own rotation of its material is the KMS's
    job: its id stays, and nothing here changes."""
    kms_of = await wrapping.every_tenant_kms(conn)
    arns = {tenant: await wrapping.kms_arn(key) for tenant, key in kms_of.items()}
    done = 0
    after = uuid.UUID(int=0)
    while rows := await conn.fetch(Q["keys_page"], after, page):
        async with conn.transaction():
            for row in rows:
                w = await _rewrapped(row, vault, kms_of.get(row["tenant_id"]), arns)
                if w is not None:
                    status = await conn.execute(
                        Q["rewrap_key"],
                        row["key"],
                        row["wrapped_key"],
                        w.blob,
                        w.kek_id,
                        w.wrapper,
                        w.kms_key_arn,
                    )
                    done += status.endswith(" 1")
        after = rows[-1]["key"]
    return done


async def _rewrapped(
    row: Any, vault: PhoneVault, kms: wrapping.KmsKey | None, arns: dict[str, str]
) -> wrapping.Wrapped | None:
    """The key ``row`` wrapped as its tenant wants it now, or None if it already is."""
    tenant, rid = row["tenant_id"], str(row["key"])
    blob, arn = row["wrapped_key"], row["kms_key_arn"]
    if row["wrapper"] == wrapping.Wrapper.KMS:
        if kms is not None and arns[tenant] == arn:
            return None
        if kms is not None:
            return await wrapping.kms_reencrypt(kms, arn, tenant, rid, blob)
        keyset = await wrapping.kms_decrypt(wrapping.KmsKey(arn), arn, tenant, rid, blob)
        return await wrapping.wrap(None, vault, tenant, rid, keyset)
    keyset, old = vault.unwrap_data_key_with_age(tenant, rid, blob)
    if kms is None and not old:
        return None
    return await wrapping.wrap(kms, vault, tenant, rid, keyset)


_vaults: dict[tuple[str, str | None], PhoneVault] = {}


def vault_of(secret_key: str | None, previous_secret_key: str | None = None) -> PhoneVault:
    """The vault of these secrets (kept: its per-tenant keys are derived once)."""
    if not secret_key:
        raise RuntimeError("CALLVAULT_SECRET_KEY is not set: recordings cannot be sealed")
    found = _vaults.get((secret_key, previous_secret_key))
    if found is None:
        found = _vaults[(secret_key, previous_secret_key)] = PhoneVault(
            secret_key, previous_secret_key
        )
    return found


async def download_plain(
    conn: Conn,
    vault: PhoneVault | None,
    store: ObjectStore,
    key: str,
    recording_id: uuid.UUID,
    dest: Path,
) -> None:
    """The recording's audio into ``dest`` as it was recorded: a sealed object is fetched
    beside it and decrypted (streamed, off the loop); one stored before issue 17 is copied as
    it is. Raises :class:`KeyDestroyed` for a sealed one whose key is gone."""
    head = await store.head(key)
    if head is None or not sealed.is_sealed(head.metadata):
        await store.download_to(key, dest)
        return
    if vault is None:
        raise RuntimeError("CALLVAULT_SECRET_KEY is not set: sealed recordings cannot be opened")
    keyset = await open_key(conn, vault, recording_id)
    if keyset is None:
        raise KeyDestroyed(f"recording {recording_id}: its data key is destroyed")
    staged = dest.with_name(dest.name + ".sealed")
    try:
        await store.download_to(key, staged)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            sealed.EXECUTOR,
            sealed.decrypt_file,
            keyset,
            staged,
            dest,
            sealed.associated_data(recording_id),
        )
    finally:
        await asyncio.to_thread(staged.unlink, True)
