"""Recordings sealed by callvault before they leave for the store (issue 17): each with its own
data key, so that destroying that key (purge, erasure) makes every copy unreadable: old object
versions, replicas, backups, a copy an operator made.

The cipher is Tink's streaming AEAD, ``AES256_GCM_HKDF_1MB``: a header (salt, nonce prefix),
then 1 MiB ciphertext segments, each AES-256-GCM under a key derived per object (HKDF of the
data key with the header's salt and the associated data, here the recording's id), the last
segment flagged in its nonce so truncation is detected. Keys are Tink keysets, made by Tink;
whole objects are opened by Tink (bundles, exports).

Two parts work on Tink's published wire format directly (developers.google.com/tink/
streaming-aead/aes_gcm_hkdf_streaming), with ``cryptography``'s HKDF and AES-GCM and the key's
own parameters from the keyset:

- :class:`Sealer` writes it. Tink's Python binding encrypts at 70-390 MB/s here and holds the
  GIL while it does (the event loop and the upload threads stall behind it); ``cryptography``'s
  AES-GCM runs at gigabytes a second with the GIL released. It builds exactly the spec's
  construction, nothing of its own: Header = len(Header) || Salt || NoncePrefix (random,
  ``DerivedKeySize`` and 7 bytes); DerivedKey = HKDF(HkdfHashType, ikm=KeyValue, salt=Salt,
  info=AssociatedData, length=DerivedKeySize); the message split into M_0 of at most
  CiphertextSegmentSize - len(Header) - 16 bytes and M_1..M_{n-1} of at most
  CiphertextSegmentSize - 16, every segment but the last full and none after the first empty;
  C_i = AES-GCM(DerivedKey, NoncePrefix || i (4 bytes, big-endian) || [i == n-1], M_i) with
  its 16-byte tag; the object is Header || C_0 || ... || C_{n-1}. Tests check that Tink's own
  decrypting stream opens what it writes (empty, within one segment, exactly one, several)
  and that the sizes are the ones Tink writes.
- :class:`Layout` reads it: Tink for Python has no random-access decryption (Java's
  ``newSeekableDecryptingChannel`` and C++'s random-access stream are not in its bindings),
  and HTTP Range playback needs it, so it decrypts only the segments a range needs; tests check
  it against Tink's own encryption at every boundary.

The data key is a Tink keyset (one key), serialised and then wrapped by the tenant's
key-encryption key (:meth:`service.personal.numbers.PhoneVault.wrap_data_key`); only the wrapped
form is ever stored (``recording_keys``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import threading
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import tink  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from tink import cleartext_keyset_handle, streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2  # type: ignore[import-untyped]

from service.errors import Abandoned as Abandoned
from service.errors import Undecryptable as Undecryptable

streaming_aead.register()

FORMAT = "tink-streaming-v1"
# object metadata (S3: x-amz-meta-callvault-enc); an object without it is plaintext, stored
# before issue 17, and is played and purged as before
MARKER = "callvault-enc"
PLAIN_SIZE = "callvault-plaintext-size"
# the sealed object's header (salt and nonce prefix: not secret), base64, so that a Range
# needs one ranged GET (its segments), not two
HEADER = "callvault-enc-header"
_TEMPLATE = streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB
_TAG = 16
_NONCE_PREFIX = 7
_CHUNK = 1 << 20
_MAX_SEGMENTS = 1 << 32  # the segment number is 4 bytes in the nonce
_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    common_pb2.SHA1: hashes.SHA1,
    common_pb2.SHA256: hashes.SHA256,
    common_pb2.SHA512: hashes.SHA512,
}
# Sealing or opening a whole recording (intake, access bundles, tenant exports, reseal) is CPU
# work on a whole file: a small pool of its own, so that a burst of them cannot take every
# thread of the loop's default executor (S3 and the local store have their own pools).
EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="seal")
# Playback's segments (one 1 MiB AES-GCM open each, about a millisecond) have their own: two
# large intakes hold EXECUTOR for seconds each, and a trainer's Range request must not queue
# behind them.
SEGMENT_EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="seal-segment")


def associated_data(recording_id: object) -> bytes:
    """What each recording's ciphertext is bound to: moved under another recording, it fails."""
    return f"callvault:recording:{recording_id}".encode()


def is_sealed(metadata: dict[str, str]) -> bool:
    return metadata.get(MARKER) == FORMAT


def object_metadata(sealed_path: Path, plain_size: int) -> dict[str, str]:
    """What a sealed object's metadata says of it (blocking: reads the header)."""
    with sealed_path.open("rb") as f:
        header = f.read(_NEW.header_size)
    return metadata_of(header, plain_size)


def metadata_of(header: bytes, plain_size: int) -> dict[str, str]:
    """What a sealed object's metadata says of it, from its header."""
    return {
        MARKER: FORMAT,
        PLAIN_SIZE: str(plain_size),
        HEADER: base64.b64encode(header).decode("ascii"),
    }


def header_of(metadata: dict[str, str]) -> bytes | None:
    text = metadata.get(HEADER)
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def new_data_key() -> bytes:
    """A fresh data key: a serialised Tink keyset (cleartext: wrap it before storing it)."""
    handle = tink.new_keyset_handle(_TEMPLATE)
    out = io.BytesIO()
    cleartext_keyset_handle.write(tink.BinaryKeysetWriter(out), handle)
    return out.getvalue()


def _primitive(keyset: bytes) -> Any:
    handle = cleartext_keyset_handle.read(tink.BinaryKeysetReader(keyset))
    return handle.primitive(streaming_aead.StreamingAead)


@dataclass(frozen=True)
class SealedFile:
    size: int  # of the sealed file
    header: bytes  # its first bytes (not secret), for the object's metadata
    sha256: str | None  # hex, of the sealed bytes as written (if asked): what the store gets


def seal_file(
    keyset: bytes, src: Path, dst: Path, aad: bytes, *, hashed: bool = False
) -> SealedFile:
    """Seal ``src`` into ``dst`` (blocking: run it in :data:`EXECUTOR`; two segments in
    memory). Reads a segment ahead, so each is sealed straight from what was read. ``hashed``:
    with the SHA-256 of what it wrote, for an upload to send as its checksum."""
    with src.open("rb") as plain, dst.open("wb") as out:
        digest = hashlib.sha256() if hashed else None
        sealer = Sealer(Layout.of(keyset), aad, out, digest=digest)
        segment = plain.read(sealer.room)
        while following := plain.read(sealer.full):
            sealer.seal_segment(segment, last=False)
            segment = following
        sealer.seal_segment(segment, last=True)
    return SealedFile(sealer.written, sealer.header, None if digest is None else digest.hexdigest())


class SealingFile:
    """A file that seals what is written to it, as it arrives: a download streams straight
    into ``dst`` sealed (the plaintext never reaches the disk, nor is it written and read back),
    hashing the sealed bytes as they are written, as :func:`seal_file` with ``hashed``.

    Written off the event loop in order (:meth:`write`, :meth:`writelines`); :meth:`close` (the
    downloader's, on the loop) does not end the object, since a download that failed closes it
    too: :meth:`finish` (blocking: seals the last segment) ends it once the download has
    succeeded, and :meth:`abandon` closes the file without ending it (idempotent; then the file
    is a truncated sealed object, which fails authentication and is deleted with its folder).

    :meth:`abandon` is called on the loop when a download fails or is cancelled, and a piece
    handed to :data:`EXECUTOR` before that may still be being written: cancelling the task that
    awaits it does not stop the thread. So no write starts after :meth:`abandon` (it raises
    :class:`Abandoned`; so does :meth:`finish`), and the file is closed by whichever ends last,
    the abandon or the piece in progress, never under a write. The lock is held only to read and
    set that state, never across I/O: the loop never waits for a write."""

    # Where its writes and :meth:`finish` run (:class:`service.platforms.pieces.Pieces` looks
    # for it): sealing is CPU work, in the pool bounded for it, so that a burst of downloads
    # does not take every thread of the loop's default executor. Nothing run in EXECUTOR waits
    # on another task, the loop or another pool (it seals, opens or hashes files), and a writer
    # awaits its piece on the loop, holding no thread: queueing, no deadlock.
    executor: ClassVar[Executor] = EXECUTOR

    def __init__(self, keyset: bytes, dst: Path, aad: bytes) -> None:
        self.path = dst
        self._out = dst.open("wb")
        self._lock = threading.Lock()
        self._abandoned = False
        self._busy = False  # a write or finish is running (in a thread of EXECUTOR)
        try:
            self._digest = hashlib.sha256()
            self._sealer = Sealer(Layout.of(keyset), aad, self._out, digest=self._digest)
        except BaseException:
            self._out.close()
            raise

    def _begin(self, what: str) -> None:
        with self._lock:
            if self._abandoned:
                raise Abandoned(f"{what} after the download into {self.path} was abandoned")
            # (the callers are in order: a piece is awaited before the next is handed over)
            assert not self._busy, f"{what} while another write runs"
            self._busy = True

    def _end(self) -> None:
        with self._lock:
            self._busy = False
            if self._abandoned:  # abandoned while this ran: closing was left to it
                self._out.close()

    def write(self, data: bytes, /) -> int:
        self._begin("write")
        try:
            self._sealer.write(data)
        finally:
            self._end()
        return len(data)

    def writelines(self, chunks: Iterable[bytes], /) -> None:
        self._begin("write")
        try:
            for chunk in chunks:
                self._sealer.write(chunk)
        finally:
            self._end()

    def close(self) -> None:
        """The downloader is done writing (successfully or not): see :meth:`finish`."""

    def finish(self) -> SealedFile:
        """Seal the last segment and close the file (blocking)."""
        self._begin("finish")
        try:
            with self._out:
                self._sealer.close()
        finally:
            self._end()
        return SealedFile(self._sealer.written, self._sealer.header, self._digest.hexdigest())

    def abandon(self) -> None:
        """No write starts after this; the file is closed now, or by the write in progress
        when it ends (never waited for: this runs on the loop)."""
        with self._lock:
            self._abandoned = True
            if not self._busy:
                self._out.close()


def encrypt_file(keyset: bytes, src: Path, dst: Path, aad: bytes) -> int:
    """Seal ``src`` into ``dst`` (blocking). Returns the sealed size."""
    return seal_file(keyset, src, dst, aad).size


def decrypt_file(keyset: bytes, src: Path, dst: Path, aad: bytes) -> int:
    """Open a sealed file into ``dst`` (blocking, streamed). Returns the plaintext size."""
    primitive = _primitive(keyset)
    with (
        src.open("rb") as ciphertext,
        dst.open("wb") as out,
        primitive.new_decrypting_stream(ciphertext, aad) as opening,
    ):
        shutil.copyfileobj(opening, out, _CHUNK)
    return dst.stat().st_size


def plain_sha256(keyset: bytes, src: Path, aad: bytes) -> str:
    """The SHA-256 of a sealed file's plaintext, read through Tink's decrypting stream a chunk
    at a time (blocking): checks a sealed hand-out without writing its audio anywhere."""
    digest = hashlib.sha256()
    primitive = _primitive(keyset)
    with src.open("rb") as ciphertext, primitive.new_decrypting_stream(ciphertext, aad) as opening:
        while chunk := opening.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Layout:
    """Where the segments of a sealed object lie, from its key's parameters."""

    key_value: bytes
    derived_key_size: int
    hkdf_hash: type[hashes.HashAlgorithm]
    segment_size: int  # ciphertext

    @classmethod
    def of(cls, keyset: bytes) -> Layout:
        parsed = tink_pb2.Keyset.FromString(keyset)
        (key,) = [k for k in parsed.key if k.key_id == parsed.primary_key_id]
        data = key.key_data
        if not data.type_url.endswith("AesGcmHkdfStreamingKey"):
            raise ValueError(f"unsupported data key type {data.type_url}")
        sk = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey.FromString(data.value)
        params = sk.params
        # the spec's conditions for a valid key, which Tink enforces as well
        if (
            params.derived_key_size not in (16, 32)
            or len(sk.key_value) < params.derived_key_size
            or params.ciphertext_segment_size <= params.derived_key_size + 24
            or params.hkdf_hash_type not in _HASHES
        ):
            raise ValueError("not a valid AES-GCM-HKDF streaming key")
        return cls(
            sk.key_value,
            params.derived_key_size,
            _HASHES[params.hkdf_hash_type],
            params.ciphertext_segment_size,
        )

    @property
    def header_size(self) -> int:
        return 1 + self.derived_key_size + _NONCE_PREFIX

    def _first_cipher(self) -> int:  # ciphertext bytes of segment 0 (after the header)
        return self.segment_size - self.header_size

    def segments(self, sealed_size: int) -> int:
        body = sealed_size - self.header_size
        if body <= self._first_cipher():
            return 1
        rest = body - self._first_cipher()
        return 1 + -(-rest // self.segment_size)

    def plain_size(self, sealed_size: int) -> int:
        return sealed_size - self.header_size - _TAG * self.segments(sealed_size)

    def sealed_size(self, plain_size: int) -> int:
        first = self._first_cipher() - _TAG
        if plain_size <= first:
            return self.header_size + plain_size + _TAG
        rest = plain_size - first
        n = 1 + -(-rest // (self.segment_size - _TAG))
        return self.header_size + plain_size + _TAG * n

    def _plain_start(self, segment: int) -> int:
        if segment == 0:
            return 0
        return self._first_cipher() - _TAG + (segment - 1) * (self.segment_size - _TAG)

    def _cipher_start(self, segment: int) -> int:
        if segment == 0:
            return self.header_size
        return self.segment_size * segment

    def segment_of(self, plain_offset: int) -> int:
        first = self._first_cipher() - _TAG
        if plain_offset < first:
            return 0
        return 1 + (plain_offset - first) // (self.segment_size - _TAG)

    def span(self, start: int, end: int, sealed_size: int) -> Span:
        """The segments holding plaintext bytes ``start``..``end`` (inclusive) and where they
        lie in the sealed object."""
        last_segment = self.segments(sealed_size) - 1
        first, last = self.segment_of(start), min(self.segment_of(end), last_segment)
        cipher_end = min(self._cipher_start(last + 1), sealed_size) - 1
        return Span(
            first,
            last,
            self._cipher_start(first),
            cipher_end,
            start - self._plain_start(first),
            end - start + 1,
            last == last_segment,
        )

    def segment_cipher_size(self, segment: int, sealed_size: int) -> int:
        return min(self._cipher_start(segment + 1), sealed_size) - self._cipher_start(segment)

    def derive(self, salt: bytes, aad: bytes) -> AESGCM:
        """The object's segment cipher: HKDF(ikm=KeyValue, salt=Salt, info=AssociatedData)."""
        derived = HKDF(
            algorithm=self.hkdf_hash(), length=self.derived_key_size, salt=salt, info=aad
        ).derive(self.key_value)
        return AESGCM(derived)

    def opener(self, header: bytes, aad: bytes, sealed_size: int) -> SegmentOpener:
        if len(header) != self.header_size or header[0] != self.header_size:
            raise Undecryptable("not a sealed recording header")
        salt = header[1 : 1 + self.derived_key_size]
        return SegmentOpener(
            self.derive(salt, aad),
            header[1 + self.derived_key_size :],
            self.segments(sealed_size) - 1,
        )


# the layout of every data key new_data_key makes (for checking a stored object's size)
_NEW = Layout(b"", 32, hashes.SHA256, 1 << 20)


def sealed_size(plain_size: int) -> int:
    """The size of a recording of ``plain_size`` bytes once sealed with a new data key."""
    return _NEW.sealed_size(plain_size)


@dataclass(frozen=True)
class Span:
    first: int
    last: int
    cipher_start: int
    cipher_end: int  # inclusive
    skip: int  # plaintext bytes of the first segment before the range
    length: int
    reaches_end: bool


@dataclass(frozen=True)
class SegmentOpener:
    aead: AESGCM
    nonce_prefix: bytes
    last_segment: int

    def open(self, segment: int, ciphertext: bytes) -> bytes:
        """Decrypt and authenticate one whole segment (blocking: call off the loop)."""
        nonce = _nonce(self.nonce_prefix, segment, segment == self.last_segment)
        try:
            return self.aead.decrypt(nonce, ciphertext, None)
        except Exception as exc:  # cryptography's InvalidTag
            raise Undecryptable(f"segment {segment} failed authentication") from exc


def _nonce(prefix: bytes, segment: int, last: bool) -> bytes:
    return prefix + segment.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class Sealer:
    """Writes one sealed object to ``out``, Tink's AES-GCM-HKDF streaming format exactly (see
    the module's docstring): bytes as they come to :meth:`write` and then :meth:`close`, or
    whole segments to :meth:`seal_segment`. Blocking (AES-GCM runs with the GIL released): run
    it off the event loop.

    :meth:`write` seals a segment only once a byte beyond it arrives, so the last one is known
    when it is sealed and, as Tink writes, is never empty unless it is the only one."""

    def __init__(
        self, layout: Layout, aad: bytes, out: BinaryIO, *, digest: Any | None = None
    ) -> None:
        salt = os.urandom(layout.derived_key_size)
        self._prefix = os.urandom(_NONCE_PREFIX)
        self.header = bytes([layout.header_size]) + salt + self._prefix
        self._aead = layout.derive(salt, aad)
        self._out = out
        self.full = layout.segment_size - _TAG  # plaintext of M_1, M_2, ...
        self.room = layout.segment_size - layout.header_size - _TAG  # of the next segment
        self._pending = bytearray()
        self._segment = 0
        self._closed = False
        # hashed as written, off the loop (hashlib releases the GIL), so that the upload sends
        # this checksum for the store to verify instead of reading the file again for one
        self._digest = digest
        out.write(self.header)
        if digest is not None:
            digest.update(self.header)
        self.written = len(self.header)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ValueError("the sealer is closed")
        view = memoryview(data).cast("B")
        if self._pending:
            need = self.room - len(self._pending)
            if len(view) <= need:  # the pending segment may still be the last
                self._pending += view
                return
            self._pending += view[:need]
            view = view[need:]
            self.seal_segment(self._pending, last=False)  # full, and more follows
            self._pending.clear()
        while len(view) > (room := self.room):
            self.seal_segment(view[:room], last=False)
            view = view[room:]
        self._pending += view

    def close(self) -> None:
        if not self._closed:
            self.seal_segment(self._pending, last=True)
            self._pending.clear()

    def seal_segment(self, plain: bytes | bytearray | memoryview, *, last: bool) -> None:
        """Seal the next segment: exactly :attr:`room` bytes unless ``last`` (then at most,
        and empty only as the only segment)."""
        if self._closed:
            raise ValueError("the sealer is closed")
        if len(plain) > self.room or (not last and len(plain) != self.room):
            raise ValueError("a segment of the wrong size")
        if last and not plain and self._segment:
            raise ValueError("an empty last segment after others")
        if self._segment >= _MAX_SEGMENTS:
            raise ValueError("too many segments for one sealed object")
        nonce = _nonce(self._prefix, self._segment, last)
        sealed = self._aead.encrypt(nonce, plain, None)
        self._out.write(sealed)
        if self._digest is not None:
            self._digest.update(sealed)
        self.written += len(sealed)
        self._segment += 1
        self.room = self.full
        self._closed = last
