"""A recording's bytes altered on their way to an S3-compatible store over plain http (a tenant's
own bucket at an ``http://`` endpoint) must make the PUT fail, never be kept as if stored.

The store here checks what SigV4 makes every S3-compatible store check, the signed payload
hash (``x-amz-content-sha256``), and ignores the newer ``x-amz-checksum-*`` headers, as stores
that predate them do; one byte of a PUT body is flipped on the way in."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import asyncpg
import boto3
import pytest
from aiohttp import web

from service.config import Settings
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import StorageError
from service.storage.s3 import S3Store
from tests.conftest import Service
from tests.intake_helpers import get_object, objects, open_sealed, send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

_HOP = {"host", "content-length", "transfer-encoding", "connection", "expect"}
_MISMATCH = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>XAmzContentSHA256Mismatch</Code>'
    b"<Message>The provided 'x-amz-content-sha256' header does not match what was computed."
    b"</Message></Error>"
)


class _SignatureOnlyStore:
    """moto behind a front that verifies the signed payload hash and knows no checksum
    headers; ``alter`` flips a byte in the middle of each PUT body before it is checked and kept."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.alter = False
        self.runner: web.AppRunner | None = None
        self.url = ""

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

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "PUT" and body and self.alter:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]
        claimed = request.headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        if claimed != "UNSIGNED-PAYLOAD" and claimed != hashlib.sha256(body).hexdigest():
            return web.Response(status=400, body=_MISMATCH, content_type="application/xml")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP
            and not k.lower().startswith("x-amz-checksum")
            and k.lower() != "x-amz-sdk-checksum-algorithm"
        }
        async with self.session.request(
            request.method, self.backend + request.path_qs, headers=headers, data=body
        ) as resp:
            answer = await resp.read()
            back = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in _HOP and k.lower() != "content-encoding"
            }
            if request.method == "HEAD":  # the object's size, as the store says it
                back["Content-Length"] = resp.headers.get("Content-Length", "0")
                return web.Response(status=resp.status, headers=back)
            return web.Response(status=resp.status, body=answer, headers=back)


@pytest.fixture
async def front(moto_url: str) -> AsyncIterator[_SignatureOnlyStore]:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        made = _SignatureOnlyStore(moto_url)
        await made.start(session)
        yield made
        await made.close()


async def test_a_recording_altered_on_its_way_to_an_http_store_is_refused_not_kept(
    front: _SignatureOnlyStore, moto_url: str, bucket: str, tmp_path: Path
) -> None:
    """Below the multipart threshold (one PutObject carrying the sealed bytes' SHA-256): the
    bytes the store keeps are the bytes sent, or put_file fails (and intake retries, keeping
    the platform's copy). Kept altered, the PUT's success would let intake commit ``stored``
    (the HEAD it then asks checks metadata and size, not content) and delete the only intact
    copy at the platform."""
    data = os.urandom(64 * 1024)
    path = tmp_path / "recording.sealed"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    store = S3Store(bucket, endpoint_url=front.url, region="us-east-1")
    direct = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    try:
        # the front is an ordinary store as long as nothing alters the bytes
        await store.put_file(
            "recordings/intact.wav",
            path,
            sha256="of-the-plaintext",
            content_type="audio/wav",
            metadata={},
            content_sha256=digest,
        )
        kept = direct.get_object(Bucket=bucket, Key="recordings/intact.wav")["Body"].read()
        assert kept == data

        front.alter = True
        try:
            await store.put_file(
                "recordings/altered.wav",
                path,
                sha256="of-the-plaintext",
                content_type="audio/wav",
                metadata={},
                content_sha256=digest,
            )
        except StorageError:
            return  # refused: nothing is taken as stored
        kept = direct.get_object(Bucket=bucket, Key="recordings/altered.wav")["Body"].read()
        assert kept == data, "the PUT succeeded and the store keeps bytes that were not sent"
    finally:
        await store.close()


@pytest.fixture
async def service_via_front(
    intake_settings: Settings, front: _SignatureOnlyStore
) -> AsyncIterator[Service]:
    svc = Service(replace(intake_settings, s3_endpoint_url=front.url, job_max_attempts=2))
    await svc.start()
    yield svc
    await svc.stop()


async def test_a_consented_recording_altered_on_its_way_to_the_store_keeps_twilio_s_copy(
    service_via_front: Service,
    front: _SignatureOnlyStore,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    moto_url: str,
    bucket: str,
) -> None:
    """No consented recording lost: when the store did not get the sealed bytes intact, the
    job does not commit ``stored`` nor delete Twilio's copy, the only intact one."""
    front.alter = True
    trace = await twilio.place_call("+84901234678", "+842873001234", Caller.parse("stay"))
    assert trace.recording_started
    rec_sid, body = new_recording_sid(), wav_bytes(3)
    twilio_media.add(rec_sid, body)
    status, _ = await send_recording(twilio, trace.call_sid, rec_sid)
    assert status == 204
    await settle(db)
    rec = await db.fetchrow("SELECT * FROM recordings WHERE external_id = $1", rec_sid)
    assert rec is not None
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
