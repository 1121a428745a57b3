"""Numbered SQL migrations, each applied once, under an advisory lock so replicas may race.

Files are ``service/db/migrations/NNNN_name.sql``. The table ``callvault_migrations`` records
version, name and the file's SHA-256; an applied file that has since changed, or a database that
knows a version this code does not, stops start-up instead of guessing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from service.db import Conn, tenancy
from service.errors import MigrationError as MigrationError

# Arbitrary but fixed: "callvault" in ASCII, folded into a bigint.
_LOCK_KEY = int.from_bytes(b"cvmigr01", "big") & 0x7FFFFFFFFFFFFFFF
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("service.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"migrations must be numbered 0001, 0002, ... without gaps: {versions}"
        )
    return found


async def migrate(conn: Conn) -> list[Migration]:
    """Apply every pending migration; returns the ones this call applied."""
    migrations = available()
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    # migrations see every tenant's rows (row-level security binds the tables' owner too)
    await tenancy.set_tenant(conn, tenancy.ALL)
    try:
        # created only when missing: a role that may not create tables (the service's, with
        # an external database) still starts when the schema is up to date
        if await conn.fetchval("SELECT to_regclass('callvault_migrations')") is None:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS callvault_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   sha256 text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
            )
        rows = await conn.fetch("SELECT version, name, sha256 FROM callvault_migrations")
        done = {row["version"]: row for row in rows}
        known = {m.version for m in migrations}
        newer = sorted(set(done) - known)
        if newer:
            raise MigrationError(
                f"the database has migrations {newer} that this callvault does not know; "
                "run a newer release"
            )
        for migration in migrations:
            row = done.get(migration.version)
            if row is not None:
                if row["sha256"] != migration.sha256:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO callvault_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.sha256,
                )
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
