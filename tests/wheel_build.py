"""The artefact operators run: the wheel built from a clean copy of the tracked sources, the way
``deploy/Dockerfile`` builds it, and installed (not editable) into a fresh virtual environment.

``deploy/Dockerfile`` copies these same paths and runs ``WHEEL_BUILD``; tests/test_deploy.py
holds it to that, so what tests/test_wheel.py proves is what the image runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "prompts", "retention")
# What the Dockerfile copies into its build stage before building.
BUILD_INPUTS = ("pyproject.toml", "constraints.txt", "README.md", *PACKAGES)
# The build command, in the Dockerfile as ``pip wheel --no-deps --wheel-dir /wheels .``.
WHEEL_BUILD = ("pip", "wheel", "--no-deps", "--wheel-dir")


def tracked(*paths: str) -> list[str]:
    """Files git tracks under ``paths`` (their working-tree content is what gets copied)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", *paths],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in out.split("\0") if name]


def _run(argv: list[str], timeout_s: float) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}"[-4000:])


def build_wheel(workdir: Path) -> Path:
    """Copy the tracked build inputs to ``workdir/src`` (so no stale ``build/`` folder or
    untracked file of this checkout can leak into the wheel) and build the wheel from there,
    with build isolation as ``docker build`` does."""
    src = workdir / "src"
    for name in tracked(*BUILD_INPUTS):
        if not (ROOT / name).exists():
            continue  # deleted in the working tree, not yet in git
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    out = workdir / "wheels"
    _run([sys.executable, "-m", *WHEEL_BUILD, str(out), "--quiet", str(src)], 300)
    (wheel,) = out.glob("callvault-*.whl")
    return wheel


def install_wheel(wheel: Path, venv: Path) -> Path:
    """A new virtual environment (no system site-packages, no pip of its own) with the wheel and
    its dependencies at the pinned versions, installed by this environment's pip. Returns the
    venv's ``bin`` folder."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], 120)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-compile",  # saves seconds; Python compiles what it imports anyway
            "-c",
            str(ROOT / "constraints.txt"),
            str(wheel),
        ],
        600,
    )
    return venv / "bin"
