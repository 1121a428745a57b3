"""Optional transcoding of a downloaded recording before it is stored.

It runs the ffmpeg binary that pydub is configured with (``prompts.audio.ffmpeg_path``), file to
file, as an asyncio subprocess: pydub's ``AudioSegment`` would decode the whole call into memory,
and a recording must never be held in memory. Formats and codecs are always named explicitly
(imageio-ffmpeg ships no ffprobe).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from prompts.audio import ffmpeg_path
from service.jobs import Permanent
from service.ops.workdir import sha256_of

_ARGS = {
    "mp3": ["-codec:a", "libmp3lame", "-b:a", "32k", "-ac", "1", "-f", "mp3"],
}
CONTENT_TYPES = {"mp3": "audio/mpeg"}


async def transcode(src: Path, src_format: str, target: str) -> tuple[Path, int, str]:
    """Returns (path, size, sha256 hex) of the transcoded file beside ``src``."""
    out = src.with_name(f"transcoded.{target}")
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_path(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        src_format,
        "-i",
        str(src),
        *_ARGS[target],
        "-fflags",
        "+bitexact",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await proc.communicate()
    except BaseException:
        # cancelled (the job's lease handed back at SIGTERM, a drain): ffmpeg must not go on
        # writing beside the download, nor outlive the loop that holds its process handle;
        # read to the end of its stderr too, so uvloop closes the pipe and process transports
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.communicate()
        raise
    if proc.returncode != 0:
        raise Permanent(f"transcoding to {target} failed: {err.decode(errors='replace')[-300:]}")
    digest = await asyncio.to_thread(sha256_of, out)
    return out, out.stat().st_size, digest
