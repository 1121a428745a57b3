"""Legal holds on a call or on a phone number (every call of that number, future ones too).

Placing a hold inserts it and then locks the recordings it covers. If a purge or an erasure
holds those rows, placing waits for it to finish and then reports what it had already removed:
a hold either wins, or says plainly that it came too late for some recordings. A hold on a
call or a number whose calls were erased by a data-subject request says so, and when
(``already_erased``): the erase request keeps a receipt digest of the number for this. The
call's ledger and the audit trail record placing and releasing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service import ledger
from service.db import Conn, queries
from service.errors import BadRequest, NotFound
from service.ledger import NewEvent
from service.observability import audit
from service.personal.numbers import PhoneVault, mask_phone, parse_e164
from service.web.untrusted import check_text

Q = queries.load("retention")


@dataclass(frozen=True)
class Placed:
    id: uuid.UUID
    held_recordings: list[str]
    already_gone: list[str]  # purged or erased before the hold could take them
    # calls a data-subject request erased: {call_id, recording_ids, erased_at, request_id}
    already_erased: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "held_recordings": self.held_recordings,
            "already_purged": self.already_gone,
            "already_erased": self.already_erased,
        }


def _erased_json(row: Any) -> dict[str, Any]:
    return {
        "call_id": str(row["call_id"]),
        "recording_ids": [str(r) for r in row["recording_ids"]],
        "erased_at": row["erased_at"].isoformat(),
        "request_id": str(row["erased_by"]) if row["erased_by"] else None,
    }


def check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise BadRequest("reason is required", code="reason_required")
    if len(reason) > 2000:
        raise BadRequest("reason is too long (2000 characters at most)", code="bad_reason")
    # the CLI hands over argv bytes that are not UTF-8 as lone surrogates (surrogateescape)
    return check_text(reason.strip(), "reason", code="bad_reason")


def check_phone(phone: object) -> str:
    number = parse_e164(phone) if isinstance(phone, str) else None
    if number is None:
        raise BadRequest("phone must be an E.164 number like +84901234567", code="bad_phone")
    return number


async def place(
    conn: Conn,
    vault: PhoneVault,
    actor: str,
    *,
    call_id: uuid.UUID | None = None,
    phone: str | None = None,
    reason: str,
    case_ref: str | None = None,
) -> Placed:
    reason = check_reason(reason)
    if (call_id is None) == (phone is None):
        raise BadRequest("give exactly one of call_id or phone", code="bad_hold_target")
    if case_ref is not None and (not isinstance(case_ref, str) or len(case_ref) > 200):
        raise BadRequest("case_ref must be text of at most 200 characters", code="bad_case_ref")
    if case_ref is not None:
        check_text(case_ref, "case_ref", code="bad_case_ref")
    async with conn.transaction():
        # Lock the recordings first, then insert the hold: a purge holding one of them is
        # waited for (and then seen to have purged it), and no call row is locked before the
        # recordings, which is the order a purge takes them in (a deadlock otherwise).
        if call_id is not None:
            if not await conn.fetchval(Q["call_exists"], call_id):
                raise NotFound(f"no call {call_id}")
            recordings = await conn.fetch(Q["lock_recordings_of_call"], call_id)
            row = await conn.fetchrow(
                Q["insert_hold"], call_id, None, None, reason, case_ref, actor
            )
            calls = [call_id]
            erased_rows = await conn.fetch(Q["erasure_of_call"], call_id)
        else:
            number = check_phone(phone)
            hashes = vault.lookup_hashes(number)
            recordings = await conn.fetch(Q["lock_recordings_of_phone"], hashes)
            row = await conn.fetchrow(
                Q["insert_hold"],
                None,
                vault.lookup_hash(number),
                vault.encrypt(number),
                reason,
                case_ref,
                actor,
            )
            calls = [r["id"] for r in await conn.fetch(Q["calls_of_phone"], hashes)]
            # the erased calls no longer carry the number; their request's receipt does
            erased_rows = await conn.fetch(Q["erasures_of_subject"], vault.erasure_digests(number))
        assert row is not None
        erased = [_erased_json(r) for r in erased_rows]
        hold_id: uuid.UUID = row["id"]
        held = [str(r["id"]) for r in recordings if r["state"] in ("stored", "pending")]
        # erased recordings reported with their erasure are not listed as purged as well
        reported = {rid for e in erased for rid in e["recording_ids"]}
        gone = [
            str(r["id"])
            for r in recordings
            if r["state"] == "purged" or (r["state"] == "erased" and str(r["id"]) not in reported)
        ]
        for cid in calls:
            await ledger.append(
                conn,
                cid,
                [
                    NewEvent(
                        "hold_placed",
                        {
                            "hold_id": str(hold_id),
                            "reason": reason,
                            "case_ref": case_ref,
                            "on": "call" if call_id else "phone",
                        },
                        dedupe_key=f"hold_placed:{hold_id}",
                    )
                ],
            )
        await audit.record(
            conn,
            actor,
            "hold_placed",
            "hold",
            str(hold_id),
            {
                "call_id": str(call_id) if call_id else None,
                "phone": mask_phone(phone) if phone else None,
                "reason": reason,
                "case_ref": case_ref,
                "held_recordings": len(held),
                "already_purged": len(gone),
                "already_erased": len(erased),
            },
        )
    return Placed(hold_id, held, gone, erased)


async def release(conn: Conn, vault: PhoneVault, hold_id: uuid.UUID, actor: str) -> None:
    async with conn.transaction():
        row = await conn.fetchrow(Q["release_hold"], hold_id, actor)
        if row is None:
            if await conn.fetchrow(Q["hold_by_id"], hold_id) is None:
                raise NotFound(f"no hold {hold_id}")
            raise BadRequest(f"hold {hold_id} is already released", code="already_released")
        if row["call_id"] is not None:
            calls = [row["call_id"]]
        else:
            calls = [r["id"] for r in await conn.fetch(Q["calls_of_phone"], [row["phone_hash"]])]
        for cid in calls:
            await ledger.append(
                conn,
                cid,
                [
                    NewEvent(
                        "hold_released",
                        {"hold_id": str(hold_id)},
                        dedupe_key=f"hold_released:{hold_id}",
                    )
                ],
            )
        await audit.record(conn, actor, "hold_released", "hold", str(hold_id), {})


def hold_json(row: Any, vault: PhoneVault) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "call_id": str(row["call_id"]) if row["call_id"] else None,
        "on": "phone" if row["on_phone"] else "call",
        # the number held, masked: never the whole of it (None once erased)
        "phone": vault.masked(row["phone_enc"]) if row["on_phone"] else None,
        "reason": row["reason"],
        "case_ref": row["case_ref"],
        "placed_by": row["placed_by"],
        "placed_at": row["placed_at"].isoformat(),
        "released_by": row["released_by"],
        "released_at": row["released_at"].isoformat() if row["released_at"] else None,
        "active": row["released_at"] is None,
    }


async def list_holds(
    conn: Conn,
    vault: PhoneVault,
    *,
    include_released: bool,
    limit: int,
    after: tuple[bool, datetime, uuid.UUID] | None = None,
) -> list[dict[str, Any]]:
    """Active holds first, then released, newest first; ``after``: the (released,
    placed_at, id) of the previous page's last hold (keyset pagination)."""
    released, placed_at, hold_id = after or (None, None, None)
    rows = await conn.fetch(Q["list_holds"], include_released, limit, released, placed_at, hold_id)
    return [hold_json(r, vault) for r in rows]
