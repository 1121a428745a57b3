"""Outbound calls stored before directions were read (``callvault calls mark-outbound``).

Until migration 0008 the gate took every call as inbound: on an outbound call it encrypted the
contact centre's caller id (From) as if it were the person's, and kept the person called (To) in
plain text in ``calls.called``, where erasure and holds by number could not reach it. The
database cannot tell those calls apart (the direction was never stored), but the operator knows
the centre's outbound numbers: a call whose stored "person" is one of them was placed by the
centre. This moves the callee's number into the encrypted, hashed columns, keeps the centre's
number plain, marks the call outbound and says so in the call's ledger and the audit trail.

The ``call_started`` event of such a call still names the callee: the ledger is append-only, so
that copy outlives this repair and an erasure. QA trainers and access bundles no longer show it
(:mod:`service.ledger.visibility` drops it once ``direction_corrected`` is in the chain);
compliance still does, until the ledger gains a way to redact an event while keeping its hash.
"""

from __future__ import annotations

from service import ledger
from service.db import Conn, queries
from service.ledger import NewEvent
from service.observability import audit
from service.personal.numbers import PhoneVault, normalise_phone

Q = queries.load("service.consent")


async def mark_outbound(
    conn: Conn, vault: PhoneVault, centre_number: str, *, actor: str, page: int = 200
) -> int:
    """Repair every call whose stored person is ``centre_number``; returns how many. Each page
    commits on its own, so an interrupted run can simply be run again."""
    centre = normalise_phone(centre_number)
    hashes = vault.lookup_hashes(centre)
    repaired = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(Q["legacy_outbound_calls"], hashes, page)
            if not rows:
                return repaired
            for row in rows:
                person = normalise_phone(row["called"]) if row["called"] else None
                await conn.execute(
                    Q["mark_outbound"],
                    row["id"],
                    vault.encrypt(person) if person else None,
                    vault.lookup_hash(person) if person else None,
                    centre,
                )
                await ledger.append(
                    conn,
                    row["id"],
                    [
                        NewEvent(
                            "direction_corrected",
                            {"direction": "outbound", "caller": centre},
                            dedupe_key="direction_corrected",
                        )
                    ],
                )
            await audit.record(
                conn, actor, "calls_marked_outbound", "calls", None, {"calls": len(rows)}
            )
            repaired += len(rows)
