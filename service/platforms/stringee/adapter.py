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
from service.platforms.port import Adapter, Inbound, Platform, RecordingControl
from service.platforms.stringee import routes as stringee_routes
from service.platforms.stringee.sources import StringeeMediaSources
from service.web.context import HTTP_CLIENT


class StringeeAdapter:
    platform = Platform.STRINGEE
    routes = stringee_routes.routes

    async def verify(self, request: web.Request) -> Inbound:
        project, body = await stringee_routes.verify(request)
        params = (
            dict(request.query)
            if request.method == "GET"
            else {"body": body.decode("utf-8", "replace")}
        )
        return Inbound(project.tenant, project.project_id, params)

    def render(self, request: web.Request, decision: Decision) -> web.Response:
        """After :meth:`verify` on the same request."""
        return stringee_routes.render(request, decision)

    def media_sources(self, app: web.Application) -> StringeeMediaSources:
        return StringeeMediaSources.for_app(app, app[HTTP_CLIENT])

    def recording_control(self, app: web.Application) -> RecordingControl | None:
        # Stringee's Call REST API (developer.stringee.com/docs/call-rest-api) offers call
        # logs, media download, outbound calls, putactions (SCCO), stop, transfer and
        # participants; its SCCO actions are connect, record, recordMessage, talk, play, stream,
        # input. Nothing pauses or resumes a recording in progress: none here.
        return None


ADAPTER: Adapter = StringeeAdapter()
