"""The fixed vocabularies callvault's parts share: a call's consent outcome and a token's role.

The words are the database's too (``calls.outcome``, ``api_tokens.role``), so the SQL keeps them
as literals; Python code names them through these enums. Imports nothing, so the CLI can offer
the roles as choices without loading the service."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """A call's one consent outcome (``in_progress`` until the gate decides)."""

    CONSENTED = "consented"
    REFUSED = "refused"
    HUNG_UP_DURING_NOTICE = "hung_up_during_notice"
    NO_INPUT = "no_input"
    NOT_ASKED = "not_asked"
    IN_PROGRESS = "in_progress"


class Role(StrEnum):
    """What an API token may do (:mod:`service.auth` says what each role reaches)."""

    TELEPHONY = "telephony"
    QA_TRAINER = "qa_trainer"
    COMPLIANCE = "compliance"
    ADMIN = "admin"
    OPERATOR = "operator"
