"""The notices: catalogue content, real rendered telephony audio, stable hashes, HTTP serving."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from prompts.catalogue import catalogue, find
from prompts.render import LEAD_IN_MS, TARGET_DBFS, build
from service.platforms.twilio.simulate import decode_audio


def test_catalogue_has_vietnamese_and_english_for_both_modes() -> None:
    have = {(p.mode, p.language) for p in catalogue()}
    assert have >= {
        ("implied", "vi-VN"),
        ("implied", "en-US"),
        ("explicit", "vi-VN"),
        ("explicit", "en-US"),
    }
    assert catalogue()[0].language == "vi-VN"  # Vietnamese first


def test_implied_notice_says_what_the_policy_promises() -> None:
    en = find("implied", "en-US").text.lower()
    assert "recorded" in en and "training" in en and "service quality" in en
    assert "ending the call" in en  # how to refuse
    vi = find("implied", "vi-VN").text.lower()
    assert "ghi âm" in vi and "đào tạo" in vi and "chất lượng dịch vụ" in vi
    assert "kết thúc cuộc gọi" in vi


def test_explicit_notice_asks_for_keys() -> None:
    assert (
        "press 1" in find("explicit", "en-US").text and "press 2" in find("explicit", "en-US").text
    )
    vi = find("explicit", "vi-VN").text
    assert "phím 1" in vi and "phím 2" in vi


def test_unknown_language_falls_back_to_vietnamese() -> None:
    assert find("implied", "fr-FR").language == "vi-VN"


def test_every_prompt_has_committed_source_speech() -> None:
    for prompt in catalogue():
        with prompt.source_path().open("rb") as fh:
            assert fh.read(4) == b"RIFF"


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_rendered_audio_is_telephony_ready(built_prompts: Path, fmt: str) -> None:
    manifest = json.loads((built_prompts / "manifest.json").read_text())
    for entry in manifest["prompts"]:
        body = (built_prompts / entry["id"] / f"{entry['version']}.{fmt}").read_bytes()
        assert hashlib.sha256(body).hexdigest() == entry["files"][fmt]["sha256"]
        duration, rate, channels, dbfs = decode_audio(body, fmt)
        assert (rate, channels) == (8000, 1)
        # as long as the speech plus its lead-in; MP3 adds the encoder's delay and frame
        # padding (about 180 ms at 8 kHz, no gapless header written)
        slack = 5 if fmt == "wav" else 250
        assert abs(duration - entry["files"][fmt]["duration_ms"]) < slack
        assert duration > LEAD_IN_MS + 3000
        # loudness-normalised: every notice is within 1.5 dB of the target
        assert abs(dbfs - TARGET_DBFS) < 1.5, (entry["id"], fmt, dbfs)
    if fmt == "wav":
        with (built_prompts / manifest["prompts"][0]["id"] / "1.wav").open("rb") as fh:
            header = fh.read(22)
        assert header[20:22] == (7).to_bytes(2, "little")  # WAVE_FORMAT_MULAW


def test_rendering_is_deterministic(built_prompts: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again")
    first = json.loads((built_prompts / "manifest.json").read_text())
    assert [p["files"] for p in again["prompts"]] == [p["files"] for p in first["prompts"]]


async def test_prompt_audio_is_served_with_its_hash_as_etag(
    service: Any, http: Any, built_prompts: Path
) -> None:
    manifest = json.loads((built_prompts / "manifest.json").read_text())
    entry = manifest["prompts"][0]
    for fmt, ctype in (("wav", "audio/wav"), ("mp3", "audio/mpeg")):
        url = f"{service.base_url}/prompts/{entry['id']}/{entry['version']}.{fmt}"
        async with http.get(url) as resp:
            assert resp.status == 200
            assert resp.content_type == ctype
            body = await resp.read()
            etag = resp.headers["ETag"]
        assert etag == f'"{hashlib.sha256(body).hexdigest()}"'
        async with http.get(url, headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
    for bad in (
        "/prompts/notice-implied-vi/99.wav",
        "/prompts/nope/1.wav",
        "/prompts/notice-implied-vi/1.ogg",
        "/prompts/..%2f..%2fetc/1.wav",
    ):
        async with http.get(service.base_url + bad) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "not_found"


# Voices Twilio lists for each language on https://www.twilio.com/docs/voice/twiml/say/text-speech
# ("Available voices and languages"); Amazon Polly has no Vietnamese voice, Google has.
SAY_VOICES = {"vi-VN": "Google.vi-VN-Standard-A", "en-US": "Polly.Joanna"}


@pytest.mark.parametrize("mode", ["implied", "explicit"])
@pytest.mark.parametrize("language", sorted(SAY_VOICES))
def test_say_fallback_names_a_voice_twilio_documents_for_the_language(
    mode: str, language: str
) -> None:
    import xml.etree.ElementTree as ET

    from service.notices.library import Notice
    from service.platforms.twilio import twiml

    prompt = find(mode, language)
    assert prompt.language == language
    body = twiml.notice(
        Notice(prompt, wav_sha256=None), "https://cv.example", attempt=1, gather_timeout_s=8
    )
    says = list(ET.fromstring(body).iter("Say"))
    assert len(says) == 1, body
    assert says[0].get("voice") == SAY_VOICES[language]
    assert says[0].get("language") == language
    assert says[0].text == prompt.text


def test_a_say_voice_for_another_language_is_refused() -> None:
    from prompts.catalogue import _say_voice

    entry = {"id": "x", "language": "vi-VN", "say_voice": "Google.en-US-Standard-A"}
    with pytest.raises(ValueError, match="does not speak vi-VN"):
        _say_voice(entry)
    with pytest.raises(ValueError, match="Google"):
        _say_voice({**entry, "say_voice": "alice"})
