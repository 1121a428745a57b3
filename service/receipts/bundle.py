"""The consent receipts in an access bundle: one per call of the subject, in the data-subject
view (see :mod:`service.receipts`), with the tenant's public keys and how to check them."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from service.db import Conn
from service.ledger import seals
from service.personal.numbers import PhoneVault
from service.receipts import View, build, canonical, keys

# The scheduler's default interval; a bundle's receipts say "the next seal is due by" with it.
DEFAULT_SEAL_INTERVAL_S = 3600

README = """Consent receipts
================
Each <call id>.json is a receipt of one of your calls, signed by {name} with its Ed25519 key.
To check one without trusting anyone's database (callvault is open source):

    callvault receipt verify <call id>.json --public-key {key}

keys.json lists every key {name} has signed receipts with. A receipt is checked byte for byte:
open it to read it, but keep the file as it is.
"""


async def write_for_bundle(
    conn: Conn, vault: PhoneVault, call_ids: list[uuid.UUID], request_id: str, folder: Path
) -> None:
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    tenants = set()
    leaves: dict[int, seals.Leaves] = {}  # each seal's tree read once for all the calls
    for call_id in call_ids:
        tenant: str = await conn.fetchval("SELECT tenant_id FROM calls WHERE id = $1", call_id)
        tenants.add(tenant)
        receipt = await build(
            conn,
            vault,
            tenant,
            call_id,
            seal_interval_s=DEFAULT_SEAL_INTERVAL_S,
            view=View.DATA_SUBJECT,
            request_id=request_id,
            leaves_cache=leaves,
        )
        await asyncio.to_thread(
            (folder / f"{call_id}.json").write_bytes, canonical(receipt) + b"\n"
        )
    for tenant in sorted(tenants):
        listed = await keys.public_keys(conn, vault, tenant)
        name = await conn.fetchval("SELECT name FROM tenants WHERE id = $1", tenant)
        current = next(k["public_key"] for k in listed if k["current"])
        text = json.dumps({"tenant": tenant, "keys": listed}, indent=2)
        await asyncio.to_thread((folder / "keys.json").write_text, text)
        await asyncio.to_thread(
            (folder / "README.txt").write_text, README.format(name=name, key=current)
        )
