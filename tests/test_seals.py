"""Merkle seals: RFC 6962 hashing, per-tenant chains, inclusion proofs, and old seals kept valid."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service import ledger
from service.db import tenancy
from service.ledger import merkle, seals
from tests.conftest import run_cli
from tests.test_ledger import _tamper, new_call
from tests.test_migrations import write_digest_seal

Conn = asyncpg.Connection

# The Certificate Transparency reference leaves and tree heads (RFC 6962 test vectors).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATHS = {
    0: [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    5: [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 as written: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def test_roots_and_paths_match_the_rfc_6962_test_vectors() -> None:
    hashed = [merkle.leaf_hash(d) for d in CT_LEAVES]
    for n in range(len(CT_LEAVES) + 1):
        assert merkle.root(hashed[:n]).hex() == CT_ROOTS[n], n
    for index, path in CT_PATHS.items():
        assert [p.hex() for p in merkle.inclusion_path(hashed, index)] == path
        assert merkle.verify_inclusion(
            hashed[index], index, 8, [bytes.fromhex(p) for p in path], bytes.fromhex(CT_ROOTS[8])
        )


def test_every_leaf_of_every_tree_size_proves_and_nothing_else_does() -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(70)]
    for n in range(1, len(leaves) + 1):
        tree = leaves[:n]
        head = merkle.root(tree)
        assert head == _reference_root(tree)
        for i in range(n):
            path = merkle.inclusion_path(tree, i)
            assert len(path) <= max(1, (n - 1).bit_length())
            assert merkle.verify_inclusion(tree[i], i, n, path, head)
            other = (i + 1) % n
            if other != i:
                assert not merkle.verify_inclusion(tree[other], i, n, path, head)
            if path:
                assert not merkle.verify_inclusion(tree[i], i, n, path[:-1], head)
                assert not merkle.verify_inclusion(tree[i], i, n, [*path, path[0]], head)


async def test_a_seal_is_a_merkle_tree_over_the_tenants_heads_and_proves_each_call(
    db: Conn,
) -> None:
    assert await seals.seal(db) is None  # an empty ledger has nothing to seal
    calls = [await new_call(db, 1 + n % 3) for n in range(5)]
    seal_id = await seals.seal(db)
    assert seal_id is not None
    row = await db.fetchrow("SELECT * FROM ledger_seals WHERE id = $1", seal_id)
    assert row["format"] == 2 and row["tree_size"] == 5 and row["heads_sha256"] is None
    heads = {
        r["call_id"]: bytes(r["hash"])
        for r in await db.fetch(
            "SELECT DISTINCT ON (call_id) call_id, hash FROM ledger_events "
            "ORDER BY call_id, seq DESC"
        )
    }
    # recomputed here from nothing but the heads: leaves in call id order
    leaves = [merkle.leaf_hash(c.bytes + heads[c]) for c in sorted(heads)]
    assert bytes(row["root"]) == merkle.root(leaves)
    for call_id in calls:
        inc = await seals.inclusion(db, "default", call_id)
        assert inc is not None and inc.seal_id == seal_id and inc.head == heads[call_id]
        assert len(inc.path) <= 3  # ceil(log2(5))
        leaf = merkle.leaf_hash(seals.leaf_data(call_id, inc.head))
        assert merkle.verify_inclusion(leaf, inc.leaf_index, inc.tree_size, inc.path, inc.root)
        assert inc.hash == seals.seal_hash_v2(
            inc.prev_hash, "default", inc.at, inc.max_event_id, inc.tree_size, inc.root
        )
    late = await new_call(db, 1)
    assert await seals.inclusion(db, "default", late) is None  # not sealed yet
    assert (await ledger.verify(db)).ok


async def test_each_tenant_has_its_own_chain_of_seals_verifiable_alone(
    db: Conn, database_url: str
) -> None:
    await db.execute("INSERT INTO tenants (id, name) VALUES ('acme', 'ACME')")
    a = await new_call(db)
    await seals.seal(db)
    await tenancy.set_tenant(db, "acme")
    b = await new_call(db, 3)
    acme_seal = await seals.seal(db)
    await new_call(db, 1)
    assert await seals.seal(db) is not None  # acme's second, chained to its first
    rows = await db.fetch("SELECT id, tenant_id, prev_hash, hash FROM ledger_seals ORDER BY id")
    acme = [r for r in rows if r["tenant_id"] == "acme"]
    assert bytes(acme[0]["prev_hash"]) == seals.GENESIS
    assert bytes(acme[1]["prev_hash"]) == bytes(acme[0]["hash"])
    inc = await seals.inclusion(db, "acme", b)
    assert inc is not None and inc.seal_id > acme_seal  # the newest covering seal
    assert await seals.inclusion(db, "acme", a) is None  # default's call is not acme's

    for tenant in ("default", "acme"):
        one = await asyncio.to_thread(run_cli, database_url, "ledger", "verify", "--tenant", tenant)
        assert one.returncode == 0, one.stderr
    every = await asyncio.to_thread(run_cli, database_url, "ledger", "verify")
    assert every.returncode == 0, every.stderr
    assert "and 3 seals" in every.stdout
    assert "tenant acme: 2 seals" in every.stdout and "tenant default: 1 seals" in every.stdout

    # a call of acme removed whole breaks acme's seal, and only acme's
    await _tamper(db, "DELETE FROM ledger_events WHERE call_id = $1", b)
    await db.execute("DELETE FROM calls WHERE id = $1", b)
    default_only = await asyncio.to_thread(
        run_cli, database_url, "ledger", "verify", "--tenant", "default"
    )
    assert default_only.returncode == 0, default_only.stderr
    acme_only = await asyncio.to_thread(
        run_cli, database_url, "ledger", "verify", "--tenant", "acme"
    )
    assert acme_only.returncode == 1
    assert "seals of tenant acme: seal" in acme_only.stderr
    assert "a call was removed" in acme_only.stderr
    unknown = await asyncio.to_thread(
        run_cli, database_url, "ledger", "verify", "--tenant", "nobody"
    )
    assert unknown.returncode == 1 and "no tenant 'nobody'" in unknown.stderr


async def test_old_digest_seals_still_verify_and_the_merkle_chain_continues_them(
    db: Conn,
) -> None:
    """A database upgraded with format-1 seals: they verify, the first Merkle seal chains to
    the last of them, and tampering with an old one is still caught."""
    await new_call(db, 2)
    await new_call(db, 3)
    await write_digest_seal(db)
    old_hash = bytes(await db.fetchval("SELECT hash FROM ledger_seals"))
    assert (await ledger.verify(db)).ok
    await new_call(db, 1)
    new_id = await seals.seal(db)
    new = await db.fetchrow("SELECT format, prev_hash FROM ledger_seals WHERE id = $1", new_id)
    assert new["format"] == 2 and bytes(new["prev_hash"]) == old_hash
    report = await ledger.verify(db)
    assert report.ok and report.seals == 2
    await db.execute("ALTER TABLE ledger_seals DISABLE TRIGGER USER")
    await db.execute("UPDATE ledger_seals SET calls = 7 WHERE format = 1")
    await db.execute("ALTER TABLE ledger_seals ENABLE TRIGGER USER")
    report = await ledger.verify(db)
    assert not report.ok and "altered or out of order" in report.breaks[0].reason


async def test_a_rewritten_head_breaks_the_newest_seal(db: Conn) -> None:
    call_id = await new_call(db, 2)
    await new_call(db, 2)
    await seals.seal(db)
    # a whole chain rewritten consistently (hashes recomputed) still differs from the seal
    events = await ledger.events_of(db, call_id)
    await _tamper(db, "DELETE FROM ledger_events WHERE call_id = $1", call_id)
    first = events[0]
    forged = ledger.event_hash(call_id, 1, "forged", first.at, {}, None, ledger.GENESIS)
    await _tamper(
        db,
        "INSERT INTO ledger_events (call_id, seq, type, at, details, prev_hash, hash) "
        "VALUES ($1, 1, 'forged', $2, '{}', $3, $4)",
        call_id,
        first.at,
        ledger.GENESIS,
        forged,
    )
    report = await ledger.verify(db)
    assert not report.ok and "no longer matches the ledger" in report.breaks[0].reason


async def test_a_second_seal_cannot_fork_a_tenants_chain(db: Conn) -> None:
    await new_call(db)
    await seals.seal(db)
    row = await db.fetchrow("SELECT * FROM ledger_seals")
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(
            "INSERT INTO ledger_seals (format, max_event_id, calls, tree_size, root, prev_hash, "
            "hash) VALUES (2, $1, 1, 1, $2, $3, $4)",
            row["max_event_id"],
            bytes(32),
            bytes(row["prev_hash"]),
            bytes(32),
        )


async def test_a_seal_waits_for_an_append_that_drew_a_lower_id_but_has_not_committed(
    db: Conn, database_url: str
) -> None:
    """Writer A draws an event id and has not committed; writer B draws the next id and
    commits. A seal bounded by B's id would later find A's event under its bound and call a
    sound ledger tampered with: it waits for A instead."""
    from service.db.pool import connect
    from tests.waiting import eventually

    slow_call, fast_call = await new_call(db, 1), await new_call(db, 1)
    writer_a, sealer = await connect(database_url), await connect(database_url)
    try:
        for conn in (writer_a, sealer):
            await tenancy.set_tenant(conn, tenancy.DEFAULT)
        open_a = writer_a.transaction()
        await open_a.start()
        await ledger.append(writer_a, slow_call, [ledger.NewEvent("late")])
        async with db.transaction():
            await ledger.append(db, fast_call, [ledger.NewEvent("early")])
        sealing = asyncio.create_task(seals.seal(sealer))
        pid = sealer.get_server_pid()

        async def sealer_waits() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
                )
            )

        await eventually(sealer_waits, what="the seal waiting for the open append")
        assert not sealing.done()
        await open_a.commit()
        assert await sealing is not None
    finally:
        await writer_a.close()
        await sealer.close()
    report = await ledger.verify(db)
    assert report.ok, report.breaks
    late = await db.fetchval("SELECT max(id) FROM ledger_events WHERE type = 'late'")
    assert late <= await db.fetchval("SELECT max_event_id FROM ledger_seals")
