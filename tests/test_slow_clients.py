"""Slow clients must not hold ``callvault serve`` (issue 12, item 10): request heads have a
deadline, open connections a cap (the oldest still waiting for a request head makes room), and
a signed webhook is answered while hundreds of sockets trickle header lines. Runs a real
``serve`` process on loopback; the attack is bounded in size and time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from service.platforms.twilio.simulate import FakeTwilio
from service.web.listener import RepeatBrake
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, new_sid
from tests.serve_process import ServeProcess, serve_env
from tests.twilio_media import FakeTwilioMedia
from tests.waiting import eventually

pytestmark = pytest.mark.slow
SLOW_CLIENTS = 200
CAP = 50


@pytest.fixture
async def serve(
    tmp_path: Path,
    database_url: str,
    moto_url: str,
    bucket: str,
    twilio_media: FakeTwilioMedia,
    built_prompts: Path,
) -> AsyncIterator[ServeProcess]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "prompts").symlink_to(built_prompts, target_is_directory=True)
    proc = ServeProcess(
        serve_env(
            home,
            database_url,
            moto_url,
            bucket,
            twilio_media.base_url,
            CALLVAULT_HEADER_TIMEOUT="2s",
            CALLVAULT_MAX_CONNECTIONS=str(CAP),
            CALLVAULT_WORKERS="0",
        ),
        tmp_path / "serve.log",
    )
    await proc.start()
    yield proc
    await proc.stop()


def _sockets(proc: ServeProcess) -> int:
    assert proc.proc is not None
    fd_dir = Path(f"/proc/{proc.proc.pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


async def _true(value: bool) -> bool:
    return value


async def _attack(port: int, sockets: int, seconds: float) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.slow_loris",
        str(port),
        str(sockets),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )


async def _report(attack: asyncio.subprocess.Process) -> dict[str, int]:
    out, _ = await asyncio.wait_for(attack.communicate(), 60)
    assert attack.returncode == 0
    report: dict[str, int] = json.loads(out)
    return report


async def test_a_slow_connection_is_closed_at_the_header_deadline(serve: ServeProcess) -> None:
    # one socket, no pressure on the cap: only the 2 s deadline can close it within 6 s
    report = await _report(await _attack(serve.port, 1, 6.0))
    assert report["closed_by_server"] >= 1


async def test_a_webhook_body_trickled_byte_by_byte_gets_408(serve: ServeProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    writer.write(
        b"POST /telephony/twilio/voice HTTP/1.1\r\nHost: callvault\r\n"
        b"X-Twilio-Signature: c2lnbmF0dXJl\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
    )
    answer = b""

    async def trickle() -> None:
        for _ in range(200):  # 100 s at most; the deadline is 2 s
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.5)  # the attacker's pace, not test time

    task = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task
        writer.transport.abort()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_webhook_is_answered_while_slow_clients_hold_sockets(
    serve: ServeProcess,
) -> None:
    attack = await _attack(serve.port, SLOW_CLIENTS, 12.0)
    try:
        # the attack has filled the cap
        await eventually(
            lambda: _true(_sockets(serve) >= CAP), what="the attack fills the cap", timeout_s=30
        )
        async with aiohttp.ClientSession() as session:
            twilio = FakeTwilio(session, serve.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
            status, body = await asyncio.wait_for(
                twilio.post(
                    twilio.url("/telephony/twilio/voice"),
                    twilio.call_params(new_sid(), "+84901234678", "+842873001234"),
                ),
                30,
            )
        assert status == 200 and "<Response>" in body
        # the process holds no more sockets than the cap allows (plus database, store, listener;
        # a socket being closed is counted until the loop has let it go)
        assert attack.returncode is None
        await eventually(
            lambda: _true(_sockets(serve) <= CAP + 20), what="sockets within the cap", timeout_s=30
        )
    finally:
        report = await _report(attack)
    assert report["opened"] > SLOW_CLIENTS and report["closed_by_server"] >= SLOW_CLIENTS - CAP
    # evictions and deadlines are not logged per socket
    assert len(serve.log.read_text().splitlines()) < 100


def test_running_out_of_descriptors_is_logged_once_per_interval() -> None:
    now = [0.0]
    brake = RepeatBrake(10.0, clock=lambda: now[0])
    emfile = OSError(24, "Too many open files")
    passed = []
    for i in range(40_000):  # an accept loop spinning for 40 s
        now[0] = i / 1000
        record = logging.LogRecord(
            "asyncio",
            logging.ERROR,
            __file__,
            1,
            "socket.accept() out of system resource",
            None,
            (OSError, emfile, None),
        )
        if brake.filter(record):
            passed.append(record)
    assert len(passed) == 4
    assert getattr(passed[1], "suppressed_repeats", 0) == 9_999
    other = logging.LogRecord("service", logging.INFO, __file__, 1, "call start", None, None)
    assert brake.filter(other)


# Runs in its own process: it lowers that process's descriptor limit and uses them all up.
_OUT_OF_DESCRIPTORS = r"""
import asyncio, json, resource, subprocess, sys
from aiohttp import web
from service.web import listener

CLIENT = '''
import socket, sys, urllib.request
port, n = int(sys.argv[1]), int(sys.argv[2])
sys.stdin.readline()
held = []
for _ in range(n):
    try:
        held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
    except OSError:
        pass
print(len(held), flush=True)
sys.stdin.readline()
print(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status, flush=True)
'''


async def main():
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = listener.CappedSite(runner, "127.0.0.1", 0, limit=1000, grace_s=1.0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(port), "40"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    files = []
    try:
        while True:
            files.append(open("/dev/null"))
    except OSError:
        pass
    for f in files[-4:]:
        f.close()
    del files[-4:]
    loop = asyncio.get_running_loop()
    client.stdin.write("connect\n"); client.stdin.flush()
    # the loop accepts while the client connects: 4 fit, the other 36 find no descriptor
    connected = await loop.run_in_executor(None, client.stdout.readline)
    held = len(site._runner.server.connections)
    for f in files:
        f.close()
    client.stdin.write("request\n"); client.stdin.flush()
    status = await loop.run_in_executor(None, client.stdout.readline)
    print(json.dumps({
        "connected": int(connected), "held": held,
        "status": status.strip(), "serving": site._server.is_serving(),
    }))
    await runner.cleanup()


loop = listener.run.__kwdefaults__["loop_factory"]()
loop.run_until_complete(main())
"""


def test_a_listener_out_of_descriptors_goes_on_serving_once_they_are_free(
    tmp_path: Path,
) -> None:
    # serve's loop (uvloop) accepts and closes what it has no descriptor for; what matters is
    # that the listening socket survives and answers once descriptors are free again
    script = tmp_path / "out_of_descriptors.py"
    script.write_text(_OUT_OF_DESCRIPTORS)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["connected"] == 40 and seen["held"] <= 4  # it did run out
    assert (seen["status"], seen["serving"]) == ("200", True)
