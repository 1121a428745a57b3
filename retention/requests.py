"""Data-subject requests: access, erasure, withdrawal of consent.

A request is recorded with its deadline (``due_at``, from ``CALLVAULT_DSAR_DEADLINE``) and
carried out by a ``dsar`` job, so any replica can do it and a crash loses nothing.

- access: a zip bundle (``request.json``, ``calls.json`` with each call's consent events and its
  recordings' metadata, the audio files, and ``receipts/`` with each call's signed consent
  receipt and the tenant's public keys to check them offline) stored in the object store,
  downloadable by compliance through a short-lived link until ``CALLVAULT_BUNDLE_TTL`` has
  passed (by the database's clock); the purge then removes it.
- erase: the person's recordings deleted from the store and marked ``erased``, their number
  destroyed from every call, each call marked erased (``erased_at``, ``erased_by``) and given an
  ``erased`` ledger event (the ledger proves what happened without holding the number). A hold
  wins: held calls wait, the request shows ``waiting_for_hold``, and the job comes back until
  the hold is released.
- withdraw: the number goes on the do-not-record list (calls are no longer asked or recorded),
  then its recordings are erased as above.

Erasure reaches everything of the subject, whenever it arrives. Every access bundle of the
number is deleted (and an access request still open is closed as superseded: it will hand out
nothing); released holds and all other requests forget the number. A recording of an erased
call that arrives later is discarded by the intake job, and one in flight deletes its own upload
at its commit (see ``service.intake.job``), and one whose job gave up (dead-lettered, the
platform's copy kept) runs once more to discard it; the request stays ``in_progress`` until no
intake job of its calls is queued or running, so "completed" means nothing of the calls is left.
When it completes, the request forgets the number too, keeping only a receipt digest under its
own key (:meth:`PhoneVault.erasure_digest`) so a hold placed later can say the number's calls
were erased, and when.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import zipfile
from enum import StrEnum
from pathlib import Path
from typing import Any

from retention.holds import check_phone
from service import audit, jobs, ledger
from service.consent.gate import add_to_do_not_record
from service.db import Conn, queries
from service.errors import BadRequest, CallvaultError, NotFound
from service.intake import possible_keys
from service.jobs import Defer
from service.ledger import NewEvent, visibility
from service.personal_data import PhoneVault, mask_phone
from service.receipts import bundle as receipts
from service.storage import ObjectStore, StorageError
from service.workdir import sha256_of, work_dir

Q = queries.load("retention")
KINDS = ("access", "erase", "withdraw")
JOB_KIND = "dsar"
ERASING_KINDS = ("erase", "withdraw")
# An erasure waiting for an intake job polls this often (or at its retry interval if shorter).
INTAKE_WAIT_S = 5.0


class BundleRemoved(StrEnum):
    """Why an access bundle left the store."""

    EXPIRED = "expired"
    ERASED = "erased"


class BundleGone(CallvaultError):
    """The bundle existed but is no longer handed out."""

    status = 410
    code = "bundle_gone"


def bundle_key_of(request_id: uuid.UUID) -> str:
    return f"dsar/{request_id}.zip"


async def create(
    conn: Conn, vault: PhoneVault, *, kind: str, phone: object, actor: str, deadline_s: int
) -> uuid.UUID:
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}", code="bad_kind")
    number = check_phone(phone)
    async with conn.transaction():
        request_id: uuid.UUID = await conn.fetchval(
            Q["insert_request"],
            kind,
            vault.lookup_hash(number),
            vault.encrypt(number),
            actor,
            deadline_s,
            vault.erasure_digest(number) if kind in ERASING_KINDS else None,
        )
        for row in await conn.fetch(Q["calls_of_phone"], vault.lookup_hashes(number)):
            await ledger.append(
                conn,
                row["id"],
                [
                    NewEvent(
                        "dsar_received",
                        {"request_id": str(request_id), "kind": kind},
                        dedupe_key=f"dsar_received:{request_id}",
                    )
                ],
            )
        await jobs.enqueue(
            conn,
            JOB_KIND,
            {"request_id": str(request_id)},
            dedupe_key=f"{JOB_KIND}:{request_id}",
            max_attempts=50,
        )
        await audit.record(
            conn,
            actor,
            "dsar_received",
            "dsar",
            str(request_id),
            {"kind": kind, "phone": mask_phone(number)},
        )
    return request_id


def request_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "status": row["status"],
        "received_at": row["received_at"].isoformat(),
        "due_at": row["due_at"].isoformat(),
        "completed_at": row["completed_at"].isoformat() if row["completed_at"] else None,
        "requested_by": row["requested_by"],
        "bundle_ready": row["bundle_key"] is not None,
        "bundle_expires_at": (
            row["bundle_expires_at"].isoformat() if row["bundle_expires_at"] else None
        ),
        "bundle_removed": row["bundle_removed_reason"],
        "result": row["result"],
    }


async def get(conn: Conn, request_id: uuid.UUID) -> Any:
    row = await conn.fetchrow(Q["request_by_id"], request_id)
    if row is None:
        raise NotFound(f"no data-subject request {request_id}")
    return row


async def bundle_for_link(conn: Conn, request_id: uuid.UUID) -> str:
    """The key of the request's bundle if it may still be handed out (database clock)."""
    await get(conn, request_id)
    row = await conn.fetchrow(Q["bundle_of_request"], request_id)
    assert row is not None
    if row["bundle_removed_reason"] == BundleRemoved.ERASED:
        raise BundleGone(
            "this bundle was deleted when the person's data was erased", code="bundle_erased"
        )
    if row["bundle_removed_reason"] == BundleRemoved.EXPIRED or row["bundle_expired"]:
        raise BundleGone(
            "this bundle has expired (CALLVAULT_BUNDLE_TTL); make a new access request",
            code="bundle_expired",
        )
    if row["bundle_key"] is None:
        raise NotFound("this request has no bundle (yet)")
    key: str = row["bundle_key"]
    return key


async def run(
    conn: Conn,
    vault: PhoneVault,
    store: ObjectStore,
    request_id: uuid.UUID,
    tmp_root: Path,
    *,
    retry_s: float,
    bundle_ttl_s: int = 7 * 86400,
) -> str:
    """Carry the request out as far as the law lets; returns its status."""
    row = await get(conn, request_id)
    if row["status"] == "completed":
        return "completed"
    if row["phone_enc"] is None:
        raise BadRequest("the request no longer holds a number", code="no_phone")
    number = vault.decrypt(row["phone_enc"])
    hashes = vault.lookup_hashes(number)
    call_ids = [r["id"] for r in await conn.fetch(Q["calls_of_phone"], hashes)]
    if row["kind"] == "access":
        key = await _access_bundle(conn, vault, store, request_id, call_ids, tmp_root)
        async with conn.transaction():
            # An erasure of the number that committed while the bundle was built closed this
            # request and cleared its number: what was just uploaded must not stay.
            current = await conn.fetchrow(Q["lock_request"], request_id)
            assert current is not None
            if current["status"] == "completed" or current["phone_enc"] is None:
                await _delete_or_raise(store, [key])
                return str(current["status"])
            for cid in call_ids:
                await ledger.append(
                    conn,
                    cid,
                    [
                        NewEvent(
                            "subject_access",
                            {"request_id": str(request_id)},
                            dedupe_key=f"subject_access:{request_id}",
                        )
                    ],
                )
            await conn.execute(
                Q["complete_access_request"],
                request_id,
                {"calls": len(call_ids)},
                key,
                bundle_ttl_s,
            )
            await audit.record(
                conn,
                "system:dsar",
                "dsar_completed",
                "dsar",
                str(request_id),
                {"kind": "access", "calls": len(call_ids)},
            )
        return "completed"

    if row["kind"] == "withdraw":
        await add_to_do_not_record(conn, vault, number, f"withdrawn by request {request_id}")
    # the calls an earlier pass of this request erased no longer carry the number
    for r in await conn.fetch(Q["calls_erased_by"], request_id):
        if r["id"] not in call_ids:
            call_ids.append(r["id"])
    erased, waiting = 0, 0
    for cid in call_ids:
        outcome = await _erase_call(conn, store, cid, request_id)
        erased += outcome == "erased"
        waiting += outcome == "held"
    bundles = await _erase_elsewhere(conn, store, hashes, request_id)
    await conn.fetchrow(Q["requeue_dead_intake_of_erased_calls"], call_ids, str(request_id))
    running = int(await conn.fetchval(Q["intake_running_for_calls"], call_ids))
    result = {
        "calls": len(call_ids),
        "erased_calls": erased,
        "held_calls": waiting,
        "bundles_deleted": int(row["result"].get("bundles_deleted", 0)) + bundles,
        "intake_running": running,
    }
    async with conn.transaction():
        if waiting:
            await conn.execute(
                Q["set_request_status"], request_id, "waiting_for_hold", result, None
            )
        elif running:
            await conn.execute(Q["set_request_status"], request_id, "in_progress", result, None)
        else:
            await conn.execute(Q["set_request_status"], request_id, "completed", result, None)
            await conn.execute(Q["forget_request_phone"], request_id, vault.erasure_digest(number))
            await audit.record(
                conn,
                "system:dsar",
                "dsar_completed",
                "dsar",
                str(request_id),
                {"kind": row["kind"], **result},
            )
    if waiting:
        raise Defer(f"{waiting} call(s) under a legal hold; erasure waits", delay_s=retry_s)
    if running:
        raise Defer(
            f"{running} intake job(s) of the erased calls still running; waiting for them",
            delay_s=min(retry_s, INTAKE_WAIT_S),
        )
    return "completed"


async def _delete_or_raise(store: ObjectStore, keys: list[str]) -> None:
    refused = await store.delete_many(keys)
    if refused:
        raise StorageError(f"the store refused to delete {len(refused)} object(s)")


async def _erase_elsewhere(
    conn: Conn, store: ObjectStore, hashes: list[bytes], request_id: uuid.UUID
) -> int:
    """Every access bundle of the number deleted, and the number cleared from its other
    requests (an open access request is closed: it must hand nothing out) and from released
    holds. Open erase and withdraw requests keep it until they finish their own work; active
    holds keep it (a legal obligation). Returns how many bundles were deleted."""
    deleted = 0
    async with conn.transaction():
        others = await conn.fetch(Q["lock_other_requests_of_phone"], hashes, request_id)
        # the access bundle's key is fixed: an upload that has not committed yet goes too
        keys = [bundle_key_of(r["id"]) for r in others if r["kind"] == "access"]
        keys += [r["bundle_key"] for r in others if r["bundle_key"] and r["bundle_key"] not in keys]
        if keys:
            await _delete_or_raise(store, keys)
        for r in others:
            deleted += r["bundle_key"] is not None
            if r["kind"] == "access" and r["status"] != "completed":
                await conn.execute(Q["supersede_access_request"], r["id"], str(request_id))
            elif r["kind"] == "access" or r["status"] == "completed":
                await conn.execute(Q["erase_request_phone_and_bundle"], r["id"])
        await conn.execute(Q["forget_released_holds_of_phone"], hashes)
        if deleted:
            await audit.record(
                conn,
                "system:dsar",
                "dsar_bundles_erased",
                "dsar",
                str(request_id),
                {
                    "count": deleted,
                    "requests": [str(r["id"]) for r in others if r["bundle_key"]],
                },
            )
    return deleted


async def _erase_call(
    conn: Conn, store: ObjectStore, call_id: uuid.UUID, request_id: uuid.UUID
) -> str:
    async with conn.transaction():
        # recordings first (the order holds and purges take), then the call: an intake that
        # is deciding to keep a recording of it is waited for, or waits and sees it erased
        await conn.fetch(Q["erasable_recordings_of_call"], call_id)
        await conn.fetchrow(Q["lock_call_for_erasure"], call_id)
        # a fresh statement: also sees (and locks) a recording row committed while we waited
        recordings = await conn.fetch(Q["erasable_recordings_of_call"], call_id)
        # checked after the rows are locked, in a fresh snapshot: a hold placed meanwhile wins
        if await conn.fetchval(Q["call_is_held"], call_id):
            return "held"
        keys = [r["object_key"] for r in recordings if r["state"] == "stored" and r["object_key"]]
        # an upload that never reached its commit (a crash, a job that gave up) goes too
        for r in recordings:
            if r["state"] in ("pending", "failed", "erased"):
                keys += possible_keys(r["id"])
        await _delete_or_raise(store, keys)
        ids = [r["id"] for r in recordings if r["state"] in ("stored", "pending", "failed")]
        await conn.execute(Q["mark_erased"], ids)
        await conn.execute(Q["mark_call_erased"], call_id, request_id)
        await ledger.append(
            conn,
            call_id,
            [
                NewEvent(
                    "erased",
                    {
                        "request_id": str(request_id),
                        "recording_ids": [str(i) for i in ids],
                        "phone_data": "destroyed",
                    },
                    dedupe_key=f"erased:{request_id}",
                )
            ],
        )
    return "erased"


async def _access_bundle(
    conn: Conn,
    vault: PhoneVault,
    store: ObjectStore,
    request_id: uuid.UUID,
    call_ids: list[uuid.UUID],
    tmp_root: Path,
) -> str:
    """Gather the person's data into a folder (audio streamed from the store to disk), zip it
    off the event loop, and store the zip."""
    async with work_dir(tmp_root, "dsar-") as folder:
        await asyncio.to_thread((folder / "content" / "audio").mkdir, parents=True)
        calls: list[dict[str, Any]] = []
        for cid in call_ids:
            call = await conn.fetchrow(Q["call_for_bundle"], cid)
            assert call is not None
            recs = await conn.fetch(Q["recordings_for_bundle"], cid)
            # the subject's consent story, not the controller's casework
            events = visibility.view(
                await ledger.events_of(conn, cid), visibility.Viewer.subject(str(request_id))
            ).events
            entry: dict[str, Any] = {
                "id": str(call["id"]),
                "platform": call["platform"],
                "platform_call_id": call["external_id"],
                # `called` is the contact centre's own number in both directions
                "direction": call["direction"],
                "contact_centre_number": call["called"],
                "started_at": call["started_at"].isoformat(),
                "ended_at": call["ended_at"].isoformat() if call["ended_at"] else None,
                "outcome": call["outcome"],
                "consent_events": events,
                "recordings": [],
            }
            for r in recs:
                item: dict[str, Any] = {
                    "id": str(r["id"]),
                    "state": r["state"],
                    "sha256": r["sha256"],
                    "size_bytes": r["size_bytes"],
                    "content_type": r["content_type"],
                    "stored_at": r["stored_at"].isoformat() if r["stored_at"] else None,
                    "retain_until": r["retain_until"].isoformat() if r["retain_until"] else None,
                    "audio_file": None,
                }
                if r["state"] == "stored" and r["object_key"]:
                    name = f"audio/{r['id']}{Path(r['object_key']).suffix}"
                    await store.download_to(r["object_key"], folder / "content" / name)
                    item["audio_file"] = name
                entry["recordings"].append(item)
            calls.append(entry)
        # the subject's own signed receipts, checkable without us (service.receipts)
        await receipts.write_for_bundle(
            conn, vault, call_ids, str(request_id), folder / "content" / "receipts"
        )
        request = {"request_id": str(request_id), "kind": "access", "calls": len(calls)}
        bundle = folder / "bundle.zip"
        digest = await asyncio.to_thread(_zip, folder / "content", bundle, request, calls)
        key = bundle_key_of(request_id)
        await store.put_file(
            key,
            bundle,
            sha256=digest,
            content_type="application/zip",
            metadata={"request-id": str(request_id)},
        )
        return key


def _zip(content: Path, bundle: Path, request: dict[str, Any], calls: list[Any]) -> str:
    (content / "request.json").write_text(json.dumps(request, indent=2))
    (content / "calls.json").write_text(json.dumps(calls, indent=2, ensure_ascii=False))
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(content.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(content).as_posix())
    return sha256_of(bundle)
