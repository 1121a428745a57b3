"""Operations in process: request ids, metrics for webhooks, consent outcomes and intake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from service.config import Settings
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import Service
from tests.intake_helpers import send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    yield svc
    await svc.stop()


async def test_metrics_count_webhooks_outcomes_and_intake(
    service: Service, twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: asyncpg.Connection
) -> None:
    stay = await twilio.place_call("+84901234678", "+842873001234", Caller.parse("stay"))
    await twilio.place_call("+84901234679", "+842873001234", Caller.parse("hang-up"))
    rec_sid, body = new_recording_sid(), wav_bytes(1)
    twilio_media.add(rec_sid, body)
    await send_recording(twilio, stay.call_sid, rec_sid)
    await settle(db)
    async with twilio.session.get(service.base_url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    lines = set(text.splitlines())
    assert (
        'callvault_http_requests_total{method="POST",route="/telephony/twilio/voice",'
        'status="200"} 2.0' in lines
    )
    assert 'callvault_consent_outcomes_total{outcome="consented"} 1.0' in lines
    assert 'callvault_consent_outcomes_total{outcome="hung_up_during_notice"} 1.0' in lines
    assert f"callvault_intake_bytes_total {float(len(body))}" in lines
    assert "callvault_intake_duration_seconds_count 1.0" in lines
    assert 'callvault_jobs{state="done",tenant="default"} 1.0' in lines
    assert 'callvault_recordings_at_platform{tenant="default"} 0.0' in lines
    assert "callvault_draining 0.0" in lines
    assert any(
        line.startswith(
            'callvault_http_request_duration_seconds_bucket{le="0.05",'
            'route="/telephony/twilio/voice"}'
        )
        for line in lines
    )
    # no phone number, in any label
    assert "901234678" not in text


async def test_request_ids_are_echoed_or_made(service: Service, twilio: FakeTwilio) -> None:
    async with twilio.session.get(
        service.base_url + "/healthz", headers={"X-Request-Id": "lb-0123456789"}
    ) as resp:
        assert resp.headers["X-Request-Id"] == "lb-0123456789"
    async with twilio.session.get(
        service.base_url + "/healthz", headers={"X-Request-Id": "bad id\\with junk"}
    ) as resp:
        made = resp.headers["X-Request-Id"]
    assert len(made) == 32 and made.isalnum()
    async with twilio.session.get(service.base_url + "/nope") as resp:
        assert resp.status == 404 and len(resp.headers["X-Request-Id"]) == 32


def test_stale_work_folders_are_removed_and_fresh_ones_kept(tmp_path: Path) -> None:
    import os

    from service.ops.workdir import STALE_S, remove_stale

    (tmp_path / "intake-old").mkdir()
    (tmp_path / "intake-old" / "media.wav").write_bytes(b"x")
    (tmp_path / "dsar-fresh").mkdir()
    (tmp_path / "other-old").mkdir()
    long_ago = os.stat(tmp_path).st_mtime - STALE_S - 60
    for name in ("intake-old", "other-old"):  # the clock is moved on the files, not waited for
        os.utime(tmp_path / name, (long_ago, long_ago))
    assert remove_stale(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsar-fresh", "other-old"]


async def test_a_dead_process_s_work_folders_go_at_start_up_whatever_their_age(
    tmp_path: Path,
) -> None:
    """Work folders hold plaintext audio: a crashed process's are swept as soon as a process
    starts, not a day later, while a running process's (one home shared by two replicas on a
    host) are left alone, and so is a fresh one from another host."""
    import os
    import socket
    import subprocess
    import sys

    from service.ops.workdir import OWNER, remove_stale, work_dir

    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(child.stdout)  # exited: not running any more
    host = socket.gethostname()
    owners = {
        "intake-crashed": f"{host} {dead_pid}",
        "dsar-crashed": f"{host} {dead_pid} 12345",
        # our own PID with another start time: a predecessor in a restarted container
        "seal-predecessor": f"{host} {os.getpid()} 1",
        "export-elsewhere": f"another-host.example {dead_pid} 1",
    }
    for name, owner in owners.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "media.wav").write_bytes(b"plaintext audio")
        (tmp_path / name / OWNER).write_text(owner)
    async with work_dir(tmp_path, "intake-") as ours:  # a running process's folder
        assert remove_stale(tmp_path) == 3
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["export-elsewhere", ours.name])
    assert [p.name for p in tmp_path.iterdir()] == ["export-elsewhere"]
