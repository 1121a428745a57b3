"""``/api/calls``, ``/api/calls/{id}``, ``/api/recordings/{id}/playback`` and
``/api/recordings/{id}/retention`` (why a recording still exists: ``retention.explain``).

Playback requires a non-blank reason; the reason, the actor and the time are written to the
audit trail and to the call's ledger before the short-lived URL is issued, so no one listens
without leaving a record. The URL opens that recording only, and only until it expires.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidTag

from retention import dsar, explain
from service import ledger, pauses
from service.api import cursor, schemas
from service.api.spec import BODY, DATETIME, QUERY, Param, operation, path_id
from service.auth.http import principal
from service.db import Conn, queries, tenancy
from service.errors import Conflict, NotFound
from service.ledger import NewEvent, visibility
from service.links.signed import LINKS
from service.observability import audit
from service.personal.numbers import PhoneVault, mask_phone
from service.storage import recording_keys
from service.vocabulary import Outcome, Role
from service.web.context import POOL, VAULT

log = logging.getLogger(__name__)
Q = queries.load("service.qa")
READERS = (Role.QA_TRAINER, Role.COMPLIANCE)
OUTCOMES = [outcome.value for outcome in Outcome]
PLAYBACK_BODY = {
    "type": "object",
    "required": ["reason"],
    "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 500, "pattern": r"\S"},
    },
}


def _caller(vault: PhoneVault, blob: bytes | None) -> str | None:
    if blob is None:
        return None  # erased
    try:
        return mask_phone(vault.decrypt(blob))
    except (InvalidTag, ValueError):
        # sealed under a key this replica no longer has (see `callvault secrets rotate`)
        log.warning("a stored caller number cannot be decrypted with the configured keys")
        return "***"


def _parties(vault: PhoneVault, row: Any) -> dict[str, str | None]:
    """``caller`` and ``called`` as they were on the call: the person's number (stored
    encrypted, whichever side they were on) masked, the contact centre's as it is."""
    person, centre = _caller(vault, row["caller_enc"]), row["called"]
    if row["direction"] == "outbound":
        return {"caller": centre, "called": person}
    return {"caller": person, "called": centre}


async def _items(conn: Conn, vault: PhoneVault, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [r["id"] for r in rows]
    recs = await conn.fetch(Q["recordings_of_calls"], ids)
    paused = await pauses.spans_of_calls(conn, ids)
    by_call: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in recs:
        by_call.setdefault(r["call_id"], []).append(
            {
                "id": str(r["id"]),
                "state": r["state"],
                "duration_s": r["duration_s"],
                "retain_until": r["retain_until"].isoformat() if r["retain_until"] else None,
                "held": r["held"],
                # the call's pauses are where its recording has gaps
                "pauses": paused.get(r["call_id"], []),
            }
        )
    return [
        {
            "id": str(row["id"]),
            "platform": row["platform"],
            "external_id": row["external_id"],
            "started_at": row["started_at"].isoformat(),
            "direction": row["direction"],
            **_parties(vault, row),
            "queue": row["queue"],
            "outcome": row["outcome"],
            "recordings": by_call.get(row["id"], []),
        }
        for row in rows
    ]


@operation(
    "GET",
    "/api/calls",
    roles=READERS,
    summary="Search calls, newest first",
    query=[
        Param("from", DATETIME, description="ISO 8601 date-time with a zone"),
        Param("to", DATETIME, description="ISO 8601 date-time with a zone"),
        Param("outcome", {"enum": OUTCOMES}, description="one of " + ", ".join(OUTCOMES)),
        Param(
            "external_id", {"type": "string", "maxLength": 64}, description="the platform's call id"
        ),
        Param("queue", {"type": "string", "maxLength": 100}, description="a queue name"),
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
            description="1 to 200",
        ),
        Param(
            "cursor",
            {"type": "string", "maxLength": 200},
            description="next_cursor of the previous page",
        ),
    ],
    responses={200: schemas.items(schemas.CALL, cursor=True)},
    tag="qa",
)
async def search_calls(request: web.Request) -> web.Response:
    q = request[QUERY]
    after = cursor.decode(q["cursor"], cursor.timestamp, cursor.uuid_id)
    after_at, after_id = after or (None, None)
    limit: int = q["limit"]
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            Q["search_calls"],
            q["from"],
            q["to"],
            q["outcome"],
            q["external_id"],
            q["queue"],
            after_at,
            after_id,
            limit + 1,
        )
        page = rows[:limit]
        items = await _items(conn, request.app[VAULT], page)
    more = len(rows) > limit
    next_cursor = cursor.encode(page[-1]["started_at"], page[-1]["id"]) if more else None
    return web.json_response({"items": items, "next_cursor": next_cursor})


@operation(
    "GET",
    "/api/calls/{id}",
    roles=READERS,
    summary="A call and the part of its ledger the caller's role may see",
    responses={200: schemas.CALL_DETAIL, 404: schemas.ERROR_SCHEMA},
    tag="qa",
)
async def get_call(request: web.Request) -> web.Response:
    call_id = path_id(request)
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(Q["call_by_id"], call_id)
        if row is None:
            raise NotFound("no such call")
        (item,) = await _items(conn, request.app[VAULT], [row])
        who = principal(request)
        seen = visibility.view(
            await ledger.events_of(conn, call_id), visibility.Viewer.for_role(who.role, who.actor)
        )
    item["events"] = seen.events
    item["events_withheld"] = seen.withheld
    return web.json_response(item)


@operation(
    "POST",
    "/api/recordings/{id}/playback",
    roles=READERS,
    summary="A short-lived URL to play a recording; the reason is audited first; 403 "
    "restricted while the data subject's restriction is in force; 410 recording_shredded once "
    "its data key is destroyed",
    body=PLAYBACK_BODY,
    responses={
        200: schemas.PLAYBACK,
        403: schemas.ERROR_SCHEMA,
        404: schemas.ERROR_SCHEMA,
        409: schemas.ERROR_SCHEMA,
        410: schemas.ERROR_SCHEMA,
    },
    tag="qa",
)
async def playback(request: web.Request) -> web.Response:
    recording_id = path_id(request)
    reason = request[BODY]["reason"].strip()
    who = principal(request)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        rec = await conn.fetchrow(Q["recording_for_playback"], recording_id)
        if rec is None:
            raise NotFound("no such recording")
        if rec["state"] != "stored" or not rec["object_key"]:
            raise Conflict(f"the recording is {rec['state']}, not playable", code="not_playable")
        if await recording_keys.shredded_among(conn, [recording_id]):
            # retention ended and its key is gone; the object waits for the next purge pass
            raise recording_keys.KeyDestroyed(
                "the recording's data key is destroyed: it can no longer be played"
            )
        # kept, but not played: the subject's restriction (issue 15) until it is lifted
        await dsar.check_call_not_restricted(conn, rec["call_id"])
        await audit.record(
            conn,
            who.actor,
            "playback",
            "recording",
            str(recording_id),
            {"call_id": str(rec["call_id"]), "reason": reason, "role": who.role},
        )
        await ledger.append(
            conn,
            rec["call_id"],
            [
                NewEvent(
                    "accessed",
                    {
                        "recording_id": str(recording_id),
                        "actor": who.actor,
                        "reason": reason,
                        "purpose": "playback",
                    },
                )
            ],
        )
    return web.json_response(
        request.app[LINKS].link(
            rec["object_key"], f"playback:{recording_id}", store=rec["object_store"]
        )
    )


@operation(
    "GET",
    "/api/recordings/{id}/retention",
    roles=READERS,
    summary="Why a recording still exists: its retention, what keeps it, when it goes",
    responses={200: schemas.RETENTION, 404: schemas.ERROR_SCHEMA},
    tag="qa",
)
async def recording_retention(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        found = await explain.explain(conn, path_id(request))
    if found is None:
        raise NotFound("no such recording")
    answer = found.as_json()
    who = principal(request)
    if visibility.Viewer.for_role(who.role, who.actor).audience != visibility.Audience.COMPLIANCE:
        # a trainer learns that a hold keeps the recording and since when, not the casework
        # behind it (the same line the ledger view draws: hold events are withheld from them)
        answer["holds"] = [{**h, "reason": None} for h in answer["holds"]]
        answer["withheld"] = ["holds.reason"]
    return web.json_response(answer)


WHOAMI = schemas.obj(
    ["token_name", "role", "tenant", "platform"],
    token_name={"type": "string"},
    role={"type": "string"},
    tenant={
        "oneOf": [
            {"type": "null"},
            schemas.obj(["id", "name"], id={"type": "string"}, name={"type": "string"}),
        ],
        "description": "the tenant the request acts for; null for a platform token "
        "without the Callvault-Tenant header",
    },
    platform={"type": "boolean", "description": "a platform token: it may name any tenant"},
)


@operation(
    "GET",
    "/api/whoami",
    roles=(Role.TELEPHONY, Role.QA_TRAINER, Role.COMPLIANCE, Role.OPERATOR),
    summary="The token's name, role and the tenant the request acts for",
    responses={200: WHOAMI},
    tenant_optional=True,
)
async def whoami(request: web.Request) -> web.Response:
    who = principal(request)
    acting = tenancy.current()
    tenant: dict[str, str] | None = None
    if acting is not None and acting != tenancy.ALL:
        async with request.app[POOL].acquire() as conn:
            name = await conn.fetchval(Q["tenant_name"], acting)
        tenant = {"id": acting, "name": name or acting}
    return web.json_response(
        {
            "token_name": who.name,
            "role": who.role,
            "tenant": tenant,
            "platform": who.tenant is None,
        }
    )
