"""Tenants side by side: PostgreSQL itself keeps them apart (row-level security on the setting
``callvault.tenant``), the service runs as a role that security binds, and a forgotten tenant
sees nothing."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from typing import Any, TypeAlias

import asyncpg
import pytest

from service.config import Settings
from service.db import tenancy
from service.db.pool import connect
from service.errors import ConfigError
from tests.conftest import Service

OTHER = "beta"
PLATFORM_CONFIG_TABLES = {
    "tenant_accounts",
    "tenant_data_keys",  # which KMS key wraps the tenant's data keys: a reference, no secret
    "tenant_numbers",
    "tenant_queues",
    "tenant_storage",
    "tenant_storage_former",  # buckets a tenant's storage moved from, reached as they were
}
TENANT_TABLES = {
    "api_tokens",
    "audit_log",
    "calls",
    "do_not_record",
    "dsar_requests",
    "holds",
    "jobs",
    "ledger_events",
    "ledger_seals",
    "pause_claims",
    "receipt_keys",
    "recording_callbacks",
    "recording_keys",
    "recording_reconciliations",
    "recordings",
}
Conn: TypeAlias = "asyncpg.Connection[Any]"


async def seed(db: Conn, tenant: str) -> dict[str, Any]:
    """One row of every tenant-owned table for ``tenant``, written as that tenant."""
    await tenancy.set_tenant(db, tenant)
    call_id = await db.fetchval(
        "INSERT INTO calls (platform, external_id, policy) VALUES ('twilio', $1, '{}') "
        "RETURNING id",
        "CA" + secrets.token_hex(16),
    )
    await db.execute(
        "INSERT INTO ledger_events (call_id, seq, type, at, prev_hash, hash) "
        "VALUES ($1, 1, 'call_started', now(), $2, $3)",
        call_id,
        bytes(32),
        secrets.token_bytes(32),
    )
    await db.execute(
        "INSERT INTO ledger_seals (max_event_id, calls, heads_sha256, prev_hash, hash) "
        "VALUES (1, 1, $1, $1, $1)",
        bytes(32),
    )
    recording_id = await db.fetchval(
        "INSERT INTO recordings (call_id, platform, external_id) VALUES ($1, 'twilio', $2) "
        "RETURNING id",
        call_id,
        "RE" + secrets.token_hex(16),
    )
    await db.execute(
        "INSERT INTO pause_claims (call_id, action, token) VALUES ($1, 'pause', $2)",
        call_id,
        uuid.uuid4(),
    )
    await db.execute(
        "INSERT INTO recording_keys (recording_id, format, wrapped_key, kek_id) "
        "VALUES ($1, 'tink-streaming-v1', $2, $3)",
        recording_id,
        b"wrapped",
        bytes(8),
    )
    await db.execute(
        "INSERT INTO recording_callbacks (platform, recording_sid, status, call_sid) "
        "VALUES ('twilio', $1, 'completed', 'CA1')",
        "RE" + secrets.token_hex(16),
    )
    await db.execute("INSERT INTO recording_reconciliations (call_id) VALUES ($1)", call_id)
    await db.execute("INSERT INTO jobs (kind) VALUES ('recording')")
    hold_id = await db.fetchval(
        "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'case', 'test') RETURNING id",
        call_id,
    )
    request_id = await db.fetchval(
        "INSERT INTO dsar_requests (kind, requested_by, due_at) "
        "VALUES ('access', 'test', now() + interval '3 days') RETURNING id"
    )
    token_id = await db.fetchval(
        "INSERT INTO api_tokens (name, role, token_sha256, created_by) "
        "VALUES ('same name', 'admin', $1, 'test') RETURNING id",
        secrets.token_bytes(32),
    )
    audit_id = await db.fetchval(
        "INSERT INTO audit_log (actor, action) VALUES ($1, 'seeded') RETURNING id",
        f"seeder-of-{tenant}",  # recognisable in any answer that would leak it
    )
    await db.execute(
        "INSERT INTO receipt_keys (public_key, private_key_enc) VALUES ($1, $2)",
        secrets.token_bytes(32),
        b"sealed",
    )
    await db.execute(
        "INSERT INTO do_not_record (phone_hash, reason) VALUES ($1, 'asked')", b"same hash"
    )
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    return {
        "call": call_id,
        "recording": recording_id,
        "hold": hold_id,
        "request": request_id,
        "token": token_id,
        "audit": audit_id,
    }


@pytest.fixture
async def two_tenants(db: Conn) -> dict[str, dict[str, Any]]:
    """The tenant ``default`` and a second one (created as the superuser: managing tenants is
    not this test's subject), each with a row in every tenant-owned table."""
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Beta')", OTHER)
    return {tenancy.DEFAULT: await seed(db, tenancy.DEFAULT), OTHER: await seed(db, OTHER)}


async def test_every_tenant_owned_table_is_forced_under_row_level_security(db: Conn) -> None:
    rows = await db.fetch(
        """SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
           WHERE a.attname = 'tenant_id' AND c.relkind = 'r' AND NOT a.attisdropped"""
    )
    forced = {r["relname"] for r in rows if r["relrowsecurity"] and r["relforcerowsecurity"]}
    assert forced == TENANT_TABLES
    # the rest are the operator's configuration of tenants (read to route a webhook before its
    # tenant is known), not a tenant's data
    assert {r["relname"] for r in rows} - forced == PLATFORM_CONFIG_TABLES


async def test_a_query_that_forgets_the_tenant_gets_no_rows(
    two_tenants: dict[str, dict[str, Any]], db: Conn, service_url: str
) -> None:
    for table in TENANT_TABLES:  # the rows are there: the superuser sees both tenants'
        assert await db.fetchval(f"SELECT count(DISTINCT tenant_id) FROM {table}") == 2, table  # noqa: S608
    conn = await connect(service_url)  # never told its tenant
    try:
        for table in TENANT_TABLES:
            assert await conn.fetch(f"SELECT * FROM {table}") == [], table  # noqa: S608
        # nor can it write: its rows would belong to nobody
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("INSERT INTO audit_log (actor, action) VALUES ('x', 'forgot')")
    finally:
        await conn.close()


async def test_each_tenant_sees_only_its_own_rows_in_every_table(
    two_tenants: dict[str, dict[str, Any]], service_url: str
) -> None:
    conn = await connect(service_url)
    try:
        for tenant in (tenancy.DEFAULT, OTHER):
            await tenancy.set_tenant(conn, tenant)
            for table in TENANT_TABLES:
                seen = await conn.fetch(f"SELECT tenant_id FROM {table}")  # noqa: S608
                assert seen, table
                assert {r["tenant_id"] for r in seen} == {tenant}, table
            other = two_tenants[OTHER if tenant == tenancy.DEFAULT else tenancy.DEFAULT]
            assert await conn.fetchrow("SELECT * FROM calls WHERE id = $1", other["call"]) is None
            # another tenant's rows cannot be changed or removed either
            assert (
                await conn.execute(
                    "UPDATE holds SET released_by = 'x' WHERE id = $1", other["hold"]
                )
                == "UPDATE 0"
            )
            assert (
                await conn.execute("DELETE FROM recordings WHERE id = $1", other["recording"])
                == "DELETE 0"
            )
        # the system's cross-tenant work sees both
        await tenancy.set_tenant(conn, tenancy.ALL)
        assert await conn.fetchval("SELECT count(DISTINCT tenant_id) FROM calls") == 2
    finally:
        await conn.close()


async def test_a_tenant_cannot_attach_rows_to_another_tenants_call(
    two_tenants: dict[str, dict[str, Any]], service_url: str
) -> None:
    conn = await connect(service_url)
    try:
        await tenancy.set_tenant(conn, OTHER)
        for sql in (
            "INSERT INTO holds (call_id, reason, placed_by) VALUES ($1, 'x', 'beta')",
            "INSERT INTO recordings (call_id, platform, external_id) VALUES ($1, 'twilio', 'RE9')",
        ):
            with pytest.raises(asyncpg.PostgresError, match="not visible"):
                await conn.execute(sql, two_tenants[tenancy.DEFAULT]["call"])
        # nor write rows in another tenant's name
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(
                "INSERT INTO audit_log (tenant_id, actor, action) VALUES ('default', 'b', 'x')"
            )
    finally:
        await conn.close()


async def test_the_service_role_is_bound_by_row_level_security(service_url: str) -> None:
    conn = await connect(service_url)
    try:
        row = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert row is not None and not row["rolsuper"] and not row["rolbypassrls"]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE jobs")
    finally:
        await conn.close()


async def test_serve_refuses_a_superuser_unless_told_to_bypass(
    settings: Settings, database_url: str
) -> None:
    refused = Service(replace(settings, database_url=database_url))
    with pytest.raises(ConfigError, match="BYPASSRLS"):
        await refused.start()
    await refused.stop()

    allowed = Service(replace(settings, database_url=database_url, allow_rls_bypass=True))
    await allowed.start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http, http.get(allowed.base_url + "/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["rls_bypass"] is True
    finally:
        await allowed.stop()


# --- tokens belong to one tenant (issue 13 item 5) ---------------------------------------


async def _token(db: Conn, tenant: str, name: str, role: str) -> str:
    from service import auth

    await tenancy.set_tenant(db, tenant)
    try:
        token, _ = await auth.create_token(db, name, role, "test")
    finally:
        await tenancy.set_tenant(db, tenancy.DEFAULT)
    return token


async def _api(
    service: Service,
    method: str,
    path: str,
    token: str,
    body: Any = None,
    tenant: str | None = None,
) -> tuple[int, str]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["Callvault-Tenant"] = tenant
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, service.base_url + path, json=body, headers=headers) as r,
    ):
        return r.status, await r.text()


def _bodies(path: str, ids: dict[str, Any]) -> list[Any]:
    """Request bodies that name another tenant's objects, for the routes that take one."""
    if path == "/api/holds":
        return [{"call_id": str(ids["call"]), "reason": "probe"}]
    if path == "/api/dsar":
        return [{"kind": "access", "phone": "+84900000001"}]
    if path.endswith(("/playback", "/recording/pause", "/recording/resume")):
        return [{"reason": "probe"}]
    if path.endswith("/extend"):
        return [{"days": 1, "reason": "probe"}]
    if path.endswith("/reject"):
        return [{"reason": "probe"}]
    if path == "/api/tokens":
        return [{"name": "probe", "role": "qa_trainer"}]
    return [None]


async def test_a_tenant_token_finds_nothing_of_another_tenant_on_any_api_route(
    two_tenants: dict[str, dict[str, Any]], db: Conn, service: Service
) -> None:
    """Every /api operation of the OpenAPI document, with each of tenant B's ids in every path
    parameter, asked with tenant A's admin token: 404 for B's objects, and no answer carries
    any id of B."""
    import json

    ours = await _token(db, tenancy.DEFAULT, "walker", "admin")
    theirs = two_tenants[OTHER]
    their_ids = {str(v) for k, v in theirs.items() if k != "audit"} | {f"seeder-of-{OTHER}"}
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(service.base_url + "/openapi.json") as r:
        spec = json.loads(await r.text())
    walked = 0
    for path, item in spec["paths"].items():
        if not path.startswith("/api"):
            continue
        for method in item:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            targets = (
                [path.replace("{id}", str(v)) for k, v in theirs.items() if k != "audit"]
                if "{" in path
                else [path]
            )
            for target in targets:
                for body in _bodies(path, theirs):
                    if body is None and method == "post":
                        body = {}
                    status, text = await _api(service, method.upper(), target, ours, body)
                    walked += 1
                    if path.startswith("/api/tenants"):
                        # the operator's routes: a tenant's admin is refused whatever the id
                        assert status == 403, (method, target, status, text)
                    elif "{" in path or (path == "/api/holds" and method == "post"):
                        assert status == 404, (method, target, status, text)
                    # an id the request itself named may be echoed ("no call X"), as for any
                    # id that does not exist; nothing else of B's may appear
                    asked = target + json.dumps(body)
                    leaked = [i for i in their_ids if i in text and i not in asked]
                    assert not leaked, (method, target, text)
    assert walked >= 20
    # and nothing of B changed: its hold is active, its token not revoked
    await tenancy.set_tenant(db, OTHER)
    assert await db.fetchval("SELECT released_at FROM holds WHERE id = $1", theirs["hold"]) is None
    assert (
        await db.fetchval("SELECT revoked_at FROM api_tokens WHERE id = $1", theirs["token"])
        is None
    )
    await tenancy.set_tenant(db, tenancy.DEFAULT)


async def test_a_platform_token_acts_for_the_tenant_it_names_and_is_audited_there(
    two_tenants: dict[str, dict[str, Any]], db: Conn, service: Service
) -> None:
    platform = await _token(db, tenancy.ALL, "bpo-dpo", "compliance")
    theirs = two_tenants[OTHER]
    # no tenant named: a clear refusal, not some tenant's data
    status, text = await _api(service, "GET", "/api/holds", platform)
    assert status == 400 and "Callvault-Tenant" in text
    status, text = await _api(service, "GET", "/api/holds", platform, tenant="nobody-here")
    assert status == 404
    status, text = await _api(service, "GET", "/api/holds", platform, tenant=OTHER)
    assert status == 200 and str(theirs["hold"]) in text
    assert str(two_tenants[tenancy.DEFAULT]["hold"]) not in text
    status, text = await _api(
        service, "DELETE", f"/api/holds/{theirs['hold']}", platform, tenant=OTHER
    )
    assert status in (200, 204), text
    trail = await db.fetch("SELECT tenant_id, actor FROM audit_log WHERE action = 'hold_released'")
    assert [(r["tenant_id"], r["actor"]) for r in trail] == [(OTHER, "token:bpo-dpo")]


async def test_a_tenant_token_cannot_name_another_tenant(
    two_tenants: dict[str, dict[str, Any]], db: Conn, service: Service
) -> None:
    ours = await _token(db, tenancy.DEFAULT, "curious", "compliance")
    status, text = await _api(service, "GET", "/api/holds", ours, tenant=OTHER)
    assert status == 404
    assert str(two_tenants[OTHER]["hold"]) not in text


async def test_the_operator_role_reaches_tokens_but_never_call_data(
    two_tenants: dict[str, dict[str, Any]], db: Conn, service: Service
) -> None:
    operator = await _token(db, tenancy.ALL, "platform-ops", "operator")
    for method, path in (
        ("GET", "/api/calls"),
        ("GET", f"/api/calls/{two_tenants[OTHER]['call']}"),
        ("GET", "/api/holds"),
        ("GET", "/api/audit"),
        ("POST", f"/api/recordings/{two_tenants[OTHER]['recording']}/playback"),
    ):
        for tenant in (None, OTHER):
            status, _ = await _api(service, method, path, operator, tenant=tenant)
            assert status == 403, (method, path, tenant)
    status, text = await _api(service, "GET", "/api/tokens", operator, tenant=OTHER)
    assert status == 200 and str(two_tenants[OTHER]["token"]) in text
    assert str(two_tenants[tenancy.DEFAULT]["token"]) not in text
    # operator is a platform role only; a tenant token cannot have it
    with pytest.raises(Exception, match="platform"):
        await _token(db, tenancy.DEFAULT, "not-allowed", "operator")


async def test_token_create_takes_a_tenant(
    two_tenants: dict[str, dict[str, Any]], database_url: str
) -> None:
    import asyncio

    from tests.conftest import run_cli

    def cli(*args: str) -> str:
        result = run_cli(database_url, "token", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    await asyncio.to_thread(
        cli, "create", "--name", "beta-qa", "--role", "qa_trainer", "--tenant", OTHER
    )
    assert "beta-qa" in await asyncio.to_thread(cli, "list", "--tenant", OTHER)
    assert "beta-qa" not in await asyncio.to_thread(cli, "list")  # the default tenant's
    await asyncio.to_thread(cli, "create", "--name", "ops", "--role", "operator", "--tenant", "*")
    refused = await asyncio.to_thread(
        run_cli, database_url, "token", "create", "--name", "x", "--role", "operator"
    )
    assert refused.returncode != 0 and "platform" in refused.stderr
