"""Any PBX behind the platform port (:class:`service.platforms.port.Adapter`).

Following one PBX call: ``routes`` (callvault's own JSON API, a tenant's ``telephony`` token) →
:mod:`service.consent.gate` (the steps) → :func:`routes.answer` (what to play, how to ask); the
recording is uploaded, not fetched: ``receive`` streams it to a file and
:mod:`service.intake.upload` keeps it through the same store, verify and ledger steps as a
fetched one. So a PBX has no media source.
"""

from __future__ import annotations

from aiohttp import web

from service.auth.http import principal
from service.consent.gate import Decision
from service.db import tenancy
from service.platforms.pbx import routes as pbx_routes
from service.platforms.port import Adapter, Inbound, MediaSources, Platform, RecordingControl


class PbxAdapter:
    platform = Platform.PBX
    routes = pbx_routes.routes

    async def verify(self, request: web.Request) -> Inbound:
        # the routes are behind requires("telephony"): the token says the tenant, and its name
        # is the "account" (a tenant may run several PBXes, each with its own token)
        who = principal(request)
        return Inbound(tenancy.current() or tenancy.DEFAULT, who.name, {})

    def render(self, request: web.Request, decision: Decision) -> web.Response:
        return pbx_routes.answer(request, decision)

    def media_sources(self, app: web.Application) -> MediaSources | None:
        return None

    def recording_control(self, app: web.Application) -> RecordingControl | None:
        # callvault cannot reach into a PBX: it pauses its own recording (Asterisk's
        # PauseMonitor, FreeSWITCH's record pause) and reports it at
        # POST /telephony/pbx/calls/{call_id}/pause and /resume
        return None


ADAPTER: Adapter = PbxAdapter()
