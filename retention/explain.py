"""Why is this recording still here? One explanation for the API, the dry run and the purge.

The SQL function ``recording_retention()`` (migration 0016) says, per recording, when its
retention ends (``retain_until``), which policy level set it (``source``), the active holds
and open data-subject requests that keep it, and ``purge_at``: null while anything keeps it
(or once it is gone), otherwise when a purge pass may take it, by the database's clock. The
purge's claim selects from the same function, so what this module says is what the purge does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service.config import RetentionSource
from service.db import queries

Q = queries.load("retention")


@dataclass(frozen=True)
class Explanation:
    recording_id: str
    call_id: str
    state: str
    retain_until: datetime | None
    source: RetentionSource | None
    holds: list[dict[str, Any]]  # each: id, reason, placed_at, on (call | phone)
    requests: list[dict[str, Any]]  # each: id, kind, status
    purge_at: datetime | None
    purged_at: datetime | None
    now: datetime  # the database's clock when this was read

    @property
    def kept(self) -> bool:
        return bool(self.holds or self.requests)

    @property
    def due(self) -> bool:
        """A purge pass running now takes it."""
        return self.purge_at is not None and self.purge_at <= self.now

    def as_json(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "call_id": self.call_id,
            "state": self.state,
            "retain_until": _iso(self.retain_until),
            "source": str(self.source) if self.source else None,
            "holds": self.holds,
            "requests": self.requests,
            "purge_at": _iso(self.purge_at),
            "purged_at": _iso(self.purged_at),
            "checked_at": self.now.isoformat(),
        }

    def why(self) -> str:
        """One line for the dry run: what keeps it, or that its retention ended."""
        if not self.kept:
            return "retention ended" if self.due else "nothing keeps it"
        parts = [f"under a legal hold {h['id']} ({h['reason']})" for h in self.holds]
        parts += [
            f"a restriction {r['id']} ({r['status']})"
            if r["kind"] == "restrict"
            else f"an open {r['kind']} request {r['id']} ({r['status']})"
            for r in self.requests
        ]
        return "kept: " + "; ".join(parts)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(raw: str) -> str:
    # jsonb wrote the timestamp with PostgreSQL's own spelling; say it as the API does
    return datetime.fromisoformat(raw).isoformat()


def _explanation(row: Any) -> Explanation:
    holds = [{**h, "placed_at": _when(h["placed_at"])} for h in row["holds"]]
    return Explanation(
        recording_id=str(row["id"]),
        call_id=str(row["call_id"]),
        state=row["state"],
        retain_until=row["retain_until"],
        source=RetentionSource(row["retention_source"]) if row["retention_source"] else None,
        holds=holds,
        requests=list(row["requests"]),
        purge_at=row["purge_at"],
        purged_at=row["purged_at"],
        now=row["now"],
    )


async def explain(conn: Any, recording_id: Any) -> Explanation | None:
    """The recording's explanation, or None when the caller's tenant has no such recording."""
    row = await conn.fetchrow(Q["explain_recording"], recording_id)
    return _explanation(row) if row is not None else None


async def expired(conn: Any, limit: int = 1000) -> list[Explanation]:
    """Stored recordings whose retention has ended, kept or not, soonest ended first."""
    return [_explanation(r) for r in await conn.fetch(Q["explain_expired"], limit)]


async def upcoming(conn: Any, limit: int = 10) -> list[tuple[Explanation, timedelta]]:
    """Stored recordings whose retention has not ended, with the time left, soonest first."""
    rows = await conn.fetch(Q["explain_upcoming"], limit)
    return [(_explanation(r), r["time_left"]) for r in rows]
