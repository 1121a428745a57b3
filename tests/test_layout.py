"""Issue 14's layout and vocabulary: every exception class lives in service/errors.py under the
one base, and the enums name exactly the words the database accepts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import service.errors
from service.errors import CallvaultError
from service.vocabulary import Outcome, Role

ROOT = Path(__file__).resolve().parents[1]
# private control flow inside one module, never raised past it: _Duplicate must stay a
# ValueError (json's object_pairs_hook), _TooMany is caught where it is raised
PRIVATE = {
    "service/web/untrusted.py": {"_Duplicate"},
    "service/platforms/stringee/media.py": {"_TooMany"},
}


def _exception_classes_defined_outside_errors() -> list[str]:
    found = []
    for package in ("service", "retention", "prompts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "service/errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef) or node.name in PRIVATE.get(rel, set()):
                    continue
                bases = [ast.unparse(b) for b in node.bases]
                if any(re.search(r"(Error|Exception)$", b) for b in bases):
                    found.append(f"{rel}: {node.name}({', '.join(bases)})")
    return found


def test_every_exception_class_is_in_errors_and_derives_from_the_one_base() -> None:
    assert _exception_classes_defined_outside_errors() == []
    classes = [
        obj
        for obj in vars(service.errors).values()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    ]
    assert len(classes) > 30
    assert all(issubclass(cls, CallvaultError) for cls in classes), classes


def test_the_raising_modules_still_name_their_errors() -> None:
    from service import jobs
    from service.platforms import port
    from service.platforms.stringee import media as stringee_media
    from service.platforms.twilio import media as twilio_media

    assert jobs.Defer is service.errors.Defer
    assert port.NoMediaSource is service.errors.NoMediaSource
    assert twilio_media.MediaError is service.errors.TwilioMediaError
    assert issubclass(stringee_media.RateLimited, stringee_media.MediaError)


def _check_words(constraint: str) -> set[str]:
    schema = (ROOT / "tests" / "schema.sql").read_text(encoding="utf-8")
    line = next(ln for ln in schema.splitlines() if constraint in ln)
    return set(re.findall(r"'(\w+)'::text", line))


def test_the_enums_are_the_databases_words() -> None:
    assert {o.value for o in Outcome} == _check_words("calls_outcome_check")
    assert {r.value for r in Role} == _check_words("api_tokens_role_check")
