"""S3-compatible object storage through boto3, which blocks: every call runs in a bounded
thread pool, never on the event loop.

Uploads always ask for server-side encryption (``AES256``, or ``aws:kms`` with a key id),
use multipart above 16 MiB with bounded part concurrency (so memory stays flat whatever the
recording's size), and send a SHA-256 checksum. Our own SHA-256 of the whole file goes into the
object's metadata, which is what :meth:`head` returns for verification: a multipart object's S3
checksum is a checksum of part checksums, not of the file.

Given the SHA-256 of the bytes to upload (intake's sealed file), the metadata carries it too
(:data:`~service.storage.CONTENT_SHA256`, base64) and, for a multipart upload, the checksum S3
answers for one (:data:`~service.storage.CONTENT_PARTS_SHA256`: S3 has full-object checksums of
a multipart upload for the CRCs only; SHA-256 is composite, the SHA-256 of the parts' SHA-256s,
computed here with the part size s3transfer will use). :meth:`head` asks with checksum mode on,
so that a store that answers its own SHA-256 of what it holds has it compared with them
(:meth:`~service.storage.StoredObject.content_differs`): metadata and size come from the request
and match whatever bytes arrived; only the store's checksum speaks for the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import functools
import hashlib
import os
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore import handlers as boto_handlers
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from s3transfer.utils import ChunksizeAdjuster

from service.config import Settings
from service.storage import CONTENT_PARTS_SHA256, CONTENT_SHA256, StorageError, StoredObject

T = TypeVar("T")
MIB = 1024 * 1024
# read when a store is made (a test makes a few MiB take the multipart path)
MULTIPART_THRESHOLD = 16 * MIB
PART_SIZE = 8 * MIB


class _Multipart(enum.Enum):
    MULTIPART = "too large for one PutObject"


_MULTIPART = _Multipart.MULTIPART


# A whole DeleteResult document: its root opens after at most an XML declaration and closes
# at the end of the body.
_DELETE_RESULT_OPENS = re.compile(rb"\s*(?:<\?xml[^>]*\?>)?\s*<DeleteResult[\s>]")
_DELETE_RESULT_CLOSES = b"</DeleteResult>"


# botocore's own check (a private name: where a botocore no longer has it, its check is left
# as it is, and a DeleteObjects answer is parsed twice again)
_BOTOCORE_200_CHECK: Callable[..., None] | None = getattr(boto_handlers, "_handle_200_error", None)


def _handle_200_error(operation_model: Any, response_dict: Any, **kwargs: Any) -> None:
    """botocore's check of an S3 answer of 200 for an error inside (or a body cut short), which
    it makes by parsing the whole body into a tree before the real parse does it again: for a
    ``DeleteObjects`` of 1000 keys (an S3 that ignores ``Quiet`` lists every one deleted) that
    was a fifth of a purge's GIL time in py-spy, and its thousands of elements set off full
    garbage collections. A body that opens with ``<DeleteResult`` and ends with its closing
    tag is neither an ``<Error>`` nor cut short, so that check is not needed for it; every
    other answer is checked by botocore's own handler as before."""
    if (
        operation_model.name == "DeleteObjects"
        and response_dict
        and response_dict.get("status_code") == 200
    ):
        body = response_dict.get("body")
        if (
            isinstance(body, bytes)
            and body.rstrip().endswith(_DELETE_RESULT_CLOSES)
            and _DELETE_RESULT_OPENS.match(body) is not None
        ):
            return
    assert _BOTOCORE_200_CHECK is not None  # (registered only where it is)
    _BOTOCORE_200_CHECK(operation_model, response_dict, **kwargs)


class S3Store:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str = "AES256",
        kms_key_id: str | None = None,
        threads: int = 8,
        part_size: int | None = None,
        multipart_threshold: int | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.sse = sse
        self.kms_key_id = kms_key_id
        config = Config(
            region_name=region,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=threads * 4,
        )
        # Credentials come from the standard AWS_* variables, profile or instance role, unless
        # given (a tenant's own bucket, read from the references in tenant_storage).
        session = boto3.session.Session(
            aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key
        )
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)
        # this client's own copy of the handlers: no other client is changed
        if _BOTOCORE_200_CHECK is not None:
            events = self.client.meta.events
            events.unregister("before-parse.s3.*", _BOTOCORE_200_CHECK)
            events.register_first("before-parse.s3.*", _handle_200_error)
        self.multipart_threshold = multipart_threshold or MULTIPART_THRESHOLD
        self.part_size = part_size or PART_SIZE
        # The one TransferConfig of the store's upload_file and download_file, with the classic
        # (s3transfer) client named. Left at "auto", boto3 hands transfers to the CRT client
        # wherever awscrt is installed and the machine is one it is tuned for: a native client
        # with its own threads (outside this store's bounded pool), its own checksum handling,
        # and parts that follow this config only with a recent enough awscrt, where
        # _parts_sha256 computes the composite SHA-256 of s3transfer's parts.
        self.transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.part_size,
            max_concurrency=4,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3")
        self._is_versioned: bool | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        assert settings.s3_bucket
        return cls(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            sse=settings.s3_sse,
            kms_key_id=settings.s3_kms_key_id,
            threads=settings.s3_threads,
        )

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StorageError(f"S3 {error.get('Code', '?')}: {error.get('Message', exc)}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc
        except ResponseParserError as exc:  # (not a BotoCoreError): a body cut or mangled
            raise StorageError(f"S3 answered what could not be read: {exc}") from exc

    def _encryption(self) -> dict[str, str]:
        args = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        content_type: str,
        metadata: dict[str, str],
        content_sha256: str | None = None,
    ) -> StoredObject | None:
        # (a caller's copy of an older object's metadata must not speak for these bytes)
        kept = {
            k: v for k, v in metadata.items() if k not in (CONTENT_SHA256, CONTENT_PARTS_SHA256)
        }
        extra: dict[str, Any] = {
            **self._encryption(),
            "ContentType": content_type,
            "Metadata": {**kept, "sha256": sha256},
        }
        if content_sha256 is not None:
            extra["Metadata"][CONTENT_SHA256] = _b64(bytes.fromhex(content_sha256))
            # Below the multipart threshold (a recording of up to about 16 minutes): one
            # PutObject, without s3transfer's futures and threads, carrying the checksum the
            # sealer computed as it wrote, so the file is not read once more to compute it.
            proof = await self._call(self._put_small, key, path, extra, content_sha256)
            if proof is not _MULTIPART:
                return proof
            # Above it the store checks each part's SHA-256 (S3 refuses a mismatch) and answers
            # the composite: computed here (the file read once more, in the pool), so that a
            # HEAD can be checked against it.
            parts = await self._call(self._parts_sha256, path)
            extra["Metadata"][CONTENT_PARTS_SHA256] = parts
        await self._call(
            self.client.upload_file,
            str(path),
            self.bucket,
            key,
            ExtraArgs={**extra, "ChecksumAlgorithm": "SHA256"},
            Config=self.transfer,
        )
        return None

    def _parts_sha256(self, path: Path) -> str:
        """The SHA-256 S3 answers for ``path`` uploaded by :meth:`put_file` in parts: of the
        parts' SHA-256s, with the part size s3transfer uses for this size (it adjusts the one
        configured to S3's limits: 5 MiB to 5 GiB, at most 10,000 parts)."""
        size = path.stat().st_size
        part = ChunksizeAdjuster().adjust_chunksize(self.part_size, size)
        digests = hashlib.sha256()
        count = 0
        with path.open("rb") as f:
            while chunk := f.read(part):
                digests.update(hashlib.sha256(chunk).digest())
                count += 1
        return f"{_b64(digests.digest())}-{count}"

    def _put_small(
        self, key: str, path: Path, extra: dict[str, Any], content_sha256: str
    ) -> StoredObject | _Multipart | None:
        """One PutObject with the file's SHA-256 for the store to check (it refuses the
        request with BadDigest if the bytes it received differ): what it answers proves what it
        holds, as a HEAD would. None: stored, but unproven (an S3-compatible service that does
        not answer the checksum or the encryption): HEAD it. _MULTIPART: too large for one
        request. A checksum answered that is not the file's: :class:`StorageError`."""
        checksum = _b64(bytes.fromhex(content_sha256))
        with path.open("rb") as body:
            size = os.fstat(body.fileno()).st_size
            if size >= self.multipart_threshold:
                return _MULTIPART
            # the algorithm named as well: some S3-compatible services echo the checksum only then
            resp = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                **extra,
            )
        answered = resp.get("ChecksumSHA256")
        if answered is not None and answered != checksum:
            # The store's SHA-256 of what it received is not the file's: it holds other bytes
            # (a store that reports the checksum but does not refuse a mismatch, as S3 does).
            # Taken back where the store lets us. Where it does not (no s3:DeleteObject, Object
            # Lock, an outage), it stays, and a retry's HEAD finds it with the metadata and the
            # size of the recording: what refuses it then is the store's checksum, again.
            try:
                self._delete_version(key, resp.get("VersionId"))
            except (ClientError, BotoCoreError) as exc:
                left = f"; left there, the store refused to delete it: {exc}"
            else:
                left = ""
            raise StorageError(
                f"the store received other bytes than were sent for {key}: its SHA-256 "
                f"{answered}, ours {checksum}{left}"
            )
        if answered is None or not resp.get("ServerSideEncryption"):
            return None
        return StoredObject(
            key,
            size,
            extra["Metadata"]["sha256"],
            extra["ContentType"],
            encrypted=True,  # (checked above)
            metadata={k.lower(): v for k, v in extra["Metadata"].items()},
            version=resp.get("VersionId"),
            checksum_sha256=answered,
        )

    def _delete_version(self, key: str, version: str | None) -> None:
        if version is None:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        else:
            self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)

    def _head(self, key: str) -> StoredObject | None:
        try:
            # checksum mode: the store's own checksum of what it holds, where it keeps one
            resp = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        metadata = {k.lower(): v for k, v in resp.get("Metadata", {}).items()}
        return StoredObject(
            key,
            int(resp["ContentLength"]),
            metadata.get("sha256"),
            resp.get("ContentType"),
            encrypted=bool(resp.get("ServerSideEncryption")),
            metadata=metadata,
            version=resp.get("VersionId"),
            checksum_sha256=resp.get("ChecksumSHA256"),
        )

    async def head(self, key: str) -> StoredObject | None:
        return await self._call(self._head, key)

    def _versioned(self) -> bool:
        if self._is_versioned is None:
            status = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            self._is_versioned = status in ("Enabled", "Suspended")
        return self._is_versioned

    def _delete_batch(self, keys: list[str]) -> dict[str, str]:
        objects: list[dict[str, str]] = []
        if self._versioned():
            # every version and delete marker: a plain delete would only hide the data
            for key in keys:
                pages = self.client.get_paginator("list_object_versions").paginate(
                    Bucket=self.bucket, Prefix=key
                )
                for page in pages:
                    for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                        if item["Key"] == key:
                            objects.append({"Key": key, "VersionId": item["VersionId"]})
        else:
            objects = [{"Key": key} for key in keys]
        failed: dict[str, str] = {}
        for i in range(0, len(objects), 1000):  # DeleteObjects takes at most 1000
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects[i : i + 1000], "Quiet": True}
            )
            for error in resp.get("Errors", []):
                failed[error["Key"]] = f"{error.get('Code')}: {error.get('Message')}"
        return failed

    async def delete_many(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        return await self._call(self._delete_batch, keys)

    def _delete_other_versions(self, key: str, keep: str | None) -> None:
        if not self._versioned():
            return
        others: list[dict[str, str]] = []
        for page in self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=key
        ):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if item["Key"] == key and item["VersionId"] != keep:
                    others.append({"Key": key, "VersionId": item["VersionId"]})
        for i in range(0, len(others), 1000):
            resp = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": others[i : i + 1000], "Quiet": True}
            )
            if resp.get("Errors"):
                raise StorageError(f"the store refused to delete old versions of {key}")

    async def delete_other_versions(self, key: str, keep: str | None) -> None:
        await self._call(self._delete_other_versions, key, keep)

    async def download_to(self, key: str, path: Path) -> None:
        await self._call(
            self.client.download_file, self.bucket, key, str(path), Config=self.transfer
        )

    async def read_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        resp = await self._call(
            self.client.get_object, Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
        )
        body = resp["Body"]
        try:
            while chunk := await self._call(body.read, 1 << 16):
                yield chunk
        finally:
            body.close()

    async def check(self) -> None:
        await self._call(self.client.head_bucket, Bucket=self.bucket)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")
