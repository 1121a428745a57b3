"""Compliance routes: legal holds, data-subject requests, the audit trail, ledger checks."""

from __future__ import annotations

import uuid

from aiohttp import web

from retention import holds, requests
from service import audit, ledger
from service.api import schemas
from service.api.spec import BODY, DATETIME, QUERY, UUID, Param, operation, path_id
from service.auth.http import principal
from service.context import POOL, SETTINGS, VAULT
from service.links import LINKS

COMPLIANCE = ("compliance",)
# Spaces, dots, dashes and brackets are allowed as people write numbers; the server then
# requires a valid E.164 number (400 bad_phone otherwise).
PHONE = {
    "type": "string",
    "pattern": r"^[+0-9][0-9 ().-]{6,24}$",
    "description": "E.164, e.g. +84905550123 (spaces allowed)",
}
HOLD_BODY = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "call_id": UUID,
        "phone": PHONE,
        "reason": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"},
        "case_ref": {"type": ["string", "null"], "maxLength": 200},
    },
    "oneOf": [{"required": ["call_id"]}, {"required": ["phone"]}],
}
DSAR_BODY = {
    "type": "object",
    "required": ["kind", "phone"],
    "properties": {
        "kind": {"enum": list(requests.KINDS)},
        "phone": PHONE,
    },
}


@operation(
    "GET",
    "/api/holds",
    roles=COMPLIANCE,
    summary="Legal holds",
    query=[
        Param(
            "include_released",
            {"enum": ["true", "false"], "default": "false"},
            description="true or false",
        ),
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            description="1 to 1000",
        ),
    ],
    responses={200: schemas.items(schemas.HOLD)},
    tag="compliance",
)
async def list_holds(request: web.Request) -> web.Response:
    q = request[QUERY]
    async with request.app[POOL].acquire() as conn:
        items = await holds.list_holds(
            conn, include_released=q["include_released"] == "true", limit=q["limit"]
        )
    return web.json_response({"items": items})


@operation(
    "POST",
    "/api/holds",
    roles=COMPLIANCE,
    summary="Place a hold on a call or a number",
    body=HOLD_BODY,
    responses={201: schemas.HOLD_PLACED, 404: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def place_hold(request: web.Request) -> web.Response:
    body = request[BODY]
    call_id = uuid.UUID(body["call_id"]) if body.get("call_id") else None
    async with request.app[POOL].acquire() as conn:
        placed = await holds.place(
            conn,
            request.app[VAULT],
            principal(request).actor,
            call_id=call_id,
            phone=body.get("phone"),
            reason=body["reason"],
            case_ref=body.get("case_ref"),
        )
    return web.json_response(placed.as_json(), status=201)


@operation(
    "DELETE",
    "/api/holds/{id}",
    roles=COMPLIANCE,
    summary="Release a hold",
    responses={204: None, 404: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def release_hold(request: web.Request) -> web.Response:
    hold_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        await holds.release(conn, request.app[VAULT], hold_id, principal(request).actor)
    return web.Response(status=204)


@operation(
    "POST",
    "/api/dsar",
    roles=COMPLIANCE,
    summary="Receive a data-subject request",
    body=DSAR_BODY,
    responses={201: schemas.DSAR},
    tag="compliance",
)
async def create_request(request: web.Request) -> web.Response:
    body = request[BODY]
    async with request.app[POOL].acquire() as conn:
        request_id = await requests.create(
            conn,
            request.app[VAULT],
            kind=body["kind"],
            phone=body["phone"],
            actor=principal(request).actor,
            deadline_s=request.app[SETTINGS].dsar_deadline_s,
        )
        row = await requests.get(conn, request_id)
    return web.json_response(requests.request_json(row), status=201)


@operation(
    "GET",
    "/api/dsar/{id}",
    roles=COMPLIANCE,
    summary="A data-subject request",
    responses={200: schemas.DSAR, 404: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def get_request(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await requests.get(conn, path_id(request))
    return web.json_response(requests.request_json(row))


@operation(
    "POST",
    "/api/dsar/{id}/bundle",
    roles=COMPLIANCE,
    summary="A short-lived link to an access request's bundle (audited); 410 once the bundle "
    "has expired (bundle_expired) or was deleted by an erasure (bundle_erased)",
    responses={200: schemas.LINK, 404: schemas.ERROR_SCHEMA, 410: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def bundle_link(request: web.Request) -> web.Response:
    request_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        key, store = await requests.bundle_location(conn, request_id)
        await audit.record(
            conn, principal(request).actor, "dsar_bundle_link", "dsar", str(request_id), {}
        )
    return web.json_response(
        request.app[LINKS].link(
            key,
            f"dsar_bundle:{request_id}",
            download_name=f"callvault-access-{request_id}.zip",
            store=store,
        )
    )


@operation(
    "GET",
    "/api/audit",
    roles=COMPLIANCE,
    summary="The audit trail, newest first",
    query=[
        Param("from", DATETIME, description="ISO 8601 date-time with a zone"),
        Param("to", DATETIME, description="ISO 8601 date-time with a zone"),
        Param("actor", {"type": "string", "maxLength": 200}),
        Param("action", {"type": "string", "maxLength": 200}),
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 5000, "default": 200},
            description="1 to 5000",
        ),
    ],
    responses={200: schemas.items(schemas.AUDIT_ENTRY)},
    tag="compliance",
)
async def audit_trail(request: web.Request) -> web.Response:
    q = request[QUERY]
    async with request.app[POOL].acquire() as conn:
        items = await audit.query(
            conn,
            since=q["from"],
            until=q["to"],
            actor=q["actor"],
            action=q["action"],
            limit=q["limit"],
        )
    return web.json_response({"items": items})


@operation(
    "GET",
    "/api/ledger/verify",
    roles=COMPLIANCE,
    summary="Recompute the consent ledger's hash chains (all, or one call's)",
    query=[Param("call_id", UUID, description="a call id")],
    responses={200: schemas.VERIFY, 404: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def verify_ledger(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        report = await ledger.verify(conn, request[QUERY]["call_id"])
    return web.json_response(report.as_json())
