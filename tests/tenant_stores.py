"""Two tenants beside ``default`` for the storage, export and offboard tests: ``tenant-a`` on the
shared bucket (under ``tenants/tenant-a/``), ``tenant-b`` with its own bucket on a second moto
server, its own credentials (named by environment variable) and SSE-KMS key; each with its own
Twilio subaccount and number. Fixtures and helpers."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import auth
from service.config import Settings
from service.db import tenancy
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, Service
from tests.intake_helpers import objects, send_recording
from tests.moto_process import MotoProcess
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

Conn = asyncpg.Connection
SID_A, SID_B = ("AC" + secrets.token_hex(16) for _ in range(2))
TOKEN_A, TOKEN_B = (secrets.token_hex(16) for _ in range(2))
NUMBERS = {"default": "+842873001234", "tenant-a": "+842873001111", "tenant-b": "+842873002222"}
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/tenant-b"


@dataclass
class Tenants:
    shared: str  # the deployment's bucket, on the session's moto server
    moto: str
    own: MotoProcess  # tenant b's S3 endpoint
    own_bucket: str


@pytest.fixture(name="own_s3")
async def own_s3_fixture(tmp_path: Path) -> AsyncIterator[MotoProcess]:
    server = MotoProcess(tmp_path / "own-moto.log")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(name="tenants")
async def tenants_fixture(
    db: Conn, monkeypatch: pytest.MonkeyPatch, own_s3: MotoProcess, moto_url: str, bucket: str
) -> Tenants:
    # tenant b's credentials are named, never written: moto takes any pair
    monkeypatch.setenv("TEST_B_S3_KEY_ID", "tenant-b-key")
    monkeypatch.setenv("TEST_B_S3_SECRET", "tenant-b-secret")
    monkeypatch.setenv("TEST_TWILIO_TOKEN_A", TOKEN_A)
    monkeypatch.setenv("TEST_TWILIO_TOKEN_B", TOKEN_B)
    own_bucket = "tenant-b-" + secrets.token_hex(6)
    await asyncio.to_thread(own_s3.create_bucket, own_bucket)
    for tenant, sid, env in (
        ("tenant-a", SID_A, "TEST_TWILIO_TOKEN_A"),
        ("tenant-b", SID_B, "TEST_TWILIO_TOKEN_B"),
    ):
        await db.execute("INSERT INTO tenants (id, name) VALUES ($1, $1)", tenant)
        await db.execute(
            "INSERT INTO tenant_accounts (platform, account_id, tenant_id, secrets) "
            "VALUES ('twilio', $1, $2, $3)",
            sid,
            tenant,
            {"auth_token_env": env},
        )
        await db.execute(
            "INSERT INTO tenant_numbers (number, tenant_id) VALUES ($1, $2)",
            NUMBERS[tenant],
            tenant,
        )
    await db.execute(
        "INSERT INTO tenant_storage (tenant_id, bucket, endpoint_url, region, sse, kms_key_id, "
        "credentials) VALUES ('tenant-b', $1, $2, 'us-east-1', 'aws:kms', $3, $4)",
        own_bucket,
        own_s3.url,
        KMS_KEY,
        {"access_key_id_env": "TEST_B_S3_KEY_ID", "secret_access_key_env": "TEST_B_S3_SECRET"},
    )
    return Tenants(bucket, moto_url, own_s3, own_bucket)


@pytest.fixture(name="storage_settings")
def storage_settings_fixture(intake_settings: Settings) -> Settings:
    # a bucket that is down for a while must not dead-letter the recording; and the webhooks'
    # database deadlines are widened so a loaded test machine does not skip a recording (these
    # tests are about where objects go, not about deadlines)
    return replace(
        intake_settings,
        job_max_attempts=100,
        db_acquire_timeout_s=15.0,
        db_statement_timeout_s=15.0,
    )


@pytest.fixture(name="service")
async def service_fixture(storage_settings: Settings, tenants: Tenants) -> AsyncIterator[Service]:
    svc = Service(storage_settings)
    await svc.start()
    yield svc
    await svc.stop()


ACCOUNTS = {
    "default": (ACCOUNT_SID, AUTH_TOKEN),
    "tenant-a": (SID_A, TOKEN_A),
    "tenant-b": (SID_B, TOKEN_B),
}


def twilio_of(tenant: str, http: aiohttp.ClientSession, service: Service) -> FakeTwilio:
    sid, token = ACCOUNTS[tenant]
    return FakeTwilio(http, PUBLIC_URL, account_sid=sid, auth_token=token, send_to=service.base_url)


@dataclass
class Recorded:
    tenant: str
    caller: str
    call_sid: str
    recording_sid: str
    body: bytes


async def record(
    tenant: str,
    http: aiohttp.ClientSession,
    service: Service,
    media: FakeTwilioMedia,
    caller: str,
) -> Recorded:
    """A consented call of this tenant and its recording's callback (intake is queued)."""
    twilio = twilio_of(tenant, http, service)
    trace = await twilio.place_call(caller, NUMBERS[tenant], Caller.parse("stay"))
    assert trace.recording_started
    rec_sid, body = new_recording_sid(), wav_bytes(1) + secrets.token_bytes(64)
    # each tenant's Twilio subaccount holds its recordings and is reached with its own token
    sid, token = ACCOUNTS[tenant]
    if tenant != "default":
        media.add_subaccount(sid, token)
    media.add(rec_sid, body, account=None if tenant == "default" else sid)
    status, _ = await send_recording(twilio, trace.call_sid, rec_sid)
    assert status == 204
    return Recorded(tenant, caller, trace.call_sid, rec_sid, body)


async def row_of(db: Conn, rec: Recorded) -> Any:
    await tenancy.set_tenant(db, tenancy.ALL)
    return await db.fetchrow("SELECT * FROM recordings WHERE external_id = $1", rec.recording_sid)


async def token_for(db: Conn, tenant: str, role: str) -> str:
    await tenancy.set_tenant(db, tenant)
    token = (await auth.create_token(db, f"{role}-{tenant}", role, "test"))[0]
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    return token


async def keys(endpoint: str, bucket: str) -> set[str]:
    return {o["key"] for o in await objects(endpoint, bucket)}


async def download(http: aiohttp.ClientSession, service: Service, url: str) -> bytes:
    async with http.get(service.base_url + "/files/" + url.split("/files/", 1)[1]) as resp:
        assert resp.status == 200
        return await resp.read()
