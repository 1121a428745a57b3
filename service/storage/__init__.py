"""Where recordings live: one small interface, two implementations.

:class:`~service.storage.s3.S3Store` for any S3-compatible service (AWS, MinIO, Ceph RGW,
Viettel/FPT/CMC clouds) and :class:`~service.storage.local.LocalStore`, a folder under
``$CALLVAULT_HOME/objects``, the embedded default. Both keep the object's SHA-256 (hex) as
metadata so that a HEAD can verify what was stored, and both pass the same contract tests.

A store that answers its own checksum of the bytes it holds (S3, with checksum mode) has it in
:attr:`StoredObject.checksum_sha256`, and what was uploaded has its SHA-256 in the metadata
(:data:`CONTENT_SHA256`): :meth:`StoredObject.content_differs` compares the two, since the
metadata and the size, which the request sets, say nothing of the bytes themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from service.config import Settings
from service.errors import StorageError as StorageError

# Object metadata: the SHA-256 of the object's bytes as uploaded (base64, as S3 answers a
# checksum), and for a multipart upload the one S3 answers for it (SHA-256 has no whole-object
# form there: the SHA-256 of the parts' SHA-256s, base64, then "-" and the number of parts).
CONTENT_SHA256 = "content-sha256"
CONTENT_PARTS_SHA256 = "content-parts-sha256"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str | None  # hex, from our metadata
    content_type: str | None = None
    encrypted: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    version: str | None = None  # the store's version id, on a versioned bucket
    # the store's own SHA-256 of the bytes it holds, as it answers it (base64; "-N" after it:
    # of N parts' SHA-256s), or None where it answers none
    checksum_sha256: str | None = None

    def content_differs(self) -> bool:
        """Whether the store's own SHA-256 of what it holds says that it is not what was
        uploaded: it answers one, and it is neither of those the metadata gives (an object
        uploaded without them, which cannot be matched, differs). A store that answers none
        (one that predates checksums, the local store) leaves metadata and size to say it."""
        if self.checksum_sha256 is None:
            return False
        # (base64 has no "-"; moto answers a multipart object's composite without its "-N")
        answered = self.checksum_sha256.split("-", 1)[0]
        uploaded = {
            self.metadata.get(CONTENT_SHA256, ""),
            self.metadata.get(CONTENT_PARTS_SHA256, "").split("-", 1)[0],
        }
        return not answered or answered not in uploaded


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
