"""What every platform adapter reads from the operator's tables: a per-process cache of its
accounts (re-read after :data:`TTL_S`, and at once when the replica's tenant directory has
re-read the tables because ``tenant apply`` announced a change: NOTIFY), and the secrets those
rows name by reference (``NAME_env`` or ``NAME_file``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from aiohttp import web

from service.context import database
from service.db import Conn, tenancy
from service.errors import DatabaseUnavailable
from service.tenants.policies import TENANT_DIRECTORY

TTL_S = 5.0
S = TypeVar("S")


class CachedTables(Generic[S]):
    """The last read of a platform's tables in one application (``reader`` runs as tenant
    ``*``: these are the operator's tables). While the database is away the last copy serves,
    and the next try waits a TTL, so an outage does not add a timeout to every webhook."""

    def __init__(self, reader: Callable[[Conn], Awaitable[S]]) -> None:
        self.reader = reader
        self.snapshot: S | None = None
        self.read_at = 0.0
        self._lock = asyncio.Lock()
        self._directory_loads = -1  # the directory's read this copy is as new as

    def _fresh(self, app: web.Application) -> bool:
        if self.snapshot is None or time.monotonic() - self.read_at >= TTL_S:
            return False
        directory = app.get(TENANT_DIRECTORY)
        return directory is None or directory.loads == self._directory_loads

    async def current(self, app: web.Application) -> S | None:
        if self._fresh(app):
            return self.snapshot
        async with self._lock:
            if self._fresh(app):
                return self.snapshot
            directory = app.get(TENANT_DIRECTORY)
            loads = directory.loads if directory is not None else -1
            try:
                with tenancy.as_tenant(tenancy.ALL):
                    async with database(app) as conn:
                        snapshot = await self.reader(conn)
            except DatabaseUnavailable:
                if self.snapshot is not None:
                    self.read_at = time.monotonic()
                return self.snapshot
            self.snapshot = snapshot
            self.read_at = time.monotonic()
            self._directory_loads = loads
            return self.snapshot


def read_secret(refs: Mapping[str, str], which: str) -> str:
    """The secret a reference names (``{which}_env`` or ``{which}_file``), read now, so a
    rotated secret is used at once; "" when unset or unreadable (blocking: a file)."""
    if name := refs.get(f"{which}_env"):
        return os.environ.get(name, "")
    if path := refs.get(f"{which}_file"):
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return ""
    return ""
