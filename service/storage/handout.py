"""Recordings handed out sealed (issue 17): ``tenant export --sealed`` and an access bundle asked
for ``sealed``. Each recording leaves as it is stored (Tink streaming AEAD) with its data key
still wrapped by the tenant's own KMS key, and beside it what the client needs to open it with
that key and Tink alone: the wrapped key, the key's ARN, the encryption context and the
associated data (README, "Sealed exports").

Only for a tenant on its own KMS key: a data key wrapped by the key derived from
``CALLVAULT_SECRET_KEY`` is of no use to anyone but callvault, and callvault's secret never
leaves it. Every recording must be sealed under that KMS key first (``recordings encrypt
--all``, ``secrets rotate --data-keys``): a sealed hand-out never mixes in plaintext audio.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.db import Conn
from service.errors import NotSealable as NotSealable
from service.ops.workdir import sha256_of
from service.personal.numbers import PhoneVault
from service.storage import ObjectStore, recording_keys, sealed, wrapping

_KEYS_SQL = (
    "SELECT recording_id, wrapper, kms_key_arn, wrapped_key FROM recording_keys "
    "WHERE recording_id = ANY($1::uuid[])"
)


async def sealed_keys(
    conn: Conn, tenant: str, recording_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    """The wrapped key of each of these recordings (the shredded ones left out), once it is
    checked that the tenant is on its own KMS key and every one is sealed under it."""
    if await wrapping.tenant_kms(conn, tenant) is None:
        raise NotSealable(
            f"tenant {tenant!r} has no KMS key of its own ([tenants.{tenant}.data_keys] "
            "kms_key_id): its data keys are wrapped by a key derived from callvault's secret, "
            "which never leaves callvault; ask for plaintext audio, or configure a KMS key and "
            "run 'callvault secrets rotate --data-keys' first",
            code="sealed_needs_kms",
        )
    ids = list(recording_ids)
    keys = {k["recording_id"]: k for k in await conn.fetch(_KEYS_SQL, ids)}
    shredded = await recording_keys.shredded_among(conn, ids)
    unsealed = [
        i for i in ids if i not in shredded and (i not in keys or keys[i]["wrapper"] != "kms")
    ]
    if unsealed:
        raise NotSealable(
            f"{len(unsealed)} recording(s) of tenant {tenant!r} are not sealed under its KMS "
            f"key (the first: {unsealed[0]}); run 'callvault recordings encrypt --all' and "
            "'callvault secrets rotate --data-keys' first",
            code="not_sealed",
        )
    return keys


async def fetch_sealed(
    conn: Conn, vault: PhoneVault, store: ObjectStore, row: Any, staged: Path
) -> str:
    """The sealed object of ``row`` (``id``, ``object_key``, ``sha256``) as stored into
    ``staged``, checked by opening it as the client will (its key from KMS, Tink) against the
    SHA-256 recorded at intake. Returns the ciphertext's SHA-256. Raises
    :class:`recording_keys.KeyDestroyed` if it was shredded meanwhile."""
    head = await store.head(row["object_key"])
    if head is None or not sealed.is_sealed(head.metadata):
        raise NotSealable(
            f"recording {row['id']}: the stored object is not sealed; run "
            "'callvault recordings encrypt --all' first",
            code="not_sealed",
        )
    keyset = await recording_keys.open_key(conn, vault, row["id"])
    if keyset is None:
        raise recording_keys.KeyDestroyed(f"recording {row['id']}: its data key is destroyed")
    await store.download_to(row["object_key"], staged)
    # hashed as it is opened, never written: a sealed hand-out holds no plaintext audio, not
    # even for a moment beside the file (a kill -9 or a full disk would leave it there)
    opened = await asyncio.get_running_loop().run_in_executor(
        sealed.EXECUTOR,
        sealed.plain_sha256,
        keyset,
        staged,
        sealed.associated_data(row["id"]),
    )
    if opened != row["sha256"]:
        raise sealed.Undecryptable(f"recording {row['id']}: opened, it is not what was stored")
    return await asyncio.to_thread(sha256_of, staged)


def sealed_entry(
    tenant: str, recording_id: uuid.UUID, key: Any, file: str, sha256: str, size: int
) -> dict[str, Any]:
    """What the client needs, besides its KMS key, to open one sealed recording."""
    return {
        "file": file,
        "sha256": sha256,
        "size_bytes": size,
        "format": sealed.FORMAT,
        "tink_key_template": "AES256_GCM_HKDF_1MB",
        "associated_data": sealed.associated_data(recording_id).decode(),
        "wrapped_key": base64.b64encode(bytes(key["wrapped_key"])).decode("ascii"),
        "kms_key_arn": key["kms_key_arn"],
        "encryption_context": wrapping.encryption_context(tenant, str(recording_id)),
    }
