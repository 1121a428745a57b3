"""Render the catalogue's source speech to what telephony plays, and record each file's SHA-256.

For every prompt: mono, a short lead-in of silence, loudness normalised (RMS to -20 dBFS with the
peak kept under -1 dBFS), then 8 kHz μ-law WAV (what Twilio plays natively) and 8 kHz MP3.
ffmpeg runs with ``+bitexact`` so the same source renders to the same bytes, which keeps the
hashes in the ledger stable across replicas. ``manifest.json`` in the output folder lists each
file with its hash, and the source hash it came from, so stale output is detected.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prompts.audio import pydub
from prompts.catalogue import Prompt, catalogue

TARGET_DBFS = -20.0
PEAK_CEILING_DBFS = -1.0
LEAD_IN_MS = 200
SAMPLE_RATE = 8000
RENDER_VERSION = 1  # bump when the steps below change, so old output counts as stale
_BITEXACT = ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]
FORMATS: dict[str, dict[str, Any]] = {
    "wav": {
        "format": "wav",
        "codec": "pcm_mulaw",
        "parameters": ["-ar", str(SAMPLE_RATE), *_BITEXACT],
    },
    "mp3": {
        "format": "mp3",
        "codec": "libmp3lame",
        "bitrate": "32k",
        "parameters": [
            "-ar",
            str(SAMPLE_RATE),
            "-write_xing",
            "0",
            "-id3v2_version",
            "0",
            *_BITEXACT,
        ],
    },
}
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Rendered:
    prompt_id: str
    version: int
    fmt: str
    path: Path
    sha256: str
    size: int
    duration_ms: int


def _normalise(segment: Any) -> Any:
    gain = TARGET_DBFS - segment.dBFS
    peak_after = segment.max_dBFS + gain
    if peak_after > PEAK_CEILING_DBFS:
        gain -= peak_after - PEAK_CEILING_DBFS
    return segment.apply_gain(gain)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def render_prompt(prompt: Prompt, out_dir: Path) -> list[Rendered]:
    AudioSegment = pydub()
    with prompt.source_path().open("rb") as fh:  # pydub leaks handles it opens itself
        source = AudioSegment.from_file(fh, format="wav")
    speech = _normalise(source.set_channels(1).set_sample_width(2))
    segment = AudioSegment.silent(duration=LEAD_IN_MS, frame_rate=speech.frame_rate) + speech
    segment = segment.set_frame_rate(SAMPLE_RATE)
    folder = out_dir / prompt.id
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    for fmt, options in FORMATS.items():
        final = folder / f"{prompt.version}.{fmt}"
        fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=f".{fmt}.tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            segment.export(tmp, **options).close()
            tmp.chmod(0o644)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        results.append(
            Rendered(
                prompt.id,
                prompt.version,
                fmt,
                final,
                _sha256(final),
                final.stat().st_size,
                len(segment),
            )
        )
    return results


def build(out_dir: Path) -> dict[str, Any]:
    """Render every prompt in the catalogue into ``out_dir`` and write its manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts: list[dict[str, Any]] = []
    for prompt in catalogue():
        files = {
            r.fmt: {"sha256": r.sha256, "bytes": r.size, "duration_ms": r.duration_ms}
            for r in render_prompt(prompt, out_dir)
        }
        prompts.append(
            {
                "id": prompt.id,
                "version": prompt.version,
                "language": prompt.language,
                "mode": prompt.mode,
                "purpose": prompt.purpose,
                "text": prompt.text,
                "source_sha256": prompt.source_sha256(),
                "files": files,
            }
        )
    manifest = {"render_version": RENDER_VERSION, "prompts": prompts}
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out_dir / MANIFEST)
    return manifest


def load_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The manifest in ``out_dir`` if it is complete and matches the catalogue, else None."""
    try:
        manifest: dict[str, Any] = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("render_version") != RENDER_VERSION:
        return None
    listed = {(p["id"], p["version"]): p for p in manifest.get("prompts", [])}
    for prompt in catalogue():
        entry = listed.get((prompt.id, prompt.version))
        if entry is None or entry.get("source_sha256") != prompt.source_sha256():
            return None
        for fmt in FORMATS:
            if not (out_dir / prompt.id / f"{prompt.version}.{fmt}").is_file():
                return None
    return manifest


def ensure_built(out_dir: Path) -> dict[str, Any]:
    return load_manifest(out_dir) or build(out_dir)
