"""Sealing's cost at intake (issue 17): 40 recordings of 5 MB stored in the bucket by the
store step intake runs (4 at once), sealed with their own data keys (Tink's streaming AEAD
format, written with ``cryptography``'s AES-GCM, file to file in the sealing pool, then
``put_file``) beside the same files stored unsealed.

Only the step that differs is timed: the download, the database work and the platform's
delete are the same either way, so this ratio is stricter than the whole intake's.

``python -m tests.bench.bench_seal_intake``"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from service.storage import sealed
from service.storage.s3 import S3Store
from tests.bench.harness import make_bucket, moto, report

N = 40
SIZE = 5 * 1000 * 1000
AT_ONCE = 4


async def _store_all(store: S3Store, files: list[Path], seal: bool) -> float:
    turn = asyncio.Semaphore(AT_ONCE)
    loop = asyncio.get_running_loop()

    async def one(i: int, path: Path) -> None:
        async with turn:
            if seal:
                keyset = sealed.new_data_key()
                out = path.with_suffix(".sealed")
                await loop.run_in_executor(
                    sealed.EXECUTOR, sealed.encrypt_file, keyset, path, out, b"bench"
                )
                await store.put_file(
                    f"sealed/{i}", out, sha256="x", content_type="audio/wav", metadata={}
                )
                await asyncio.to_thread(out.unlink)
            else:
                await store.put_file(
                    f"plain/{i}", path, sha256="x", content_type="audio/wav", metadata={}
                )

    started = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(files)))
    return time.perf_counter() - started


async def run(endpoint: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-seal-"))
    files = []
    for i in range(N):
        path = folder / f"{i}.wav"
        path.write_bytes(os.urandom(SIZE))
        files.append(path)
    store = S3Store(make_bucket(endpoint), endpoint_url=endpoint, region="us-east-1")
    try:
        await _store_all(store, files[:4], seal=True)  # warm-up: boto3, Tink
        plain_s = sealed_s = 0.0
        for _ in range(2):  # interleaved, so a noisy neighbour hits both
            plain_s += await _store_all(store, files, seal=False)
            sealed_s += await _store_all(store, files, seal=True)
    finally:
        await store.close()
    ratio = plain_s / sealed_s
    report(
        "seal_intake",
        f"seal_intake: {N} x 5 MB stored sealed in {sealed_s / 2:.2f} s vs unsealed "
        f"{plain_s / 2:.2f} s = {ratio:.2f} (goal >= 0.9)",
        seconds=sealed_s / 2,
        baseline_seconds=plain_s / 2,
        ratio=ratio,
    )


if __name__ == "__main__":
    with moto() as s3:
        asyncio.run(run(s3))
