"""``callvault recordings encrypt --all``: recordings stored before issue 17 (plaintext
objects, without the ``callvault-enc`` marker) sealed in place under their own data keys, so
that purge and erasure shred them like every new one.

Resumable and idempotent per recording: the object's marker decides (a sealed one is left as it
is). Each recording's key is committed before its sealed object is written (a crash never
leaves an object whose key was not kept); the sealing itself runs while the recording's row is
share-locked, so a purge pass skips it and an erasure waits for it; the plaintext is checked
against the SHA-256 its row recorded before it is sealed; and on a versioned bucket the older
(plaintext) versions are deleted once the sealed one is verified, or else the plaintext would
outlive its key's destruction.

Verified as intake verifies its upload: the sealed bytes' SHA-256 goes with them (a store that
checks it refuses other bytes), and where the store answers its own SHA-256 of what it holds,
that must be the one of the bytes sent (:meth:`~service.storage.StoredObject.content_differs`):
the metadata and the size, which the request sets, say nothing of the bytes that arrived. An
object that fails it, now or found by a later run, has its older versions kept (they hold the
only intact copy) and the recording reported failed.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.db import Conn
from service.ops.workdir import sha256_of, work_dir
from service.personal.numbers import PhoneVault
from service.storage import (
    CONTENT_PARTS_SHA256,
    CONTENT_SHA256,
    StorageError,
    StoredObject,
    recording_keys,
    sealed,
)
from service.storage.registry import StoreRegistry

Q = recording_keys.Q
_OURS = ("sha256", "content_type")  # metadata put_file writes itself
_DIFFERS = (
    "the store's SHA-256 of the sealed object {key} is not the one of the bytes sent: its "
    "older versions kept"
)


@dataclass
class ResealReport:
    sealed: int = 0
    already: int = 0
    missing: int = 0  # the row says stored, the store has no object
    skipped: int = 0  # purged or erased meanwhile
    failed: dict[str, str] = field(default_factory=dict)  # recording id -> why


async def encrypt_all(
    conn: Conn, vault: PhoneVault, registry: StoreRegistry, tmp_root: Path, *, page: int = 100
) -> ResealReport:
    report = ResealReport()
    after = uuid.UUID(int=0)
    while rows := await conn.fetch(Q["stored_page"], after, page):
        for row in rows:
            try:
                await _one(conn, vault, registry, tmp_root, row, report)
            except (StorageError, sealed.Undecryptable, ValueError) as exc:
                report.failed[str(row["id"])] = str(exc)
        after = rows[-1]["id"]
    return report


async def _one(
    conn: Conn,
    vault: PhoneVault,
    registry: StoreRegistry,
    tmp_root: Path,
    row: Any,
    report: ResealReport,
) -> None:
    key: str = row["object_key"]
    store = await registry.for_object(row["tenant_id"], row["object_store"], conn)
    head = await store.head(key)
    if head is None:
        report.missing += 1
        return
    if sealed.is_sealed(head.metadata):
        if _uploaded_as_other_bytes(head):
            # left by an earlier run whose check refused it and whose take-back the store
            # refused: its older versions may hold the only intact copy
            raise StorageError(_DIFFERS.format(key=key))
        # a run cut short after writing it may have left the plaintext version behind
        await store.delete_other_versions(key, head.version)
        report.already += 1
        return
    async with conn.transaction():
        keyset = await recording_keys.issue(conn, vault, row["id"], state="stored")
    if keyset is None:
        report.skipped += 1
        return
    async with work_dir(tmp_root, "seal-") as tmp, conn.transaction():
        if await conn.fetchval(Q["lock_stored"], row["id"]) != "stored":
            report.skipped += 1
            return
        plain, sealed_path = tmp / "plain", tmp / "sealed"
        await store.download_to(key, plain)
        digest = await asyncio.to_thread(sha256_of, plain)
        if digest != row["sha256"]:
            raise ValueError("the store holds other bytes than were stored: left as it is")
        loop = asyncio.get_running_loop()
        made = await loop.run_in_executor(
            sealed.EXECUTOR,
            functools.partial(
                sealed.seal_file,
                keyset,
                plain,
                sealed_path,
                sealed.associated_data(row["id"]),
                hashed=True,
            ),
        )
        size = int(row["size_bytes"])
        metadata = {k: v for k, v in head.metadata.items() if k not in _OURS}
        metadata["recording-id"] = str(row["id"])
        metadata.update(sealed.metadata_of(made.header, size))
        await store.put_file(
            key,
            sealed_path,
            sha256=digest,
            content_type=head.content_type or row["content_type"] or "application/octet-stream",
            metadata=metadata,
            content_sha256=made.sha256,  # of the sealed bytes: the store checks them
        )
        now = await store.head(key)
        if (
            now is None
            or not sealed.is_sealed(now.metadata)
            or now.size != sealed.sealed_size(size)
            or now.sha256 != digest
        ):
            raise StorageError(f"verification of {key} failed after sealing it")
        if now.content_differs():
            # a store that answers its checksum of what it received but keeps a mismatch
            # (S3 refuses one): metadata and size are right, the bytes are not
            raise StorageError(_DIFFERS.format(key=key))
        await conn.execute(Q["set_object_version"], row["id"], now.version)
        await store.delete_other_versions(key, now.version)
    report.sealed += 1


def _uploaded_as_other_bytes(obj: StoredObject) -> bool:
    """Whether the store's SHA-256 of a sealed object says that it holds other bytes than the
    ones uploaded. Only for an object whose metadata carries the SHA-256 of what was sent (the
    ones sealed since the store's checksum was checked): for an older one, there is nothing to
    match the store's answer with, and it stays with what decided before (its marker)."""
    if CONTENT_SHA256 not in obj.metadata and CONTENT_PARTS_SHA256 not in obj.metadata:
        return False
    return obj.content_differs()
