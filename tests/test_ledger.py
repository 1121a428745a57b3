"""The ledger: chains per call, append-only in the database, tampering caught by verify."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from service import ledger
from service.db.pool import connect
from service.ledger import NewEvent
from tests.conftest import run_cli

Conn = asyncpg.Connection


async def new_call(db: Conn, events: int = 3) -> uuid.UUID:
    call_id: uuid.UUID = await db.fetchval(
        "INSERT INTO calls (platform, external_id, policy) VALUES ('test', $1, '{}') RETURNING id",
        uuid.uuid4().hex,
    )
    async with db.transaction():
        await ledger.append(db, call_id, [NewEvent(f"e{i}", {"i": i}) for i in range(events)])
    return call_id


async def test_events_chain_from_genesis(db: Conn) -> None:
    call_id = await new_call(db, 3)
    events = await ledger.events_of(db, call_id)
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == ledger.GENESIS
    assert events[1].prev_hash == events[0].hash and events[2].prev_hash == events[1].hash
    report = await ledger.verify(db, call_id)
    assert report.ok and report.events == 3


async def test_dedupe_key_appends_once(db: Conn) -> None:
    call_id = await new_call(db, 1)
    for _ in range(3):
        async with db.transaction():
            await ledger.append(db, call_id, [NewEvent("outcome", {}, dedupe_key="outcome")])
    assert [e.type for e in await ledger.events_of(db, call_id)] == ["e0", "outcome"]


async def test_append_outside_a_transaction_is_refused(db: Conn) -> None:
    call_id = await new_call(db, 1)
    with pytest.raises(RuntimeError):
        await ledger.append(db, call_id, [NewEvent("x")])


async def test_concurrent_appends_to_one_call_never_fork(db: Conn, database_url: str) -> None:
    call_id = await new_call(db, 1)
    conns = [await connect(database_url) for _ in range(8)]

    async def writer(conn: Conn, n: int) -> None:
        for i in range(10):
            async with conn.transaction():
                await ledger.append(conn, call_id, [NewEvent("w", {"writer": n, "i": i})])

    try:
        await asyncio.gather(*(writer(c, n) for n, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    events = await ledger.events_of(db, call_id)
    assert [e.seq for e in events] == list(range(1, 82))
    assert (await ledger.verify(db)).ok


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_events SET details = '{\"i\": 99}' WHERE seq = 2",
        "DELETE FROM ledger_events WHERE seq = 3",
        "TRUNCATE ledger_events CASCADE",
    ],
)
async def test_database_refuses_changes(db: Conn, statement: str) -> None:
    await new_call(db, 3)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await db.execute(statement)
    assert await db.fetchval("SELECT count(*) FROM ledger_events") == 3


async def test_database_refuses_an_event_that_does_not_follow_its_predecessor(db: Conn) -> None:
    call_id = await new_call(db, 2)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="does not follow"):
        await db.execute(
            "INSERT INTO ledger_events (call_id, seq, type, at, details, prev_hash, hash) "
            "VALUES ($1, 3, 'forged', now(), '{}', $2, $2)",
            call_id,
            bytes(32),
        )


async def _tamper(db: Conn, sql: str, *args: Any) -> None:
    """What an attacker with superuser rights could do: switch the guard off and edit."""
    await db.execute("ALTER TABLE ledger_events DISABLE TRIGGER USER")
    try:
        await db.execute(sql, *args)
    finally:
        await db.execute("ALTER TABLE ledger_events ENABLE TRIGGER USER")


async def test_verify_catches_an_altered_event(db: Conn) -> None:
    good = await new_call(db, 3)
    bad = await new_call(db, 4)
    await _tamper(
        db, "UPDATE ledger_events SET details = '{\"i\": 42}' WHERE call_id = $1 AND seq = 2", bad
    )
    report = await ledger.verify(db)
    assert not report.ok
    assert [(b.call_id, b.seq) for b in report.breaks] == [(bad, 2)]
    assert "altered" in report.breaks[0].reason
    assert (await ledger.verify(db, good)).ok


async def test_verify_catches_a_deleted_event_and_a_deleted_chain(db: Conn) -> None:
    gap = await new_call(db, 4)
    gone = await new_call(db, 2)
    await _tamper(db, "DELETE FROM ledger_events WHERE call_id = $1 AND seq = 2", gap)
    await _tamper(db, "DELETE FROM ledger_events WHERE call_id = $1", gone)
    report = await ledger.verify(db)
    found = {(b.call_id, b.seq) for b in report.breaks}
    assert found == {(gap, 3), (gone, None)}


async def test_verify_catches_a_rehashed_event(db: Conn) -> None:
    """Recomputing the altered event's own hash does not help: the next event still names the
    old one."""
    call_id = await new_call(db, 3)
    ev = (await ledger.events_of(db, call_id))[1]
    forged = {"i": 7}
    new_hash = ledger.event_hash(call_id, 2, ev.type, ev.at, forged, None, ev.prev_hash)
    await _tamper(
        db,
        "UPDATE ledger_events SET details = $2, hash = $3 WHERE call_id = $1 AND seq = 2",
        call_id,
        forged,
        new_hash,
    )
    report = await ledger.verify(db)
    assert [(b.call_id, b.seq) for b in report.breaks] == [(call_id, 3)]


async def test_cli_ledger_verify_exits_1_naming_the_broken_event(
    db: Conn, database_url: str
) -> None:
    call_id = await new_call(db, 3)
    ok = await asyncio.to_thread(run_cli, database_url, "ledger", "verify")
    assert ok.returncode == 0, ok.stderr
    assert "verified 3 events in 1 calls" in ok.stdout
    await _tamper(
        db,
        "UPDATE ledger_events SET type = 'consent_given' WHERE call_id = $1 AND seq = 2",
        call_id,
    )
    broken = await asyncio.to_thread(run_cli, database_url, "ledger", "verify")
    assert broken.returncode == 1
    assert f"call {call_id} event 2" in broken.stderr
    one = await asyncio.to_thread(run_cli, database_url, "ledger", "verify", "--call", "nonsense")
    assert one.returncode == 1 and one.stderr.count("\n") == 1
    assert "--call" in one.stderr and "Traceback" not in one.stderr


async def test_seals_make_a_whole_deleted_call_detectable(db: Conn, database_url: str) -> None:
    from service.ledger import seals

    kept = await new_call(db, 3)
    doomed = await new_call(db, 2)
    assert await seals.seal(db) is not None
    assert await seals.seal(db) is None  # nothing new since
    await new_call(db, 1)  # a call after the seal is not the seal's business
    report = await ledger.verify(db)
    assert report.ok and report.seals == 1
    # a superuser removes a call with all its events: every chain left still verifies...
    await _tamper(db, "DELETE FROM ledger_events WHERE call_id = $1", doomed)
    await db.execute("DELETE FROM calls WHERE id = $1", doomed)
    assert (await ledger.verify(db, kept)).ok
    # ...but the seal does not
    report = await ledger.verify(db)
    assert not report.ok
    assert str(report.breaks[0]).startswith("seals of tenant default: seal ")
    assert "a call was removed" in report.breaks[0].reason
    result = await asyncio.to_thread(run_cli, database_url, "ledger", "verify")
    assert result.returncode == 1 and "a call was removed" in result.stderr


async def test_an_altered_seal_is_detected(db: Conn) -> None:
    from service.ledger import seals

    await new_call(db, 2)
    await seals.seal(db)
    await new_call(db, 2)
    await seals.seal(db)
    await db.execute("ALTER TABLE ledger_seals DISABLE TRIGGER USER")
    await db.execute(
        "UPDATE ledger_seals SET max_event_id = max_event_id - 1 "
        "WHERE id = (SELECT min(id) FROM ledger_seals)"
    )
    await db.execute("ALTER TABLE ledger_seals ENABLE TRIGGER USER")
    report = await ledger.verify(db)
    assert not report.ok and "altered or out of order" in report.breaks[0].reason
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await db.execute("DELETE FROM ledger_seals")


def test_the_fast_event_hash_is_byte_for_byte_the_definition() -> None:
    """event_hash assembles the canonical body itself; json.dumps of the dict is the definition
    (event_hash_reference). Escapes, non-ASCII, floats, big integers, nesting, key order, other
    time zones and the odd types a malformed receipt can carry must all hash alike."""
    from datetime import UTC, datetime, timedelta, timezone

    at = datetime(2026, 2, 17, 23, 59, 59, 7, tzinfo=UTC)
    details: list[Any] = [
        {},
        {"b": 1, "a": [1.5, 1e20, -0.0, 2.5e-7, None, True, 'q"\\\n\t\x01\u2028é😀']},
        {"z": {"y": 2, "x": {"ü": 3, "U": [{}]}}, "n": 10**30},
        [3, 2],
        "text",
    ]
    zones = [UTC, timezone(timedelta(hours=7))]
    call = uuid.UUID(int=5)
    for d in details:
        for key in (None, 'k"1', "ü", 3):
            for type_ in ("call_started", 'ty"pe\x02', 7):
                for zone in zones:
                    for seq in (1, 2**40, 2.0):
                        args = (call, seq, type_, at.astimezone(zone), d, key, bytes(range(32)))
                        fast = ledger.event_hash(*args)  # type: ignore[arg-type]
                        assert fast == ledger.event_hash_reference(*args), args  # type: ignore[arg-type]


def test_jsonb_decoding_is_json_loads() -> None:
    """The pool's jsonb decoder calls json.loads's C scanner directly: same value, same error."""
    import json

    from service.db.pool import json_loads

    texts = ['{"a": 1}', ' {"a": 1}', '{"a": 1} ', "[1, 2.5e3, null]", '"x"', "1e400", "{} x", ""]
    for text in texts:
        try:
            expected: Any = json.loads(text)
        except ValueError as exc:
            expected = (type(exc), str(exc))
        try:
            got: Any = json_loads(text)
        except ValueError as exc:
            got = (type(exc), str(exc))
        assert repr(got) == repr(expected), text
