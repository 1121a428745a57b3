"""Tenants by CLI (``tenant create|list|show``) and by the operator API (``/api/tenants``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.tenants.model import is_plain_secret
from tests.conftest import Service, run_cli
from tests.qa_fixtures import call_api
from tests.tenant_files import ACME, dump, write

Conn = asyncpg.Connection


async def test_create_list_show_by_cli(database_url: str, db: Conn, tmp_path: Path) -> None:
    created = run_cli(database_url, "tenant", "create", "acme", "--name", "ACME Insurance")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "created tenant acme"
    again = run_cli(database_url, "tenant", "create", "acme", "--name", "Other")
    assert again.returncode == 1
    assert again.stderr.strip() == "callvault: error: tenant 'acme' exists already"
    bad = run_cli(database_url, "tenant", "create", "ACME!", "--name", "x")
    assert bad.returncode == 1 and "is not a tenant id" in bad.stderr

    listed = run_cli(database_url, "tenant", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["acme", "default"]
    assert lines[0].endswith("ACME Insurance")

    assert run_cli(database_url, "tenant", "apply", write(tmp_path, ACME)).returncode == 0
    shown = run_cli(
        database_url, "tenant", "show", "acme", env_overrides={"ACME_TWILIO_AUTH_TOKEN": "x" * 32}
    )
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "auth_token_env = ACME_TWILIO_AUTH_TOKEN (resolves)" in out
    assert "api_key_secret_env = ACME_STRINGEE_KEY (DOES NOT RESOLVE)" in out
    assert "signing_secret_file = /nonexistent/acme-stringee (DOES NOT RESOLVE)" in out
    assert "x" * 32 not in out  # the secret itself is never printed
    assert "queue sales" in out and "number +842873009999 queue=sales" in out
    assert "storage: bucket acme-recordings" in out
    audit = await db.fetch("SELECT actor, action FROM audit_log WHERE target_id = 'acme'")
    assert [r["action"] for r in audit] == ["tenant_created", "tenant_applied"]
    assert all(r["actor"].startswith("cli:") for r in audit)

    missing = run_cli(database_url, "tenant", "show", "nobody")
    assert missing.returncode == 1 and "no tenant 'nobody'" in missing.stderr


async def test_default_exists_with_no_tenant_created(db: Conn) -> None:
    rows = await db.fetch("SELECT id, name, policy FROM tenants")
    assert [(r["id"], r["name"], r["policy"]) for r in rows] == [("default", "Default", {})]


@pytest.mark.parametrize(
    ("key", "plain"),
    [
        ("auth_token", True),
        ("api_key_secret", True),
        ("signing_secret", True),
        ("password", True),
        ("db_password", True),
        ("secret_access_key", True),
        ("auth_token_env", False),
        ("signing_secret_file", False),
        ("api_key_sid", False),
        ("kms_key_id", False),
    ],
)
def test_which_keys_are_plain_secrets(key: str, plain: bool) -> None:
    assert is_plain_secret(key) is plain


async def test_operator_api_lists_creates_shows_and_applies(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], db: Conn
) -> None:
    op = tokens["operator"]
    status, body = await call_api(
        http, service, "POST", "/api/tenants", op, {"id": "acme", "name": "ACME"}
    )
    assert status == 201, body
    assert body["id"] == "acme" and body["queues"] == {}
    status, body = await call_api(
        http, service, "POST", "/api/tenants", op, {"id": "acme", "name": "ACME"}
    )
    assert (status, body["error"]["code"]) == (409, "tenant_exists")

    status, body = await call_api(http, service, "GET", "/api/tenants", op)
    assert status == 200
    assert [t["id"] for t in body["items"]] == ["acme", "default"]

    spec: dict[str, Any] = {
        "name": "ACME Insurance",
        "retention": "180d",
        "queues": {"sales": {"language": "en-US"}},
        "numbers": {"+842873009999": {"queue": "sales"}},
        "twilio": {
            "account_sid": "AC0123456789abcdef0123456789abcdef",
            "auth_token_env": "ACME_UNSET_TOKEN_VARIABLE",
        },
    }
    status, body = await call_api(http, service, "PUT", "/api/tenants/acme", op, spec)
    assert status == 200, body
    assert body["changed"] is True
    assert "+ tenants.acme.retention = 180d" in body["changes"]
    assert body["tenant"]["numbers"] == {"+842873009999": {"queue": "sales", "policy": {}}}
    assert body["tenant"]["accounts"][0]["secrets"] == {
        "auth_token_env": {"ref": "ACME_UNSET_TOKEN_VARIABLE", "resolves": False}
    }
    status, body = await call_api(http, service, "PUT", "/api/tenants/acme", op, spec)
    assert (status, body["changed"], body["changes"]) == (200, False, [])

    status, body = await call_api(http, service, "GET", "/api/tenants/acme", op)
    assert status == 200 and body["policy"] == {"retention": 180 * 86400}
    status, body = await call_api(http, service, "GET", "/api/tenants/nobody", op)
    assert status == 404

    # a PUT creates a tenant that does not exist yet
    status, body = await call_api(http, service, "PUT", "/api/tenants/beta", op, {"name": "B"})
    assert status == 200 and body["changed"] is True

    audit = await db.fetch(
        "SELECT actor, action, target_id FROM audit_log WHERE target_type = 'tenant' ORDER BY id"
    )
    assert [(r["actor"], r["action"], r["target_id"]) for r in audit] == [
        ("token:operator-1", "tenant_created", "acme"),
        ("token:operator-1", "tenant_applied", "acme"),
        ("token:operator-1", "tenant_created", "beta"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "A", "numbers": {"+842873009999": {"queue": "sales"}}},
            'tenants.acme.numbers."+842873009999".queue: no queue named "sales"',
        ),
        (
            {"name": "A", "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "s3cr3t"}},
            "tenants.acme.twilio.auth_token: secrets are never written in a tenant file",
        ),
        ({"name": "A", "retention": "forever"}, "tenants.acme.retention:"),
        ({"name": "A", "colour": "red"}, "tenants.acme.colour: unknown key"),
    ],
)
async def test_api_apply_validates_as_the_file_does_and_writes_nothing(
    service: Service,
    http: aiohttp.ClientSession,
    tokens: dict[str, str],
    db: Conn,
    body: dict[str, Any],
    message: str,
) -> None:
    before = await dump(db)
    status, answer = await call_api(
        http, service, "PUT", "/api/tenants/acme", tokens["operator"], body
    )
    assert status == 400
    assert answer["error"]["message"].startswith(message)
    assert "s3cr3t" not in answer["error"]["message"]
    assert await dump(db) == before


async def test_api_refuses_to_change_defaults_policy(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], db: Conn
) -> None:
    status, body = await call_api(
        http,
        service,
        "PUT",
        "/api/tenants/default",
        tokens["operator"],
        {"name": "Default", "consent_mode": "explicit"},
    )
    assert status == 400
    assert body["error"]["code"] == "default_tenant_policy"
    assert "environment and CALLVAULT_CONFIG" in body["error"]["message"]
    assert await db.fetchval("SELECT policy FROM tenants WHERE id = 'default'") == {}


@pytest.mark.parametrize("role", ["admin", "compliance", "qa_trainer", "telephony"])
async def test_only_the_operator_manages_tenants(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], db: Conn, role: str
) -> None:
    before = await dump(db)
    for method, path, body in [
        ("GET", "/api/tenants", None),
        ("POST", "/api/tenants", {"id": "acme", "name": "A"}),
        ("GET", "/api/tenants/default", None),
        ("PUT", "/api/tenants/acme", {"name": "A"}),
    ]:
        status, answer = await call_api(http, service, method, path, tokens[role], body)
        assert status == 403, (method, path, answer)
    assert await dump(db) == before


async def test_the_operator_sees_no_call_data(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    for path in ("/api/calls", "/api/audit", "/api/holds"):
        status, _ = await call_api(http, service, "GET", path, tokens["operator"])
        assert status == 403, path
    # tokens are the operator's to manage (DESIGN: operator = tenants, tokens, health)
    assert (await call_api(http, service, "GET", "/api/tokens", tokens["operator"]))[0] == 200


async def test_openapi_declares_the_operator_routes(
    service: Service, http: aiohttp.ClientSession
) -> None:
    async with http.get(service.base_url + "/openapi.json") as resp:
        doc = await resp.json()
    put = doc["paths"]["/api/tenants/{id}"]["put"]
    assert put["description"] == "Roles: operator."
    assert put["parameters"][0]["schema"]["pattern"] == "^[a-z0-9][a-z0-9-]{1,39}$"
    assert set(doc["paths"]["/api/tenants"]) == {"get", "post"}
    assert doc["paths"]["/api/tokens"]["get"]["description"] == "Roles: admin, operator."
