"""Consent receipts: one call's proof of consent, signed by its tenant, checkable offline.

A receipt is a JSON document: ``version``, ``tenant``, ``call`` (ids, masked subject,
direction, outcome), ``notice`` (what was played: prompt id, version, language, text, audio
SHA-256), ``events`` (the call's ledger events with their hashes), ``seal`` (the newest Merkle
seal covering the call), ``proof`` (the call's inclusion path in that seal), ``coverage`` (what
the seal covers, and when the next seal is due), ``key`` (the signing key's id and public key)
and ``signature``: Ed25519 by the tenant's receipt key over everything else in canonical JSON
(RFC 8785). The document itself is issued in canonical JSON, so that changing any byte of it
fails :func:`service.receipts.verify.verify`, which needs nothing but the file and the key.

Two views. ``full`` (compliance, for an inspector): every event with its position, previous
hash and dedupe key, so the verifier recomputes the call's chain up to the sealed head. The
``data_subject`` view (in the access bundle): the events the subject may see
(:mod:`service.ledger.visibility`) without hashes or positions, since a sealed head that matched
none of them would show the subject that something was withheld; signature, seal and inclusion
proof are checked all the same, and the inspector's full receipt of the call proves the chain.
"""

from __future__ import annotations

import base64
import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidTag

from prompts import catalogue
from service import ledger
from service.db import Conn
from service.errors import Conflict, NotFound
from service.ledger import Event, seals, visibility
from service.personal.numbers import PhoneVault, mask_phone
from service.receipts import keys

VERSION = 1
TYPE = "callvault.consent_receipt"
Q = keys.Q


class View(enum.StrEnum):
    FULL = "full"
    DATA_SUBJECT = "data_subject"


class Coverage(enum.StrEnum):
    SEALED = "sealed"  # every event of the call is under the seal
    PARTLY_SEALED = "partly_sealed"  # events after the seal wait for the next one
    NOT_SEALED = "not_sealed"  # no seal covers the call yet


def _time(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat(timespec="microseconds") if at else None


def _subject(vault: PhoneVault, blob: bytes | None) -> str | None:
    if blob is None:
        return None  # erased, or never known
    try:
        return mask_phone(vault.decrypt(bytes(blob)))
    except (InvalidTag, ValueError):
        return "***"


def _notice(events: list[Event]) -> dict[str, Any] | None:
    """What the subject was told: the first notice played (later plays repeat it), with the
    catalogue's text of that prompt version."""
    played = [e for e in events if e.type == "notice_played"]
    if not played:
        return None
    d = played[0].details
    prompt = next(
        (
            p
            for p in catalogue.catalogue()
            if p.id == d.get("prompt_id") and p.version == d.get("version")
        ),
        None,
    )
    return {
        "prompt_id": d.get("prompt_id"),
        "version": d.get("version"),
        "language": d.get("language"),
        "mode": d.get("mode"),
        "purpose": prompt.purpose if prompt else None,
        "text": prompt.text if prompt else None,
        "rendering": d.get("rendering"),
        "audio_sha256": d.get("sha256"),
        "times_played": len(played),
    }


def _full_event(e: Event) -> dict[str, Any]:
    return {**e.as_json(), "dedupe_key": e.dedupe_key}


def canonical(document: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON: the bytes that are signed, and the bytes that are issued."""
    return rfc8785.dumps(document)


def sign(document: dict[str, Any], signer: keys.Signer) -> dict[str, Any]:
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    unsigned["key"] = {"id": str(signer.key_id), "public_key": keys.public_b64(signer.public_key)}
    value = signer.private.sign(canonical(unsigned))
    return {
        **unsigned,
        "signature": {
            "algorithm": "Ed25519",
            "canonicalization": "RFC 8785",
            "value": base64.b64encode(value).decode("ascii"),
        },
    }


async def build(
    conn: Conn,
    vault: PhoneVault,
    tenant: str,
    call_id: uuid.UUID,
    *,
    seal_interval_s: float,
    view: View = View.FULL,
    request_id: str | None = None,
    leaves_cache: dict[int, seals.Leaves] | None = None,
) -> dict[str, Any]:
    """The signed receipt of one call of ``tenant``; :class:`NotFound` for a call the tenant
    does not have (another tenant's call included)."""
    call = await conn.fetchrow(Q["call_for_receipt"], call_id, tenant)
    if call is None:
        raise NotFound(f"no call {call_id}")
    tenant_name = await conn.fetchval(Q["tenant_name"], tenant)
    events = await ledger.events_of(conn, call_id)
    try:
        included = await seals.inclusion(conn, tenant, call_id, leaves_cache)
    except seals.SealBroken as exc:
        raise Conflict(
            f"the ledger does not verify ({exc}); run `callvault ledger verify`",
            code="ledger_broken",
        ) from None
    due = await seals.next_seal_due(conn, tenant, seal_interval_s)
    if included is None:
        status = Coverage.NOT_SEALED
    elif events and included.head_seq < events[-1].seq:
        status = Coverage.PARTLY_SEALED
    else:
        status = Coverage.SEALED
    coverage: dict[str, Any] = {
        "status": status.value,
        "next_seal_due_by": _time(due),
    }
    if view is View.FULL:
        shown = [_full_event(e) for e in events]
        coverage["sealed_through_seq"] = included.head_seq if included else None
    else:
        subject_events = visibility.view(events, visibility.Viewer.subject(request_id or "")).events
        shown = [{k: v for k, v in e.items() if k != "hash"} for e in subject_events]
        if included is not None:
            # judged by the events shown only: a withheld one after the seal must not show
            later = [e for e in events if e.seq > included.head_seq]
            shown_later = {e.hash.hex() for e in later} & {e["hash"] for e in subject_events}
            coverage["status"] = (Coverage.PARTLY_SEALED if shown_later else Coverage.SEALED).value
        coverage["sealed_until"] = _time(included.at) if included else None
    if status is Coverage.NOT_SEALED:
        coverage["note"] = (
            "no seal covers this call yet; ask for its receipt again after the next seal"
        )
    document: dict[str, Any] = {
        "version": VERSION,
        "type": TYPE,
        "view": view.value,
        "issued_at": _time(datetime.now(UTC)),
        "tenant": {"id": tenant, "name": tenant_name},
        "call": {
            "id": str(call["id"]),
            "platform": call["platform"],
            "platform_call_id": call["external_id"],
            "direction": call["direction"],
            "subject": _subject(vault, call["caller_enc"]),
            "contact_centre_number": call["called"],
            "started_at": _time(call["started_at"]),
            "ended_at": _time(call["ended_at"]),
            "outcome": call["outcome"],
            "erased_at": _time(call["erased_at"]),
        },
        "notice": _notice(events),
        "events": shown,
        "seal": included.seal_json() if included else None,
        "proof": included.proof_json() if included else None,
        "coverage": coverage,
    }
    return sign(document, await keys.signer(conn, vault, tenant))
