"""Numbers stored before they were normalised to E.164 (a platform's 0901234567 hashed as it
came) are found by the E.164 number once ``callvault calls rehash``, or serve's one start-up
pass, has recomputed their lookup hashes: tenant by tenant, idempotent, once per deployment."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from retention import dsar, holds
from service.config import Settings
from service.db import tenancy
from service.errors import NotFound
from service.personal import rehash as rehash_module
from service.personal.numbers import PhoneVault
from tests.conftest import SECRET_KEY, Service, run_cli
from tests.waiting import eventually

Conn = asyncpg.Connection
VAULT = PhoneVault(SECRET_KEY)
PERSON = "+84901234567"


def old_hash(spelling: str) -> bytes:
    """The lookup hash the code before phonenumbers parsing stored: HMAC-SHA256, under the key
    HKDF derives for lookups, of the spelling with separators dropped (``0901234567`` and
    ``84901234567`` as they came, not read as Vietnam's)."""
    key = HKDF(hashes.SHA256(), length=32, salt=b"callvault", info=b"phone-lookup").derive(
        SECRET_KEY.encode()
    )
    return hmac.new(key, spelling.encode(), hashlib.sha256).digest()


async def seed_old_call(db: Conn, spelling: str) -> uuid.UUID:
    """A call as intake stored it before: the number as the platform spelled it, its hash."""
    call_id: uuid.UUID = await db.fetchval(
        "INSERT INTO calls (platform, external_id, caller_enc, caller_hash, called, policy, "
        "outcome, outcome_at) VALUES ('pbx', $1, $2, $3, '+842873001234', '{}', 'consented', "
        "now()) RETURNING id",
        "old-" + uuid.uuid4().hex,
        VAULT.encrypt(spelling),
        old_hash(spelling),
    )
    return call_id


async def events(db: Conn, call_id: uuid.UUID) -> list[str]:
    rows = await db.fetch("SELECT type FROM ledger_events WHERE call_id = $1", call_id)
    return [r["type"] for r in rows]


def test_the_old_hash_is_what_the_old_code_stored() -> None:
    # the derivation is right: an E.164 spelling hashed the same before and now
    assert old_hash(PERSON) == VAULT.lookup_hash(PERSON)
    # and the national spelling's hash is what no lookup by the E.164 number asks for
    assert old_hash("0901234567") not in VAULT.lookup_hashes(PERSON)


async def test_calls_rehash_makes_old_calls_findable_tenant_by_tenant(
    db: Conn, database_url: str
) -> None:
    await db.execute("INSERT INTO tenants (id, name) VALUES ('acme', 'ACME')")
    mine = await seed_old_call(db, "0901234567")
    await db.execute(
        "INSERT INTO do_not_record (phone_hash, phone_enc, reason) VALUES ($1, $2, 'withdrawn')",
        old_hash("84911111111"),  # Stringee spells numbers without the +
        VAULT.encrypt("84911111111"),
    )
    await tenancy.set_tenant(db, "acme")
    theirs = await seed_old_call(db, "+840901234567")
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    with pytest.raises(NotFound):  # the problem: the E.164 number misses the old call
        await dsar.create(db, VAULT, kind="access", phone=PERSON, actor="test")

    result = await asyncio.to_thread(run_cli, database_url, "calls", "rehash")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "re-hashed 2 calls, 1 do-not-record entries, 0 holds and 0 requests in 2 tenant(s)"
    )

    await dsar.create(db, VAULT, kind="access", phone=PERSON, actor="test")
    await holds.place(db, VAULT, "test", phone=PERSON, reason="court order")
    assert {"dsar_received", "hold_placed"} <= set(await events(db, mine))
    listed = await db.fetchval("SELECT phone_hash FROM do_not_record")
    assert listed == VAULT.lookup_hash("+84911111111")  # the call-start check asks for this
    await tenancy.set_tenant(db, "acme")
    await holds.place(db, VAULT, "test", phone=PERSON, reason="court order")
    assert "hold_placed" in await events(db, theirs)
    # each tenant's trail says what was done to its rows; the platform's marks the pass done
    trail = await db.fetch(
        "SELECT tenant_id, details FROM audit_log WHERE action = 'phone_hashes_rehashed' "
        "ORDER BY id"
    )
    assert [(r["tenant_id"], r["details"]["calls"]) for r in trail] == [
        ("acme", 1),
        ("default", 1),
        (None, 2),
    ]

    again = await asyncio.to_thread(run_cli, database_url, "calls", "rehash")
    assert again.stdout.strip() == (
        "re-hashed 0 calls, 0 do-not-record entries, 0 holds and 0 requests in 2 tenant(s)"
    )


async def test_a_number_on_the_list_under_both_spellings_is_kept_once(
    db: Conn, database_url: str
) -> None:
    for spelling in ("0911111111", "+84911111111"):
        await db.execute(
            "INSERT INTO do_not_record (phone_hash, phone_enc, reason) VALUES ($1, $2, 'x')",
            old_hash(spelling),
            VAULT.encrypt(spelling),
        )
    result = await asyncio.to_thread(run_cli, database_url, "calls", "rehash")
    assert result.returncode == 0, result.stderr
    rows = await db.fetch("SELECT phone_hash FROM do_not_record")
    assert [r["phone_hash"] for r in rows] == [VAULT.lookup_hash("+84911111111")]


def _rehash_running() -> bool:
    return any(t.get_name() == "phone-rehash" for t in asyncio.all_tasks())


async def test_serve_rehashes_once_per_deployment_in_the_background(
    settings: Settings, db: Conn
) -> None:
    service = Service(replace(settings, workers=1))
    await service.start()
    try:
        # nothing stored yet: no pass, no marker
        assert not _rehash_running()
        marker = "SELECT count(*) FROM audit_log WHERE action = 'phone_hashes_rehashed'"
        assert await db.fetchval(marker) == 0

        first = await seed_old_call(db, "0901234567")
        await service.reconfigure()  # a new release starting on a deployment with old rows

        async def rehashed() -> bool:
            found = await db.fetchval("SELECT caller_hash FROM calls WHERE id = $1", first)
            return bool(found == VAULT.lookup_hash(PERSON))

        await eventually(rehashed, what="the start-up pass re-hashing the old call")
        await eventually(
            lambda: _marked(db), what="the platform-wide audit entry marking the pass done"
        )
        await dsar.create(db, VAULT, kind="access", phone=PERSON, actor="test")
        assert "dsar_received" in await events(db, first)

        # the marker stands: a later start-up does not walk every number again
        later = await seed_old_call(db, "0907654321")
        await service.reconfigure()
        assert not _rehash_running()
        stored = await db.fetchval("SELECT caller_hash FROM calls WHERE id = $1", later)
        assert stored == old_hash("0907654321")
    finally:
        await service.stop()


async def _marked(db: Conn) -> bool:
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'phone_hashes_rehashed' "
            "AND tenant_id IS NULL"
        )
    )


async def test_a_pass_cancelled_between_its_turns_rolls_its_page_back(
    db: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass hands the event loop back every few rows (so serve answers meanwhile); cancelled
    at one of those turns mid-page, it leaves no half page written and the connection out of
    its transaction, and a rerun finishes the work."""
    ids = [await seed_old_call(db, f"09012345{i:02d}") for i in range(40)]
    real_sleep = asyncio.sleep
    turns = 0

    async def cancelling_sleep(delay: float, *a: Any) -> None:
        nonlocal turns
        turns += 1
        if turns == 2:  # 32 rows into the page: cancel the pass right here
            asyncio.current_task().cancel()  # type: ignore[union-attr]
        await real_sleep(delay)

    monkeypatch.setattr(rehash_module.asyncio, "sleep", cancelling_sleep)
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    task = asyncio.create_task(rehash_module.rehash(db, VAULT, page=500))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not db.is_in_transaction()
    hashes = [await db.fetchval("SELECT caller_hash FROM calls WHERE id = $1", i) for i in ids]
    assert all(bytes(h) == old_hash(f"09012345{n:02d}") for n, h in enumerate(hashes)), (
        "part of the page was written"
    )
    monkeypatch.setattr(rehash_module.asyncio, "sleep", real_sleep)
    report = await rehash_module.rehash(db, VAULT, page=500)
    assert report.calls == 40
