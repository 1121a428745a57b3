"""Keyset pagination for the API's lists: a page ends with ``next_cursor``, the last row's
sort key (and its id, the tie-breaker), opaque to the client; the next page is the rows after
that key. Unlike an offset, a row added or closed meanwhile neither repeats a row nor skips
one, and the database seeks to the key instead of counting rows past.

The cursor is base64 of a JSON list of text; anything else is 400 bad_cursor, and so is a
part outside its type's range (an id past int64, a timestamp off the calendar, a uuid that is
not one): the client may send any bytes, and a value the driver cannot encode would be a 500.
Parts are read only by the converters here, each of which checks what the database can take."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from service.errors import BadRequest
from service.web.untrusted import parse_timestamp

Part = Callable[[str], Any]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_BIGINT = re.compile(r"-?[0-9]{1,19}", re.ASCII)  # int() alone takes '١٢', '1_0', ' 1'


def encode(*parts: object) -> str:
    """A cursor of the row's sort key: datetimes as ISO 8601, booleans as 0/1, others as text."""
    text = [
        p.isoformat() if isinstance(p, datetime) else str(int(p)) if isinstance(p, bool) else str(p)
        for p in parts
    ]
    return base64.urlsafe_b64encode(json.dumps(text).encode()).decode().rstrip("=")


def timestamp(text: str) -> datetime:
    parsed = parse_timestamp(text)
    if parsed is None:
        raise ValueError(text)
    return parsed


def flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def bigint(text: str) -> int:
    """A PostgreSQL bigint (a bigserial id) as ``encode`` writes it: ASCII digits in int64."""
    if not _BIGINT.fullmatch(text):
        raise ValueError(text)
    value = int(text)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(text)
    return value


def uuid_id(text: str) -> uuid.UUID:
    """A uuid primary key."""
    return uuid.UUID(text)


def decode(text: str | None, *parts: Part) -> Any:
    """The sort key a cursor carries as a tuple, each part read by its converter from this
    module (``timestamp``, ``flag``, ``uuid_id``, ``bigint``: each refuses what the database
    cannot take); None for no cursor (the first page).
    (Typed Any: the caller's converters decide the tuple's types.)"""
    if not text:
        return None
    bad = BadRequest("cursor is not one this API gave out", code="bad_cursor")
    try:
        decoded = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:  # not base64, not UTF-8, not JSON
        raise bad from None
    # only the shape encode writes: as many strings as the key has parts
    if not (
        isinstance(decoded, list)
        and len(decoded) == len(parts)
        and all(isinstance(p, str) for p in decoded)
    ):
        raise bad
    try:
        return tuple(read(p) for read, p in zip(parts, decoded, strict=True))
    except (ValueError, OverflowError):
        raise bad from None
