"""Data-subject requests: access, erasure, withdrawal of consent.

A request is recorded with its deadline (``due_at``, from ``CALLVAULT_DSAR_DEADLINE``) and
carried out by a ``dsar`` job, so any replica can do it and a crash loses nothing.

- access: a zip bundle (``request.json``, ``calls.json`` with each call's consent events and its
  recordings' metadata, and the audio files) stored in the object store, downloadable by
  compliance through a short-lived link.
- erase: the person's recordings deleted from the store and marked ``erased``, their number
  destroyed from every call, an ``erased`` ledger event on each call (the ledger proves what
  happened without holding the number). A hold wins: held calls wait, the request shows
  ``waiting_for_hold``, and the job comes back until the hold is released.
- withdraw: the number goes on the do-not-record list (calls are no longer asked or recorded),
  then its recordings are erased as above.

When an erasure or withdrawal completes, the request forgets the number too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

from retention.holds import check_phone
from service import audit, jobs, ledger
from service.consent.gate import add_to_do_not_record
from service.db import Conn, queries
from service.errors import BadRequest, NotFound
from service.jobs import Defer
from service.ledger import NewEvent, visibility
from service.personal_data import PhoneVault, mask_phone
from service.storage import ObjectStore, StorageError
from service.workdir import sha256_of, work_dir

Q = queries.load("retention")
KINDS = ("access", "erase", "withdraw")
JOB_KIND = "dsar"


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
        "result": row["result"],
    }


async def get(conn: Conn, request_id: uuid.UUID) -> Any:
    row = await conn.fetchrow(Q["request_by_id"], request_id)
    if row is None:
        raise NotFound(f"no data-subject request {request_id}")
    return row


async def run(
    conn: Conn,
    vault: PhoneVault,
    store: ObjectStore,
    request_id: uuid.UUID,
    tmp_root: Path,
    *,
    retry_s: float,
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
        key = await _access_bundle(conn, store, request_id, call_ids, tmp_root)
        async with conn.transaction():
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
                Q["set_request_status"], request_id, "completed", {"calls": len(call_ids)}, key
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
    erased, waiting = 0, 0
    for cid in call_ids:
        outcome = await _erase_call(conn, store, cid, request_id)
        erased += outcome == "erased"
        waiting += outcome == "held"
    result = {"calls": len(call_ids), "erased_calls": erased, "held_calls": waiting}
    async with conn.transaction():
        if waiting:
            await conn.execute(
                Q["set_request_status"], request_id, "waiting_for_hold", result, None
            )
        else:
            await conn.execute(Q["set_request_status"], request_id, "completed", result, None)
            await conn.execute(Q["forget_request_phone"], request_id)
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
    return "completed"


async def _erase_call(
    conn: Conn, store: ObjectStore, call_id: uuid.UUID, request_id: uuid.UUID
) -> str:
    async with conn.transaction():
        recordings = await conn.fetch(Q["erasable_recordings_of_call"], call_id)
        # checked after the rows are locked, in a fresh snapshot: a hold placed meanwhile wins
        if await conn.fetchval(Q["call_is_held"], call_id):
            return "held"
        keys = [r["object_key"] for r in recordings if r["state"] == "stored" and r["object_key"]]
        refused = await store.delete_many(keys)
        if refused:
            raise StorageError(f"the store refused to delete {len(refused)} object(s)")
        ids = [r["id"] for r in recordings if r["state"] in ("stored", "pending", "failed")]
        await conn.execute(Q["mark_erased"], ids)
        await conn.execute(Q["destroy_call_phone"], call_id)
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
                "called": call["called"],
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
        request = {"request_id": str(request_id), "kind": "access", "calls": len(calls)}
        bundle = folder / "bundle.zip"
        digest = await asyncio.to_thread(_zip, folder / "content", bundle, request, calls)
        key = f"dsar/{request_id}.zip"
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
