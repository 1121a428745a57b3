"""Each tenant's Ed25519 keys for signing consent receipts.

A tenant gets its key when it is created (``tenant create``, ``POST /api/tenants``), or on first
use for tenants that existed before receipts (``default`` included). The private key is kept
encrypted with :meth:`PhoneVault.encrypt_secret` (a key derived from ``CALLVAULT_SECRET_KEY``,
bound to the tenant and the key's id, re-encrypted by ``callvault secrets rotate``). Rotation
retires the current key and makes a new one; retired public keys are kept for ever, so a
receipt signed before a rotation still verifies against the key that signed it.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.db import Conn, queries
from service.personal.numbers import PhoneVault

Q = queries.load("service.receipts")


def _context(tenant: str, key_id: uuid.UUID) -> bytes:
    return b"callvault:receipt-key:v1:" + tenant.encode("utf-8") + b":" + key_id.bytes


def public_b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Signer:
    key_id: uuid.UUID
    public_key: bytes
    private: Ed25519PrivateKey


async def _insert(conn: Conn, vault: PhoneVault, tenant: str) -> bool:
    key_id = uuid.uuid4()
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw_private = private.private_bytes_raw()
    inserted = await conn.fetchval(
        Q["insert_key"],
        key_id,
        tenant,
        public,
        vault.encrypt_secret(raw_private, _context(tenant, key_id)),
    )
    return inserted is not None


async def create(conn: Conn, vault: PhoneVault, tenant: str) -> None:
    """The tenant's first key (nothing when it has one already)."""
    await _insert(conn, vault, tenant)


async def signer(conn: Conn, vault: PhoneVault, tenant: str) -> Signer:
    """The tenant's current key, made now if it has none yet."""
    row = await conn.fetchrow(Q["current_key"], tenant)
    if row is None:
        await _insert(conn, vault, tenant)
        row = await conn.fetchrow(Q["current_key"], tenant)
        assert row is not None
    raw, _ = vault.decrypt_secret_with_age(
        bytes(row["private_key_enc"]), _context(tenant, row["id"])
    )
    return Signer(row["id"], bytes(row["public_key"]), Ed25519PrivateKey.from_private_bytes(raw))


async def rotate(conn: Conn, vault: PhoneVault, tenant: str) -> Signer:
    """Retire the current key and make the next; returns the new one."""
    async with conn.transaction():
        await conn.fetch(Q["retire_current_key"], tenant)
        await _insert(conn, vault, tenant)
    return await signer(conn, vault, tenant)


def key_json(row: Any) -> dict[str, Any]:
    retired: datetime | None = row["retired_at"]
    return {
        "id": str(row["id"]),
        "algorithm": "Ed25519",
        "public_key": public_b64(bytes(row["public_key"])),
        "created_at": row["created_at"].isoformat(),
        "retired_at": retired.isoformat() if retired else None,
        "current": retired is None,
    }


async def public_keys(conn: Conn, vault: PhoneVault, tenant: str) -> list[dict[str, Any]]:
    """Every key the tenant has signed with, oldest first (its first made now if none)."""
    await signer(conn, vault, tenant)
    return [key_json(r) for r in await conn.fetch(Q["keys_of_tenant"], tenant)]


async def rekey(conn: Conn, vault: PhoneVault, *, page: int = 200) -> int:
    """Re-encrypt every tenant's private keys under the current secret (run as ``'*'``)."""
    done, after = 0, uuid.UUID(int=0)
    while rows := await conn.fetch(Q["keys_page"], after, page):
        for row in rows:
            context = _context(row["tenant_id"], row["id"])
            blob = bytes(row["private_key_enc"])
            raw, old = vault.decrypt_secret_with_age(blob, context)
            if old:
                status = await conn.execute(
                    Q["rekey_key"], row["id"], vault.encrypt_secret(raw, context), blob
                )
                done += status.endswith(" 1")
        after = rows[-1]["id"]
    return done
