"""What clients send, parsed in one place, so bad input is a 400 and never a stray exception.

Text must be something PostgreSQL can store (no NUL, no unpaired surrogate: both make the
driver or the server fail deep inside a query); integers are ASCII digits of a bounded length
(``'²'.isdigit()`` is true but ``int('²')`` fails, and ``int()`` of 5,000 digits raises);
timestamps carry a zone and stay inside the calendar once moved to UTC (``0001-01-01T00:00
+14:00`` is year 0 in UTC, which neither Python nor asyncpg can hold); JSON is UTF-8, nests
shallowly and has no duplicate keys (last-wins would let two readers of one body disagree).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from service.errors import BadRequest

MAX_JSON_DEPTH = 32
_INTEGER = re.compile(r"-?[0-9]{1,18}", re.ASCII)  # 18 digits always fit a signed 64-bit int


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as PostgreSQL text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode text)"
    return None


def check_text(value: str, what: str, *, code: str) -> str:
    """``value`` unchanged, or :class:`BadRequest` naming ``what`` (never echoing the value)."""
    problem = text_problem(value)
    if problem is not None:
        raise BadRequest(f"{what}: {problem}", code=code)
    return value


def parse_int(raw: str) -> int | None:
    """An integer written in ASCII digits with an optional leading minus, or None."""
    return int(raw) if _INTEGER.fullmatch(raw) else None


def utc_in_range(value: datetime) -> bool:
    """True when an aware datetime can be moved to UTC (what asyncpg does before sending it)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def parse_timestamp(raw: str) -> datetime | None:
    """An ISO 8601 date-time with a zone that stays a valid date in UTC, or None."""
    if not (raw.isascii() and raw.isprintable()):
        return None  # fromisoformat stops reading at a NUL and accepts what came before it
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None or not utc_in_range(parsed):
        return None
    return parsed


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_json(raw: bytes) -> Any:
    """A JSON document from a request body, or :class:`BadRequest` (``bad_json``).

    Refused: bytes that are not UTF-8, syntax errors, NaN and Infinity, integers too long to
    convert, duplicate keys, nesting deeper than :data:`MAX_JSON_DEPTH`; and strings (keys or
    values) holding NUL or unpaired surrogates (``invalid_body``)."""
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _Duplicate as exc:
        key = check_text(str(exc), "a duplicated key", code="bad_json")[:40]
        raise BadRequest(f"the key {key!r} appears twice in one object", code="bad_json") from None
    except RecursionError:
        # json's scanner recurses once per level: far below the interpreter's limit it is
        # already deeper than any body we accept
        raise BadRequest("the body nests too deeply", code="bad_json") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, int() of too many digits
        raise BadRequest("the body is not valid JSON", code="bad_json") from None
    _check_tree(data)
    return data


def _check_tree(data: Any) -> None:
    # iterative, so that depth is measured without recursing as deep as the input does
    stack: list[tuple[Any, str, int]] = [(data, "body", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels", code="bad_json")
        if isinstance(value, str):
            check_text(value, where, code="invalid_body")
        elif isinstance(value, dict):
            for key, item in value.items():
                name = check_text(key, f"a key in {where}", code="invalid_body")[:40]
                stack.append((item, name if where == "body" else f"{where}/{name}", depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}/{i}", depth + 1) for i, item in enumerate(value))
