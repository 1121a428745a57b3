"""``/api/tenants`` (the platform's ``operator`` role; never a tenant's ``admin``): list, create,
show and apply tenants. A PUT body is one tenant's table of the tenant file as JSON, validated
exactly as ``tenant apply`` validates the TOML; every change is in the audit trail."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.api import schemas
from service.api.spec import BODY, DATETIME, operation
from service.auth.http import principal
from service.errors import NotFound
from service.observability import audit
from service.receipts import keys as receipt_keys
from service.tenants import apply, model, store
from service.vocabulary import Role
from service.web.context import POOL, SETTINGS, VAULT

SLUG = {"type": "string", "pattern": model.SLUG.pattern}
SUMMARY = schemas.obj(
    ["id", "name", "queues", "numbers", "accounts", "own_storage"],
    id={"type": "string"},
    name={"type": "string"},
    created_at=DATETIME,
    updated_at=DATETIME,
    queues={"type": "integer"},
    numbers={"type": "integer"},
    accounts={"type": "integer"},
    own_storage={"type": "boolean"},
)
TENANT = schemas.obj(
    ["id", "name", "policy", "queues", "numbers", "accounts", "storage"],
    id={"type": "string"},
    name={"type": "string"},
    policy={"type": "object"},
    queues={"type": "object"},
    numbers={"type": "object"},
    accounts={"type": "array", "items": {"type": "object"}},
    storage={"type": ["object", "null"]},
    data_keys={"type": ["object", "null"]},
)
APPLIED = schemas.obj(
    ["changed", "changes", "tenant"],
    changed={"type": "boolean"},
    changes={"type": "array", "items": {"type": "string"}},
    tenant=TENANT,
)
CREATE_BODY = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {
        "id": SLUG,
        "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
    },
    "additionalProperties": False,
}
# The tenant table is checked by service.tenants.model (its messages name the TOML path).
SPEC_BODY = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}},
}


@operation(
    "GET",
    "/api/tenants",
    roles=(Role.OPERATOR,),
    summary="List tenants",
    responses={200: schemas.items(SUMMARY)},
    tag="operator",
)
async def list_tenants(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        return web.json_response({"items": await store.list_all(conn)})


@operation(
    "POST",
    "/api/tenants",
    roles=(Role.OPERATOR,),
    summary="Create an empty tenant",
    body=CREATE_BODY,
    responses={201: TENANT, 409: schemas.ERROR_SCHEMA},
    tag="operator",
)
async def create_tenant(request: web.Request) -> web.Response:
    body = request[BODY]
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row = await store.create(conn, body["id"], body["name"])
        # its receipt signing key, made with it (tenants from `apply` get one on first use)
        await receipt_keys.create(conn, request.app[VAULT], row["id"])
        await audit.record(
            conn,
            principal(request).actor,
            "tenant_created",
            "tenant",
            row["id"],
            {"name": row["name"]},
        )
        created = (await store.load(conn, [row["id"]]))[row["id"]]
    return web.json_response(store.as_json(created), status=201)


def _tenant_id(request: web.Request) -> str:
    tenant_id = request.match_info["id"]
    if not model.SLUG.match(tenant_id):
        raise NotFound("no such tenant")
    return tenant_id


@operation(
    "GET",
    "/api/tenants/{id}",
    roles=(Role.OPERATOR,),
    summary="A tenant's configuration (secrets as references, and whether they resolve)",
    responses={200: TENANT, 404: None},
    tag="operator",
    path_schemas={"id": SLUG},
)
async def show_tenant(request: web.Request) -> web.Response:
    tenant_id = _tenant_id(request)
    async with request.app[POOL].acquire() as conn:
        found = (await store.load(conn, [tenant_id])).get(tenant_id)
    if found is None:
        raise NotFound("no such tenant")
    return web.json_response(store.as_json(found))


@operation(
    "PUT",
    "/api/tenants/{id}",
    roles=(Role.OPERATOR,),
    summary="Apply one tenant's configuration (the [tenants.ID] table as JSON); idempotent",
    body=SPEC_BODY,
    responses={200: APPLIED},
    tag="operator",
    path_schemas={"id": SLUG},
)
async def apply_tenant(request: web.Request) -> web.Response:
    tenant_id = request.match_info["id"]
    spec = model.parse_tenant(tenant_id, request[BODY])
    numbers = request.app[SETTINGS].numbers
    actor = principal(request).actor
    async with request.app[POOL].acquire() as conn, conn.transaction():
        plan = await apply.plan_and_apply(
            conn, [spec], actor, dry_run=False, reserved_numbers=numbers
        )
        stored = (await store.load(conn, [tenant_id]))[tenant_id]
    body: dict[str, Any] = {
        "changed": not plan.empty,
        "changes": plan.lines(),
        "tenant": store.as_json(stored),
    }
    return web.json_response(body)
