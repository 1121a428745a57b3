"""JSON Schemas of what the API returns (published in /openapi.json, checked by schemathesis)."""

from __future__ import annotations

from typing import Any

from retention.clock import Kind, Status
from retention.dsar import CHANNELS
from service.api.spec import DATETIME, ERROR, UUID
from service.vocabulary import Outcome

NULLABLE_DATETIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def items(schema: dict[str, Any], cursor: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"items": {"type": "array", "items": schema}}
    if cursor:
        props["next_cursor"] = {"type": ["string", "null"]}
    return {"type": "object", "required": list(props), "properties": props}


TOKEN_CREATED = obj(
    ["id", "name", "role", "token"],
    id=UUID,
    name={"type": "string"},
    role={"type": "string"},
    token={"type": "string"},
)
TOKEN = obj(
    ["id", "name", "role", "revoked"],
    id=UUID,
    name={"type": "string"},
    role={"type": "string"},
    tenant={"type": ["string", "null"], "description": "null for a platform token"},
    created_by={"type": "string"},
    created_at=DATETIME,
    last_used_at=NULLABLE_DATETIME,
    revoked={"type": "boolean"},
)
HOLD_PLACED = obj(
    ["id", "held_recordings", "already_purged"],
    id=UUID,
    held_recordings={"type": "array", "items": UUID},
    already_purged={"type": "array", "items": UUID},
    already_erased={
        "type": "array",
        "items": obj(
            ["call_id", "recording_ids", "erased_at"],
            call_id=UUID,
            recording_ids={"type": "array", "items": UUID},
            erased_at=DATETIME,
            request_id={"type": ["string", "null"]},
        ),
    },
)
HOLD = obj(
    ["id", "on", "reason", "active"],
    id=UUID,
    call_id={"type": ["string", "null"]},
    on={"enum": ["call", "phone"]},
    phone={
        "type": ["string", "null"],
        "description": "a hold on a number: the number masked (+84 9** *** 678), never whole; "
        "null on a call's hold or once the number was erased",
    },
    reason={"type": "string"},
    case_ref={"type": ["string", "null"]},
    placed_by={"type": "string"},
    placed_at=DATETIME,
    released_by={"type": ["string", "null"]},
    released_at=NULLABLE_DATETIME,
    active={"type": "boolean"},
)
NULLABLE_SECONDS = {"type": ["integer", "null"]}
DSAR = obj(
    ["id", "kind", "status", "received_at", "acknowledge_by", "due_at", "time_left", "overdue"],
    id=UUID,
    kind={"enum": [k.value for k in Kind]},
    status={"enum": [s.value for s in Status]},
    channel={
        "enum": [*CHANNELS, None],
        "description": "how the request came in; null: not recorded (older requests)",
    },
    received_at=DATETIME,
    acknowledge_by={
        **NULLABLE_DATETIME,
        "description": "received + 2 working days (null on requests from before the 2026 law)",
    },
    acknowledged_at=NULLABLE_DATETIME,
    due_at=DATETIME,
    time_left=obj(
        ["acknowledge_s", "complete_s"],
        acknowledge_s={
            **NULLABLE_SECONDS,
            "description": "seconds to acknowledge_by (negative: overdue); null once "
            "acknowledged or closed",
        },
        complete_s={
            **NULLABLE_SECONDS,
            "description": "seconds to due_at (negative: overdue); null once closed or in force",
        },
    ),
    overdue=obj(
        ["acknowledge", "complete"],
        acknowledge={"type": "boolean"},
        complete={"type": "boolean"},
    ),
    extension={
        "oneOf": [
            {"type": "null"},
            obj(
                ["days", "reason", "by", "at", "due_before"],
                days={"type": "integer"},
                reason={"type": "string"},
                by={"type": "string"},
                at=DATETIME,
                due_before=DATETIME,
            ),
        ]
    },
    clock={"type": "object", "description": "the policy that set the deadlines"},
    completed_at=NULLABLE_DATETIME,
    requested_by={"type": "string"},
    rejected_reason={"type": ["string", "null"]},
    lifted_at=NULLABLE_DATETIME,
    call_ids={
        "type": "array",
        "items": UUID,
        "description": "correct: the calls named; restrict: the calls restricted when received",
    },
    correction={"enum": ["statement", "unlink", None]},
    has_statement={"type": "boolean"},
    bundle_ready={"type": "boolean"},
    bundle_expires_at=NULLABLE_DATETIME,
    bundle_removed={"enum": ["expired", "erased", None]},
    result={"type": "object"},
)
LINK = obj(["url", "expires_at"], url={"type": "string"}, expires_at=DATETIME)
AUDIT_ENTRY = obj(
    ["id", "at", "actor", "action"],
    id={"type": "integer"},
    at=DATETIME,
    actor={"type": "string"},
    action={"type": "string"},
    target_type={"type": ["string", "null"]},
    target_id={"type": ["string", "null"]},
    details={"type": "object"},
)
VERIFY = obj(
    ["ok", "calls", "events"],
    ok={"type": "boolean"},
    calls={"type": "integer"},
    events={"type": "integer"},
    seals={"type": "integer"},
    first_break={"type": ["object", "null"]},
    breaks={"type": "integer"},
)
PAUSE = obj(
    ["paused_at", "resumed_at", "duration_s", "offset_s", "open"],
    paused_at=DATETIME,
    resumed_at=NULLABLE_DATETIME,
    duration_s={"type": ["number", "null"], "description": "how long; null while open"},
    offset_s={
        "type": ["number", "null"],
        "description": "where the gap falls in the audio: seconds of recording before it",
    },
    reason={"type": ["string", "null"]},
    open={"type": "boolean", "description": "never resumed (the rest of the call is missing)"},
)
RECORDING = obj(
    ["id", "state", "held"],
    id=UUID,
    state={"enum": ["pending", "stored", "purged", "erased", "failed"]},
    duration_s={"type": ["integer", "null"]},
    retain_until=NULLABLE_DATETIME,
    held={"type": "boolean"},
    # the call's recording was paused here (card payments); the spans are left out of the audio
    pauses={"type": "array", "items": PAUSE},
)
CALL = obj(
    ["id", "platform", "external_id", "started_at", "direction", "caller", "outcome", "recordings"],
    id=UUID,
    platform={"type": "string"},
    external_id={"type": "string"},
    started_at=DATETIME,
    direction={"enum": ["inbound", "outbound"]},
    # the person's number is masked whichever side they are on; the contact centre's is not
    caller={"type": ["string", "null"]},
    called={"type": ["string", "null"]},
    queue={"type": ["string", "null"]},
    outcome={"enum": [outcome.value for outcome in Outcome]},
    recordings={"type": "array", "items": RECORDING},
)
EVENT = obj(
    ["seq", "type", "at", "hash", "prev_hash", "details"],
    seq={"type": "integer"},
    type={"type": "string"},
    at=DATETIME,
    hash={"type": "string"},
    prev_hash={"type": "string"},
    details={"type": "object"},
    # detail keys left out for this role (the hash is still the full event's)
    redacted={"type": "array", "items": {"type": "string"}},
)
CALL_DETAIL = {
    **CALL,
    "required": [*CALL["required"], "events", "events_withheld"],
    "properties": {
        **CALL["properties"],
        "events": {"type": "array", "items": EVENT},
        # events this role may not see (holds, data-subject requests); 0 for compliance
        "events_withheld": {"type": "integer", "minimum": 0},
    },
}
RETENTION = obj(
    [
        "recording_id",
        "call_id",
        "state",
        "retain_until",
        "source",
        "holds",
        "requests",
        "purge_at",
        "checked_at",
    ],
    recording_id=UUID,
    call_id=UUID,
    state={"enum": ["pending", "stored", "purged", "erased", "failed"]},
    retain_until=NULLABLE_DATETIME,
    source={
        "enum": ["tenant", "queue", "number", None],
        "description": "the policy level whose retention set retain_until (null until stored)",
    },
    holds={
        "type": "array",
        "description": "active legal holds keeping it, on its call or its subject's number",
        "items": obj(
            ["id", "reason", "placed_at", "on"],
            id=UUID,
            reason={"type": ["string", "null"], "description": "null for a QA trainer"},
            placed_at=DATETIME,
            on={"enum": ["call", "phone"]},
        ),
    },
    requests={
        "type": "array",
        "description": "open access, correct and restrict requests of its subject keeping it",
        "items": obj(
            ["id", "kind", "status"], id=UUID, kind={"type": "string"}, status={"type": "string"}
        ),
    },
    purge_at={
        **NULLABLE_DATETIME,
        "description": "null while a hold or request keeps it, or once it is gone; otherwise "
        "when a purge pass may take it (retain_until, or now once that has passed), by the "
        "database's clock. Passes run every CALLVAULT_PURGE_INTERVAL.",
    },
    purged_at=NULLABLE_DATETIME,
    checked_at={**DATETIME, "description": "the database's clock when this was read"},
    withheld={
        "type": "array",
        "items": {"type": "string"},
        "description": "fields left out "
        "for this role (a QA trainer does not see why a hold was placed)",
    },
)
PLAYBACK = LINK
ERROR_SCHEMA = ERROR
