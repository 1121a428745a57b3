"""The local-directory object store: ``$CALLVAULT_HOME/objects``, the embedded default.

Each object is written to a temporary file, fsynced, then renamed into place (and the folder
fsynced), so a crash leaves either the old object or the new one, never half of one. Metadata
(SHA-256, content type) sits in a ``.meta.json`` file beside it, written the same way and
before the object itself, so an object never appears without its checksum. Files are mode 0600:
encryption at rest is the disk's job here; use S3 with SSE for production.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from service.storage import StorageError, StoredObject

T = TypeVar("T")


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir_if_present(folder: Path) -> None:
    if folder.is_dir():
        fsync_dir(folder)


def _atomic_write(target: Path, write: Callable[[BinaryIO], object]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="local-store")

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/") or "\\" in key:
            raise StorageError(f"invalid object key {key!r}")
        return self.root / key

    def _put(self, key: str, src: Path, meta: dict[str, str]) -> None:
        target = self._path(key)
        body = json.dumps(meta).encode()
        _atomic_write(target.with_name(target.name + ".meta.json"), lambda f: f.write(body))
        with src.open("rb") as data:
            _atomic_write(target, lambda f: shutil.copyfileobj(data, f, 1 << 20))

    def _head(self, key: str) -> StoredObject | None:
        target = self._path(key)
        try:
            size = target.stat().st_size
            meta = json.loads(target.with_name(target.name + ".meta.json").read_text())
        except FileNotFoundError:
            return None
        return StoredObject(
            key,
            size,
            meta.get("sha256"),
            meta.get("content_type"),
            encrypted=False,
            metadata={k: v for k, v in meta.items() if isinstance(v, str)},
        )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, *args)
        except OSError as exc:
            raise StorageError(f"local store: {exc.strerror or exc}") from exc

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
        meta = {**metadata, "sha256": sha256, "content_type": content_type}
        await self._run(self._put, key, path, meta)
        return None  # a file copy proves nothing of itself: verified by head()

    async def head(self, key: str) -> StoredObject | None:
        return await self._run(self._head, key)

    def _delete(self, key: str) -> None:
        target = self._path(key)
        target.unlink(missing_ok=True)
        target.with_name(target.name + ".meta.json").unlink(missing_ok=True)

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for key in keys:
            try:
                await self._run(self._delete, key)
            except StorageError as exc:
                failed[key] = exc.message
        # make the unlinks durable in the folders that held them (an absent folder held nothing:
        # deleting from a store that never stored anything is not an error)
        for folder in {self._path(k).parent for k in keys if k not in failed}:
            await self._run(_fsync_dir_if_present, folder)
        return failed

    async def delete_other_versions(self, key: str, keep: str | None) -> None:
        return None  # a file is replaced in place: no older version stays

    async def download_to(self, key: str, path: Path) -> None:
        await self._run(shutil.copyfile, self._path(key), path)

    async def read_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        handle: BinaryIO = await self._run(self._path(key).open, "rb")
        try:
            await self._run(handle.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await self._run(handle.read, min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            await self._run(handle.close)

    async def check(self) -> None:
        await self._run(self.root.mkdir, 0o700, True, True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"local store: {self.root} is not writable")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
