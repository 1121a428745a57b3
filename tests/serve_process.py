"""``callvault serve`` as a subprocess for the tests that need a real process (crashes,
signals, replicas), with the environment an operator would give it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, SECRET_KEY, free_port, service_role


def serve_env(
    home: Path,
    database_url: str,
    moto_url: str,
    bucket: str,
    twilio_api_url: str,
    public_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    port = str(free_port())
    env.update(
        CALLVAULT_HOME=str(home),
        CALLVAULT_PORT=port,
        CALLVAULT_PUBLIC_URL=public_url or f"http://127.0.0.1:{port}",
        CALLVAULT_DATABASE_URL=service_role(database_url),  # serve refuses a superuser
        CALLVAULT_S3_BUCKET=bucket,
        CALLVAULT_S3_ENDPOINT_URL=moto_url,
        CALLVAULT_S3_REGION="us-east-1",
        CALLVAULT_SECRET_KEY=SECRET_KEY,
        CALLVAULT_TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        CALLVAULT_TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        CALLVAULT_TWILIO_API_URL=twilio_api_url,
        CALLVAULT_CONTINUE_URL="https://contact-centre.example.vn/next",
        CALLVAULT_JOB_LEASE="2s",
        CALLVAULT_JOB_BACKOFF="1s",
        CALLVAULT_JOB_BACKOFF_CAP="2s",
        # a loaded CI machine must not turn requests into 503 database_unavailable (2 s by
        # default); the deadlines themselves are tested in test_database_outage
        CALLVAULT_DB_ACQUIRE_TIMEOUT="15s",
        CALLVAULT_DB_STATEMENT_TIMEOUT="15s",
    )
    env.update(extra)
    return env


class ServeProcess:
    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        command: Sequence[str] = (sys.executable, "-m", "service"),
        cwd: Path | None = None,
        args: Sequence[str] = ("serve",),
    ) -> None:
        self.env = env
        self.args = args  # ("worker",), ("serve", "--role", "web")
        self.log = log
        self.command = command  # the installed ``callvault`` script in the wheel test
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.port = int(env["CALLVAULT_PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, **extra_env: str) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                *self.args,
                env={**self.env, **extra_env},
                cwd=self.cwd,
                stdout=log,
                stderr=log,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                if self.proc.returncode is not None:
                    raise AssertionError(f"{self.args[0]} exited: {self.log.read_text()[-2000:]}")
                try:
                    async with session.get(self.url + "/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)  # waiting for the process to come up
        raise AssertionError(f"{self.args[0]} did not become ready")

    async def wait_killed(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def peak_rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")
