"""The consent gate's three steps: call start, consent answer, call end.

Each step runs in one transaction that locks the call's row, so however many times and in
whatever order a platform delivers its callbacks, a call gets exactly one outcome: the first
one decided wins and later callbacks are answered from it. Every change is written to the ledger
in the same transaction, with dedupe keys so that a retried callback adds no events.
"""

from __future__ import annotations

import enum
import functools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from service import ledger
from service.config import Policy
from service.db import Conn, queries, tenancy
from service.db.pool import JsonText
from service.ledger import NewEvent
from service.notices.library import Notice, PromptLibrary
from service.personal.numbers import PhoneVault, mask_phone, normalise_phone
from service.vocabulary import Outcome

Q = queries.load("service.consent")

IN_PROGRESS = Outcome.IN_PROGRESS
CONSENTED = Outcome.CONSENTED
REFUSED = Outcome.REFUSED
HUNG_UP = Outcome.HUNG_UP_DURING_NOTICE
NO_INPUT = Outcome.NO_INPUT
NOT_ASKED = Outcome.NOT_ASKED

# Call statuses after which nothing more happens on the call (Twilio's names; others map onto them).
# Twilio's final CallStatus values, and Stringee's `ended` (its event_url's call_status)
TERMINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled", "ended"})


class Direction(enum.Enum):
    """Which way the call goes, seen from the contact centre. The data subject is the party who
    is not the contact centre: the caller on inbound calls, the callee on outbound ones."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


def contact_centre_number(
    direction: Direction, caller: str | None, called: str | None
) -> str | None:
    """The contact centre's own number: it decides the policy, and may be stored plain."""
    return called if direction is Direction.INBOUND else caller


def subject_number(direction: Direction, caller: str | None, called: str | None) -> str | None:
    """The person's number: encrypted, hashed, masked, erasable, never in the ledger."""
    return caller if direction is Direction.INBOUND else called


def _centre_as_stored(
    direction: Direction, caller: str | None, called: str | None, centre_known: bool
) -> str | None:
    """The centre's number as it may be kept in plain text: only when the platform vouches that
    it is the centre's own (``centre_known``); otherwise masked, since it may be a person's (a
    ``<Dial>`` leg carries the original caller's number unless a caller id is set)."""
    centre = contact_centre_number(direction, caller, called)
    return centre if centre is None or centre_known else mask_phone(centre)


def _party_details(
    direction: Direction, caller: str | None, called: str | None, centre_known: bool
) -> dict[str, Any]:
    """How ``call_started`` names the contact centre's side, under its role in the call (the
    person's number never enters the ledger: it could not be erased from there)."""
    centre = _centre_as_stored(direction, caller, called, centre_known)
    if direction is Direction.INBOUND:
        return {"called": centre}
    return {"direction": direction.value, "caller": centre}


class Step(enum.Enum):
    PLAY_NOTICE = "play_notice"  # tell the caller (and, in explicit mode, ask)
    REPROMPT = "reprompt"  # explicit mode: ask again after no or invalid input
    RECORD = "record"  # consent: start recording, then continue the call
    CONTINUE = "continue"  # continue the call without recording
    HANGUP = "hangup"  # the call has already ended


@dataclass(frozen=True)
class CallState:
    id: uuid.UUID
    outcome: str
    policy: Policy
    ended: bool
    decided_now: bool = False  # this callback set the outcome (for metrics)
    # a data-subject request erased the call (its number is gone): nothing of it is recorded
    erased: bool = False


@dataclass(frozen=True)
class Decision:
    step: Step
    call: CallState
    attempt: int = 1


@functools.lru_cache(maxsize=256)
def _policy(items: tuple[tuple[str, Any], ...]) -> Policy:
    # a call's policy as stored: the same few for every call of a number, and Policy is frozen
    return Policy(**dict(items))


_POLICY_JSON: dict[int, tuple[Policy, JsonText]] = {}


def _policy_json(policy: Policy) -> JsonText:
    """``policy.as_json()`` as the jsonb codec would write it, once per policy object (the
    in-process policy cache hands out the same few) rather than once per call. Keyed by
    identity, not equality: equal policies whose fields differ in type (8 and 8.0) would write
    different JSON. An entry holds its policy, so the id is not reused while it is kept."""
    entry = _POLICY_JSON.get(id(policy))
    if entry is not None and entry[0] is policy:
        return entry[1]
    if len(_POLICY_JSON) >= 256:
        _POLICY_JSON.clear()
    text = JsonText(json.dumps(policy.as_json()))
    _POLICY_JSON[id(policy)] = (policy, text)
    return text


def _state(row: asyncpg.Record) -> CallState:
    raw: dict[str, Any] = row["policy"]
    try:
        policy = _policy(tuple(raw.items()))
    except TypeError:  # a value that cannot be a cache key: Policy says what is wrong with it
        policy = Policy(**raw)
    erased = row.get("erased_at") is not None
    return CallState(row["id"], row["outcome"], policy, row["ended_at"] is not None, erased=erased)


def _answer_existing(call: CallState) -> Decision:
    """How to answer a callback for a call whose outcome (or end) is already known."""
    if call.ended:
        return Decision(Step.HANGUP, call)
    if call.erased:
        # a consent given before the erasure does not outlive it: a recording started now
        # would only be discarded when it arrives
        return Decision(Step.CONTINUE, call)
    if call.outcome == CONSENTED:
        return Decision(Step.RECORD, call)
    if call.outcome == IN_PROGRESS:
        return Decision(Step.PLAY_NOTICE, call)
    return Decision(Step.CONTINUE, call)


Heard = Callable[[Notice], Mapping[str, Any]]


def _played(notice: Notice, attempt: int, heard: Heard | None) -> dict[str, Any]:
    details = notice.ledger_details(attempt)
    return details if heard is None else {**details, **heard(notice)}


# the two ways a call is not asked, as the second event of every call that is not
_NOT_ASKED = tuple(
    ledger.opening_piece(NewEvent("not_asked", {"reason": reason}, dedupe_key="outcome"), 2)
    for reason in ("do_not_record_list", "policy_never_record")
)


@functools.lru_cache(maxsize=256)
def _first_notice(notice: Notice) -> ledger.Piece:
    """The first ``notice_played`` of a call, the same for every call hearing ``notice``."""
    return ledger.opening_piece(
        NewEvent("notice_played", _played(notice, 1, None), dedupe_key="notice_played:1"), 2
    )


async def start_call(
    conn: Conn,
    vault: PhoneVault,
    prompts: PromptLibrary,
    *,
    platform: str,
    external_id: str,
    caller: str | None,
    called: str | None,
    policy: Policy,
    direction: Direction = Direction.INBOUND,
    centre_known: bool = True,
    platform_account: str | None = None,
    heard: Heard | None = None,
) -> Decision:
    """A call reached the gate (for an outbound call: the callee answered). Decide whether to
    ask, and write ``call_started`` plus either ``not_asked`` or ``notice_played``.
    ``heard``: the platform's account of how it will play the notice, added to
    ``notice_played`` (the ledger says what the caller heard, not only what we meant)."""
    subject = subject_number(direction, caller, called)
    subject_norm = normalise_phone(subject) if subject else None
    started = NewEvent(
        "call_started",
        {
            "platform": platform,
            **_party_details(direction, caller, called, centre_known),
            "queue": policy.queue,
            "consent_mode": policy.consent_mode,
            "language": policy.language,
        },
        dedupe_key="call_started",
    )
    # every second event the outcome may call for, the database picks (never_record: never
    # asked, so no notice is looked up); what is the same for every call is built once
    if policy.never_record:
        played: NewEvent | ledger.Piece = _NOT_ASKED[1]
    elif heard is None:
        played = _first_notice(prompts.notice(policy.consent_mode, policy.language))
    else:
        played = NewEvent(
            "notice_played",
            _played(prompts.notice(policy.consent_mode, policy.language), 1, heard),
            dedupe_key="notice_played:1",
        )
    hashes = vault.lookup_hashes_of_normal(subject_norm) if subject_norm else []
    # One statement, one round trip: the call, its first two events and their chain
    # (migration 0021), atomic on its own.
    row = await conn.fetchrow(
        Q["start_call"],
        tenancy.current(),
        platform,
        external_id,
        vault.encrypt(subject_norm) if subject_norm else None,
        hashes[0] if hashes else None,  # lookup_hash: the current key's, first
        _centre_as_stored(direction, caller, called, centre_known),
        _policy_json(policy),
        policy.never_record,
        hashes,
        direction.value,
        platform_account,
        *ledger.opening_pieces([started, played, *_NOT_ASKED]),
    )
    if row is not None:
        call = _state(row)
        if call.outcome == NOT_ASKED:
            return Decision(Step.CONTINUE, replace(call, decided_now=True))
        return Decision(Step.PLAY_NOTICE, call)
    await tenancy.ensure(conn)  # the statements below do not name the tenant themselves
    async with conn.transaction():
        # the platform retried the start: answer from what we already decided
        existing = await conn.fetchrow(Q["lock_call"], platform, external_id)
        assert existing is not None
        return await _answer_known(conn, _state(existing))


async def consent_step(
    conn: Conn,
    prompts: PromptLibrary,
    *,
    platform: str,
    external_id: str,
    digits: str | None,
    attempt: int,
    heard: Heard | None = None,
) -> Decision | None:
    """The caller reached the consent step (implied: heard the whole notice and stayed;
    explicit: pressed a key, or the prompt timed out with ``digits`` None). Returns None for a
    call the gate never saw start."""
    async with conn.transaction():
        row = await conn.fetchrow(Q["lock_call"], platform, external_id)
        if row is None:
            return None
        call = _state(row)
        if call.outcome != IN_PROGRESS or call.ended or call.erased:
            return await _answer_known(conn, call)
        policy = call.policy
        if policy.consent_mode == "implied":
            return await _decide(
                conn,
                call,
                CONSENTED,
                NewEvent(
                    "consent_given",
                    {"mode": "implied", "basis": "stayed on the line after the notice"},
                    dedupe_key="outcome",
                ),
            )
        if digits == "1":
            return await _decide(
                conn,
                call,
                CONSENTED,
                NewEvent(
                    "consent_given",
                    {"mode": "explicit", "digits": "1", "attempt": attempt},
                    dedupe_key="outcome",
                ),
            )
        if digits == "2":
            return await _decide(
                conn,
                call,
                REFUSED,
                NewEvent(
                    "consent_refused",
                    {"mode": "explicit", "digits": "2", "attempt": attempt},
                    dedupe_key="outcome",
                ),
            )
        # No input, or a key that means neither: ask again while retries last, else no_input.
        answer = {"attempt": attempt, "input": "none" if not digits else "invalid"}
        if attempt <= policy.gather_retries:
            notice = prompts.notice(policy.consent_mode, policy.language)
            await ledger.append(
                conn,
                call.id,
                [
                    NewEvent(
                        "notice_played",
                        {**_played(notice, attempt + 1, heard), "after": answer},
                        dedupe_key=f"notice_played:{attempt + 1}",
                    ),
                ],
            )
            return Decision(Step.REPROMPT, call, attempt=attempt + 1)
        return await _decide(
            conn,
            call,
            NO_INPUT,
            NewEvent("no_input", {"mode": "explicit", **answer}, dedupe_key="outcome"),
        )


async def _answer_known(conn: Conn, call: CallState) -> Decision:
    """:func:`_answer_existing`, but a call erased while its notice played (an ``erase`` or
    ``withdraw`` request for the person's number) is decided here: it is not recorded, whatever
    the caller answers, since the erasure covers recordings still to come. Its outcome is
    ``not_asked`` (the question no longer stands), with the reason in the ledger."""
    if call.erased and call.outcome == IN_PROGRESS and not call.ended:
        decided = await _decide(
            conn,
            call,
            NOT_ASKED,
            NewEvent("not_asked", {"reason": "call_erased"}, dedupe_key="outcome"),
        )
        return Decision(Step.CONTINUE, replace(decided.call, erased=True))
    return _answer_existing(call)


async def _decide(conn: Conn, call: CallState, outcome: str, event: NewEvent) -> Decision:
    await conn.execute(Q["set_outcome"], call.id, outcome)
    await ledger.append(conn, call.id, [event])
    decided = CallState(call.id, outcome, call.policy, call.ended, decided_now=True)
    return Decision(Step.RECORD if outcome == CONSENTED else Step.CONTINUE, decided)


async def status_step(
    conn: Conn,
    vault: PhoneVault,
    *,
    platform: str,
    external_id: str,
    status: str,
    duration_s: int | None,
    caller: str | None,
    called: str | None,
    policy: Policy,
    direction: Direction = Direction.INBOUND,
    centre_known: bool = True,
    platform_account: str | None = None,
) -> CallState | None:
    """A call-progress callback. When the call has ended before any consent step, its
    outcome is ``hung_up_during_notice``; a final status for a call never seen starting creates
    it, so a reordered delivery cannot leave a call without an outcome. None: a progress update
    for a call not seen yet (nothing to prove until the start webhook creates it)."""
    terminal = status in TERMINAL_STATUSES
    async with conn.transaction():
        row = await conn.fetchrow(Q["lock_call"], platform, external_id)
        if row is None:
            if not terminal:
                return None  # nothing to prove yet; the start webhook will create the call
            subject = subject_number(direction, caller, called)
            subject_norm = normalise_phone(subject) if subject else None
            row = await conn.fetchrow(
                Q["insert_call"],
                platform,
                external_id,
                vault.encrypt(subject_norm) if subject_norm else None,
                vault.lookup_hash(subject_norm) if subject_norm else None,
                _centre_as_stored(direction, caller, called, centre_known),
                policy.as_json(),
                False,  # a status for a call never seen starting: it can only end unrecorded
                [],
                direction.value,
                platform_account,
            )
            if row is None:  # a concurrent status callback created it first
                row = await conn.fetchrow(Q["lock_call"], platform, external_id)
                assert row is not None
            await ledger.append(
                conn,
                row["id"],
                [
                    NewEvent(
                        "call_started",
                        {
                            "platform": platform,
                            **_party_details(direction, caller, called, centre_known),
                            "first_seen": "status_callback",
                        },
                        dedupe_key="call_started",
                    )
                ],
            )
        call = _state(row)
        if not terminal:
            await conn.execute(Q["set_platform_status"], call.id, status)
            return call
        await conn.execute(Q["set_ended"], call.id, status)
        events = [
            NewEvent(
                "call_ended", {"status": status, "duration_s": duration_s}, dedupe_key="call_ended"
            )
        ]
        outcome = call.outcome
        if outcome == IN_PROGRESS:
            outcome = HUNG_UP
            await conn.execute(Q["set_outcome"], call.id, HUNG_UP)
            events.append(NewEvent(HUNG_UP, {"status": status}, dedupe_key="outcome"))
        await ledger.append(conn, call.id, events)
        return CallState(call.id, outcome, call.policy, True, decided_now=outcome != call.outcome)


async def add_to_do_not_record(conn: Conn, vault: PhoneVault, phone: str, reason: str) -> None:
    phone = normalise_phone(phone)
    await conn.execute(
        Q["add_do_not_record"], vault.lookup_hash(phone), vault.encrypt(phone), reason
    )
