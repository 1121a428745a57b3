"""The rendered notices as the service serves them: loaded once from the prompts manifest.

Prompt files are small (tens of kilobytes), so they are held in memory and served with their
SHA-256 as a strong ETag; the same hash goes into each call's ``notice_played`` ledger event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prompts import catalogue
from prompts.render import CONTENT_TYPES, FORMATS, load_manifest


@dataclass(frozen=True)
class Audio:
    body: bytes
    sha256: str
    content_type: str


@dataclass(frozen=True)
class Notice:
    """What to play for one mode and language: the rendered file, or text for ``<Say>``."""

    prompt: catalogue.Prompt
    wav_sha256: str | None

    @property
    def path(self) -> str:
        return f"/prompts/{self.prompt.id}/{self.prompt.version}.wav"

    def ledger_details(self, attempt: int) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt.id,
            "version": self.prompt.version,
            "language": self.prompt.language,
            "mode": self.prompt.mode,
            "rendering": "play" if self.wav_sha256 else "say",
            # the hash of the exact bytes Twilio fetched, or of the text it was asked to speak
            "sha256": self.wav_sha256 or _text_sha256(self.prompt.text),
            "attempt": attempt,
        }


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PromptLibrary:
    def __init__(self, files: dict[tuple[str, int, str], Audio]) -> None:
        self._files = files
        # the catalogue and the files are fixed once loaded: every webhook asks for the same few
        self._notices: dict[tuple[str, str], Notice] = {}

    @classmethod
    def load(cls, folder: Path) -> PromptLibrary:
        """Everything the manifest lists; empty (``<Say>`` only) when it is missing or stale."""
        manifest = load_manifest(folder)
        files: dict[tuple[str, int, str], Audio] = {}
        if manifest is not None:
            for entry in manifest["prompts"]:
                for fmt in FORMATS:
                    body = (folder / entry["id"] / f"{entry['version']}.{fmt}").read_bytes()
                    # hashed here, not taken from the manifest: the ledger must name these bytes
                    digest = hashlib.sha256(body).hexdigest()
                    files[(entry["id"], entry["version"], fmt)] = Audio(
                        body, digest, CONTENT_TYPES[fmt]
                    )
        return cls(files)

    def audio(self, prompt_id: str, version: int, fmt: str) -> Audio | None:
        return self._files.get((prompt_id, version, fmt))

    def notice(self, mode: str, language: str) -> Notice:
        found = self._notices.get((mode, language))
        if found is None:
            prompt = catalogue.find(mode, language)
            wav = self.audio(prompt.id, prompt.version, "wav")
            found = self._notices[(mode, language)] = Notice(prompt, wav.sha256 if wav else None)
        return found
