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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from service.storage import StorageError, StoredObject


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(target: Path, write: object) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            assert callable(write)
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


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

    async def _run(self, fn: object, *args: object) -> object:
        loop = asyncio.get_running_loop()
        try:
            assert callable(fn)
            return await loop.run_in_executor(self._pool, fn, *args)
        except OSError as exc:
            raise StorageError(f"local store: {exc.strerror or exc}") from exc

    async def put_file(
        self, key: str, path: Path, *, sha256: str, content_type: str, metadata: dict[str, str]
    ) -> None:
        meta = {**metadata, "sha256": sha256, "content_type": content_type}
        await self._run(self._put, key, path, meta)

    async def head(self, key: str) -> StoredObject | None:
        result = await self._run(self._head, key)
        assert result is None or isinstance(result, StoredObject)
        return result

    async def check(self) -> None:
        await self._run(self.root.mkdir, 0o700, True, True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"local store: {self.root} is not writable")

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
