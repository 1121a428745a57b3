"""Lookup hashes of stored phone numbers brought up to today's normalisation:
``callvault calls rehash``, and once per deployment in the background when ``serve`` starts.

Numbers are hashed after :func:`~service.personal.numbers.normalise_phone`. Since that parses
numbers with phonenumbers, a platform's ``0901234567``, ``84901234567``, ``+840901234567`` or
``tel:+84901234567`` is ``+84901234567`` before it is hashed; a row stored earlier carries the
hash of the spelling the platform used, so a hold, an access or erasure request, or the
do-not-record check at call start (all of which ask by the E.164 number's hash) would miss it.
This pass decrypts every stored number, normalises it as the running code does and rewrites
its hash where it differs; the ciphertext (the number as received) is left as it is.

It covers every table that keeps a hashed number: calls, the do-not-record list, holds on a
number and data-subject requests. It walks one tenant at a time under row-level security, page
by page, each page its own transaction, and each write is a compare-and-set on the ciphertext and
hash it read (an erasure or a key rotation meanwhile wins). Running it again changes nothing.
Erasure receipts (``dsar_requests.subject_digest``) are left alone: no number is left to
re-hash, and they were made from numbers typed in E.164.

Why ``serve`` runs it too, rather than only an upgrade note: an operator upgrades by deploying
the release (``serve`` applies migrations itself) and would not expect erasures and holds to
miss older calls until someone finds a command in the notes. ``migrate`` may run without the
secret key; ``serve`` always has it. Replicas that run workers race for an advisory lock; the
finished pass leaves a platform-wide audit entry (``phone_hashes_rehashed`` with
:data:`NORMALISATION`) that later start-ups see, so it runs once. A deployment that has stored
no number yet has nothing to re-hash and starts without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidTag

from service.db import Conn, queries, tenancy
from service.observability import audit
from service.personal.numbers import PhoneVault
from service.web.context import POOL, SETTINGS, VAULT

log = logging.getLogger(__name__)
Q = queries.load("service.personal", "rehash.sql")

# Bumped whenever normalise_phone changes what a stored spelling hashes as (1: separators
# dropped; 2: parsed with phonenumbers, national numbers read as Vietnam's).
NORMALISATION = 2
ACTION = "phone_hashes_rehashed"
# pg_try_advisory_lock key: one replica runs the start-up pass (b"cvrehash" as an int64)
LOCK_KEY = int.from_bytes(b"cvrehash", "big", signed=True)
# Rows read between handing the event loop back. A row costs ~50 us of Python (decrypt, then
# phonenumbers) and serve runs the start-up pass on its own loop: a page of 500 rows whose
# hashes are already right (nothing to await) held every request behind it for 20-25 ms, for
# as long as the pass took (minutes over a million calls); 16 rows hold it for about 1 ms.
ROWS_PER_TURN = 16


@dataclass
class RehashReport:
    calls: int = 0
    do_not_record: int = 0
    holds: int = 0
    requests: int = 0
    unreadable: int = 0  # sealed under a key this process does not have: left as they are

    @property
    def changed(self) -> int:
        return self.calls + self.do_not_record + self.holds + self.requests

    @classmethod
    def total(cls, reports: Iterable[RehashReport]) -> RehashReport:
        summed = cls()
        for report in reports:
            for name, value in asdict(report).items():
                setattr(summed, name, getattr(summed, name) + value)
        return summed


_TABLES: tuple[tuple[str, str, str, Any], ...] = (
    # (page query, update, report field, the key to page from)
    ("calls_page", "rehash_call", "calls", uuid.UUID(int=0)),
    ("do_not_record_page", "rehash_do_not_record", "do_not_record", b""),
    ("holds_page", "rehash_hold", "holds", uuid.UUID(int=0)),
    ("requests_page", "rehash_request", "requests", uuid.UUID(int=0)),
)


async def rehash(conn: Conn, vault: PhoneVault, *, page: int = 500) -> RehashReport:
    """Re-hash the numbers of the connection's tenant (row-level security confines it)."""
    report = RehashReport()
    for page_query, update, field_name, after in _TABLES:
        while rows := await conn.fetch(Q[page_query], after, page):
            async with conn.transaction():
                for n, row in enumerate(rows, 1):
                    if n % ROWS_PER_TURN == 0:
                        await asyncio.sleep(0)  # the loop's other work first (see ROWS_PER_TURN)
                    try:
                        number = vault.decrypt(bytes(row["phone_enc"]))
                    except (InvalidTag, ValueError):
                        report.unreadable += 1
                        continue
                    if row["phone_hash"] in vault.lookup_hashes(number):
                        continue  # found by its number already (under either key)
                    changed = await conn.fetchval(
                        Q[update],
                        row["key"],
                        vault.lookup_hash(number),
                        row["phone_enc"],
                        row["phone_hash"],
                    )
                    if changed:
                        setattr(report, field_name, getattr(report, field_name) + 1)
            after = rows[-1]["key"]
    return report


async def rehash_every_tenant(
    conn: Conn, vault: PhoneVault, actor: str, *, page: int = 500
) -> dict[str, RehashReport]:
    """:func:`rehash` for each tenant in turn, ``conn`` set to each (it must be a connection
    row-level security binds), then the platform-wide audit entry that marks the pass done.
    Each tenant whose rows changed gets an entry in its own trail, with the counts."""
    await tenancy.set_tenant(conn, tenancy.ALL)
    tenants = [r["id"] for r in await conn.fetch(Q["tenants"])]
    reports: dict[str, RehashReport] = {}
    for tenant in tenants:
        await tenancy.set_tenant(conn, tenant)
        report = reports[tenant] = await rehash(conn, vault, page=page)
        if report.changed:
            await audit.record(
                conn, actor, ACTION, details={"normalisation": NORMALISATION, **asdict(report)}
            )
    await tenancy.set_tenant(conn, tenancy.ALL)
    total = RehashReport.total(reports.values())
    await audit.record(
        conn,
        actor,
        ACTION,
        details={"normalisation": NORMALISATION, "tenants": len(tenants), **asdict(total)},
    )
    return reports


async def needed(conn: Conn) -> bool:
    """(On a connection acting as ``'*'``.) Whether a start-up pass has work: a number is
    stored and no pass of this normalisation has finished."""
    if await conn.fetchval(Q["done"], NORMALISATION):
        return False
    return bool(await conn.fetchval(Q["any_number_stored"]))


async def _once(app: web.Application) -> None:
    """The start-up pass, by whichever replica takes the lock first."""
    with tenancy.as_tenant(tenancy.ALL):
        async with app[POOL].acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                return  # another replica is at it
            try:
                if not await needed(conn):
                    return  # it finished while this replica started
                reports = await rehash_every_tenant(conn, app[VAULT], "system")
            finally:
                # (the pool's reset on release unlocks too: after a cancelled query this fails)
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    total = RehashReport.total(reports.values())
    log.info(
        "phone lookup hashes brought up to date",
        extra={"tenants": len(reports), **asdict(total), "changed": total.changed},
    )


# the start-up pass (None when none was due); set only in a process that runs jobs
REHASH: web.AppKey[asyncio.Task[None] | None] = web.AppKey("phone_rehash")


async def startup_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after the pool, on replicas that run workers): decides before serving
    whether a pass is due (so nothing runs where nothing is stored), then runs it in the
    background; shutdown cancels it (the next start-up carries on: it is idempotent)."""
    task: asyncio.Task[None] | None = None
    if app[SETTINGS].runs_jobs:
        if await _due(app):
            task = asyncio.create_task(_run(app), name="phone-rehash")
        app[REHASH] = task
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _due(app: web.Application) -> bool:
    try:
        with tenancy.as_tenant(tenancy.ALL):
            async with app[POOL].acquire() as conn:
                return await needed(conn)
    except Exception as exc:  # serving matters more; the next start-up asks again
        log.warning(
            "cannot tell whether stored phone numbers need re-hashing",
            extra={"error": type(exc).__name__},
        )
        return False


async def _run(app: web.Application) -> None:
    try:
        await _once(app)
    except Exception as exc:  # the database went away, say: the next start-up tries again
        log.warning(
            "re-hashing stored phone numbers failed; the next start-up (or `callvault calls "
            "rehash`) carries on",
            extra={"error": type(exc).__name__},
        )
