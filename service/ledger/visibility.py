"""Who sees which ledger events: the one place that decides it.

The ledger keeps everything (the controller's casework included) and compliance sees it whole,
with every hash verifiable. Others see a view cut from it by :func:`view`, which takes the
viewer's audience (from their role) and nothing else decides:

- ``compliance`` (compliance officers, admins): every event, every detail.
- ``qa_trainer``: the consent story (call start, notices, the consent outcome, call end) and the
  recording's life (stored, discarded, paused and resumed, purged, erased, ...) and playbacks.
  Another person's playback shows that the recording was played, not by whom or why. Casework
  (legal holds, data-subject requests) is withheld; the answer says how many events were
  (``withheld``), so a trainer is never misled into thinking the chain is complete.
- ``data_subject`` (the access bundle): the same consent story and recording life (pauses
  without the token that asked), playbacks without staff names or reasons, and only their own
  request's events. Casework is withheld *silently*: no count, no sequence numbers, no
  previous-event hashes, since any of those would show a person under investigation that
  something is missing.

Unknown event types are withheld from everyone but compliance: a new kind of event stays
private until someone decides here who may see it. When tenants arrive, :class:`Viewer` gains
the tenant and the playback rule gains "of the viewer's tenant"; callers do not change.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.ledger import Event
from service.vocabulary import Role


class Audience(enum.Enum):
    COMPLIANCE = "compliance"
    QA_TRAINER = "qa_trainer"
    DATA_SUBJECT = "data_subject"


# How the call went, as the person experienced it.
CONSENT_STORY = frozenset(
    {
        "call_started",
        "notice_played",
        "consent_given",
        "consent_refused",
        "no_input",
        "not_asked",
        "hung_up_during_notice",
        "call_ended",
    }
)
# What became of the recording (platform callbacks are ``recording_<status>``).
RECORDING_LIFE = frozenset(
    {
        "recording_completed",
        "recording_absent",
        "recording_failed",
        "recording_in_progress",
        "recording_callback_missed",  # found by the reconciler instead of a callback
        "recording_stored",
        "recording_discarded",
        "recording_deleted",
        "platform_copy_deleted",
        "platform_copy_retained",  # the platform cannot delete (Stringee)
        "recording_paused",  # card payments: the span is left out of the recording
        "recording_resumed",
        "purged",
        "erased",
        "key_destroyed",  # the recording's data key is gone: no copy of it can be read
    }
)
PLAYBACK = frozenset({"accessed"})
# Card-payment pauses (in RECORDING_LIFE): the data subject learns when and why, not which
# desktop or agent's token asked.
PAUSES = frozenset({"recording_paused", "recording_resumed"})
# Corrections to what the call's first events say (see service/consent/legacy.py).
CORRECTIONS = frozenset({"direction_corrected"})
# Data-subject requests: the subject sees their own request's, nobody else's.
REQUEST_EVENTS = frozenset(
    {
        "dsar_received",
        "subject_access",
        "subject_statement",
        "subject_unlinked",
        "processing_restricted",
        "restriction_lifted",
    }
)
# The controller's casework, for compliance only (listed so the choice is explicit).
CASEWORK = frozenset({"hold_placed", "hold_released"}) | REQUEST_EVENTS

_SEEN_BY: Mapping[Audience, frozenset[str]] = {
    Audience.QA_TRAINER: CONSENT_STORY | RECORDING_LIFE | PLAYBACK | CORRECTIONS,
    Audience.DATA_SUBJECT: CONSENT_STORY | RECORDING_LIFE | PLAYBACK | CORRECTIONS | REQUEST_EVENTS,
}
# Who played a recording and why is staff's business (a trainer sees their own).
_PLAYBACK_PRIVATE = ("actor", "reason")
# A request id links an event to casework a trainer must not follow.
_CASE_LINKS = ("request_id",)

_ROLES: Mapping[str, Audience] = {
    Role.COMPLIANCE: Audience.COMPLIANCE,
    Role.ADMIN: Audience.COMPLIANCE,
    Role.QA_TRAINER: Audience.QA_TRAINER,
}


@dataclass(frozen=True)
class Viewer:
    audience: Audience
    actor: str | None = None  # staff: their own playbacks show in full
    request_id: str | None = None  # data subject: the request the view is made for

    @classmethod
    def for_role(cls, role: str, actor: str) -> Viewer:
        """Staff by role; a role this module does not know sees as a QA trainer (least)."""
        return cls(_ROLES.get(role, Audience.QA_TRAINER), actor=actor)

    @classmethod
    def subject(cls, request_id: str) -> Viewer:
        return cls(Audience.DATA_SUBJECT, request_id=request_id)


@dataclass
class View:
    events: list[dict[str, Any]] = field(default_factory=list)
    withheld: int = 0  # events left out (always 0 for compliance)


def view(events: Iterable[Event], viewer: Viewer) -> View:
    """The events ``viewer`` may see, each as JSON; redacted details are named in ``redacted``."""
    events = list(events)
    # An outbound call stored before directions were read names the callee as "called" in its
    # call_started event; the ledger keeps that copy, the views do not show it.
    corrected = any(e.type == "direction_corrected" for e in events)
    out = View()
    for event in events:
        shown = _show(event, viewer, corrected)
        if shown is None:
            out.withheld += 1
        else:
            out.events.append(shown)
    return out


def _show(event: Event, viewer: Viewer, corrected: bool) -> dict[str, Any] | None:
    data = event.as_json()
    if viewer.audience is Audience.COMPLIANCE:
        return data
    if event.type not in _SEEN_BY[viewer.audience]:
        return None
    details: dict[str, Any] = data["details"]
    own_request = viewer.request_id is not None and details.get("request_id") == viewer.request_id
    if event.type in REQUEST_EVENTS and not own_request:
        return None
    hidden: list[str] = []
    if event.type in PLAYBACK and (viewer.actor is None or details.get("actor") != viewer.actor):
        hidden += [k for k in _PLAYBACK_PRIVATE if k in details]
    if event.type in PAUSES and viewer.audience is Audience.DATA_SUBJECT:
        hidden += [k for k in ("actor",) if k in details]
    if not own_request:
        hidden += [k for k in _CASE_LINKS if k in details]
    if corrected and event.type == "call_started":
        hidden += [k for k in ("called",) if k in details]
    if hidden:
        data["details"] = {k: v for k, v in details.items() if k not in hidden}
        data["redacted"] = sorted(hidden)
    if viewer.audience is Audience.DATA_SUBJECT:
        # no position in the chain: a gap would show that something was withheld
        del data["seq"], data["prev_hash"]
    return data
