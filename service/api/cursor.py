"""Keyset pagination for the API's lists: a page ends with ``next_cursor``, the last row's
sort key (and its id, the tie-breaker), opaque to the client; the next page is the rows after
that key. Unlike an offset, a row added or closed meanwhile neither repeats a row nor skips
one, and the database seeks to the key instead of counting rows past.

The cursor is base64 of a JSON list of text; anything else is 400 bad_cursor."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from service.errors import BadRequest
from service.untrusted import parse_timestamp

Part = Callable[[str], Any]


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


def decode(text: str | None, *parts: Part) -> Any:
    """The sort key a cursor carries as a tuple, each part read by its converter
    (``timestamp``, ``flag``, ``uuid.UUID``, ``int``); None for no cursor (the first page).
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
    except ValueError:
        raise bad from None
