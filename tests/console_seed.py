"""Seeded data for the compliance console's tests (API and page): calls of every consent
outcome on known days of the tenant's calendar, recordings stored, purged and due, a hold,
and data-subject requests on known clocks; a second tenant's rows beside them, which no figure
may include. Rows are written directly (the workers run nothing for them), at times relative
to the database's clock."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from service import ledger
from service.db import tenancy
from service.ledger import NewEvent
from service.personal.numbers import PhoneVault
from tests.conftest import SECRET_KEY

VAULT = PhoneVault(SECRET_KEY)
ZONE = "Asia/Ho_Chi_Minh"  # the default tenant's clock (settings' default)
SUBJECT = "+84905550199"  # the callers
# the requests' subject: another number, so no request keeps the callers' recordings
REQUESTER = "+84905550777"
# (local days ago, outcome, queue, how many)
CALLS = [
    (0, "consented", "sales", 2),
    (0, "refused", "support", 1),
    (3, "no_input", "support", 1),
    (3, "hung_up_during_notice", "sales", 1),
    (3, "not_asked", None, 1),
    (29, "consented", "sales", 1),  # the window's first day
    (30, "consented", "sales", 3),  # a day before the window: not counted
]
EXPECTED_TOTALS = {
    "consented": 3,
    "refused": 1,
    "hung_up_during_notice": 1,
    "no_input": 1,
    "not_asked": 1,
    "in_progress": 0,
}
EXPECTED_QUEUES = {
    "sales": {"consented": 3, "hung_up_during_notice": 1},
    "support": {"refused": 1, "no_input": 1},
    None: {"not_asked": 1},
}
EXPECTED_RECORDINGS = {"stored": 5, "purged": 1, "due": 2, "kept": 1}
EXPECTED_REQUESTS = {"received": 2, "acknowledged": 1, "completed": 1, "in_force": 1}
EXPECTED_OVERDUE = 2

LOCAL_DAY = (
    "((date_trunc('day', now() AT TIME ZONE '" + ZONE + "') - make_interval(days => $1)"
    " + interval '12 hours') AT TIME ZONE '" + ZONE + "')"
)


async def _call(db: asyncpg.Connection, days_ago: int, outcome: str, queue: str | None) -> Any:
    policy = {"queue": queue} if queue else {}
    # noon of that local day, or now if that is earlier (today's calls are not in the future)
    call_id = await db.fetchval(
        "INSERT INTO calls (platform, external_id, caller_enc, caller_hash, policy, outcome, "  # noqa: S608
        f"outcome_at, started_at) VALUES ('twilio', $2, $3, $4, $5::jsonb, $6, now(), "
        f"least({LOCAL_DAY}, now())) RETURNING id",
        days_ago,
        "CA" + uuid.uuid4().hex,
        VAULT.encrypt(SUBJECT),
        VAULT.lookup_hash(SUBJECT),
        policy,
        outcome,
    )
    async with db.transaction():  # every call has its ledger, as the intake writes it
        await ledger.append(db, call_id, [NewEvent("call_started", {})])
    return call_id


async def _recording(
    db: asyncpg.Connection, call_id: Any, state: str, stored_days_ago: int, **at: str
) -> Any:
    """``at``: SQL expressions (this module's own, never input) for retain_until and purged_at."""
    return await db.fetchval(
        "INSERT INTO recordings (call_id, platform, external_id, state, object_key, sha256, "  # noqa: S608
        "size_bytes, stored_at, retain_until, purged_at, retention_source) VALUES "
        f"($2, 'twilio', $3, $4, 'recordings/x.wav', 'ab', 10, least({LOCAL_DAY}, now()), "
        f"{at.get('retain_until', 'now() + interval ' + chr(39) + '90 days' + chr(39))}, "
        f"{at.get('purged_at', 'NULL')}, 'tenant') RETURNING id",
        stored_days_ago,
        call_id,
        "RE" + uuid.uuid4().hex,
        state,
    )


async def _request(db: asyncpg.Connection, kind: str, status: str, **at: str) -> Any:
    cols = ", ".join(at)
    vals = ", ".join(at.values())
    return await db.fetchval(
        "INSERT INTO dsar_requests (kind, status, phone_hash, phone_enc, requested_by, "  # noqa: S608
        f"{cols}) VALUES ($1, $2, $3, $4, 'compliance-1', {vals}) RETURNING id",
        kind,
        status,
        VAULT.lookup_hash(REQUESTER),
        VAULT.encrypt(REQUESTER),
    )


async def seed(db: asyncpg.Connection) -> dict[str, Any]:
    """Seed the tenant ``default`` (and a tenant ``beta`` beside it); returns the ids."""
    await db.execute("INSERT INTO tenants (id, name) VALUES ('beta', 'Beta BPO')")
    await tenancy.set_tenant(db, "beta")
    beta_call = await _call(db, 0, "consented", "sales")
    for _ in range(3):
        await _call(db, 0, "consented", "sales")
    await _recording(db, beta_call, "stored", 0, retain_until="now() + interval '1 day'")
    await _request(db, "erase", "received", received_at="now() - interval '30 days'",
                   due_at="now() - interval '10 days'")  # fmt: skip

    await tenancy.set_tenant(db, tenancy.DEFAULT)
    calls: dict[str, list[Any]] = {}
    for days_ago, outcome, queue, n in CALLS:
        for _ in range(n):
            calls.setdefault(outcome, []).append(await _call(db, days_ago, outcome, queue))
    consented = calls["consented"]
    recs = {
        "due": await _recording(
            db, consented[0], "stored", 0, retain_until="now() + interval '5 days'"
        ),
        "kept": await _recording(
            db, consented[1], "stored", 0, retain_until="now() + interval '3 days'"
        ),
        "purged": await _recording(
            db, consented[2], "purged", 10, purged_at="least(now() - interval '2 days', now())"
        ),
        "later": await _recording(
            db, calls["refused"][0], "stored", 3, retain_until="now() + interval '60 days'"
        ),
        "expired": await _recording(
            db, calls["no_input"][0], "stored", 29, retain_until="now() - interval '1 hour'"
        ),
    }
    hold = await db.fetchval(
        "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'court order 7', 'test') "
        "RETURNING id",
        consented[1],
    )
    requests = {
        # acknowledged, past its completion deadline: overdue
        "late": await _request(
            db, "erase", "acknowledged", received_at="now() - interval '20 days'",
            acknowledge_by="now() - interval '18 days'",
            acknowledged_at="now() - interval '19 days'", due_at="now() - interval '5 days'",
        ),
        # not acknowledged in time: overdue on that clock
        "unacknowledged": await _request(
            db, "erase", "received", received_at="now() - interval '3 days'",
            acknowledge_by="now() - interval '1 day'", due_at="now() + interval '12 days'",
        ),
        "fresh": await _request(
            db, "access", "received", received_at="now() - interval '1 day'",
            acknowledge_by="now() + interval '1 day'", due_at="now() + interval '14 days'",
        ),
        "restricted": await _request(
            db, "restrict", "in_force", received_at="now() - interval '2 days'",
            acknowledged_at="now() - interval '2 days'", due_at="now() + interval '10 days'",
        ),
        "done": await _request(
            db, "access", "completed", received_at="now() - interval '40 days'",
            due_at="now() - interval '25 days'", completed_at="now() - interval '30 days'",
        ),
    }  # fmt: skip
    return {"calls": calls, "recordings": recs, "hold": hold, "requests": requests}
