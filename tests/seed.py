"""Stored recordings made directly (rows, ledger, objects), for retention tests that need many:
the intake path itself is tested end to end elsewhere."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from pathlib import Path
from typing import Any

from service import ledger
from service.ledger import NewEvent
from service.personal.numbers import PhoneVault
from service.storage import ObjectStore
from service.storage import sealed as sealing


async def seed_recording(
    db: Any,
    store: ObjectStore,
    vault: PhoneVault,
    tmp_path: Path,
    *,
    caller: str = "+84901234678",
    expired: bool = True,
    body: bytes | None = None,
    source: str = "tenant",
    sealed: bool = False,
) -> dict[str, Any]:
    """A consented call with one stored recording; ``expired`` puts retain_until a second in
    the past by the database's clock (the clock these tests move, instead of sleeping).
    ``sealed``: stored as the intake stores it since issue 17, under its own wrapped data key
    (else plaintext, as every recording stored before it)."""
    body = body or b"RIFF" + secrets.token_bytes(2000)
    call_id: uuid.UUID = await db.fetchval(
        "INSERT INTO calls (platform, external_id, caller_enc, caller_hash, called, policy, "
        "outcome, outcome_at) VALUES ('twilio', $1, $2, $3, '+842873001234', '{}', "
        "'consented', now()) RETURNING id",
        "CA" + secrets.token_hex(16),
        vault.encrypt(caller),
        vault.lookup_hash(caller),
    )
    rec_id = uuid.uuid4()
    key = f"recordings/{rec_id}.wav"
    path = tmp_path / f"{rec_id}.wav"
    path.write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    keyset = None
    metadata: dict[str, str] = {}
    if sealed:
        keyset = sealing.new_data_key()
        sealed_path = tmp_path / f"{rec_id}.wav.sealed"
        sealing.encrypt_file(keyset, path, sealed_path, sealing.associated_data(rec_id))
        path = sealed_path
        metadata = {"recording-id": str(rec_id), **sealing.object_metadata(path, len(body))}
    await store.put_file(key, path, sha256=digest, content_type="audio/wav", metadata=metadata)
    head = await store.head(key)
    assert head is not None
    await db.execute(
        "INSERT INTO recordings (id, call_id, platform, external_id, state, object_key, sha256, "
        "size_bytes, content_type, stored_at, retain_until, platform_deleted_at, object_version, "
        "retention_source) VALUES ($1, $2, 'twilio', $3, 'stored', $4, $5, $6, 'audio/wav', "
        "now(), now() + make_interval(secs => $8), now(), $7, $9)",
        rec_id,
        call_id,
        "RE" + secrets.token_hex(16),
        key,
        digest,
        len(body),
        head.version,
        -1 if expired else 90 * 86400,
        source,
    )
    if keyset is not None:
        tenant = await db.fetchval("SELECT tenant_id FROM recordings WHERE id = $1", rec_id)
        wrapped, kek_id = vault.wrap_data_key(tenant, str(rec_id), keyset)
        await db.execute(
            "INSERT INTO recording_keys (recording_id, format, wrapped_key, kek_id) "
            "VALUES ($1, $2, $3, $4)",
            rec_id,
            sealing.FORMAT,
            wrapped,
            kek_id,
        )
    async with db.transaction():
        await ledger.append(
            db,
            call_id,
            [
                NewEvent("call_started", {}),
                NewEvent("recording_stored", {"recording_id": str(rec_id), "sha256": digest}),
            ],
        )
    return {"call_id": call_id, "recording_id": rec_id, "key": key, "body": body, "sha256": digest}
