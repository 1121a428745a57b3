"""Twilio's webhooks for the consent gate: call start, consent step, call status.

Each handler verifies the signature first (403 and nothing written otherwise), makes one
database transaction through :mod:`service.consent.gate`, and answers TwiML. Nothing else
touches the network on this path: a caller hears silence while we think.

When the database cannot be reached within the short timeouts of
:func:`service.web.context.database`, the voice and consent steps answer TwiML that continues the
call without recording: no consent can be proven, so none is assumed. They must not answer an
error: Twilio answers a failed TwiML request by playing its "application error" message and
ending the call (or by fetching the number's Fallback URL). The status and recording callbacks
answer 503: they carry no TwiML, and the reconciler finds what Twilio does not retry.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import MultiDictProxy

from service.config import Policy
from service.consent import gate
from service.db import tenancy
from service.errors import BadRequest, DatabaseUnavailable
from service.intake.callbacks import recording_callback
from service.observability.metrics import METRICS
from service.platforms.twilio import twiml
from service.platforms.twilio.direction import centre_is_vouched_for, twilio_direction
from service.platforms.twilio.media import check_recording_sid
from service.platforms.twilio.signature import verified_form
from service.tenants import policies
from service.web.context import PROMPTS, SETTINGS, VAULT, database
from service.web.untrusted import parse_int

log = logging.getLogger(__name__)
PLATFORM = "twilio"
routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.Response]]
FormHandler = Callable[[web.Request, MultiDictProxy[str]], Awaitable[web.Response]]
_CALL_STEPS = frozenset({"voice", "consent"})  # the steps that answer TwiML


def _as_webhook_tenant(handler: FormHandler) -> Handler:
    """Verify the webhook (its tenant found from the Twilio account, issue 13 item 3), then run
    the handler's database work as that tenant."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.Response:
        try:
            form, tenant = await verified_form(request)
        except DatabaseUnavailable:
            # The account's tenant cannot be read (a replica that has not read the tenant
            # tables yet, with the database away): 503. Twilio fetches the number's Fallback URL
            # (the unrecorded path) for a call step, and retries callbacks where it does.
            if handler.__name__ in _CALL_STEPS:
                request.app[METRICS].voice_fallbacks.labels(handler.__name__).inc()
            raise
        with tenancy.as_tenant(tenant):
            return await handler(request, form)

    return run


def _twiml(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml")


def _call_sid(form: MultiDictProxy[str]) -> str:
    sid = form.get("CallSid", "")
    if not sid.strip() or len(sid) > 64:
        raise BadRequest("CallSid is required", code="missing_call_sid")
    return sid.strip()


def _account(form: MultiDictProxy[str]) -> str | None:
    """The AccountSid the webhook was verified with: the call's media is that account's."""
    return form.get("AccountSid") or None


def _duration(raw: str) -> int | None:
    # whole seconds in ASCII digits that fit the integer column; anything else is no duration
    seconds = parse_int(raw)
    return seconds if seconds is not None and 0 <= seconds < 2**31 else None


async def _policy(app: web.Application, called: str | None, queue: str | None) -> Policy:
    return await policies.call_policy(app, called, queue)


def _count_outcome(request: web.Request, call: gate.CallState) -> None:
    if call.decided_now:
        request.app[METRICS].consent_outcomes.labels(call.outcome).inc()


def answer(request: web.Request, decision: gate.Decision) -> web.Response:
    """The gate's decision as TwiML (the adapter's ``render``)."""
    _count_outcome(request, decision.call)
    settings = request.app[SETTINGS]
    policy = decision.call.policy
    if decision.step in (gate.Step.PLAY_NOTICE, gate.Step.REPROMPT):
        notice = request.app[PROMPTS].notice(policy.consent_mode, policy.language)
        return _twiml(
            twiml.notice(
                notice,
                settings.public_url,
                attempt=decision.attempt,
                gather_timeout_s=policy.gather_timeout_s,
            )
        )
    if decision.step is gate.Step.RECORD:
        return _twiml(twiml.record_then_continue(settings.public_url, policy.continue_url))
    if decision.step is gate.Step.CONTINUE:
        return _twiml(twiml.continue_without_recording(policy.continue_url))
    return _twiml(twiml.hangup())


def _without_database(
    request: web.Request, step: str, continue_url: str | None, exc: DatabaseUnavailable
) -> web.Response:
    request.app[METRICS].voice_fallbacks.labels(step).inc()
    log.warning(
        "database unreachable: the call continues without recording",
        extra={"step": step, "error": type(exc.__cause__).__name__},
    )
    return _twiml(twiml.continue_without_recording(continue_url))


@routes.post("/telephony/twilio/voice")
@_as_webhook_tenant
async def voice(request: web.Request, form: MultiDictProxy[str]) -> web.Response:
    sid = _call_sid(form)
    direction = twilio_direction(form.get("Direction"))
    caller, called = form.get("From") or None, form.get("To") or None
    centre = gate.contact_centre_number(direction, caller, called)
    policy = await _policy(request.app, centre, request.query.get("queue"))
    try:
        # one round trip on the common path: the start names its tenant in its statement
        with tenancy.named_in_statement():
            async with database(request.app) as conn:
                decision = await gate.start_call(
                    conn,
                    request.app[VAULT],
                    request.app[PROMPTS],
                    platform=PLATFORM,
                    external_id=sid,
                    caller=caller,
                    called=called,
                    policy=policy,
                    direction=direction,
                    centre_known=centre_is_vouched_for(
                        form.get("Direction"), centre, request.app[SETTINGS].numbers
                    ),
                    platform_account=_account(form),
                )
    except DatabaseUnavailable as exc:
        return _without_database(request, "voice", policy.continue_url, exc)
    log.info("call start", extra={"call_id": str(decision.call.id), "step": decision.step.value})
    return answer(request, decision)


@routes.post("/telephony/twilio/consent")
@_as_webhook_tenant
async def consent(request: web.Request, form: MultiDictProxy[str]) -> web.Response:
    sid = _call_sid(form)
    attempt = parse_int(request.query.get("attempt", "1"))
    if attempt is None or not 1 <= attempt <= 10:
        raise BadRequest("attempt must be a number from 1 to 10", code="bad_attempt")
    digits = (form.get("Digits") or "").strip() or None
    try:
        async with database(request.app) as conn:
            decision = await gate.consent_step(
                conn,
                request.app[PROMPTS],
                platform=PLATFORM,
                external_id=sid,
                digits=digits,
                attempt=attempt,
            )
    except DatabaseUnavailable as exc:
        # The caller may have pressed 1, but a consent that cannot be written cannot be proven.
        direction = twilio_direction(form.get("Direction"))
        centre = gate.contact_centre_number(
            direction, form.get("From") or None, form.get("To") or None
        )
        policy = await _policy(request.app, centre, None)
        return _without_database(request, "consent", policy.continue_url, exc)
    if decision is None:
        # A consent step for a call we never saw start: never record it, let the call go on.
        log.warning("consent step for an unknown call; continuing without recording")
        tenant_default = await _policy(request.app, None, None)
        return _twiml(twiml.continue_without_recording(tenant_default.continue_url))
    log.info(
        "consent step",
        extra={
            "call_id": str(decision.call.id),
            "step": decision.step.value,
            "outcome": decision.call.outcome,
        },
    )
    return answer(request, decision)


@routes.post("/telephony/twilio/status")
@_as_webhook_tenant
async def status(request: web.Request, form: MultiDictProxy[str]) -> web.Response:
    sid = _call_sid(form)
    call_status = (form.get("CallStatus") or "").strip()
    if not call_status:
        raise BadRequest("CallStatus is required", code="missing_call_status")
    raw_duration = form.get("CallDuration") or ""
    duration = _duration(raw_duration)
    direction = twilio_direction(form.get("Direction"))
    caller, called = form.get("From") or None, form.get("To") or None
    centre = gate.contact_centre_number(direction, caller, called)
    async with database(request.app) as conn:
        call = await gate.status_step(
            conn,
            request.app[VAULT],
            platform=PLATFORM,
            external_id=sid,
            status=call_status,
            duration_s=duration,
            caller=caller,
            called=called,
            policy=await _policy(request.app, centre, None),
            direction=direction,
            centre_known=centre_is_vouched_for(
                form.get("Direction"), centre, request.app[SETTINGS].numbers
            ),
            platform_account=_account(form),
        )
    if call is None:
        return web.Response(status=204)
    _count_outcome(request, call)
    log.info(
        "call status",
        extra={"call_id": str(call.id), "status": call_status, "outcome": call.outcome},
    )
    return web.Response(status=204)


@routes.post("/telephony/twilio/recording")
@_as_webhook_tenant
async def recording(request: web.Request, form: MultiDictProxy[str]) -> web.Response:
    """Recording status callback. ``RecordingUrl`` is ignored on purpose: media is fetched only
    from the configured API origin, by RecordingSid."""
    sid = _call_sid(form)
    recording_sid = check_recording_sid((form.get("RecordingSid") or "").strip())
    status = (form.get("RecordingStatus") or "").strip()
    if status not in ("completed", "absent", "failed", "in-progress"):
        raise BadRequest(
            "RecordingStatus must be completed, absent, failed or in-progress",
            code="bad_recording_status",
        )
    raw_duration = form.get("RecordingDuration") or ""
    async with database(request.app) as conn:
        fresh = await recording_callback(
            conn,
            platform=PLATFORM,
            recording_sid=recording_sid,
            call_sid=sid,
            status=status,
            duration_s=_duration(raw_duration),
            max_attempts=request.app[SETTINGS].job_max_attempts,
            platform_account=_account(form),
        )
    log.info(
        "recording callback",
        extra={"recording_sid": recording_sid, "status": status, "duplicate": not fresh},
    )
    return web.Response(status=204)
