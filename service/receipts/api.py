"""``GET /api/calls/{id}/receipt`` (compliance) and ``GET /api/receipt-keys`` (any role)."""

from __future__ import annotations

from aiohttp import web

from service.api import schemas
from service.api.spec import QUERY, Param, operation, path_id
from service.auth.http import principal
from service.db import tenancy
from service.observability import audit
from service.receipts import build, canonical, html, keys
from service.vocabulary import Role
from service.web.context import POOL, SETTINGS, VAULT

RECEIPT = schemas.obj(
    [
        "version",
        "tenant",
        "call",
        "notice",
        "events",
        "seal",
        "proof",
        "coverage",
        "key",
        "signature",
    ],
    version={"const": 1},
    tenant={"type": "object"},
    call={"type": "object"},
    notice={"type": ["object", "null"]},
    events={"type": "array"},
    seal={"type": ["object", "null"]},
    proof={"type": ["object", "null"]},
    coverage={"type": "object"},
    key={"type": "object"},
    signature={"type": "object"},
)
RECEIPT_KEY = schemas.obj(
    ["id", "algorithm", "public_key", "created_at", "retired_at", "current"],
    id={"type": "string", "format": "uuid"},
    algorithm={"const": "Ed25519"},
    public_key={"type": "string", "description": "base64 of the raw 32-byte Ed25519 key"},
    created_at={"type": "string", "format": "date-time"},
    retired_at={"type": ["string", "null"], "format": "date-time"},
    current={"type": "boolean"},
)


def _tenant() -> str:
    tenant = tenancy.current()
    assert tenant and tenant != tenancy.ALL  # a tenant role always acts for one tenant
    return tenant


@operation(
    "GET",
    "/api/calls/{id}/receipt",
    roles=(Role.COMPLIANCE,),
    summary="The call's consent receipt: signed JSON (RFC 8785, Ed25519), checkable offline "
    "with `callvault receipt verify`; format=html for a printable page",
    query=[Param("format", {"enum": ["json", "html"], "default": "json"}, description="json|html")],
    responses={200: RECEIPT, 404: schemas.ERROR_SCHEMA, 409: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def call_receipt(request: web.Request) -> web.Response:
    call_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        receipt = await build(
            conn,
            request.app[VAULT],
            _tenant(),
            call_id,
            seal_interval_s=request.app[SETTINGS].seal_interval_s,
        )
        await audit.record(
            conn, principal(request).actor, "receipt_issued", "call", str(call_id), {}
        )
    body = canonical(receipt)
    if request[QUERY]["format"] == "html":
        return web.Response(text=html.render(receipt, body), content_type="text/html")
    return web.Response(body=body, content_type="application/json")


@operation(
    "GET",
    "/api/receipt-keys",
    roles=(Role.TELEPHONY, Role.QA_TRAINER, Role.COMPLIANCE),
    summary="The tenant's receipt signing keys (public), the current one and every retired one",
    responses={200: schemas.items(RECEIPT_KEY)},
    tag="compliance",
)
async def receipt_keys(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        items = await keys.public_keys(conn, request.app[VAULT], _tenant())
    return web.json_response({"items": items})
