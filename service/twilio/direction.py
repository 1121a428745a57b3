"""Twilio's ``Direction`` parameter, mapped onto the gate's two directions.

Twilio sends ``inbound`` for calls to a Twilio number, ``outbound-api`` for calls created through
the REST API (the voice URL is requested when the callee answers), ``outbound-dial`` for the
child leg of a ``<Dial>``, and, with Elastic SIP Trunking, ``trunking-terminating`` (from the
contact centre to the PSTN) and ``trunking-originating`` (from the PSTN in). On the outbound
ones ``From`` is the contact centre's caller id and ``To`` is the person called.
"""

from __future__ import annotations

from service.consent.gate import Direction

_OUTBOUND = frozenset({"outbound-api", "outbound-dial", "trunking-terminating"})


def twilio_direction(value: str | None) -> Direction:
    """A missing or unknown value is taken as inbound, as every call was before directions were
    read (Twilio documents the parameter on every voice and status request)."""
    return Direction.OUTBOUND if (value or "").strip() in _OUTBOUND else Direction.INBOUND
