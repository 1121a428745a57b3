"""Data-subject requests: access, correct, erase, withdraw, restrict, on the legal clock.

A request is recorded with its deadlines (``acknowledge_by`` and ``due_at``, computed by
:mod:`retention.clock` from its ``received_at`` and the tenant's policy; "now" is the
database's) and, except a restriction, carried out by a ``dsar`` job, so any replica can do it
and a crash loses nothing. Compliance acts on it: ``acknowledge`` (once), ``extend`` (once, with
a reason, at most the policy's extension), ``reject`` (with a reason), ``lift`` (a restriction).

- access: a zip bundle (``request.json``, ``calls.json`` with each call's consent events and its
  recordings' metadata, the audio files, and ``receipts/`` with each call's signed consent
  receipt and the tenant's public keys to check them offline) stored in the object store,
  downloadable by compliance through a short-lived link until ``CALLVAULT_BUNDLE_TTL`` has
  passed (by the database's clock); the purge then removes it.
- correct: the subject's statement attached to the calls they name (a ``subject_statement``
  ledger event on each; the text itself is personal data, kept encrypted with the request and
  destroyed if the subject is erased; the event carries the SHA-256 of that ciphertext), or
  those calls unlinked from their number (``subject_unlinked``: the call and its recordings
  stay, attributed to no one).
- erase: the person's recordings deleted from the store and marked ``erased``, their number
  destroyed from every call, each call marked erased (``erased_at``, ``erased_by``) and given an
  ``erased`` ledger event (the ledger proves what happened without holding the number). A hold
  wins: held calls wait, the request shows ``waiting_for_hold``, and the job comes back until
  the hold is released.
- withdraw: the number goes on the do-not-record list (calls are no longer asked or recorded),
  then its recordings are erased as above.
- restrict: in force at once (``in_force``): the number's recordings are kept (the purge leaves
  them) but playback and access bundles answer 403 ``restricted`` until it is lifted.

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
import datetime as dt
import hashlib
import json
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from retention import clock
from retention.clock import CLOCK_STOPPED, CLOSED, ClockPolicy, Kind, Status
from retention.holds import check_phone
from service import jobs, ledger
from service.consent.gate import add_to_do_not_record
from service.db import Conn, queries
from service.errors import BadRequest, CallvaultError, Conflict, Forbidden, NotFound
from service.errors import BundleGone as BundleGone
from service.intake import possible_objects
from service.jobs import Defer
from service.jobs.registry import job_kind
from service.jobs.worker import JobContext
from service.ledger import NewEvent, visibility
from service.observability import audit
from service.ops.workdir import sha256_of, work_dir
from service.personal.numbers import PhoneVault, mask_phone
from service.receipts import bundle as receipts
from service.storage import ObjectStore, StorageError, handout, recording_keys
from service.storage.registry import StoreRegistry, TenantStore

Q = queries.load("retention")
KINDS = tuple(k.value for k in Kind)


class Channel(StrEnum):
    """How a request came in (dsar_requests.channel; NULL on requests from before it was
    recorded)."""

    PHONE = "phone"
    EMAIL = "email"
    LETTER = "letter"
    IN_PERSON = "in_person"
    WEB = "web"


CHANNELS = tuple(c.value for c in Channel)
STATUSES = tuple(s.value for s in Status)
JOB_KIND = "dsar"
ERASING_KINDS = (Kind.ERASE, Kind.WITHDRAW)
# An erasure waiting for an intake job polls this often (or at its retry interval if shorter).
INTAKE_WAIT_S = 5.0
# Law 91/2025/QH15 and Decree 356/2025 took effect on 1 January 2026 (Vietnam's time): a request
# said to be received before then is a typing mistake (0001-01-02 would be 2000 years overdue),
# not one this clock governs. A fixed date, not "a year ago": a backlog entered late still fits.
# the longest "due within" asked for (the API's pattern: 1 to 5 digits and a unit, so 99999w);
# more would overflow PostgreSQL's interval instead of being refused
MAX_DUE_WITHIN_S = 99999 * 7 * 86400
LAW_IN_FORCE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=7)))
MAX_STATEMENT_CHARS = 4000


class Correction(StrEnum):
    """What a ``correct`` request does to the calls it names."""

    STATEMENT = "statement"  # attach the subject's statement
    UNLINK = "unlink"  # the call is not theirs: take their number off it


class BundleRemoved(StrEnum):
    """Why an access bundle left the store."""

    EXPIRED = "expired"
    ERASED = "erased"


class Restricted(Forbidden):
    """The subject restricted processing: no playback or export until the restriction is
    lifted."""

    code = "restricted"


@dataclass(frozen=True)
class Bundle:
    """What a run uploaded: the completion records it, so the request names these bytes."""

    sha256: str
    size: int


def bundle_key_of(request_id: uuid.UUID, run: str) -> str:
    """A run's own key for its bundle: two runs of one request never write the same object."""
    return f"dsar/{request_id}/{run}.zip"


async def clock_policy(conn: Conn, default_tenant: ClockPolicy | None = None) -> ClockPolicy:
    """The acting tenant's clock: the tenant ``default``'s from the settings (given), any
    other's from its stored policy over the law's defaults."""
    row = await conn.fetchrow(Q["tenant_policy"])
    if row is None:
        raise BadRequest("a data-subject request belongs to one tenant; none is selected")
    if row["id"] == "default":
        return default_tenant or ClockPolicy()
    return clock.policy_from(row["policy"])


def _kind(kind: object) -> Kind:
    try:
        return Kind(str(kind))
    except ValueError:
        raise BadRequest(
            f"kind must be one of {', '.join(KINDS)}, got {str(kind)[:40]!r}", code="bad_kind"
        ) from None


def _received(received_at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    if received_at is None:
        return now
    if received_at.tzinfo is None:
        raise BadRequest(
            "received_at needs a time zone (like 2027-02-03T09:30:00+07:00)", code="bad_received_at"
        )
    if received_at > now:
        raise BadRequest(
            f"received_at {received_at.isoformat()} is in the future (the database's clock "
            f"says {now.isoformat()})",
            code="received_in_future",
        )
    if received_at < LAW_IN_FORCE:
        raise BadRequest(
            f"received_at {received_at.isoformat()} is before {LAW_IN_FORCE.isoformat()}, when "
            "Law 91/2025/QH15 took effect",
            code="received_before_law",
        )
    return received_at


async def _no_calls(conn: Conn, vault: PhoneVault, number: str) -> CallvaultError:
    erased = await conn.fetch(Q["erasures_of_subject"], vault.erasure_digests(number))
    if erased:
        last = erased[-1]
        return NotFound(
            f"no calls of this number: its {len(erased)} call(s) were erased by request "
            f"{last['erased_by']} at {last['erased_at'].isoformat()}",
            code="no_calls",
        )
    return NotFound("no calls of this number in this tenant", code="no_calls")


def _correction(
    kind: Kind,
    call_ids: Sequence[uuid.UUID],
    statement: str | None,
    unlink: bool,
    calls: list[uuid.UUID],
) -> tuple[Correction | None, list[uuid.UUID]]:
    if kind is not Kind.CORRECT:
        if call_ids or statement is not None or unlink:
            raise BadRequest(
                "call_ids, statement and unlink belong to a correct request", code="bad_request"
            )
        return None, []
    if not call_ids:
        raise BadRequest("a correct request names the calls it corrects (call_ids)")
    if (statement is None) == (not unlink):
        raise BadRequest("a correct request gives a statement or asks to unlink, one of them")
    if statement is not None and not statement.strip():
        raise BadRequest("the statement is empty")
    if statement is not None and len(statement) > MAX_STATEMENT_CHARS:
        raise BadRequest(f"the statement is longer than {MAX_STATEMENT_CHARS} characters")
    named = list(dict.fromkeys(call_ids))
    foreign = [c for c in named if c not in calls]
    if foreign:
        # the same answer for another tenant's call, an erased one, or another person's
        raise NotFound(
            f"call {foreign[0]} is not a call of this number", code="not_the_subjects_call"
        )
    return (Correction.STATEMENT if statement is not None else Correction.UNLINK), named


async def create(
    conn: Conn,
    vault: PhoneVault,
    *,
    kind: object,
    phone: object,
    actor: str,
    clock_defaults: ClockPolicy | None = None,
    received_at: dt.datetime | None = None,
    call_ids: Sequence[uuid.UUID] = (),
    statement: str | None = None,
    unlink: bool = False,
    channel: str | None = None,
    sealed: bool = False,
) -> uuid.UUID:
    """Receive a request: its deadlines set, a ``dsar_received`` event on each of the number's
    calls, and its job queued (a restriction is in force at once). Everything is checked
    before anything is written: an unknown kind, a number with no calls (a withdrawal excepted:
    never being recorded needs no call), a ``received_at`` in the future, a ``channel`` (how it
    came in) not a :class:`Channel`. ``sealed`` (access only): the bundle hands out the
    recordings as stored with their data keys wrapped by the tenant's own KMS key (refused,
    409, for a tenant without one or while a recording is not sealed under it)."""
    kind = _kind(kind)
    if sealed and kind is not Kind.ACCESS:
        raise BadRequest("sealed: only an access request's bundle can be sealed", code="bad_sealed")
    number = check_phone(phone)
    if channel is not None and channel not in CHANNELS:
        raise BadRequest(f"channel: one of {', '.join(CHANNELS)}", code="bad_channel")
    async with conn.transaction():
        now: dt.datetime = await conn.fetchval(Q["db_now"])
        received = _received(received_at, now)
        policy = await clock_policy(conn, clock_defaults)
        hashes = vault.lookup_hashes(number)
        calls = [r["id"] for r in await conn.fetch(Q["calls_of_phone"], hashes)]
        if not calls and kind is not Kind.WITHDRAW:
            raise await _no_calls(conn, vault, number)
        correction, named = _correction(kind, call_ids, statement, unlink, calls)
        if sealed:
            tenant = await conn.fetchval("SELECT current_setting('callvault.tenant', true)")
            recs = [r["id"] for r in await conn.fetch(Q["stored_recordings_of_calls"], calls)]
            await handout.sealed_keys(conn, str(tenant), recs)
        if kind is Kind.RESTRICT:
            # two restrictions of one number would need two lifts: the second is refused (two
            # received at once are taken one after the other)
            await conn.execute(Q["lock_subject"], vault.lookup_hash(number))
            existing = await conn.fetchval(Q["restriction_in_force"], hashes)
            if existing is not None:
                raise Conflict(
                    f"the number's processing is restricted already, by request {existing}",
                    code="already_restricted",
                )
        deadlines = clock.deadlines(received, kind, policy)
        restricting = kind is Kind.RESTRICT
        request_id: uuid.UUID = await conn.fetchval(
            Q["insert_request"],
            kind.value,
            vault.lookup_hash(number),
            vault.encrypt(number),
            actor,
            received,
            deadlines.acknowledge_by,
            deadlines.due_at,
            vault.erasure_digest(number) if kind in ERASING_KINDS else None,
            # what set the deadlines, so an inspector can recompute them
            {**policy.as_json(), "days_for_this_kind": policy.days_for(kind)},
            (Status.IN_FORCE if restricting else Status.RECEIVED).value,
            calls if restricting else named,
            correction.value if correction else None,
            vault.encrypt(statement) if statement is not None else None,
            channel,
            sealed,
        )
        events = [
            NewEvent(
                "dsar_received",
                {"request_id": str(request_id), "kind": kind.value},
                dedupe_key=f"dsar_received:{request_id}",
            )
        ]
        if restricting:
            events.append(
                NewEvent(
                    "processing_restricted",
                    {"request_id": str(request_id)},
                    dedupe_key=f"processing_restricted:{request_id}",
                )
            )
        if calls:
            await ledger.append_many(conn, {cid: events for cid in calls})
        if not restricting:
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
            {
                "kind": kind.value,
                "phone": mask_phone(number),
                "received_at": received.isoformat(),
                "acknowledge_by": deadlines.acknowledge_by.isoformat(),
                "due_at": deadlines.due_at.isoformat(),
                **({"calls": [str(c) for c in named], "correction": correction} if named else {}),
            },
        )
    return request_id


async def _lock(conn: Conn, request_id: uuid.UUID) -> Any:
    row = await conn.fetchrow(Q["lock_request_for_action"], request_id)
    if row is None:
        raise NotFound(f"no data-subject request {request_id}")
    return row


def _closed(row: Any, action: str) -> None:
    if row["status"] in CLOSED:
        raise Conflict(
            f"request {row['id']} is {row['status']}: it cannot be {action}", code="request_closed"
        )


async def acknowledge(conn: Conn, request_id: uuid.UUID, actor: str) -> None:
    """The subject has been told their request arrived (once)."""
    async with conn.transaction():
        row = await _lock(conn, request_id)
        _closed(row, "acknowledged")
        if row["acknowledged_at"] is not None:
            raise Conflict(
                f"request {request_id} was acknowledged at {row['acknowledged_at'].isoformat()}",
                code="already_acknowledged",
            )
        await conn.execute(Q["acknowledge_request"], request_id, actor)
        late = row["acknowledge_by"] is not None and row["db_now"] > row["acknowledge_by"]
        await audit.record(
            conn, actor, "dsar_acknowledged", "dsar", str(request_id), {"late": late}
        )


async def extend(
    conn: Conn,
    request_id: uuid.UUID,
    actor: str,
    *,
    days: int,
    reason: str,
    clock_defaults: ClockPolicy | None = None,
) -> dt.datetime:
    """The one extension: ``days`` more (at most the policy's, itself at most 15), with a
    reason, given before the deadline has passed. Returns the new deadline."""
    reason = reason.strip()
    if not reason:
        raise BadRequest("an extension needs a reason", code="reason_required")
    async with conn.transaction():
        row = await _lock(conn, request_id)
        _closed(row, "extended")
        if row["status"] == Status.IN_FORCE:
            raise Conflict("a restriction in force has no deadline to extend", code="in_force")
        if row["extended_at"] is not None:
            raise Conflict(
                f"request {request_id} was extended already (by {row['extension_days']} days "
                f"at {row['extended_at'].isoformat()}): the law allows one extension",
                code="already_extended",
            )
        policy = await clock_policy(conn, clock_defaults)
        if isinstance(days, bool) or not 1 <= days <= policy.extension_days:
            raise BadRequest(
                f"an extension is 1 to {policy.extension_days} days, got {days}",
                code="extension_too_long",
            )
        if row["due_at"] <= row["db_now"]:
            raise Conflict(
                f"the deadline {row['due_at'].isoformat()} is in the past: an extension is "
                "given before the deadline",
                code="deadline_in_past",
            )
        new_due = clock.extended_due_at(row["due_at"], days, policy)
        await conn.execute(Q["extend_request"], request_id, new_due, days, reason, actor)
        await audit.record(
            conn,
            actor,
            "dsar_extended",
            "dsar",
            str(request_id),
            {
                "days": days,
                "reason": reason,
                "due_before": row["due_at"].isoformat(),
                "due_at": new_due.isoformat(),
            },
        )
    return new_due


async def reject(conn: Conn, request_id: uuid.UUID, actor: str, *, reason: str) -> None:
    """Close a request without carrying it out. A restriction in force is refused: it ends
    only by :func:`lift`, which says so in the calls' ledgers."""
    reason = reason.strip()
    if not reason:
        raise BadRequest("a rejection needs a reason", code="reason_required")
    async with conn.transaction():
        row = await _lock(conn, request_id)
        _closed(row, "rejected")
        if row["kind"] == Kind.RESTRICT and row["status"] == Status.IN_FORCE:
            raise Conflict(
                f"the restriction {request_id} is in force: lift it (dsar lift / "
                "POST /api/dsar/{id}/lift) instead of rejecting it",
                code="restriction_in_force",
            )
        if row["kind"] in ERASING_KINDS and row["status"] == Status.IN_PROGRESS:
            raise Conflict(
                f"request {request_id} is erasing the subject's data already: it cannot be "
                "rejected",
                code="in_progress",
            )
        await conn.execute(Q["reject_request"], request_id, reason, actor)
        await audit.record(
            conn, actor, "dsar_rejected", "dsar", str(request_id), {"reason": reason}
        )


async def lift(conn: Conn, request_id: uuid.UUID, actor: str) -> None:
    """End a restriction: playback and export are allowed again, the purge may take what
    has expired."""
    async with conn.transaction():
        row = await _lock(conn, request_id)
        if row["kind"] != Kind.RESTRICT:
            raise Conflict(
                f"request {request_id} is a {row['kind']} request, not a restriction",
                code="not_a_restriction",
            )
        if row["status"] != Status.IN_FORCE:
            raise Conflict(
                f"the restriction {request_id} is {row['status']}, not in force",
                code="request_closed",
            )
        await conn.execute(Q["lift_restriction"], request_id, actor)
        event = NewEvent(
            "restriction_lifted",
            {"request_id": str(request_id)},
            dedupe_key=f"restriction_lifted:{request_id}",
        )
        if row["call_ids"]:
            await ledger.append_many(conn, {cid: [event] for cid in row["call_ids"]})
        await audit.record(conn, actor, "dsar_lifted", "dsar", str(request_id), {})


async def check_call_not_restricted(conn: Conn, call_id: uuid.UUID) -> None:
    if await conn.fetchval(Q["call_restricted"], call_id):
        raise Restricted(
            "the data subject has restricted the processing of this call: no playback or "
            "export until the restriction is lifted"
        )


async def check_subject_not_restricted(conn: Conn, request_id: uuid.UUID) -> None:
    """An access request's bundle is an export: refused while the subject's restriction is in
    force."""
    if await conn.fetchval(Q["request_subject_restricted"], request_id):
        raise Restricted(
            "the data subject has restricted the processing of their data: no export until "
            "the restriction is lifted"
        )


async def check_link_not_restricted(conn: Conn, purpose: str) -> None:
    """A link handed out before a restriction came into force opens nothing after it: a
    playback link (``playback:RECORDING``) or an access bundle's (``dsar_bundle:REQUEST``)."""
    what, _, ident = purpose.partition(":")
    try:
        target = uuid.UUID(ident)
    except ValueError:
        return
    if what == "playback":
        call_id = await conn.fetchval(Q["call_of_recording"], target)
        if call_id is not None:
            await check_call_not_restricted(conn, call_id)
    elif what == "dsar_bundle":
        await check_subject_not_restricted(conn, target)


def _seconds(delta: dt.timedelta | None) -> int | None:
    return None if delta is None else int(delta.total_seconds())


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def request_json(row: Any) -> dict[str, Any]:
    """A request as the API and ``dsar list`` show it, with the time left on each deadline by
    the database's clock (``null`` where none runs: acknowledged, closed, or in force)."""
    now: dt.datetime = row["db_now"]
    running = row["status"] not in CLOCK_STOPPED
    ack_open = running and row["acknowledged_at"] is None and row["acknowledge_by"] is not None
    acknowledge_left = _seconds(row["acknowledge_by"] - now) if ack_open else None
    complete_left = _seconds(row["due_at"] - now) if running else None
    extension = None
    if row["extended_at"] is not None:
        extension = {
            "days": row["extension_days"],
            "reason": row["extension_reason"],
            "by": row["extended_by"],
            "at": row["extended_at"].isoformat(),
            "due_before": row["due_before_extension"].isoformat(),
        }
    return {
        "id": str(row["id"]),
        "kind": row["kind"],
        "status": row["status"],
        "channel": row["channel"],
        "received_at": row["received_at"].isoformat(),
        "acknowledge_by": _iso(row["acknowledge_by"]),
        "acknowledged_at": _iso(row["acknowledged_at"]),
        "due_at": row["due_at"].isoformat(),
        "time_left": {"acknowledge_s": acknowledge_left, "complete_s": complete_left},
        "overdue": {
            "acknowledge": acknowledge_left is not None and acknowledge_left < 0,
            "complete": complete_left is not None and complete_left < 0,
        },
        "extension": extension,
        "clock": row["clock"],
        "completed_at": _iso(row["completed_at"]),
        "requested_by": row["requested_by"],
        "rejected_reason": row["rejected_reason"],
        "lifted_at": _iso(row["lifted_at"]),
        "call_ids": [str(c) for c in row["call_ids"]],  # named (correct) or restricted
        "correction": row["correction"],
        "has_statement": row["has_statement"],
        "bundle_ready": row["bundle_key"] is not None,
        "bundle_expires_at": _iso(row["bundle_expires_at"]),
        "bundle_removed": row["bundle_removed_reason"],
        "result": row["result"],
    }


async def get(conn: Conn, request_id: uuid.UUID) -> Any:
    row = await conn.fetchrow(Q["request_by_id"], request_id)
    if row is None:
        raise NotFound(f"no data-subject request {request_id}")
    return row


def registry_of(stores: ObjectStore | StoreRegistry) -> StoreRegistry:
    """The registry to resolve stores with (a caller handed one plain store shares it)."""
    return stores if isinstance(stores, StoreRegistry) else StoreRegistry.wrapping(stores)


async def list_requests(
    conn: Conn,
    *,
    statuses: Sequence[str] | None = None,
    due_within_s: float | None = None,
    kind: str | None = None,
    limit: int = 100,
    after: tuple[bool, dt.datetime, dt.datetime, uuid.UUID] | None = None,
) -> list[Any]:
    """Requests by deadline, soonest first; ``due_within_s``: only open ones with a deadline
    (acknowledgement or completion) within that many seconds, overdue ones included;
    ``after``: the previous page's last row's (sort_closed, sort_deadline, received_at, id)
    (keyset pagination)."""
    return list(
        await conn.fetch(
            Q["list_requests"],
            list(statuses) if statuses else None,
            due_within_s,
            kind,
            limit,
            *(after or (None, None, None, None)),
        )
    )


async def bundle_for_link(conn: Conn, request_id: uuid.UUID) -> str:
    """The key of the request's bundle if it may still be handed out (database clock)."""
    return (await bundle_location(conn, request_id))[0]


async def bundle_location(conn: Conn, request_id: uuid.UUID) -> tuple[str, str]:
    """The key and the store (``shared``, ``s3://BUCKET``) of the request's bundle if it may
    still be handed out (database clock)."""
    await get(conn, request_id)
    await check_subject_not_restricted(conn, request_id)
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
    return str(row["bundle_key"]), str(row["bundle_store"])


async def run(
    conn: Conn,
    vault: PhoneVault,
    stores: ObjectStore | StoreRegistry,
    request_id: uuid.UUID,
    tmp_root: Path,
    *,
    retry_s: float,
    bundle_ttl_s: int = 7 * 86400,
) -> str:
    """Carry the request out as far as the law lets; returns its status. Objects go to and
    come from the stores of the request's tenant (``stores``: a registry, or one store)."""
    registry = registry_of(stores)
    row = await get(conn, request_id)
    if row["status"] in CLOCK_STOPPED:
        return str(row["status"])  # done, rejected meanwhile, or a restriction (no job)
    if row["phone_enc"] is None:
        raise BadRequest("the request no longer holds a number", code="no_phone")
    number = vault.decrypt(row["phone_enc"])
    hashes = vault.lookup_hashes(number)
    if row["kind"] == Kind.CORRECT:
        return await _correct(conn, row, hashes)
    call_ids = [r["id"] for r in await conn.fetch(Q["calls_of_phone"], hashes)]
    tenant: str = row["tenant_id"]
    where = await registry.for_tenant(tenant, conn)
    if row["kind"] == "access":
        # This run's own key, committed before anything is uploaded under it: another runner
        # of this request (the CLI's "here and now" beside the dsar job, a rerun after a lost
        # lease, a second replica) writes its own, so no upload replaces the object a
        # completion named, and an upload whose run never commits can still be found.
        key = where.key(bundle_key_of(request_id, uuid.uuid4().hex))
        announced = await conn.fetchrow(Q["announce_bundle_upload"], request_id, key, where.ref)
        if announced is None:  # deleted meanwhile (its tenant offboarded): nothing uploaded
            raise NotFound(f"no data-subject request {request_id}")
        if not announced["announced"]:
            return str(announced["status"])  # closed meanwhile (by another run, say)
        bundle = await _access_bundle(
            conn,
            vault,
            registry,
            tenant,
            where,
            key,
            request_id,
            call_ids,
            tmp_root,
            sealed_out=bool(row["bundle_sealed"]),
        )
        async with conn.transaction():
            # An erasure of the number that committed while the bundle was built closed this
            # request and cleared its number (or it was rejected), or another run of it
            # completed first: this run lost, and deletes what it uploaded.
            current = await conn.fetchrow(Q["lock_request"], request_id)
            if current is None:  # deleted meanwhile (its tenant offboarded): so is the upload
                await _delete_or_raise(where.store, [key])
                raise NotFound(f"no data-subject request {request_id}")
            if current["status"] in CLOSED or current["phone_enc"] is None:
                await _delete_or_raise(where.store, [key])
                await conn.execute(Q["forget_bundle_upload"], request_id, key)
                return str(current["status"])
            # the uploads of other runs that have not committed (or never will: a crash) go,
            # each from the store it went to; one still running deletes its own again at its
            # commit, which it loses
            others = [(ref, k) for ref, k in listed_uploads(current) if k != key]
            if others:
                await _delete_located(conn, registry, tenant, others)
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
            completed = await conn.fetchval(
                Q["complete_access_request"],
                request_id,
                {
                    "calls": len(call_ids),
                    "bundle_sha256": bundle.sha256,
                    "bundle_size": bundle.size,
                },
                key,
                bundle_ttl_s,
                where.ref,
            )
            assert completed is not None  # the row is locked and was seen open
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
        outcome = await _erase_call(conn, registry, tenant, where, cid, request_id)
        erased += outcome == "erased"
        waiting += outcome == "held"
    bundles = await _erase_elsewhere(conn, registry, tenant, hashes, request_id)
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
            # nothing is left to restrict: a restriction in force ends with the erasure
            await conn.execute(Q["supersede_restrictions_of_phone"], hashes, str(request_id))
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


async def _correct(conn: Conn, row: Any, hashes: list[bytes]) -> str:
    """Attach the statement to the named calls, or unlink them from the number, in one
    transaction with the request's completion."""
    request_id = str(row["id"])
    async with conn.transaction():
        current = await conn.fetchrow(Q["lock_request"], row["id"])
        assert current is not None
        if current["status"] in CLOSED:
            return str(current["status"])
        calls = sorted(row["call_ids"])
        if row["correction"] == Correction.STATEMENT:
            digest = hashlib.sha256(bytes(row["statement_enc"])).hexdigest()
            event = NewEvent(
                "subject_statement",
                {"request_id": request_id, "statement_sha256": digest, "kept": "encrypted"},
                dedupe_key=f"subject_statement:{request_id}",
            )
            for cid in calls:
                await ledger.append(conn, cid, [event])
            unlinked = 0
        else:
            unlinked = 0
            for cid in calls:
                # before the event: ledger.append locks the call, the update keeps it locked
                status = await conn.execute(Q["unlink_call"], cid, hashes)
                unlinked += status.endswith(" 1")
                await ledger.append(
                    conn,
                    cid,
                    [
                        NewEvent(
                            "subject_unlinked",
                            {"request_id": request_id, "phone_data": "removed from the call"},
                            dedupe_key=f"subject_unlinked:{request_id}",
                        )
                    ],
                )
        result = {"calls": len(calls), "correction": row["correction"], "unlinked": unlinked}
        await conn.execute(Q["set_request_status"], row["id"], "completed", result, None)
        await audit.record(
            conn,
            "system:dsar",
            "dsar_completed",
            "dsar",
            request_id,
            {"kind": "correct", **result},
        )
    return "completed"


def listed_uploads(row: Any) -> list[tuple[str, str]]:
    """(store reference, key) of each upload a request's bundle runs announced and have not
    committed (``bundle_uploads``, migration 0029): each is deleted from the store it went to,
    which need not be the tenant's store of today."""
    return [(str(ref), str(key)) for key, ref in dict(row["bundle_uploads"]).items()]


async def _delete_or_raise(store: ObjectStore, keys: list[str]) -> None:
    refused = await store.delete_many(keys)
    if refused:
        raise StorageError(f"the store refused to delete {len(refused)} object(s)")


async def _delete_located(
    conn: Conn, registry: StoreRegistry, tenant: str, located: list[tuple[str, str]]
) -> None:
    """Delete (store reference, key) pairs, each from the store its row names."""
    by_store: dict[str, list[str]] = {}
    for ref, key in located:
        if key not in by_store.setdefault(ref, []):
            by_store[ref].append(key)
    for ref, keys in by_store.items():
        await _delete_or_raise(await registry.for_object(tenant, ref, conn), keys)


async def _erase_elsewhere(
    conn: Conn,
    registry: StoreRegistry,
    tenant: str,
    hashes: list[bytes],
    request_id: uuid.UUID,
) -> int:
    """Every access bundle of the number deleted, and the number cleared from its other
    requests (an open access request is closed: it must hand nothing out) and from released
    holds. Open erase and withdraw requests keep it until they finish their own work; active
    holds keep it (a legal obligation). Returns how many bundles were deleted."""
    deleted = 0
    async with conn.transaction():
        others = await conn.fetch(Q["lock_other_requests_of_phone"], hashes, request_id)
        # an upload that has not reached its run's commit goes too (its key was announced)
        located = [pair for r in others for pair in listed_uploads(r)]
        located += [(r["bundle_store"], r["bundle_key"]) for r in others if r["bundle_key"]]
        if located:
            await _delete_located(conn, registry, tenant, located)
        for r in others:
            deleted += r["bundle_key"] is not None
            if r["kind"] == "access" and r["status"] not in CLOSED:
                await conn.execute(Q["supersede_access_request"], r["id"], str(request_id))
            elif r["kind"] == "access" or r["status"] in CLOSED:
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


async def erase_call(
    conn: Conn,
    registry: StoreRegistry,
    tenant: str,
    call_id: uuid.UUID,
    erased_by: uuid.UUID,
) -> str:
    """Erase one call as a request does (its recordings' objects from their stores, the rows
    marked ``erased``, the number destroyed, an ``erased`` ledger event naming ``erased_by``);
    ``"held"`` if an active hold keeps it, else ``"erased"``. Used by ``tenant offboard``."""
    where = await registry.for_tenant(tenant, conn)
    return await _erase_call(conn, registry, tenant, where, call_id, erased_by)


async def delete_located(
    conn: Conn, registry: StoreRegistry, tenant: str, located: list[tuple[str, str]]
) -> None:
    """Delete (store reference, key) pairs from their stores, or raise StorageError."""
    await _delete_located(conn, registry, tenant, located)


async def _erase_call(
    conn: Conn,
    registry: StoreRegistry,
    tenant: str,
    where: TenantStore,
    call_id: uuid.UUID,
    request_id: uuid.UUID,
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
        located = [
            (r["object_store"], r["object_key"])
            for r in recordings
            if r["state"] == "stored" and r["object_key"]
        ]
        # an upload that never reached its commit (a crash, a job that gave up) goes too: from
        # the store its attempt announced, and from where the tenant's uploads go now
        for r in recordings:
            if r["state"] in ("pending", "failed", "erased"):
                located += possible_objects(tenant, where, r)
        # Shredding first (issue 17): with its data key gone, no copy of a recording can be
        # read (old versions, replicas, backups), whatever the store then does. In the same
        # transaction: a store that refuses leaves everything as it was, for the retry.
        await recording_keys.destroy(conn, [r["id"] for r in recordings], "erased")
        await _delete_located(conn, registry, tenant, located)
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
    registry: StoreRegistry,
    tenant: str,
    where: TenantStore,
    bundle_key: str,
    request_id: uuid.UUID,
    call_ids: list[uuid.UUID],
    tmp_root: Path,
    *,
    sealed_out: bool = False,
) -> Bundle:
    """Gather the person's data into a folder (audio streamed from the store to disk), zip it
    off the event loop, and store the zip under ``bundle_key`` (this run's own), checked as
    intake checks a recording (the request is completed on it, and the ledger says the person
    was given access). ``sealed_out``: the audio as stored, each with its data key wrapped by
    the tenant's KMS key (:mod:`service.storage.handout`)."""
    async with work_dir(tmp_root, "dsar-") as folder:
        await asyncio.to_thread((folder / "content" / "audio").mkdir, parents=True)
        calls: list[dict[str, Any]] = []
        for cid in call_ids:
            call = await conn.fetchrow(Q["call_for_bundle"], cid)
            assert call is not None
            recs = await conn.fetch(Q["recordings_for_bundle"], cid)
            # key destroyed, object not yet deleted (a purge the store refused): gone
            shredded = await recording_keys.shredded_among(conn, [r["id"] for r in recs])
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
                    "shredded": False,  # its data key destroyed: no copy can be opened
                }
                if r["id"] in shredded:
                    _as_shredded(item)
                elif r["state"] == "stored" and r["object_key"] and sealed_out:
                    name = f"audio/{r['id']}{Path(r['object_key']).suffix}.sealed"
                    store = await registry.for_object(tenant, r["object_store"], conn)
                    # sealed_keys leaves out a key a purge shredded since `shredded` was read
                    key = (await handout.sealed_keys(conn, tenant, [r["id"]])).get(r["id"])
                    path = folder / "content" / name
                    try:
                        if key is None:
                            raise recording_keys.KeyDestroyed(f"recording {r['id']}")
                        digest = await handout.fetch_sealed(conn, vault, store, r, path)
                    except recording_keys.KeyDestroyed:
                        _as_shredded(item)
                    else:
                        size = (await asyncio.to_thread(path.stat)).st_size
                        item["audio_file"] = name
                        item["sealed"] = handout.sealed_entry(
                            tenant, r["id"], key, name, digest, size
                        )
                elif r["state"] == "stored" and r["object_key"]:
                    name = f"audio/{r['id']}{Path(r['object_key']).suffix}"
                    store = await registry.for_object(tenant, r["object_store"], conn)
                    # the person gets their audio, not callvault's ciphertext (issue 17)
                    try:
                        await recording_keys.download_plain(
                            conn,
                            vault,
                            store,
                            r["object_key"],
                            r["id"],
                            folder / "content" / name,
                        )
                        item["audio_file"] = name
                    except recording_keys.KeyDestroyed:
                        _as_shredded(item)  # shredded by a purge since it was read
                entry["recordings"].append(item)
            calls.append(entry)
        # the subject's own signed receipts, checkable without us (service.receipts)
        await receipts.write_for_bundle(
            conn, vault, call_ids, str(request_id), folder / "content" / "receipts"
        )
        request = {
            "request_id": str(request_id),
            "kind": "access",
            "calls": len(calls),
            # the audio as stored, to be opened with the contact centre's own KMS key
            "sealed": sealed_out,
        }
        bundle = folder / "bundle.zip"
        digest = await asyncio.to_thread(_zip, folder / "content", bundle, request, calls)
        size = (await asyncio.to_thread(bundle.stat)).st_size
        proof = await where.store.put_file(
            bundle_key,
            bundle,
            sha256=digest,
            content_type="application/zip",
            metadata={"request-id": str(request_id)},
            content_sha256=digest,  # of the zip itself: the store checks it
        )
        # Metadata and size are what the request said, whatever bytes arrived: where the
        # store answers its own SHA-256 of what it holds, it must be the one sent. (The key is
        # this run's alone; an erasure of the number may have deleted it since, which the
        # commit sees.)
        stored = proof if proof is not None else await where.store.head(bundle_key)
        if stored is not None and stored.content_differs():
            raise StorageError(f"the access bundle {bundle_key} did not arrive whole")
        return Bundle(digest, size)


def _as_shredded(item: dict[str, Any]) -> None:
    """A recording whose key is destroyed is purged for the person: its retention ended and
    no copy can be opened any more (its object goes on the purge's next pass)."""
    item["state"] = "purged"
    item["shredded"] = True
    item["audio_file"] = None


def _zip(content: Path, bundle: Path, request: dict[str, Any], calls: list[Any]) -> str:
    (content / "request.json").write_text(json.dumps(request, indent=2))
    (content / "calls.json").write_text(json.dumps(calls, indent=2, ensure_ascii=False))
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(content.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(content).as_posix())
    return sha256_of(bundle)


@job_kind(JOB_KIND)
async def run_job(ctx: JobContext) -> None:
    """The ``dsar`` job: every step of a request is idempotent, so a rerun after a lost lease
    converges."""
    shared = ctx.resources
    async with ctx.pool.acquire() as conn:
        await run(
            conn,
            shared.vault,
            shared.stores,
            uuid.UUID(ctx.job.payload["request_id"]),
            shared.settings.home / "tmp",
            retry_s=shared.settings.purge_interval_s,
            bundle_ttl_s=shared.settings.bundle_ttl_s,
        )
