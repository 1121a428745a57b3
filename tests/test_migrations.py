"""Migrations: applied once, safely in parallel, and matching the committed schema snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncpg
import pytest

from service.db import migrations
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
