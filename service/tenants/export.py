"""``callvault tenant export ID --out DIR|s3://BUCKET/PREFIX``: everything a client takes away at
contract end.

``DIR/recordings/{recording id}.{ext}`` for every stored recording of the tenant (streamed from
the store its row names, to disk, never whole in memory), ``DIR/ledger.jsonl`` (every ledger
event of the tenant, one JSON object a line, hashes in hex, so the client can recompute each
call's chain) and ``DIR/seals.jsonl`` (the tenant's seal chain), and last
``DIR/manifest.json``: per recording its id, call, platform call id, SHA-256, size and file
name, and the SHA-256 of the two ledger files. The manifest is written last, so its presence
says the export is complete.

A recording whose data key is already destroyed (issue 17: a purge shreds the key first and a
store that refused the object leaves the row ``stored`` until its next pass) cannot be opened
by anyone: it is not exported, and the manifest lists it under ``shredded``. It never aborts
the export (an offboarding must not wait on a bucket's next purge pass).

``--sealed`` (issue 17, for a tenant whose data keys are wrapped by its own KMS key,
``[tenants.ID.data_keys]``): each recording leaves as it is stored, sealed
(``recordings/{id}.{ext}.sealed``: Tink streaming AEAD, ``AES256_GCM_HKDF_1MB``), and its
manifest entry carries the wrapped data key (base64), the KMS key ARN, the encryption context
and the associated data: the client opens it with its own KMS key and Tink, nothing of
callvault's (README, "Sealed exports"). Every file is checked before it is published by
opening it (through KMS, as the client will). Refused for a tenant on the derived key: that key
is callvault's own secret, and a data key wrapped by it is of no use to anyone else (and must
not leave unwrapped). Refused too while any of the tenant's recordings is not sealed under its
KMS key (``recordings encrypt --all``, ``secrets rotate --data-keys`` first). A sealed export is
not resumable file by file: a rerun fetches and checks every recording again.

Resumable: each file is written under a temporary name (``.NAME.part``), checked against the
SHA-256 its row recorded at intake, then renamed into place. A rerun after a crash skips every
file already there whose size and SHA-256 match, and fetches the rest again. To an ``s3://``
target (the deployment's endpoint and credential chain), each file is staged in a work folder,
uploaded with its SHA-256 in the object's metadata (a PUT is all-or-nothing) and checked with a
HEAD; a rerun skips the objects whose size and SHA-256 match. The SHA-256 goes with the bytes
too, for the store to check, and where it answers its own SHA-256 of what it holds, that must
be the one sent (:meth:`~service.storage.StoredObject.content_differs`): metadata and size are
what the request said, whatever bytes arrived, and an offboarding erases the tenant's data once
its export is complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.config import Settings
from service.db import Conn, queries
from service.errors import ExportError as ExportError
from service.ops import failpoints
from service.ops.workdir import sha256_of, work_dir
from service.storage import handout, recording_keys, sealed
from service.storage.local import fsync_dir
from service.storage.registry import StoreRegistry

Q = queries.load("service.tenants", "export.sql")
MANIFEST = "manifest.json"
LEDGER = "ledger.jsonl"
SEALS = "seals.jsonl"


@dataclass
class ExportReport:
    recordings: int = 0
    fetched: int = 0  # downloaded in this run
    skipped: int = 0  # already complete and verified from an earlier run
    bytes: int = 0
    shredded: int = 0  # key destroyed, object not yet deleted: listed, not exported
    ledger_events: int = 0
    seals: int = 0
    target: str = ""


def _complete(path: Path, size: int, sha256: str) -> bool:
    """The file is there, of this size and this SHA-256 (a rerun's test)."""
    try:
        if path.stat().st_size != size:
            return False
    except FileNotFoundError:
        return False
    return sha256_of(path) == sha256


def _publish(tmp: Path, target: Path) -> None:
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: is not a folder")
    (out / "recordings").mkdir(parents=True, exist_ok=True)


async def _jsonl(conn: Conn, sql: str, tenant: str, path: Path, shape: Any) -> int:
    """Rows of ``sql`` as JSON lines into ``path``, read with a cursor so a long ledger never
    sits whole in memory."""
    count = 0
    fh = await asyncio.to_thread(path.open, "wb")
    try:
        async with conn.transaction():
            batch: list[bytes] = []
            async for row in conn.cursor(sql, tenant, prefetch=1000):
                batch.append(json.dumps(shape(row), ensure_ascii=False).encode() + b"\n")
                count += 1
                if len(batch) >= 1000:
                    await asyncio.to_thread(fh.writelines, batch)
                    batch = []
            await asyncio.to_thread(fh.writelines, batch)
    finally:
        await asyncio.to_thread(fh.close)
    return count


def _event(row: Any) -> dict[str, Any]:
    return {
        "call_id": str(row["call_id"]),
        "seq": row["seq"],
        "type": row["type"],
        "at": row["at"].isoformat(),
        "details": row["details"],
        "dedupe_key": row["dedupe_key"],
        "prev_hash": bytes(row["prev_hash"]).hex(),
        "hash": bytes(row["hash"]).hex(),
    }


def _seal(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"].isoformat(),
        "max_event_id": row["max_event_id"],
        "calls": row["calls"],
        "heads_sha256": bytes(row["heads_sha256"]).hex(),
        "prev_hash": bytes(row["prev_hash"]).hex(),
        "hash": bytes(row["hash"]).hex(),
    }


def _shredded(row: Any) -> dict[str, Any]:
    """A manifest's entry for a recording that is not exported because its key is gone."""
    return {
        "id": str(row["id"]),
        "call_id": str(row["call_id"]),
        "platform": row["platform"],
        "platform_call_id": row["external_id"],
        "reason": "its data key is destroyed (retention ended): no copy can be decrypted",
    }


class FolderTarget:
    """A local folder: files staged as ``.NAME.part`` beside their place, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    async def prepare(self) -> None:
        await asyncio.to_thread(_prepare, self.root)

    async def complete(self, rel: str, size: int, sha256: str) -> bool:
        return await asyncio.to_thread(_complete, self.root / rel, size, sha256)

    def staging(self, rel: str) -> Path:
        target = self.root / rel
        return target.with_name(f".{target.name}.part")

    async def publish(self, rel: str, staged: Path, sha256: str, content_type: str) -> None:
        await asyncio.to_thread(_publish, staged, self.root / rel)

    async def close(self) -> None:
        return None


class S3Target:
    """``s3://BUCKET/PREFIX``: files staged in a work folder, then uploaded (an S3 PUT is
    all-or-nothing) with their SHA-256 in the object's metadata, which is what a rerun checks."""

    def __init__(self, url: str, work_root: Path, settings: Settings) -> None:
        from service.storage.s3 import S3Store

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ExportError(f"--out {url}: no bucket", code="export_target")
        self.url = url
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # the deployment's endpoint and credential chain (CALLVAULT_S3_ENDPOINT_URL, AWS_*)
        self.store = S3Store(
            bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            sse=settings.s3_sse,
            kms_key_id=settings.s3_kms_key_id,
        )
        self._work_root = work_root
        self._work: AbstractAsyncContextManager[Path] | None = None
        self._folder: Path | None = None

    def __str__(self) -> str:
        return self.url

    async def prepare(self) -> None:
        await self.store.check()
        self._work = work_dir(self._work_root, "export-")
        self._folder = await self._work.__aenter__()

    async def complete(self, rel: str, size: int, sha256: str) -> bool:
        head = await self.store.head(self.prefix + rel)
        # (an object an earlier run's check refused, which the store did not let it take back,
        # has the right metadata and size: the store's checksum says what it holds)
        return (
            head is not None
            and (head.size, head.sha256) == (size, sha256)
            and not head.content_differs()
        )

    def staging(self, rel: str) -> Path:
        assert self._folder is not None
        return self._folder / rel.replace("/", "_")

    async def publish(self, rel: str, staged: Path, sha256: str, content_type: str) -> None:
        key = self.prefix + rel
        await self.store.put_file(
            key,
            staged,
            sha256=sha256,
            content_type=content_type,
            metadata={},
            content_sha256=sha256,  # of the staged file itself: the store checks it
        )
        head = await self.store.head(key)
        if head is None or head.sha256 != sha256 or head.content_differs():
            raise ExportError(f"{self.url}: {rel} did not arrive whole", code="export_failed")
        await asyncio.to_thread(staged.unlink, True)

    async def close(self) -> None:
        if self._work is not None:
            await self._work.__aexit__(None, None, None)
        await self.store.close()


Target = FolderTarget | S3Target


def target_of(raw: str, settings: Settings) -> Target:
    """``--out``: a folder, or ``s3://BUCKET/PREFIX``."""
    if raw.startswith("s3://"):
        return S3Target(raw, settings.home / "tmp", settings)
    return FolderTarget(Path(raw))


async def _put_jsonl(
    conn: Conn, target: Target, sql: str, tenant: str, rel: str, shape: Any
) -> tuple[int, str]:
    staged = target.staging(rel)
    count = await _jsonl(conn, sql, tenant, staged, shape)
    digest = await asyncio.to_thread(sha256_of, staged)
    await target.publish(rel, staged, digest, "application/x-ndjson")
    return count, digest


async def export(
    conn: Conn,
    stores: StoreRegistry,
    tenant: str,
    out: Path | Target,
    *,
    settings: Settings | None = None,
    sealed_out: bool = False,
) -> ExportReport:
    """Export the tenant into ``out`` (a folder or a target; ``conn`` acts for the tenant);
    ``sealed_out``: ciphertext and wrapped keys, for a tenant on its own KMS key."""
    target = FolderTarget(out) if isinstance(out, Path) else out
    if await conn.fetchval(Q["tenant_exists"], tenant) is None:
        raise ExportError(f"no tenant {tenant!r}", code="no_tenant")
    keys = await _sealed_keys(conn, tenant) if sealed_out else None
    await target.prepare()
    try:
        return await _export(conn, stores, tenant, target, settings, keys)
    finally:
        await target.close()


async def _sealed_keys(conn: Conn, tenant: str) -> dict[Any, Any]:
    """The wrapped key of every recording a sealed export hands out, checked before anything
    is written: the tenant is on its own KMS key, and every recording is sealed under it."""
    rows = await conn.fetch(Q["stored_recordings"], tenant)
    return await _keys_of(conn, tenant, [r["id"] for r in rows])


async def _keys_of(conn: Conn, tenant: str, ids: list[Any]) -> dict[Any, Any]:
    try:
        return await handout.sealed_keys(conn, tenant, ids)
    except handout.NotSealable as exc:
        raise ExportError(f"--sealed: {exc}", code=exc.code) from exc


async def _export(
    conn: Conn,
    stores: StoreRegistry,
    tenant: str,
    target: Target,
    settings: Settings | None,
    keys: dict[Any, Any] | None = None,
) -> ExportReport:
    report = ExportReport()
    items: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    rows = await conn.fetch(Q["stored_recordings"], tenant)
    shredded = await recording_keys.shredded_among(conn, [r["id"] for r in rows])
    if keys is not None:
        # a recording stored since the keys were checked: its key now, checked as the others
        # were (a refusal if it is not sealed under the tenant's KMS key); sealed_keys leaves
        # out only shredded ones, so below "not in keys" means shredded, never merely new
        late = [r["id"] for r in rows if r["id"] not in keys and r["id"] not in shredded]
        if late:
            keys = {**keys, **await _keys_of(conn, tenant, late)}
    for row in rows:
        rel = f"recordings/{row['id']}{Path(row['object_key']).suffix}"
        size, sha256 = int(row["size_bytes"]), str(row["sha256"])
        content_type = row["content_type"] or "application/octet-stream"
        seal: dict[str, Any] | None = None
        if keys is not None:
            if row["id"] in shredded or row["id"] not in keys:
                gone.append(_shredded(row))
                continue
            if settings is None or not settings.secret_key:
                raise ExportError("--sealed: CALLVAULT_SECRET_KEY is not set")
            rel += ".sealed"
            staged = target.staging(rel)
            store = await stores.for_object(tenant, row["object_store"], conn)
            try:
                cipher_sha = await handout.fetch_sealed(
                    conn,
                    recording_keys.vault_of(settings.secret_key, settings.previous_secret_key),
                    store,
                    row,
                    staged,
                )
            except recording_keys.KeyDestroyed:
                await asyncio.to_thread(staged.unlink, True)
                gone.append(_shredded(row))
                continue
            except sealed.Undecryptable as exc:
                await asyncio.to_thread(staged.unlink, True)
                raise ExportError(str(exc), code="export_checksum") from exc
            cipher_size = (await asyncio.to_thread(staged.stat)).st_size
            seal = handout.sealed_entry(
                tenant, row["id"], keys[row["id"]], rel, cipher_sha, cipher_size
            )
            await target.publish(rel, staged, cipher_sha, "application/octet-stream")
            report.fetched += 1
        elif await target.complete(rel, size, sha256):
            report.skipped += 1  # exported by an earlier run, even if shredded since
        elif row["id"] in shredded:
            gone.append(_shredded(row))
            continue
        else:
            store = await stores.for_object(tenant, row["object_store"], conn)
            staged = target.staging(rel)
            # plaintext audio leaves with the client, decrypted on the way out (issue 17)
            vault = (
                recording_keys.vault_of(settings.secret_key, settings.previous_secret_key)
                if settings is not None and settings.secret_key
                else None
            )
            try:
                await recording_keys.download_plain(
                    conn, vault, store, row["object_key"], row["id"], staged
                )
            except recording_keys.KeyDestroyed:
                # shredded by a purge since the list was read
                await asyncio.to_thread(staged.unlink, True)
                gone.append(_shredded(row))
                continue
            got = await asyncio.to_thread(sha256_of, staged)
            if got != sha256:
                await asyncio.to_thread(staged.unlink, True)
                raise ExportError(
                    f"recording {row['id']}: the store holds other bytes than were stored "
                    f"(SHA-256 {got[:12]}..., expected {sha256[:12]}...)",
                    code="export_checksum",
                )
            await target.publish(rel, staged, sha256, content_type)
            report.fetched += 1
            if settings is not None:
                failpoints.hit(settings, "export.after_file")
        report.recordings += 1
        report.bytes += size
        items.append(
            {
                "id": str(row["id"]),
                "call_id": str(row["call_id"]),
                "platform": row["platform"],
                "platform_call_id": row["external_id"],
                "file": rel,
                "sha256": sha256,
                "size_bytes": size,
                "content_type": row["content_type"],
                "stored_at": row["stored_at"].isoformat(),
                # file, sha256, size_bytes: the audio as recorded (once opened, if sealed)
                **({"sealed": seal} if seal is not None else {}),
            }
        )
    report.ledger_events, ledger_sha = await _put_jsonl(
        conn, target, Q["ledger_events"], tenant, LEDGER, _event
    )
    report.seals, seals_sha = await _put_jsonl(
        conn, target, Q["ledger_seals"], tenant, SEALS, _seal
    )
    report.shredded = len(gone)
    manifest = {
        "tenant": tenant,
        "exported_at": (await conn.fetchval("SELECT now()")).isoformat(),
        "recordings": items,
        "shredded": gone,
        "sealed": keys is not None,
        "ledger": {"file": LEDGER, "events": report.ledger_events, "sha256": ledger_sha},
        "seals": {"file": SEALS, "seals": report.seals, "sha256": seals_sha},
    }
    body = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    staged = target.staging(MANIFEST)
    await asyncio.to_thread(staged.write_bytes, body)
    await target.publish(MANIFEST, staged, hashlib.sha256(body).hexdigest(), "application/json")
    report.target = str(target)
    return report
