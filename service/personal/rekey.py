"""Secret-key rotation for stored phone numbers: ``callvault secrets rotate``.

Covers every place a number is kept: calls, the do-not-record list, holds on a number and open
data-subject requests, and the statements of ``correct`` requests (sealed the same way).

With ``CALLVAULT_SECRET_KEY`` set to the new secret and ``CALLVAULT_PREVIOUS_SECRET_KEY`` to the
old one (on every replica, which then read both and write only the new), this re-encrypts each
stored number and recomputes its lookup hash under the new key, page by page, each page in its
own transaction. It can be interrupted and run again: rows already under the new key are left
as they are. Afterwards the previous key can be removed.

Each write is a compare-and-set on the ciphertext that was read: an erasure (or anything else)
that changed the row between the page's read and the write wins, so rotation never writes an
erased number back. Erasure receipts (``dsar_requests.subject_digest``) cannot be re-keyed (no
number is left to re-key from); they match while the previous key is still configured.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from service.db import Conn, queries
from service.personal.numbers import PhoneVault

Q = queries.load("service.personal", "rekey.sql")


@dataclass
class RekeyReport:
    calls: int = 0
    do_not_record: int = 0
    holds: int = 0
    requests: int = 0
    statements: int = 0


_TABLES: tuple[tuple[str, str, str, Any], ...] = (
    # (page query, update, report field, the key to page from)
    ("calls_page", "rekey_call", "calls", uuid.UUID(int=0)),
    ("do_not_record_page", "rekey_do_not_record", "do_not_record", b""),
    ("holds_page", "rekey_hold", "holds", uuid.UUID(int=0)),
    ("requests_page", "rekey_request", "requests", uuid.UUID(int=0)),
    ("statements_page", "rekey_statement", "statements", uuid.UUID(int=0)),
)


async def rotate(conn: Conn, vault: PhoneVault, *, page: int = 500) -> RekeyReport:
    report = RekeyReport()
    for page_query, update, field_name, after in _TABLES:
        while rows := await conn.fetch(Q[page_query], after, page):
            async with conn.transaction():
                for row in rows:
                    number, old = vault.decrypt_with_age(row["phone_enc"])
                    if old:
                        status = await conn.execute(
                            Q[update],
                            row["key"],
                            vault.lookup_hash(number),
                            vault.encrypt(number),
                            row["phone_enc"],
                        )
                        # "UPDATE 0": changed since it was read (erased, forgotten): leave it
                        if status.endswith(" 1"):
                            setattr(report, field_name, getattr(report, field_name) + 1)
            after = rows[-1]["key"]
    return report
