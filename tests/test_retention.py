"""Purge and holds on real PostgreSQL and moto's S3 server. The clock is the database's: a
test makes a recording expired by setting its retain_until in the past, never by sleeping."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from retention import holds, scheduler
from retention.purge import PurgeReport, due, purge_once
from service import ledger
from service.db import tenancy
from service.db.pool import create_pool
from service.personal.numbers import PhoneVault
from service.storage import recording_keys
from service.storage.s3 import S3Store
from tests.conftest import SECRET_KEY, make_bucket
from tests.intake_helpers import objects
from tests.seed import seed_recording
from tests.tcp_proxy import TcpProxy
from tests.waiting import eventually

VAULT = PhoneVault(SECRET_KEY)
Conn = asyncpg.Connection


@pytest.fixture
async def versioned(moto_url: str) -> str:
    return await asyncio.to_thread(make_bucket, moto_url, True)


@pytest.fixture
async def store(moto_url: str, versioned: str) -> AsyncIterator[S3Store]:
    s = S3Store(versioned, endpoint_url=moto_url, region="us-east-1")
    yield s
    await s.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    p = await create_pool(database_url, min_size=1, max_size=6)
    yield p
    await p.close()


async def _state(db: Conn, rec: dict[str, Any]) -> str:
    state: str = await db.fetchval(
        "SELECT state FROM recordings WHERE id = $1", rec["recording_id"]
    )
    return state


async def test_purge_takes_expired_unheld_recordings_and_keeps_the_rest(
    db: Conn, pool: Any, store: S3Store, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    gone = [await seed_recording(db, store, VAULT, tmp_path) for _ in range(3)]
    young = await seed_recording(db, store, VAULT, tmp_path, expired=False)
    held_call = await seed_recording(db, store, VAULT, tmp_path)
    held_phone = await seed_recording(db, store, VAULT, tmp_path, caller="+84977777777")
    await holds.place(db, VAULT, "test", call_id=held_call["call_id"], reason="court order")
    await holds.place(
        db, VAULT, "test", phone="+84977777777", reason="investigation", case_ref="VKS-2026-17"
    )
    listed = await due(db)
    assert sorted(d.recording_id for d in listed if not d.held) == sorted(
        str(r["recording_id"]) for r in gone
    )
    assert sum(d.held for d in listed) == 2

    report = await purge_once(pool, store)
    assert (report.purged, report.held, report.failed) == (3, 0, {})
    keys = {o["key"] for o in await objects(moto_url, versioned)}
    assert keys == {young["key"], held_call["key"], held_phone["key"]}
    for rec in gone:
        assert await _state(db, rec) == "purged"
        types = [e.type for e in await ledger.events_of(db, rec["call_id"])]
        assert types[-1] == "purged"
    for rec in (young, held_call, held_phone):
        assert await _state(db, rec) == "stored"
    audit = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'purge'")
    assert audit["details"]["count"] == 3
    assert (await purge_once(pool, store)).purged == 0  # nothing left to take
    assert (await ledger.verify(db)).ok


async def test_purge_deletes_every_version(
    db: Conn, pool: Any, store: S3Store, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    rec = await seed_recording(db, store, VAULT, tmp_path)
    other = tmp_path / "v2"
    other.write_bytes(b"RIFF another version")
    await store.put_file(rec["key"], other, sha256="x", content_type="audio/wav", metadata={})
    assert len(await objects(moto_url, versioned)) == 2
    assert (await purge_once(pool, store)).purged == 1
    assert await objects(moto_url, versioned) == []


async def test_releasing_a_hold_lets_the_next_purge_take_it(
    db: Conn, pool: Any, store: S3Store, tmp_path: Path
) -> None:
    rec = await seed_recording(db, store, VAULT, tmp_path)
    placed = await holds.place(db, VAULT, "test", call_id=rec["call_id"], reason="dispute")
    assert placed.held_recordings == [str(rec["recording_id"])]
    assert (await purge_once(pool, store)).purged == 0
    await holds.release(db, VAULT, placed.id, "test")
    assert (await purge_once(pool, store)).purged == 1
    types = [e.type for e in await ledger.events_of(db, rec["call_id"])]
    assert types[-3:] == ["hold_placed", "hold_released", "purged"]


async def test_a_store_that_refuses_is_retried_and_never_marked_purged(
    db: Conn, pool: Any, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    target = urlsplit(moto_url)
    assert target.hostname and target.port
    proxy = TcpProxy(target.hostname, target.port)
    await proxy.start()
    store = S3Store(versioned, endpoint_url=f"http://127.0.0.1:{proxy.port}", region="us-east-1")
    try:
        rec = await seed_recording(db, store, VAULT, tmp_path)
        proxy.go_down()
        report = await purge_once(pool, store)
        assert report.purged == 0 and list(report.failed) == [str(rec["recording_id"])]
        assert await _state(db, rec) == "stored"
        assert len(await objects(moto_url, versioned)) == 1
        proxy.come_back()
        assert (await purge_once(pool, store)).purged == 1
        assert await objects(moto_url, versioned) == []
    finally:
        await store.close()
        await proxy.close()


class _FailsOneBatch(S3Store):
    """A store whose first ``DeleteObjects`` call raises (a bug, not a refusal), once a second
    batch has had its objects deleted and is on its way to its commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.sibling_deleted = asyncio.Event()

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        self.calls += 1
        if self.calls == 1:
            async with asyncio.timeout(60):  # a guard against a hang, not a timing assertion
                await self.sibling_deleted.wait()
            raise RuntimeError("the store's client broke")
        refused = await super().delete_many(keys)
        self.sibling_deleted.set()
        return refused


async def test_a_batch_that_raises_leaves_its_sibling_and_the_other_tenants_purged(
    db: Conn, pool: Any, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    """Two batches of a tenant run at once; one raises after the other has deleted its
    objects. The other commits (nothing is left deleted but still ``stored``), the failing one
    rolls back whole (rows, objects and keys all still there), the next tenant's pass runs, and
    the next pass takes what was left."""
    store = _FailsOneBatch(versioned, endpoint_url=moto_url, region="us-east-1")
    try:
        mine = [await seed_recording(db, store, VAULT, tmp_path, sealed=True) for _ in range(4)]
        await db.execute("INSERT INTO tenants (id, name) VALUES ('zeta', 'Zeta')")  # after default
        await tenancy.set_tenant(db, "zeta")
        theirs = [await seed_recording(db, store, VAULT, tmp_path, sealed=True) for _ in range(2)]
        await tenancy.set_tenant(db, tenancy.ALL)

        report = await purge_once(pool, store, batch=2, max_batches=2, workers=2)
        assert (report.batch_errors, report.purged, report.failed) == (1, 4, {})
        for rec in theirs:
            assert await _state(db, rec) == "purged"
            assert await store.head(rec["key"]) is None
        ids = [r["recording_id"] for r in mine]
        shredded = await recording_keys.shredded_among(db, ids)
        for rec in mine:
            state, head = await _state(db, rec), await store.head(rec["key"])
            # every recording is wholly purged or wholly as it was
            if state == "purged":
                assert head is None and rec["recording_id"] in shredded
                types = [e.type for e in await ledger.events_of(db, rec["call_id"])]
                assert types[-2:] == ["key_destroyed", "purged"]
            else:
                assert state == "stored" and head is not None
                assert rec["recording_id"] not in shredded
        assert len(shredded) == 2
        assert (await purge_once(pool, store)).purged == 2  # what the failed batch left
        assert await objects(moto_url, versioned) == []
        assert (await ledger.verify(db)).ok
    finally:
        await store.close()


async def test_a_batch_whose_commit_fails_counts_nothing_and_logs_no_row_values(
    db: Conn, pool: Any, store: S3Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's counts stand only once it has committed; its error is logged by type, SQLSTATE
    and place, never by its message (which here quotes a row)."""
    recs = [await seed_recording(db, store, VAULT, tmp_path) for _ in range(2)]
    await db.execute(
        """
        CREATE FUNCTION refuse_purge() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'row-value-%', NEW.id USING ERRCODE = '23514'; END $$;
        CREATE CONSTRAINT TRIGGER refuse_purge AFTER UPDATE ON recordings
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_purge();
        """
    )
    caplog.set_level(logging.ERROR, logger="retention.purge")
    report = await purge_once(pool, store)
    assert (report.batch_errors, report.purged, report.failed) == (1, 0, {})
    for rec in recs:
        assert await _state(db, rec) == "stored"
    [logged] = [r for r in caplog.records if r.name == "retention.purge"]
    assert (logged.error, logged.sqlstate) == ("CheckViolationError", "23514")  # type: ignore[attr-defined]
    assert re.fullmatch(r"[\w./-]+\.py[x]?:\d+", logged.raised_at)  # type: ignore[attr-defined]
    assert "row-value" not in caplog.text and "row-value" not in repr(vars(logged))


async def test_a_lost_commit_after_the_objects_went_is_redone_by_the_next_pass(
    db: Conn, pool: Any, store: S3Store, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    """A batch's commit that never reaches the disk (the database crashes after
    ``DeleteObjects``, before the commit record is flushed) leaves its objects gone and its rows
    as they were: ``stored``, expired, their keys whole, no ledger event. Here the commit fails
    instead (a deferred trigger raising the crash's SQLSTATE), which leaves exactly that. The
    next pass takes the rows again: deleting objects already gone succeeds, the keys are
    shredded, and each call's ledger gets its ``key_destroyed`` and ``purged`` once, in order."""
    recs = [await seed_recording(db, store, VAULT, tmp_path, sealed=True) for _ in range(3)]
    ids = [r["recording_id"] for r in recs]
    await db.execute(
        """
        CREATE FUNCTION lose_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'commit lost' USING ERRCODE = '57P02'; END $$;
        CREATE CONSTRAINT TRIGGER lose_commit AFTER UPDATE ON recordings
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION lose_commit();
        """
    )
    with pytest.raises(asyncpg.exceptions.CrashShutdownError):  # an outage: the pass stops
        await purge_once(pool, store)
    assert await objects(moto_url, versioned) == []  # the store did its part
    for rec in recs:
        assert await _state(db, rec) == "stored"
        assert [e.type for e in await ledger.events_of(db, rec["call_id"])][-1] != "purged"
    assert await recording_keys.shredded_among(db, ids) == set()
    await db.execute("DROP TRIGGER lose_commit ON recordings; DROP FUNCTION lose_commit()")

    report = await purge_once(pool, store)
    assert (report.batch_errors, report.purged, report.failed) == (0, 3, {})
    assert await recording_keys.shredded_among(db, ids) == set(ids)
    for rec in recs:
        assert await _state(db, rec) == "purged"
        types = [e.type for e in await ledger.events_of(db, rec["call_id"])]
        assert types.count("key_destroyed") == types.count("purged") == 1
        assert types[-2:] == ["key_destroyed", "purged"]
    assert (await purge_once(pool, store)).purged == 0
    assert (await ledger.verify(db)).ok


class _CutsTheDatabase(S3Store):
    """A store whose first ``DeleteObjects`` call comes as the database goes away."""

    def __init__(self, proxy: TcpProxy, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proxy = proxy
        self.tenants: list[str | None] = []

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        self.tenants.append(tenancy.current())
        self.proxy.go_down()
        return await super().delete_many(keys)


async def test_a_lost_database_stops_the_pass_instead_of_waiting_on_every_tenant(
    db: Conn, database_url: str, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    socket_dir = parse_qs(urlsplit(database_url).query)["host"][0]
    socket = next(p for p in Path(socket_dir).glob(".s.PGSQL.*") if p.suffix != ".lock")
    proxy = TcpProxy("", 0, unix_path=str(socket))
    await proxy.start()
    parts = urlsplit(database_url)
    via_proxy = f"postgresql://{parts.username}@127.0.0.1:{proxy.port}{parts.path}"
    pool = await create_pool(via_proxy, min_size=1, max_size=4)
    store = _CutsTheDatabase(proxy, versioned, endpoint_url=moto_url, region="us-east-1")
    try:
        for _ in range(4):
            await seed_recording(db, store, VAULT, tmp_path)
        await db.execute("INSERT INTO tenants (id, name) VALUES ('zeta', 'Zeta')")  # after default
        await tenancy.set_tenant(db, "zeta")
        for _ in range(2):
            await seed_recording(db, store, VAULT, tmp_path)
        await tenancy.set_tenant(db, tenancy.ALL)

        with pytest.raises((OSError, asyncpg.InterfaceError)):  # the outage, as before b2af4eb
            await purge_once(pool, store, batch=2, max_batches=2, workers=2)
        assert set(store.tenants) == {tenancy.DEFAULT}  # zeta was not waited on
        proxy.come_back()
        store.proxy = TcpProxy("", 0)  # no more cuts
        assert (await purge_once(pool, store)).purged == 6
    finally:
        await pool.close()
        await store.close()
        await proxy.close()


class _StopsTheSchedule(S3Store):
    """A store whose ``DeleteObjects`` call comes as the service shuts down."""

    schedule: scheduler.Schedule
    stop: asyncio.Future[None]

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        self.stop = asyncio.ensure_future(self.schedule.stop())

        async def stop_has_begun() -> bool:  # it would cancel the pass now
            return scheduler.stopping()

        await eventually(stop_has_begun, what="the schedule's stop() to begin")
        return await super().delete_many(keys)


async def test_a_shutdown_lets_the_batch_in_flight_commit_and_claims_no_more(
    db: Conn, pool: Any, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    """Cancelled during its ``DeleteObjects``, a batch rolled back with its objects gone: rows
    ``stored`` whose objects no longer exist until the next pass."""
    store = _StopsTheSchedule(versioned, endpoint_url=moto_url, region="us-east-1")
    try:
        recs = [await seed_recording(db, store, VAULT, tmp_path) for _ in range(4)]
        reports: list[PurgeReport] = []

        async def purge() -> None:
            reports.append(await purge_once(pool, store, batch=2, workers=1))

        store.schedule = scheduler.start(purge, 3600.0)
        store.schedule.scheduler.modify_job("purge", next_run_time=datetime.now(UTC))

        async def stop_begun() -> bool:
            return hasattr(store, "stop")

        await eventually(stop_begun, what="the pass's DeleteObjects call")
        await store.stop  # returns once the pass has let go

        assert [r.purged for r in reports] == [2]  # the batch in flight, and no other
        states = {rec["key"]: await _state(db, rec) for rec in recs}
        assert sorted(states.values()) == ["purged", "purged", "stored", "stored"]
        for key, state in states.items():  # purged exactly where the object is gone
            assert (await store.head(key) is None) == (state == "purged")
    finally:
        await store.close()


async def test_replicas_purging_at_once_purge_each_recording_exactly_once(
    db: Conn, database_url: str, store: S3Store, tmp_path: Path, moto_url: str, versioned: str
) -> None:
    recs = [await seed_recording(db, store, VAULT, tmp_path) for _ in range(60)]
    pools = [await create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    try:
        reports = await asyncio.gather(*(purge_once(p, store, batch=7) for p in pools))
    finally:
        for p in pools:
            await p.close()
    assert sum(r.purged for r in reports) == len(recs)
    events = await db.fetchval("SELECT count(*) FROM ledger_events WHERE type = 'purged'")
    assert events == len(recs)
    assert await objects(moto_url, versioned) == []


@pytest.mark.parametrize("on", ["call", "phone"])
async def test_hold_racing_purge_never_ends_held_with_the_object_gone(
    db: Conn,
    database_url: str,
    store: S3Store,
    tmp_path: Path,
    moto_url: str,
    versioned: str,
    on: str,
) -> None:
    pool = await create_pool(database_url, min_size=2, max_size=4)
    outcomes = {"held": 0, "already_purged": 0}
    try:
        for i in range(25):
            caller = f"+849100{i:05d}"
            rec = await seed_recording(db, store, VAULT, tmp_path, caller=caller)
            # the hold is placed as its tenant; the purge walks the tenants itself
            with tenancy.as_tenant(tenancy.DEFAULT):
                async with pool.acquire() as conn:
                    target = {"call_id": rec["call_id"]} if on == "call" else {"phone": caller}
                    placed, _ = await asyncio.gather(
                        holds.place(conn, VAULT, "test", reason="race", **target),
                        purge_once(pool, store),
                    )
            head = await store.head(rec["key"])
            state = await _state(db, rec)
            if placed.held_recordings:
                assert placed.held_recordings == [str(rec["recording_id"])]
                assert head is not None and state == "stored", "held but the object is gone"
                outcomes["held"] += 1
            else:
                assert placed.already_gone == [str(rec["recording_id"])]
                assert head is None and state == "purged"
                outcomes["already_purged"] += 1
            # the hold keeps it from every later purge
            await purge_once(pool, store)
            if placed.held_recordings:
                assert await store.head(rec["key"]) is not None
    finally:
        await pool.close()
    print(f"hold vs purge ({on}): {outcomes}")
    assert sum(outcomes.values()) == 25


async def test_dry_run_says_what_goes_now_and_when_the_rest_goes(
    db: Conn, store: S3Store, tmp_path: Path
) -> None:
    from retention.purge import dry_run_report

    gone = await seed_recording(db, store, VAULT, tmp_path)
    young = await seed_recording(db, store, VAULT, tmp_path, expired=False)
    held = await seed_recording(db, store, VAULT, tmp_path, expired=False, caller="+84977000001")
    await holds.place(db, VAULT, "test", call_id=held["call_id"], reason="court order")
    lines = await dry_run_report(db)
    assert lines[0].startswith(str(gone["recording_id"])) and "retention ended" in lines[0]
    assert lines[1] == "1 would be purged, 0 kept by holds"
    assert lines[2] == "next to go (the 2 soonest):"
    by_id = {line.split()[0]: line for line in lines[3:]}
    # seeded 90 days ahead by the database's clock; a moment has passed since
    assert "goes in 89d 23h" in by_id[str(young["recording_id"])]
    assert "legal hold" not in by_id[str(young["recording_id"])]
    assert "under a legal hold" in by_id[str(held["recording_id"])]
    assert len(await dry_run_report(db, upcoming=0)) == 2  # only what goes now
