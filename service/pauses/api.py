"""``POST /api/calls/{id}/recording/pause`` and ``/resume`` (role ``telephony``): the agent
desktop or the IVR pauses the call's recording while the caller reads a card number.

``{id}`` is callvault's call id or the platform's (a Twilio CallSid, a Stringee callId, a PBX's
own id), looked up within the token's tenant. The platform is asked through the port's
:class:`~service.platforms.port.RecordingControl` (``CONTROLS``, set by the application from
the installed platforms); a platform without one answers 409 ``platform_cannot_pause``. A PBX
reports its own pauses through the PBX API instead (``service.platforms.pbx.routes``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from service import pauses
from service.api import schemas
from service.api.spec import BODY, operation
from service.auth.http import principal
from service.errors import Busy as Busy
from service.errors import Conflict
from service.pauses import Action, LockedCall, PlatformFailed, PlatformUnreachable, Source
from service.platforms.port import PlatformUnavailable, RecordingControl, RecordingNotActive
from service.vocabulary import Role
from service.web.context import database

log = logging.getLogger(__name__)
CONTROLS: web.AppKey[Mapping[str, RecordingControl]] = web.AppKey("recording_controls")
# Platform pause/resume requests in flight at once in this process, and how long one waits for
# its turn before the answer is 503 busy: a platform slowdown is not met with an unbounded queue.
SLOTS: web.AppKey[asyncio.Semaphore] = web.AppKey("pause_slots")
PLATFORM_SLOTS = 4
SLOT_WAIT_S = 3.0
TELEPHONY = (Role.TELEPHONY,)
BODY_SCHEMA = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "reason": {
            "type": "string",
            "minLength": 1,
            "maxLength": pauses.MAX_REASON_CHARS,
            "pattern": r"\S",
            "description": "why, e.g. 'card payment' (kept in the call's ledger)",
        },
    },
}
CALL_REF = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "description": "callvault's call id, or the platform's (a Twilio CallSid)",
}
CHANGED = schemas.obj(
    ["call_id", "external_id", "paused", "at", "paused_s", "ledger_seq"],
    call_id={"type": "string", "format": "uuid"},
    external_id={"type": "string"},
    paused={"type": "boolean", "description": "the recording's state now"},
    at={"type": "string", "format": "date-time"},
    paused_s={"type": ["number", "null"], "description": "a resume: how long it was paused"},
    ledger_seq={"type": "integer", "description": "the ledger event written"},
)
RESPONSES: dict[int, dict[str, Any] | None] = {
    200: CHANGED,
    404: schemas.ERROR_SCHEMA,
    409: schemas.ERROR_SCHEMA,
    502: schemas.ERROR_SCHEMA,
    503: schemas.ERROR_SCHEMA,
}
CONFLICTS = (
    "409 not_recording (no consent), call_ended, already_paused / not_paused, "
    "no_recording_in_progress (the platform has none), platform_cannot_pause; 502/503 when the "
    "platform failed (nothing is recorded as paused: the recording may still run), 503 busy "
    "when too many are waiting on the platform"
)


def _at_platform(request: web.Request, action: Action) -> pauses.AtPlatform:
    async def ask(call: LockedCall) -> None:
        control = request.app[CONTROLS].get(call.platform)
        if control is None:
            hint = (
                " (a PBX pauses its own recording and reports it at "
                "/telephony/pbx/calls/{call_id}/pause)"
                if call.platform == "pbx"
                else ""
            )
            raise Conflict(
                f"platform {call.platform} cannot pause a recording on request{hint}",
                code="platform_cannot_pause",
            )
        try:
            async with asyncio.timeout(SLOT_WAIT_S):
                await request.app[SLOTS].acquire()
        except TimeoutError:
            raise Busy(
                f"{PLATFORM_SLOTS} pause/resume requests are waiting on the platform already: "
                "nothing was changed, try again"
            ) from None
        try:
            await control.set_paused(
                call.tenant, call.account, call.external_id, action is Action.PAUSE
            )
        except RecordingNotActive:
            raise Conflict(
                "the platform has no recording in progress on this call",
                code="no_recording_in_progress",
            ) from None
        except PlatformUnavailable as exc:
            log.warning(
                "platform did not %s the recording",
                action.value,
                extra={"call_id": str(call.id), "platform": call.platform, "reason": str(exc)},
            )
            if exc.unreachable:
                raise PlatformUnreachable(str(exc)) from None
            raise PlatformFailed(str(exc)) from None
        finally:
            request.app[SLOTS].release()

    return ask


async def _change(request: web.Request, action: Action) -> web.Response:
    who = principal(request)
    async with database(request.app) as conn:
        call_id = await pauses.find_call(conn, request.match_info["id"])
    # each step takes a pooled connection only for its own short transaction: none is held
    # while the platform answers (the pool is every call's webhooks' too)
    changed = await pauses.change(
        lambda: database(request.app),
        call_id,
        action,
        reason=request[BODY]["reason"],
        actor=who.actor,
        source=Source.API,
        at_platform=_at_platform(request, action),
    )
    log.info("recording %sd", action.value, extra={"call_id": str(call_id)})
    return web.json_response(changed.as_json())


@operation(
    "POST",
    "/api/calls/{id}/recording/pause",
    roles=TELEPHONY,
    summary="Pause the call's recording at the platform (card payments: the paused span is "
    "left out of the recording); written to the call's ledger once the platform did it; "
    + CONFLICTS,
    body=BODY_SCHEMA,
    responses=RESPONSES,
    tag="telephony",
    path_schemas={"id": CALL_REF},
)
async def pause_recording(request: web.Request) -> web.Response:
    return await _change(request, Action.PAUSE)


@operation(
    "POST",
    "/api/calls/{id}/recording/resume",
    roles=TELEPHONY,
    summary="Resume the call's paused recording at the platform; written to the call's "
    "ledger once the platform did it; " + CONFLICTS,
    body=BODY_SCHEMA,
    responses=RESPONSES,
    tag="telephony",
    path_schemas={"id": CALL_REF},
)
async def resume_recording(request: web.Request) -> web.Response:
    return await _change(request, Action.RESUME)
