"""Recordings a platform uploads (a PBX's ``PUT``) rather than one callvault fetches.

Two steps around the upload's body: :func:`admit` answers, before a byte of audio is read,
whether the call may have a recording at all (so a refused call's audio is never received), and
:func:`keep_upload`, once the body is wholly in a local file, decides again under the call's lock
(an erasure may have landed meanwhile), creates the recording row, and hands the file to
:func:`service.intake.job.store_received`: the same upload, verify, commit and ledger steps as a
fetched recording. So an upload cut short leaves no row and no object, and a repeated upload of
the same bytes answers the same and stores one object.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from service import ledger
from service.config import RetentionSource, Settings
from service.consent.gate import CONSENTED
from service.db import Conn, queries, tenancy
from service.errors import Conflict, NotFound
from service.intake import recording_key
from service.intake.job import Received, store_received
from service.ledger import NewEvent
from service.storage.registry import StoreRegistry

Q = queries.load("service.intake")
UPLOAD_Q = queries.load("service.intake", "upload.sql")
# Uploads being stored at once by this process. Each holds a pooled connection for its lock
# while the object goes to the bucket; the bound leaves the rest of the pool to the webhooks
# (a caller waits on those). Further uploads wait their turn, their bodies already on disk.
STORES_AT_ONCE = 2
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _turn() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    turn = _turns.get(loop)
    if turn is None:
        turn = _turns[loop] = asyncio.Semaphore(STORES_AT_ONCE)
    return turn


@dataclass(frozen=True)
class Kept:
    recording_id: str
    sha256: str
    size_bytes: int
    retain_until: datetime | None


@dataclass(frozen=True)
class Upload:
    """What a platform uploads: the recording of ``call_external_id`` (one per call for a
    PBX, so the recording's external id may be the call's)."""

    platform: str
    call_external_id: str
    recording_external_id: str


async def _refusal(conn: Conn, call: asyncpg.Record | None, upload: Upload) -> Exception | None:
    """None if the call's recording may be kept; else the 404 or 409 to answer, with why
    written to the call's ledger (raised by the caller once that is committed)."""
    if call is None:
        return NotFound("no such call", code="unknown_call")
    erased = call["erased_at"] is not None
    if not erased and call["outcome"] == CONSENTED:
        return None
    await ledger.append(
        conn,
        call["id"],
        [
            NewEvent(
                "recording_discarded",
                {
                    "recording_sid": upload.recording_external_id,
                    "outcome": call["outcome"],
                    "reason": "call erased: upload refused"
                    if erased
                    else "no consent: upload refused",
                },
                dedupe_key=f"recording_discarded:{upload.recording_external_id}",
            )
        ],
    )
    if erased:
        return Conflict("the call was erased: its recording is not kept", code="call_erased")
    return Conflict(
        f"the call's consent outcome is {call['outcome']}: its recording is not kept",
        code="no_consent",
    )


async def admit(pool: asyncpg.Pool[Any], upload: Upload) -> None:
    """Before the body is read: 404 for an unknown call, 409 for one that may not be recorded."""
    async with pool.acquire() as conn, conn.transaction():
        call = await conn.fetchrow(Q["call_for_intake"], upload.platform, upload.call_external_id)
        refused = await _refusal(conn, call, upload)
    if refused is not None:
        raise refused


@asynccontextmanager
async def _transaction(pool: asyncpg.Pool[Any]) -> AsyncIterator[Conn]:
    async with pool.acquire() as conn, conn.transaction():
        yield conn


async def keep_upload(
    pool: asyncpg.Pool[Any],
    stores: StoreRegistry,
    settings: Settings,
    upload: Upload,
    file: Received,
    fmt: str,
    duration_s: int | None = None,
) -> Kept:
    """Keep a wholly received upload (``file.key`` is ignored: the key is the recording's)."""
    recording: asyncpg.Record | None = None
    async with pool.acquire() as conn, conn.transaction():
        call = await conn.fetchrow(Q["call_for_intake"], upload.platform, upload.call_external_id)
        refused = await _refusal(conn, call, upload)
        if refused is None:
            assert call is not None
            await conn.execute(
                Q["ensure_recording"],
                call["id"],
                upload.platform,
                upload.recording_external_id,
                duration_s,
            )
            recording = await conn.fetchrow(
                Q["recording_by_external_id"], upload.platform, upload.recording_external_id
            )
    if refused is not None:
        raise refused
    assert recording is not None
    # One upload of a recording at a time (a PBX that timed out and retries while the first is
    # still being stored): the second waits, then finds it stored and compares.
    async with _turn(), pool.acquire() as lock:
        await lock.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", str(recording["id"]))
        try:
            return await _keep_locked(pool, stores, settings, upload, file, fmt, recording)
        finally:
            await lock.execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))", str(recording["id"])
            )


async def _keep_locked(
    pool: asyncpg.Pool[Any],
    stores: StoreRegistry,
    settings: Settings,
    upload: Upload,
    file: Received,
    fmt: str,
    recording: Any,
) -> Kept:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(UPLOAD_Q["uploaded_recording"], recording["id"])
    assert row is not None  # recording rows are never deleted
    state = row["state"]
    if state == "pending":
        # the tenant's store as it is now (the upload runs as the token's tenant)
        tenant = tenancy.current() or tenancy.DEFAULT
        where = await stores.for_tenant(tenant)
        key = where.key(recording_key(recording["id"], fmt))
        file = Received(key, file.path, file.size, file.sha256, file.content_type)
        policy = row["policy"]
        state = await store_received(
            lambda: _transaction(pool),
            stores,
            tenant,
            where,
            settings,
            recording,
            upload.recording_external_id,
            file,
            int(policy["retention_s"]),
            RetentionSource(policy.get("retention_source", RetentionSource.TENANT)),
        )
        async with pool.acquire() as conn:
            row = await conn.fetchrow(UPLOAD_Q["uploaded_recording"], recording["id"])
            assert row is not None
    if state != "stored":
        raise Conflict("the call was erased: its recording is not kept", code="call_erased")
    if row["sha256"] != file.sha256:
        raise Conflict(
            "this call's recording is stored already, with other content",
            code="recording_exists",
        )
    return Kept(str(recording["id"]), row["sha256"], row["size_bytes"], row["retain_until"])
