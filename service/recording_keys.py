"""Each recording's data key (issue 17): issued before its object is sealed, read to play or
export it, destroyed (shredded) by purge and erasure before its objects are deleted, re-wrapped
by ``callvault secrets rotate``. Only the wrapped form is stored (``recording_keys``); the
tenant's key-encryption key comes from :class:`~service.personal_data.PhoneVault`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service import ledger
from service.db import Conn, queries
from service.errors import CallvaultError
from service.ledger import NewEvent
from service.personal_data import PhoneVault
from service.storage import ObjectStore, sealed

Q = queries.load("service", "recording_keys.sql")


async def issue(
    conn: Conn, vault: PhoneVault, recording_id: uuid.UUID, *, state: str = "pending"
) -> bytes | None:
    """The recording's data key, made and stored (wrapped) on first use; None if the
    recording is no longer in ``state`` (``pending`` for an intake: erased while it was on its
    way, nothing may be sealed for it; ``stored`` for one sealed after the fact). Run in a
    transaction: the recording row is share-locked, so an erasure either comes after (and
    destroys this key) or before (and no key is made)."""
    row = await conn.fetchrow(Q["recording_for_key"], recording_id)
    if row is None or row["state"] != state:
        return None
    found = await open_key(conn, vault, recording_id)
    if found is not None:
        return found  # a run cut short after issuing it: its object may already be sealed
    keyset = sealed.new_data_key()
    wrapped, kek_id = vault.wrap_data_key(row["tenant_id"], str(recording_id), keyset)
    await conn.execute(Q["insert_key"], recording_id, sealed.FORMAT, wrapped, kek_id)
    return keyset


async def open_key(conn: Conn, vault: PhoneVault, recording_id: uuid.UUID) -> bytes | None:
    """The recording's data key, or None if it was destroyed (or never made)."""
    row = await conn.fetchrow(Q["wrapped_key"], recording_id)
    if row is None:
        return None
    return vault.unwrap_data_key(row["tenant_id"], str(recording_id), row["wrapped_key"])


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
    """Re-wrap every data key still under the previous secret under the current one (the
    objects are untouched). Page by page, each in its own transaction; interruptible and
    repeatable; a key destroyed between read and write stays destroyed (compare-and-set)."""
    done = 0
    after = uuid.UUID(int=0)
    while rows := await conn.fetch(Q["keys_page"], after, page):
        async with conn.transaction():
            for row in rows:
                tenant, rid = row["tenant_id"], str(row["key"])
                keyset, old = vault.unwrap_data_key_with_age(tenant, rid, row["wrapped_key"])
                if old:
                    wrapped, kek_id = vault.wrap_data_key(tenant, rid, keyset)
                    status = await conn.execute(
                        Q["rewrap_key"], row["key"], row["wrapped_key"], wrapped, kek_id
                    )
                    done += status.endswith(" 1")
        after = rows[-1]["key"]
    return done


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


class KeyDestroyed(CallvaultError):
    """The recording is sealed and its data key is gone: nothing can open it (410: it will
    not come back, whatever the store still holds)."""

    status = 410
    code = "recording_shredded"


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
