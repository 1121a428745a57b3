"""Stringee's four requests mapped onto the consent gate (docs: ``README.md`` in this folder).

- ``GET /telephony/stringee/answer`` (a number's answer_url) → :func:`gate.start_call`; answers
  the notice and the ``input`` (SCCO), or the tenant's ``continue_scco`` for a call not asked.
- ``POST /telephony/stringee/input`` (the ``input`` action's eventUrl) → :func:`gate.consent_step`;
  answers ``record`` + ``continue_scco`` after consent, ``continue_scco`` otherwise. Silence is
  not consent in explicit mode.
- ``POST /telephony/stringee/event`` (the project's event_url) → :func:`gate.status_step` for
  calls callvault answered (the event_url is project-wide); ``ended`` before the consent step is
  a hang-up during the notice.
- ``POST /telephony/stringee/recording`` (the ``record`` action's eventUrl) → intake's
  :func:`recording_callback`, which queues the download (a consented call) or the discard.

Every request is verified first (``X-STRINGEE-SIGNATURE`` with the secret of the project its
tenant registered; 403 and nothing written otherwise). The ledger's ``notice_played`` says how
Stringee plays the notice (:meth:`scco.Notice.heard`). When the database cannot be reached, the
answer_url and input answers continue the call unrecorded (no consent can be proven, so none is
assumed; an error would end the call); the event and record posts answer 503.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from service.config import Policy, Settings
from service.consent import gate
from service.db import queries, tenancy
from service.errors import BadRequest, DatabaseUnavailable, Forbidden
from service.intake.callbacks import recording_callback
from service.notices.library import Notice as PromptNotice
from service.observability.metrics import METRICS
from service.platforms.stringee import accounts, events, scco
from service.platforms.stringee.accounts import Project, e164
from service.platforms.stringee.scco import RecordFormat, Scco
from service.platforms.stringee.signature import (
    SIGNATURE_HEADER,
    verify_body,
    verify_request_uri,
)
from service.tenants import policies
from service.web.context import PROMPTS, SETTINGS, VAULT, database
from service.web.untrusted import loads_json, parse_int

log = logging.getLogger(__name__)
PLATFORM = "stringee"
Q = queries.load("service.platforms.stringee")
routes = web.RouteTableDef()
INPUT_PATH = "/telephony/stringee/input"
EVENT_PATH = "/telephony/stringee/event"
RECORDING_PATH = "/telephony/stringee/recording"


def _bad_signature() -> Forbidden:
    return Forbidden("missing or invalid X-STRINGEE-SIGNATURE", code="bad_signature")


async def _policy(app: web.Application, tenant: str, centre: str | None) -> Policy:
    """The tenant's policy for a call to ``centre`` (from the replica's tenant directory)."""
    with tenancy.as_tenant(tenant):
        return await policies.call_policy(app, centre, None)


def _notice(settings: Settings, prompt_notice: PromptNotice) -> scco.Notice:
    """How Stringee plays the gate's notice: a stream of our rendered WAV, or Stringee's speech
    of its text where no file can be used (no rendered audio, or a public URL Stringee must not
    fetch audio from: plain http)."""
    try:
        return scco.notice_from_prompt(prompt_notice, settings.public_url)
    except ValueError:
        prompt = prompt_notice.prompt
        return scco.Notice(scco.NoticeKind.TALK, text=prompt.text, language=prompt.language)


def _heard(settings: Settings) -> gate.Heard:
    def heard(prompt_notice: PromptNotice) -> Mapping[str, Any]:
        return _notice(settings, prompt_notice).heard()

    return heard


def _url(settings: Settings, path: str, project: Project, **extra: str) -> str:
    query = {"tenant": project.tenant, **extra}
    if project.project_id is not None:
        query["project"] = project.project_id
    return settings.public_url + path + "?" + urllib.parse.urlencode(query)


def _scco(body: Scco) -> web.Response:
    return web.json_response(body)


def _count_outcome(request: web.Request, call: gate.CallState) -> None:
    if call.decided_now:
        request.app[METRICS].consent_outcomes.labels(call.outcome).inc()


def render(request: web.Request, decision: gate.Decision) -> web.Response:
    """The gate's decision as an SCCO (the adapter's ``render``), for the project
    :func:`verify` found and the continue actions the handler looked up (the deployment's when
    none were)."""
    project: Project = request[PROJECT]
    then: Scco = request.get(THEN) or [
        dict(a) for a in request.app[SETTINGS].stringee_continue_scco
    ]
    _count_outcome(request, decision.call)
    settings = request.app[SETTINGS]
    policy = decision.call.policy
    if decision.step in (gate.Step.PLAY_NOTICE, gate.Step.REPROMPT):
        explicit = policy.consent_mode == "explicit"
        prompt_notice = request.app[PROMPTS].notice(policy.consent_mode, policy.language)
        ask = scco.Ask(
            _url(settings, INPUT_PATH, project, attempt=str(decision.attempt)),
            explicit=explicit,
            # implied: the input's timeout reached means the caller stayed to the end
            timeout_s=min(max(policy.gather_timeout_s, 1), 120) if explicit else 1,
        )
        return _scco(scco.notice_answer(_notice(settings, prompt_notice), ask))
    if decision.step is gate.Step.RECORD:
        record = scco.Record(
            _url(settings, RECORDING_PATH, project), format=RecordFormat(settings.recording_format)
        )
        return _scco(scco.consented_answer(record, then))
    if decision.step is gate.Step.CONTINUE:
        return _scco(scco.unrecorded_answer(then))
    return _scco([])  # the call is over: an empty SCCO ends it


def _without_database(
    request: web.Request, step: str, then: Scco, exc: DatabaseUnavailable
) -> web.Response:
    request.app[METRICS].voice_fallbacks.labels(step).inc()
    log.warning(
        "database unreachable: the call continues without recording",
        extra={"step": step, "platform": PLATFORM, "error": type(exc.__cause__).__name__},
    )
    return _scco(scco.unrecorded_answer(then))


async def _then(request: web.Request, tenant: str, number: str | None) -> Scco:
    try:
        return await accounts.continue_scco(request.app, tenant, number)
    except DatabaseUnavailable:
        return [dict(a) for a in request.app[SETTINGS].stringee_continue_scco]


async def _body(request: web.Request) -> bytes:
    if not request.headers.get(SIGNATURE_HEADER):
        raise _bad_signature()
    try:
        # a body trickled byte by byte must not hold the connection for ever
        async with asyncio.timeout(request.app[SETTINGS].header_timeout_s):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(reason="the request body did not arrive in time") from None


async def _verified_post(request: web.Request, project: Project, body: bytes) -> None:
    secrets = await accounts.signing_secrets(project, request.app[SETTINGS])
    if not verify_body(secrets, body, request.headers.get(SIGNATURE_HEADER)):
        raise _bad_signature()


async def _our_eventurl(request: web.Request) -> tuple[Project, bytes]:
    """An eventUrl callvault wrote into an SCCO: ``?project=`` and ``?tenant=`` name whose
    secret must have signed the body."""
    body = await _body(request)
    tenant = request.query.get("tenant") or None
    project = await accounts.project(
        request.app, request.query.get("project") or None, tenant, None
    )
    await _verified_post(request, project, body)
    return project, body


async def _answer_url(request: web.Request) -> Project:
    """The answer_url: the ``to`` number's tenant, and whichever of its projects signed the
    Request-URI."""
    settings = request.app[SETTINGS]
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        raise _bad_signature()
    for candidate in await accounts.projects_for_number(request.app, request.query.get("to")):
        secrets = await accounts.signing_secrets(candidate, settings)
        if verify_request_uri(secrets, request.raw_path, header, settings.public_url):
            return candidate
    raise _bad_signature()


async def _event_url(request: web.Request) -> tuple[Project, bytes]:
    """The project's event_url: its ``project_id``'s tenant (the called number decides between
    tenants sharing a project)."""
    body = await _body(request)
    project_id, number = _routing(body)
    project = await accounts.project(request.app, project_id, None, number)
    await _verified_post(request, project, body)
    return project, body


# the verified project, kept on the request for render(), and the call's continue actions
PROJECT = web.RequestKey("stringee_project", Project)
THEN = web.RequestKey("stringee_then", list[dict[str, Any]])


async def verify(request: web.Request) -> tuple[Project, bytes]:
    """Any of the four requests, verified: its project (tenant) and its body (empty for the
    answer_url GET), or :class:`Forbidden` before anything is written."""
    if request.method == "GET":
        project, body = await _answer_url(request), b""
    elif request.path == EVENT_PATH:
        project, body = await _event_url(request)
    else:
        project, body = await _our_eventurl(request)
    request[PROJECT] = project
    return project, body


@routes.get("/telephony/stringee/answer")
async def answer(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    found, _ = await verify(request)
    call = events.parse_answer(request.query)
    caller, called = e164(call.from_), e164(call.to)
    policy = await _policy(request.app, found.tenant, called)
    then = request[THEN] = await _then(request, found.tenant, called)
    with tenancy.as_tenant(found.tenant):
        try:
            async with database(request.app) as conn:
                decision = await gate.start_call(
                    conn,
                    request.app[VAULT],
                    request.app[PROMPTS],
                    platform=PLATFORM,
                    external_id=call.external_id,
                    caller=caller,
                    called=called,
                    policy=policy,
                    # Stringee calls a number's answer_url with that number as `to`
                    centre_known=True,
                    platform_account=found.project_id,
                    heard=_heard(settings),
                )
        except DatabaseUnavailable as exc:
            return _without_database(request, "voice", then, exc)
    log.info(
        "call start",
        extra={"call_id": str(decision.call.id), "step": decision.step.value, "platform": PLATFORM},
    )
    return render(request, decision)


@routes.post(INPUT_PATH)
async def consent_input(request: web.Request) -> web.Response:
    project, body = await verify(request)
    event = events.parse_input_event(body)
    attempt = parse_int(request.query.get("attempt", "1"))
    if attempt is None or not 1 <= attempt <= 10:
        raise BadRequest("attempt must be a number from 1 to 10", code="bad_attempt")
    settings = request.app[SETTINGS]
    with tenancy.as_tenant(project.tenant):
        try:
            async with database(request.app) as conn:
                decision = await gate.consent_step(
                    conn,
                    request.app[PROMPTS],
                    platform=PLATFORM,
                    external_id=event.call_id,
                    # a timeout with nothing pressed is silence: never consent (explicit mode)
                    digits=event.digit,
                    attempt=attempt,
                    heard=_heard(settings),
                )
                called = await conn.fetchval(Q["called_number"], event.call_id)
        except DatabaseUnavailable as exc:
            # the caller may have pressed 1, but a consent that cannot be written is no proof
            return _without_database(
                request, "consent", await _then(request, project.tenant, None), exc
            )
    then = request[THEN] = await _then(request, project.tenant, called)
    if decision is None:
        log.warning("consent step for an unknown call; continuing without recording")
        return _scco(scco.unrecorded_answer(then))
    log.info(
        "consent step",
        extra={
            "call_id": str(decision.call.id),
            "step": decision.step.value,
            "outcome": decision.call.outcome,
        },
    )
    return render(request, decision)


def _routing(body: bytes) -> tuple[str | None, str | None]:
    """``project_id`` and the called number of an event_url body, to find whose secret signed
    it (the body is parsed again, strictly, once the signature holds)."""
    try:
        data = loads_json(body)
    except BadRequest:
        return None, None
    if not isinstance(data, dict):
        return None, None
    value = data.get("project_id")
    project = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
    to = data.get("to")
    number = to.get("number") if isinstance(to, dict) else None
    return project, number if isinstance(number, str) else None


@routes.post(EVENT_PATH)
async def call_event(request: web.Request) -> web.Response:
    project, body = await verify(request)
    event = events.parse_call_event(body)
    caller = e164(event.from_.number if event.from_ else None)
    called = e164(event.to.number if event.to else None)
    with tenancy.as_tenant(project.tenant):
        async with database(request.app) as conn:
            # the event_url is project-wide: calls callvault never answered are not its business
            if not await conn.fetchval(Q["call_known"], event.call_id):
                return web.Response(status=204)
            call = await gate.status_step(
                conn,
                request.app[VAULT],
                platform=PLATFORM,
                external_id=event.call_id,
                status="ended" if event.call_over else event.raw_status,
                duration_s=event.duration_s
                if event.duration_s is not None and 0 <= event.duration_s < 2**31
                else None,
                caller=caller,
                called=called,
                policy=await _policy(request.app, project.tenant, called),
                platform_account=project.project_id,
            )
    if call is not None:
        _count_outcome(request, call)
        log.info(
            "call status",
            extra={"call_id": str(call.id), "status": event.raw_status, "outcome": call.outcome},
        )
    return web.Response(status=204)


@routes.post(RECORDING_PATH)
async def recording(request: web.Request) -> web.Response:
    project, body = await verify(request)
    event = events.parse_record_event(body)
    duration = event.duration_s
    with tenancy.as_tenant(project.tenant):
        async with database(request.app) as conn:
            fresh = await recording_callback(
                conn,
                platform=PLATFORM,
                recording_sid=event.media_id,
                call_sid=event.call_id,
                status="completed",
                duration_s=duration if duration is not None and 0 <= duration < 2**31 else None,
                max_attempts=request.app[SETTINGS].job_max_attempts,
                platform_account=project.project_id,
            )
    log.info(
        "recording callback",
        extra={"recording_sid": event.media_id, "platform": PLATFORM, "duplicate": not fresh},
    )
    return web.Response(status=204)
