"""Stringee behind the platform port (:class:`service.platforms.port.Adapter`).

Following one Stringee call: ``routes`` (the four requests) → ``signature`` + ``accounts``
(verify, find the tenant and project) → ``events`` (the typed request) →
:mod:`service.consent.gate` (the steps) → ``scco`` (the answer); the record eventUrl →
:mod:`service.intake.callbacks` → the ``recording`` job (:mod:`service.intake.job`), which
fetches through ``sources`` + ``media`` with the project's REST JWT (``rest_auth``) and, Stringee
having no delete, writes ``platform_copy_retained``.
"""

from __future__ import annotations

from aiohttp import web

from service.consent.gate import Decision
from service.context import HTTP_CLIENT, SETTINGS
from service.platforms.port import Adapter, Inbound, Platform
from service.platforms.stringee import accounts
from service.platforms.stringee import routes as stringee_routes
from service.platforms.stringee.sources import StringeeMediaSources


class StringeeAdapter:
    platform = Platform.STRINGEE
    routes = stringee_routes.routes

    async def verify(self, request: web.Request) -> Inbound:
        """A POST to an eventUrl callvault wrote (input, recording): its tenant and project."""
        project, body = await stringee_routes._our_eventurl(request)
        return Inbound(
            project.tenant, project.project_id, {"body": body.decode("utf-8", "replace")}
        )

    def render(self, request: web.Request, decision: Decision) -> web.Response:
        tenant = request.query.get("tenant") or "default"
        project = accounts.Project(tenant, request.query.get("project") or None)
        then = [dict(a) for a in request.app[SETTINGS].stringee_continue_scco]
        return stringee_routes.render(request, decision, project, then)

    def media_sources(self, app: web.Application) -> StringeeMediaSources:
        return StringeeMediaSources.for_app(app, app[HTTP_CLIENT])


ADAPTER: Adapter = StringeeAdapter()
