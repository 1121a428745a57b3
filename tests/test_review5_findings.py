"""REVIEW5 evidence (outside review of the integration candidate): failing tests that show
bugs found. Not a fix; each test says what it expects and why."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service.db import tenancy
from service.storage import recording_keys
from service.storage.s3 import S3Store
from service.tenants import export as export_mod
from tests.seed import seed_recording
from tests.test_kms_data_keys import (
    VAULT,
    configure,
    new_kms_key,
)

Conn = asyncpg.Connection


@pytest.fixture
async def s3(moto_url: str, bucket: str) -> Any:
    s = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    yield s
    await s.close()


async def test_review5_sealed_export_never_calls_a_live_recording_shredded(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, settings: Any, monkeypatch: Any
) -> None:
    """A recording stored between the sealed export's key check (_sealed_keys) and its
    listing (stored_recordings in _export) is not in ``keys`` and is then written to the
    manifest under "shredded" ("its data key is destroyed"): a live recording left out of an
    offboarding export and declared destroyed."""
    from service.storage.registry import StoreRegistry
    from service.storage.reseal import encrypt_all

    key_a = await asyncio.to_thread(new_kms_key, moto_url)
    await configure(db, "kms-co", {"kms_key_id": key_a, "endpoint_url": moto_url})
    await tenancy.set_tenant(db, "kms-co")
    await seed_recording(db, s3, VAULT, tmp_path, expired=False)
    registry = StoreRegistry.wrapping(s3)
    await tenancy.set_tenant(db, tenancy.ALL)
    assert (await encrypt_all(db, VAULT, registry, tmp_path)).sealed == 1

    real = export_mod._sealed_keys
    late: dict[str, Any] = {}

    async def checked_then_an_intake_commits(conn: Any, tenant: str) -> Any:
        keys = await real(conn, tenant)
        # an intake of the same tenant commits a sealed, KMS-wrapped recording meanwhile
        rec = await seed_recording(conn, s3, VAULT, tmp_path, expired=False)
        late["id"] = rec["recording_id"]
        await tenancy.set_tenant(conn, tenancy.ALL)
        await encrypt_all(conn, VAULT, registry, tmp_path)
        await tenancy.set_tenant(conn, tenant)
        assert await recording_keys.open_key(conn, VAULT, rec["recording_id"]) is not None
        return keys

    monkeypatch.setattr(export_mod, "_sealed_keys", checked_then_an_intake_commits)
    await tenancy.set_tenant(db, "kms-co")
    out = tmp_path / "export"
    await export_mod.export(db, registry, "kms-co", out, settings=settings, sealed_out=True)
    manifest = json.loads((out / "manifest.json").read_text())
    shredded = [i["id"] for i in manifest["shredded"]]
    assert str(late["id"]) not in shredded, "a live recording is declared shredded"


async def test_review5_sealed_export_never_writes_plaintext_into_the_export(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, settings: Any, monkeypatch: Any
) -> None:
    """handout.fetch_sealed checks each sealed file by decrypting it to ``staged + '.check'``,
    and a folder target stages beside the file's place: the recording's plaintext is written
    inside the sealed export's folder (left there by a kill -9 or a full disk). A sealed
    hand-out is asked for so that no plaintext audio sits where it is handed out; hashing the
    decrypting stream would check the same without writing it."""
    from service.storage import sealed
    from service.storage.registry import StoreRegistry
    from service.storage.reseal import encrypt_all

    key_a = await asyncio.to_thread(new_kms_key, moto_url)
    await configure(db, "kms-co", {"kms_key_id": key_a, "endpoint_url": moto_url})
    await tenancy.set_tenant(db, "kms-co")
    await seed_recording(db, s3, VAULT, tmp_path, expired=False)
    registry = StoreRegistry.wrapping(s3)
    await tenancy.set_tenant(db, tenancy.ALL)
    assert (await encrypt_all(db, VAULT, registry, tmp_path)).sealed == 1

    written: list[Path] = []
    real = sealed.decrypt_file

    def recording_where(keyset: bytes, src: Path, dst: Path, aad: bytes) -> int:
        written.append(dst)
        return real(keyset, src, dst, aad)

    monkeypatch.setattr(sealed, "decrypt_file", recording_where)
    await tenancy.set_tenant(db, "kms-co")
    out = tmp_path / "export"
    await export_mod.export(db, registry, "kms-co", out, settings=settings, sealed_out=True)
    assert written, "the check decrypts every file"
    inside = [p for p in written if out in p.parents]
    assert not inside, f"plaintext audio written inside the sealed export: {inside}"


async def test_review5_sealed_bundle_of_a_recording_shredded_meanwhile_says_shredded(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """retention/dsar.py (bundle build, sealed branch): ``(key,) = (await
    handout.sealed_keys(conn, tenant, [r["id"]])).values()``. A purge that shreds the key after
    the build's ``shredded_among`` read makes sealed_keys answer {} (shredded ones are left
    out), and the unpacking raises ValueError instead of listing the recording as shredded,
    as the plaintext branch does (KeyDestroyed)."""
    import zipfile

    from retention import dsar
    from service.storage.registry import StoreRegistry
    from service.storage.reseal import encrypt_all

    key_a = await asyncio.to_thread(new_kms_key, moto_url)
    await configure(db, "kms-co", {"kms_key_id": key_a, "endpoint_url": moto_url})
    caller = "+84901110001"
    await tenancy.set_tenant(db, "kms-co")
    rec = await seed_recording(db, s3, VAULT, tmp_path, caller=caller, expired=False)
    await tenancy.set_tenant(db, tenancy.ALL)
    assert (await encrypt_all(db, VAULT, StoreRegistry.wrapping(s3), tmp_path)).sealed == 1
    await tenancy.set_tenant(db, "kms-co")
    rid = await dsar.create(db, VAULT, kind="access", phone=caller, actor="test", sealed=True)

    real = recording_keys.shredded_among

    async def then_a_purge_shreds(conn: Any, ids: Any) -> Any:
        found = await real(conn, ids)
        if rec["recording_id"] in list(ids):
            async with conn.transaction():
                await recording_keys.destroy(conn, [rec["recording_id"]], "retention ended")
        return found

    monkeypatch.setattr(recording_keys, "shredded_among", then_a_purge_shreds)
    assert await dsar.run(db, VAULT, s3, rid, tmp_path, retry_s=1) == "completed"
    key = await db.fetchval("SELECT bundle_key FROM dsar_requests WHERE id = $1", rid)
    await s3.download_to(key, tmp_path / "bundle.zip")
    with zipfile.ZipFile(tmp_path / "bundle.zip") as bundle:
        (call,) = json.loads(bundle.read("calls.json"))
    (item,) = call["recordings"]
    assert item["shredded"] is True
