"""Migrations: applied once, safely in parallel, and matching the committed schema snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from typing import Any

import asyncpg
import pytest

from service.db import migrations, tenancy
from service.db.pool import connect
from tests.conftest import db_url
from tests.schema import SNAPSHOT, dump_schema


async def test_schema_matches_snapshot(database_url: str) -> None:
    actual = await asyncio.to_thread(dump_schema, database_url)
    assert actual == SNAPSHOT.read_text(), (
        "the migrated schema differs from tests/schema.sql; if the change is intended, "
        "run `make schema-snapshot` and commit it"
    )


@pytest.fixture
async def empty_database(pg_base_url: str) -> Any:
    conn = await asyncpg.connect(pg_base_url)
    await conn.execute("CREATE DATABASE empty_for_migrations")
    await conn.close()
    yield db_url(pg_base_url, "empty_for_migrations")
    conn = await asyncpg.connect(pg_base_url)
    await conn.execute("DROP DATABASE empty_for_migrations WITH (FORCE)")
    await conn.close()


async def test_replicas_migrating_at_once_apply_each_migration_once(empty_database: str) -> None:
    conns = [await connect(empty_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrations.migrate(c) for c in conns))
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in migrations.available()]
        rows = await conns[0].fetch("SELECT version FROM callvault_migrations ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in migrations.available()]
        assert await migrations.migrate(conns[0]) == []
    finally:
        for c in conns:
            await c.close()


async def test_edited_migration_stops_start_up(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    original = migrations.available()
    edited = [dataclasses.replace(original[0], sql=original[0].sql + "\n-- edited")]
    monkeypatch.setattr(migrations, "available", lambda: edited + original[1:])
    with pytest.raises(migrations.MigrationError, match="changed after it was applied"):
        await migrations.migrate(db)


async def test_database_newer_than_code_stops_start_up(db: Any) -> None:
    await db.execute(
        "INSERT INTO callvault_migrations (version, name, sha256) VALUES (9999, 'future', 'x')"
    )
    with pytest.raises(migrations.MigrationError, match="9999"):
        await migrations.migrate(db)


async def test_todays_data_moves_into_the_default_tenant_with_chains_and_seals_intact(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the single-organisation callvault (migrations up to 0009) full of data,
    upgraded through tenant isolation: everything belongs to ``default``, the service's role
    sees it all as ``default`` and nothing without a tenant, and the ledger still verifies."""
    from service import ledger
    from service.db import tenancy
    from service.db.roles import ensure_service_role, url_for_role
    from service.ledger import NewEvent
    from tests.conftest import run_cli

    before_tenants = [m for m in migrations.available() if m.version <= 9]
    conn = await connect(empty_database)
    try:
        monkeypatch.setattr(migrations, "available", lambda: before_tenants)
        await migrations.migrate(conn)
        monkeypatch.undo()
        call_ids = []
        for n in range(5):
            call_id = await conn.fetchval(
                "INSERT INTO calls (platform, external_id, policy) VALUES ('twilio', $1, '{}') "
                "RETURNING id",
                f"CA{n:032d}",
            )
            async with conn.transaction():
                await ledger.append(
                    conn, call_id, [NewEvent("call_started", {"n": n}), NewEvent("consented")]
                )
            await conn.execute(
                "INSERT INTO recordings (call_id, platform, external_id) VALUES ($1, 'twilio', $2)",
                call_id,
                f"RE{n:032d}",
            )
            call_ids.append(call_id)
        await write_digest_seal(conn)  # a seal as callvault wrote them before Merkle trees
        async with conn.transaction():  # an event after the seal
            await ledger.append(conn, call_ids[0], [NewEvent("purged")])
        await conn.execute(
            "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'case', 'cli:x')",
            call_ids[1],
        )
        await conn.execute(
            "INSERT INTO api_tokens (name, role, token_sha256, created_by) "
            "VALUES ('qa', 'qa_trainer', $1, 'cli:x')",
            b"x" * 32,
        )
        await conn.execute("INSERT INTO audit_log (actor, action) VALUES ('cli:x', 'hold')")
        await conn.execute(
            "INSERT INTO do_not_record (phone_hash, reason) VALUES ($1, 'asked')", b"h" * 32
        )
        await conn.execute("INSERT INTO jobs (kind, dedupe_key) VALUES ('recording', 'k')")

        applied = await migrations.migrate(conn)
        assert [m.version for m in applied] == [
            m.version for m in migrations.available() if m.version > 9
        ]
        await ensure_service_role(conn)
        for table in ("calls", "ledger_events", "ledger_seals", "recordings", "holds", "jobs"):
            tenants = await conn.fetch(f"SELECT DISTINCT tenant_id FROM {table}")  # noqa: S608
            assert [r["tenant_id"] for r in tenants] == ["default"], table
    finally:
        await conn.close()

    service = await connect(url_for_role(empty_database))
    try:
        assert await service.fetch("SELECT id FROM calls") == []  # no tenant said: nothing
        await tenancy.set_tenant(service, tenancy.DEFAULT)
        assert {r["id"] for r in await service.fetch("SELECT id FROM calls")} == set(call_ids)
        for table in ("api_tokens", "audit_log", "do_not_record", "holds", "ledger_seals"):
            assert await service.fetchval(f"SELECT count(*) FROM {table}") == 1, table  # noqa: S608
        report = await ledger.verify(service)
        assert report.ok and report.calls == 5 and report.events == 11 and report.seals == 1
    finally:
        await service.close()
    result = await asyncio.to_thread(run_cli, empty_database, "ledger", "verify")
    assert result.returncode == 0, result.stderr
    assert "verified 11 events in 5 calls and 1 seals" in result.stdout
    # the old seal stays format 1; the first Merkle seal chains on to it and both verify
    sealed = await asyncio.to_thread(run_cli, empty_database, "ledger", "seal")
    assert sealed.returncode == 0, sealed.stderr
    result = await asyncio.to_thread(run_cli, empty_database, "ledger", "verify")
    assert result.returncode == 0, result.stderr
    assert "verified 11 events in 5 calls and 2 seals" in result.stdout


async def write_digest_seal(conn: Any) -> None:
    """A format-1 seal (one SHA-256 over every call's head) of everything, as the code before
    Merkle seals wrote it."""
    from service.ledger import seals

    upto = await conn.fetchval("SELECT coalesce(max(id), 0) FROM ledger_events")
    digest = hashlib.sha256(b"callvault-seal-v1\n")
    heads = await conn.fetch(
        "SELECT DISTINCT ON (call_id) call_id, seq, hash FROM ledger_events "
        "ORDER BY call_id, seq DESC"
    )
    for r in heads:
        digest.update(r["call_id"].bytes + r["seq"].to_bytes(4, "big") + bytes(r["hash"]))
    last = await conn.fetchval("SELECT hash FROM ledger_seals ORDER BY id DESC LIMIT 1")
    prev = bytes(last) if last is not None else seals.GENESIS
    await conn.execute(
        "INSERT INTO ledger_seals (max_event_id, calls, heads_sha256, prev_hash, hash) "
        "VALUES ($1, $2, $3, $4, $5)",
        upto,
        len(heads),
        digest.digest(),
        prev,
        seals.seal_hash(prev, upto, len(heads), digest.digest()),
    )


async def test_pbx_call_ids_kept_with_a_tenant_prefix_are_rewritten_once(
    db: Any, service_url: str
) -> None:
    """0023: a PBX call and its recording kept as ``{tenant}/{id}`` (before 0018 made platform
    ids unique per tenant) get the PBX's own id, in every tenant even when the migration's
    connection names one (row-level security binds its role), once; a bare id that is taken
    already leaves the old row as it is, and other platforms' ids are not touched."""
    (sql,) = [m.sql for m in migrations.available() if m.version == 23]
    await db.execute("INSERT INTO tenants (id, name) VALUES ('beta', 'Beta')")
    rows = [
        ("default", "pbx", "default/1733.1"),
        ("beta", "pbx", "beta/1733.1"),  # the same PBX id in another tenant
        ("beta", "pbx", "beta/1733.2"),
        ("beta", "pbx", "1733.2"),  # written by a newer replica meanwhile: no collision
        ("beta", "twilio", "beta/CAnotapbx"),
    ]
    for tenant, platform, external_id in rows:
        call = await db.fetchval(
            "INSERT INTO calls (tenant_id, platform, external_id, policy) "
            "VALUES ($1, $2, $3, '{}') RETURNING id",
            tenant,
            platform,
            external_id,
        )
        await db.execute(
            "INSERT INTO recordings (call_id, platform, external_id) VALUES ($1, $2, $3)",
            call,
            platform,
            external_id,
        )
    conn = await asyncpg.connect(service_url)
    try:
        await conn.execute("SELECT set_config('callvault.tenant', 'default', false)")
        for _ in range(2):  # a rerun changes nothing
            async with conn.transaction():
                await conn.execute(sql)
    finally:
        await conn.close()
    found = await db.fetch(
        "SELECT c.tenant_id, c.platform, c.external_id, r.external_id AS rec FROM calls c "
        "JOIN recordings r ON r.call_id = c.id ORDER BY 1, 2, 3"
    )
    assert [tuple(r) for r in found] == [
        ("beta", "pbx", "1733.1", "1733.1"),
        ("beta", "pbx", "1733.2", "1733.2"),
        ("beta", "pbx", "beta/1733.2", "beta/1733.2"),
        ("beta", "twilio", "beta/CAnotapbx", "beta/CAnotapbx"),
        ("default", "pbx", "1733.1", "1733.1"),
    ]


async def test_listed_bundle_uploads_take_the_store_their_tenant_had_when_migrated(
    pg_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0029: the keys bundle runs had announced (a text[] before) become a map of key to the
    store each went to: a tenant with its own bucket gets that bucket's reference, a tenant on
    the shared store ``shared``; a request with none listed keeps an empty map, and a value
    that names no store is refused from then on."""
    name = "t_pre0029_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg_base_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    conn = await connect(db_url(pg_base_url, name))
    try:
        before = [m for m in migrations.available() if m.version < 29]
        monkeypatch.setattr(migrations, "available", lambda: before)
        await migrations.migrate(conn)
        monkeypatch.undo()
        await conn.execute(
            "INSERT INTO tenants (id, name) VALUES ('tenant-own', 'Own'), ('tenant-a', 'A')"
        )
        await conn.execute(
            "INSERT INTO tenant_storage (tenant_id, bucket) VALUES ('tenant-own', 'own-bucket')"
        )
        await tenancy.set_tenant(conn, tenancy.ALL)
        listed = {
            "tenant-own": ["dsar/1/r1.zip", "dsar/1/r2.zip"],
            "tenant-a": ["tenants/tenant-a/dsar/2/r3.zip"],
            "default": [],
        }
        ids = {}
        for tenant, keys in listed.items():
            ids[tenant] = await conn.fetchval(
                "INSERT INTO dsar_requests (tenant_id, kind, requested_by, due_at, "
                "bundle_uploads) VALUES ($1, 'access', 'x', now(), $2) RETURNING id",
                tenant,
                keys,
            )
        await tenancy.set_tenant(conn, "default")  # the migration sees every tenant anyway
        applied = await migrations.migrate(conn)
        assert 29 in [m.version for m in applied]
        await tenancy.set_tenant(conn, tenancy.ALL)
        got = {
            r["tenant_id"]: r["bundle_uploads"]
            for r in await conn.fetch("SELECT tenant_id, bundle_uploads FROM dsar_requests")
        }
        assert got == {
            "tenant-own": {"dsar/1/r1.zip": "s3://own-bucket", "dsar/1/r2.zip": "s3://own-bucket"},
            "tenant-a": {"tenants/tenant-a/dsar/2/r3.zip": "shared"},
            "default": {},
        }
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                'UPDATE dsar_requests SET bundle_uploads = \'{"k": "/tmp"}\' WHERE id = $1',
                ids["tenant-a"],
            )
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_base_url)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_a_listed_bundle_upload_under_the_shared_prefix_keeps_the_shared_store(
    pg_base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0029 on a tenant that moved from the shared store to its own bucket while a bundle run's
    upload was left (announced, never committed): its key carries the shared store's prefix
    ``tenants/{id}/``, which no key in a tenant's own bucket has, so it went to the shared
    store. Migrated as the own bucket's, it is deleted there (where it never was) and the copy
    in the shared store stays, the very leftover 0029 was written for. Migration 0031 gives
    such keys the shared store back (0029 had landed when this was found)."""
    name = "t_pre0029p_" + secrets.token_hex(4)
    admin = await asyncpg.connect(pg_base_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    conn = await connect(db_url(pg_base_url, name))
    try:
        before = [m for m in migrations.available() if m.version < 29]
        monkeypatch.setattr(migrations, "available", lambda: before)
        await migrations.migrate(conn)
        monkeypatch.undo()
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('tenant-own', 'Own')")
        await conn.execute(
            "INSERT INTO tenant_storage (tenant_id, bucket) VALUES ('tenant-own', 'own-bucket')"
        )
        await tenancy.set_tenant(conn, tenancy.ALL)
        await conn.execute(
            "INSERT INTO dsar_requests (tenant_id, kind, requested_by, due_at, bundle_uploads) "
            "VALUES ('tenant-own', 'access', 'x', now(), $1)",
            ["tenants/tenant-own/dsar/1/before-the-move.zip", "dsar/1/after-the-move.zip"],
        )
        await migrations.migrate(conn)
        assert await conn.fetchval("SELECT bundle_uploads FROM dsar_requests") == {
            "tenants/tenant-own/dsar/1/before-the-move.zip": "shared",
            "dsar/1/after-the-move.zip": "s3://own-bucket",
        }
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_base_url)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
