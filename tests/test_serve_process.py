"""The README's promise, as a user runs it: ``callvault serve`` on an empty home starts embedded
PostgreSQL, migrates, renders the notices and answers; ``callvault simulate`` plays calls against
it; ``callvault ledger verify`` proves them; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CALLER = "+84987654321"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # waiting for another process to come up, not passing test time
    raise AssertionError("serve did not become ready")


def test_serve_simulate_verify_on_an_empty_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(
        CALLVAULT_HOME=str(home),
        CALLVAULT_PORT=str(port),
        CALLVAULT_CONTINUE_URL="https://contact-centre.example.vn/next",
        CALLVAULT_STRINGEE_SIGNING_SECRET="stringee-signing-secret",
        CALLVAULT_STRINGEE_CONTINUE_SCCO='[{"action": "connect", "to": {"number": "agent_1"}}]',
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], env=env, stdout=log, stderr=log
        )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "service", *args],
                env=env,
                text=True,
                capture_output=True,
                timeout=120,
                check=False,
            )

        stay = cli("simulate", "--from", CALLER, "--behaviour", "stay")
        assert stay.returncode == 0, stay.stdout + stay.stderr
        assert "result: consent given: recording started" in stay.stdout
        assert "/prompts/notice-implied-vi/1.wav" in stay.stdout
        hang = cli("simulate", "--from", CALLER, "--behaviour", "hang-up")
        assert hang.returncode == 0, hang.stdout + hang.stderr
        assert "result: caller hung up before any consent step" in hang.stdout
        # the same two calls as Stringee plays them (SCCO, signed with the project's secret)
        stay_s = cli("simulate", "--platform", "stringee", "--from", CALLER, "--behaviour", "stay")
        assert stay_s.returncode == 0, stay_s.stdout + stay_s.stderr
        assert "<- stream /prompts/notice-implied-vi/1.wav" in stay_s.stdout
        assert "<- record: the call is being recorded" in stay_s.stdout
        assert "result: consent given: recording started" in stay_s.stdout
        hang_s = cli(
            "simulate", "--platform", "stringee", "--from", CALLER, "--behaviour", "hang-up"
        )
        assert hang_s.returncode == 0, hang_s.stdout + hang_s.stderr
        assert "result: caller hung up before any consent step" in hang_s.stdout
        verify = cli("ledger", "verify")
        assert verify.returncode == 0, verify.stderr
        assert "verified 16 events in 4 calls" in verify.stdout
        assert (home / "pg" / "PG_VERSION").exists()
        assert (home / "prompts" / "manifest.json").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    logged = log_path.read_text()
    assert '"message": "callvault listening"' in logged
    for spelling in (CALLER, CALLER[1:], "987654321"):
        assert spelling not in logged
        assert spelling not in stay.stdout  # simulate prints the number masked
        assert spelling not in stay_s.stdout
