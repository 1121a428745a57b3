"""The prompt catalogue (``catalogue.toml``): id, version, language, mode, purpose and text."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

Mode = Literal["implied", "explicit"]


@dataclass(frozen=True)
class Prompt:
    id: str
    version: int
    language: str
    mode: Mode
    purpose: str
    voice: str  # espeak-ng's, for the source WAV
    say_voice: str  # Twilio's <Say> voice for the same language, when the audio is missing
    text: str

    @property
    def source_name(self) -> str:
        return f"{self.id}.v{self.version}.wav"

    def source_path(self) -> Path:
        return Path(str(resources.files("prompts").joinpath("source", self.source_name)))

    def source_sha256(self) -> str:
        return hashlib.sha256(self.source_path().read_bytes()).hexdigest()


@cache
def catalogue() -> tuple[Prompt, ...]:
    raw = tomllib.loads(resources.files("prompts").joinpath("catalogue.toml").read_text("utf-8"))
    items = []
    for entry in raw["prompt"]:
        mode = entry["mode"]
        if mode not in ("implied", "explicit"):
            raise ValueError(f"prompt {entry['id']}: mode must be implied or explicit")
        items.append(
            Prompt(
                id=entry["id"],
                version=int(entry["version"]),
                language=entry["language"],
                mode=mode,
                purpose=entry["purpose"],
                voice=entry["voice"],
                say_voice=_say_voice(entry),
                text=entry["text"],
            )
        )
    ids = [(p.id, p.version) for p in items]
    if len(set(ids)) != len(ids):
        raise ValueError("catalogue.toml lists a prompt id and version twice")
    return tuple(items)


def _say_voice(entry: dict[str, Any]) -> str:
    """Twilio speaks a Google voice only in the language it is named for (a mismatched voice and
    language fails the <Say>), so a Google voice must carry the prompt's language in its name."""
    voice = str(entry.get("say_voice", ""))
    language = entry["language"]
    if not voice.startswith(("Google.", "Polly.")):
        raise ValueError(f"prompt {entry['id']}: say_voice must name a Google.* or Polly.* voice")
    if voice.startswith("Google.") and not voice.startswith(f"Google.{language}-"):
        raise ValueError(f"prompt {entry['id']}: say_voice {voice} does not speak {language}")
    return voice


def find(mode: str, language: str) -> Prompt:
    """The newest notice for a mode and language; Vietnamese when the language has none."""
    for lang in (language, "vi-VN"):
        matches = [p for p in catalogue() if p.mode == mode and p.language == lang]
        if matches:
            return max(matches, key=lambda p: p.version)
    raise LookupError(f"no {mode} notice in the catalogue")
