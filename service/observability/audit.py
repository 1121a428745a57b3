"""The audit trail: who did what to which record, when and why. Append-only in the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.db import Conn, queries

Q = queries.load("service.observability", "audit.sql")


async def record(
    conn: Conn,
    actor: str,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await conn.execute(Q["insert"], actor, action, target_type, target_id, details or {})


async def query(
    conn: Conn,
    *,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    limit: int,
    after: tuple[datetime, int] | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``after``: the previous page's last entry's (at, id) (keyset)."""
    at, entry_id = after or (None, None)
    rows = await conn.fetch(Q["select"], since, until, actor, action, limit, at, entry_id)
    return [
        {
            "id": r["id"],
            "at": r["at"].isoformat(),
            "actor": r["actor"],
            "action": r["action"],
            "target_type": r["target_type"],
            "target_id": r["target_id"],
            "details": r["details"],
        }
        for r in rows
    ]
