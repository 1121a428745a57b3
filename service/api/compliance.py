"""Compliance routes: legal holds, data-subject requests (and their actions: acknowledge,
extend, reject, lift), the audit trail, ledger checks."""

from __future__ import annotations

import uuid

from aiohttp import web

from retention import clock, dsar, holds
from service import ledger
from service.api import cursor, schemas
from service.api.spec import BODY, DATETIME, QUERY, UUID, Param, operation, path_id
from service.auth.http import principal
from service.config import parse_duration
from service.db import Conn
from service.errors import BadRequest, ConfigError
from service.links.signed import LINKS
from service.observability import audit
from service.vocabulary import Role
from service.web.context import POOL, SETTINGS, VAULT
from service.web.untrusted import parse_timestamp

COMPLIANCE = (Role.COMPLIANCE,)
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
        "kind": {"enum": list(dsar.KINDS)},
        "phone": PHONE,
        "channel": {
            "enum": list(dsar.CHANNELS),
            "description": "how the request came in (optional; not recorded when left out)",
        },
        "received_at": {
            **DATETIME,
            "description": "when the request came in (an email, a call); default now, by the "
            "database's clock; never in the future nor before 2026-01-01T00:00:00+07:00 (Law "
            "91/2025/QH15 in force)",
        },
        "call_ids": {
            "type": "array",
            "items": UUID,
            "minItems": 1,
            "maxItems": 100,
            "description": "correct: the calls the subject names (calls of their number)",
        },
        "statement": {
            "type": "string",
            "minLength": 1,
            "maxLength": dsar.MAX_STATEMENT_CHARS,
            "pattern": r"\S",
            "description": "correct: the subject's statement, attached to the calls (stored "
            "encrypted)",
        },
        "unlink": {
            "type": "boolean",
            "description": "correct: the calls are not the subject's; take their number off",
        },
        "sealed": {
            "type": "boolean",
            "description": "access: the bundle's audio as stored (encrypted), each recording's "
            "data key wrapped by the tenant's own KMS key, to be opened with that key "
            "(README, Sealed exports); 409 for a tenant without one",
        },
    },
}
REASON = {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": r"\S"}
EXTEND_BODY = {
    "type": "object",
    "required": ["days", "reason"],
    "properties": {
        "days": {"type": "integer", "minimum": 1, "maximum": clock.MAX_EXTENSION_DAYS},
        "reason": REASON,
    },
}
REJECT_BODY = {"type": "object", "required": ["reason"], "properties": {"reason": REASON}}
DUE_WITHIN = {"type": "string", "pattern": r"^[0-9]{1,5}[smhdw]$"}
STATUS_FILTER = ["open", "closed", "all", *dsar.STATUSES]
CURSOR = Param(
    "cursor", {"type": "string", "maxLength": 300}, description="next_cursor of the previous page"
)


@operation(
    "GET",
    "/api/holds",
    roles=COMPLIANCE,
    summary="Legal holds: active ones first, then released (with include_released), newest "
    "first; a page at a time (next_cursor)",
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
        CURSOR,
    ],
    responses={200: schemas.items(schemas.HOLD, cursor=True)},
    tag="compliance",
)
async def list_holds(request: web.Request) -> web.Response:
    q = request[QUERY]
    after = cursor.decode(q["cursor"], cursor.flag, cursor.timestamp, cursor.uuid_id)
    async with request.app[POOL].acquire() as conn:
        items = await holds.list_holds(
            conn,
            request.app[VAULT],
            include_released=q["include_released"] == "true",
            limit=q["limit"] + 1,
            after=after,
        )
    page, next_cursor = items[: q["limit"]], None
    if len(items) > q["limit"]:
        last = page[-1]
        next_cursor = cursor.encode(not last["active"], last["placed_at"], last["id"])
    return web.json_response({"items": page, "next_cursor": next_cursor})


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
    summary="Receive a data-subject request (its deadlines set by the tenant's policy); 404 "
    "no_calls for a number with no calls (a withdrawal excepted); 409 already_restricted",
    body=DSAR_BODY,
    responses={
        201: schemas.DSAR,
        400: schemas.ERROR_SCHEMA,
        404: schemas.ERROR_SCHEMA,
        409: schemas.ERROR_SCHEMA,
    },
    tag="compliance",
)
async def create_request(request: web.Request) -> web.Response:
    body = request[BODY]
    received_at = parse_timestamp(body["received_at"]) if "received_at" in body else None
    if "received_at" in body and received_at is None:
        raise BadRequest(
            "received_at: not an ISO 8601 date-time with a zone", code="bad_received_at"
        )
    async with request.app[POOL].acquire() as conn:
        request_id = await dsar.create(
            conn,
            request.app[VAULT],
            kind=body["kind"],
            phone=body["phone"],
            actor=principal(request).actor,
            clock_defaults=clock.for_settings(request.app[SETTINGS]),
            received_at=received_at,
            call_ids=[uuid.UUID(c) for c in body.get("call_ids", [])],
            statement=body.get("statement"),
            unlink=bool(body.get("unlink", False)),
            channel=body.get("channel"),
            sealed=bool(body.get("sealed", False)),
        )
        row = await dsar.get(conn, request_id)
    return web.json_response(dsar.request_json(row), status=201)


@operation(
    "GET",
    "/api/dsar",
    roles=COMPLIANCE,
    summary="Data-subject requests, soonest deadline first, with the time left on each; a "
    "page at a time (next_cursor)",
    query=[
        Param(
            "status",
            {"enum": STATUS_FILTER, "default": "open"},
            description="open (default), closed, all, or one status",
        ),
        Param("kind", {"enum": list(dsar.KINDS)}, description="one kind"),
        Param(
            "due_within",
            DUE_WITHIN,
            description="only open requests with a deadline (acknowledge or complete) within "
            "this long, overdue ones included: 2d, 36h",
        ),
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            description="1 to 1000",
        ),
        CURSOR,
    ],
    responses={200: schemas.items(schemas.DSAR, cursor=True)},
    tag="compliance",
)
async def list_requests(request: web.Request) -> web.Response:
    q = request[QUERY]
    due_within = None
    if q["due_within"] is not None:
        try:
            due_within = parse_duration("due_within", q["due_within"])
        except ConfigError as exc:
            raise BadRequest(exc.message, code="bad_due_within") from None
    after = cursor.decode(
        q["cursor"], cursor.flag, cursor.timestamp, cursor.timestamp, cursor.uuid_id
    )
    async with request.app[POOL].acquire() as conn:
        rows = await dsar.list_requests(
            conn,
            statuses=_statuses(q["status"]),
            due_within_s=due_within,
            kind=q["kind"],
            limit=q["limit"] + 1,
            after=after,
        )
    page = rows[: q["limit"]]
    next_cursor = None
    if len(rows) > q["limit"]:
        last = page[-1]
        next_cursor = cursor.encode(
            last["sort_closed"], last["sort_deadline"], last["received_at"], last["id"]
        )
    return web.json_response(
        {"items": [dsar.request_json(r) for r in page], "next_cursor": next_cursor}
    )


def _statuses(wanted: str) -> list[str] | None:
    if wanted == "all":
        return None
    if wanted == "open":
        return [s for s in dsar.STATUSES if s not in clock.CLOSED]
    if wanted == "closed":
        return [s.value for s in clock.CLOSED]
    return [wanted]


@operation(
    "GET",
    "/api/dsar/{id}",
    roles=COMPLIANCE,
    summary="A data-subject request, with the time left on its deadlines",
    responses={200: schemas.DSAR, 404: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def get_request(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        return await _answer(conn, path_id(request))


async def _answer(conn: Conn, request_id: uuid.UUID) -> web.Response:
    """The request as the action left it, read on the action's own connection: one pool
    connection a request, not a second one while the pool may be at its limit."""
    return web.json_response(dsar.request_json(await dsar.get(conn, request_id)))


@operation(
    "POST",
    "/api/dsar/{id}/acknowledge",
    roles=COMPLIANCE,
    summary="The subject has been told the request arrived (once)",
    responses={200: schemas.DSAR, 404: schemas.ERROR_SCHEMA, 409: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def acknowledge_request(request: web.Request) -> web.Response:
    request_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        await dsar.acknowledge(conn, request_id, principal(request).actor)
        return await _answer(conn, request_id)


@operation(
    "POST",
    "/api/dsar/{id}/extend",
    roles=COMPLIANCE,
    summary="The one extension, with a reason, before the deadline (at most the policy's, "
    "itself at most 15 days)",
    body=EXTEND_BODY,
    responses={
        200: schemas.DSAR,
        400: schemas.ERROR_SCHEMA,
        404: schemas.ERROR_SCHEMA,
        409: schemas.ERROR_SCHEMA,
    },
    tag="compliance",
)
async def extend_request(request: web.Request) -> web.Response:
    request_id = path_id(request)
    body = request[BODY]
    async with request.app[POOL].acquire() as conn:
        await dsar.extend(
            conn,
            request_id,
            principal(request).actor,
            days=body["days"],
            reason=body["reason"],
            clock_defaults=clock.for_settings(request.app[SETTINGS]),
        )
        return await _answer(conn, request_id)


@operation(
    "POST",
    "/api/dsar/{id}/reject",
    roles=COMPLIANCE,
    summary="Close a request without carrying it out, with a reason",
    body=REJECT_BODY,
    responses={200: schemas.DSAR, 404: schemas.ERROR_SCHEMA, 409: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def reject_request(request: web.Request) -> web.Response:
    request_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        await dsar.reject(
            conn, request_id, principal(request).actor, reason=request[BODY]["reason"]
        )
        return await _answer(conn, request_id)


@operation(
    "POST",
    "/api/dsar/{id}/lift",
    roles=COMPLIANCE,
    summary="Lift a restriction: playback and export are allowed again",
    responses={200: schemas.DSAR, 404: schemas.ERROR_SCHEMA, 409: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def lift_restriction(request: web.Request) -> web.Response:
    request_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        await dsar.lift(conn, request_id, principal(request).actor)
        return await _answer(conn, request_id)


@operation(
    "POST",
    "/api/dsar/{id}/bundle",
    roles=COMPLIANCE,
    summary="A short-lived link to an access request's bundle (audited); 410 once the bundle "
    "has expired (bundle_expired) or was deleted by an erasure (bundle_erased); 403 restricted "
    "while the subject's restriction is in force",
    responses={
        200: schemas.LINK,
        403: schemas.ERROR_SCHEMA,
        404: schemas.ERROR_SCHEMA,
        410: schemas.ERROR_SCHEMA,
    },
    tag="compliance",
)
async def bundle_link(request: web.Request) -> web.Response:
    request_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        key, store = await dsar.bundle_location(conn, request_id)
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
    summary="The audit trail, newest first; a page at a time (next_cursor)",
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
        CURSOR,
    ],
    responses={200: schemas.items(schemas.AUDIT_ENTRY, cursor=True)},
    tag="compliance",
)
async def audit_trail(request: web.Request) -> web.Response:
    q = request[QUERY]
    after = cursor.decode(q["cursor"], cursor.timestamp, cursor.bigint)
    async with request.app[POOL].acquire() as conn:
        items = await audit.query(
            conn,
            since=q["from"],
            until=q["to"],
            actor=q["actor"],
            action=q["action"],
            limit=q["limit"] + 1,
            after=after,
        )
    page, next_cursor = items[: q["limit"]], None
    if len(items) > q["limit"]:
        next_cursor = cursor.encode(page[-1]["at"], page[-1]["id"])
    return web.json_response({"items": page, "next_cursor": next_cursor})


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
