"""Temporary work folders under ``$CALLVAULT_HOME/tmp`` (intake downloads, access bundles,
exports to S3):
made and removed off the event loop, and swept at start-up when a killed replica left one."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

STALE_S = 86400
PREFIXES = ("intake-", "dsar-", "export-", "seal-")  # seal-: recordings encrypt --all


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _make(root: Path, prefix: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=prefix))


@asynccontextmanager
async def work_dir(root: Path, prefix: str) -> AsyncIterator[Path]:
    assert prefix in PREFIXES, prefix
    folder = await asyncio.to_thread(_make, root, prefix)
    try:
        yield folder
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


def remove_stale(folder: Path, older_than_s: float = STALE_S) -> int:
    """Delete work folders not touched for a day; returns how many."""
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for entry in folder.iterdir():
        if entry.name.startswith(PREFIXES) and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
