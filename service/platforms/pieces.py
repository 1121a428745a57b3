"""A recording's body as it arrives in chunks (a platform's download, a PBX's upload), written
off the event loop in pieces of :data:`WRITE_BYTES` and hashed in the same thread.

The loop only collects the chunks as received: copying them into one buffer on the loop (and
copying that again to hand it over) costs two copies of every byte under the GIL, and hashing a
recording is milliseconds per MiB the loop owes every other task. Each piece is awaited before
the next is handed over, so the bytes reach the file, and the hash, in order.

A file that names an ``executor`` (:class:`service.storage.sealed.SealingFile`: its writes are
AES-GCM sealing, CPU work like sealing a whole file) is written in that bounded pool; a plain
file in the loop's default executor."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from concurrent.futures import Executor
from typing import Any

from service.platforms.port import Writable

WRITE_BYTES = 4 * 1024 * 1024  # memory held per body, and the size of each disk write


def _hash_and_write(digest: Any, out: Writable, chunks: list[bytes]) -> None:
    for data in chunks:
        digest.update(data)
    out.writelines(chunks)


class Pieces:
    """Hands ``out`` the chunks given to :meth:`add`, a piece at a time; :meth:`flush` writes
    the rest. :attr:`digest` is the SHA-256 of everything written."""

    def __init__(self, out: Writable) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self._pending: list[bytes] = []
        self._held = 0
        self._executor: Executor | None = getattr(out, "executor", None)

    async def add(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._held += len(chunk)
        if self._held >= WRITE_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            pending, self._pending, self._held = self._pending, [], 0
            await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(_hash_and_write, self.digest, self.out, pending)
            )
