"""Named SQL queries, kept in a ``queries.sql`` beside the feature that owns the tables.

A file holds blocks that start with ``-- name: some_name``; :func:`load` reads one file once and
returns a read-only mapping, so a typo in a query name fails at import, not mid-call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse(text: str) -> Mapping[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return MappingProxyType(queries)


def load(package: str, filename: str = "queries.sql") -> Mapping[str, str]:
    return parse(resources.files(package).joinpath(filename).read_text(encoding="utf-8"))
