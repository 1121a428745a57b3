"""Both object stores pass the same contract: what is put is what HEAD describes."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3.s3.transfer
import botocore.parsers
import pytest
from s3transfer.manager import TransferManager

from service.storage import (
    CONTENT_PARTS_SHA256,
    CONTENT_SHA256,
    ObjectStore,
    StorageError,
    StoredObject,
)
from service.storage.local import LocalStore
from service.storage.s3 import S3Store


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        made: ObjectStore = LocalStore(tmp_path / "objects")
    else:
        moto_url = request.getfixturevalue("moto_url")
        bucket = request.getfixturevalue("bucket")
        # small parts so the contract covers multipart uploads too
        made = S3Store(
            bucket,
            endpoint_url=moto_url,
            region="us-east-1",
            multipart_threshold=5 * 1024 * 1024,
            part_size=5 * 1024 * 1024,
        )
    yield made
    await made.close()


def _file(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / f"data-{size}"
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [1, 64 * 1024, 12 * 1024 * 1024])
async def test_put_then_head(store: ObjectStore, tmp_path: Path, size: int) -> None:
    path, digest = _file(tmp_path, size)
    await store.put_file(
        "recordings/a.wav",
        path,
        sha256=digest,
        content_type="audio/wav",
        metadata={"recording-id": "a"},
    )
    head = await store.head("recordings/a.wav")
    assert head is not None
    assert (head.size, head.sha256, head.content_type) == (size, digest, "audio/wav")
    assert head.metadata["recording-id"] == "a"
    if isinstance(store, S3Store):
        assert head.encrypted


@pytest.mark.parametrize("size", [64 * 1024, 12 * 1024 * 1024])
async def test_a_put_with_the_content_checksum_proves_what_head_says(
    store: ObjectStore, tmp_path: Path, size: int
) -> None:
    """Below the multipart threshold S3's answer (its checksum of the bytes it received, and
    the encryption) stands for the HEAD and says the same; above it, and for the local
    store, nothing is claimed and the caller asks HEAD."""
    path, digest = _file(tmp_path, size)
    proof = await store.put_file(
        "recordings/p.wav",
        path,
        sha256="of-the-plaintext",
        content_type="audio/wav",
        metadata={"recording-id": "p"},
        content_sha256=digest,
    )
    head = await store.head("recordings/p.wav")
    assert head is not None and (head.size, head.sha256) == (size, "of-the-plaintext")
    if isinstance(store, S3Store) and size < store.multipart_threshold:
        assert proof == head
    else:
        assert proof is None
    # the store's own SHA-256 of what it holds (moto's: the one sent, whole or composite) is
    # the one uploaded, whether one PutObject or parts
    if isinstance(store, S3Store):
        assert head.checksum_sha256 is not None
    assert not head.content_differs()


def _sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def test_the_store_s_checksum_is_compared_with_the_one_uploaded() -> None:
    """What the store answers, as S3 (and moto) write it, against what the metadata says was
    uploaded; no answer leaves the metadata and the size to say it, as before."""
    parts = [b"a" * 10, b"b" * 3]
    whole = _sha(b"".join(parts))
    composite = _sha(b"".join(hashlib.sha256(p).digest() for p in parts))
    one = {CONTENT_SHA256: whole}
    multi = {CONTENT_SHA256: whole, CONTENT_PARTS_SHA256: f"{composite}-2"}

    def differs(answered: str | None, metadata: dict[str, str]) -> bool:
        return StoredObject(
            "k", 13, "x", metadata=metadata, checksum_sha256=answered
        ).content_differs()

    assert not differs(None, {}) and not differs(None, one)
    assert not differs(whole, one) and not differs(whole, multi)
    assert not differs(f"{composite}-2", multi) and not differs(composite, multi)  # moto: no -N
    assert differs(_sha(b"other"), one) and differs(f"{_sha(b'other')}-2", multi)
    assert differs(composite, one)  # a composite where one PutObject was sent
    assert differs(whole, {}) and differs("", one)  # nothing to match it with


async def test_put_again_replaces(store: ObjectStore, tmp_path: Path) -> None:
    first, _ = _file(tmp_path, 10)
    second, digest = _file(tmp_path, 20)
    for path, d in ((first, "x"), (second, digest)):
        await store.put_file("k", path, sha256=d, content_type="audio/wav", metadata={})
    head = await store.head("k")
    assert head is not None and (head.size, head.sha256) == (20, digest)


async def test_missing_object_is_none(store: ObjectStore) -> None:
    assert await store.head("recordings/none.wav") is None


async def test_check_passes_when_reachable(store: ObjectStore) -> None:
    await store.check()


async def test_unreachable_s3_raises_storage_error(tmp_path: Path) -> None:
    from tests.conftest import free_port

    store = S3Store("nope", endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
    try:
        with pytest.raises(StorageError):
            await store.check()
        with pytest.raises(StorageError):
            await store.head("x")
    finally:
        await store.close()


async def test_missing_bucket_raises_storage_error(moto_url: str) -> None:
    store = S3Store("no-such-bucket-here", endpoint_url=moto_url, region="us-east-1")
    try:
        with pytest.raises(StorageError):
            await store.check()
    finally:
        await store.close()


async def test_local_store_refuses_keys_that_escape_its_folder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    path, digest = _file(tmp_path, 5)
    for key in ("../x", "/etc/passwd", "a/../../b"):
        with pytest.raises(StorageError):
            await store.put_file(key, path, sha256=digest, content_type="x", metadata={})
    await store.close()


@pytest.mark.parametrize(
    ("operation", "body", "status"),
    [
        # a whole DeleteResult: no error inside, not cut short (not parsed a second time)
        (
            "DeleteObjects",
            b'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="http://s3.amazonaws'
            b'.com/doc/2006-03-01/"><Deleted><Key>a</Key></Deleted></DeleteResult>\n',
            200,
        ),
        # cut short: retried as botocore retries it
        (
            "DeleteObjects",
            b'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult><Deleted><Key>a</Key>',
            500,
        ),
        # an error answered with 200
        (
            "DeleteObjects",
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code></Error>',
            500,
        ),
        ("DeleteObjects", b"<Error><Code>SlowDown</Code></Error><!-- </DeleteResult>", 500),
        ("ListObjectsV2", b"<Error><Code>InternalError</Code></Error>", 500),
        ("ListObjectsV2", b"<ListBucketResult></ListBucketResult>", 200),
    ],
)
def test_an_error_inside_a_200_is_still_caught(operation: str, body: bytes, status: int) -> None:
    """The S3 client's cheaper check of a DeleteObjects answer turns every error or cut-short
    body into a 500 (retried, then refused), as botocore's own check does."""
    store = S3Store("bucket", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    response = {"status_code": 200, "body": body, "headers": {}}
    store.client.meta.events.emit(
        f"before-parse.s3.{operation}",
        operation_model=store.client.meta.service_model.operation_model(operation),
        response_dict=response,
        customized_response_dict={},
    )
    assert response["status_code"] == status


async def test_an_answer_the_client_cannot_parse_is_a_storage_error() -> None:
    """A 200 that opens and closes as a whole DeleteResult but is mangled inside skips
    botocore's first check and fails its parse: the purge sees it as a store's refusal
    (StorageError, the keys left for the next pass), not as an error of its own."""
    store = S3Store("bucket", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    body = b"<DeleteResult><Deleted><Key>a</Key></Oops></DeleteResult>"
    model = store.client.meta.service_model.operation_model("DeleteObjects")
    response = {"status_code": 200, "body": body, "headers": {}}
    store.client.meta.events.emit(
        "before-parse.s3.DeleteObjects",
        operation_model=model,
        response_dict=response,
        customized_response_dict={},
    )
    assert response["status_code"] == 200  # (not checked a second time: parsed once)

    def parse() -> Any:
        parser = botocore.parsers.create_parser("rest-xml")
        return parser.parse(response, model.output_shape)

    with pytest.raises(StorageError, match="could not be read"):
        await store._call(parse)
    await store.close()


async def test_s3_transfers_use_the_classic_client_with_the_stores_config(
    moto_url: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """upload_file and download_file run on s3transfer's own manager with the store's one
    TransferConfig, which names the classic client: boto3's default ("auto") would hand them to
    the CRT client wherever awscrt is installed (not here: so the config is what is checked)."""
    made: list[tuple[Any, Any]] = []
    create = boto3.s3.transfer.create_transfer_manager

    def spy(client: Any, config: Any, osutil: Any = None) -> Any:
        manager = create(client, config, osutil)
        made.append((config, manager))
        return manager

    monkeypatch.setattr(boto3.s3.transfer, "create_transfer_manager", spy)
    store = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    try:
        assert store.transfer.preferred_transfer_client == "classic"
        path, digest = _file(tmp_path, 64 * 1024)
        # without the content checksum, put_file goes through upload_file whatever the size
        await store.put_file(
            "recordings/t.wav", path, sha256=digest, content_type="audio/wav", metadata={}
        )
        await store.download_to("recordings/t.wav", tmp_path / "back.wav")
    finally:
        await store.close()
    assert (tmp_path / "back.wav").read_bytes() == path.read_bytes()
    assert len(made) == 2  # one transfer each way
    for config, manager in made:
        assert config is store.transfer
        assert type(manager) is TransferManager
