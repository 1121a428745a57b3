"""Schemathesis hooks for the API run (loaded with ``SCHEMATHESIS_HOOKS=tests.schemathesis_hooks``).

Schemathesis generates what the schema allows, so it never sent the inputs of issue 12 that
broke the service: ``limit=²``, dates at the edges of the calendar, NUL and unpaired surrogates
in text. Here some generated cases get one of them planted into a parameter or body field
they already carry, marked with a header; ``planted_bad_input_is_a_json_400`` requires those to
be refused with the JSON error shape. ``server_header_names_no_versions`` checks every response.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import strategies as st

PLANTED = "X-Callvault-Planted"
BAD_QUERY: dict[str, list[str]] = {
    "limit": ["²", "--5", "٣", "9" * 5000],
    "from": ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
    "to": ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
    "cursor": ["WzEsMl0", "NQ", "eyJhIjogMX0"],  # [1,2], 5, {"a": 1}
}
BAD_TEXT = ["a\x00b"]
# the API's text parameters (a generated case may also carry names the API does not know,
# which it rightly ignores)
TEXT_QUERY = {"external_id", "queue", "actor", "action", "outcome", "include_released", "call_id"}
# (unpaired surrogates: schemathesis cannot send them; tests/test_bad_input.py does)
BAD_BODY_TEXT = ["a\x00b"]


def _plant(case: Any, where: str, name: str, bad: str) -> Any:
    if where == "query":
        case.query = {**case.query, name: bad}
    else:
        case.body = {**case.body, name: bad}
    case.headers[PLANTED] = ascii(f"{where}:{name}={bad[:12]}")
    # a generated tenant header (the admin's token is a tenant's) would be refused with 404
    # before the planted input reaches validation
    case.headers.pop("Callvault-Tenant", None)
    return case


@schemathesis.hook
def flatmap_case(ctx: Any, case: Any) -> Any:
    options: list[tuple[str, str, str]] = []
    for name in case.query or {}:
        for bad in BAD_QUERY.get(name, BAD_TEXT if name in TEXT_QUERY else []):
            options.append(("query", name, bad))
    if isinstance(case.body, dict):
        for name, value in case.body.items():
            if isinstance(value, str):
                options.extend(("body", name, bad) for bad in BAD_BODY_TEXT)
    if not options:
        return st.just(case)
    # half the cases stay as generated, so the run still covers what the schema allows
    return st.one_of(st.just(None), st.sampled_from(options)).map(
        lambda choice: case if choice is None else _plant(case, *choice)
    )


@schemathesis.check
class planted_bad_input_is_a_json_400:
    """A planted case is refused with 400 and the JSON error shape (unless it was refused for
    its credentials first: 401, 403, 429); and at least one was, or the hooks tested nothing."""

    def __init__(self) -> None:
        self.refused: set[str] = set()

    def after_response(self, ctx: Any, response: Any, case: Any) -> None:
        planted = (case.headers or {}).get(PLANTED)
        if planted is None or response.status_code in (401, 403, 429):
            return
        if response.status_code != 400:
            raise AssertionError(f"{planted}: answered {response.status_code}, not 400")
        try:
            body = json.loads(response.content)
        except ValueError:
            raise AssertionError(f"{planted}: not JSON: {response.content[:300]!r}") from None
        if list(body) != ["error"] or sorted(body["error"]) != ["code", "message"]:
            raise AssertionError(f"{planted}: not the JSON error shape: {body}")
        self.refused.add(planted)

    def after_run(self, ctx: Any) -> None:
        if not self.refused:
            raise AssertionError("no planted bad input reached the server's validation")


@schemathesis.check
def server_header_names_no_versions(ctx: Any, response: Any, case: Any) -> None:
    server = response.headers.get("server", [])
    if server != ["callvault"]:
        raise AssertionError(f"Server header is {server}, not callvault")
