"""Recording intake: from the platform's "recording ready" to one verified, encrypted object.

``callbacks`` records each (recording, status) once and enqueues a ``recording`` job; ``job``
decides from the call's consent outcome whether to keep the recording (download, upload, verify,
commit, delete the platform's copy) or discard it (delete it at the platform, never download).
``upload`` takes a recording a platform sends (a PBX's ``PUT``) through the same store, verify
and ledger steps (``job.store_received``).
"""

from __future__ import annotations

import uuid
from typing import Any

from service.storage.registry import TenantStore, key_in

# What a recording may be stored as (fetched as wav or mp3, or transcoded to mp3).
STORED_FORMATS = ("wav", "mp3")


def recording_key(recording_id: uuid.UUID | str, fmt: str) -> str:
    """The object key of a recording: opaque, fixed per recording, never the number."""
    return f"recordings/{recording_id}.{fmt}"


def possible_keys(recording_id: uuid.UUID | str) -> list[str]:
    """Every key an upload of this recording may have used, committed or not (an erasure
    deletes them all: an upload that never reached its commit leaves nothing behind)."""
    return [recording_key(recording_id, fmt) for fmt in STORED_FORMATS]


def possible_objects(tenant: str, where: TenantStore, row: Any) -> list[tuple[str, str]]:
    """(store reference, key) of every object an upload of this recording (``row``: its id and
    ``upload_store``) may have left uncommitted: in the store its last attempt announced
    (migration 0030) and in the tenant's store of today, ``where`` (an attempt of a replica
    that announced nothing)."""
    found = [(where.ref, where.key(k)) for k in possible_keys(row["id"])]
    announced = row["upload_store"]
    if announced is not None and announced != where.ref:
        found += [(announced, key_in(tenant, announced, k)) for k in possible_keys(row["id"])]
    return found
