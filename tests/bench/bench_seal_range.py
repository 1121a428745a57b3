"""Range playback of a sealed recording (issue 17): time to the first byte of a 64 KiB Range
in the middle of a 1 GiB recording, sealed (the segment holding it fetched by a ranged GET, the
header read from the object's metadata, then decrypted: what ``/files/{token}`` runs) beside
the same recording stored unsealed (one ranged GET), on moto's S3 server and on the local
store. Moto answers a ranged GET of a large object slowly whatever the range, which hides the
difference; the local store shows what sealing itself adds. Both start with the HEAD
``/files`` makes; the sealed one also opens its data key from the keyset (the database read of
the wrapped key, one primary-key SELECT, is not included). Medians of 30 requests each,
interleaved.

``python -m tests.bench.bench_seal_range``"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from service.links.http import SealedRecording, plain_range
from service.storage import ObjectStore, sealed
from service.storage.local import LocalStore
from service.storage.s3 import S3Store
from tests.bench.harness import make_bucket, moto, report

SIZE = 1024 * 1024 * 1024
RANGE = 64 * 1024
TRIES = 30
GOAL_MS = 50.0


async def _first_plain(store: ObjectStore, start: int) -> float:
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


async def _first_sealed(store: ObjectStore, keyset: bytes, start: int) -> float:
    began = time.perf_counter()
    head = await store.head("sealed")
    assert head is not None
    opened = SealedRecording(keyset, b"bench")
    chunks = plain_range(store, head, opened, start, start + RANGE - 1)
    try:
        async for _ in chunks:
            break
    finally:
        await chunks.aclose()
    return time.perf_counter() - began


async def _medians(store: ObjectStore, keyset: bytes) -> tuple[float, float]:
    middle = SIZE // 2 + 12345
    await _first_plain(store, middle)  # warm-up
    await _first_sealed(store, keyset, middle)
    plain_s, sealed_s = [], []
    for i in range(TRIES):
        at = middle + i * 7919
        plain_s.append(await _first_plain(store, at))
        sealed_s.append(await _first_sealed(store, keyset, at))
    return statistics.median(plain_s) * 1000, statistics.median(sealed_s) * 1000


async def run(endpoint: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-range-"))
    plain, sealed_path = folder / "plain", folder / "sealed"
    with plain.open("wb") as out:
        out.truncate(SIZE)
    keyset = sealed.new_data_key()
    await asyncio.to_thread(sealed.encrypt_file, keyset, plain, sealed_path, b"bench")
    metadata = sealed.object_metadata(sealed_path, SIZE)  # as intake writes it
    results = {}
    s3 = S3Store(make_bucket(endpoint), endpoint_url=endpoint, region="us-east-1")
    local = LocalStore(folder / "objects")
    try:
        for name, store in (("moto S3", s3), ("local store", local)):
            await store.put_file("plain", plain, sha256="x", content_type="audio/wav", metadata={})
            await store.put_file(
                "sealed", sealed_path, sha256="x", content_type="audio/wav", metadata=metadata
            )
            results[name] = await _medians(store, keyset)
            await store.delete_many(["plain", "sealed"])
    finally:
        await s3.close()
        await local.close()
        plain.unlink()
        sealed_path.unlink()
    extra = max(sealed_ms - plain_ms for plain_ms, sealed_ms in results.values())
    parts = [
        f"{name} sealed {sealed_ms:.1f} ms vs unsealed {plain_ms:.1f} ms "
        f"({sealed_ms - plain_ms:+.1f} ms)"
        for name, (plain_ms, sealed_ms) in results.items()
    ]
    report(
        "seal_range",
        f"seal_range: first byte of a 64 KiB Range mid 1 GiB: {'; '.join(parts)}; goal <= "
        f"+{GOAL_MS:.0f} ms: ratio {GOAL_MS / max(extra, 0.1):.1f} (goal >= 1)",
        **{f"{n.split()[0]}_plain_ms": v[0] for n, v in results.items()},
        **{f"{n.split()[0]}_sealed_ms": v[1] for n, v in results.items()},
        extra_ms=extra,
        ratio=GOAL_MS / max(extra, 0.1),
    )


if __name__ == "__main__":
    with moto() as s3:
        asyncio.run(run(s3))
