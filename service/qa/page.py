"""``/qa`` (the QA trainers' page and its assets, all served by callvault: no CDN) and
``/openapi.json`` (generated from the API's operations)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from aiohttp import web

from service.api.spec import openapi
from service.context import SETTINGS
from service.errors import NotFound

routes = web.RouteTableDef()
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
_SECURITY = {
    # everything comes from callvault itself; media only through our signed /files links
    "Content-Security-Policy": "default-src 'self'; media-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def _static(name: str) -> bytes:
    """Read once: the assets ship inside the package and never change while serving."""
    return resources.files("service.qa").joinpath("static", name).read_bytes()


@routes.get("/qa")
async def page(request: web.Request) -> web.Response:
    return web.Response(
        body=_static("index.html"), content_type="text/html", charset="utf-8", headers=_SECURITY
    )


@routes.get("/qa/{name}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _ASSETS:
        raise NotFound("no such asset")
    return web.Response(
        body=_static(name), content_type=_ASSETS[name], charset="utf-8", headers=_SECURITY
    )


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(_openapi(request.app[SETTINGS].public_url))


@functools.cache
def _openapi(public_url: str) -> dict[str, Any]:
    # the operations are registered at import, before any request: build the document once
    return openapi(public_url)
