"""Range playback of a sealed recording (issue 17): time to the first byte of a 64 KiB Range
in the middle of a 1 GiB recording, sealed (the segment holding it fetched by a ranged GET
(the header is in the object's metadata), then decrypted: what ``/files/{token}`` runs) beside the same recording
stored unsealed (one ranged GET). Both start with the HEAD ``/files`` makes; the sealed one
also opens its data key from the keyset (the database read of the wrapped key, one primary-key
SELECT, is not included). Medians of 30 requests each, interleaved.

``python -m tests.bench.bench_seal_range``"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from service.files_http import _Opened, plain_range
from service.storage import sealed
from service.storage.s3 import S3Store
from tests.bench.harness import make_bucket, moto, report

SIZE = 1024 * 1024 * 1024
RANGE = 64 * 1024
TRIES = 30
GOAL_MS = 50.0


async def _first_plain(store: S3Store, start: int) -> float:
    began = time.perf_counter()
    head = await store.head("plain")
    assert head is not None
    chunks = store.read_range("plain", start, start + RANGE - 1)
    try:
        async for _ in chunks:
            break
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # an async generator
    return time.perf_counter() - began


async def _first_sealed(store: S3Store, keyset: bytes, start: int) -> float:
    began = time.perf_counter()
    head = await store.head("sealed")
    assert head is not None
    opened = _Opened(keyset, b"bench")
    chunks = plain_range(store, head, opened, start, start + RANGE - 1)
    try:
        async for _ in chunks:
            break
    finally:
        await chunks.aclose()
    return time.perf_counter() - began


async def run(endpoint: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-range-"))
    plain, sealed_path = folder / "plain", folder / "sealed"
    with plain.open("wb") as out:
        out.truncate(SIZE)
    keyset = sealed.new_data_key()
    await asyncio.to_thread(sealed.encrypt_file, keyset, plain, sealed_path, b"bench")
    store = S3Store(make_bucket(endpoint), endpoint_url=endpoint, region="us-east-1")
    try:
        await store.put_file("plain", plain, sha256="x", content_type="audio/wav", metadata={})
        await store.put_file(
            "sealed",
            sealed_path,
            sha256="x",
            content_type="audio/wav",
            metadata=sealed.object_metadata(sealed_path, SIZE),  # as intake writes it
        )
        plain.unlink()
        sealed_path.unlink()
        middle = SIZE // 2 + 12345
        await _first_plain(store, middle)  # warm-up
        await _first_sealed(store, keyset, middle)
        plain_s, sealed_s = [], []
        for i in range(TRIES):
            at = middle + i * 7919
            plain_s.append(await _first_plain(store, at))
            sealed_s.append(await _first_sealed(store, keyset, at))
    finally:
        await store.close()
    plain_ms = statistics.median(plain_s) * 1000
    sealed_ms = statistics.median(sealed_s) * 1000
    extra = sealed_ms - plain_ms
    report(
        "seal_range",
        f"seal_range: first byte of a Range mid 1 GiB: sealed {sealed_ms:.1f} ms vs unsealed "
        f"{plain_ms:.1f} ms (+{extra:.1f} ms; goal <= +{GOAL_MS:.0f} ms): ratio "
        f"{GOAL_MS / max(extra, 0.1):.1f} (goal >= 1)",
        sealed_ms=sealed_ms,
        plain_ms=plain_ms,
        extra_ms=extra,
        ratio=GOAL_MS / max(extra, 0.1),
    )


if __name__ == "__main__":
    with moto() as s3:
        asyncio.run(run(s3))
