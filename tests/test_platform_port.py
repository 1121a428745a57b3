"""The platform port's boundaries: the core imports no platform, each platform lives in one
folder behind the port, and job kinds are registered beside their handlers, not in app.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from service.jobs.registry import job_kind, registered
from service.jobs.worker import JobContext

ROOT = Path(__file__).resolve().parents[1]
# the consent gate, intake, ledger, storage, the job queue and retention: platform-free
CORE = ("service/consent", "service/intake", "service/ledger", "service/storage", "retention")
CORE_MODULES = (
    "service.consent.gate",
    "service.intake.callbacks",
    "service.intake.job",
    "service.ledger",
    "service.storage",
    "service.jobs.registry",
    "retention.purge",
    "retention.dsar",
    "retention.scheduler",
)
ALLOWED = {"service.platforms", "service.platforms.port"}  # the port itself, never an adapter


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, absolute (``from . import x`` resolved), at any depth of
    the file (inside functions and ``TYPE_CHECKING`` blocks too)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def is_platform(module: str) -> bool:
    if module in ALLOWED or module.startswith("service.platforms.port."):
        return False  # the port, or a name imported from it
    top = module.split(".")[0]
    return top in ("twilio", "stringee") or module.startswith("service.platforms.")


def test_the_scan_sees_a_platform_import() -> None:
    """The scan below would catch the imports this issue removed."""
    adapter = ROOT / "service/platforms/twilio/routes.py"
    assert any(is_platform(m) for m in imported_modules(adapter))
    assert is_platform("service.platforms.twilio.media")
    assert is_platform("twilio.request_validator")
    assert not is_platform("service.platforms.port")
    assert not is_platform("service.platforms.port.MediaSource")
    assert is_platform("service.platforms.twilio")  # from service.platforms import twilio


@pytest.mark.parametrize("folder", CORE)
def test_the_core_imports_no_platform(folder: str) -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for module in imported_modules(path)
        if is_platform(module)
    }
    assert not offenders, f"the core imports a platform: {sorted(offenders)}"


def test_the_core_loads_no_platform_even_indirectly() -> None:
    """Importing the core (in a fresh interpreter) loads no adapter and no platform SDK."""
    script = (
        "import sys\n"
        f"for name in {CORE_MODULES!r}: __import__(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    loaded = {m for m in out if is_platform(m)}
    assert not loaded, f"importing the core loaded {sorted(loaded)}"


def test_the_port_imports_no_adapter() -> None:
    port = ROOT / "service/platforms/port.py"
    assert not {m for m in imported_modules(port) if is_platform(m)}


def test_job_kinds_are_registered_by_their_own_modules_not_app_py() -> None:
    import retention.dsar
    import service.intake.job

    kinds = registered()
    assert kinds["recording"] is service.intake.job.recording
    assert kinds["dsar"] is retention.dsar.run_job
    app_py = (ROOT / "service/app.py").read_text(encoding="utf-8")
    assert "JOB_KIND" not in app_py and "async def recording" not in app_py


def test_a_kind_cannot_be_registered_twice() -> None:
    async def other(ctx: JobContext) -> None:
        raise AssertionError("never run")

    with pytest.raises(ValueError, match="'recording' is registered twice"):
        job_kind("recording")(other)


def test_each_installed_platform_mounts_its_webhooks_at_unchanged_paths() -> None:
    from aiohttp import web

    from service.platforms import installed
    from service.platforms.port import Platform

    by_platform = {adapter.platform: adapter for adapter in installed.ADAPTERS}
    assert len(by_platform) == len(installed.ADAPTERS)  # one adapter per platform
    twilio = by_platform[Platform.TWILIO]
    paths = {(r.method, r.path) for r in twilio.routes if isinstance(r, web.RouteDef)}
    steps = ("voice", "consent", "status", "recording")
    assert paths == {("POST", f"/telephony/twilio/{step}") for step in steps}
    # Stringee at the paths in the design: the answer_url is a GET, the other three POSTs
    stringee = by_platform[Platform.STRINGEE]
    paths = {(r.method, r.path) for r in stringee.routes if isinstance(r, web.RouteDef)}
    assert paths == {
        ("GET", "/telephony/stringee/answer"),
        ("POST", "/telephony/stringee/event"),
        ("POST", "/telephony/stringee/input"),
        ("POST", "/telephony/stringee/recording"),
    }
