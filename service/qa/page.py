"""``/qa`` (the QA trainers' page and its assets, all served by callvault: no CDN) and
``/openapi.json`` (generated from the API's operations). :func:`page_routes` serves any such
page (``/console`` too) with the same strict headers; ``/qa/common.js`` is the plumbing the
pages share (language switch, token in sessionStorage, the API's errors)."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from aiohttp import web

from service.api.spec import openapi
from service.errors import NotFound
from service.web.context import SETTINGS

_ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "common.js": "text/javascript"}
SECURITY = {
    # everything comes from callvault itself; media only through our signed /files links
    "Content-Security-Policy": "default-src 'self'; media-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def _static(package: str, name: str) -> bytes:
    """Read once: the assets ship inside the package and never change while serving."""
    return resources.files(package).joinpath("static", name).read_bytes()


def page_routes(package: str, prefix: str, assets: dict[str, str]) -> web.RouteTableDef:
    """``prefix`` serves the package's static/index.html and ``prefix/{name}`` the named
    assets (name: content type), nothing else, all with the strict headers."""
    table = web.RouteTableDef()

    @table.get(prefix)
    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=_static(package, "index.html"),
            content_type="text/html",
            charset="utf-8",
            headers=SECURITY,
        )

    @table.get(prefix + "/{name}")
    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise NotFound("no such asset")
        return web.Response(
            body=_static(package, name),
            content_type=assets[name],
            charset="utf-8",
            headers=SECURITY,
        )

    return table


routes = page_routes("service.qa", "/qa", _ASSETS)


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(_openapi(request.app[SETTINGS].public_url))


@functools.cache
def _openapi(public_url: str) -> dict[str, Any]:
    # the operations are registered at import, before any request: build the document once
    return openapi(public_url)
