"""pydub wired to an ffmpeg binary: the system's when it is on PATH, else imageio-ffmpeg's.

imageio-ffmpeg ships no ffprobe, so callers always pass ``format`` and ``codec`` explicitly.
"""

from __future__ import annotations

import shutil
import warnings
from functools import cache
from typing import Any


@cache
def ffmpeg_path() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def pydub() -> Any:
    """The ``pydub.AudioSegment`` class with its converter set (imported lazily: it is slow)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # audioop, deprecated in 3.11
        warnings.simplefilter("ignore", RuntimeWarning)  # "Couldn't find ffprobe"
        from pydub import AudioSegment
    AudioSegment.converter = ffmpeg_path()
    return AudioSegment
