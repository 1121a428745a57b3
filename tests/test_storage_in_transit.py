"""A recording's bytes altered on their way to an S3-compatible store must make the PUT fail,
never be kept as if stored.

moto (the tests' S3) checks neither signatures nor checksums, so the store here is moto behind a
front that checks what the store it stands for would check: the signed payload hash
(``x-amz-content-sha256``), which SigV4 makes every S3-compatible store check over plain http
(a tenant's own bucket at an ``http://`` endpoint); and ``x-amz-checksum-sha256`` as AWS
documents it for PutObject (S3 computes the checksum of what it received, refuses a mismatch with
``400 BadDigest`` and keeps nothing; accepted, it answers the checksum in
``x-amz-checksum-sha256``), or as a store that reports the checksum of what it received without
refusing a mismatch. One byte of a PUT body can be flipped on the way in."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import os
import tempfile
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import aiohttp
import asyncpg
import boto3
import pytest
from aiohttp import web

from retention import dsar
from service.config import Settings
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import StorageError, StoredObject, s3
from service.storage.registry import StoreRegistry
from service.storage.reseal import encrypt_all
from service.storage.s3 import MIB, S3Store
from service.tenants.export import ExportError, S3Target, export
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, SECRET_KEY, Service, make_bucket
from tests.intake_helpers import get_object, objects, open_sealed, send_recording, settle
from tests.seed import seed_recording
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

_HOP = {"host", "content-length", "transfer-encoding", "connection", "expect"}


def _error(code: str, message: str) -> web.Response:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    )
    return web.Response(status=400, text=body, content_type="application/xml")


# What the store does with x-amz-checksum-sha256: "ignore" (a store that predates the
# x-amz-checksum-* headers: it neither checks nor answers them), "verify" (S3), "report" (it
# answers the checksum of what it received and keeps it, whatever was claimed).
Checksums = Literal["ignore", "verify", "report"]


class _StoreFront:
    """moto behind a front that checks the signed payload hash if ``signature``, and
    ``checksums`` as above; ``alter`` flips a byte in the middle of each PUT body (a whole
    object's or a part's) before it is checked and kept, or of the first ``alter_puts`` only.

    Unless ``checksums`` is "ignore", the front keeps its own SHA-256 of what it stored and
    answers it to a HEAD that asks (``x-amz-checksum-mode: ENABLED``), as S3 does: of the whole
    object for a PutObject (``FULL_OBJECT``), and for a multipart upload the SHA-256 of its
    parts' SHA-256s, with ``-N`` for N parts (``COMPOSITE``: S3 has no whole-object SHA-256 of
    a multipart object). ``refuse_delete``: every delete is refused (403), as for a role
    without ``s3:DeleteObject``."""

    def __init__(self, backend: str, *, signature: bool, checksums: Checksums) -> None:
        self.backend = backend
        self.signature = signature
        self.checksums = checksums
        self.alter = False
        self.alter_puts: int | None = None
        self.refuse_delete = False
        self.runner: web.AppRunner | None = None
        self.url = ""
        # path -> the checksum a HEAD is answered, as the store computed it from what it holds
        self.held: dict[str, str] = {}
        # (upload id, part number) -> the part's SHA-256 as received
        self.parts: dict[tuple[str, int], bytes] = {}
        self.multipart_uploads = 0  # completed

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _refusal(self, request: web.Request, body: bytes) -> web.Response | None:
        claimed = request.headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        if self.signature and claimed not in ("UNSIGNED-PAYLOAD", hashlib.sha256(body).hexdigest()):
            return _error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        if self.checksums != "verify" or request.method != "PUT":
            return None
        if "aws-chunked" in request.headers.get("content-encoding", ""):
            # a trailing checksum (https only, in botocore): not what this front checks
            return _error("NotImplemented", "aws-chunked bodies are not checked here")
        sent = request.headers.get("x-amz-checksum-sha256")
        if sent is None:
            return None  # nothing to check: S3 computes and keeps its own
        named = request.headers.get("x-amz-sdk-checksum-algorithm", "SHA256")
        try:
            valid = len(base64.b64decode(sent, validate=True)) == 32
        except binascii.Error:
            valid = False
        if not valid:
            return _error("InvalidRequest", "Value for x-amz-checksum-sha256 header is invalid.")
        if named.upper() != "SHA256" or sent != _sha256_b64(body):
            return _error(
                "BadDigest",
                "The Content-MD5 or checksum value that you specified did not match what the "
                "server received.",
            )
        return None

    def _altering(self) -> bool:
        if not self.alter:
            return False
        if self.alter_puts is None:
            return True
        self.alter_puts -= 1
        return self.alter_puts >= 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "PUT" and body and self._altering():
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]
        if self.refuse_delete and (
            request.method == "DELETE" or (request.method == "POST" and "delete" in request.query)
        ):
            body = (
                '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                "<Message>Access Denied</Message></Error>"
            )
            return web.Response(status=403, text=body, content_type="application/xml")
        refused = self._refusal(request, body)
        if refused is not None:
            return refused
        # moto neither sees the checksum headers nor answers them: the front is the store's
        # checksum logic
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP
            and not k.lower().startswith("x-amz-checksum")
            and k.lower() != "x-amz-sdk-checksum-algorithm"
        }
        async with self.session.request(
            request.method,
            self.backend + request.path_qs,
            headers=headers,
            data=io.BytesIO(body) if body else None,
        ) as resp:
            answer = await resp.read()
            back = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in _HOP
                and k.lower() != "content-encoding"
                and not k.lower().startswith("x-amz-checksum")
            }
            if resp.status // 100 == 2:
                self._keep(request, body, back)
            if request.method == "HEAD":  # the object's size, as the store says it
                back["Content-Length"] = resp.headers.get("Content-Length", "0")
                return web.Response(status=resp.status, headers=back)
            return web.Response(status=resp.status, body=answer, headers=back)

    def _keep(self, request: web.Request, body: bytes, back: dict[str, str]) -> None:
        """The store's own checksums of what it holds (computed, never the one claimed), kept
        and answered where S3 answers them."""
        path, upload = request.path, request.query.get("uploadId")
        if request.method == "DELETE" and upload is None:
            self.held.pop(path, None)
        if request.method == "POST" and upload is not None:  # CompleteMultipartUpload
            self.multipart_uploads += 1
        if self.checksums == "ignore":
            return
        if request.method == "PUT" and "x-amz-checksum-sha256" in request.headers:
            digest = hashlib.sha256(body).digest()
            if upload is not None:  # UploadPart
                self.parts[upload, int(request.query["partNumber"])] = digest
            else:
                self.held[path] = _b64(digest)
            # the checksum of what was received (S3: the one sent, since it matched)
            back["x-amz-checksum-sha256"] = _b64(digest)
            back["x-amz-checksum-type"] = "FULL_OBJECT"
        elif request.method == "POST" and upload is not None:  # CompleteMultipartUpload
            numbers = sorted(n for u, n in self.parts if u == upload)
            if numbers:
                parts = b"".join(self.parts.pop((upload, n)) for n in numbers)
                self.held[path] = f"{_b64(hashlib.sha256(parts).digest())}-{len(numbers)}"
        elif (
            request.method == "HEAD"
            and request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
            and path in self.held
        ):
            back["x-amz-checksum-sha256"] = self.held[path]
            back["x-amz-checksum-type"] = "COMPOSITE" if "-" in self.held[path] else "FULL_OBJECT"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _sha256_b64(body: bytes) -> str:
    return _b64(hashlib.sha256(body).digest())


# the store the front stands for, unless a test asks for another (indirect parametrize)
_SIGNATURE_ONLY: dict[str, Any] = {"signature": True, "checksums": "ignore"}
# S3's own check of the sealed bytes' SHA-256, alone: what protects the body where the payload
# is not signed (botocore leaves it unsigned over https when a checksum goes with it)
_CHECKSUM_ONLY: dict[str, Any] = {"signature": False, "checksums": "verify"}
# a store that answers the SHA-256 of what it received, and keeps it, whatever was claimed
_REPORTS_ONLY: dict[str, Any] = {"signature": False, "checksums": "report"}
_IDS = ["s3-checks", "store-reports"]


@pytest.fixture
async def front(moto_url: str, request: pytest.FixtureRequest) -> AsyncIterator[_StoreFront]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        made = _StoreFront(moto_url, **getattr(request, "param", _SIGNATURE_ONLY))
        await made.start(session)
        yield made
        await made.close()


async def _put(front: _StoreFront, bucket: str, key: str, data: bytes) -> StoredObject | None:
    """``data`` as intake uploads a sealed file below the multipart threshold (one PutObject
    carrying its SHA-256), through the front."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recording.sealed"
        path.write_bytes(data)
        store = S3Store(bucket, endpoint_url=front.url, region="us-east-1")
        try:
            return await store.put_file(
                key,
                path,
                sha256="of-the-plaintext",
                content_type="audio/wav",
                metadata={},
                content_sha256=hashlib.sha256(data).hexdigest(),
            )
        finally:
            await store.close()


def _kept(moto_url: str, bucket: str, key: str) -> bytes:
    direct = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    body: bytes = direct.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


async def test_a_recording_altered_on_its_way_to_an_http_store_is_refused_not_kept(
    front: _StoreFront, moto_url: str, bucket: str
) -> None:
    """Below the multipart threshold (one PutObject carrying the sealed bytes' SHA-256): the
    bytes the store keeps are the bytes sent, or put_file fails (and intake retries, keeping
    the platform's copy). Kept altered, the PUT's success would let intake commit ``stored``
    (the HEAD it then asks checks metadata and size, not content) and delete the only intact
    copy at the platform."""
    data = os.urandom(64 * 1024)
    # the front is an ordinary store as long as nothing alters the bytes
    await _put(front, bucket, "recordings/intact.wav", data)
    assert _kept(moto_url, bucket, "recordings/intact.wav") == data

    front.alter = True
    try:
        await _put(front, bucket, "recordings/altered.wav", data)
    except StorageError:
        return  # refused: nothing is taken as stored
    kept = _kept(moto_url, bucket, "recordings/altered.wav")
    assert kept == data, "the PUT succeeded and the store keeps bytes that were not sent"


@pytest.fixture
async def service_via_front(
    intake_settings: Settings, front: _StoreFront
) -> AsyncIterator[Service]:
    svc = Service(replace(intake_settings, s3_endpoint_url=front.url, job_max_attempts=2))
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
def twilio(http: aiohttp.ClientSession, service_via_front: Service) -> FakeTwilio:
    """Twilio's requests reach the service that stores through the front, so that the job is
    made with its settings (two attempts, not twelve)."""
    return FakeTwilio(
        http,
        PUBLIC_URL,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        send_to=service_via_front.base_url,
    )


async def test_a_consented_recording_altered_on_its_way_to_the_store_keeps_twilio_s_copy(
    service_via_front: Service,
    front: _StoreFront,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    moto_url: str,
    bucket: str,
) -> None:
    """No consented recording lost: when the store did not get the sealed bytes intact, the
    job does not commit ``stored`` nor delete Twilio's copy, the only intact one."""
    front.alter = True
    rec, rec_sid, body = await _record_a_consented_call(twilio, twilio_media, db)
    if rec_sid in twilio_media.recordings:
        return  # Twilio's copy kept: nothing lost
    # Twilio's copy is gone: ours must be the recording
    assert rec["state"] == "stored"
    found = await objects(moto_url, bucket)
    assert [o["key"] for o in found] == [f"recordings/{rec['id']}.wav"]
    stored = await get_object(moto_url, bucket, found[0]["key"])
    try:
        opened = await open_sealed(db, rec["id"], stored)
    except Exception as exc:
        raise AssertionError(
            f"committed as stored and Twilio's copy deleted, but the object does not open: {exc!r}"
        ) from None
    assert opened == body


async def _record_a_consented_call(
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    *,
    body: bytes | None = None,
) -> tuple[Any, str, bytes]:
    """A consented call's recording (``body``, or three seconds) taken in, its jobs run out:
    its row, sid and body."""
    trace = await twilio.place_call("+84901234678", "+842873001234", Caller.parse("stay"))
    assert trace.recording_started
    rec_sid, body = new_recording_sid(), body or wav_bytes(3)
    twilio_media.add(rec_sid, body)
    status, _ = await send_recording(twilio, trace.call_sid, rec_sid)
    assert status == 204
    await settle(db)
    rec = await db.fetchrow("SELECT * FROM recordings WHERE external_id = $1", rec_sid)
    assert rec is not None
    return rec, rec_sid, body


def _keys(endpoint: str, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    versions = client.list_object_versions(Bucket=bucket)
    return [v["Key"] for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])]


@pytest.mark.parametrize("front", [_CHECKSUM_ONLY, _REPORTS_ONLY], indirect=True, ids=_IDS)
async def test_the_store_s_answer_proves_an_intact_upload(
    front: _StoreFront, moto_url: str, bucket: str
) -> None:
    """The control for the tests below: a store that checks or reports the checksum answers
    the file's own for intact bytes, and put_file takes that answer as the proof (no HEAD)."""
    data = os.urandom(64 * 1024)
    proof = await _put(front, bucket, "recordings/intact.wav", data)
    assert proof is not None, "the store's answer was not taken as the proof"
    assert (proof.size, proof.sha256, proof.encrypted) == (len(data), "of-the-plaintext", True)
    assert _kept(moto_url, bucket, "recordings/intact.wav") == data


@pytest.mark.parametrize(
    ("front", "said"),
    [(_CHECKSUM_ONLY, "S3 BadDigest"), (_REPORTS_ONLY, "other bytes than were sent")],
    indirect=["front"],
    ids=_IDS,
)
async def test_a_body_the_store_did_not_receive_intact_fails_the_put_and_is_not_kept(
    front: _StoreFront, said: str, moto_url: str, bucket: str
) -> None:
    """With no payload signature to check (the front checks none), the sealed bytes' SHA-256
    alone fails the upload of a body altered on its way: S3 refuses it (400 BadDigest) and
    keeps nothing; a store that keeps it and answers its SHA-256 of what it received, not
    ours, has it taken back, since a retry's HEAD (the metadata and the size, the same) would
    take it for the recording."""
    front.alter = True
    with pytest.raises(StorageError, match=said):
        await _put(front, bucket, "recordings/altered.wav", os.urandom(64 * 1024))
    assert _keys(moto_url, bucket) == []


@pytest.mark.parametrize("front", [_CHECKSUM_ONLY, _REPORTS_ONLY], indirect=True, ids=_IDS)
async def test_a_recording_the_store_did_not_receive_intact_is_not_stored_and_twilio_keeps_it(
    service_via_front: Service,
    front: _StoreFront,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    moto_url: str,
    bucket: str,
) -> None:
    """No consented recording lost, whether the store refuses the altered body (S3's
    BadDigest) or keeps it and answers its checksum: intake does not commit ``stored``, nor
    delete Twilio's copy, the only intact one, on any attempt."""
    front.alter = True
    rec, rec_sid, _ = await _record_a_consented_call(twilio, twilio_media, db)
    assert rec["state"] != "stored"
    assert rec_sid in twilio_media.recordings, "Twilio's copy was deleted"
    assert _keys(moto_url, bucket) == []
    # every attempt failed on the upload (the second, too: it found nothing to take as stored)
    errors = await db.fetch("SELECT attempts, last_error FROM jobs WHERE state = 'dead'")
    said = "BadDigest" if front.checksums == "verify" else "other bytes than were sent"
    assert [(e["attempts"], said in e["last_error"]) for e in errors] == [(2, True)], errors


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> int:
    """Multipart from 5 MiB (S3's smallest part) in 5 MiB parts, not from 16 MiB in 8 MiB
    parts, so that a recording of a few MiB takes the multipart path (``upload_file``)."""
    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 * MIB)
    monkeypatch.setattr(s3, "PART_SIZE", 5 * MIB)
    return 5 * MIB


def _long_wav(size: int) -> bytes:
    """A PCM WAV of at least ``size`` bytes (a tone, one second repeated: quick to make)."""
    second = wav_bytes(1.0)[44:]
    frames = second * (size // len(second) + 1)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(frames)
    return out.getvalue()


def _recording_of_size(size: str, request: pytest.FixtureRequest) -> bytes | None:
    """The recording a test sends for ``size``: None (the default one, a single PutObject), or
    for "multipart" 6 MiB, with the multipart threshold and parts made small (5 MiB) for every
    store made after this."""
    if size != "multipart":
        return None
    request.getfixturevalue("small_parts")
    return _long_wav(6 * MIB)


@pytest.mark.parametrize("front", [_REPORTS_ONLY], indirect=True, ids=["store-reports"])
@pytest.mark.parametrize("size", ["one-put", "multipart"])
async def test_a_corrupt_object_the_store_could_not_take_back_is_not_taken_as_stored(
    size: str,
    request: pytest.FixtureRequest,
    service_via_front: Service,
    front: _StoreFront,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
) -> None:
    """A store that answers its checksum of what it received but keeps a mismatch, where the
    take-back fails too (403 to every delete: a role without ``s3:DeleteObject``): the altered
    object stays, with the metadata and the size of the recording. Every attempt's upload is
    altered, so no attempt may commit ``stored`` nor delete Twilio's copy; the second, finding
    the object, must not take it for the recording (its HEAD's metadata and size say yes, the
    store's checksum of what it holds says no)."""
    body = _recording_of_size(size, request)
    if body is not None:
        await service_via_front.reconfigure()  # its stores made again, with the small parts
    front.alter = True
    front.refuse_delete = True
    rec, rec_sid, _ = await _record_a_consented_call(twilio, twilio_media, db, body=body)
    assert (front.multipart_uploads > 0) == (size == "multipart")
    assert rec_sid in twilio_media.recordings, "Twilio's copy was deleted"
    assert rec["state"] != "stored"
    errors = await db.fetch("SELECT attempts FROM jobs WHERE state = 'dead'")
    assert [e["attempts"] for e in errors] == [2]


@pytest.mark.parametrize("front", [_REPORTS_ONLY], indirect=True, ids=["store-reports"])
@pytest.mark.parametrize("size", ["one-put", "multipart"])
async def test_a_corrupt_object_left_by_a_failed_attempt_is_replaced_by_the_next(
    size: str,
    request: pytest.FixtureRequest,
    service_via_front: Service,
    front: _StoreFront,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    moto_url: str,
    bucket: str,
) -> None:
    """As above, but only the first attempt's upload is altered: the second finds the altered
    object, uploads the recording again, and stores it intact; Twilio's copy is deleted only
    once the object opens to the recording."""
    body = _recording_of_size(size, request)
    if body is not None:
        await service_via_front.reconfigure()  # its stores made again, with the small parts
    front.alter, front.alter_puts = True, 1
    front.refuse_delete = True
    rec, rec_sid, body = await _record_a_consented_call(twilio, twilio_media, db, body=body)
    assert (front.multipart_uploads > 0) == (size == "multipart")
    if rec_sid in twilio_media.recordings:
        raise AssertionError(f"not stored on the second attempt: {rec['state']}")
    assert rec["state"] == "stored"
    stored = await get_object(moto_url, bucket, rec["object_key"])
    try:
        opened = await open_sealed(db, rec["id"], stored)
    except Exception as exc:
        raise AssertionError(
            f"committed as stored and Twilio's copy deleted, but the object does not open: {exc!r}"
        ) from None
    assert opened == body


def _versions(endpoint: str, bucket: str, key: str) -> list[bytes]:
    """What every version of ``key`` holds, newest first."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    listed = client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [
        client.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read()
        for v in listed
        if v["Key"] == key
    ]


@pytest.mark.parametrize("front", [_REPORTS_ONLY], indirect=True, ids=["store-reports"])
@pytest.mark.parametrize("case", ["one-put", "one-put-not-taken-back", "multipart"])
async def test_a_re_sealed_object_the_store_did_not_receive_intact_keeps_the_plaintext(
    case: str,
    request: pytest.FixtureRequest,
    front: _StoreFront,
    db: asyncpg.Connection,
    moto_url: str,
    tmp_path: Path,
) -> None:
    """``recordings encrypt --all`` on a versioned bucket, the re-sealed upload altered on its
    way to a store that answers its checksum of what it received but keeps a mismatch: the
    altered object has the metadata and the size of the sealed recording, and deleting the
    older (plaintext) versions after it would leave no intact copy. The recording is reported
    failed and its plaintext kept, whether put_file takes the altered object back (one PUT:
    the next run seals it intact), the store refuses that (403) and the next run finds the
    altered object as the current version, or the upload was multipart (checked by the HEAD,
    nothing taken back)."""
    body = _recording_of_size(case, request)  # (before the store is made)
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)
    store = S3Store(bucket, endpoint_url=front.url, region="us-east-1")
    vault = PhoneVault(SECRET_KEY)
    rec = await seed_recording(db, store, vault, tmp_path, body=body, expired=False)
    seeded = await db.fetchval(
        "SELECT object_version FROM recordings WHERE id = $1", rec["recording_id"]
    )
    assert seeded is not None
    registry = StoreRegistry.wrapping(store)
    front.alter, front.alter_puts = True, 1  # the re-sealed upload of the first run
    front.refuse_delete = case == "one-put-not-taken-back"
    try:
        first = await encrypt_all(db, vault, registry, tmp_path)
        front.refuse_delete = False
        second = await encrypt_all(db, vault, registry, tmp_path)
    finally:
        await store.close()
    assert front.multipart_uploads == (2 if case == "multipart" else 0)  # seeded, re-sealed
    rid = str(rec["recording_id"])
    assert (first.sealed, list(first.failed)) == (0, [rid])
    kept = _versions(moto_url, bucket, rec["key"])
    version = await db.fetchval(
        "SELECT object_version FROM recordings WHERE id = $1", rec["recording_id"]
    )
    if case == "one-put":
        # taken back: the plaintext was the current version again, and sealed intact since
        assert (second.sealed, second.failed) == (1, {})
        (only,) = kept
        assert await open_sealed(db, rec["recording_id"], only) == rec["body"]
        return
    # the altered object stays the current version: every run refuses it
    assert (second.sealed, second.already, list(second.failed)) == (0, 0, [rid])
    assert "older versions kept" in second.failed[rid]
    assert len(kept) == 2 and kept[1] == rec["body"], "the plaintext version was deleted"
    assert version == seeded, "the row names another version than the plaintext's"


@pytest.mark.parametrize("front", [_REPORTS_ONLY], indirect=True, ids=["store-reports"])
async def test_an_object_sealed_before_its_checksum_was_kept_stays_already_sealed(
    front: _StoreFront, db: asyncpg.Connection, moto_url: str, tmp_path: Path
) -> None:
    """An object sealed (by intake) before the SHA-256 of the bytes sent went into its
    metadata: the store answers its checksum, with nothing to match it with. ``encrypt --all``
    counts it as sealed, as before, rather than failing every recording stored until then."""
    bucket = await asyncio.to_thread(make_bucket, moto_url, True)
    store = S3Store(bucket, endpoint_url=front.url, region="us-east-1")
    vault = PhoneVault(SECRET_KEY)
    try:
        rec = await seed_recording(db, store, vault, tmp_path, sealed=True, expired=False)
        head = await store.head(rec["key"])
        assert head is not None and head.checksum_sha256 is not None  # the store answers one
        report = await encrypt_all(db, vault, StoreRegistry.wrapping(store), tmp_path)
    finally:
        await store.close()
    assert (report.already, report.sealed, report.failed) == (1, 0, {})


@pytest.mark.parametrize("front", [_REPORTS_ONLY], indirect=True, ids=["store-reports"])
@pytest.mark.parametrize("size", ["one-put", "multipart"])
async def test_an_export_file_the_store_did_not_receive_intact_is_not_taken_as_exported(
    size: str,
    request: pytest.FixtureRequest,
    front: _StoreFront,
    db: asyncpg.Connection,
    settings: Settings,
    moto_url: str,
    bucket: str,
    tmp_path: Path,
) -> None:
    """``tenant export --out s3://``, whose completion lets an offboarding erase the tenant:
    the first upload (a recording) altered on its way to a store that answers its checksum of
    what it received but keeps a mismatch, and the take-back refused (403; a multipart upload
    is checked by the HEAD after it, and nothing is taken back). That run fails; the next does
    not take the altered object, with its metadata and size right, as already exported, but
    uploads the recording again."""
    body = _recording_of_size(size, request)  # (before the target's store is made)
    source = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    handover = await asyncio.to_thread(make_bucket, moto_url)
    via_front = replace(settings, s3_endpoint_url=front.url, s3_region="us-east-1")
    try:
        vault = PhoneVault(SECRET_KEY)
        rec = await seed_recording(db, source, vault, tmp_path, body=body, expired=False)
        stores = StoreRegistry.wrapping(source)
        front.alter, front.alter_puts = True, 1
        front.refuse_delete = True
        refused = "other bytes than were sent" if size == "one-put" else "did not arrive whole"
        with pytest.raises((StorageError, ExportError), match=refused):
            await export(
                db, stores, "default", S3Target(f"s3://{handover}/out", tmp_path, via_front)
            )
        front.refuse_delete = False
        again = await export(
            db, stores, "default", S3Target(f"s3://{handover}/out", tmp_path, via_front)
        )
    finally:
        await source.close()
    assert front.multipart_uploads == (2 if size == "multipart" else 0)  # both runs'
    assert (again.fetched, again.skipped) == (1, 0)
    key = f"out/recordings/{rec['recording_id']}.wav"
    assert _kept(moto_url, handover, key) == rec["body"], "the altered file was kept as exported"


@pytest.mark.parametrize("front", [_REPORTS_ONLY], indirect=True, ids=["store-reports"])
@pytest.mark.parametrize("size", ["one-put", "multipart"])
async def test_an_access_bundle_the_store_did_not_receive_intact_does_not_complete_the_request(
    size: str,
    request: pytest.FixtureRequest,
    front: _StoreFront,
    db: asyncpg.Connection,
    moto_url: str,
    bucket: str,
    tmp_path: Path,
) -> None:
    """An access request is completed on its bundle (and the ledger says the person was given
    access): the bundle's upload altered on its way to a store that answers its checksum of
    what it received but keeps a mismatch, the take-back refused (403; a multipart upload is
    checked by the HEAD after it), the run fails and the request stays open; the next run
    completes it with the bundle intact."""
    if size == "multipart":
        request.getfixturevalue("small_parts")  # before the store is made
    store = S3Store(bucket, endpoint_url=front.url, region="us-east-1")
    vault = PhoneVault(SECRET_KEY)
    caller = "+84901234678"
    # random bytes: the zip of a tone would be too small for parts
    body = b"RIFF" + os.urandom(6 * MIB) if size == "multipart" else None
    try:
        await seed_recording(db, store, vault, tmp_path, caller=caller, body=body, expired=False)
        rid = await dsar.create(db, vault, kind="access", phone=caller, actor="test")
        front.alter, front.alter_puts = True, 1
        front.refuse_delete = True
        with pytest.raises(StorageError):
            await dsar.run(db, vault, store, rid, tmp_path, retry_s=1)
        assert (await dsar.get(db, rid))["status"] != "completed"
        front.refuse_delete = False
        assert await dsar.run(db, vault, store, rid, tmp_path, retry_s=1) == "completed"
    finally:
        await store.close()
    assert front.multipart_uploads == (3 if size == "multipart" else 0)  # seeded, both runs'
    row = await dsar.get(db, rid)
    got = _kept(moto_url, bucket, row["bundle_key"])
    head = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").head_object(
        Bucket=bucket, Key=row["bundle_key"]
    )
    assert hashlib.sha256(got).hexdigest() == head["Metadata"]["sha256"], "the bundle is altered"
