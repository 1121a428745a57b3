"""callvault writes and reads Tink's AES-GCM-HKDF streaming format itself (with
``cryptography``): what it seals, Tink's own decrypting stream must open, and what Tink's own
encrypting stream seals, the segment reader that serves Range playback must read, at every
segment boundary; and both must refuse what Tink would refuse (another key, another recording,
altered or truncated bytes)."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest

from service.storage import sealed

KEY = sealed.new_data_key()
LAYOUT = sealed.Layout.of(KEY)
FIRST = LAYOUT.segment_size - LAYOUT.header_size - 16  # plaintext bytes in segment 0
OTHER = LAYOUT.segment_size - 16
AAD = sealed.associated_data("r-1")


def _seal(tmp_path: Path, data: bytes, key: bytes = KEY) -> bytes:
    src, dst = tmp_path / "plain", tmp_path / "sealed"
    src.write_bytes(data)
    size = sealed.encrypt_file(key, src, dst, AAD)
    blob = dst.read_bytes()
    assert size == len(blob)
    return blob


def _tink_seal(tmp_path: Path, data: bytes, key: bytes = KEY) -> bytes:
    """Sealed by Tink's own encrypting stream."""
    dst = tmp_path / "sealed"
    with dst.open("wb") as out, sealed._primitive(key).new_encrypting_stream(out, AAD) as s:
        s.write(data)
    return dst.read_bytes()


def _tink_open(blob: bytes, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    """Opened by Tink's own decrypting stream."""
    import io

    with sealed._primitive(key).new_decrypting_stream(io.BytesIO(blob), aad) as s:
        return bytes(s.read())


def _read(
    blob: bytes, start: int, end: int, aad: bytes = AAD, layout: sealed.Layout = LAYOUT
) -> bytes:
    span = layout.span(start, end, len(blob))
    opener = layout.opener(blob[: layout.header_size], aad, len(blob))
    out = b"".join(
        opener.open(
            i,
            blob[
                (layout.segment_size * i if i else layout.header_size) : min(
                    layout.segment_size * (i + 1), len(blob)
                )
            ],
        )
        for i in range(span.first, span.last + 1)
    )
    assert blob[span.cipher_start : span.cipher_end + 1]  # the span lies inside the object
    return out[span.skip : span.skip + span.length]


def test_keys_are_tink_aes256_gcm_hkdf_with_1mib_segments() -> None:
    assert (LAYOUT.derived_key_size, LAYOUT.segment_size, LAYOUT.header_size) == (32, 1 << 20, 40)
    assert sealed.new_data_key() != KEY


SIZES = [0, 1, FIRST - 1, FIRST, FIRST + 1, FIRST + OTHER, FIRST + OTHER + 1, FIRST + 2 * OTHER + 5]


@pytest.mark.parametrize("size", SIZES)
def test_what_callvault_seals_tink_opens_and_what_tink_seals_callvault_reads(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    ours = _seal(tmp_path, data)
    assert _tink_open(ours) == data
    theirs = _tink_seal(tmp_path, data)
    assert len(ours) == len(theirs) == sealed.sealed_size(size)
    assert ours[0] == theirs[0] == LAYOUT.header_size
    if size:
        assert _read(theirs, 0, size - 1) == data
    with pytest.raises(Exception):  # noqa: B017 - Tink raises its own error type
        _tink_open(ours, aad=sealed.associated_data("r-2"))
    with pytest.raises(Exception):  # noqa: B017
        _tink_open(ours, key=sealed.new_data_key())


@pytest.mark.parametrize("size", [0, FIRST, FIRST + OTHER + 7])
def test_the_sealer_writes_the_same_format_whatever_pieces_it_is_given(size: int) -> None:
    """Intake hands the sealer chunks as they come: one byte, a segment and a byte, odd sizes;
    each way Tink opens the result, and it is as long as Tink's."""
    import io

    data = os.urandom(size)
    for piece in (1 if size < 5000 else 997, FIRST, FIRST + 1, OTHER + 3, max(size, 1)):
        out = io.BytesIO()
        sealer = sealed.Sealer(LAYOUT, AAD, out)
        for i in range(0, size, piece):
            sealer.write(data[i : i + piece])
        sealer.close()
        blob = out.getvalue()
        assert sealer.written == len(blob) == sealed.sealed_size(size)
        assert blob[: LAYOUT.header_size] == sealer.header
        assert _tink_open(blob) == data, piece


@pytest.mark.parametrize("size", [0, FIRST + 1, FIRST + OTHER + 7])
def test_a_download_sealed_as_it_is_written_is_what_seal_file_makes_of_it(
    tmp_path: Path, size: int
) -> None:
    """Intake's download writes into a SealingFile (chunks as they come, closed by the
    downloader, then finished): Tink opens it, and its size and SHA-256 are those of the file
    written, as seal_file would say them."""
    import hashlib

    data = os.urandom(size)
    sink = sealed.SealingFile(KEY, tmp_path / "sealed", AAD)
    try:
        sink.write(data[:3])
        sink.writelines([data[i : i + 65536] for i in range(3, size, 65536)])
        sink.close()  # the downloader's: not the end of the object
        made = sink.finish()
    finally:
        sink.abandon()
    blob = (tmp_path / "sealed").read_bytes()
    assert _tink_open(blob) == data
    assert made.size == len(blob) == sealed.sealed_size(size)
    assert made.header == blob[: LAYOUT.header_size]
    assert made.sha256 == hashlib.sha256(blob).hexdigest()


async def test_a_download_s_sealing_writes_run_in_the_sealing_pool_a_plain_file_s_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sealing as a download is written is CPU work like sealing a whole file: its pieces run
    in the bounded ``sealed.EXECUTOR``, not the loop's default executor; a plain file's
    (a transcoded download, a PBX upload) stay in the default one."""
    import threading

    from service.platforms import pieces

    threads: list[str] = []
    write = pieces._hash_and_write

    def noting(*args: Any) -> None:
        threads.append(threading.current_thread().name)
        write(*args)

    monkeypatch.setattr(pieces, "_hash_and_write", noting)
    data = os.urandom(pieces.WRITE_BYTES + 5)
    sink = sealed.SealingFile(KEY, tmp_path / "sealed", AAD)
    try:
        writer = pieces.Pieces(sink)
        await writer.add(data[: pieces.WRITE_BYTES])  # a whole piece: written now
        await writer.add(data[pieces.WRITE_BYTES :])
        await writer.flush()
        sink.finish()
    finally:
        sink.abandon()
    assert _tink_open((tmp_path / "sealed").read_bytes()) == data
    with (tmp_path / "plain").open("wb") as out:
        plain = pieces.Pieces(out)
        await plain.add(data)
    assert [name.rpartition("_")[0] for name in threads] == ["seal", "seal", "asyncio"]


def test_an_abandoned_sealing_file_is_refused_not_read_short(tmp_path: Path) -> None:
    """A download that failed part way leaves its sealed file unfinished: the last segment
    is never sealed, so what is there does not open as a (shorter) recording."""
    sink = sealed.SealingFile(KEY, tmp_path / "sealed", AAD)
    sink.write(os.urandom(FIRST + OTHER + 7))
    sink.close()
    sink.abandon()
    with pytest.raises(Exception):  # noqa: B017 - Tink raises its own error type
        _tink_open((tmp_path / "sealed").read_bytes())


async def test_a_download_abandoned_while_a_piece_is_written_never_closes_under_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download that fails or is cancelled while its piece is being sealed in the sealing
    pool (cancelling the awaiting task does not stop the thread) is abandoned on the loop:
    the piece in progress ends without a "write to closed file", the file is closed when it
    ends, and nothing is written after: a later write or finish is refused (Abandoned)."""
    import threading

    from service.platforms import pieces

    inside, proceed, ended = threading.Event(), threading.Event(), threading.Event()
    failures: list[BaseException] = []
    write = pieces._hash_and_write

    def noting(*args: Any) -> None:
        try:
            write(*args)
        except BaseException as exc:
            failures.append(exc)
        finally:
            ended.set()

    monkeypatch.setattr(pieces, "_hash_and_write", noting)
    sink = sealed.SealingFile(KEY, tmp_path / "sealed", AAD)
    seal = sink._sealer.write

    def held(data: Any) -> None:  # inside the file's write: its bytes are sealed, then written
        inside.set()
        assert proceed.wait(60), "never released"
        seal(data)

    monkeypatch.setattr(sink._sealer, "write", held)
    writer = pieces.Pieces(sink)
    await writer.add(os.urandom(FIRST + OTHER + 7))  # more than a segment: sealed and written
    flushing = asyncio.create_task(writer.flush())
    try:
        assert await asyncio.to_thread(inside.wait, 60)  # the piece is in the sealing pool
        flushing.cancel()  # the download fails: its task stops waiting, the thread goes on
        await asyncio.wait({flushing})
        # abandon never waits for the write (it runs on the loop): bounded, it must return
        await asyncio.wait_for(asyncio.to_thread(sink.abandon), 60)
    finally:
        proceed.set()
    assert await asyncio.to_thread(ended.wait, 60)
    assert failures == []
    assert sink._out.closed  # by the write that was running, once it ended
    written = (tmp_path / "sealed").stat().st_size
    with pytest.raises(sealed.Abandoned):
        sink.write(os.urandom(2 * OTHER))
    with pytest.raises(sealed.Abandoned):
        sink.finish()
    sink.abandon()  # idempotent
    assert (tmp_path / "sealed").stat().st_size == written


@pytest.mark.parametrize("size", SIZES)
def test_sizes_and_ranges_agree_with_tink_at_every_boundary(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    blob = _seal(tmp_path, data)
    assert len(blob) == sealed.sealed_size(size) == LAYOUT.sealed_size(size)
    assert LAYOUT.plain_size(len(blob)) == size
    out = tmp_path / "opened"
    assert sealed.decrypt_file(KEY, tmp_path / "sealed", out, AAD) == size
    assert out.read_bytes() == data
    rng = random.Random(size)
    edges = [0, FIRST - 1, FIRST, FIRST + OTHER - 1, FIRST + OTHER, size - 1]
    points = [p for p in edges if 0 <= p < size] + [rng.randrange(size) for _ in range(10) if size]
    for a in points:
        for b in points:
            if a <= b:
                assert _read(blob, a, b) == data[a : b + 1], (a, b)


def test_another_key_recording_or_altered_byte_is_refused(tmp_path: Path) -> None:
    data = os.urandom(FIRST + OTHER + 100)
    blob = _seal(tmp_path, data)
    other = sealed.Layout.of(sealed.new_data_key())
    with pytest.raises(sealed.Undecryptable):
        _read(blob, 0, 10, layout=other)
    with pytest.raises(sealed.Undecryptable):
        _read(blob, FIRST + 5, FIRST + 10, aad=sealed.associated_data("r-2"))
    altered = bytearray(blob)
    altered[FIRST + LAYOUT.header_size + 200] ^= 1  # inside segment 1
    with pytest.raises(sealed.Undecryptable):
        _read(bytes(altered), FIRST + 10, FIRST + 20)
    assert _read(bytes(altered), 0, 10) == data[:11]  # other segments still open


def test_a_truncated_object_is_refused_at_its_new_end(tmp_path: Path) -> None:
    data = os.urandom(FIRST + 2 * OTHER + 100)
    blob = _seal(tmp_path, data)
    cut = blob[: 2 * LAYOUT.segment_size]  # the last segment dropped
    # segment 1 was not written as the last: its nonce says so, and it fails as one
    with pytest.raises(sealed.Undecryptable):
        _read(cut, FIRST + OTHER - 10, FIRST + OTHER - 1)


@pytest.mark.parametrize("header_in_metadata", [True, False])
async def test_plain_range_reads_only_what_it_needs_with_or_without_the_header_metadata(
    tmp_path: Path, header_in_metadata: bool
) -> None:
    """``/files`` decrypts a Range from the segments holding it; the header comes from the
    object's metadata (intake writes it) or, for an object sealed without it, from the object."""
    from service.links.http import SealedRecording, plain_range
    from service.storage.local import LocalStore

    data = os.urandom(FIRST + 2 * OTHER + 999)
    blob = _seal(tmp_path, data)
    metadata = sealed.object_metadata(tmp_path / "sealed", len(data)) if header_in_metadata else {}
    store = LocalStore(tmp_path / "objects")
    try:
        await store.put_file(
            "r", tmp_path / "sealed", sha256="x", content_type="audio/wav", metadata=metadata
        )
        head = await store.head("r")
        assert head is not None and head.size == len(blob)
        opened = SealedRecording(KEY, AAD)
        for start, end in [
            (0, 99),
            (FIRST - 3, FIRST + OTHER + 3),
            (len(data) - 10, len(data) - 1),
        ]:
            got = b"".join([c async for c in plain_range(store, head, opened, start, end)])
            assert got == data[start : end + 1]
        wrong = SealedRecording(KEY, sealed.associated_data("r-2"))
        with pytest.raises(sealed.Undecryptable):
            _ = [c async for c in plain_range(store, head, wrong, 0, 10)]
    finally:
        await store.close()


async def test_a_range_plays_while_whole_file_sealing_holds_every_thread_of_its_pool(
    tmp_path: Path,
) -> None:
    """Intakes, bundles and exports seal and open whole files on ``sealed.EXECUTOR``; with
    every one of its threads taken (two large intakes), a trainer's Range request still
    decrypts its segments (``plain_range``, what ``/files`` streams) and completes."""
    import asyncio
    import threading

    from service.links.http import SealedRecording, plain_range
    from service.storage.local import LocalStore

    data = os.urandom(FIRST + OTHER + 500)
    _seal(tmp_path, data)
    metadata = sealed.object_metadata(tmp_path / "sealed", len(data))
    store = LocalStore(tmp_path / "objects")
    release, started = threading.Event(), threading.Semaphore(0)

    def intake() -> None:  # holds a thread the way sealing a large recording does
        started.release()
        release.wait()

    workers = sealed.EXECUTOR._max_workers
    held = [sealed.EXECUTOR.submit(intake) for _ in range(workers)]
    try:
        for _ in range(workers):
            assert await asyncio.to_thread(started.acquire, True, 30)
        await store.put_file(
            "r", tmp_path / "sealed", sha256="x", content_type="audio/wav", metadata=metadata
        )
        head = await store.head("r")
        assert head is not None
        opened = SealedRecording(KEY, AAD)
        start, end = FIRST - 10, FIRST + 10  # two segments
        # (a guard so a regression fails instead of hanging the suite, not a timing check)
        got = await asyncio.wait_for(
            _collect(plain_range(store, head, opened, start, end)), timeout=5
        )
        assert got == data[start : end + 1]
        assert not any(f.done() for f in held)  # it played while the pool was still taken
    finally:
        release.set()
        await asyncio.gather(*(asyncio.wrap_future(f) for f in held))
        await store.close()


async def _collect(chunks: Any) -> bytes:
    return b"".join([c async for c in chunks])
