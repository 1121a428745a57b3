"""The ``recording`` job: keep a consented recording, discard any other, converge on rerun.

Keep: download from the platform into a temporary file, sealed with the recording's data key
as it streams (hashing the plaintext as it arrives; only a recording to be transcoded is written
in plaintext, for ffmpeg, and sealed after), upload with
server-side encryption under ``recordings/{recording id}.wav`` in the store of the job's tenant
(the shared one under ``tenants/{id}/``, or the tenant's own bucket: see
:mod:`service.storage.registry`), verify with a HEAD (size and
SHA-256, and the store's own SHA-256 of the sealed bytes where it answers one), then commit the
``stored`` row and ``recording_stored`` event, then delete the platform's copy and commit
``platform_copy_deleted`` (``platform_copy_retained`` where the platform has no delete:
Stringee). The platform's copy is kept until ours is verified and committed. Every commit is
fenced by the job's lease, and every step can run again: the object key is fixed per recording,
rows move forward only from the state they expect, and ledger events carry dedupe keys. So a
crash anywhere, and the rerun after it, ends with one object and no platform copy.

Discard (the call was refused, hung up, had no input, was not asked, or is unknown, or a
data-subject request erased it — ``erase`` or ``withdraw``, however late the recording arrives):
never download; write ``recording_discarded``, delete at the platform, write
``platform_copy_deleted``. A recording whose call has no outcome yet waits
(:class:`~service.jobs.Defer`); it is never guessed.

An erasure that lands while a download is in flight marks the row ``erased``; the commit then
finds it no longer ``pending``, deletes what it uploaded, writes ``recording_discarded`` and goes
on to delete the platform's copy. The decision locks the call, and so does the erasure before
it reads the call's recordings for the last time, so the two are ordered: a recording row is
either seen by the erasure or never created.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service import jobs, ledger
from service.config import RetentionSource, Settings
from service.consent.gate import CONSENTED, IN_PROGRESS
from service.db import Conn, queries, tenancy
from service.intake import possible_keys, possible_objects, recording_key
from service.intake.callbacks import JOB_KIND
from service.intake.transcode import CONTENT_TYPES as TRANSCODED_TYPES
from service.intake.transcode import transcode
from service.jobs import Defer, LeaseLost
from service.jobs.registry import job_kind
from service.jobs.worker import JobContext
from service.ledger import NewEvent
from service.observability.metrics import Metrics
from service.ops import failpoints
from service.ops.workdir import work_dir
from service.platforms.port import (
    Downloaded,
    MediaSource,
    MediaSources,
    PlatformKeepsCopy,
    Writable,
    media_source,
)
from service.storage import ObjectStore, StorageError, StoredObject, recording_keys, sealed
from service.storage.registry import StoreRegistry, TenantStore, key_in

log = logging.getLogger(__name__)
Q = queries.load("service.intake")
CONSENT_WAIT_S = 3600.0


@dataclass(frozen=True)
class IntakeDeps:
    settings: Settings
    stores: StoreRegistry
    media: Mapping[str, MediaSources]  # platform -> its media per platform account
    metrics: Metrics | None = None


@job_kind(JOB_KIND)
async def recording(ctx: JobContext) -> None:
    shared = ctx.resources
    await run(ctx, IntakeDeps(shared.settings, shared.stores, shared.media, shared.metrics))


async def run(ctx: JobContext, deps: IntakeDeps) -> None:
    payload = ctx.job.payload
    platform: str = payload["platform"]
    sid: str = payload["recording_sid"]
    call_sid: str = payload["call_sid"]
    # the account the callback came through (verified with its secret), else the call's
    account: str | None = payload.get("platform_account")

    leftover = None  # the row of a recording whose call was erased while it was in flight
    async with ctx.pool.acquire() as conn, jobs.fenced(conn, ctx.job):
        call = await conn.fetchrow(Q["call_for_intake"], platform, call_sid)
        erased = call is not None and call["erased_at"] is not None
        if call is not None and not erased and call["outcome"] == IN_PROGRESS:
            if ctx.job.age_s < CONSENT_WAIT_S:
                raise Defer(
                    "waiting for the call's consent outcome",
                    delay_s=deps.settings.job_backoff_base_s,
                )
            # Never guessed: after an hour it fails, retries and is dead-lettered, visibly,
            # with the platform's copy kept for a person to decide.
            raise RuntimeError("the call has had no consent outcome for an hour")
        if account is None and call is not None:
            account = call["platform_account"]
        keep = call is not None and not erased and call["outcome"] == CONSENTED
        if keep:
            assert call is not None
            await conn.execute(
                Q["ensure_recording"], call["id"], platform, sid, payload.get("duration_s")
            )
            recording = await conn.fetchrow(Q["recording_by_external_id"], platform, sid)
        elif call is not None:
            if erased:
                leftover = await conn.fetchrow(Q["recording_by_external_id"], platform, sid)
            await ledger.append(
                conn,
                call["id"],
                [
                    NewEvent(
                        "recording_discarded",
                        {
                            "recording_sid": sid,
                            "outcome": call["outcome"],
                            "reason": "call erased: never stored"
                            if erased
                            else "no consent: never downloaded",
                        },
                        dedupe_key=f"recording_discarded:{sid}",
                    )
                ],
            )

    # fetched and deleted with the credentials of the account the call came through
    media = await media_source(deps.media, platform, ctx.job.tenant, account)
    if not keep:
        if leftover is not None:
            # a run cut short after its upload (crash, lost lease) may have left an object,
            # in the store it announced or the tenant's of today
            tenant = _tenant(ctx)
            where = await deps.stores.for_tenant(tenant)
            await _delete_located(deps.stores, tenant, possible_objects(tenant, where, leftover))
        deleted = await _delete_at_platform(media, sid)
        if call is not None:
            async with ctx.pool.acquire() as conn, jobs.fenced(conn, ctx.job):
                if leftover is not None and deleted:
                    await conn.execute(Q["mark_platform_deleted"], leftover["id"])
                await ledger.append(
                    conn, call["id"], [_platform_copy_event(deleted, {"recording_sid": sid}, sid)]
                )
        else:
            log.warning(
                "deleted a recording of a call callvault never saw start"
                if deleted
                else "a recording of a call callvault never saw start: left at the platform",
                extra={"recording_sid": sid},
            )
        return

    assert call is not None and recording is not None
    policy: dict[str, Any] = call["policy"]
    if recording["state"] == "pending":
        # calls older than migration 0016 did not record the level: the tenant's
        source = RetentionSource(policy.get("retention_source", RetentionSource.TENANT))
        await _store(ctx, deps, media, recording, sid, int(policy["retention_s"]), source)
    if recording["platform_deleted_at"] is None:
        deleted = await _delete_at_platform(media, sid)
        async with ctx.pool.acquire() as conn, jobs.fenced(conn, ctx.job):
            if deleted:
                await conn.execute(Q["mark_platform_deleted"], recording["id"])
            details = {"recording_id": str(recording["id"]), "recording_sid": sid}
            await ledger.append(conn, call["id"], [_platform_copy_event(deleted, details, sid)])


async def _delete_at_platform(media: MediaSource, sid: str) -> bool:
    """Delete the platform's copy: True, or False when the platform cannot delete (its copy is
    kept under the retention set there, and the ledger says so)."""
    try:
        await media.delete(sid)
    except PlatformKeepsCopy:
        return False
    return True


def _platform_copy_event(deleted: bool, details: dict[str, Any], sid: str) -> NewEvent:
    name = "platform_copy_deleted" if deleted else PlatformKeepsCopy.event
    return NewEvent(name, details, dedupe_key=f"{name}:{sid}")


async def _store(
    ctx: JobContext,
    deps: IntakeDeps,
    media: MediaSource,
    recording: Any,
    sid: str,
    retention_s: int,
    source: RetentionSource,
) -> None:
    settings = deps.settings
    started = time.perf_counter()
    fetch = settings.recording_format
    target = settings.recording_transcode or fetch
    # the tenant's store as it is now; the row records which one it was
    where = await deps.stores.for_tenant(_tenant(ctx))
    key = where.key(recording_key(recording["id"], target))
    async with work_dir(settings.home / "tmp", "intake-") as tmp:
        # The data key is issued (a transaction of its own) while the download starts: it is
        # committed before any byte leaves either way, and the job is not kept waiting for it.
        issuing = asyncio.create_task(_issue_key(lambda: _fenced(ctx), settings, recording))
        sink: sealed.SealingFile | None = None
        made: sealed.SealedFile | None = None

        async def sealing(path: Path) -> Writable:
            """Opens the download's file (each attempt): sealing as it is written, once the key
            is there, so the plaintext is never written to disk and read back to be sealed."""
            nonlocal sink
            if sink is not None:  # an attempt that failed part way (another host, say)
                sink.abandon()
                sink = None
            issued = await issuing
            if issued is None:  # no longer pending: store_received discards it
                return path.open("wb")
            sink = sealed.SealingFile(issued.keyset, path, sealed.associated_data(recording["id"]))
            return sink

        try:
            # A 404 is asked again a few times quickly, then dead-lettered (Permanent, platform
            # copy kept, visible) with what to check: after `completed`, the file is available.
            if target != fetch:  # ffmpeg reads the plaintext; the transcoded file is sealed
                got = await media.download(sid, tmp / f"media.{fetch}", fetch)
                path, size, digest = await transcode(got.path, fetch, target)
                got = Downloaded(path, size, digest, TRANSCODED_TYPES[target])
            else:
                got = await media.download(
                    sid, tmp / f"media.{fetch}.sealed", fetch, opener=sealing
                )
                if sink is not None:
                    made = await asyncio.get_running_loop().run_in_executor(
                        sink.executor, sink.finish
                    )
        except BaseException:
            issuing.cancel()
            await asyncio.wait({issuing})
            if not issuing.cancelled():
                issuing.exception()  # the download's failure is the one to report
            raise
        finally:
            if sink is not None:
                sink.abandon()  # (closed already once finished)
        issued = await issuing
        failpoints.hit(settings, "intake.after_download")
        try:
            state = await store_received(
                lambda: _fenced(ctx),
                deps.stores,
                _tenant(ctx),
                where,
                settings,
                recording,
                sid,
                Received(
                    key,
                    got.path,
                    got.size,
                    got.sha256,
                    got.content_type,
                    made,
                ),
                retention_s,
                source,
                issued=issued,
            )
        except LeaseLost:
            # Another worker owns the job now: this upload stays only where it can be found.
            await _take_back_stray(ctx, deps.stores, where, key, recording["id"])
            raise
    if state == "stored" and deps.metrics is not None:
        deps.metrics.intake_bytes.inc(got.size)
        deps.metrics.intake_duration.observe(time.perf_counter() - started)


@asynccontextmanager
async def _fenced(ctx: JobContext) -> AsyncIterator[Conn]:
    async with ctx.pool.acquire() as conn, jobs.fenced(conn, ctx.job):
        yield conn


@dataclass(frozen=True)
class Received:
    """A recording wholly received into a local file (downloaded, or uploaded by a PBX), and
    the key it is to be stored under."""

    key: str
    path: Path
    size: int
    sha256: str  # of the recording itself
    content_type: str
    # set when ``path`` holds the recording sealed already (as it was downloaded), with the
    # data key store_received is given: what the sealing said of it
    sealed: sealed.SealedFile | None = None


# A transaction to commit in: the job's fenced one, or a plain one for an upload.
Transaction = Callable[[], AbstractAsyncContextManager[Conn]]


class _NotYet(enum.Enum):
    NOT_YET = "not yet"


_NOT_YET = _NotYet.NOT_YET  # store_received issues the data key itself


async def _issue_key(
    transaction: Transaction, settings: Settings, recording: Any
) -> recording_keys.Issued | None:
    """The recording's data key, made and committed on first use (None: no longer pending)."""
    async with transaction() as conn:
        return await recording_keys.issue_key(
            conn,
            recording_keys.vault_of(settings.secret_key, settings.previous_secret_key),
            recording["id"],
        )


async def store_received(
    transaction: Transaction,
    stores: StoreRegistry,
    tenant: str,
    where: TenantStore,
    settings: Settings,
    recording: Any,
    sid: str,
    got: Received,
    retention_s: int,
    source: RetentionSource,
    *,
    issued: recording_keys.Issued | _NotYet | None = _NOT_YET,
) -> str:
    """The steps every kept recording goes through, however it arrived: issue its data key
    (unless ``issued`` already, by :func:`_issue_key`), seal it, name the store it goes to
    (``where``, the tenant's of today) and upload it there (unless this exact object is there
    already), verify with a HEAD, commit ``stored``
    (with the store it went to and the policy level that set its retention) and
    ``recording_stored``; if the row is no longer ``pending`` (erased meanwhile), delete the
    upload and write ``recording_discarded``. Returns the recording's state."""
    store = where.store
    key = got.key
    # Sealed with the recording's own key, issued (wrapped, committed) before any byte leaves:
    # an erasure from now on destroys it, and one before leaves none to seal with.
    if issued is _NOT_YET:
        issued = await _issue_key(transaction, settings, recording)
    if issued is None:
        async with transaction() as conn:
            now = await conn.fetchval(Q["recording_state"], recording["id"])
        return await _discard_upload(transaction, store, recording, sid, key, now)
    # A run that crashed after uploading left exactly this object, sealed with the key it
    # committed: a second PUT would only add a version on a versioned bucket. A key made just
    # now has sealed nothing yet, so then there is nothing to look for.
    await _announce_upload(transaction, stores, tenant, where, recording["id"])
    existing = None
    if not issued.fresh:
        await _delete_other_formats(store, where, recording["id"], key)
        existing = await store.head(key)
    if existing is None or not _holds(existing, got):
        made = got.sealed
        path = got.path if made is not None else got.path.with_name(got.path.name + ".sealed")
        loop = asyncio.get_running_loop()
        try:
            if made is None:
                made = await loop.run_in_executor(
                    sealed.EXECUTOR,
                    functools.partial(
                        sealed.seal_file,
                        issued.keyset,
                        got.path,
                        path,
                        sealed.associated_data(recording["id"]),
                        hashed=True,
                    ),
                )
            proof = await store.put_file(
                key,
                path,
                sha256=got.sha256,  # of the recording itself, as the row keeps it
                content_type=got.content_type,
                metadata={
                    "recording-id": str(recording["id"]),
                    "call-id": str(recording["call_id"]),
                    **sealed.metadata_of(made.header, got.size),
                },
                content_sha256=made.sha256,  # of the sealed bytes: the store checks them
            )
        finally:
            if path != got.path:
                await asyncio.to_thread(path.unlink, True)
    else:
        proof = existing
    failpoints.hit(settings, "intake.after_upload")
    # The store's answer to the PUT, when it proves the object (it checked the sealed bytes'
    # SHA-256 on receipt and says so), verifies as a HEAD would; otherwise a HEAD.
    stored = proof if proof is not None else await store.head(key)
    if stored is None or not _holds(stored, got):
        raise StorageError(f"verification of {key} failed: the store does not hold what we sent")
    if where.encrypted and not stored.encrypted:
        raise StorageError(f"verification of {key} failed: not encrypted at rest")
    async with transaction() as conn:
        retain_until = await conn.fetchval(
            Q["mark_stored"],
            recording["id"],
            key,
            got.sha256,
            got.size,
            got.content_type,
            retention_s,
            stored.version,
            where.ref,
            str(source),
        )
        if retain_until is not None:
            state: str = "stored"
            await ledger.append(
                conn,
                recording["call_id"],
                [
                    NewEvent(
                        "recording_stored",
                        {
                            "recording_id": str(recording["id"]),
                            "recording_sid": sid,
                            "sha256": got.sha256,
                            "size_bytes": got.size,
                            "retain_until": retain_until.isoformat(),
                            "retention_source": str(source),
                        },
                        dedupe_key=f"recording_stored:{recording['id']}",
                    )
                ],
            )
        else:
            state = await conn.fetchval(Q["recording_state"], recording["id"])
    if state != "stored":
        return await _discard_upload(transaction, store, recording, sid, key, state)
    failpoints.hit(settings, "intake.after_commit")
    log.info(
        "recording stored", extra={"recording_id": str(recording["id"]), "size_bytes": got.size}
    )
    return str(state)


async def _announce_upload(
    transaction: Transaction,
    stores: StoreRegistry,
    tenant: str,
    where: TenantStore,
    recording_id: Any,
) -> None:
    """Name the store this attempt uploads to before it does (migration 0030), so an upload
    that never commits is found there by the retry, an erasure or offboarding, even after the
    tenant's storage has moved. An earlier attempt's upload to another store (the tenant moved
    since) is deleted there first; a row names one such store at most. A row no longer pending
    names nothing: the commit will find it so and discard this upload.

    The store the tenant left may be the reason it moved (down, its credentials revoked): if
    it cannot delete there, the earlier name stays (the purge deletes there once the row is
    committed, ``claim_left_recording_uploads``) and this attempt goes on in the tenant's store
    of today, where the retry, an erasure and offboarding look too: a consented recording is
    not kept from being stored by a bucket its tenant has given up. No row lock is held over
    the store's call; an attempt that lost its lease and uploads to the old store after this
    delete takes its own upload back (:func:`_take_back_stray`)."""
    async with transaction() as conn:
        row = await conn.fetchrow(Q["announce_first_upload"], recording_id, where.ref)
    # (None: the row looked pending and unnamed to the statement's snapshot, but the UPDATE,
    # having waited for an erasure's lock, found it erased: the commit will discard this upload)
    if row is None or row["upload_store"] in (None, where.ref):
        return
    earlier: str = row["upload_store"]
    keys = [key_in(tenant, earlier, k) for k in possible_keys(recording_id)]
    try:
        await _delete_objects(await stores.for_object(tenant, earlier), keys)
    except StorageError as exc:
        log.warning(
            "could not delete an earlier upload attempt's object in the store the tenant "
            "left; it stays named there for the purge, and this attempt uploads to the "
            "tenant's store of today",
            extra={"recording_id": str(recording_id), "store": earlier, "why": exc.message},
        )
        return
    async with transaction() as conn:
        await conn.execute(Q["announce_upload"], recording_id, where.ref, earlier)


async def _delete_other_formats(
    store: ObjectStore, where: TenantStore, recording_id: Any, key: str
) -> None:
    """A retry's clean-up of an earlier attempt's upload under another format (the operator
    changed ``recording_format`` or ``recording_transcode`` since): once this attempt commits,
    the purge deletes only the committed key, and that copy would stay. At best effort: a store
    that refuses deletes (Object Lock, no delete permission) must not keep a consented
    recording from being stored; an erasure still looks for every format."""
    others = [where.key(k) for k in possible_keys(recording_id) if where.key(k) != key]
    try:
        await _delete_objects(store, others)
    except StorageError as exc:
        log.warning(
            "could not delete an earlier attempt's upload under another format",
            extra={"recording_id": str(recording_id), "why": exc.message},
        )


async def _take_back_stray(
    ctx: JobContext, stores: StoreRegistry, where: TenantStore, key: str, recording_id: Any
) -> None:
    """This attempt uploaded ``key`` to ``where`` and lost its lease: it will not commit. Its
    upload stays only where a reader of the row will find it: the recording committed there
    under this key, or (still pending) the store the row names for its upload or the tenant's
    store of today, where the next attempt looks (and may be uploading this very key). Anywhere
    else it is taken back: the row erased, purged or gone (its tenant offboarded), or the next
    attempt, after the tenant's storage moved, deleted in this store before this PUT landed
    and named another. The row stays locked until the delete is done, so that no attempt names
    this store again in between."""
    today = (await stores.for_tenant(_tenant(ctx))).ref
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(Q["lock_recording_stores"], recording_id)
        if row is None:
            keep = False
        elif row["state"] == "stored":
            keep = (row["object_store"], row["object_key"]) == (where.ref, key)
        else:
            keep = row["state"] == "pending" and where.ref in (row["upload_store"], today)
        if not keep:
            await _delete_objects(where.store, [key])


def _holds(stored: StoredObject, got: Received) -> bool:
    """Whether the stored object is this recording as it is to be kept: same content (the
    SHA-256 and size of the recording itself), sealed, of the size that sealing gives, and,
    where the store answers its own SHA-256 of the bytes it holds, the one of the sealed bytes
    that were sent."""
    if stored.sha256 != got.sha256 or not sealed.is_sealed(stored.metadata):
        return False
    if stored.content_differs():
        # Metadata and size are what the request said, whatever bytes arrived: an upload
        # altered on its way, kept by a store that reports a mismatch without refusing it and
        # not taken back (no delete permission, Object Lock, a crash), has them right.
        return False
    return stored.metadata.get(sealed.PLAIN_SIZE) == str(got.size) and stored.size == (
        sealed.sealed_size(got.size)
    )


async def _discard_upload(
    transaction: Transaction,
    store: ObjectStore,
    recording: Any,
    sid: str,
    key: str,
    state: str | None,
) -> str:
    """Erased while the recording was in flight (the row is no longer pending): its key is
    destroyed (if the erasure has not already) and what was uploaded must not stay."""
    async with transaction() as conn:
        await recording_keys.destroy(conn, [recording["id"]], "erased while in flight")
    await _delete_objects(store, [key])
    async with transaction() as conn:
        await ledger.append(
            conn,
            recording["call_id"],
            [
                NewEvent(
                    "recording_discarded",
                    {
                        "recording_id": str(recording["id"]),
                        "recording_sid": sid,
                        "state": state,
                        "reason": "erased while in flight: upload deleted",
                    },
                    dedupe_key=f"recording_discarded:{sid}",
                )
            ],
        )
    log.info(
        "recording discarded: its call was erased while it was in flight; upload deleted",
        extra={"recording_id": str(recording["id"]), "state": state},
    )
    return str(state)


def _tenant(ctx: JobContext) -> str:
    return ctx.job.tenant or tenancy.current() or tenancy.DEFAULT


async def _delete_located(
    stores: StoreRegistry, tenant: str, located: list[tuple[str, str]]
) -> None:
    """Delete (store reference, key) pairs, each from the store it names."""
    by_store: dict[str, list[str]] = {}
    for ref, key in located:
        by_store.setdefault(ref, []).append(key)
    for ref, keys in by_store.items():
        await _delete_objects(await stores.for_object(tenant, ref), keys)


async def _delete_objects(store: ObjectStore, keys: list[str]) -> None:
    refused = await store.delete_many(keys)
    if refused:
        raise StorageError(f"the store refused to delete {len(refused)} object(s); retrying")
