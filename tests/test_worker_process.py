"""``serve --role web`` beside ``callvault worker`` (issue 18 goal 2): the web replica queues
intake and runs no job; the worker takes the job in, answers only its probes and /metrics, hands
the job back on SIGTERM without a traceback, and its liveness fails when its claim loop ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.app import SCHEDULED_PASSES, create_app
from service.config import ProcessRole, Settings
from service.errors import ConfigError
from service.jobs.worker import JOB_WORKER
from service.personal.rehash import REHASH
from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.web import listener
from service.web.listener import EXIT_REQUESTED
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, Service, free_port
from tests.intake_helpers import objects, send_recording, settle
from tests.serve_process import ServeProcess, serve_env
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually

PUBLIC = "https://callvault.example.vn"


def thread_niceness(pid: int) -> set[int]:
    """The nice values of the threads of process ``pid`` (Linux keeps one per thread)."""
    values = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that has just ended
            # the fields after the command name's closing parenthesis; nice is the 19th field
            values.add(int((task / "stat").read_text().rsplit(")", 1)[1].split()[16]))
    return values


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.slow
async def test_a_worker_takes_in_what_a_web_replica_queued_and_stops_cleanly(
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    bucket: str,
    twilio_media: FakeTwilioMedia,
    db: asyncpg.Connection,
    session: aiohttp.ClientSession,
) -> None:
    env = serve_env(
        tmp_path / "home", database_url, moto_url, bucket, twilio_media.base_url, PUBLIC
    )
    # CALLVAULT_WORKERS stays 2 on the web replica: its role alone keeps it from the queue
    web = ServeProcess(
        {**env, "CALLVAULT_WORKERS": "2"}, tmp_path / "web.log", args=("serve", "--role", "web")
    )
    worker_env = {**env, "CALLVAULT_PORT": str(free_port()), "CALLVAULT_ROLE": "web"}
    # the command wins over CALLVAULT_ROLE (a config map shared with the web replicas)
    worker = ServeProcess(worker_env, tmp_path / "worker.log", args=("worker",))
    await web.start()
    try:
        twilio = FakeTwilio(
            session, PUBLIC, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, send_to=web.url
        )
        trace = await twilio.place_call("+84901234678", "+842873001234", Caller.parse("stay"))
        stall = asyncio.Event()
        rec_sid = new_recording_sid()
        twilio_media.add_stalling(rec_sid, wav_bytes(2), stall)
        assert (await send_recording(twilio, trace.call_sid, rec_sid))[0] == 204
        # queued (and NOTIFYed) while only the web replica ran; the worker, seconds later,
        # claims it: a web replica that ran jobs would have had it long before
        await worker.start()
        assert worker.proc is not None
        first_worker = f"{socket.gethostname()}:{worker.proc.pid}"

        async def downloading() -> bool:
            row = await db.fetchrow("SELECT state, locked_by FROM jobs")
            return row is not None and row["state"] == "running" and twilio_media.gets[rec_sid] > 0

        await eventually(downloading, what="the worker is mid-download")
        assert await db.fetchval("SELECT locked_by FROM jobs") == first_worker
        # the worker is background work: every one of its threads (the loop's, the executors')
        # runs at CALLVAULT_WORKER_NICE's default; the web replica's at the niceness it got
        assert web.proc is not None
        started_at = os.getpriority(os.PRIO_PROCESS, 0)
        assert thread_niceness(worker.proc.pid) == {max(started_at, 10)}
        assert thread_niceness(web.proc.pid) == {started_at}
        # and an operator tells their database sessions apart
        names = await db.fetch(
            "SELECT DISTINCT application_name FROM pg_stat_activity "
            "WHERE application_name LIKE 'callvault-%' AND application_name <> 'callvault-listener'"
        )
        assert {r["application_name"] for r in names} == {"callvault-web", "callvault-worker"}
        async with session.get(worker.url + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(worker.url + "/metrics") as resp:
            assert resp.status == 200
        async with session.post(worker.url + "/telephony/twilio/voice") as resp:
            assert resp.status == 404  # no webhooks on a worker

        worker.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.proc.wait(), 30) == 0
        job = await db.fetchrow("SELECT state, attempts, lease_token FROM jobs")
        assert (job["state"], job["attempts"], job["lease_token"]) == ("queued", 0, None)

        stall.set()
        await worker.start()
        assert await settle(db) == {"done": 1}
        second_worker = f"{socket.gethostname()}:{worker.proc.pid}"
        assert await db.fetchval("SELECT locked_by FROM jobs") == second_worker
        assert await db.fetchval("SELECT state FROM recordings") == "stored"
        assert len(await objects(moto_url, bucket)) == 1
    finally:
        await asyncio.gather(worker.stop(), web.stop())
    worker_log = worker.log.read_text()
    assert '"role": "worker"' in worker_log and "draining" in worker_log
    for log in (worker_log, web.log.read_text()):
        assert "Traceback" not in log
    assert '"job done"' not in web.log.read_text()


async def test_each_role_builds_its_part_of_the_application(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="CALLVAULT_WORKERS"):
        create_app(replace(settings, role=ProcessRole.WORKER, workers=0))

    web = Service(replace(settings, role=ProcessRole.WEB, workers=2, purge_interval_s=1))
    await web.start()
    try:
        assert web.server is not None
        assert JOB_WORKER not in web.server.app
        assert not web.server.app[EXIT_REQUESTED].is_set()
        # purge is due every second, yet no scheduled pass and no re-hash is even considered
        assert SCHEDULED_PASSES not in web.server.app
        assert REHASH not in web.server.app
        paths = {r.resource.canonical for r in web.server.app.router.routes() if r.resource}
        assert "/telephony/twilio/voice" in paths
    finally:
        await web.stop()

    worker = Service(replace(settings, role=ProcessRole.WORKER, workers=1, purge_interval_s=3600))
    await worker.start()
    try:
        assert worker.server is not None
        app = worker.server.app
        assert SCHEDULED_PASSES in app and REHASH in app  # (None: nothing to re-hash here)
        paths = {r.resource.canonical for r in app.router.routes() if r.resource}
        assert paths == {"/healthz", "/readyz", "/metrics"}
        async with aiohttp.ClientSession() as http:
            async with http.get(worker.base_url + "/healthz") as resp:
                assert resp.status == 200
            # a claim loop that ended by itself claims nothing more: liveness asks for a restart
            loop_task = app[JOB_WORKER]._loop_task
            assert loop_task is not None
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            async with http.get(worker.base_url + "/healthz") as resp:
                assert resp.status == 503
                assert (await resp.json())["error"]["code"] == "worker_stopped"
            # and the process exits non-zero, so compose's restart policy acts too
            assert app[EXIT_REQUESTED].is_set()
    finally:
        await worker.stop()


def test_the_listener_exits_non_zero_when_the_application_asks_it_to() -> None:
    """What ``serve`` returns (its exit status) once the claim loop has died: the app's
    EXIT_REQUESTED, set here as soon as it listens, shuts it down gracefully with status 1."""
    app = aiohttp.web.Application()
    app[EXIT_REQUESTED] = asyncio.Event()
    stopped: list[str] = []

    async def cleanup(app: aiohttp.web.Application) -> None:
        stopped.append("cleaned up")

    app.on_cleanup.append(cleanup)
    code = listener.run(
        app,
        host="127.0.0.1",
        port=free_port(),
        header_timeout_s=5,
        max_connections=64,
        shutdown_timeout_s=1,
        access_log_class=aiohttp.web_log.AccessLogger,
        on_listening=lambda _limit: app[EXIT_REQUESTED].set(),
    )
    assert code == 1 and stopped == ["cleaned up"]
