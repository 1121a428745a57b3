"""Twilio behind the platform port (:class:`service.platforms.port.Adapter`).

Following one Twilio call: ``routes`` (the webhooks) → ``signature`` + ``accounts`` (verify, find
the tenant and account) → :mod:`service.consent.gate` (the steps) → ``twiml`` (the answer); the
recording callback → :mod:`service.intake.callbacks` → the ``recording`` job
(:mod:`service.intake.job`), which fetches and deletes through ``media`` with the credentials
``accounts`` gives for the call's account; ``reconcile`` finds callbacks Twilio never resent;
:class:`TwilioRecordingControl` pauses and resumes a call's recording (card payments).
"""

from __future__ import annotations

from aiohttp import web

from service.consent.gate import Decision
from service.platforms.port import Adapter, Inbound, Platform, PlatformUnavailable
from service.platforms.twilio import routes as twilio_routes
from service.platforms.twilio.accounts import TwilioMediaSources
from service.platforms.twilio.media import MediaError
from service.platforms.twilio.signature import verified_form
from service.web.context import HTTP_CLIENT


class TwilioRecordingControl:
    """Pause and resume (:class:`~service.platforms.port.RecordingControl`) through the REST
    API of the account the call came through, with the credentials media download uses."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def set_paused(
        self, tenant: str, account: str | None, external_id: str, paused: bool
    ) -> None:
        # the HTTP session exists once the application has started: looked up when asked
        sources = TwilioMediaSources.for_app(self.app, self.app[HTTP_CLIENT])
        try:
            media = await sources.source(tenant, account)
        except MediaError as exc:  # no credentials for the account: the operator's to fix
            raise PlatformUnavailable(str(exc)) from None
        await media.set_recording_paused(external_id, paused)


class TwilioAdapter:
    platform = Platform.TWILIO
    routes = twilio_routes.routes

    async def verify(self, request: web.Request) -> Inbound:
        form, tenant = await verified_form(request)
        return Inbound(tenant, form.get("AccountSid") or None, form)

    def render(self, request: web.Request, decision: Decision) -> web.Response:
        return twilio_routes.answer(request, decision)

    def media_sources(self, app: web.Application) -> TwilioMediaSources:
        return TwilioMediaSources.for_app(app, app[HTTP_CLIENT])

    def recording_control(self, app: web.Application) -> TwilioRecordingControl:
        return TwilioRecordingControl(app)


ADAPTER: Adapter = TwilioAdapter()
