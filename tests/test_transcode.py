"""Transcoding runs ffmpeg as a child process: a job cancelled mid-transcode (its lease handed
back at SIGTERM, a drain) must not leave that child running, still writing beside the download
and holding a process handle the event loop then closes under it (uvloop warns and raises)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from service.intake.transcode import transcode
from tests.waiting import eventually


def _children() -> set[int]:
    """The process ids whose parent is this process (zombies included: not yet reaped)."""
    found = set()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # a process that has just ended
            # the fields after the command name's closing parenthesis: state, then ppid
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                found.add(int(entry.name))
    return found


async def test_a_cancelled_transcode_leaves_no_ffmpeg_behind(tmp_path: Path) -> None:
    before = _children()
    src = tmp_path / "download"
    os.mkfifo(src)  # nobody writes: ffmpeg waits on it until it is stopped, however slow
    task = asyncio.create_task(transcode(src, "wav", "mp3"))

    async def started() -> bool:
        return bool(_children() - before)

    await eventually(started, what="ffmpeg has started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _children() - before == set()
