"""Transcoding runs ffmpeg as a child process: a job cancelled mid-transcode (its lease handed
back at SIGTERM, a drain) must stop and reap that child itself, on the loop ``serve`` runs
(uvloop). Left to the garbage collector, uvloop's pipe and process transports are found
unclosed (a ResourceWarning in the serve log) and the child outlives the job meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from pathlib import Path

import uvloop

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


async def _cancel_mid_transcode(src: Path) -> None:
    before = _children()
    task = asyncio.create_task(transcode(src, "wav", "mp3"))

    async def started() -> bool:
        return bool(_children() - before)

    await eventually(started, what="ffmpeg has started")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the transcode was not cancelled")

    async def reaped() -> bool:
        return not _children() - before

    # stopped by the cancelled job itself, not by a garbage collection that may come too late
    await eventually(reaped, what="the cancelled ffmpeg is gone", timeout_s=30)


def test_a_cancelled_transcode_stops_its_ffmpeg_on_serves_loop(tmp_path: Path) -> None:
    src = tmp_path / "download"
    os.mkfifo(src)  # nobody writes: ffmpeg waits on it until it is stopped, however slow
    loop = uvloop.new_event_loop()
    # the cancelled transcode's process transport sits in a reference cycle: whether the
    # collector happens to free it (and uvloop then kills ffmpeg) before the loop closes must
    # not matter, so it does not run meanwhile
    gc.disable()
    before = _children()
    try:
        loop.run_until_complete(_cancel_mid_transcode(src))
    finally:
        for pid in _children() - before:  # the test's own clean-up, should ffmpeg be left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()  # as serve's shutdown does, right after the jobs were cancelled
        gc.enable()
    gc.collect()  # an unclosed transport found now is a ResourceWarning: an error here
