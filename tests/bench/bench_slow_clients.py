"""Slow clients against ``callvault serve`` with its defaults (issue 12, item 10): thousands of
loopback sockets trickle a header line every 5 s for 40 s while a signed voice webhook is sent
every second. Reports webhooks answered, their worst latency, the most sockets the process
held, and how many log lines the attack cost."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

from tests.bench.harness import ACCOUNT_SID, AUTH_TOKEN, postgres, report, serve_env, wait_ready

SOCKETS = int(os.environ.get("SLOW_SOCKETS", "5000"))
SECONDS = 40.0


def _sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


async def run(database_url: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    env = serve_env(home, database_url, CALLVAULT_WORKERS="0", CALLVAULT_LOG_LEVEL="INFO")
    log_path = home / "serve.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "serve", env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{env['CALLVAULT_PORT']}"
    try:
        await wait_ready(url + "/readyz", proc)
        lines_before = len(log_path.read_text().splitlines())
        attack = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.slow_loris",
            env["CALLVAULT_PORT"],
            str(SOCKETS),
            str(SECONDS),
            "5",
            stdout=asyncio.subprocess.PIPE,
        )
        validator = RequestValidator(AUTH_TOKEN)
        hook = env["CALLVAULT_PUBLIC_URL"] + "/telephony/twilio/voice"
        answered, latencies, peak = 0, [], 0
        sent = 0
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + SECONDS - 2
            while time.monotonic() < deadline:
                await asyncio.sleep(1.0)  # one call a second, as calls arrive
                peak = max(peak, _sockets(proc.pid))
                params = {
                    "AccountSid": ACCOUNT_SID,
                    "CallSid": "CA" + secrets.token_hex(16),
                    "From": "+84901234678",
                    "To": "+842873001234",
                    "CallStatus": "ringing",
                    "Direction": "inbound",
                }
                sent += 1
                started = time.perf_counter()
                try:
                    async with session.post(
                        url + "/telephony/twilio/voice",
                        data=params,
                        headers={"X-Twilio-Signature": validator.compute_signature(hook, params)},
                        timeout=aiohttp.ClientTimeout(total=15),
                    ) as resp:
                        if resp.status == 200 and "<Response>" in await resp.text():
                            answered += 1
                            latencies.append((time.perf_counter() - started) * 1000)
                except (aiohttp.ClientError, TimeoutError):
                    pass
        out, _ = await attack.communicate()
        log_lines = len(log_path.read_text().splitlines()) - lines_before
    finally:
        proc.terminate()
        await proc.wait()
    worst = max(latencies) if latencies else float("nan")
    report(
        "slow_clients",
        f"slow clients: {SOCKETS} sockets trickling for {SECONDS:.0f} s: {answered}/{sent} "
        f"webhooks answered (worst {worst:.0f} ms), at most {peak} sockets held, "
        f"{log_lines} log lines; attacker {out.decode().strip()}",
        sockets=SOCKETS,
        answered=answered,
        sent=sent,
        worst_ms=worst,
        peak_sockets=peak,
        log_lines=log_lines,
    )


if __name__ == "__main__":
    with postgres() as database_url:
        asyncio.run(run(database_url))
