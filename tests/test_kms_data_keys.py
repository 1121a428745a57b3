"""A tenant's own KMS key wraps its recordings' data keys (issue 17 item 2): against moto's
server over HTTP (the same process that serves the tests' S3 serves KMS), two tenants side by
side, ``kms-co`` configured with a KMS key and ``plain-co`` on the key derived from the secret.
A data key wrapped by KMS is bound to its tenant and recording (encryption context): another
tenant's context or another KMS key does not open it. ``secrets rotate --data-keys`` re-wraps
when a tenant names another key (KMS ReEncrypt) or drops KMS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidTag

from service.db import tenancy
from service.db.pool import connect
from service.personal.numbers import PhoneVault
from service.storage import recording_keys, sealed, wrapping
from service.storage.s3 import S3Store
from service.tenants import model
from service.tenants import store as tenant_store
from tests.conftest import SECRET_KEY, run_cli
from tests.seed import seed_recording
from tests.tenant_stores import (  # noqa: F401 - the *_fixture names are fixtures
    own_s3_fixture,
    service_fixture,
    storage_settings_fixture,
    tenants_fixture,
)

VAULT = PhoneVault(SECRET_KEY)
Conn = asyncpg.Connection


def new_kms_key(endpoint: str) -> str:
    client = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1")
    return str(client.create_key(Description="a tenant's data-key wrapper")["KeyMetadata"]["Arn"])


async def configure(db: Conn, tenant: str, data_keys: dict[str, Any] | None) -> None:
    """The tenant's configuration as ``tenant apply`` writes it."""
    body: dict[str, Any] = {"name": tenant}
    if data_keys is not None:
        body["data_keys"] = data_keys
    spec = model.parse_tenant(tenant, body)
    await tenancy.set_tenant(db, tenancy.ALL)
    async with db.transaction():
        if not await db.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant):
            await tenant_store.create(db, tenant, tenant)
        await tenant_store.write(db, [spec])


async def recording_of(db: Conn, tenant: str, s3: S3Store, tmp_path: Path) -> uuid.UUID:
    """A stored recording of ``tenant`` given its data key by the same path as intake's."""
    await tenancy.set_tenant(db, tenant)
    rec = await seed_recording(db, s3, VAULT, tmp_path, expired=False)
    async with db.transaction():
        assert await recording_keys.issue(db, VAULT, rec["recording_id"], state="stored")
    await tenancy.set_tenant(db, tenancy.ALL)
    rid: uuid.UUID = rec["recording_id"]
    return rid


async def key_row(db: Conn, rid: uuid.UUID) -> Any:
    return await db.fetchrow(
        "SELECT tenant_id, wrapped_key, wrapper, kms_key_arn, kek_id, key_version "
        "FROM recording_keys WHERE recording_id = $1",
        rid,
    )


@pytest.fixture
async def s3(moto_url: str, bucket: str) -> Any:
    s = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    yield s
    await s.close()


async def test_a_kms_tenant_s_data_keys_are_wrapped_by_its_key_and_bound_to_it(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, service_url: str
) -> None:
    key_a, other = (
        await asyncio.to_thread(new_kms_key, moto_url),
        await asyncio.to_thread(new_kms_key, moto_url),
    )
    await configure(db, "kms-co", {"kms_key_id": key_a, "endpoint_url": moto_url})
    await configure(db, "plain-co", None)
    kms_rec = await recording_of(db, "kms-co", s3, tmp_path)
    plain_rec = await recording_of(db, "plain-co", s3, tmp_path)

    kms_row, plain_row = await key_row(db, kms_rec), await key_row(db, plain_rec)
    assert (kms_row["wrapper"], kms_row["kms_key_arn"]) == ("kms", key_a)
    assert kms_row["kek_id"] == wrapping.arn_fingerprint(key_a)
    assert (plain_row["wrapper"], plain_row["kms_key_arn"]) == ("derived", None)
    assert plain_row["kek_id"] == VAULT.current_kek_id("plain-co")
    # the secret callvault holds does not open the KMS tenant's key: only its KMS key does
    with pytest.raises((InvalidTag, ValueError)):
        VAULT.unwrap_data_key("kms-co", str(kms_rec), kms_row["wrapped_key"])
    keyset = await recording_keys.open_key(db, VAULT, kms_rec)
    assert keyset is not None and recording_keys.sealed.Layout.of(keyset).key_value
    assert await recording_keys.open_key(db, VAULT, plain_rec) is not None

    # bound to its tenant and recording, and to its own KMS key
    blob, settings = kms_row["wrapped_key"], wrapping.KmsKey(key_a, moto_url)
    for tenant, rid in (("plain-co", str(kms_rec)), ("kms-co", str(plain_rec))):
        with pytest.raises(wrapping.KeyWrappingError):
            await wrapping.kms_decrypt(settings, key_a, tenant, rid, blob)
    with pytest.raises(wrapping.KeyWrappingError):  # another tenant's KMS key
        await wrapping.kms_decrypt(
            wrapping.KmsKey(other, moto_url), other, "kms-co", str(kms_rec), blob
        )
    assert await wrapping.kms_decrypt(settings, key_a, "kms-co", str(kms_rec), blob) == keyset

    # row-level security: as the other tenant (the service's role), the KMS tenant's key is
    # not there to open; as its own, it is
    service = await connect(service_url)
    try:
        await tenancy.set_tenant(service, "plain-co")
        assert await recording_keys.open_key(service, VAULT, kms_rec) is None
        await tenancy.set_tenant(service, "kms-co")
        assert await recording_keys.open_key(service, VAULT, kms_rec) == keyset
    finally:
        await service.close()

    # shredding destroys the wrapped key whoever wrapped it: the KMS key alone opens nothing
    async with db.transaction():
        assert await recording_keys.destroy(db, [kms_rec], "erased") == [kms_rec]
    assert await key_row(db, kms_rec) is None
    assert await recording_keys.open_key(db, VAULT, kms_rec) is None


async def test_rotate_re_wraps_when_a_tenant_names_another_kms_key_or_drops_it(
    db: Conn,
    s3: S3Store,
    moto_url: str,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_a = await asyncio.to_thread(new_kms_key, moto_url)
    key_b = await asyncio.to_thread(new_kms_key, moto_url)
    await configure(db, "kms-co", {"kms_key_id": key_a, "endpoint_url": moto_url})
    await configure(db, "plain-co", None)
    kms_rec = await recording_of(db, "kms-co", s3, tmp_path)
    plain_rec = await recording_of(db, "plain-co", s3, tmp_path)
    keyset = await recording_keys.open_key(db, VAULT, kms_rec)
    plain_before = await key_row(db, plain_rec)

    # the tenant names another KMS key: the operator re-wraps without touching the secret
    await configure(db, "kms-co", {"kms_key_id": key_b, "endpoint_url": moto_url})
    result = await asyncio.to_thread(run_cli, database_url, "secrets", "rotate", "--data-keys")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "re-wrapped 1 recording data keys"
    row = await key_row(db, kms_rec)
    assert (row["wrapper"], row["kms_key_arn"], row["key_version"]) == ("kms", key_b, 2)
    assert await recording_keys.open_key(db, VAULT, kms_rec) == keyset
    with pytest.raises(wrapping.KeyWrappingError):  # the old key no longer opens it
        await wrapping.kms_decrypt(
            wrapping.KmsKey(key_a, moto_url), key_a, "kms-co", str(kms_rec), row["wrapped_key"]
        )
    assert await key_row(db, plain_rec) == plain_before  # the derived tenant's key: untouched
    # nothing left to do: a second run changes nothing
    assert await recording_keys.rewrap(db, VAULT) == 0

    # the tenant drops KMS: its keys come back under the key derived from the secret (the
    # key that wrapped them is reached as boto3 reaches KMS by default: here, moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_url)
    await configure(db, "kms-co", None)
    assert await recording_keys.rewrap(db, VAULT) == 1
    row = await key_row(db, kms_rec)
    assert (row["wrapper"], row["kms_key_arn"]) == ("derived", None)
    assert VAULT.unwrap_data_key("kms-co", str(kms_rec), row["wrapped_key"]) == keyset


def client_opens(out: Path, item: dict[str, Any], kms_endpoint: str) -> bytes:
    """The recipe the client follows (README, "Sealed exports"), with its own KMS key and Tink
    alone: nothing of callvault's code or secrets."""
    import base64

    import tink  # type: ignore[import-untyped]
    from tink import cleartext_keyset_handle, streaming_aead

    streaming_aead.register()
    seal = item["sealed"]
    kms = boto3.client("kms", endpoint_url=kms_endpoint, region_name="us-east-1")
    keyset = kms.decrypt(
        CiphertextBlob=base64.b64decode(seal["wrapped_key"]),
        KeyId=seal["kms_key_arn"],
        EncryptionContext=seal["encryption_context"],
    )["Plaintext"]
    handle = cleartext_keyset_handle.read(tink.BinaryKeysetReader(keyset))
    primitive = handle.primitive(streaming_aead.StreamingAead)
    with (
        (out / seal["file"]).open("rb") as ciphertext,
        primitive.new_decrypting_stream(ciphertext, seal["associated_data"].encode()) as plain,
    ):
        return bytes(plain.read())


def _no_plaintext_file(keyset: bytes, src: Path, dst: Path, aad: bytes) -> int:
    raise AssertionError(f"a sealed hand-out wrote a recording's plaintext to {dst}")


async def test_a_sealed_export_opens_with_the_client_s_kms_key_alone(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, settings: Any, monkeypatch: Any
) -> None:
    import hashlib
    import json

    from service.storage.registry import StoreRegistry
    from service.storage.reseal import encrypt_all
    from service.tenants.export import ExportError, export

    key_a = await asyncio.to_thread(new_kms_key, moto_url)
    await configure(db, "kms-co", {"kms_key_id": key_a, "endpoint_url": moto_url})
    await configure(db, "plain-co", None)
    recs = {}
    for tenant in ("kms-co", "kms-co", "plain-co"):
        await tenancy.set_tenant(db, tenant)
        rec = await seed_recording(db, s3, VAULT, tmp_path, expired=False)
        recs.setdefault(tenant, []).append(rec)
    registry = StoreRegistry.wrapping(s3)
    await tenancy.set_tenant(db, "kms-co")
    # stored before issue 17: a sealed export refuses until they are sealed under the KMS key
    with pytest.raises(ExportError) as refused:
        await export(db, registry, "kms-co", tmp_path / "early", settings=settings, sealed_out=True)
    assert refused.value.code == "not_sealed"
    await tenancy.set_tenant(db, tenancy.ALL)
    assert (await encrypt_all(db, VAULT, registry, tmp_path)).sealed == 3

    # the derived key is callvault's own: nothing of it is handed out
    await tenancy.set_tenant(db, "plain-co")
    with pytest.raises(ExportError) as refused:
        await export(db, registry, "plain-co", tmp_path / "p", settings=settings, sealed_out=True)
    assert refused.value.code == "sealed_needs_kms"
    assert not (tmp_path / "p").exists()

    # one of kms-co's is shredded (a purge the store refused): listed, not handed out
    shredded, kept = recs["kms-co"]
    async with db.transaction():
        await recording_keys.destroy(db, [shredded["recording_id"]], "retention ended")
    await tenancy.set_tenant(db, "kms-co")
    out = tmp_path / "export"
    # checked by hashing as it is opened: no plaintext file is written, not even to check it
    # (beside its place in the export, a kill -9 would have left it there)
    monkeypatch.setattr(sealed, "decrypt_file", _no_plaintext_file)
    report = await export(db, registry, "kms-co", out, settings=settings, sealed_out=True)
    assert (report.recordings, report.shredded) == (1, 1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sealed"] is True
    assert [i["id"] for i in manifest["shredded"]] == [str(shredded["recording_id"])]
    (item,) = manifest["recordings"]
    assert item["id"] == str(kept["recording_id"])
    cipher = (out / item["sealed"]["file"]).read_bytes()
    assert kept["body"] not in cipher  # ciphertext, not audio
    assert hashlib.sha256(cipher).hexdigest() == item["sealed"]["sha256"]
    assert sorted(p.name for p in (out / "recordings").iterdir()) == [
        f"{kept['recording_id']}.wav.sealed"
    ]
    opened = await asyncio.to_thread(client_opens, out, item, moto_url)
    assert opened == kept["body"]
    assert hashlib.sha256(opened).hexdigest() == item["sha256"]
    # moved under another recording's name, the client's KMS key refuses it
    moved = {**item, "sealed": {**item["sealed"]}}
    moved["sealed"]["encryption_context"] = {
        **item["sealed"]["encryption_context"],
        "callvault:recording": str(shredded["recording_id"]),
    }
    with pytest.raises(ClientError):
        await asyncio.to_thread(client_opens, out, moved, moto_url)


async def test_a_sealed_access_bundle_opens_with_the_client_s_kms_key_alone(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    import json
    import zipfile

    from retention import dsar
    from service.errors import BadRequest
    from service.storage.handout import NotSealable
    from service.storage.registry import StoreRegistry
    from service.storage.reseal import encrypt_all

    key_a = await asyncio.to_thread(new_kms_key, moto_url)
    await configure(db, "kms-co", {"kms_key_id": key_a, "endpoint_url": moto_url})
    await configure(db, "plain-co", None)
    callers = {"kms-co": "+84901110001", "plain-co": "+84901110002"}
    recs = {}
    for tenant, caller in callers.items():
        await tenancy.set_tenant(db, tenant)
        recs[tenant] = await seed_recording(db, s3, VAULT, tmp_path, caller=caller, expired=False)
    await tenancy.set_tenant(db, tenancy.ALL)
    assert (await encrypt_all(db, VAULT, StoreRegistry.wrapping(s3), tmp_path)).sealed == 2

    await tenancy.set_tenant(db, "plain-co")
    with pytest.raises(NotSealable) as refused:
        await dsar.create(
            db, VAULT, kind="access", phone=callers["plain-co"], actor="test", sealed=True
        )
    assert (refused.value.status, refused.value.code) == (409, "sealed_needs_kms")
    await tenancy.set_tenant(db, "kms-co")
    with pytest.raises(BadRequest):  # only an access bundle is handed out
        await dsar.create(
            db, VAULT, kind="erase", phone=callers["kms-co"], actor="test", sealed=True
        )
    assert await db.fetchval("SELECT count(*) FROM dsar_requests") == 0

    rid = await dsar.create(
        db, VAULT, kind="access", phone=callers["kms-co"], actor="test", sealed=True
    )
    monkeypatch.setattr(sealed, "decrypt_file", _no_plaintext_file)  # not even in its work dir
    assert await dsar.run(db, VAULT, s3, rid, tmp_path, retry_s=1) == "completed"
    key = await db.fetchval("SELECT bundle_key FROM dsar_requests WHERE id = $1", rid)
    await s3.download_to(key, tmp_path / "bundle.zip")
    out = tmp_path / "bundle"
    with zipfile.ZipFile(tmp_path / "bundle.zip") as bundle:
        bundle.extractall(out)
    assert json.loads((out / "request.json").read_text())["sealed"] is True
    (call,) = json.loads((out / "calls.json").read_text())
    (item,) = call["recordings"]
    body = recs["kms-co"]["body"]
    assert item["audio_file"] == item["sealed"]["file"]
    assert item["audio_file"].endswith(".wav.sealed")
    # no plaintext audio anywhere in the bundle
    assert not [p for p in out.rglob("*") if p.is_file() and body in p.read_bytes()]
    assert await asyncio.to_thread(client_opens, out, item, moto_url) == body


async def test_a_recording_stored_as_a_sealed_export_starts_is_exported_not_called_shredded(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, settings: Any, monkeypatch: Any
) -> None:
    """An intake commits between the export's key check and its listing: the recording is
    handed out with its key, not declared destroyed in the manifest."""
    import json

    from service.storage.registry import StoreRegistry
    from service.storage.reseal import encrypt_all
    from service.tenants import export as export_mod

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
        rec = await seed_recording(conn, s3, VAULT, tmp_path, expired=False)
        late["id"] = str(rec["recording_id"])
        await tenancy.set_tenant(conn, tenancy.ALL)
        await encrypt_all(conn, VAULT, registry, tmp_path)
        await tenancy.set_tenant(conn, tenant)
        return keys

    monkeypatch.setattr(export_mod, "_sealed_keys", checked_then_an_intake_commits)
    await tenancy.set_tenant(db, "kms-co")
    out = tmp_path / "export"
    report = await export_mod.export(
        db, registry, "kms-co", out, settings=settings, sealed_out=True
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shredded"] == [] and report.recordings == 2
    assert late["id"] in [i["id"] for i in manifest["recordings"]]


async def test_a_sealed_access_bundle_lists_a_recording_shredded_during_its_build_as_shredded(
    db: Conn, s3: S3Store, moto_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    """A purge shreds the key after the build read which are shredded: the bundle lists the
    recording as shredded, as it does unsealed, rather than failing."""
    import json
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
    assert (item["shredded"], item["audio_file"]) == (True, None)


async def test_intake_and_playback_of_a_kms_tenant_go_through_its_key(
    service: Any,
    http: Any,
    twilio_media: Any,
    db: Conn,
    tenants: Any,
    moto_url: str,
) -> None:
    """The service as deployed (its own role, row-level security): tenant-a on its KMS key,
    tenant-b on the derived key; each intake seals under its tenant's wrapper, and each plays."""
    from tests.intake_helpers import settle
    from tests.qa_fixtures import call_api
    from tests.tenant_stores import download, record, row_of, token_for

    key_a = await asyncio.to_thread(new_kms_key, moto_url)
    await db.execute(
        "INSERT INTO tenant_data_keys (tenant_id, kms_key_id, endpoint_url) "
        "VALUES ('tenant-a', $1, $2)",
        key_a,
        moto_url,
    )
    made = [
        await record(t, http, service, twilio_media, f"+8490555100{i}")
        for i, t in enumerate(("tenant-a", "tenant-b"))
    ]
    assert await settle(db) == {"done": 2}
    rows = [await row_of(db, r) for r in made]
    assert [row["state"] for row in rows] == ["stored", "stored"]
    wrappers = [
        tuple(
            await db.fetchrow(
                "SELECT wrapper, kms_key_arn FROM recording_keys WHERE recording_id = $1", row["id"]
            )
        )
        for row in rows
    ]
    assert wrappers == [("kms", key_a), ("derived", None)]
    for rec, row in zip(made, rows, strict=True):
        qa = await token_for(db, rec.tenant, "qa_trainer")
        path = f"/api/recordings/{row['id']}/playback"
        status, link = await call_api(http, service, "POST", path, qa, {"reason": "coaching"})
        assert status == 200
        assert await download(http, service, link["url"]) == rec.body, rec.tenant


async def test_a_tenant_s_data_keys_table_is_checked_and_stored_as_written(db: Conn) -> None:
    good = {
        "kms_key_id": "alias/acme-recordings",
        "region": "ap-southeast-1",
        "access_key_id_env": "ACME_KMS_KEY_ID",
        "secret_access_key_file": "/etc/callvault/acme-kms.secret",
    }
    await configure(db, "acme", good)
    spec = model.parse_tenant("acme", {"name": "acme", "data_keys": good})
    stored = (await tenant_store.load(db, ["acme"]))["acme"]
    assert stored.data_keys == spec.data_keys
    assert stored.flat() == spec.flat()
    assert spec.flat()["tenants.acme.data_keys.kms_key_id"] == "alias/acme-recordings"
    for bad, message in (
        ({"region": "eu-west-1"}, "tenants.acme.data_keys.kms_key_id: required"),
        ({**good, "colour": "red"}, "tenants.acme.data_keys.colour: unknown key"),
        ({**good, "secret_access_key": "x"}, "tenants.acme.data_keys.secret_access_key: secrets"),
        ({"kms_key_id": "k", "access_key_id_env": "A"}, "tenants.acme.data_keys: give both"),
        # botocore refuses it when a client is made: at apply, not on every intake after
        ({**good, "region": "bad region!"}, "tenants.acme.data_keys.region: not an AWS region"),
    ):
        with pytest.raises(model.TenantSpecError) as refused:
            model.parse_tenant("acme", {"name": "acme", "data_keys": bad})
        assert str(refused.value).startswith(message), refused.value
    # dropped from the file: the tenant is back on the derived key
    await configure(db, "acme", None)
    assert (await tenant_store.load(db, ["acme"]))["acme"].data_keys is None


async def test_a_kms_setting_botocore_refuses_is_key_service_unavailable_not_a_crash() -> None:
    """A region stored before apply checked it: every KMS call answers 503 (an intake is
    retried), never a 500 with botocore's traceback."""
    typo = wrapping.KmsKey("alias/k", "http://127.0.0.1:9", "bad region!")
    arn = "arn:aws:kms:bad region!:123456789012:key/k"
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: wrapping.kms_encrypt(typo, "t", "r", b"keyset"),
        lambda: wrapping.kms_decrypt(typo, arn, "t", "r", b"blob"),
        lambda: wrapping.kms_reencrypt(typo, arn, "t", "r", b"blob"),
        lambda: wrapping.kms_arn(typo),
    ]
    for call in calls:
        with pytest.raises(wrapping.KeyWrappingError) as refused:
            await call()
        assert refused.value.status == 503
