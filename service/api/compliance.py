"""Compliance routes: legal holds, data-subject requests, the audit trail, ledger checks."""

from __future__ import annotations

from aiohttp import web

from retention import holds, requests
from service import audit, ledger
from service.api.common import (
    body_uuid,
    json_body,
    path_uuid,
    query_datetime,
    query_int,
    query_text,
)
from service.auth.http import principal, requires
from service.context import POOL, SETTINGS, VAULT
from service.errors import BadRequest, NotFound
from service.links import LINKS

routes = web.RouteTableDef()


@routes.get("/api/holds")
@requires("compliance")
async def list_holds(request: web.Request) -> web.Response:
    include = request.query.get("include_released", "false")
    if include not in ("true", "false"):
        raise BadRequest("include_released must be true or false", code="bad_include_released")
    limit = query_int(request, "limit", 100, 1, 1000)
    async with request.app[POOL].acquire() as conn:
        items = await holds.list_holds(conn, include_released=include == "true", limit=limit)
    return web.json_response({"items": items})


@routes.post("/api/holds")
@requires("compliance")
async def place_hold(request: web.Request) -> web.Response:
    body = await json_body(request)
    call_id = body_uuid(body["call_id"], "call_id") if body.get("call_id") is not None else None
    phone = body.get("phone")
    if phone is not None and not isinstance(phone, str):
        raise BadRequest("phone must be a string", code="bad_phone")
    case_ref = body.get("case_ref")
    async with request.app[POOL].acquire() as conn:
        placed = await holds.place(
            conn,
            request.app[VAULT],
            principal(request).actor,
            call_id=call_id,
            phone=phone,
            reason=body.get("reason", ""),
            case_ref=case_ref,
        )
    return web.json_response(placed.as_json(), status=201)


@routes.delete("/api/holds/{id}")
@requires("compliance")
async def release_hold(request: web.Request) -> web.Response:
    hold_id = path_uuid(request)
    async with request.app[POOL].acquire() as conn:
        await holds.release(conn, request.app[VAULT], hold_id, principal(request).actor)
    return web.Response(status=204)


@routes.post("/api/dsar")
@requires("compliance")
async def create_request(request: web.Request) -> web.Response:
    body = await json_body(request)
    kind = body.get("kind")
    if not isinstance(kind, str):
        raise BadRequest("kind is required", code="bad_kind")
    async with request.app[POOL].acquire() as conn:
        request_id = await requests.create(
            conn,
            request.app[VAULT],
            kind=kind,
            phone=body.get("phone"),
            actor=principal(request).actor,
            deadline_s=request.app[SETTINGS].dsar_deadline_s,
        )
        row = await requests.get(conn, request_id)
    return web.json_response(requests.request_json(row), status=201)


@routes.get("/api/dsar/{id}")
@requires("compliance")
async def get_request(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await requests.get(conn, path_uuid(request))
    return web.json_response(requests.request_json(row))


@routes.post("/api/dsar/{id}/bundle")
@requires("compliance")
async def bundle_link(request: web.Request) -> web.Response:
    """A short-lived link to an access request's bundle; issuing it is audited."""
    request_id = path_uuid(request)
    async with request.app[POOL].acquire() as conn:
        row = await requests.get(conn, request_id)
        if row["bundle_key"] is None:
            raise NotFound("this request has no bundle (yet)")
        await audit.record(
            conn, principal(request).actor, "dsar_bundle_link", "dsar", str(request_id), {}
        )
    token, expires = request.app[LINKS].sign(
        row["bundle_key"],
        f"dsar_bundle:{request_id}",
        request.app[SETTINGS].link_ttl_s,
        download_name=f"callvault-access-{request_id}.zip",
    )
    return web.json_response(
        {
            "url": f"{request.app[SETTINGS].public_url}/files/{token}",
            "expires_at": expires.isoformat(),
        }
    )


@routes.get("/api/audit")
@requires("compliance")
async def audit_trail(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        items = await audit.query(
            conn,
            since=query_datetime(request, "from"),
            until=query_datetime(request, "to"),
            actor=query_text(request, "actor"),
            action=query_text(request, "action"),
            limit=query_int(request, "limit", 200, 1, 5000),
        )
    return web.json_response({"items": items})


@routes.get("/api/ledger/verify")
@requires("compliance")
async def verify_ledger(request: web.Request) -> web.Response:
    raw = request.query.get("call_id")
    call_id = body_uuid(raw, "call_id") if raw else None
    async with request.app[POOL].acquire() as conn:
        report = await ledger.verify(conn, call_id)
    return web.json_response(report.as_json())
