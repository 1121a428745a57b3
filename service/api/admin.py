"""``/api/tokens`` (admin): create, list and revoke API tokens."""

from __future__ import annotations

from aiohttp import web

from service import audit, auth
from service.api.common import json_body, path_uuid
from service.auth.http import principal, requires
from service.context import POOL
from service.errors import BadRequest, NotFound

routes = web.RouteTableDef()


@routes.post("/api/tokens")
@requires("admin")
async def create_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    name, role = body.get("name"), body.get("role")
    if not isinstance(name, str) or not isinstance(role, str):
        raise BadRequest("name and role are required strings", code="bad_token_request")
    actor = principal(request).actor
    async with request.app[POOL].acquire() as conn, conn.transaction():
        token, row = await auth.create_token(conn, name, role, actor)
        await audit.record(
            conn,
            actor,
            "token_created",
            "token",
            str(row["id"]),
            {"name": row["name"], "role": row["role"]},
        )
    return web.json_response(
        {"id": str(row["id"]), "name": row["name"], "role": row["role"], "token": token},
        status=201,
    )


@routes.get("/api/tokens")
@requires("admin")
async def list_tokens(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        return web.json_response({"items": await auth.list_tokens(conn)})


@routes.delete("/api/tokens/{id}")
@requires("admin")
async def revoke_token(request: web.Request) -> web.Response:
    token_id = path_uuid(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await auth.revoke_token(conn, token_id):
            raise NotFound("no such active token")
        await audit.record(
            conn, principal(request).actor, "token_revoked", "token", str(token_id), {}
        )
    return web.Response(status=204)
