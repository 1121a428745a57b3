"""Issue 13 item 9 and the API around it: ``GET /api/whoami`` names the token and the tenant
a request acts for, ``/openapi.json`` declares the ``Callvault-Tenant`` header on every /api
operation, and token lists (API and CLI) say each token's tenant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import auth
from service.config import Settings
from service.db import tenancy
from service.db.pool import connect
from tests.conftest import Service, run_cli
from tests.waiting import eventually

Conn = asyncpg.Connection
OTHER = "beta"


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    yield svc
    await svc.stop()


async def make_token(db: Conn, tenant: str, name: str, role: str) -> str:
    await tenancy.set_tenant(db, tenant)
    try:
        token, _ = await auth.create_token(db, name, role, "test")
    finally:
        await tenancy.set_tenant(db, tenancy.DEFAULT)
    return token


async def get(
    service: Service, path: str, token: str, tenant: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["Callvault-Tenant"] = tenant
    async with (
        aiohttp.ClientSession() as http,
        http.get(service.base_url + path, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_whoami_names_the_token_and_the_tenant_it_acts_for(
    db: Conn, service: Service
) -> None:
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Beta BPO')", OTHER)
    ours = await make_token(db, tenancy.DEFAULT, "trainer-a", "qa_trainer")
    platform = await make_token(db, tenancy.ALL, "bpo-dpo", "qa_trainer")

    status, me = await get(service, "/api/whoami", ours)
    assert status == 200
    assert me == {
        "token_name": "trainer-a",
        "role": "qa_trainer",
        "tenant": {"id": "default", "name": "Default"},
        "platform": False,
    }
    # a tenant token may not name another tenant
    status, body = await get(service, "/api/whoami", ours, tenant=OTHER)
    assert status == 404 and body["error"]["code"] == "unknown_tenant"

    # a platform token learns it is one before it has chosen a tenant, then acts for it
    status, me = await get(service, "/api/whoami", platform)
    assert status == 200 and me["platform"] is True and me["tenant"] is None
    status, me = await get(service, "/api/whoami", platform, tenant=OTHER)
    assert status == 200 and me["tenant"] == {"id": OTHER, "name": "Beta BPO"}
    status, body = await get(service, "/api/whoami", platform, tenant="nobody-here")
    assert status == 404 and body["error"]["code"] == "unknown_tenant"
    # the exception is whoami's only: other routes still need the header
    status, body = await get(service, "/api/calls", platform)
    assert status == 400 and body["error"]["code"] == "tenant_required"


async def test_openapi_declares_the_tenant_header_on_every_api_operation(
    service: Service,
) -> None:
    async with aiohttp.ClientSession() as http, http.get(service.base_url + "/openapi.json") as r:
        doc = await r.json()
    operations = [
        (path, method, op)
        for path, item in doc["paths"].items()
        if path.startswith("/api/")
        for method, op in item.items()
    ]
    assert len(operations) >= 10
    for path, method, op in operations:
        headers = [p for p in op["parameters"] if p["in"] == "header"]
        assert [(h["name"], h["required"]) for h in headers] == [("Callvault-Tenant", False)], (
            method,
            path,
        )
        assert "404" in op["responses"], (method, path)
    whoami = doc["paths"]["/api/whoami"]["get"]
    assert set(whoami["responses"]["200"]["content"]["application/json"]["schema"]["required"]) == {
        "token_name",
        "role",
        "tenant",
        "platform",
    }


async def test_token_lists_show_each_tokens_tenant(
    db: Conn, service: Service, database_url: str
) -> None:
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Beta BPO')", OTHER)
    admin = await make_token(db, tenancy.DEFAULT, "admin-a", "admin")
    operator = await make_token(db, tenancy.ALL, "ops", "operator")
    await make_token(db, OTHER, "beta-qa", "qa_trainer")

    status, listed = await get(service, "/api/tokens", operator)
    assert status == 200
    tenants = {t["name"]: t["tenant"] for t in listed["items"]}
    assert tenants == {"admin-a": "default", "ops": None, "beta-qa": OTHER}
    # a tenant's admin sees its own tenant's tokens only
    status, listed = await get(service, "/api/tokens", admin)
    assert {t["name"]: t["tenant"] for t in listed["items"]} == {"admin-a": "default"}

    out = await asyncio.to_thread(run_cli, database_url, "token", "list", "--tenant", "*")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[-1]: line.split()[3] for line in out.stdout.splitlines()}
    assert rows == {"admin-a": "default", "ops": "*", "beta-qa": OTHER}


async def test_a_tokens_last_use_is_written_at_most_once_a_minute(
    db: Conn, service: Service
) -> None:
    """A read does not write: the token's row changes on its first use and then only once its
    ``last_used_at`` is a minute old by the database's clock (the row's ``xmin`` says whether
    anything was written); a revoked token is refused whatever its last use."""
    token = await make_token(db, tenancy.DEFAULT, "trainer-last-use", "qa_trainer")
    row = "SELECT last_used_at, xmin::text AS xmin FROM api_tokens WHERE name = $1"
    before = await db.fetchrow(row, "trainer-last-use")
    assert before["last_used_at"] is None

    assert (await get(service, "/api/whoami", token))[0] == 200
    first = await db.fetchrow(row, "trainer-last-use")
    assert first["last_used_at"] is not None and first["xmin"] != before["xmin"]

    for _ in range(3):
        assert (await get(service, "/api/whoami", token))[0] == 200
    assert await db.fetchrow(row, "trainer-last-use") == first  # not written again

    # a minute later by the database's clock (moved back instead of waiting)
    await db.execute(
        "UPDATE api_tokens SET last_used_at = now() - interval '61 seconds' WHERE name = $1",
        "trainer-last-use",
    )
    aged = await db.fetchrow(row, "trainer-last-use")
    assert (await get(service, "/api/whoami", token))[0] == 200
    again = await db.fetchrow(row, "trainer-last-use")
    assert again["xmin"] != aged["xmin"]
    assert again["last_used_at"] > aged["last_used_at"]
    assert await db.fetchval("SELECT now() - $1::timestamptz < interval '1 minute'", again[0])

    await db.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1", "trainer-last-use")
    status, body = await get(service, "/api/whoami", token)
    assert status == 401, body


NAME = "revoked-while-looked-up"


async def test_a_lookup_blocked_by_a_committing_revoke_is_refused(
    db: Conn, database_url: str
) -> None:
    """A lookup that writes the token's last use waits on a revocation committing meanwhile,
    then refuses the token (as the plain UPDATE did), and its last use stays before it."""
    token = await make_token(db, tenancy.DEFAULT, NAME, "qa_trainer")
    # its last use over a minute old, so that the lookup writes it
    await db.execute(
        "UPDATE api_tokens SET last_used_at = now() - interval '2 minutes' WHERE name = $1",
        NAME,
    )
    other: Any = await connect(database_url)
    try:
        await tenancy.set_tenant(other, tenancy.ALL)
        tx = db.transaction()
        await tx.start()
        await db.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
            NAME,
        )
        pid = other.get_server_pid()
        lookup = asyncio.create_task(auth.authenticate(other, token))

        async def waiting_or_done() -> bool:
            return lookup.done() or bool(
                await db.fetchval(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
                )
            )

        await eventually(waiting_or_done, what="the lookup waiting on the revoke's row lock")
        await tx.commit()
        principal = await lookup
        row = await db.fetchrow(
            "SELECT last_used_at, revoked_at FROM api_tokens WHERE name = $1",
            NAME,
        )
        assert principal is None, "a token revoked (committed) was accepted"
        assert row["last_used_at"] <= row["revoked_at"], "used after its revocation"
    finally:
        await other.close()
