"""Pausing a call's recording while the caller reads a card number, and resuming it.

PCI DSS forbids keeping a card's security code in a recording, even encrypted; the agent desktop
or the IVR pauses the recording for the payment and resumes it after. The pause must really
happen at the platform before anyone relies on it, and no database connection may wait on
the platform (the pool is shared with every call's webhooks: ten agents pausing during a Twilio
slowdown must not leave a new call unrecorded), so the order is:

1. a short transaction locks the call's row, checks its state (consented, so recording; not
   ended; not already paused for a pause, paused for a resume; otherwise a 409 saying which) and
   claims the change in ``pause_claims``; if another pause or resume of the call is under way
   (any replica), the claim is refused and the answer is that 409 (two pauses at once: exactly
   one succeeds, and the platform is asked once). It commits: no connection, no lock held;
2. the platform is asked (``at_platform``: Twilio's REST API; nothing for a PBX, which paused
   its own recording and is reporting it, and then the three steps are one transaction);
3. a second short transaction appends ``recording_paused`` / ``recording_resumed`` to the
   call's ledger with the reason and the actor, and deletes the claim, together: a later check
   sees either the claim or the event. If the platform failed, the claim is deleted and no
   ledger event claims a pause that did not happen. The ledger is the pause's only record: the
   call's last pause or resume event says whether it is paused now.

A claim left by a replica that died mid-request stops counting after :data:`CLAIM_STALE_S`.

:func:`spans` turns a call's ledger into the pauses the QA page shows on the recording.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from service import ledger
from service.db import Conn, queries
from service.errors import BadRequest, CallvaultError, Conflict, NotFound
from service.errors import PlatformFailed as PlatformFailed
from service.errors import PlatformUnreachable as PlatformUnreachable
from service.ledger import NewEvent
from service.vocabulary import Outcome

log = logging.getLogger(__name__)
Q = queries.load("service.pauses")
MAX_REASON_CHARS = 500
# callvault's id (a UUID) or a platform's call id: printable ASCII without spaces, bounded
# A claim older than this is from a request that died (longer than any wait for a platform slot
# plus the platform's own timeout).
CLAIM_STALE_S = 60.0
_CALL_REF = re.compile(r"[\x21-\x7e]{1,128}")


class Action(enum.Enum):
    PAUSE = "pause"
    RESUME = "resume"

    @property
    def event(self) -> str:
        return "recording_paused" if self is Action.PAUSE else "recording_resumed"


class Source(enum.Enum):
    """Who asked: the agent desktop or IVR through ``/api``, or a PBX reporting its own."""

    API = "api"
    PBX = "pbx"


@dataclass(frozen=True)
class LockedCall:
    id: uuid.UUID
    tenant: str
    platform: str
    external_id: str
    account: str | None
    paused_at: datetime | None


@dataclass(frozen=True)
class Changed:
    call_id: uuid.UUID
    external_id: str
    action: Action
    at: datetime
    paused_s: float | None  # for a resume: how long the recording was paused
    seq: int

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": str(self.call_id),
            "external_id": self.external_id,
            "paused": self.action is Action.PAUSE,
            "at": self.at.isoformat(),
            "paused_s": self.paused_s,
            "ledger_seq": self.seq,
        }


AtPlatform = Callable[[LockedCall], Awaitable[None]]
Connect = Callable[[], AbstractAsyncContextManager[Conn]]


async def find_call(conn: Conn, ref: str) -> uuid.UUID:
    """The id of the tenant's call named by ``ref`` (callvault's id or the platform's), or
    :class:`NotFound`; another tenant's call is not found (row-level security). A reference
    that cannot be a call id (a platform's id is printable ASCII: a NUL byte would reach
    PostgreSQL as an encoding error) is not found without asking the database."""
    if not _CALL_REF.fullmatch(ref):
        raise NotFound("no such call", code="unknown_call")
    try:
        as_uuid: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        as_uuid = None
    rows = await conn.fetch(Q["find_call"], as_uuid, ref)
    if not rows:
        raise NotFound("no such call", code="unknown_call")
    if len(rows) > 1:
        raise Conflict(
            "more than one call has this id on different platforms: name it by callvault's id",
            code="ambiguous_call_id",
        )
    found: uuid.UUID = rows[0]["id"]
    return found


def _check(row: asyncpg.Record, action: Action, paused_at: datetime | None) -> None:
    if row["outcome"] != Outcome.CONSENTED:
        state = "undecided" if row["outcome"] == Outcome.IN_PROGRESS else row["outcome"]
        raise Conflict(f"the call is not being recorded (consent: {state})", code="not_recording")
    if row["ended_at"] is not None:
        raise Conflict("the call has ended: its recording cannot change", code="call_ended")
    paused = paused_at is not None
    if action is Action.PAUSE and paused:
        raise Conflict("the recording is paused already", code="already_paused")
    if action is Action.RESUME and not paused:
        raise Conflict("the recording is not paused", code="not_paused")


async def _check_and_lock(conn: Conn, call_id: uuid.UUID, action: Action) -> LockedCall:
    row = await conn.fetchrow(Q["lock_call"], call_id)
    if row is None:
        raise NotFound("no such call", code="unknown_call")
    paused_at: datetime | None = await conn.fetchval(Q["paused_since"], call_id)
    _check(row, action, paused_at)
    return LockedCall(
        row["id"],
        row["tenant_id"],
        row["platform"],
        row["external_id"],
        row["platform_account"],
        paused_at,
    )


async def _record(
    conn: Conn, call: LockedCall, action: Action, reason: str, actor: str, source: Source
) -> Changed:
    details: dict[str, Any] = {
        "reason": reason,
        "actor": actor,
        "source": source.value,
        "platform": call.platform,
    }
    (event,) = await ledger.append(conn, call.id, [NewEvent(action.event, details)])
    paused_s = (
        round((event.at - call.paused_at).total_seconds(), 3)
        if action is Action.RESUME and call.paused_at is not None
        else None
    )
    return Changed(call.id, call.external_id, action, event.at, paused_s, event.seq)


async def change(
    connect: Connect,
    call_id: uuid.UUID,
    action: Action,
    *,
    reason: str,
    actor: str,
    source: Source,
    at_platform: AtPlatform | None = None,
) -> Changed:
    """Pause or resume the call's recording (the steps in the module's docstring); each
    ``connect()`` is one short use of a pooled connection."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise BadRequest("a reason of 1 to 500 characters is required", code="bad_reason")
    if at_platform is None:  # nothing to wait for: one transaction
        async with connect() as conn, conn.transaction():
            call = await _check_and_lock(conn, call_id, action)
            return await _record(conn, call, action, reason, actor, source)

    token = uuid.uuid4()
    async with connect() as conn, conn.transaction():
        call = await _check_and_lock(conn, call_id, action)
        claim = await conn.fetchrow(
            Q["claim"], call_id, call.tenant, action.value, CLAIM_STALE_S, token
        )
        assert claim is not None  # the query always answers one row
        if claim["token"] is None:
            # what the call's state will be is being decided: for a pause, the recording is
            # paused already or is being paused; for a resume, it is not (yet) paused
            under_way = f"another {claim['held']} of this call's recording is under way"
            if action is Action.PAUSE:
                raise Conflict(f"{under_way}: not paused twice", code="already_paused")
            raise Conflict(f"{under_way}: not resumed twice", code="not_paused")
    try:
        await at_platform(call)
    except BaseException:
        # nothing happened at the platform: free the call for the next try (if this fails, the
        # claim goes stale and stops counting)
        try:
            async with connect() as conn:
                await conn.execute(Q["release"], call_id, token)
        except (CallvaultError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning(
                "pause claim on call %s not released (%s): it stops counting after %s s",
                call_id,
                type(exc).__name__,
                CLAIM_STALE_S,
            )
        raise
    async with connect() as conn, conn.transaction():
        await conn.fetchrow(Q["lock_call"], call_id)  # beside a check's lock: claim or event
        changed = await _record(conn, call, action, reason, actor, source)
        await conn.execute(Q["release"], call_id, token)
    return changed


def spans(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One call's pauses from its ledger events (``type``, ``at``, ``details``, in order):
    each with when it started and ended (``resumed_at``; None if never: ``open``), the reason,
    and ``offset_s``, where the gap falls in the recording's audio (seconds of audio before it,
    counted from consent, when recording started, by the database's clock: to within the
    platform's reaction time). Paused spans are skipped in the audio (Twilio's
    ``PauseBehavior=skip``), so earlier pauses do not count towards a later offset."""
    started: datetime | None = None
    skipped = 0.0
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for e in events:
        kind, at = e["type"], e["at"]
        if kind == "consent_given" and started is None:
            started = at
        elif kind == "recording_paused" and current is None:
            offset = (at - started).total_seconds() - skipped if started is not None else None
            current = {
                "paused_at": at.isoformat(),
                "resumed_at": None,
                "duration_s": None,
                "offset_s": round(max(offset, 0.0), 1) if offset is not None else None,
                "reason": (e["details"] or {}).get("reason"),
                "open": True,
                "_at": at,
            }
            out.append(current)
        elif kind == "recording_resumed" and current is not None:
            length = (at - current.pop("_at")).total_seconds()
            skipped += length
            current.update(resumed_at=at.isoformat(), duration_s=round(length, 1), open=False)
            current = None
    if current is not None:
        current.pop("_at")
    return out


async def spans_of_calls(conn: Conn, call_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    """:func:`spans` for many calls in one read (calls without pauses are absent)."""
    by_call: dict[uuid.UUID, list[Mapping[str, Any]]] = {}
    for r in await conn.fetch(Q["pause_events"], call_ids):
        by_call.setdefault(r["call_id"], []).append(r)
    return {c: found for c, events in by_call.items() if (found := spans(events))}
