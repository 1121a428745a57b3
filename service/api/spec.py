"""One source for the API: each operation declares its roles, parameters, body and responses;
the same declaration authenticates and validates every request and is what ``/openapi.json``
publishes. A route cannot drift from its documentation because there is no second copy.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from aiohttp import web

from service.auth.http import TENANT_HEADER, allowed_roles, requires
from service.errors import BadRequest, NotFound
from service.web.untrusted import check_text, loads_json, parse_int, parse_timestamp

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
QUERY: web.RequestKey[dict[str, Any]] = web.RequestKey("query")
BODY: web.RequestKey[Any] = web.RequestKey("body")

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
UUID = {"type": "string", "format": "uuid"}
DATETIME = {"type": "string", "format": "date-time"}

TENANT_PARAM = {
    "name": TENANT_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{1,39}$"},
    "description": "The tenant a platform token acts for (required for a platform token "
    "with a tenant role; an operator without it acts for the platform). A tenant token may "
    "only name its own tenant: any other is 404.",
}


# in a response schema: the media type of a response that is not JSON (an SVG image)
MEDIA_TYPE = "x-media-type"


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    roles: tuple[str, ...]
    summary: str
    query: list[Param] = field(default_factory=list)
    body: dict[str, Any] | None = None
    responses: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    tag: str = "api"
    # path parameters that are not uuids (the default), by name
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)


REGISTRY: list[Operation] = []


def _free_text(param: Param) -> bool:
    schema = param.schema
    return schema.get("type") == "string" and "format" not in schema and "enum" not in schema


def _convert(param: Param, raw: str) -> Any:
    schema = param.schema
    kind = schema.get("type")
    bad = BadRequest(
        f"{param.name}: {param.description or 'invalid value'}", code=f"bad_{param.name}"
    )
    check_text(raw, param.name, code=f"bad_{param.name}")
    if kind == "integer":
        value = parse_int(raw)
        if value is None:
            raise bad
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise bad
        return value
    if schema.get("format") == "date-time":
        parsed = parse_timestamp(raw)
        if parsed is None:
            raise bad
        return parsed
    if schema.get("format") == "uuid":
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise bad from None
    if "enum" in schema and raw not in schema["enum"]:
        raise bad
    if len(raw) > schema.get("maxLength", 1000):
        raise bad
    return raw


def _check_query_string(request: web.Request) -> None:
    # aiohttp's parsed query silently turns bytes that are not UTF-8 (%FF, or the surrogate
    # %ED%A0%80) into U+FFFD; a filter that is not what the client sent is refused instead
    try:
        urllib.parse.unquote_to_bytes(request.rel_url.raw_query_string).decode("utf-8")
    except UnicodeError:
        raise BadRequest("the query string is not UTF-8", code="bad_query") from None


def operation(
    method: str,
    path: str,
    *,
    roles: tuple[str, ...],
    summary: str,
    query: list[Param] | None = None,
    body: dict[str, Any] | None = None,
    responses: dict[int, dict[str, Any] | None],
    tag: str = "api",
    path_schemas: dict[str, dict[str, Any]] | None = None,
    tenant_optional: bool = False,
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        params = query or []
        validator = (
            jsonschema.Draft202012Validator(
                body, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            )
            if body
            else None
        )

        async def validated(request: web.Request) -> web.StreamResponse:
            values: dict[str, Any] = {}
            _check_query_string(request)
            for param in params:
                raw = request.query.get(param.name)
                if raw == "" and _free_text(param):
                    raw = None  # an empty text filter filters nothing
                if raw is None:
                    if param.required:
                        raise BadRequest(f"{param.name} is required", code=f"bad_{param.name}")
                    values[param.name] = param.schema.get("default")
                    continue
                values[param.name] = _convert(param, raw)
            request[QUERY] = values
            if validator is not None:
                if request.content_type != "application/json":
                    raise BadRequest(
                        "send a JSON body with Content-Type: application/json", code="bad_json"
                    )
                data = loads_json(await request.read() or b"null")
                error = jsonschema.exceptions.best_match(validator.iter_errors(data))
                if error is not None:
                    where = "/".join(str(p) for p in error.absolute_path) or "body"
                    raise BadRequest(f"{where}: {error.message}"[:300], code="invalid_body")
                request[BODY] = data
            return await handler(request)

        validated.__name__ = handler.__name__
        guarded = requires(*roles, tenant_optional=tenant_optional)(validated)
        REGISTRY.append(
            Operation(
                method,
                path,
                guarded,
                roles,
                summary,
                params,
                body,
                responses,
                tag,
                path_schemas or {},
            )
        )
        return guarded

    return register


def path_id(request: web.Request, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {name.replace('_', ' ')}") from None


def add_routes(app: web.Application) -> None:
    for op in REGISTRY:
        app.router.add_route(op.method, op.path, op.handler)


def openapi(public_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in REGISTRY:
        parameters: list[dict[str, Any]] = [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "schema": p.schema,
                "description": p.description,
            }
            for p in op.query
        ]
        for segment in op.path.split("/"):
            if segment.startswith("{") and segment.endswith("}"):
                name = segment[1:-1]
                parameters.append(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "schema": op.path_schemas.get(name, UUID),
                    }
                )
        if op.path.startswith("/api/"):
            parameters.append(TENANT_PARAM)
        responses: dict[str, Any] = {}
        for status, schema in sorted(op.responses.items()):
            entry: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "response")}
            if schema is not None:
                # a response that is not JSON names its media type (MEDIA_TYPE)
                media = schema.get(MEDIA_TYPE, "application/json")
                body = {k: v for k, v in schema.items() if k != MEDIA_TYPE}
                entry["content"] = {media: {"schema": body}}
            responses[str(status)] = entry
        errors = [
            (400, "bad request"),
            (401, "missing, unknown or revoked token"),
            (403, "the token's role may not do this"),
            (429, "too many failed attempts"),
        ]
        if op.body is not None:
            errors.append((413, "the body is too large"))
        if "{" in op.path:
            errors.append((404, "no such resource"))
        elif op.path.startswith("/api/"):
            errors.append(
                (404, f"the {TENANT_HEADER} header names no tenant this token may act for")
            )
        for status, text in errors:
            responses.setdefault(
                str(status),
                {"description": text, "content": {"application/json": {"schema": ERROR}}},
            )
        spec: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": op.handler.__name__,
            "description": f"Roles: {', '.join(allowed_roles(op.roles))}.",
            "parameters": parameters,
            "responses": responses,
            "security": [{"bearer": []}],
        }
        if op.body is not None:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": op.body}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callvault",
            "version": "1",
            "description": "Call-recording consent and retention service.",
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR},
        },
    }


_STATUS_TEXT = {
    200: "OK",
    201: "created",
    204: "done",
    404: "not found",
    409: "conflict",
    410: "gone",
}
