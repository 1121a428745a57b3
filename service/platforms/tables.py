"""The secrets a platform account's row names by reference (``NAME_env`` or ``NAME_file``).
The rows themselves are read from the replica's tenant directory
(:mod:`service.tenants.policies`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def read_secret(refs: Mapping[str, str], which: str) -> str:
    """The secret a reference names (``{which}_env`` or ``{which}_file``), read now, so a
    rotated secret is used at once; "" when unset or unreadable (blocking: a file)."""
    if name := refs.get(f"{which}_env"):
        return os.environ.get(name, "")
    if path := refs.get(f"{which}_file"):
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError:
            return ""
    return ""
