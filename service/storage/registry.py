"""Which object store a tenant's objects go to and come from (issue 13 item 6).

By default every tenant shares the deployment's store (``CALLVAULT_S3_*``, or the local folder)
under the key prefix ``tenants/{id}/``; the tenant ``default`` keeps today's keys, without a
prefix. A tenant with a ``tenant_storage`` row (written by ``tenant apply``) has its own bucket,
endpoint, region, SSE (``AES256`` or ``aws:kms`` with its key id) and credentials, named there
by environment variable or file and read here, never logged; its keys carry no prefix: the
bucket is its alone.

Every stored object's row records the store it went to (``recordings.object_store``,
``dsar_requests.bundle_store``: ``shared`` or ``s3://BUCKET``) with its full key, so an object
stays findable after the tenant's storage is changed: :meth:`StoreRegistry.for_object` answers
by that reference (a bucket the tenant moved away from as it was reached then, from
``tenant_storage_former``), :meth:`StoreRegistry.for_tenant` says where new objects go.

The ``tenant_storage`` table is read at most every :data:`TTL_S` seconds (a time-based refresh:
``tenant apply`` reaches every replica within seconds, the same rule as the Twilio accounts);
a failed read keeps the last copy. Clients are made once per bucket configuration and kept until
the registry closes, so a tenant whose bucket is down only fails its own operations.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from service.config import Settings
from service.db import tenancy
from service.storage import ObjectStore, StorageError, create_store

SHARED = "shared"
TTL_S = 5.0
Reader = Callable[[], AbstractAsyncContextManager[Any]]
# each tenant's storage of today, and the buckets its storage moved away from (migration 0032)
_STORAGE_SQL = (
    "SELECT tenant_id, bucket, endpoint_url, region, sse, kms_key_id, credentials, "
    "true AS current FROM tenant_storage "
    "UNION ALL "
    "SELECT tenant_id, bucket, endpoint_url, region, sse, kms_key_id, credentials, false "
    "FROM tenant_storage_former"
)


def tenant_prefix(tenant: str) -> str:
    """The key prefix of a tenant on the shared store (none for ``default``: today's keys)."""
    return "" if tenant == tenancy.DEFAULT else f"tenants/{tenant}/"


def key_in(tenant: str, ref: str, relative: str) -> str:
    """The key a tenant's object goes under in the store ``ref`` names (prefixed on the shared
    store, as :meth:`StoreRegistry.for_tenant` prefixes it)."""
    return (tenant_prefix(tenant) if ref == SHARED else "") + relative


def bucket_ref(bucket: str) -> str:
    return f"s3://{bucket}"


@dataclass(frozen=True)
class TenantStore:
    """Where a tenant's new objects go: the store, its reference (recorded beside each key),
    the key prefix, and whether what comes back must say it is encrypted at rest (S3)."""

    store: ObjectStore
    ref: str
    prefix: str
    encrypted: bool

    def key(self, relative: str) -> str:
        return self.prefix + relative


@dataclass(frozen=True)
class OwnBucket:
    """A tenant's own bucket as configured, credentials resolved (values kept out of repr)."""

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    sse: str = "AES256"
    kms_key_id: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    problem: str | None = None  # a credential reference that does not resolve


def _read_ref(refs: dict[str, str], name: str) -> tuple[str | None, str | None]:
    """(value, problem) of the secret ``name`` given as ``name_env`` or ``name_file``."""
    if env := refs.get(f"{name}_env"):
        value = os.environ.get(env)
        return (value, None) if value else (None, f"{name}_env {env} is not set")
    if path := refs.get(f"{name}_file"):
        try:
            return Path(path).read_text(encoding="utf-8").strip(), None
        except OSError:
            return None, f"{name}_file {path} cannot be read"
    return None, None


def _own_bucket(row: Any) -> OwnBucket:
    refs = {str(k): str(v) for k, v in dict(row["credentials"]).items()}
    key_id, problem_id = _read_ref(refs, "access_key_id")
    secret, problem_secret = _read_ref(refs, "secret_access_key")
    return OwnBucket(
        row["bucket"],
        row["endpoint_url"],
        row["region"],
        row["sse"],
        row["kms_key_id"],
        key_id,
        secret,
        problem_id or problem_secret,
    )


class StoreRegistry:
    """The stores of every tenant, resolved once and cached (owned by the application's
    ``cleanup_ctx``, or by a CLI command for its run)."""

    def __init__(
        self,
        shared: ObjectStore,
        *,
        shared_encrypted: bool,
        reader: Reader | None = None,
        fallback: OwnBucket | None = None,
        ttl_s: float = TTL_S,
        owns_shared: bool = True,
        threads: int = 8,
    ) -> None:
        self.shared = shared
        self.shared_encrypted = shared_encrypted
        self._reader = reader
        # a bucket a row names that the tenant no longer configures: reached like the shared one
        self._fallback = fallback or OwnBucket("")
        self._ttl_s = ttl_s
        self._owns_shared = owns_shared
        self._threads = threads
        self._configs: dict[str, OwnBucket] | None = None
        self._former: dict[tuple[str, str], OwnBucket] = {}  # (tenant, bucket) it moved from
        self._read_at = 0.0
        self._lock = asyncio.Lock()
        self._clients: dict[OwnBucket, ObjectStore] = {}

    @classmethod
    def from_settings(cls, settings: Settings, reader: Reader | None = None) -> StoreRegistry:
        return cls(
            create_store(settings),
            shared_encrypted=bool(settings.s3_bucket),
            reader=reader,
            fallback=OwnBucket(
                "",
                settings.s3_endpoint_url,
                settings.s3_region,
                settings.s3_sse,
                settings.s3_kms_key_id,
            ),
            threads=settings.s3_threads,
        )

    @classmethod
    def wrapping(cls, store: ObjectStore, reader: Reader | None = None) -> StoreRegistry:
        """A registry whose shared store is ``store`` (callers that were handed one store)."""
        return cls(store, shared_encrypted=False, reader=reader, owns_shared=False)

    async def _refresh(self, conn: Any | None) -> dict[str, OwnBucket]:
        if self._configs is not None and time.monotonic() - self._read_at < self._ttl_s:
            return self._configs
        async with self._lock:
            if self._configs is not None and time.monotonic() - self._read_at < self._ttl_s:
                return self._configs
            try:
                if conn is not None:
                    rows = await conn.fetch(_STORAGE_SQL)
                elif self._reader is not None:
                    async with self._reader() as own:
                        rows = await own.fetch(_STORAGE_SQL)
                else:
                    raise StorageError("no database to read tenant storage from")
                # credential files are read off the event loop
                read = await asyncio.to_thread(lambda: [(r, _own_bucket(r)) for r in rows])
                configs = {r["tenant_id"]: own for r, own in read if r["current"]}
                former = {(r["tenant_id"], own.bucket): own for r, own in read if not r["current"]}
            except StorageError:
                raise
            except Exception as exc:
                if self._configs is None:
                    raise StorageError(f"tenant storage could not be read: {exc}") from exc
                # the last copy serves another TTL: an outage does not fail every lookup
                self._read_at = time.monotonic()
                return self._configs
            self._configs, self._former = configs, former
            self._read_at = time.monotonic()
            return configs

    def _client(self, bucket: OwnBucket) -> ObjectStore:
        if bucket.problem:
            raise StorageError(f"bucket {bucket.bucket}: credentials: {bucket.problem}")
        client = self._clients.get(bucket)
        if client is None:
            from service.storage.s3 import S3Store

            client = S3Store(
                bucket.bucket,
                endpoint_url=bucket.endpoint_url,
                region=bucket.region,
                sse=bucket.sse,
                kms_key_id=bucket.kms_key_id,
                access_key_id=bucket.access_key_id,
                secret_access_key=bucket.secret_access_key,
                threads=self._threads,
            )
            self._clients[bucket] = client
        return client

    async def for_tenant(self, tenant: str, conn: Any | None = None) -> TenantStore:
        """Where this tenant's new objects go (``conn``: read with it, when a refresh is due)."""
        own = (await self._refresh(conn)).get(tenant)
        if own is None:
            return TenantStore(self.shared, SHARED, tenant_prefix(tenant), self.shared_encrypted)
        return TenantStore(self._client(own), bucket_ref(own.bucket), "", True)

    async def for_object(
        self, tenant: str, ref: str | None, conn: Any | None = None
    ) -> ObjectStore:
        """The store holding an object this tenant's row says is in ``ref``."""
        if ref is None or ref == SHARED:
            return self.shared
        if not ref.startswith("s3://"):
            raise StorageError(f"unknown object store {ref!r}")
        bucket = ref.removeprefix("s3://")
        own = (await self._refresh(conn)).get(tenant)
        if own is not None and own.bucket == bucket:
            return self._client(own)
        # a bucket the tenant's storage moved away from: as it was reached then
        former = self._former.get((tenant, bucket))
        if former is not None:
            return self._client(former)
        # one it never configured (rows from before migration 0032 kept no record of it): its
        # current endpoint and credentials, or the shared store's when it has none of its own
        return self._client(replace(own or self._fallback, bucket=bucket))

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._owns_shared:
            await self.shared.close()
