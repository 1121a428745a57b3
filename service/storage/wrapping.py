"""Who wraps a recording's data key (issue 17): the key derived per tenant from
``CALLVAULT_SECRET_KEY`` (:class:`~service.personal.numbers.PhoneVault`), or, where the tenant's
configuration names one (``[tenants.ID.data_keys] kms_key_id``, table ``tenant_data_keys``),
the tenant's own AWS KMS key.

A KMS-wrapped data key is the ciphertext of KMS ``Encrypt`` of the serialised keyset under the
tenant's key, with an encryption context naming the tenant, the recording and the purpose: KMS
refuses to decrypt it for another tenant or recording (and CloudTrail logs the context with
every use). The ARN KMS answers is kept beside it (``recording_keys.kms_key_arn``): reading
asks that key, whatever the tenant configures today. boto3 blocks: every call runs in a small
pool of its own, never on the event loop.

Rotation: KMS rotates a key's material itself (automatic rotation keeps the key id and every
old backing key), which needs nothing from callvault. When a tenant names another KMS key, or
moves between KMS and the derived key, ``callvault secrets rotate`` re-wraps: KMS to KMS with
``ReEncrypt`` (the data key never leaves KMS in the clear), otherwise by unwrapping and
wrapping again.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.db import Conn
from service.errors import KeyWrappingError as KeyWrappingError
from service.personal.numbers import PhoneVault
from service.storage.registry import _read_ref

T = TypeVar("T")
# KMS calls are short, and a burst of intakes must not take the loop's default threads
EXECUTOR = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kms")
_CONFIG_SQL = (
    "SELECT kms_key_id, endpoint_url, region, credentials FROM tenant_data_keys "
    "WHERE tenant_id = $1"
)
_ALL_CONFIGS_SQL = (
    "SELECT tenant_id, kms_key_id, endpoint_url, region, credentials FROM tenant_data_keys"
)


class Wrapper(StrEnum):
    DERIVED = "derived"
    KMS = "kms"


@dataclass(frozen=True)
class KmsKey:
    """A tenant's KMS key as configured, credentials resolved (values kept out of repr)."""

    key_id: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    problem: str | None = None

    @classmethod
    def of_row(cls, row: Any) -> KmsKey:
        refs = {str(k): str(v) for k, v in dict(row["credentials"]).items()}
        key_id, problem_id = _read_ref(refs, "access_key_id")
        secret, problem_secret = _read_ref(refs, "secret_access_key")
        return cls(
            row["kms_key_id"],
            row["endpoint_url"],
            row["region"],
            key_id,
            secret,
            problem_id or problem_secret,
        )

    def asking(self, arn: str) -> KmsKey:
        """The client settings to reach the key ``arn`` (one a data key was wrapped by):
        this configuration's endpoint and credentials, the region the ARN names."""
        parts = arn.split(":")
        region = parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else self.region
        return KmsKey(
            arn,
            self.endpoint_url,
            region,
            self.access_key_id,
            self.secret_access_key,
            self.problem,
        )


@dataclass(frozen=True)
class Wrapped:
    """A wrapped data key and what wrapped it, as ``recording_keys`` keeps them."""

    blob: bytes
    wrapper: Wrapper
    kek_id: bytes  # 8 bytes: the derived key's fingerprint, or the KMS key ARN's
    kms_key_arn: str | None = None


def encryption_context(tenant: str, recording_id: str) -> dict[str, str]:
    """What KMS binds a wrapped data key to: another tenant's or recording's fails."""
    return {
        "callvault:purpose": "recording-data-key",
        "callvault:tenant": tenant,
        "callvault:recording": recording_id,
    }


def arn_fingerprint(arn: str) -> bytes:
    return hashlib.sha256(b"callvault:kms:" + arn.encode("utf-8")).digest()[:8]


_clients: dict[KmsKey, Any] = {}
_clients_lock = threading.Lock()


def _client(key: KmsKey) -> Any:
    """A KMS client for these settings (made once: a client costs tens of milliseconds)."""
    if key.problem:
        raise KeyWrappingError(f"KMS credentials: {key.problem}")
    settings = KmsKey("", key.endpoint_url, key.region, key.access_key_id, key.secret_access_key)
    with _clients_lock:
        found = _clients.get(settings)
        if found is None:
            session = boto3.session.Session(
                aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key
            )
            found = _clients[settings] = session.client(
                "kms",
                endpoint_url=key.endpoint_url,
                config=Config(
                    region_name=key.region,
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=5,
                    read_timeout=20,
                ),
            )
        return found


async def _run(what: str, key: KmsKey, call: Callable[[Any], T]) -> T:
    """``call`` with a KMS client for ``key``, off the loop. The client is made inside, so a
    setting botocore refuses (a region it cannot use) is a 503 like KMS being down, not a 500."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(EXECUTOR, lambda: call(_client(key)))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise KeyWrappingError(f"KMS {what}: {code}") from exc
    except (BotoCoreError, Boto3Error) as exc:
        raise KeyWrappingError(f"KMS {what}: {type(exc).__name__}") from exc


async def kms_encrypt(key: KmsKey, tenant: str, recording_id: str, keyset: bytes) -> Wrapped:
    answer = await _run(
        "Encrypt",
        key,
        lambda client: client.encrypt(
            KeyId=key.key_id,
            Plaintext=keyset,
            EncryptionContext=encryption_context(tenant, recording_id),
        ),
    )
    arn = str(answer["KeyId"])
    return Wrapped(bytes(answer["CiphertextBlob"]), Wrapper.KMS, arn_fingerprint(arn), arn)


async def kms_decrypt(key: KmsKey, arn: str, tenant: str, recording_id: str, blob: bytes) -> bytes:
    """The data key; KMS is told which key must have wrapped it (``arn``), so a blob another
    key made is refused rather than opened by whatever key it names."""
    answer = await _run(
        "Decrypt",
        key.asking(arn),
        lambda client: client.decrypt(
            CiphertextBlob=blob,
            KeyId=arn,
            EncryptionContext=encryption_context(tenant, recording_id),
        ),
    )
    return bytes(answer["Plaintext"])


async def kms_reencrypt(
    key: KmsKey, arn: str, tenant: str, recording_id: str, blob: bytes
) -> Wrapped:
    """From the key ``arn`` to ``key``, inside KMS (the data key is never in the clear here)."""
    context = encryption_context(tenant, recording_id)
    answer = await _run(
        "ReEncrypt",
        key.asking(arn),
        lambda client: client.re_encrypt(
            CiphertextBlob=blob,
            SourceKeyId=arn,
            SourceEncryptionContext=context,
            DestinationKeyId=key.key_id,
            DestinationEncryptionContext=context,
        ),
    )
    new_arn = str(answer["KeyId"])
    return Wrapped(bytes(answer["CiphertextBlob"]), Wrapper.KMS, arn_fingerprint(new_arn), new_arn)


async def kms_arn(key: KmsKey) -> str:
    """The ARN of the configured key (an alias or key id resolved), to compare with the ARN
    each data key was wrapped by."""
    answer = await _run("DescribeKey", key, lambda client: client.describe_key(KeyId=key.key_id))
    return str(answer["KeyMetadata"]["Arn"])


async def tenant_kms(conn: Conn, tenant: str) -> KmsKey | None:
    """The tenant's KMS key, or None: its data keys are wrapped by the derived key."""
    row = await conn.fetchrow(_CONFIG_SQL, tenant)
    return None if row is None else await asyncio.to_thread(KmsKey.of_row, row)


async def every_tenant_kms(conn: Conn) -> dict[str, KmsKey]:
    rows = await conn.fetch(_ALL_CONFIGS_SQL)
    return await asyncio.to_thread(lambda: {r["tenant_id"]: KmsKey.of_row(r) for r in rows})


async def wrap(
    key: KmsKey | None, vault: PhoneVault, tenant: str, recording_id: str, keyset: bytes
) -> Wrapped:
    """The data key wrapped by the tenant's KMS key if it has one, else by its derived key."""
    if key is not None:
        return await kms_encrypt(key, tenant, recording_id, keyset)
    blob, kek_id = vault.wrap_data_key(tenant, recording_id, keyset)
    return Wrapped(blob, Wrapper.DERIVED, kek_id)


async def unwrap(
    key: KmsKey | None,
    vault: PhoneVault,
    tenant: str,
    recording_id: str,
    blob: bytes,
    wrapper: str,
    arn: str | None,
) -> bytes:
    """A stored data key opened by whatever wrapped it (``key``: the tenant's KMS settings
    today, for the endpoint and credentials; without any, boto3's defaults)."""
    if wrapper == Wrapper.KMS:
        assert arn is not None
        return await kms_decrypt(key or KmsKey(arn), arn, tenant, recording_id, blob)
    return vault.unwrap_data_key(tenant, recording_id, blob)
