"""Temporary work folders under ``$CALLVAULT_HOME/tmp`` (intake downloads, access bundles,
exports to S3): made and removed off the event loop, and swept at start-up when a killed
process left one.

They hold plaintext audio (a recording before it is sealed, a bundle's audio), possibly of a
recording erased since, so a crashed process's folders must not wait a day. Each folder names
its owner in ``.owner`` (host, PID and the PID's start time, so a PID reused after a restart,
as in a container, is not taken for the owner). The start-up sweep removes every folder whose
owner on this host is no longer running, at once, whatever its age; folders of another host
(one home shared over a network file system) are only removed after a day; a folder with no
owner (made before owners were written) after a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

STALE_S = 86400
UNOWNED_S = 60  # a folder with no owner yet: being made, or made before owners were written
OWNER = ".owner"
PREFIXES = ("intake-", "dsar-", "export-", "seal-")  # seal-: recordings encrypt --all


def sha256_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _started(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); "" where there
    is no /proc or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def _owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {_started(pid)}".rstrip()


def _running(pid: int, started: str) -> bool:
    if started:
        return _started(pid) == started
    if pid == os.getpid():
        return False  # no start time to tell us apart: a predecessor that had our PID
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _make(root: Path, prefix: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=root, prefix=prefix))
    (folder / OWNER).write_text(_owner())
    return folder


@asynccontextmanager
async def work_dir(root: Path, prefix: str) -> AsyncIterator[Path]:
    assert prefix in PREFIXES, prefix
    folder = await asyncio.to_thread(_make, root, prefix)
    try:
        yield folder
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _orphaned(entry: Path, now: float, older_than_s: float) -> bool:
    age = now - entry.stat().st_mtime
    try:
        host, pid, *started = (entry / OWNER).read_text().split()
    except (OSError, ValueError):
        return age > UNOWNED_S
    if host != socket.gethostname():
        return age > older_than_s  # another machine's: its processes cannot be seen from here
    return not _running(int(pid), started[0] if started else "")


def remove_stale(folder: Path, older_than_s: float = STALE_S) -> int:
    """Delete the work folders no running process owns (see the module's docstring); returns
    how many."""
    if not folder.is_dir():
        return 0
    now = time.time()
    removed = 0
    for entry in folder.iterdir():
        if not entry.name.startswith(PREFIXES) or not entry.is_dir():
            continue
        try:
            orphaned = _orphaned(entry, now, older_than_s)
        except (OSError, ValueError):
            continue  # removed meanwhile, or an owner file this code did not write
        if orphaned:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed
