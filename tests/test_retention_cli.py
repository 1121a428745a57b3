"""The compliance CLI as an operator runs it: tokens, purge, holds, data-subject requests."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service import auth
from service.db import roles
from service.errors import ConfigError
from service.personal.numbers import PhoneVault
from service.storage.s3 import S3Store
from tests.conftest import SECRET_KEY, run_cli
from tests.seed import seed_recording

VAULT = PhoneVault(SECRET_KEY)


async def test_token_create_prints_the_token_alone_and_stores_only_its_hash(
    db: asyncpg.Connection, database_url: str
) -> None:
    made = await asyncio.to_thread(
        run_cli, database_url, "token", "create", "--name", "qa-lan", "--role", "qa_trainer"
    )
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cv_")
    token = lines[0]
    principal = await auth.authenticate(db, token)
    assert principal is not None and principal.role == "qa_trainer"
    stored = await db.fetchval("SELECT string_agg(t::text, ' ') FROM api_tokens t")
    assert token not in stored
    listed = await asyncio.to_thread(run_cli, database_url, "token", "list")
    assert "qa_trainer  active   default      qa-lan" in listed.stdout  # role, state, tenant
    assert token not in listed.stdout
    revoked = await asyncio.to_thread(
        run_cli, database_url, "token", "revoke", str(principal.token_id)
    )
    assert revoked.returncode == 0
    assert await auth.authenticate(db, token) is None
    bad = await asyncio.to_thread(
        run_cli, database_url, "token", "create", "--name", " ", "--role", "admin"
    )
    assert bad.returncode == 1
    assert bad.stderr == "callvault: error: name must be 1 to 100 characters\n"


async def test_purge_hold_and_dsar_commands(
    db: asyncpg.Connection, database_url: str, moto_url: str, bucket: str, tmp_path: Path
) -> None:
    store = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    s3 = {
        "CALLVAULT_S3_BUCKET": bucket,
        "CALLVAULT_S3_ENDPOINT_URL": moto_url,
        "CALLVAULT_S3_REGION": "us-east-1",
        "CALLVAULT_HOME": str(tmp_path / "home"),
    }
    try:
        a = await seed_recording(db, store, VAULT, tmp_path, caller="+84911000001")
        b = await seed_recording(db, store, VAULT, tmp_path, caller="+84911000002")
        placed = await asyncio.to_thread(
            run_cli,
            database_url,
            "hold",
            "place",
            "--call",
            str(b["call_id"]),
            "--reason",
            "court order",
            "--case-ref",
            "TAND-7",
            env_overrides=s3,
        )
        assert placed.returncode == 0, placed.stderr
        assert "1 recording(s) held" in placed.stdout
        dry = await asyncio.to_thread(run_cli, database_url, "purge", "--dry-run", env_overrides=s3)
        assert f"{a['recording_id']}" in dry.stdout and "retention ended" in dry.stdout
        assert "kept: under a legal hold" in dry.stdout
        assert dry.stdout.strip().endswith("1 would be purged, 1 kept by holds")
        assert await store.head(a["key"]) is not None  # a dry run deletes nothing
        real = await asyncio.to_thread(run_cli, database_url, "purge", env_overrides=s3)
        assert real.returncode == 0 and "purged 1, kept by holds 0" in real.stdout
        assert await store.head(a["key"]) is None and await store.head(b["key"]) is not None
        listed = await asyncio.to_thread(run_cli, database_url, "hold", "list")
        hold_id = listed.stdout.split()[0]
        assert "case TAND-7: court order" in listed.stdout
        released = await asyncio.to_thread(
            run_cli, database_url, "hold", "release", hold_id, env_overrides=s3
        )
        assert released.returncode == 0
        again = await asyncio.to_thread(
            run_cli, database_url, "hold", "release", hold_id, env_overrides=s3
        )
        assert again.returncode == 1
        assert again.stderr == f"callvault: error: hold {hold_id} is already released\n"

        out = tmp_path / "bundle.zip"
        access = await asyncio.to_thread(
            run_cli,
            database_url,
            "dsar",
            "access",
            "--phone",
            "+84911000002",
            "--out",
            str(out),
            env_overrides=s3,
        )
        assert access.returncode == 0, access.stderr
        assert "completed" in access.stdout
        with zipfile.ZipFile(out) as zf:
            assert zf.read(f"audio/{b['recording_id']}.wav") == b["body"]
        erase = await asyncio.to_thread(
            run_cli, database_url, "dsar", "erase", "--phone", "+84911000002", env_overrides=s3
        )
        assert erase.returncode == 0 and "completed" in erase.stdout
        assert await store.head(b["key"]) is None
        assert (
            await db.fetchval("SELECT count(*) FROM dsar_requests WHERE bundle_key IS NOT NULL")
            == 0
        )
        late = await asyncio.to_thread(
            run_cli,
            database_url,
            "hold",
            "place",
            "--phone",
            "+84911000002",
            "--reason",
            "too late",
            env_overrides=s3,
        )
        assert late.returncode == 0, late.stderr
        assert f"call {b['call_id']} erased at " in late.stdout
        bad = await asyncio.to_thread(
            run_cli, database_url, "dsar", "erase", "--phone", "0911", env_overrides=s3
        )
        assert bad.returncode == 1
        assert bad.stderr == ("callvault: error: phone must be an E.164 number like +84901234567\n")
    finally:
        await store.close()


async def test_tenant_commands_are_confined_to_their_tenant_even_as_the_superuser(
    db: asyncpg.Connection, database_url: str, moto_url: str, bucket: str, tmp_path: Path
) -> None:
    """The embedded database's URL is its superuser, which row-level security does not bind:
    a command run ``--tenant beta`` must still see nothing of the default tenant's."""
    store = S3Store(bucket, endpoint_url=moto_url, region="us-east-1")
    env = {
        "CALLVAULT_DATABASE_URL": database_url,  # the superuser, as embedded mode resolves it
        "CALLVAULT_S3_BUCKET": bucket,
        "CALLVAULT_S3_ENDPOINT_URL": moto_url,
        "CALLVAULT_S3_REGION": "us-east-1",
        "CALLVAULT_HOME": str(tmp_path / "home"),
    }
    await db.execute("INSERT INTO tenants (id, name) VALUES ('beta', 'Beta')")
    try:
        a = await seed_recording(db, store, VAULT, tmp_path, caller="+84905550004", expired=False)

        def cli(*args: str) -> Any:
            return run_cli(database_url, *args, "--tenant", "beta", env_overrides=env)

        out = tmp_path / "beta.zip"
        nothing = "callvault: error: no calls of this number in this tenant\n"
        access = await asyncio.to_thread(
            cli, "dsar", "access", "--phone", "+84905550004", "--out", str(out)
        )
        assert (access.returncode, access.stderr) == (1, nothing)
        assert not out.exists()
        erase = await asyncio.to_thread(cli, "dsar", "erase", "--phone", "+84905550004")
        assert (erase.returncode, erase.stderr) == (1, nothing)
        assert await store.head(a["key"]) is not None
        assert await db.fetchval("SELECT erased_at FROM calls WHERE id = $1", a["call_id"]) is None
        hold = await asyncio.to_thread(
            cli, "hold", "place", "--call", str(a["call_id"]), "--reason", "x"
        )
        assert hold.returncode == 1
        assert await db.fetchval("SELECT count(*) FROM holds") == 0
        verify = await asyncio.to_thread(cli, "ledger", "verify")
        assert verify.returncode == 0, verify.stderr
        assert verify.stdout.startswith("verified 0 events in 0 calls"), verify.stdout
        mine = await asyncio.to_thread(
            run_cli, database_url, "ledger", "verify", "--tenant", "default", env_overrides=env
        )
        assert not mine.stdout.startswith("verified 0 events in 0 calls"), mine.stdout
    finally:
        await store.close()


async def test_a_superuser_that_cannot_become_the_service_role_is_refused(
    db: asyncpg.Connection,
) -> None:
    with pytest.raises(ConfigError, match="bypasses row-level security"):
        await roles.bind_to_rls(db, allow_bypass=False, role="no_such_role")
    await roles.bind_to_rls(db, allow_bypass=True, role="no_such_role")  # said, not refused
    assert await roles.bypasses_rls(db) is not None
    await roles.bind_to_rls(db, allow_bypass=False)
    assert await db.fetchval("SELECT current_user") == roles.SERVICE_ROLE
    assert await roles.bypasses_rls(db) is None
