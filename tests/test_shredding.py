"""Key-shredding (issue 17): purge and erasure destroy a recording's data key before its
objects, so a copy made behind callvault's back (a backup, a replica, an operator's copy) can
no longer be read with anything callvault holds. Real PostgreSQL and moto's S3 server; the
"backup" is a plain S3 copy to another bucket, as a backup tool would make."""

from __future__ import annotations

import asyncio
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes

from retention import dsar
from retention.purge import purge_once
from service import ledger
from service.config import Settings
from service.db.pool import create_pool
from service.personal.numbers import PhoneVault, _derive
from service.storage import recording_keys, sealed
from service.storage.registry import StoreRegistry
from service.storage.s3 import S3Store
from service.tenants.export import export
from tests.conftest import SECRET_KEY, make_bucket
from tests.intake_helpers import get_object, objects, open_sealed
from tests.seed import seed_recording

VAULT = PhoneVault(SECRET_KEY)
CALLER = "+84901234678"
Conn = asyncpg.Connection


@pytest.fixture
async def versioned(moto_url: str) -> str:
    return await asyncio.to_thread(make_bucket, moto_url, True)


@pytest.fixture
async def store(moto_url: str, versioned: str) -> AsyncIterator[S3Store]:
    s = S3Store(versioned, endpoint_url=moto_url, region="us-east-1")
    yield s
    await s.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    p = await create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


def _copy_aside(endpoint: str, bucket: str, key: str) -> str:
    backup = make_bucket(endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.copy_object(Bucket=backup, Key=key, CopySource={"Bucket": bucket, "Key": key})
    return backup


async def _everything_callvault_holds_fails(db: Conn, rec_id: uuid.UUID, copy: bytes) -> None:
    """The copy opens with nothing callvault holds: its key row is gone, and neither the
    tenant's key-encryption key nor any other recording's data key decrypts it."""
    with pytest.raises(LookupError):
        await open_sealed(db, rec_id, copy)
    tenant = await db.fetchval("SELECT tenant_id FROM recordings WHERE id = $1", rec_id)
    candidates = [
        _derive(SECRET_KEY, b"recording-kek:" + tenant.encode()),  # the tenant's own key
        _derive(SECRET_KEY, b"secret-encryption"),
        _derive(SECRET_KEY, b"phone-encryption"),
    ]
    others = await db.fetch("SELECT recording_id, tenant_id, wrapped_key FROM recording_keys")
    assert others, "the test needs another recording's key to try"
    for row in others:
        keyset = VAULT.unwrap_data_key(
            row["tenant_id"], str(row["recording_id"]), row["wrapped_key"]
        )
        candidates.append(sealed.Layout.of(keyset).key_value)
    header_size = sealed.Layout(b"", 32, hashes.SHA256, 1 << 20).header_size
    for value in candidates:
        layout = sealed.Layout(value, 32, hashes.SHA256, 1 << 20)
        opener = layout.opener(copy[:header_size], sealed.associated_data(rec_id), len(copy))
        with pytest.raises(sealed.Undecryptable):
            opener.open(
                0, copy[header_size : layout.segment_cipher_size(0, len(copy)) + header_size]
            )


async def _events(db: Conn, call_id: uuid.UUID) -> list[str]:
    return [e.type for e in await ledger.events_of(db, call_id)]


async def test_a_backup_copy_of_a_purged_recording_cannot_be_decrypted(
    db: Conn, pool: Any, store: S3Store, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    rec = await seed_recording(db, store, VAULT, tmp_path, sealed=True)
    kept = await seed_recording(db, store, VAULT, tmp_path, sealed=True, expired=False)
    backup = await asyncio.to_thread(_copy_aside, moto_url, versioned, rec["key"])
    copy = await get_object(moto_url, backup, rec["key"])
    # the copy is the recording, sealed: readable while its key exists
    assert rec["body"] not in copy
    assert await open_sealed(db, rec["recording_id"], copy) == rec["body"]

    report = await purge_once(pool, store)

    assert report.purged == 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM recording_keys WHERE recording_id = $1", rec["recording_id"]
        )
        == 0
    )
    types = await _events(db, rec["call_id"])
    assert types.index("key_destroyed") < types.index("purged")
    assert [o["key"] for o in await objects(moto_url, versioned)] == [kept["key"]]
    # the backup outlived the purge, and is noise now
    assert await get_object(moto_url, backup, rec["key"]) == copy
    await _everything_callvault_holds_fails(db, rec["recording_id"], copy)
    # the recording that was not due keeps its key and plays
    kept_copy = await get_object(moto_url, versioned, kept["key"])
    assert await open_sealed(db, kept["recording_id"], kept_copy) == kept["body"]
    assert (await ledger.verify(db)).ok


async def test_a_backup_copy_of_an_erased_recording_cannot_be_decrypted(
    db: Conn, store: S3Store, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    rec = await seed_recording(db, store, VAULT, tmp_path, sealed=True, expired=False)
    other = await seed_recording(
        db, store, VAULT, tmp_path, sealed=True, expired=False, caller="+84907654321"
    )
    backup = await asyncio.to_thread(_copy_aside, moto_url, versioned, rec["key"])
    copy = await get_object(moto_url, backup, rec["key"])
    assert await open_sealed(db, rec["recording_id"], copy) == rec["body"]

    rid = await dsar.create(db, VAULT, kind="erase", phone=CALLER, actor="test")
    assert await dsar.run(db, VAULT, store, rid, tmp_path, retry_s=1) == "completed"

    assert (
        await db.fetchval("SELECT state FROM recordings WHERE id = $1", rec["recording_id"])
        == "erased"
    )
    types = await _events(db, rec["call_id"])
    assert types.index("key_destroyed") < types.index("erased")
    assert [o["key"] for o in await objects(moto_url, versioned)] == [other["key"]]
    await _everything_callvault_holds_fails(db, rec["recording_id"], copy)
    assert (await ledger.verify(db)).ok


async def test_a_store_refusing_the_purge_still_loses_the_key(
    db: Conn, pool: Any, tmp_path: Path, moto_url: str, versioned: str, store: S3Store
) -> None:
    """A bucket that cannot be reached keeps the object for the next pass, but the recording
    is already unreadable: retention has ended."""
    rec = await seed_recording(db, store, VAULT, tmp_path, sealed=True)
    down = S3Store(versioned, endpoint_url="http://127.0.0.1:9", region="us-east-1")
    try:
        report = await purge_once(pool, down)
    finally:
        await down.close()
    assert report.purged == 0 and str(rec["recording_id"]) in report.failed
    assert (
        await db.fetchval("SELECT state FROM recordings WHERE id = $1", rec["recording_id"])
        == "stored"
    )
    assert await recording_keys.open_key(db, VAULT, rec["recording_id"]) is None
    report = await purge_once(pool, store)
    assert report.purged == 1
    types = await _events(db, rec["call_id"])
    assert types.count("key_destroyed") == 1
    assert types.index("key_destroyed") < types.index("purged")


class _RefusingDeletes(S3Store):
    """The bucket as a policy denying s3:DeleteObject leaves it: every delete is refused."""

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        return {key: "AccessDenied: the bucket policy refuses DeleteObject" for key in keys}


async def test_a_shredded_recording_the_store_still_holds_is_gone_for_every_reader(
    db: Conn,
    pool: Any,
    store: S3Store,
    tmp_path: Path,
    moto_url: str,
    versioned: str,
    settings: Settings,
) -> None:
    """A purge shreds the key even when the store refuses the object (the row stays
    ``stored`` until the next pass): the tenant export skips it and lists it as shredded
    instead of aborting the whole export (an offboarding), and the access bundle lists it as
    purged, not stored with no audio. (Playback answers 410: tests/test_qa_api.py.)"""
    rec = await seed_recording(db, store, VAULT, tmp_path, sealed=True)
    kept = await seed_recording(db, store, VAULT, tmp_path, sealed=True, expired=False)
    refusing = _RefusingDeletes(versioned, endpoint_url=moto_url, region="us-east-1")
    try:
        report = await purge_once(pool, refusing)
    finally:
        await refusing.close()
    assert report.purged == 0 and str(rec["recording_id"]) in report.failed
    state = await db.fetchval("SELECT state FROM recordings WHERE id = $1", rec["recording_id"])
    assert state == "stored" and await store.head(rec["key"]) is not None
    assert await recording_keys.shredded_among(db, [rec["recording_id"], kept["recording_id"]]) == {
        rec["recording_id"]
    }

    out = tmp_path / "export"
    exported = await export(db, StoreRegistry.wrapping(store), "default", out, settings=settings)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [i["id"] for i in manifest["recordings"]] == [str(kept["recording_id"])]
    assert [i["id"] for i in manifest["shredded"]] == [str(rec["recording_id"])]
    assert exported.shredded == 1 and exported.recordings == 1
    assert (out / "recordings" / f"{kept['recording_id']}.wav").read_bytes() == kept["body"]
    assert sorted(p.name for p in (out / "recordings").iterdir()) == [f"{kept['recording_id']}.wav"]

    rid = await dsar.create(db, VAULT, kind="access", phone=CALLER, actor="test")
    assert await dsar.run(db, VAULT, store, rid, tmp_path, retry_s=1) == "completed"
    key = await db.fetchval("SELECT bundle_key FROM dsar_requests WHERE id = $1", rid)
    await store.download_to(key, tmp_path / "bundle.zip")
    with zipfile.ZipFile(tmp_path / "bundle.zip") as bundle:
        listed = {
            r["id"]: r for c in json.loads(bundle.read("calls.json")) for r in c["recordings"]
        }
        gone, there = listed[str(rec["recording_id"])], listed[str(kept["recording_id"])]
        assert (gone["state"], gone["shredded"], gone["audio_file"]) == ("purged", True, None)
        assert (there["state"], there["shredded"]) == ("stored", False)
        assert bundle.read(there["audio_file"]) == kept["body"]
        assert not [n for n in bundle.namelist() if str(rec["recording_id"]) in n]

    # the next pass, the store willing, deletes the object and marks the row
    assert (await purge_once(pool, store)).purged == 1
    assert await store.head(rec["key"]) is None


async def test_rotation_rewraps_every_data_key_and_leaves_the_objects_alone(
    db: Conn, store: S3Store, tmp_path: Path, moto_url: str, versioned: str, database_url: str
) -> None:
    from tests.conftest import run_cli

    new_key = "a-brand-new-secret-key-" + "n" * 30
    recs = [
        await seed_recording(db, store, VAULT, tmp_path, sealed=True, expired=False)
        for _ in range(2)
    ]
    before = {o["key"]: o["head"] for o in await objects(moto_url, versioned)}
    kek_ids = {r["kek_id"] for r in await db.fetch("SELECT kek_id FROM recording_keys")}

    env = {"CALLVAULT_SECRET_KEY": new_key, "CALLVAULT_PREVIOUS_SECRET_KEY": SECRET_KEY}
    result = await asyncio.to_thread(run_cli, database_url, "secrets", "rotate", env_overrides=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(", 2 recording data keys")
    again = await asyncio.to_thread(run_cli, database_url, "secrets", "rotate", env_overrides=env)
    assert "recording data keys" not in again.stdout  # nothing left under the old secret

    # the objects are exactly as they were: same versions, nothing rewritten
    after = {o["key"]: o["head"] for o in await objects(moto_url, versioned)}
    assert {k: h["VersionId"] for k, h in after.items()} == {
        k: h["VersionId"] for k, h in before.items()
    }
    rows = await db.fetch(
        "SELECT recording_id, tenant_id, wrapped_key, kek_id, key_version FROM recording_keys"
    )
    assert {r["kek_id"] for r in rows}.isdisjoint(kek_ids)
    assert {r["key_version"] for r in rows} == {2}
    new_alone, old_alone = PhoneVault(new_key), PhoneVault(SECRET_KEY)
    for rec in recs:
        row = next(r for r in rows if r["recording_id"] == rec["recording_id"])
        with pytest.raises(InvalidTag):  # the old secret alone opens nothing any more
            old_alone.unwrap_data_key(
                row["tenant_id"], str(rec["recording_id"]), row["wrapped_key"]
            )
        keyset = new_alone.unwrap_data_key(
            row["tenant_id"], str(rec["recording_id"]), row["wrapped_key"]
        )
        sealed_path, plain_path = tmp_path / "sealed", tmp_path / "plain"
        sealed_path.write_bytes(await get_object(moto_url, versioned, rec["key"]))
        sealed.decrypt_file(
            keyset, sealed_path, plain_path, sealed.associated_data(rec["recording_id"])
        )
        assert plain_path.read_bytes() == rec["body"]


async def test_encrypt_all_seals_old_recordings_in_place_and_is_resumable(
    db: Conn,
    pool: Any,
    store: S3Store,
    tmp_path: Path,
    moto_url: str,
    versioned: str,
    database_url: str,
) -> None:
    """Recordings stored before issue 17 (plaintext, no marker) are sealed under their own
    keys, their plaintext versions deleted; sealed ones are left alone; a second run finds
    nothing to do; and once sealed, a purge shreds them like any other."""
    from tests.conftest import run_cli

    old = [await seed_recording(db, store, VAULT, tmp_path, expired=False) for _ in range(2)]
    new = await seed_recording(db, store, VAULT, tmp_path, sealed=True, expired=False)
    new_before = await get_object(moto_url, versioned, new["key"])
    env = {
        "CALLVAULT_S3_BUCKET": versioned,
        "CALLVAULT_S3_ENDPOINT_URL": moto_url,
        "CALLVAULT_S3_REGION": "us-east-1",
    }

    result = await asyncio.to_thread(
        run_cli, database_url, "recordings", "encrypt", "--all", env_overrides=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sealed 2 recordings, 1 already sealed"

    found = await objects(moto_url, versioned)
    # one version per key: the plaintext versions are gone, not just hidden
    assert sorted(o["key"] for o in found) == sorted(r["key"] for r in [*old, new])
    for rec in old:
        (obj,) = [o for o in found if o["key"] == rec["key"]]
        assert obj["head"]["Metadata"]["callvault-enc"] == "tink-streaming-v1"
        copy = await get_object(moto_url, versioned, rec["key"])
        assert rec["body"] not in copy
        assert await open_sealed(db, rec["recording_id"], copy) == rec["body"]
        version = await db.fetchval(
            "SELECT object_version FROM recordings WHERE id = $1", rec["recording_id"]
        )
        assert version == obj["head"]["VersionId"]
    assert await get_object(moto_url, versioned, new["key"]) == new_before  # untouched

    again = await asyncio.to_thread(
        run_cli, database_url, "recordings", "encrypt", "--all", env_overrides=env
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "sealed 0 recordings, 3 already sealed"

    # sealed now, so shredded by the purge like any recording stored since
    copy = await get_object(moto_url, versioned, old[0]["key"])
    await db.execute(
        "UPDATE recordings SET retain_until = now() - interval '1 second' WHERE id = $1",
        old[0]["recording_id"],
    )
    assert (await purge_once(pool, store)).purged == 1
    await _everything_callvault_holds_fails(db, old[0]["recording_id"], copy)
