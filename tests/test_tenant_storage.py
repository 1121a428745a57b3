"""Storage per tenant (issue 13 item 6): the tenant ``default`` keeps today's keys in the shared
bucket, tenant a shares it under ``tenants/tenant-a/``, tenant b has its own bucket on another
S3 endpoint (a second moto server) with its own credentials and SSE-KMS key. Intake, playback,
access bundles, erasure and purge each reach the right bucket, and b's bucket being down does
not stop a's intake (b's recording is stored once the bucket is back)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from retention import dsar
from retention.purge import purge_once
from service import jobs, ledger
from service.config import RetentionSource, Settings
from service.db import tenancy
from service.db.pool import create_pool
from service.intake import job as intake_job
from service.intake import recording_key
from service.intake.job import IntakeDeps, Received, store_received
from service.jobs import LeaseLost
from service.jobs.worker import JobContext
from service.personal.numbers import PhoneVault
from service.platforms.port import Downloaded
from service.storage import recording_keys
from service.storage.registry import SHARED, StoreRegistry
from service.storage.s3 import S3Store
from tests.conftest import SECRET_KEY, Service, make_bucket, run_cli
from tests.intake_helpers import objects, settle
from tests.qa_fixtures import access_bundle, call_api
from tests.seed import seed_recording
from tests.tenant_files import write as write_tenants
from tests.tenant_stores import (  # noqa: F401 - the *_fixture names are fixtures
    KMS_KEY,
    SID_B,
    Tenants,
    download,
    keys,
    own_s3_fixture,
    record,
    row_of,
    service_fixture,
    storage_settings_fixture,
    tenants_fixture,
    token_for,
)
from tests.twilio_media import FakeTwilioMedia
from tests.waiting import eventually

Conn = asyncpg.Connection
VAULT = PhoneVault(SECRET_KEY)


async def test_each_tenant_s_recordings_land_in_its_store_and_play_from_there(
    service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
) -> None:
    made = [
        await record(t, http, service, twilio_media, f"+8490555000{i}")
        for i, t in enumerate(("default", "tenant-a", "tenant-b"))
    ]
    assert await settle(db) == {"done": 3}
    rows = {r.tenant: await row_of(db, r) for r in made}
    assert all(row["state"] == "stored" for row in rows.values())

    # today's key for default, a prefix for a, both in the shared bucket; b's in its own
    assert await keys(tenants.moto, tenants.shared) == {
        f"recordings/{rows['default']['id']}.wav",
        f"tenants/tenant-a/recordings/{rows['tenant-a']['id']}.wav",
    }
    own = await objects(tenants.own.url, tenants.own_bucket)
    assert [o["key"] for o in own] == [f"recordings/{rows['tenant-b']['id']}.wav"]
    assert own[0]["head"]["ServerSideEncryption"] == "aws:kms"
    assert own[0]["head"]["SSEKMSKeyId"] == KMS_KEY
    assert own[0]["head"]["Metadata"]["sha256"] == hashlib.sha256(made[2].body).hexdigest()
    assert {t: row["object_store"] for t, row in rows.items()} == {
        "default": SHARED,
        "tenant-a": SHARED,
        "tenant-b": f"s3://{tenants.own_bucket}",
    }
    assert rows["tenant-a"]["object_key"].startswith("tenants/tenant-a/")

    for rec in made:
        qa = await token_for(db, rec.tenant, "qa_trainer")
        status, link = await call_api(
            http,
            service,
            "POST",
            f"/api/recordings/{rows[rec.tenant]['id']}/playback",
            qa,
            {"reason": "coaching"},
        )
        assert status == 200
        assert await download(http, service, link["url"]) == rec.body, rec.tenant


async def test_bundles_erasure_and_purge_reach_the_tenant_s_bucket(
    service: Service,
    storage_settings: Settings,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
    service_url: str,
) -> None:
    a = await record("tenant-a", http, service, twilio_media, "+84905550011")
    b = await record("tenant-b", http, service, twilio_media, "+84905550012")
    await settle(db)
    row_a, row_b = await row_of(db, a), await row_of(db, b)

    # b's access bundle is built from b's bucket into b's bucket, and handed out from there
    compliance_b = await token_for(db, "tenant-b", "compliance")
    await tenancy.set_tenant(db, tenancy.ALL)  # settle() must see b's jobs
    req, bundle = await access_bundle(http, service, compliance_b, b.caller, db)
    assert bundle.read(f"audio/{row_b['id']}.wav") == b.body
    assert await keys(tenants.own.url, tenants.own_bucket) == {
        f"recordings/{row_b['id']}.wav",
        await db.fetchval("SELECT bundle_key FROM dsar_requests WHERE id = $1", req["id"]),
    }
    assert await db.fetchval("SELECT bundle_store FROM dsar_requests WHERE id = $1", req["id"]) == (
        f"s3://{tenants.own_bucket}"
    )

    # b's erasure empties b's bucket (recording and bundle) and leaves a's objects alone
    status, _ = await call_api(
        http, service, "POST", "/api/dsar", compliance_b, {"kind": "erase", "phone": b.caller}
    )
    assert status == 201
    await settle(db)
    assert await keys(tenants.own.url, tenants.own_bucket) == set()
    assert (await row_of(db, b))["state"] == "erased"
    assert await keys(tenants.moto, tenants.shared) == {row_a["object_key"]}

    # a's expired recording is purged from the shared bucket, by a's pass
    await db.execute(
        "UPDATE recordings SET retain_until = now() - interval '1 day' WHERE id = $1", row_a["id"]
    )
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)
    try:
        report = await purge_once(pool, stores)
    finally:
        await stores.close()
        await pool.close()
    assert report.purged == 1 and not report.failed
    assert await keys(tenants.moto, tenants.shared) == set()
    assert (await row_of(db, a))["state"] == "purged"
    await tenancy.set_tenant(db, tenancy.ALL)
    assert (await ledger.verify(db)).ok


async def test_a_tenant_whose_bucket_is_down_does_not_stop_another_s_intake(
    service: Service,
    http: aiohttp.ClientSession,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    tenants: Tenants,
) -> None:
    await tenants.own.stop()  # tenant b's S3 endpoint is gone
    b = await record("tenant-b", http, service, twilio_media, "+84905550021")
    a = await record("tenant-a", http, service, twilio_media, "+84905550022")

    async def a_stored() -> bool:
        row = await row_of(db, a)
        return row is not None and row["state"] == "stored"

    await eventually(a_stored, what="tenant a's recording stored while b's bucket is down")
    assert await keys(tenants.moto, tenants.shared) == {(await row_of(db, a))["object_key"]}

    async def b_failed_once() -> bool:
        job = await db.fetchrow("SELECT * FROM jobs WHERE tenant_id = 'tenant-b'")
        return job is not None and job["attempts"] >= 1 and job["last_error"] is not None

    await eventually(b_failed_once, what="tenant b's intake tried and failed")
    job = await db.fetchrow("SELECT * FROM jobs WHERE tenant_id = 'tenant-b'")
    assert job["state"] in ("queued", "running") and "S3" in job["last_error"]
    assert (await row_of(db, b))["state"] == "pending"
    assert b.recording_sid in twilio_media.recordings  # the platform's copy is kept

    # the bucket comes back (moto starts empty: the bucket is made again) and b's job retries
    await tenants.own.start()
    await asyncio.to_thread(tenants.own.create_bucket, tenants.own_bucket)
    await settle(db)
    row_b = await row_of(db, b)
    assert row_b["state"] == "stored"
    found = await objects(tenants.own.url, tenants.own_bucket)
    assert [o["key"] for o in found] == [row_b["object_key"]]
    assert found[0]["head"]["Metadata"]["sha256"] == hashlib.sha256(b.body).hexdigest()
    assert b.recording_sid not in twilio_media.recordings


async def test_objects_stay_findable_when_a_tenant_s_storage_changes(
    db: Conn, service_url: str, moto_url: str, bucket: str, storage_settings: Settings
) -> None:
    await db.execute("INSERT INTO tenants (id, name) VALUES ('tenant-c', 'C')")
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)
    stores._ttl_s = 0  # every lookup reads tenant_storage again (no time passes in a test)
    try:
        before = await stores.for_tenant("tenant-c")
        assert (before.ref, before.prefix, before.store) == (
            SHARED,
            "tenants/tenant-c/",
            stores.shared,
        )
        own = make_bucket(moto_url)
        await db.execute(
            "INSERT INTO tenant_storage (tenant_id, bucket, endpoint_url) "
            "VALUES ('tenant-c', $1, $2)",
            own,
            moto_url,
        )
        after = await stores.for_tenant("tenant-c")
        assert (after.ref, after.prefix) == (f"s3://{own}", "")
        # an object written before the change is still found where its row says it is
        assert await stores.for_object("tenant-c", SHARED) is stores.shared
        assert await stores.for_object("tenant-c", f"s3://{own}") is after.store
        # a bucket the tenant moved away from is reached with its current endpoint
        moved = await stores.for_object("tenant-c", f"s3://{bucket}")
        assert moved is not after.store and getattr(moved, "bucket", None) == bucket
        # the default tenant is never prefixed
        assert (await stores.for_tenant(tenancy.DEFAULT)).prefix == ""
    finally:
        await stores.close()
        await pool.close()


async def test_objects_stored_before_0012_are_found_in_the_shared_store(
    pg_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database as it was before 0012, holding a tenant's recording under the key it was
    stored at (no prefix) and a bundle: upgraded, both rows name the shared store, so the
    objects are deleted and played from where they are."""
    from service.db import migrations
    from service.db.pool import connect
    from tests.conftest import db_url

    name = "t_pre0012_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg_base_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    conn = await connect(db_url(pg_base_url, name))
    try:
        before = [m for m in migrations.available() if m.version < 12]
        monkeypatch.setattr(migrations, "available", lambda: before)
        await migrations.migrate(conn)
        monkeypatch.undo()
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('tenant-a', 'A')")
        await tenancy.set_tenant(conn, "tenant-a")
        call_id = await conn.fetchval(
            "INSERT INTO calls (platform, external_id, policy) VALUES ('twilio', 'CA1', '{}') "
            "RETURNING id"
        )
        await conn.execute(
            "INSERT INTO recordings (call_id, platform, external_id, state, object_key, sha256, "
            "size_bytes, retain_until) VALUES ($1, 'twilio', 'RE1', 'stored', "
            "'recordings/x.wav', 'ab', 1, now())",
            call_id,
        )
        await conn.execute(
            "INSERT INTO dsar_requests (kind, requested_by, due_at, bundle_key) "
            "VALUES ('access', 'x', now(), 'dsar/y.zip')"
        )
        await tenancy.set_tenant(conn, tenancy.ALL)
        applied = await migrations.migrate(conn)
        assert 12 in [m.version for m in applied]
        rec = await conn.fetchrow("SELECT object_key, object_store FROM recordings")
        assert (rec["object_key"], rec["object_store"]) == ("recordings/x.wav", SHARED)
        assert await conn.fetchval("SELECT bundle_store FROM dsar_requests") == SHARED
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_base_url)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


def _put(endpoint: str, bucket: str, key: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key=key, Body=b"a sealed bundle")


async def test_cli_purge_removes_each_tenant_s_expired_bundle_from_its_own_store(
    db: Conn, database_url: str, tenants: Tenants, tmp_path: Path
) -> None:
    """``callvault purge`` as the embedded database's superuser URL runs it: each tenant's pass
    takes only that tenant's expired bundles, deletes each from the store its row names (with
    that tenant's endpoint and credentials) and audits it in that tenant's own trail."""
    bundles = {}
    for tenant, store, key in (
        ("tenant-a", SHARED, "tenants/tenant-a/dsar/a.zip"),
        ("tenant-b", f"s3://{tenants.own_bucket}", "dsar/b.zip"),
    ):
        bundles[tenant] = await db.fetchval(
            "INSERT INTO dsar_requests (tenant_id, kind, status, requested_by, due_at, "
            "completed_at, bundle_key, bundle_store, bundle_expires_at) VALUES ($1, 'access', "
            "'completed', 'test', now(), now(), $2, $3, now() - interval '1 second') RETURNING id",
            tenant,
            key,
            store,
        )
    await asyncio.to_thread(_put, tenants.moto, tenants.shared, "tenants/tenant-a/dsar/a.zip")
    await asyncio.to_thread(_put, tenants.own.url, tenants.own_bucket, "dsar/b.zip")

    env = {
        "CALLVAULT_DATABASE_URL": database_url,  # the superuser, as embedded mode resolves it
        "CALLVAULT_S3_BUCKET": tenants.shared,
        "CALLVAULT_S3_ENDPOINT_URL": tenants.moto,
        "CALLVAULT_S3_REGION": "us-east-1",
        "CALLVAULT_HOME": str(tmp_path / "home"),
    }
    done = await asyncio.to_thread(run_cli, database_url, "purge", env_overrides=env)
    assert done.returncode == 0, done.stderr
    assert "expired access bundles removed 2, refused by the store 0" in done.stdout

    assert await keys(tenants.moto, tenants.shared) == set()
    assert await keys(tenants.own.url, tenants.own_bucket) == set()
    await tenancy.set_tenant(db, tenancy.ALL)
    removed = await db.fetch(
        "SELECT tenant_id, bundle_key, bundle_removed_reason FROM dsar_requests ORDER BY tenant_id"
    )
    assert [tuple(r) for r in removed] == [
        ("tenant-a", None, "expired"),
        ("tenant-b", None, "expired"),
    ]
    trail = await db.fetch(
        "SELECT tenant_id, details FROM audit_log WHERE action = 'dsar_bundles_expired' "
        "ORDER BY tenant_id"
    )
    assert [(r["tenant_id"], r["details"]["requests"]) for r in trail] == [
        ("tenant-a", [str(bundles["tenant-a"])]),
        ("tenant-b", [str(bundles["tenant-b"])]),
    ]


MOVED_CALLER = "+84905550077"


@pytest.mark.parametrize("who", ["completion", "erasure", "bundle expiry", "stale sweep"])
async def test_a_bundle_upload_left_in_the_store_a_tenant_moved_from_is_deleted_there(
    who: str,
    db: Conn,
    storage_settings: Settings,
    tenants: Tenants,
    service_url: str,
    tmp_path: Path,
) -> None:
    """Tenant b's storage moved from the shared bucket to its own while a bundle run's upload
    was left (announced, never committed) in the shared one. Whoever deletes such uploads (the
    run that completes the request, an erasure of the number, the purge of the expired bundle
    or of a closed request's leftovers) deletes it from the store it went to, not from b's
    store of today: no copy of the person's data stays behind."""
    shared = S3Store(tenants.shared, endpoint_url=tenants.moto, region="us-east-1")
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)
    try:
        await tenancy.set_tenant(db, "tenant-b")
        await seed_recording(db, shared, VAULT, tmp_path, caller=MOVED_CALLER, expired=False)
        request = await dsar.create(db, VAULT, kind="access", phone=MOVED_CALLER, actor="test")
        if who in ("bundle expiry", "stale sweep"):  # completed first, its bundle in b's bucket
            done = await dsar.run(db, VAULT, stores, request, tmp_path, retry_s=1)
            assert done == "completed"
        left = "tenants/tenant-b/" + dsar.bundle_key_of(request, "before-the-move")
        await asyncio.to_thread(_put, tenants.moto, tenants.shared, left)
        await db.execute(
            "UPDATE dsar_requests SET bundle_uploads = bundle_uploads || "
            "jsonb_build_object($2::text, 'shared') WHERE id = $1",
            request,
            left,
        )
        assert left in await keys(tenants.moto, tenants.shared)

        if who == "completion":
            done = await dsar.run(db, VAULT, stores, request, tmp_path, retry_s=1)
            assert done == "completed"
        elif who == "erasure":
            erase = await dsar.create(db, VAULT, kind="erase", phone=MOVED_CALLER, actor="test")
            assert await dsar.run(db, VAULT, stores, erase, tmp_path, retry_s=1) == "completed"
        else:
            await db.execute(
                "UPDATE dsar_requests SET bundle_expires_at = CASE WHEN $2 THEN "
                "now() - interval '1 second' ELSE bundle_expires_at END, "
                "completed_at = CASE WHEN $2 THEN completed_at ELSE now() - interval '2 days' "
                "END WHERE id = $1",
                request,
                who == "bundle expiry",
            )
            report = await purge_once(pool, stores)
            assert report.batch_errors == 0 and not report.bundles_failed
            assert (report.bundles, report.stale_uploads) == (
                (1, 0) if who == "bundle expiry" else (0, 1)
            )
        assert left not in await keys(tenants.moto, tenants.shared)
        if who in ("bundle expiry", "stale sweep"):  # the rest leave the list to the purge
            assert (await dsar.get(db, request))["bundle_uploads"] == {}
    finally:
        await stores.close()
        await pool.close()


async def _consented_call(
    db: Conn, caller: str, called: str, external_id: str | None = None
) -> Any:
    """A consented call of the tenant ``db`` acts as; its id."""
    return await db.fetchval(
        "INSERT INTO calls (platform, external_id, caller_enc, caller_hash, called, policy, "
        "outcome, outcome_at) VALUES ('twilio', $1, $2, $3, $4, $5, 'consented', now()) "
        "RETURNING id",
        external_id or "CA" + secrets.token_hex(16),
        VAULT.encrypt(caller),
        VAULT.lookup_hash(caller),
        called,
        {"retention_s": 3600},
    )


async def _pending_recording(db: Conn, call_id: Any, upload_store: str) -> Any:
    """A pending recording of the call whose last attempt named ``upload_store``."""
    return await db.fetchrow(
        "INSERT INTO recordings (call_id, platform, external_id, upload_store) "
        "VALUES ($1, 'twilio', $2, $3) RETURNING id, call_id, state, upload_store",
        call_id,
        "RE" + secrets.token_hex(16),
        upload_store,
    )


async def _stored_recording(db: Conn, call_id: Any, object_store: str, upload_store: str) -> Any:
    """A recording of the call committed to ``object_store`` (retained for a day more) while
    it names ``upload_store`` for an earlier attempt's upload; its id."""
    return await db.fetchval(
        "INSERT INTO recordings (call_id, platform, external_id, state, object_key, sha256, "
        "size_bytes, retain_until, stored_at, object_store, upload_store) VALUES ($1, "
        "'twilio', $2, 'stored', 'x', 'x', 1, now() + interval '1 day', now(), $3, $4) "
        "RETURNING id",
        call_id,
        "RE" + secrets.token_hex(16),
        object_store,
        upload_store,
    )


async def _retry(
    pool: Any,
    stores: StoreRegistry,
    tenant: str,
    where: Any,
    settings: Settings,
    row: Any,
    tmp_path: Path,
) -> tuple[str, Received]:
    """An intake attempt of ``row`` (a pending recording of ``tenant``) storing a wav in
    ``where`` as the job does, each step in a transaction of its own; its state and what it
    received."""

    @asynccontextmanager
    async def transaction() -> AsyncIterator[Any]:
        with tenancy.as_tenant(tenant):
            async with pool.acquire() as conn, conn.transaction():
                yield conn

    body = b"RIFF" + secrets.token_bytes(4000)
    path = tmp_path / "got.wav"
    path.write_bytes(body)
    got = Received(
        where.key(recording_key(row["id"], "wav")),
        path,
        len(body),
        hashlib.sha256(body).hexdigest(),
        "audio/wav",
    )
    state = await store_received(
        transaction,
        stores,
        tenant,
        where,
        settings,
        row,
        "RE-retry",
        got,
        3600,
        RetentionSource.TENANT,
    )
    return state, got


async def _upload_left_in_the_shared_store(
    db: Conn, tenants: Tenants, caller: str, tmp_path: Path
) -> Any:
    """Tenant b's pending recording whose earlier attempt uploaded it to the shared bucket (b's
    store then, under ``tenants/tenant-b/``), named there by the row, and never committed; b's
    storage has since moved to its own bucket. Returns the row (with ``left``: that key)."""
    await tenancy.set_tenant(db, "tenant-b")
    call_id = await _consented_call(db, caller, "+842873002222")
    row = await _pending_recording(db, call_id, SHARED)
    left = f"tenants/tenant-b/recordings/{row['id']}.wav"
    await asyncio.to_thread(_put, tenants.moto, tenants.shared, left)
    assert left in await keys(tenants.moto, tenants.shared)
    return {**dict(row), "left": left}


@pytest.mark.parametrize("who", ["the retry", "erasure"])
async def test_a_recording_upload_left_in_the_store_a_tenant_moved_from_is_deleted_there(
    who: str,
    db: Conn,
    storage_settings: Settings,
    tenants: Tenants,
    service_url: str,
    tmp_path: Path,
) -> None:
    """An intake attempt uploaded tenant b's recording to the shared bucket (b's store then) and
    never committed; b's storage then moved to its own bucket. The retry, storing it in b's
    bucket, deletes the earlier upload where the row says it went; so does an erasure of the
    call before any retry: no copy of the caller's voice stays where no row names it."""
    caller = "+84905550078"
    row = await _upload_left_in_the_shared_store(db, tenants, caller, tmp_path)
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)

    try:
        if who == "the retry":
            where = await stores.for_tenant("tenant-b")
            state, got = await _retry(
                pool, stores, "tenant-b", where, storage_settings, row, tmp_path
            )
            assert state == "stored"
            stored = await db.fetchrow(
                "SELECT object_store, upload_store FROM recordings WHERE id = $1", row["id"]
            )
            assert dict(stored) == {"object_store": where.ref, "upload_store": where.ref}
            assert got.key in await keys(tenants.own.url, tenants.own_bucket)
        else:
            erase = await dsar.create(db, VAULT, kind="erase", phone=caller, actor="test")
            assert await dsar.run(db, VAULT, stores, erase, tmp_path, retry_s=1) == "completed"
        assert row["left"] not in await keys(tenants.moto, tenants.shared)
    finally:
        await stores.close()
        await pool.close()


class _Media:
    """One recording at the platform, downloaded as the Twilio media API streams it (through
    the job's opener, so it is sealed as it arrives), deleted on request."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.deleted = False

    async def source(self, tenant: str, account: str | None) -> _Media:
        return self

    async def download(
        self, ref: str, dest: Path, fmt: str = "wav", *, opener: Any = None
    ) -> Downloaded:
        out = dest.open("wb") if opener is None else await opener(dest)
        try:
            out.write(self.body)
        finally:
            out.close()
        return Downloaded(dest, len(self.body), hashlib.sha256(self.body).hexdigest(), "audio/wav")

    async def delete(self, ref: str) -> None:
        self.deleted = True


async def test_an_attempt_that_lost_its_lease_leaves_no_upload_in_the_store_the_tenant_left(
    db: Conn,
    storage_settings: Settings,
    tenants: Tenants,
    service_url: str,
) -> None:
    """Attempt A of tenant b's intake job names the shared bucket (b's store then) and starts
    its PUT; the PUT is slow, A's lease runs out, b's storage moves to its own bucket, and
    attempt B (the job claimed again) names b's bucket (deleting, in the shared one, what A has
    not finished writing yet), stores the recording there and commits. A's PUT then lands in
    the shared bucket; A cannot commit (lease lost) and, the row being ``stored``, takes
    nothing back. That copy of the caller's voice must not stay where no row names it."""
    own = await db.fetchrow("SELECT * FROM tenant_storage WHERE tenant_id = 'tenant-b'")
    await db.execute("DELETE FROM tenant_storage WHERE tenant_id = 'tenant-b'")  # b: shared
    await tenancy.set_tenant(db, "tenant-b")
    call_sid, sid = "CA" + secrets.token_hex(16), "RE" + secrets.token_hex(16)
    caller = "+84905550079"
    await _consented_call(db, caller, "+842873002222", call_sid)
    await jobs.enqueue(
        db, "recording", {"platform": "twilio", "recording_sid": sid, "call_sid": call_sid}
    )
    await tenancy.set_tenant(db, tenancy.ALL)
    (first,) = await jobs.claim(db, 1, 30, "replica-a")

    pool = await create_pool(service_url, min_size=1, max_size=4)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)
    stores._ttl_s = 0  # every lookup reads tenant_storage again (no time passes in a test)
    media = _Media(b"RIFF" + secrets.token_bytes(4000))
    deps = IntakeDeps(storage_settings, stores, {"twilio": media})
    shared_put = stores.shared.put_file
    landed: list[str] = []

    async def slow_put(key: str, path: Path, **kw: Any) -> Any:
        if not landed:  # attempt A's PUT, still on its way while all this happens:
            landed.append(key)
            # b's storage moves to its own bucket
            await db.execute(
                "INSERT INTO tenant_storage (tenant_id, bucket, endpoint_url, region, sse, "
                "kms_key_id, credentials) VALUES ('tenant-b', $1, $2, $3, $4, $5, $6)",
                *(own[c] for c in ("bucket", "endpoint_url", "region", "sse", "kms_key_id")),
                own["credentials"],
            )
            # A's lease runs out; another replica claims the job and runs it to the end
            await db.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
            (second,) = await jobs.claim(db, 1, 30, "replica-b")
            await intake_job.run(JobContext(second, pool), deps)
        return await shared_put(key, path, **kw)

    stores.shared.put_file = slow_put  # type: ignore[method-assign]
    try:
        with tenancy.as_tenant("tenant-b"), pytest.raises(LeaseLost):
            await intake_job.run(JobContext(first, pool), deps)
        row = await db.fetchrow(
            "SELECT id, state, object_store, upload_store FROM recordings WHERE external_id = $1",
            sid,
        )
        mine = f"s3://{tenants.own_bucket}"
        assert dict(row) | {"id": None} == {
            "id": None,
            "state": "stored",
            "object_store": mine,
            "upload_store": mine,
        }
        assert landed == [f"tenants/tenant-b/recordings/{row['id']}.wav"]
        # the row names b's bucket alone: nothing of this recording may be in the shared one
        assert landed[0] not in await keys(tenants.moto, tenants.shared)
    finally:
        await stores.close()
        await pool.close()


async def test_moving_a_tenant_off_a_broken_bucket_lets_its_pending_recordings_be_stored(
    db: Conn,
    storage_settings: Settings,
    tenants: Tenants,
    service_url: str,
    tmp_path: Path,
) -> None:
    """Tenant b's own bucket is down: an intake attempt named it (``upload_store``) and its PUT
    failed. The operator moves b to the shared store (``tenant apply`` without a bucket) so its
    recordings are kept again. The retry stores the consented recording in the shared store;
    it must not wait, until it is dead-lettered, for the bucket b has left to answer a delete
    of an upload that never landed there. (Before upload_store, the retry stored it.)"""
    await tenancy.set_tenant(db, "tenant-b")
    caller = "+84905550080"
    call_id = await _consented_call(db, caller, "+842873002222")
    row = await _pending_recording(db, call_id, f"s3://{tenants.own_bucket}")
    await tenants.own.stop()  # b's bucket: down
    await db.execute("DELETE FROM tenant_storage WHERE tenant_id = 'tenant-b'")
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)

    try:
        where = await stores.for_tenant("tenant-b")
        assert where.ref == SHARED
        state, got = await _retry(pool, stores, "tenant-b", where, storage_settings, row, tmp_path)
        assert state == "stored"
        assert got.key in await keys(tenants.moto, tenants.shared)
        # b's bucket stays named for what the earlier attempt may have left there: the purge
        # deletes it (test_the_purge_deletes_what_an_upload_left_in_the_store_its_tenant_...)
        after = await db.fetchrow(
            "SELECT state, object_store, upload_store FROM recordings WHERE id = $1", row["id"]
        )
        assert dict(after) == {
            "state": "stored",
            "object_store": SHARED,
            "upload_store": f"s3://{tenants.own_bucket}",
        }
    finally:
        await stores.close()
        await pool.close()
        await tenants.own.start()  # (for the fixture's stop)


async def test_the_purge_deletes_what_an_upload_left_in_the_store_its_tenant_moved_from(
    db: Conn, storage_settings: Settings, tenants: Tenants, service_url: str
) -> None:
    """A recording of tenant b committed to b's own bucket while its row still names the shared
    one for an earlier attempt's upload (that attempt's store could not be reached to delete
    in when the next one ran). The purge deletes what the earlier attempt left in the shared
    store, keeps the committed recording, and stops naming the store; a second pass has
    nothing to do."""
    await tenancy.set_tenant(db, "tenant-b")
    caller = "+84905550081"
    call_id = await _consented_call(db, caller, "+842873002222")
    mine = f"s3://{tenants.own_bucket}"
    rid = await _stored_recording(db, call_id, mine, SHARED)
    kept = recording_key(rid, "wav")
    await db.execute("UPDATE recordings SET object_key = $2 WHERE id = $1", rid, kept)
    left = "tenants/tenant-b/" + recording_key(rid, "wav")
    await asyncio.to_thread(_put, tenants.moto, tenants.shared, left)
    await asyncio.to_thread(_put, tenants.own.url, tenants.own_bucket, kept)
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)
    try:
        report = await purge_once(pool, stores)
        assert (report.left_recording_uploads, report.purged, report.batch_errors) == (1, 0, 0)
        assert left not in await keys(tenants.moto, tenants.shared)
        assert await keys(tenants.own.url, tenants.own_bucket) == {kept}
        row = await db.fetchrow("SELECT state, upload_store FROM recordings WHERE id = $1", rid)
        assert dict(row) == {"state": "stored", "upload_store": None}
        await tenancy.set_tenant(db, tenancy.ALL)
        audited = await db.fetchval(
            "SELECT details FROM audit_log WHERE action = 'recording_left_uploads_removed'"
        )
        assert audited == {"count": 1, "recordings": [str(rid)]}
        assert (await purge_once(pool, stores)).left_recording_uploads == 0
    finally:
        await stores.close()
        await pool.close()


async def test_a_store_down_keeps_the_left_upload_named_for_the_next_purge(
    db: Conn, storage_settings: Settings, tenants: Tenants, service_url: str
) -> None:
    """The leftover is in b's own bucket (the recording committed to the shared one) and that
    bucket is down during a purge: the pass shows the store's refusal and the row keeps naming
    the bucket; once it is back, the next pass deletes the leftover."""
    await tenancy.set_tenant(db, "tenant-b")
    caller = "+84905550082"
    call_id = await _consented_call(db, caller, "+842873002222")
    mine = f"s3://{tenants.own_bucket}"
    rid = await _stored_recording(db, call_id, SHARED, mine)
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)
    await tenants.own.stop()
    try:
        report = await purge_once(pool, stores)
        assert report.left_recording_uploads == 0 and list(report.failed) == [str(rid)]
        assert await db.fetchval("SELECT upload_store FROM recordings WHERE id = $1", rid) == mine
    finally:
        await tenants.own.start()
    try:
        await asyncio.to_thread(tenants.own.create_bucket, tenants.own_bucket)
        left = recording_key(rid, "wav")
        await asyncio.to_thread(_put, tenants.own.url, tenants.own_bucket, left)
        report = await purge_once(pool, stores)
        assert (report.left_recording_uploads, report.failed) == (1, {})
        assert await keys(tenants.own.url, tenants.own_bucket) == set()
        assert await db.fetchval("SELECT upload_store FROM recordings WHERE id = $1", rid) is None
    finally:
        await stores.close()
        await pool.close()


async def test_a_retry_deletes_an_earlier_upload_under_another_format(
    db: Conn, storage_settings: Settings, tenants: Tenants, service_url: str, tmp_path: Path
) -> None:
    """An earlier attempt uploaded tenant a's recording as mp3 (transcoding on then) and never
    committed; the operator has since turned transcoding off. The retry stores the wav and
    deletes the mp3: once committed, the purge deletes only the wav's key, and the mp3 would
    have stayed after the recording's retention ended."""
    await tenancy.set_tenant(db, "tenant-a")
    caller = "+84905550083"
    call_id = await _consented_call(db, caller, "+842873001111")
    row = await _pending_recording(db, call_id, SHARED)
    # the earlier attempt's data key (committed before its upload) and its mp3
    await recording_keys.issue_key(
        db,
        recording_keys.vault_of(storage_settings.secret_key, storage_settings.previous_secret_key),
        row["id"],
    )
    mp3 = "tenants/tenant-a/" + recording_key(row["id"], "mp3")
    await asyncio.to_thread(_put, tenants.moto, tenants.shared, mp3)
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)

    try:
        where = await stores.for_tenant("tenant-a")
        state, got = await _retry(pool, stores, "tenant-a", where, storage_settings, row, tmp_path)
        assert state == "stored"
        mine = {k for k in await keys(tenants.moto, tenants.shared) if str(row["id"]) in k}
        assert mine == {got.key}
    finally:
        await stores.close()
        await pool.close()


async def test_a_recording_in_a_bucket_its_tenant_moved_away_from_is_purged_there(
    db: Conn, database_url: str, tenants: Tenants, tmp_path: Path
) -> None:
    """Tenant b's recording is in b's own bucket, on its own S3 endpoint with its own
    credentials. The operator moves b to the shared store (``tenant apply`` with no storage
    table for b, as when a BPO's client changes provider). At the end of its retention
    ``callvault purge`` deletes it there: the bucket is reached as it was configured, not with
    the shared store's endpoint (which has no such bucket, and the recording would stay)."""
    await tenancy.set_tenant(db, "tenant-b")
    call_id = await _consented_call(db, "+84905550084", "+842873002222")
    rid = await _stored_recording(
        db, call_id, f"s3://{tenants.own_bucket}", f"s3://{tenants.own_bucket}"
    )
    key = recording_key(rid, "wav")
    await db.execute(
        "UPDATE recordings SET object_key = $2, retain_until = now() - interval '1 second' "
        "WHERE id = $1",
        rid,
        key,
    )
    await asyncio.to_thread(_put, tenants.own.url, tenants.own_bucket, key)
    toml = (
        '[tenants.tenant-b]\nname = "B"\n[tenants.tenant-b.twilio]\n'
        f'account_sid = "{SID_B}"\nauth_token_env = "TEST_TWILIO_TOKEN_B"\n'
        '[tenants.tenant-b.numbers."+842873002222"]\n'
    )
    applied = await asyncio.to_thread(
        run_cli, database_url, "tenant", "apply", write_tenants(tmp_path, toml)
    )
    assert applied.returncode == 0, applied.stderr
    await tenancy.set_tenant(db, tenancy.ALL)
    assert await db.fetchval("SELECT count(*) FROM tenant_storage") == 0
    left = await db.fetchrow(
        "SELECT bucket, endpoint_url, credentials FROM tenant_storage_former "
        "WHERE tenant_id = 'tenant-b'"
    )
    assert dict(left) == {
        "bucket": tenants.own_bucket,
        "endpoint_url": tenants.own.url,
        "credentials": {
            "access_key_id_env": "TEST_B_S3_KEY_ID",
            "secret_access_key_env": "TEST_B_S3_SECRET",
        },
    }

    env = {
        "CALLVAULT_S3_BUCKET": tenants.shared,
        "CALLVAULT_S3_ENDPOINT_URL": tenants.moto,
        "CALLVAULT_S3_REGION": "us-east-1",
        "CALLVAULT_HOME": str(tmp_path / "home"),
    }
    done = await asyncio.to_thread(run_cli, database_url, "purge", env_overrides=env)
    assert done.returncode == 0, done.stderr
    assert "purged 1, kept by holds 0, refused by the store 0" in done.stdout
    assert await keys(tenants.own.url, tenants.own_bucket) == set()
    state = await db.fetchval("SELECT state FROM recordings WHERE id = $1", rid)
    assert state == "purged"


async def test_the_buckets_a_tenant_left_are_remembered_until_it_is_deleted(db: Conn) -> None:
    """Migration 0032's trigger: a change of credentials (same bucket) leaves nothing behind; a
    move to another bucket, or to the shared store, remembers the one left with how it was
    reached; deleting the tenant takes them with it."""
    await db.execute("INSERT INTO tenants (id, name) VALUES ('tenant-m', 'M')")
    await db.execute(
        "INSERT INTO tenant_storage (tenant_id, bucket, endpoint_url) "
        "VALUES ('tenant-m', 'first', 'https://s3.one.example')"
    )

    async def former() -> list[tuple[str, str | None]]:
        rows = await db.fetch(
            "SELECT bucket, endpoint_url FROM tenant_storage_former ORDER BY bucket"
        )
        return [(r["bucket"], r["endpoint_url"]) for r in rows]

    await db.execute(
        'UPDATE tenant_storage SET credentials = \'{"access_key_id_env": "K"}\' '
        "WHERE tenant_id = 'tenant-m'"
    )
    assert await former() == []
    await db.execute(
        "UPDATE tenant_storage SET bucket = 'second', endpoint_url = 'https://s3.two.example' "
        "WHERE tenant_id = 'tenant-m'"
    )
    assert await former() == [("first", "https://s3.one.example")]
    await db.execute("DELETE FROM tenant_storage WHERE tenant_id = 'tenant-m'")
    assert await former() == [
        ("first", "https://s3.one.example"),
        ("second", "https://s3.two.example"),
    ]
    await db.execute("DELETE FROM tenants WHERE id = 'tenant-m'")
    assert await former() == []
    # a tenant deleted with its storage in place: nothing to remember, and no error
    await db.execute("INSERT INTO tenants (id, name) VALUES ('tenant-n', 'N')")
    await db.execute("INSERT INTO tenant_storage (tenant_id, bucket) VALUES ('tenant-n', 'nb')")
    await db.execute("DELETE FROM tenants WHERE id = 'tenant-n'")
    assert await former() == []


async def test_an_announce_that_waited_for_an_erasure_reaches_no_store(
    db: Conn, storage_settings: Settings, tenants: Tenants, service_url: str
) -> None:
    """An attempt announces its upload while an erasure holds the recording's row: its UPDATE
    waits, then finds the row erased and names nothing, while the statement's snapshot still
    saw the row pending and unnamed. Nothing was uploaded anywhere before, so the attempt must
    not go deleting in some store (it used to take that NULL for an earlier attempt's store);
    the commit then finds the row erased and discards its own upload."""
    await tenancy.set_tenant(db, "tenant-a")
    call_id = await _consented_call(db, "+84905550085", "+842873001111")
    rid = await db.fetchval(
        "INSERT INTO recordings (call_id, platform, external_id) VALUES ($1, 'twilio', $2) "
        "RETURNING id",
        call_id,
        "RE" + secrets.token_hex(16),
    )
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(storage_settings, reader=pool.acquire)
    reached: list[Any] = []
    for_object = stores.for_object

    async def spy(tenant: str, ref: str | None, conn: Any = None) -> Any:
        reached.append(ref)
        return await for_object(tenant, ref, conn)

    stores.for_object = spy  # type: ignore[method-assign]

    @asynccontextmanager
    async def transaction() -> AsyncIterator[Any]:
        with tenancy.as_tenant("tenant-a"):
            async with pool.acquire() as conn, conn.transaction():
                yield conn

    erasure = db.transaction()
    await erasure.start()
    committed = False
    try:
        await db.execute("SELECT 1 FROM recordings WHERE id = $1 FOR UPDATE", rid)
        where = await stores.for_tenant("tenant-a")
        announcing = asyncio.create_task(
            intake_job._announce_upload(transaction, stores, "tenant-a", where, rid)
        )

        async def waiting() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE '%WITH named AS%'"
                )
            )

        await eventually(waiting, what="the announce waiting for the erasure's row lock")
        await db.execute("UPDATE recordings SET state = 'erased' WHERE id = $1", rid)
        await erasure.commit()
        committed = True
        await announcing
        assert reached == []
        row = await db.fetchrow("SELECT state, upload_store FROM recordings WHERE id = $1", rid)
        assert dict(row) == {"state": "erased", "upload_store": None}
    finally:
        if not committed:
            await erasure.rollback()
        await stores.close()
        await pool.close()
