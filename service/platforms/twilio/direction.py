"""Twilio's ``Direction`` parameter, mapped onto the gate's two directions.

Twilio sends ``inbound`` for calls to a Twilio number, ``outbound-api`` for calls created through
the REST API (the voice URL is requested when the callee answers), ``outbound-dial`` for the
child leg of a ``<Dial>``, and, with Elastic SIP Trunking, ``trunking-terminating`` (from the
contact centre to the PSTN) and ``trunking-originating`` (from the PSTN in). On the outbound
ones ``From`` is the contact centre's caller id and ``To`` is the person called.
"""

from __future__ import annotations

from collections.abc import Container

from service.consent.gate import Direction

_OUTBOUND = frozenset({"outbound-api", "outbound-dial", "trunking-terminating"})


def twilio_direction(value: str | None) -> Direction:
    """A missing or unknown value is taken as inbound, as every call was before directions were
    read (Twilio documents the parameter on every voice and status request)."""
    return Direction.OUTBOUND if (value or "").strip() in _OUTBOUND else Direction.INBOUND


def centre_is_vouched_for(value: str | None, centre: str | None, numbers: Container[str]) -> bool:
    """Whether the centre's side of the call is certainly the contact centre's own number, so it
    may be kept in plain text. Inbound, ``To`` is the Twilio number called; for ``outbound-api``
    Twilio accepts only the account's own numbers or verified caller ids as ``From``. A
    ``<Dial>`` leg (``outbound-dial``) carries the *original caller's* number as ``From`` unless
    the ``<Dial>`` sets a caller id, and a SIP trunk's ``From`` is whatever the PBX sends: those
    count only when the number is one the configuration names."""
    kind = (value or "").strip()
    if twilio_direction(value) is Direction.INBOUND or kind == "outbound-api":
        return True
    return centre is not None and centre in numbers
