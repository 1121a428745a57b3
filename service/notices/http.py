"""``GET /prompts/{prompt_id}/{version}.{wav|mp3}``: the rendered notices, for the platform to
fetch and cache. Versioned URLs never change content, so the ETag is the file's SHA-256 and the
response may be cached for a year."""

from __future__ import annotations

from aiohttp import web

from service.errors import NotFound
from service.web.context import PROMPTS

routes = web.RouteTableDef()


@routes.get(r"/prompts/{prompt_id:[a-z0-9-]{1,64}}/{version:[0-9]{1,6}}.{fmt:wav|mp3}")
async def prompt_audio(request: web.Request) -> web.Response:
    info = request.match_info
    audio = request.app[PROMPTS].audio(info["prompt_id"], int(info["version"]), info["fmt"])
    if audio is None:
        raise NotFound("no such prompt audio (run `callvault prompts build`?)")
    etag = f'"{audio.sha256}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if_none_match = request.headers.get("If-None-Match", "")
    if etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match.strip() == "*":
        return web.Response(status=304, headers=headers)
    return web.Response(body=audio.body, content_type=audio.content_type, headers=headers)
