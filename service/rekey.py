"""Secret-key rotation for stored phone numbers: ``callvault secrets rotate``.

Covers every place a number is kept: calls, the do-not-record list, holds on a number and open
data-subject requests.

With ``CALLVAULT_SECRET_KEY`` set to the new secret and ``CALLVAULT_PREVIOUS_SECRET_KEY`` to the
old one (on every replica, which then read both and write only the new), this re-encrypts each
stored number and recomputes its lookup hash under the new key, page by page, each page in its
own transaction. It can be interrupted and run again: rows already under the new key are left
as they are. Afterwards the previous key can be removed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from service.db import Conn, queries
from service.personal_data import PhoneVault

Q = queries.load("service", "rekey.sql")


@dataclass
class RekeyReport:
    calls: int = 0
    do_not_record: int = 0
    holds: int = 0
    requests: int = 0


async def rotate(conn: Conn, vault: PhoneVault, *, page: int = 500) -> RekeyReport:
    report = RekeyReport()
    after = uuid.UUID(int=0)
    while rows := await conn.fetch(Q["calls_page"], after, page):
        async with conn.transaction():
            for row in rows:
                number, old = vault.decrypt_with_age(row["caller_enc"])
                if old:
                    await conn.execute(
                        Q["rekey_call"],
                        row["id"],
                        vault.encrypt(number),
                        vault.lookup_hash(number),
                    )
                    report.calls += 1
        after = rows[-1]["id"]
    for page_query, update, attr in (
        ("holds_page", "rekey_hold", "holds"),
        ("requests_page", "rekey_request", "requests"),
    ):
        after_id = uuid.UUID(int=0)
        while rows := await conn.fetch(Q[page_query], after_id, page):
            async with conn.transaction():
                for row in rows:
                    number, old = vault.decrypt_with_age(row["phone_enc"])
                    if old:
                        await conn.execute(
                            Q[update],
                            row["id"],
                            vault.lookup_hash(number),
                            vault.encrypt(number),
                        )
                        setattr(report, attr, getattr(report, attr) + 1)
            after_id = rows[-1]["id"]
    after_hash = b""
    while rows := await conn.fetch(Q["do_not_record_page"], after_hash, page):
        async with conn.transaction():
            for row in rows:
                number, old = vault.decrypt_with_age(row["phone_enc"])
                if old:
                    await conn.execute(
                        Q["rekey_do_not_record"],
                        row["phone_hash"],
                        vault.lookup_hash(number),
                        vault.encrypt(number),
                    )
                    report.do_not_record += 1
        after_hash = rows[-1]["phone_hash"]
    return report
