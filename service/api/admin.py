"""``/api/tokens`` (admin): create, list and revoke API tokens."""

from __future__ import annotations

from aiohttp import web

from service import auth
from service.api import schemas
from service.api.spec import BODY, operation, path_id
from service.auth.http import principal
from service.errors import NotFound
from service.observability import audit
from service.vocabulary import Role
from service.web.context import POOL

TOKEN_BODY = {
    "type": "object",
    "required": ["name", "role"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"},
        "role": {"enum": list(auth.ROLES)},
    },
}


@operation(
    "POST",
    "/api/tokens",
    roles=(Role.ADMIN, Role.OPERATOR),
    summary="Create a token (shown once)",
    body=TOKEN_BODY,
    responses={201: schemas.TOKEN_CREATED, 409: schemas.ERROR_SCHEMA},
    tag="admin",
)
async def create_token(request: web.Request) -> web.Response:
    body = request[BODY]
    actor = principal(request).actor
    async with request.app[POOL].acquire() as conn, conn.transaction():
        token, row = await auth.create_token(conn, body["name"], body["role"], actor)
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


@operation(
    "GET",
    "/api/tokens",
    roles=(Role.ADMIN, Role.OPERATOR),
    summary="List tokens (never their values)",
    responses={200: schemas.items(schemas.TOKEN)},
    tag="admin",
)
async def list_tokens(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        return web.json_response({"items": await auth.list_tokens(conn)})


@operation(
    "DELETE",
    "/api/tokens/{id}",
    roles=(Role.ADMIN, Role.OPERATOR),
    summary="Revoke a token",
    responses={204: None, 404: None},
    tag="admin",
)
async def revoke_token(request: web.Request) -> web.Response:
    token_id = path_id(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await auth.revoke_token(conn, token_id):
            raise NotFound("no such active token")
        await audit.record(
            conn, principal(request).actor, "token_revoked", "token", str(token_id), {}
        )
    return web.Response(status=204)
