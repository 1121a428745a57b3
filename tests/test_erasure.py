"""Erasure reaches everything of the subject, whenever it arrives: an upload still in flight, a
recording callback that comes after the request, access bundles (and their expiry), a hold placed
afterwards, and a key rotation running at the same moment. Real PostgreSQL, moto's S3 server (and
the local store), the fake Twilio media API; the clock is the database's."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from retention import dsar, holds
from retention.purge import PurgeReport, purge_once
from service import ledger
from service.config import Settings, load_settings
from service.db import queries, tenancy
from service.db.pool import connect, create_pool
from service.errors import NotFound, StorageError
from service.personal.numbers import PhoneVault
from service.personal.rekey import rotate
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage.s3 import S3Store
from tests.conftest import SECRET_KEY, Service, make_bucket
from tests.intake_helpers import get_object, objects, send_recording, settle
from tests.seed import seed_recording
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

VAULT = PhoneVault(SECRET_KEY)
CALLER = "+84901234678"
HOTLINE = "+842873001234"
Conn = asyncpg.Connection


async def _status(db: Conn, request_id: uuid.UUID) -> str:
    status: str = await db.fetchval("SELECT status FROM dsar_requests WHERE id = $1", request_id)
    return status


async def _types(db: Conn, call_sid: str) -> list[Any]:
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", call_sid)
    return list(await ledger.events_of(db, call_id))


async def _left_in_store(settings: Settings, moto_url: str) -> list[str]:
    """Every object (every version) the service's store still holds."""
    if settings.s3_bucket:
        return [o["key"] for o in await objects(moto_url, settings.s3_bucket)]
    root = settings.home / "objects"
    return (
        [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()] if root.exists() else []
    )


@pytest.fixture(params=["s3-versioned", "local"])
def erasure_settings(request: Any, intake_settings: Settings, moto_url: str) -> Settings:
    if request.param == "local":
        return replace(intake_settings, s3_bucket=None, s3_endpoint_url=None)
    return replace(intake_settings, s3_bucket=make_bucket(moto_url, versioned=True))


@pytest.fixture
async def service(erasure_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(erasure_settings)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.mark.parametrize("kind", ["erase", "withdraw"])
async def test_an_upload_in_flight_when_the_number_is_erased_never_stays(
    service: Service,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    moto_url: str,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    caplog.set_level("INFO")
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert trace.recording_started
    rec_sid, stall = new_recording_sid(), asyncio.Event()
    twilio_media.add_stalling(rec_sid, wav_bytes(2), stall)
    await send_recording(twilio, trace.call_sid, rec_sid)

    async def downloading() -> bool:
        state = await db.fetchval("SELECT state FROM recordings WHERE external_id = $1", rec_sid)
        return state == "pending" and twilio_media.gets[rec_sid] == 1

    await eventually(downloading, what="the download is in flight")
    request_id = await dsar.create(db, VAULT, kind=kind, phone=CALLER, actor="test")

    async def erased_but_waiting() -> bool:
        return await _status(db, request_id) == "in_progress"

    # the erasure is done, but the request stays open while the intake runs
    await eventually(erased_but_waiting, what="the request waits for the intake")
    assert await db.fetchval("SELECT state FROM recordings") == "erased"
    result = await db.fetchval("SELECT result FROM dsar_requests WHERE id = $1", request_id)
    assert result["intake_running"] == 1

    stall.set()  # the download finishes and the upload lands after the erasure

    async def completed() -> bool:
        return await _status(db, request_id) == "completed"

    await eventually(completed, what="the request completes once the intake has ended")
    await settle(db)
    assert await _left_in_store(service.settings, moto_url) == []
    rec = await db.fetchrow("SELECT state, object_key, platform_deleted_at FROM recordings")
    assert rec["state"] == "erased" and rec["object_key"] is None
    assert rec["platform_deleted_at"] is not None
    # nor a data key: nothing was sealed for an erased recording (issue 17)
    assert await db.fetchval("SELECT count(*) FROM recording_keys") == 0
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    events = await _types(db, trace.call_sid)
    types = [e.type for e in events]
    assert types.index("erased") < types.index("recording_discarded")
    assert types[-2:] == ["recording_discarded", "platform_copy_deleted"]
    discarded = next(e for e in events if e.type == "recording_discarded")
    assert discarded.details["reason"] == "erased while in flight: upload deleted"
    assert "recording_stored" not in types
    assert "recording stored" not in caplog.text
    assert (await ledger.verify(db)).ok


@pytest.mark.parametrize("kind", ["erase", "withdraw"])
async def test_a_recording_arriving_after_the_erasure_is_discarded_at_the_platform(
    service: Service,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: Conn,
    moto_url: str,
    kind: str,
) -> None:
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert trace.recording_started
    request_id = await dsar.create(db, VAULT, kind=kind, phone=CALLER, actor="test")
    await settle(db)
    assert await _status(db, request_id) == "completed"
    call = await db.fetchrow("SELECT erased_at, erased_by, caller_hash FROM calls")
    assert call["erased_at"] is not None and call["erased_by"] == request_id
    assert call["caller_hash"] is None

    # the call's recording callback comes after the request completed
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1))
    status, _ = await send_recording(twilio, trace.call_sid, rec_sid)
    assert status == 204
    await settle(db)
    assert twilio_media.gets[rec_sid] == 0  # never downloaded
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    assert await _left_in_store(service.settings, moto_url) == []
    assert await db.fetchval("SELECT count(*) FROM recordings") == 0
    events = await _types(db, trace.call_sid)
    assert [e.type for e in events][-2:] == ["recording_discarded", "platform_copy_deleted"]
    assert events[-2].details["reason"] == "call erased: never stored"


async def test_a_recording_whose_intake_gave_up_is_discarded_at_the_platform_on_erasure(
    service: Service, twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn
) -> None:
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    rec_sid = new_recording_sid()
    twilio_media.add(rec_sid, wav_bytes(1))
    # its intake was dead-lettered earlier (the platform's copy kept for a person to decide)
    await db.execute(
        "INSERT INTO jobs (kind, payload, dedupe_key, state, attempts, max_attempts, "
        "finished_at, last_error) VALUES ('recording', $1, $2, 'dead', 12, 12, now(), 'gave up')",
        {"platform": "twilio", "recording_sid": rec_sid, "call_sid": trace.call_sid},
        f"recording:twilio:{rec_sid}",
    )
    request_id = await dsar.create(db, VAULT, kind="erase", phone=CALLER, actor="test")
    await settle(db)
    assert await _status(db, request_id) == "completed"
    assert twilio_media.gets[rec_sid] == 0
    assert twilio_media.deletes[rec_sid] == 1 and rec_sid not in twilio_media.recordings
    assert await db.fetchval("SELECT state FROM jobs WHERE kind = 'recording'") == "done"
    events = await _types(db, trace.call_sid)
    assert [e.type for e in events][-2:] == ["recording_discarded", "platform_copy_deleted"]


# -- access bundles -----------------------------------------------------------------------------


@pytest.fixture
async def store(moto_url: str) -> AsyncIterator[S3Store]:
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)
    s = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    yield s
    await s.close()


async def _bundles_in(store: S3Store, moto_url: str, request_id: uuid.UUID) -> list[str]:
    """Every object version left under the request's bundle keys (every run's)."""
    return [
        o["key"]
        for o in await objects(moto_url, store.bucket)
        if o["key"].startswith(f"dsar/{request_id}")
    ]


async def _access(db: Conn, store: S3Store, tmp_path: Path, phone: str, ttl_s: int) -> uuid.UUID:
    request_id = await dsar.create(db, VAULT, kind="access", phone=phone, actor="test")
    status = await dsar.run(db, VAULT, store, request_id, tmp_path, retry_s=1, bundle_ttl_s=ttl_s)
    assert status == "completed"
    return request_id


async def test_access_bundles_expire_by_the_database_clock_and_the_purge_removes_them(
    db: Conn, database_url: str, store: S3Store, tmp_path: Path
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    old = await _access(db, store, tmp_path, CALLER, ttl_s=7 * 86400)
    young = await _access(db, store, tmp_path, CALLER, ttl_s=7 * 86400)
    gap = await db.fetchval(
        "SELECT extract(epoch FROM bundle_expires_at - completed_at) FROM dsar_requests "
        "WHERE id = $1",
        old,
    )
    assert gap == pytest.approx(7 * 86400, abs=1)
    old_key = await dsar.bundle_for_link(db, old)
    young_key = await dsar.bundle_for_link(db, young)
    assert old_key.startswith(f"dsar/{old}/") and old_key.endswith(".zip")
    # a week passes for the old bundle, by the database's clock
    await db.execute(
        "UPDATE dsar_requests SET bundle_expires_at = now() - interval '1 second' WHERE id = $1",
        old,
    )
    with pytest.raises(dsar.BundleGone) as refused:
        await dsar.bundle_for_link(db, old)
    assert (refused.value.status, refused.value.code) == (410, "bundle_expired")

    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        report = await purge_once(pool, store)
        assert (report.bundles, report.bundles_failed) == (1, {})
        assert (await purge_once(pool, store)).bundles == 0
    finally:
        await pool.close()
    assert await store.head(old_key) is None
    assert await store.head(young_key) is not None
    row = await dsar.get(db, old)
    assert row["bundle_key"] is None and row["bundle_removed_reason"] == "expired"
    assert dsar.request_json(row)["bundle_removed"] == "expired"
    with pytest.raises(dsar.BundleGone) as still:
        await dsar.bundle_for_link(db, old)
    assert still.value.code == "bundle_expired"
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'dsar_bundles_expired'")


async def test_the_bundle_expiry_also_removes_the_upload_of_a_run_that_never_committed(
    db: Conn, database_url: str, store: S3Store, moto_url: str, tmp_path: Path
) -> None:
    """A second run of a completed request crashed between its upload and its commit: its key
    stays listed (bundle_uploads), and the bundle's expiry takes it with the named bundle."""
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    request_id = await _access(db, store, tmp_path, CALLER, ttl_s=7 * 86400)
    crashed = dsar.bundle_key_of(request_id, "crashed")
    leftover = tmp_path / "leftover.zip"
    leftover.write_bytes(b"a bundle whose run died before its commit")
    await store.put_file(
        crashed, leftover, sha256="0" * 64, content_type="application/zip", metadata={}
    )
    await db.execute(
        "UPDATE dsar_requests SET bundle_uploads = jsonb_build_object($2::text, 'shared'), "
        "bundle_expires_at = now() - interval '1 second' WHERE id = $1",
        request_id,
        crashed,
    )
    assert len(await _bundles_in(store, moto_url, request_id)) == 2

    report = await _purge(database_url, store)
    assert (report.bundles, report.bundles_failed) == (1, {})
    assert await _bundles_in(store, moto_url, request_id) == []
    row = await dsar.get(db, request_id)
    assert row["bundle_key"] is None and row["bundle_uploads"] == {}


async def test_an_access_request_still_open_when_the_number_is_erased_hands_out_nothing(
    db: Conn, store: S3Store, moto_url: str, tmp_path: Path
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    access = await dsar.create(db, VAULT, kind="access", phone=CALLER, actor="test")
    erase = await dsar.create(db, VAULT, kind="erase", phone=CALLER, actor="test")
    assert await dsar.run(db, VAULT, store, erase, tmp_path, retry_s=1) == "completed"
    # the access job comes after: the request was closed by the erasure, and builds nothing
    assert await dsar.run(db, VAULT, store, access, tmp_path, retry_s=1) == "completed"
    row = await dsar.get(db, access)
    assert row["phone_enc"] is None and row["phone_hash"] is None and row["bundle_key"] is None
    assert row["result"]["superseded_by_erasure"] == str(erase)
    assert await _bundles_in(store, moto_url, access) == []
    with pytest.raises(NotFound):
        await dsar.bundle_for_link(db, access)


class EraseAfterUpload:
    """A store that, right after the access bundle lands, lets an erasure of the number run to
    completion: the erasure commits between the bundle's upload and the access request's
    commit."""

    def __init__(self, store: S3Store, erase: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        self._erase = erase

    async def put_file(self, key: str, path: Path, **kwargs: Any) -> None:
        await self._store.put_file(key, path, **kwargs)
        if key.startswith("dsar/"):
            await self._erase()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_bundle_uploaded_while_the_number_is_erased_is_deleted_at_its_commit(
    db: Conn, database_url: str, store: S3Store, moto_url: str, tmp_path: Path
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    access = await dsar.create(db, VAULT, kind="access", phone=CALLER, actor="test")
    async with _eraser(database_url, store, tmp_path) as erase:
        racing = EraseAfterUpload(store, erase)
        status = await dsar.run(db, VAULT, racing, access, tmp_path, retry_s=1)  # type: ignore[arg-type]
    assert status == "completed"
    assert await _bundles_in(store, moto_url, access) == []
    row = await dsar.get(db, access)
    assert row["bundle_key"] is None and row["phone_enc"] is None
    assert "superseded_by_erasure" in row["result"]
    types = [r["type"] for r in await db.fetch("SELECT type FROM ledger_events")]
    assert "subject_access" not in types and "erased" in types


class PausedAfterUpload:
    """A store that holds its access run between the bundle's upload and the run's commit
    until the test releases it, and remembers what that run uploaded."""

    def __init__(self, store: S3Store) -> None:
        self._store = store
        self.uploaded = asyncio.Event()
        self.release = asyncio.Event()
        self.key = ""
        self.sha256 = ""

    async def put_file(self, key: str, path: Path, **kwargs: Any) -> Any:
        proof = await self._store.put_file(key, path, **kwargs)
        if key.startswith("dsar/"):
            self.key, self.sha256 = key, kwargs["sha256"]
            self.uploaded.set()
            await asyncio.wait_for(self.release.wait(), 60)
        return proof

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.mark.parametrize("first_to_commit", ["first_to_upload", "second_to_upload"])
async def test_two_runs_of_one_access_request_leave_the_one_bundle_its_completion_names(
    db: Conn,
    database_url: str,
    store: S3Store,
    moto_url: str,
    tmp_path: Path,
    first_to_commit: str,
) -> None:
    """Two runners of one request (two replicas, a rerun after a lost lease) both upload a
    bundle, then commit one after the other: one completion, on the bytes its run uploaded,
    and the other run's upload gone (on a versioned bucket: no older version left either)."""
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    request_id = await dsar.create(db, VAULT, kind="access", phone=CALLER, actor="test")
    other = await connect(database_url)
    await tenancy.set_tenant(other, tenancy.DEFAULT)
    runs = [PausedAfterUpload(store), PausedAfterUpload(store)]
    try:
        tasks = []
        for conn, run in zip((db, other), runs, strict=True):
            racing: Any = run
            tasks.append(
                asyncio.create_task(dsar.run(conn, VAULT, racing, request_id, tmp_path, retry_s=1))
            )
            await asyncio.wait_for(run.uploaded.wait(), 60)  # both uploads are in the store
        order = [0, 1] if first_to_commit == "first_to_upload" else [1, 0]
        winner, loser = runs[order[0]], runs[order[1]]
        winner.release.set()
        assert await tasks[order[0]] == "completed"
        # the completion deleted the other upload, and keeps its key listed until its run
        # commits (erasure and offboarding still find it should that run upload again)
        row = await dsar.get(db, request_id)
        assert row["bundle_uploads"] == {loser.key: "shared"}
        assert await store.head(loser.key) is None
        loser.release.set()
        assert await tasks[order[1]] == "completed"
    finally:
        await other.close()
    row = await dsar.get(db, request_id)
    assert row["bundle_key"] == winner.key
    got = await get_object(moto_url, store.bucket, row["bundle_key"])
    assert hashlib.sha256(got).hexdigest() == winner.sha256  # the winner's bytes, not replaced
    assert await _bundles_in(store, moto_url, request_id) == [winner.key]  # nothing else left
    assert row["result"]["bundle_sha256"] == winner.sha256
    assert row["result"]["bundle_size"] == len(got)
    assert row["bundle_uploads"] == {}
    completions = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'dsar_completed' AND target_id = $1",
        str(request_id),
    )
    assert completions == 1


def test_bundle_ttl_setting_defaults_to_seven_days_and_parses_durations() -> None:
    assert load_settings({}).bundle_ttl_s == 7 * 86400
    assert load_settings({"CALLVAULT_BUNDLE_TTL": "2d"}).bundle_ttl_s == 2 * 86400


# -- holds after an erasure -------------------------------------------------------------------


async def test_a_hold_placed_after_an_erasure_says_what_was_erased_and_when(
    db: Conn, store: S3Store, tmp_path: Path
) -> None:
    recs = [
        await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
        for _ in range(2)
    ]
    other = await seed_recording(db, store, VAULT, tmp_path, caller="+84900000009")
    request_id = await dsar.create(db, VAULT, kind="erase", phone=CALLER, actor="test")
    assert await dsar.run(db, VAULT, store, request_id, tmp_path, retry_s=1) == "completed"

    on_phone = await holds.place(db, VAULT, "test", phone=CALLER, reason="court order")
    assert on_phone.held_recordings == [] and on_phone.already_gone == []
    erased = on_phone.as_json()["already_erased"]
    assert sorted(e["call_id"] for e in erased) == sorted(str(r["call_id"]) for r in recs)
    for entry in erased:
        rec = next(r for r in recs if str(r["call_id"]) == entry["call_id"])
        assert entry["recording_ids"] == [str(rec["recording_id"])]
        assert entry["request_id"] == str(request_id)
        erased_at = await db.fetchval("SELECT erased_at FROM calls WHERE id = $1", rec["call_id"])
        assert entry["erased_at"] == erased_at.isoformat()

    on_call = await holds.place(db, VAULT, "test", call_id=recs[0]["call_id"], reason="dispute")
    assert [e["call_id"] for e in on_call.already_erased] == [str(recs[0]["call_id"])]
    # reported once, as erased, not also as purged; and not shown as "held"
    assert on_call.already_gone == [] and on_call.held_recordings == []
    (listed,) = await db.fetch(
        queries.load("service.qa")["recordings_of_calls"], [recs[0]["call_id"]]
    )
    assert listed["state"] == "erased" and listed["held"] is False
    # a number nobody erased: nothing to report
    untouched = await holds.place(db, VAULT, "test", phone="+84900000009", reason="x")
    assert untouched.already_erased == []
    assert untouched.held_recordings == [str(other["recording_id"])]


# -- key rotation racing an erasure -----------------------------------------------------------

NEW_KEY = "a-brand-new-secret-key-" + "n" * 30


class Interleaved:
    """A connection whose page reads run ``between`` right after they return, before the
    rotation writes anything: an erasure committed exactly between read and write."""

    def __init__(self, conn: Conn, between: Callable[[str], Awaitable[None]]) -> None:
        self._conn = conn
        self._between = between

    async def fetch(self, query: str, *args: Any) -> Any:
        rows = await self._conn.fetch(query, *args)
        if rows:
            await self._between(query)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_key_rotation_never_writes_an_erased_number_back(
    db: Conn, database_url: str, store: S3Store, tmp_path: Path
) -> None:
    old = VAULT
    on_call, on_hold, on_request = "+84911111111", "+84922222222", "+84933333333"
    for phone in (on_call, on_hold, on_request, "+84944444444"):
        await seed_recording(db, store, old, tmp_path, caller=phone, expired=False)
    for phone in (on_hold, on_request):
        placed = await holds.place(db, old, "test", phone=phone, reason="case closed")
        await holds.release(db, old, placed.id, "test")
    await _access(db, store, tmp_path, on_request, ttl_s=86400)

    rotating = PhoneVault(NEW_KEY, previous_secret_key=SECRET_KEY)
    pending = {"calls_page": on_call, "holds_page": on_hold, "requests_page": on_request}
    other = await connect(database_url)
    await tenancy.set_tenant(other, tenancy.DEFAULT)

    async def erase_between(query: str) -> None:
        # the erasure of one number commits after its table's page was read
        for name, phone in list(pending.items()):
            if f"FROM {_TABLE[name]}" in query:
                del pending[name]
                rid = await dsar.create(other, rotating, kind="erase", phone=phone, actor="test")
                await dsar.run(other, rotating, store, rid, tmp_path, retry_s=1)

    try:
        report = await rotate(Interleaved(db, erase_between), rotating)  # type: ignore[arg-type]
    finally:
        await other.close()
    assert pending == {}
    assert report.calls == 3  # the erased call is not counted: it was left alone
    # nothing of the erased numbers was written back, under either key
    new = PhoneVault(NEW_KEY)
    left = await db.fetch(
        "SELECT caller_enc AS enc, caller_hash AS hash FROM calls WHERE caller_enc IS NOT NULL"
        " UNION ALL SELECT phone_enc, phone_hash FROM holds WHERE phone_enc IS NOT NULL"
        " UNION ALL SELECT phone_enc, phone_hash FROM dsar_requests WHERE phone_enc IS NOT NULL"
    )
    erased = (on_call, on_hold, on_request)
    hashes = {h for p in erased for h in rotating.lookup_hashes(p)}
    assert left, "the other numbers are still there"
    for row in left:
        assert new.decrypt(row["enc"]) not in erased  # and all of it is under the new key
        assert row["hash"] not in hashes


_TABLE = {"calls_page": "calls", "holds_page": "holds", "requests_page": "dsar_requests"}


class _EraseThenRefuseOwnDelete:
    """A store through which an access run's bundle lands just after an erasure of the number
    commits, and whose delete (the run's of its own upload, at its commit) is refused."""

    def __init__(self, store: S3Store, erase: Callable[[], Awaitable[None]]) -> None:
        self._store, self._erase = store, erase

    async def put_file(self, key: str, path: Path, **kwargs: Any) -> Any:
        if key.startswith("dsar/"):
            await self._erase()  # after the run announced its key, before its upload
        return await self._store.put_file(key, path, **kwargs)

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        return {k: "SlowDown" for k in keys}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _CrashAfterUpload:
    def __init__(self, store: S3Store) -> None:
        self._store = store

    async def put_file(self, key: str, path: Path, **kwargs: Any) -> Any:
        await self._store.put_file(key, path, **kwargs)
        raise RuntimeError("the worker died between its upload and its commit")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def _purge(database_url: str, store: S3Store) -> PurgeReport:
    """One purge pass, as the scheduler runs it: on a pool of its own."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        return await purge_once(pool, store)
    finally:
        await pool.close()


async def _a_day_later_purge(db: Conn, database_url: str, store: S3Store) -> PurgeReport:
    """The purge, once the requests have been closed for a day by the database's clock."""
    await db.execute(
        "UPDATE dsar_requests SET completed_at = completed_at - interval '25 hours', "
        "rejected_at = rejected_at - interval '25 hours'"
    )
    return await _purge(database_url, store)


@contextlib.asynccontextmanager
async def _eraser(
    database_url: str, store: S3Store, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """An erasure of CALLER carried out to completion on a connection of its own, for a store
    to run in the middle of an access run."""
    other = await connect(database_url)
    await tenancy.set_tenant(other, tenancy.DEFAULT)

    async def erase() -> None:
        erasure = await dsar.create(other, VAULT, kind="erase", phone=CALLER, actor="test")
        assert await dsar.run(other, VAULT, store, erasure, tmp_path, retry_s=1) == "completed"

    try:
        yield erase
    finally:
        await other.close()


async def test_an_erasure_during_an_access_run_leaves_no_copy_for_good(
    db: Conn, database_url: str, store: S3Store, moto_url: str, tmp_path: Path
) -> None:
    """The erasure commits between the run's announce and its upload, and the run's own delete
    at its commit is refused: the upload stays listed (the erasure does not clear the list), and
    the purge deletes it once the request has been closed a day."""
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    access = await dsar.create(db, VAULT, kind="access", phone=CALLER, actor="test")
    async with _eraser(database_url, store, tmp_path) as erase:
        racing = _EraseThenRefuseOwnDelete(store, erase)
        with pytest.raises(StorageError):
            await dsar.run(db, VAULT, racing, access, tmp_path, retry_s=1)  # type: ignore[arg-type]
    # the job's retry finds the request closed and returns
    assert await dsar.run(db, VAULT, store, access, tmp_path, retry_s=1) == "completed"
    left = await _bundles_in(store, moto_url, access)
    assert len(left) == 1
    assert (await dsar.get(db, access))["bundle_uploads"] == {left[0]: "shared"}

    report = await _a_day_later_purge(db, database_url, store)
    assert (report.stale_uploads, report.bundles_failed) == (1, {})
    assert await _bundles_in(store, moto_url, access) == []
    assert (await dsar.get(db, access))["bundle_uploads"] == {}


async def test_a_crashed_runs_upload_goes_once_its_request_is_rejected_a_day(
    db: Conn, database_url: str, store: S3Store, moto_url: str, tmp_path: Path
) -> None:
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    access = await dsar.create(db, VAULT, kind="access", phone=CALLER, actor="test")
    with pytest.raises(RuntimeError):
        await dsar.run(db, VAULT, _CrashAfterUpload(store), access, tmp_path, retry_s=1)  # type: ignore[arg-type]
    await dsar.reject(db, access, "test", reason="identity not verified")
    assert len(await _bundles_in(store, moto_url, access)) == 1
    # not within the day: a run of it could in principle still be uploading
    assert (await _purge(database_url, store)).stale_uploads == 0
    assert len(await _bundles_in(store, moto_url, access)) == 1

    report = await _a_day_later_purge(db, database_url, store)
    assert report.stale_uploads == 1
    assert await _bundles_in(store, moto_url, access) == []
    assert await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'dsar_stale_uploads_removed'"
    )


async def test_a_bundle_run_whose_request_is_deleted_meanwhile_deletes_its_upload(
    db: Conn, store: S3Store, moto_url: str, tmp_path: Path
) -> None:
    """The tenant's offboarding deleted the request (its rows go last, locked with their
    bundles) while a run was uploading: the run finds its request gone at its commit, and its
    upload goes with it rather than stay where no row names it."""
    await seed_recording(db, store, VAULT, tmp_path, caller=CALLER, expired=False)
    access = await dsar.create(db, VAULT, kind="access", phone=CALLER, actor="test")

    class DeletedDuringUpload:
        async def put_file(self, key: str, path: Path, **kwargs: Any) -> Any:
            stored = await store.put_file(key, path, **kwargs)
            await db.execute("DELETE FROM dsar_requests WHERE id = $1", access)
            return stored

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

    with pytest.raises(NotFound):
        await dsar.run(db, VAULT, DeletedDuringUpload(), access, tmp_path, retry_s=1)  # type: ignore[arg-type]
    assert await _bundles_in(store, moto_url, access) == []
