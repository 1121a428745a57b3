"""``callvault tenant export ID --out DIR``: everything a client takes away at contract end.

``DIR/recordings/{recording id}.{ext}`` for every stored recording of the tenant (streamed from
the store its row names, to disk, never whole in memory), ``DIR/ledger.jsonl`` (every ledger
event of the tenant, one JSON object a line, hashes in hex, so the client can recompute each
call's chain) and ``DIR/seals.jsonl`` (the tenant's seal chain), and last
``DIR/manifest.json``: per recording its id, call, platform call id, SHA-256, size and file
name, and the SHA-256 of the two ledger files. The manifest is written last, so its presence
says the export is complete.

Resumable: each file is written under a temporary name (``.NAME.part``), checked against the
SHA-256 its row recorded at intake, then renamed into place. A rerun after a crash skips every
file already there whose size and SHA-256 match, and fetches the rest again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from service import failpoints
from service.config import Settings
from service.db import Conn, queries
from service.errors import CallvaultError
from service.storage.registry import StoreRegistry
from service.workdir import sha256_of

Q = queries.load("service.tenants", "export.sql")
MANIFEST = "manifest.json"
LEDGER = "ledger.jsonl"
SEALS = "seals.jsonl"


class ExportError(CallvaultError):
    code = "export_failed"


@dataclass
class ExportReport:
    recordings: int = 0
    fetched: int = 0  # downloaded in this run
    skipped: int = 0  # already complete and verified from an earlier run
    bytes: int = 0
    ledger_events: int = 0
    seals: int = 0
    manifest: Path | None = None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    _fsync_dir(target.parent)


def _write_atomic(target: Path, write: Callable[[BinaryIO], object]) -> str:
    """Write ``target`` through a temporary name; returns its SHA-256."""
    tmp = target.with_name(f".{target.name}.part")
    with tmp.open("wb") as fh:
        write(fh)
    digest = sha256_of(tmp)
    _publish(tmp, target)
    return digest


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: is not a folder")
    (out / "recordings").mkdir(parents=True, exist_ok=True)


async def _jsonl(conn: Conn, sql: str, tenant: str, target: Path, shape: Any) -> tuple[int, str]:
    """Rows of ``sql`` as JSON lines into ``target`` (through a temporary name), read with a
    cursor so a long ledger never sits whole in memory."""
    tmp = target.with_name(f".{target.name}.part")
    count = 0
    fh = await asyncio.to_thread(tmp.open, "wb")
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
    digest = await asyncio.to_thread(sha256_of, tmp)
    await asyncio.to_thread(_publish, tmp, target)
    return count, digest


def _event(row: Any) -> dict[str, Any]:
    return {
        "call_id": str(row["call_id"]),
        "seq": row["seq"],
        "type": row["type"],
        "at": row["at"].isoformat(),
        "details": json.loads(row["details"])
        if isinstance(row["details"], str)
        else row["details"],
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


async def export(
    conn: Conn,
    stores: StoreRegistry,
    tenant: str,
    out: Path,
    *,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export the tenant into ``out`` (``conn`` acts for the tenant); see the module's text."""
    if await conn.fetchval(Q["tenant_exists"], tenant) is None:
        raise ExportError(f"no tenant {tenant!r}", code="no_tenant")
    await asyncio.to_thread(_prepare, out)
    report = ExportReport()
    items: list[dict[str, Any]] = []
    for row in await conn.fetch(Q["stored_recordings"], tenant):
        name = f"{row['id']}{Path(row['object_key']).suffix}"
        target = out / "recordings" / name
        size, sha256 = int(row["size_bytes"]), str(row["sha256"])
        if await asyncio.to_thread(_complete, target, size, sha256):
            report.skipped += 1
        else:
            store = await stores.for_object(tenant, row["object_store"], conn)
            tmp = target.with_name(f".{name}.part")
            await store.download_to(row["object_key"], tmp)
            got = await asyncio.to_thread(sha256_of, tmp)
            if got != sha256:
                await asyncio.to_thread(tmp.unlink, True)
                raise ExportError(
                    f"recording {row['id']}: the store holds other bytes than were stored "
                    f"(SHA-256 {got[:12]}..., expected {sha256[:12]}...)",
                    code="export_checksum",
                )
            await asyncio.to_thread(_publish, tmp, target)
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
                "file": f"recordings/{name}",
                "sha256": sha256,
                "size_bytes": size,
                "content_type": row["content_type"],
                "stored_at": row["stored_at"].isoformat(),
            }
        )
        if progress is not None:
            progress(f"recordings/{name}")
    report.ledger_events, ledger_sha = await _jsonl(
        conn, Q["ledger_events"], tenant, out / LEDGER, _event
    )
    report.seals, seals_sha = await _jsonl(conn, Q["ledger_seals"], tenant, out / SEALS, _seal)
    manifest = {
        "tenant": tenant,
        "exported_at": (await conn.fetchval("SELECT now()")).isoformat(),
        "recordings": items,
        "ledger": {"file": LEDGER, "events": report.ledger_events, "sha256": ledger_sha},
        "seals": {"file": SEALS, "seals": report.seals, "sha256": seals_sha},
    }
    body = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    await asyncio.to_thread(_write_atomic, out / MANIFEST, lambda fh: fh.write(body))
    report.manifest = out / MANIFEST
    return report


def manifest_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
