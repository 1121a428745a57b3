"""The PBX API: ``/telephony/pbx/calls...``, authenticated by a tenant's ``telephony`` token.

A PBX script calls these in the order a call goes: ``POST /calls`` at call start (what to play,
and how to ask), ``POST /calls/{id}/consent`` once the caller stayed or pressed a key (record or
not), ``POST /calls/{id}/pause`` and ``/resume`` when it paused or resumed its own recording (a
card payment), ``POST /calls/{id}/ended`` when the call ends, and ``PUT /calls/{id}/recording``
with the audio. Each maps onto one step of :mod:`service.consent.gate` or of the intake, so
replays and duplicates are answered from what was already decided. The tenant is the token's;
the call id is the PBX's own (an Asterisk ``UNIQUEID``, a FreeSWITCH ``uuid``), kept as it is:
platform ids are unique per tenant, so two tenants' PBXes may use the same ids. Any error answer
(or no answer) means, for the PBX: continue the call without recording.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from service import pauses
from service.auth.http import principal, requires
from service.consent import gate
from service.db import queries, tenancy
from service.errors import BadRequest, NotFound
from service.intake import upload as intake_upload
from service.intake.job import Received
from service.observability.metrics import METRICS
from service.ops.workdir import work_dir
from service.personal.numbers import parse_platform_number
from service.platforms.pbx.receive import (
    CONTENT_TYPES,
    expected_digest,
    receive,
    upload_format,
)
from service.tenants import policies
from service.web.context import POOL, PROMPTS, SETTINGS, STORES, VAULT, database
from service.web.untrusted import loads_json

log = logging.getLogger(__name__)
PLATFORM = "pbx"
Q = queries.load("service.platforms.pbx")
routes = web.RouteTableDef()

CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
# what Asterisk and FreeSWITCH put where a caller id was withheld or never came
WITHHELD = frozenset({"unknown", "anonymous", "restricted", "private", "unavailable", "withheld"})
EXTENSION = re.compile(r"^[0-9]{1,6}$")  # an internal extension: not a phone number
CallId = Annotated[str, StringConstraints(pattern=CALL_ID.pattern)]
Party = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class CallStart(_Body):
    call_id: CallId
    from_: Party = Field(alias="from")
    to: Party
    queue: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    direction: Literal["inbound", "outbound"] = "inbound"


class ConsentAnswer(_Body):
    digit: Annotated[str, StringConstraints(pattern=r"^[0-9*#]{0,8}$")] | None = None
    stayed: Literal[True] | None = None
    attempt: Annotated[int, Field(ge=1, le=10)] = 1


class PauseReport(_Body):
    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=pauses.MAX_REASON_CHARS),
    ]


class CallEnded(_Body):
    during_notice: bool
    duration_s: Annotated[int, Field(ge=0, lt=2**31)] | None = None


M = TypeVar("M", bound=_Body)


def party(raw: str, name: str) -> str | None:
    """A ``from``/``to`` as callvault keeps it: E.164 (a national number read as Vietnam's,
    :func:`~service.personal.numbers.parse_platform_number`), an extension as it is, or None for a
    withheld number; anything else is 400."""
    if raw.lower() in WITHHELD:
        return None
    if EXTENSION.match(raw):
        return raw
    number = parse_platform_number(raw)
    if number is None:
        raise BadRequest(
            f"{name}: not a phone number (+84901234567 or 0901234567), an extension or a "
            f"withheld caller id ({', '.join(sorted(WITHHELD))})",
            code="invalid_body",
        )
    return number


async def _body(request: web.Request, model: type[M]) -> M:
    data = loads_json(await request.read())
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_body") from None


def _external_id(call_id: str) -> str:
    """The PBX's call id as callvault keeps it: as it is, within the token's tenant (calls are
    unique per platform, id and tenant, and row-level security shows only the tenant's)."""
    if not CALL_ID.match(call_id):
        raise NotFound("no such call", code="unknown_call")
    tenant = tenancy.current()
    assert tenant is not None and tenant != tenancy.ALL
    return call_id


def _count(request: web.Request, call: gate.CallState) -> None:
    if call.decided_now:
        request.app[METRICS].consent_outcomes.labels(call.outcome).inc()


@routes.post("/telephony/pbx/calls")
@requires("telephony")
async def start(request: web.Request) -> web.Response:
    body = await _body(request, CallStart)
    caller, called = party(body.from_, "from"), party(body.to, "to")
    direction = gate.Direction(body.direction)
    centre = gate.contact_centre_number(direction, caller, called)
    policy = await policies.call_policy(request.app, centre, body.queue)
    async with database(request.app) as conn:
        decision = await gate.start_call(
            conn,
            request.app[VAULT],
            request.app[PROMPTS],
            platform=PLATFORM,
            external_id=_external_id(body.call_id),
            caller=caller,
            called=called,
            policy=policy,
            direction=direction,
            # the PBX's token vouches for its own numbers, as a Twilio account does
            centre_known=True,
        )
    _count(request, decision.call)
    log.info(
        "pbx call start", extra={"call_id": str(decision.call.id), "step": decision.step.value}
    )
    return answer(request, decision)


@routes.post("/telephony/pbx/calls/{call_id}/consent")
@requires("telephony")
async def consent(request: web.Request) -> web.Response:
    external_id = _external_id(request.match_info["call_id"])
    body = await _body(request, ConsentAnswer)
    if len(body.model_fields_set - {"attempt"}) != 1:
        raise BadRequest(
            'send {"digit": "1"} (null: no input) or {"stayed": true}', code="invalid_body"
        )
    async with database(request.app) as conn:
        decision = await gate.consent_step(
            conn,
            request.app[PROMPTS],
            platform=PLATFORM,
            external_id=external_id,
            digits=body.digit or None,
            attempt=body.attempt,
        )
    if decision is None:
        raise NotFound("no such call", code="unknown_call")
    _count(request, decision.call)
    log.info(
        "pbx consent step",
        extra={"call_id": str(decision.call.id), "outcome": decision.call.outcome},
    )
    again = decision.step is gate.Step.REPROMPT
    return web.json_response(
        {
            "record": decision.step is gate.Step.RECORD,
            "outcome": decision.call.outcome,
            "ask_again": again,
            "attempt": decision.attempt if again else body.attempt,
        }
    )


@routes.post("/telephony/pbx/calls/{call_id}/ended")
@requires("telephony")
async def ended(request: web.Request) -> web.Response:
    external_id = _external_id(request.match_info["call_id"])
    body = await _body(request, CallEnded)
    settings = request.app[SETTINGS]
    async with database(request.app) as conn:
        if await conn.fetchval(Q["call_exists"], PLATFORM, external_id) is None:
            # unlike Twilio's status callback, the PBX reports an end only after a start
            raise NotFound("no such call", code="unknown_call")
        call = await gate.status_step(
            conn,
            request.app[VAULT],
            platform=PLATFORM,
            external_id=external_id,
            status="completed",
            duration_s=body.duration_s,
            caller=None,
            called=None,
            policy=settings.defaults,
        )
    assert call is not None  # a terminal status always yields the call
    _count(request, call)
    log.info(
        "pbx call ended",
        extra={
            "call_id": str(call.id),
            "outcome": call.outcome,
            "during_notice": body.during_notice,
        },
    )
    return web.json_response({"outcome": call.outcome})


async def _paused(request: web.Request, action: pauses.Action) -> web.Response:
    """The PBX paused (or resumed) its own recording: the same checks and ledger event as a
    pause asked through /api, with nothing to ask of the platform. A 409 (not recording, not
    paused, ...) tells the PBX that callvault's record of the call disagrees with what it did:
    the scripts in deploy/pbx/ log it and carry on."""
    external_id = _external_id(request.match_info["call_id"])
    body = await _body(request, PauseReport)
    async with database(request.app) as conn:
        call_id = await conn.fetchval(Q["call_id"], PLATFORM, external_id)
    if call_id is None:
        raise NotFound("no such call", code="unknown_call")
    changed = await pauses.change(
        lambda: database(request.app),
        call_id,
        action,
        reason=body.reason,
        actor=principal(request).actor,
        source=pauses.Source.PBX,
    )
    log.info("pbx recording %sd", action.value, extra={"call_id": str(call_id)})
    return web.json_response(changed.as_json())


@routes.post("/telephony/pbx/calls/{call_id}/pause")
@requires("telephony")
async def pause(request: web.Request) -> web.Response:
    return await _paused(request, pauses.Action.PAUSE)


@routes.post("/telephony/pbx/calls/{call_id}/resume")
@requires("telephony")
async def resume(request: web.Request) -> web.Response:
    return await _paused(request, pauses.Action.RESUME)


@routes.put("/telephony/pbx/calls/{call_id}/recording")
@requires("telephony")
async def recording(request: web.Request) -> web.Response:
    """The call's recording, streamed as the body: 201 once stored and verified (the same
    answer for the same bytes again), 409 for a call that did not consent or was erased."""
    call_id = request.match_info["call_id"]
    external_id = _external_id(call_id)
    fmt = upload_format(request.content_type)
    wanted = expected_digest(request)
    settings = request.app[SETTINGS]
    pool = request.app[POOL]
    upload = intake_upload.Upload(PLATFORM, external_id, external_id)
    await intake_upload.admit(pool, upload)  # 404 / 409 before a byte of audio is kept
    async with work_dir(settings.home / "tmp", "intake-") as tmp:
        path = tmp / f"upload.{fmt}"
        size, sha256 = await receive(request, path, fmt, settings.max_recording_bytes)
        if wanted is not None and wanted != sha256:
            raise BadRequest("the body does not match its Digest", code="digest_mismatch")
        kept = await intake_upload.keep_upload(
            pool,
            request.app[STORES],
            settings,
            upload,
            Received("", path, size, sha256, CONTENT_TYPES[fmt]),
            fmt,
        )
    log.info("pbx recording stored", extra={"recording_id": kept.recording_id, "size_bytes": size})
    return web.json_response(
        {
            "call_id": call_id,
            "recording_id": kept.recording_id,
            "sha256": kept.sha256,
            "size_bytes": kept.size_bytes,
            "retain_until": kept.retain_until.isoformat() if kept.retain_until else None,
        },
        status=201,
    )


def answer(request: web.Request, decision: gate.Decision) -> web.Response:
    """The call start's decision as the PBX API's answer: what to play and how to ask."""
    settings = request.app[SETTINGS]
    policy = decision.call.policy
    body: dict[str, Any] = {
        "action": "notice" if decision.step is gate.Step.PLAY_NOTICE else "skip",
        "mode": policy.consent_mode,
        "record": decision.step is gate.Step.RECORD,
        "notice": None,
        "digits": None,
    }
    if decision.step is gate.Step.PLAY_NOTICE:
        notice = request.app[PROMPTS].notice(policy.consent_mode, policy.language)
        played = notice.wav_sha256 is not None
        body["notice"] = {
            # None when no audio could be rendered: the PBX cannot play the notice, so it
            # must not record (the scripts in deploy/pbx/ continue unrecorded)
            "url": settings.public_url.rstrip("/") + notice.path if played else None,
            "sha256": notice.wav_sha256,
            "text": notice.prompt.text,
            "language": notice.prompt.language,
        }
        body["digits"] = {
            "allow": "1",
            "refuse": "2",
            "timeout_s": policy.gather_timeout_s,
            "retries": policy.gather_retries,
        }
    return web.json_response(body)
