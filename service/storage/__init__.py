"""Where recordings live: one small interface, two implementations.

:class:`~service.storage.s3.S3Store` for any S3-compatible service (AWS, MinIO, Ceph RGW,
Viettel/FPT/CMC clouds) and :class:`~service.storage.local.LocalStore`, a folder under
``$CALLVAULT_HOME/objects``, the embedded default. Both keep the object's SHA-256 (hex) as
metadata so that a HEAD can verify what was stored, and both pass the same contract tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from service.config import Settings
from service.errors import StorageError as StorageError


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None  # hex, from our metadata
    content_type: str | None = None
    encrypted: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    version: str | None = None  # the store's version id, on a versioned bucket


class ObjectStore(Protocol):
    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        content_type: str,
        metadata: dict[str, str],
        content_sha256: str | None = None,
    ) -> StoredObject | None:
        """Store the file at ``key`` (replacing any object there), encrypted at rest.

        ``content_sha256`` (hex, of the file's bytes) is sent for the store to check on
        receipt where it can; then what is returned (if anything) is what the store's answer
        proves it holds, as a :meth:`head` would say it, and no HEAD is needed. None: ask
        :meth:`head`."""

    async def head(self, key: str) -> StoredObject | None:
        """What is stored at ``key``, or None."""

    async def check(self) -> None:
        """Raise :class:`StorageError` unless the store is reachable and writable."""

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        """Delete these objects, every version of each; returns {key: error} for the ones the
        store refused (an absent key counts as deleted)."""

    async def delete_other_versions(self, key: str, keep: str | None) -> None:
        """On a versioned bucket, delete every version of ``key`` but ``keep`` (the one just
        written); nothing elsewhere."""

    async def download_to(self, key: str, path: Path) -> None:
        """Copy the object into a local file (streamed, never whole in memory)."""

    def read_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` to ``end`` inclusive."""

    async def close(self) -> None: ...


def create_store(settings: Settings) -> ObjectStore:
    if settings.s3_bucket:
        from service.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    from service.storage.local import LocalStore

    return LocalStore(settings.home / "objects")
