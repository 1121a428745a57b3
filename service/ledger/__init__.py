"""The consent ledger: an append-only hash chain of events per call, and its verification.

Each event's hash covers its call, position, type, database time, details, dedupe key and the
previous event's hash, so changing, removing or reordering any event of a call breaks the chain
from that point on. Chains are per call so that webhooks for different calls never wait on each
other; appends to one call are serialised by locking the call's row. The database refuses UPDATE,
DELETE and TRUNCATE on the table and rejects an insert that does not follow its predecessor.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg

from service.db import Conn, queries
from service.errors import NotFound
from service.ledger import seals

Q = queries.load("service.ledger")
GENESIS = bytes(32)
_DOMAIN = b"callvault-ledger-v1\n"


@dataclass(frozen=True, slots=True)  # slots: one object an event, not two (a purge makes 20,000)
class NewEvent:
    type: str
    details: Mapping[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None


@dataclass(frozen=True)
class Event:
    call_id: uuid.UUID
    seq: int
    type: str
    at: datetime
    details: Mapping[str, Any]
    dedupe_key: str | None
    prev_hash: bytes
    hash: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "at": self.at.isoformat(),
            "details": dict(self.details),
            "hash": self.hash.hex(),
            "prev_hash": self.prev_hash.hex(),
        }


@dataclass(slots=True)
class _Rows:
    """Events numbered and hashed in chain order, as the insert's columns (not an object per
    event: a purge batch's thousands of them lived long enough to reach the garbage collector's
    oldest generation, and each full collection stopped every thread for ~0.1 s; py-spy and
    gc.callbacks of a 20,000 purge: three of them, 0.3 s of its 2 s). The details go as the
    canonical JSON text each hash was computed over."""

    call_ids: list[uuid.UUID] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    prevs: list[bytes] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)

    def events(self, at: datetime) -> list[Event]:
        return [
            Event(call_id, seq, type_, at, details, key, prev, digest)
            for call_id, seq, type_, details, key, prev, digest in zip(
                self.call_ids,
                self.seqs,
                self.types,
                self.details,
                self.keys,
                self.prevs,
                self.hashes,
                strict=True,
            )
        ]


# The canonical body is ``json.dumps`` of a dict of seven keys with ``sort_keys=True``,
# ``separators=(",", ":")`` and ``ensure_ascii=False``. Those keys' order is fixed and all but
# ``details`` and the two strings are ASCII without escapes, so the body is assembled around the
# same C encoder json.dumps uses (one encoder kept, not one built per event): byte for byte the
# same body (tests/test_ledger.py compares them), at a third of the cost for a verifier that
# rehashes a million events.
_STRING = json.encoder.encode_basestring
# json.dumps builds this C encoder anew for every call; kept once here. Without the circular
# reference guard (markers None): details come from code or from the database, never circular.
_C_ENCODER = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, json.JSONEncoder().default, _STRING, None, ":", ",", True, False, True
)


def _details_json(details: Any) -> str:
    return "".join(_C_ENCODER(details, 0))


_KEY_TYPES = (str, type(None))


def event_hash(
    call_id: uuid.UUID,
    seq: int,
    type_: str,
    at: datetime,
    details: Mapping[str, Any],
    dedupe_key: str | None,
    prev_hash: bytes,
) -> bytes:
    if type(seq) is not int or type(type_) is not str or type(dedupe_key) not in _KEY_TYPES:
        # what only a malformed receipt passes: the definition says what it hashes to
        return event_hash_reference(call_id, seq, type_, at, details, dedupe_key, prev_hash)
    return _digest(str(call_id), seq, type_, _at_text(at), details, dedupe_key, prev_hash)


def _at_text(at: datetime) -> str:
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def _digest(
    call_text: str,
    seq: int,
    type_: str,
    at_text: str,
    details: Any,
    dedupe_key: str | None,
    prev_hash: bytes,
) -> bytes:
    """:func:`event_hash` for fields of the types the table's columns give (int, text, text or
    NULL), the call id already written out (once a call, not once an event). The body is
    ``{"at":"…","call_id":"…`` + :func:`_mid` + previous hash + :func:`_tail`, inlined here
    (a million events); ``callvault_start_call`` (migration 0021) builds the same."""
    return _digest_text(
        call_text, seq, type_, at_text, _details_json(details), dedupe_key, prev_hash
    )


def _digest_text(
    call_text: str,
    seq: int,
    type_: str,
    at_text: str,
    details_text: str,
    dedupe_key: str | None,
    prev_hash: bytes,
) -> bytes:
    """:func:`_digest` with the details already written as canonical JSON (a writer that also
    stores that text, :func:`_chain`, encodes them once)."""
    key = "null" if dedupe_key is None else _STRING(dedupe_key)
    # one f-string (one allocation), not a chain of concatenations: a third of the time
    body = (
        f'{{"at":"{at_text}","call_id":"{call_text}","dedupe_key":{key},'
        f'"details":{details_text},"prev_hash":"{prev_hash.hex()}",'
        f'"seq":{int.__repr__(seq)},"type":{_STRING(type_)}}}'
    )
    return hashlib.sha256(_DOMAIN + body.encode("utf-8")).digest()


class Piece(NamedTuple):
    """One event's part of :func:`opening_pieces`, for the position (``seq``) it takes."""

    seq: int
    type: str
    dedupe_key: str | None
    details_text: str
    mid: str
    tail: str


def opening_piece(new: NewEvent, seq: int) -> Piece:
    """``new`` as :func:`opening_pieces` sends it as event ``seq`` (1 or 2). The same for every
    call when the event is (the reasons for not asking, a notice played): a caller may keep
    it and pass it in place of the event, saving its JSON and string work per call."""
    text = _details_json(dict(new.details))
    return Piece(
        seq, new.type, new.dedupe_key, text, _mid(new.dedupe_key, text), _tail(seq, new.type)
    )


def opening_pieces(
    events: Sequence[NewEvent | Piece],
) -> tuple[list[str], list[str | None], list[str], list[str], list[str]]:
    """What the database's ``callvault_start_call`` needs to write and hash a call's first
    events (event 1 is ``events[0]``, event 2 one of the others, chosen there by outcome): for
    each, its type, dedupe key, details as canonical JSON, and the canonical body's pieces
    around the previous hash, as :func:`_digest` assembles them. The database adds the time,
    the call id and the previous hash. A :class:`Piece` is taken as it is (made by
    :func:`opening_piece` for the same position)."""
    types, keys, details, mids, tails = [], [], [], [], []
    for n, new in enumerate(events):
        seq = 1 if n == 0 else 2
        if isinstance(new, Piece):
            assert new.seq == seq, f"a piece made for event {new.seq} given as event {seq}"
            piece = new
        else:
            piece = opening_piece(new, seq)
        types.append(piece.type)
        keys.append(piece.dedupe_key)
        details.append(piece.details_text)
        mids.append(piece.mid)
        tails.append(piece.tail)
    return types, keys, details, mids, tails


def _mid(dedupe_key: str | None, details_text: str) -> str:
    key = "null" if dedupe_key is None else _STRING(dedupe_key)
    return '","dedupe_key":' + key + ',"details":' + details_text + ',"prev_hash":"'


def _tail(seq: int, type_: str) -> str:
    return '","seq":' + int.__repr__(seq) + ',"type":' + _STRING(type_) + "}"


def event_hash_reference(
    call_id: uuid.UUID,
    seq: int,
    type_: str,
    at: datetime,
    details: Mapping[str, Any],
    dedupe_key: str | None,
    prev_hash: bytes,
) -> bytes:
    """The definition :func:`event_hash` computes faster (and the offline verifier's spec)."""
    body = json.dumps(
        {
            "call_id": str(call_id),
            "seq": seq,
            "type": type_,
            "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
            "details": details,
            "dedupe_key": dedupe_key,
            "prev_hash": prev_hash.hex(),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return hashlib.sha256(_DOMAIN + body).digest()


async def append(conn: Conn, call_id: uuid.UUID, events: Sequence[NewEvent]) -> list[Event]:
    """Append ``events`` to the call's chain, skipping any whose ``dedupe_key`` is already there.

    Must run inside a transaction: the call's row stays locked until it commits, which is what
    keeps two concurrent appends from both building on the same head.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("ledger.append must run inside a transaction")
    if await conn.fetchval(Q["lock_call"], call_id) is None:
        raise NotFound(f"no call {call_id}")
    keys = [e.dedupe_key for e in events if e.dedupe_key is not None]
    head = await conn.fetchrow(Q["chain_head"], call_id, keys)
    assert head is not None
    seen = set(head["seen"])
    rows = _Rows()
    at = head["at"]
    _chain(
        rows,
        call_id,
        head["seq"] or 0,
        head["hash"] or GENESIS,
        at,
        _at_text(at),
        [e for e in events if e.dedupe_key is None or e.dedupe_key not in seen],
    )
    await _insert(conn, rows, at)
    return rows.events(at)


async def append_many(conn: Conn, events: Mapping[uuid.UUID, Sequence[NewEvent]]) -> int:
    """One event list per call, for many calls at once (a purge batch): the calls' rows are
    locked in id order (no deadlock between two batches), the heads read in one query after the
    locks, and every event inserted in one statement. Dedupe keys are not consulted: callers
    pass events that the row states they just changed make new."""
    if not conn.is_in_transaction():
        raise RuntimeError("ledger.append_many must run inside a transaction")
    ids = sorted(events)
    if await conn.fetchval(Q["lock_calls"], ids) != len(ids):
        raise NotFound("some calls do not exist")
    heads = {
        r["call_id"]: (r["seq"], bytes(r["hash"])) for r in await conn.fetch(Q["chain_heads"], ids)
    }
    at: datetime = await conn.fetchval(Q["clock"])
    at_text = _at_text(at)
    rows = _Rows()
    for call_id in ids:
        seq, prev = heads.get(call_id, (0, GENESIS))
        _chain(rows, call_id, seq, prev, at, at_text, events[call_id])
    await _insert(conn, rows, at)
    return len(rows.call_ids)


async def start_chain(
    conn: Conn, call_id: uuid.UUID, at: datetime, events: Sequence[NewEvent]
) -> list[Event]:
    """The first events of a call inserted in this same transaction: no other transaction can
    see the call yet, so there is no head to lock or read and no earlier event to dedupe
    against (the database still checks the chain links)."""
    if not conn.is_in_transaction():
        raise RuntimeError("ledger.start_chain must run inside a transaction")
    rows = _Rows()
    _chain(rows, call_id, 0, GENESIS, at, _at_text(at), events)
    await _insert(conn, rows, at)
    return rows.events(at)


def _chain(
    rows: _Rows,
    call_id: uuid.UUID,
    seq: int,
    prev: bytes,
    at: datetime,
    at_text: str,
    events: Sequence[NewEvent],
) -> None:
    """Number and hash ``events`` after the head (``seq``, ``prev``) into ``rows``; a dedupe
    key given twice in one batch is written once. ``at_text``: the time ``at``, written out once
    for all of them (a purge batch appends to a thousand calls at one time)."""
    seen: set[str] = set()
    call_text = str(call_id)
    for new in events:
        key = new.dedupe_key
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        seq += 1
        details = new.details if type(new.details) is dict else dict(new.details)
        text = _details_json(details)
        if type(new.type) is str and type(key) in _KEY_TYPES:
            digest = _digest_text(call_text, seq, new.type, at_text, text, key, prev)
        else:  # what only a malformed caller passes: the definition says what it hashes to
            digest = event_hash(call_id, seq, new.type, at, details, key, prev)
        rows.call_ids.append(call_id)
        rows.seqs.append(seq)
        rows.types.append(new.type)
        rows.details.append(details)
        rows.texts.append(text)
        rows.keys.append(key)
        rows.prevs.append(prev)
        rows.hashes.append(digest)
        prev = digest


async def _insert(conn: Conn, rows: _Rows, at: datetime) -> None:
    """One statement for the batch, rows in chain order (the link trigger checks each). The
    details go as the canonical JSON text the hash was computed over (the database parses it
    into jsonb), not encoded a second time."""
    if rows.call_ids:
        await conn.execute(
            Q["insert_events"],
            rows.call_ids,
            rows.seqs,
            rows.types,
            [at] * len(rows.call_ids),
            rows.texts,
            rows.keys,
            rows.prevs,
            rows.hashes,
        )


def _event(row: asyncpg.Record) -> Event:
    return Event(
        row["call_id"],
        row["seq"],
        row["type"],
        row["at"],
        row["details"],
        row["dedupe_key"],
        bytes(row["prev_hash"]),
        bytes(row["hash"]),
    )


async def events_of(conn: Conn, call_id: uuid.UUID) -> list[Event]:
    return [_event(r) for r in await conn.fetch(Q["call_events"], call_id)]


@dataclass
class Break:
    call_id: uuid.UUID | None  # None: the seals, not one call's chain
    seq: int | None
    reason: str

    tenant: str | None = None  # whose seals, for a break in the seals

    def __str__(self) -> str:
        if self.call_id is None:
            return (
                f"seals of tenant {self.tenant}: {self.reason}"
                if self.tenant
                else (f"seals: {self.reason}")
            )
        where = f"event {self.seq}" if self.seq is not None else "call"
        return f"call {self.call_id} {where}: {self.reason}"


@dataclass
class Report:
    calls: int = 0
    events: int = 0
    seals: int = 0
    breaks: list[Break] = field(default_factory=list)
    # tenant -> seals checked (each tenant's chain of seals verifies on its own)
    tenant_seals: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "calls": self.calls,
            "events": self.events,
            "seals": self.seals,
            "first_break": None
            if self.ok
            else {
                "call_id": str(self.breaks[0].call_id) if self.breaks[0].call_id else None,
                "seq": self.breaks[0].seq,
                "reason": self.breaks[0].reason,
            },
            "breaks": len(self.breaks),
            "tenants": {t: {"seals": n} for t, n in sorted(self.tenant_seals.items())},
        }


class _ChainChecker:
    """Checks events of one or more calls fed in (call_id, seq) order."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.call: uuid.UUID | None = None
        self.call_text = ""
        self.broken = False
        self.expected_seq = 1
        self.prev = GENESIS

    def feed(self, ev: Event) -> None:
        fields = (ev.call_id, ev.seq, ev.type, ev.at, ev.details, ev.dedupe_key, ev.prev_hash)
        self.feed_rows([(*fields, ev.hash, None, None)])

    def feed_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """A batch of events as rows of ``all_events``. The state of the call in progress stays
        in locals for the batch: over a million events every attribute access and every call
        counts."""
        report, breaks, digest_of, at_text_of = self.report, self.report.breaks, _digest, _at_text
        call, call_text = self.call, self.call_text
        # the events a transaction appends share its time: written out once for them
        last_at: datetime | None = None
        at_text = ""
        broken, expected, prev = self.broken, self.expected_seq, self.prev
        calls = events = 0
        for call_id, seq, type_, at, details, dedupe_key, prev_hash, digest, _, _ in rows:
            if call_id != call:
                call, call_text, broken, expected, prev = call_id, str(call_id), False, 1, GENESIS
                calls += 1
            events += 1
            if broken:
                continue  # only the first break of a chain is news; the rest follows from it
            reason = None
            if seq != expected:
                reason = f"expected event {expected} here, found {seq} (events missing)"
            elif prev_hash != prev:
                reason = "prev_hash does not match the previous event's hash"
            else:
                if at != last_at:
                    last_at, at_text = at, at_text_of(at)
                if (
                    digest_of(call_text, seq, type_, at_text, details, dedupe_key, prev_hash)
                    != digest
                ):
                    reason = "content does not match its hash (altered)"
            if reason is not None:
                broken = True
                breaks.append(Break(call_id, seq, reason))
            expected = seq + 1
            prev = digest
        self.call, self.call_text = call, call_text
        self.broken, self.expected_seq, self.prev = broken, expected, prev
        report.calls += calls
        report.events += events


async def verify(conn: Conn, call_id: uuid.UUID | None = None, *, batch: int = 20_000) -> Report:
    """Recompute every chain (or one call's) from the genesis hash."""
    report = Report()
    checker = _ChainChecker(report)
    if call_id is not None:
        if not await conn.fetchval(Q["call_exists"], call_id):
            raise NotFound(f"no call {call_id}")
        for ev in await events_of(conn, call_id):
            checker.feed(ev)
        if report.calls == 0:
            report.calls = 1
            report.breaks.append(Break(call_id, None, "the call has no ledger events (deleted)"))
        return report
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        sealed_heads = await seals.plan(conn)
        cursor = await conn.cursor(Q["all_events"])
        while rows := await cursor.fetch(batch):
            checker.feed_rows(rows)
            sealed_heads.feed_rows(rows)
        for row in await conn.fetch(Q["calls_without_events"]):
            report.calls += 1
            report.breaks.append(Break(row["id"], None, "the call has no ledger events (deleted)"))
        for sealed in await seals.check(conn, sealed_heads):
            report.seals += sealed.seals
            report.tenant_seals[sealed.tenant or ""] = sealed.seals
            if not sealed.ok:
                report.breaks.append(
                    Break(None, None, sealed.reason or "seals do not verify", sealed.tenant)
                )
    return report
