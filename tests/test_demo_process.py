"""The README's first block, as a newcomer runs it: ``callvault serve`` in embedded mode (no
database URL, no Twilio account), then ``callvault demo``. The calls' recordings must be fetched
from serve's own Twilio media stand-in and stored, the printed QA token must open them, one must
play with a reason, and the purge dry run must say when each goes. Also: the stand-in exists
only in that embedded, credential-less mode."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import wave
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.app import create_app
from service.config import Settings
from service.demo.laptop import STANDIN_PATH, with_standin
from tests.conftest import free_port
from tests.serve_process import ServeProcess

EXPECTED = {  # the demo's calls and what callvault must decide for each
    ("demo", "consented"): 1,
    ("demo", "hung_up_during_notice"): 1,
    ("demo-explicit", "consented"): 1,
    ("demo-explicit", "refused"): 1,
    ("demo-explicit", "no_input"): 1,
}


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_demo_against_embedded_serve_stores_recordings_a_qa_trainer_can_play(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(CALLVAULT_HOME=str(home), CALLVAULT_PORT=str(free_port()))
    serve = ServeProcess(env, tmp_path / "serve.log")
    await serve.start()
    try:
        code, out, err = await _cli(env, "demo")
        assert code == 0, out + err
        lines = out.splitlines()
        token = next(line for line in lines if line.startswith("cv_"))
        assert f"{serve.url}/qa" in out

        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            calls: list[dict[str, Any]] = []
            for queue in ("demo", "demo-explicit"):
                async with http.get(
                    f"{serve.url}/api/calls?queue={queue}", headers=headers
                ) as resp:
                    assert resp.status == 200  # the printed token works
                    calls += (await resp.json())["items"]
            seen: dict[tuple[str, str], int] = {}
            for call in calls:
                key = (call["queue"], call["outcome"])
                seen[key] = seen.get(key, 0) + 1
            assert seen == EXPECTED
            recordings = [r for c in calls for r in c["recordings"]]
            assert len(recordings) == 2 and {r["state"] for r in recordings} == {"stored"}
            for call in calls:
                assert bool(call["recordings"]) == (call["outcome"] == "consented")

            # the dry run printed when each recording goes
            for rec in recordings:
                line = next(line for line in lines if rec["id"] in line)
                assert "goes in 59m" in line or "goes in 1h" in line, line

            # a QA trainer plays one, with a reason, and gets the audio the "recorder" made
            async with http.post(
                f"{serve.url}/api/recordings/{recordings[0]['id']}/playback",
                json={"reason": "demo: listening to a stored call"},
                headers=headers,
            ) as resp:
                assert resp.status == 200, await resp.text()
                link = (await resp.json())["url"]
            async with http.get(link) as resp:
                assert resp.status == 200
                audio = await resp.read()
            with wave.open(io.BytesIO(audio)) as w:
                assert w.getframerate() == 8000 and w.getnframes() >= 3 * 8000

            async with http.get(
                f"{serve.url}/api/calls", headers={"Authorization": "Bearer x"}
            ) as r:
                assert r.status == 401  # and a made-up one does not
            # the stand-in is Twilio-shaped: wrong credentials are refused as Twilio does
            async with http.get(
                f"{serve.url}{STANDIN_PATH}/2010-04-01/Accounts/AC{'0' * 32}.json",
                headers={"Authorization": aiohttp.encode_basic_auth(f"AC{'0' * 32}", "wrong")},
            ) as r:
                assert r.status == 401

        # Twilio's copies were deleted after storing, as intake does with a real account
        assert not list((home / "twilio-standin").glob("*.wav"))
    finally:
        await serve.stop()
    logged = (tmp_path / "serve.log").read_text()
    assert "demo mode" in logged
    assert "+849055500" not in logged and "849055500" not in out  # numbers are never logged


@pytest.mark.slow
async def test_demo_as_stringee_stores_recordings_and_keeps_stringees_copies(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(CALLVAULT_HOME=str(home), CALLVAULT_PORT=str(free_port()))
    serve = ServeProcess(env, tmp_path / "serve.log")
    await serve.start()
    try:
        code, out, err = await _cli(env, "demo", "--platform", "stringee")
        assert code == 0, out + err
        assert "as Stringee would" in out
        token = next(line for line in out.splitlines() if line.startswith("cv_"))
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            calls: list[dict[str, Any]] = []
            for queue in ("demo", "demo-explicit"):
                async with http.get(
                    f"{serve.url}/api/calls?queue={queue}", headers=headers
                ) as resp:
                    assert resp.status == 200
                    calls += (await resp.json())["items"]
            seen: dict[tuple[str, str], int] = {}
            for call in calls:
                key = (call["queue"], call["outcome"])
                seen[key] = seen.get(key, 0) + 1
            assert seen == EXPECTED  # the number picked the queue, as the URL does for Twilio
            recordings = [r for c in calls for r in c["recordings"]]
            assert len(recordings) == 2 and {r["state"] for r in recordings} == {"stored"}
            # the JWT is checked: a request without one is refused as Stringee refuses it
            async with http.get(f"{serve.url}/v1/call/recording/{calls[0]['id']}") as r:
                assert r.status == 401
            # its call log (what the reconciler asks) is there, behind the same JWT
            async with http.get(f"{serve.url}/v1/call/log?id={calls[0]['id']}") as r:
                assert r.status == 401
        # Stringee cannot delete: its copies stay (the ledger says platform_copy_retained)
        assert len(list((home / "stringee-standin").glob("*.wav"))) == 2
    finally:
        await serve.stop()
    logged = (tmp_path / "serve.log").read_text()
    assert "849055500" not in logged and "849055500" not in out


@pytest.mark.slow
async def test_demo_and_simulate_as_a_pbx_upload_through_the_pbx_api(tmp_path: Path) -> None:
    """A PBX's whole call life against a running serve: ``demo --platform pbx`` (calls, the
    consented ones' recordings uploaded and stored), then ``simulate --platform pbx`` with a
    telephony token made by ``token create``, as a newcomer wiring their PBX would."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(CALLVAULT_HOME=str(home), CALLVAULT_PORT=str(free_port()))
    serve = ServeProcess(env, tmp_path / "serve.log")
    await serve.start()
    try:
        code, out, err = await _cli(env, "demo", "--platform", "pbx")
        assert code == 0, out + err
        assert "as a PBX would" in out
        token = next(line for line in out.splitlines() if line.startswith("cv_"))
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:

            async def calls_of(queue: str) -> list[dict[str, Any]]:
                async with http.get(f"{serve.url}/api/calls?queue={queue}", headers=headers) as r:
                    assert r.status == 200
                    return list((await r.json())["items"])

            calls = await calls_of("demo") + await calls_of("demo-explicit")
            seen: dict[tuple[str, str], int] = {}
            for call in calls:
                key = (call["queue"], call["outcome"])
                seen[key] = seen.get(key, 0) + 1
            assert seen == EXPECTED
            assert {c["platform"] for c in calls} == {"pbx"}
            recordings = [r for c in calls for r in c["recordings"]]
            assert len(recordings) == 2 and {r["state"] for r in recordings} == {"stored"}

            code, out, err = await _cli(
                env, "token", "create", "--name", "pbx", "--role", "telephony"
            )
            assert code == 0, err
            token_file = tmp_path / "pbx.token"
            token_file.write_text(out)
            simulate = ("simulate", "--platform", "pbx", "--token-file", str(token_file))
            code, out, err = await _cli(
                env, *simulate, "--queue", "demo-explicit", "--behaviour", "press-9,2"
            )
            assert code == 0, out + err
            assert "caller presses 9" in out and "ask again" in out and "refused" in out
            assert "result: not recorded" in out
            code, out, err = await _cli(env, *simulate, "--queue", "demo")
            assert code == 0, out + err
            assert "result: consent given: recording started" in out
            after = await calls_of("demo") + await calls_of("demo-explicit")
            assert len(after) == len(calls) + 2
            new = sorted(c["outcome"] for c in after if c["id"] not in {x["id"] for x in calls})
            assert new == ["consented", "refused"]

            (tmp_path / "wrong.token").write_text("cv_not-a-token\n")
            code, out, err = await _cli(
                env, "simulate", "--platform", "pbx", "--token-file", str(tmp_path / "wrong.token")
            )
            assert code == 1 and "HTTP 401" in out
    finally:
        await serve.stop()
    logged = (tmp_path / "serve.log").read_text()
    assert "849055500" not in logged and "84901234567" not in logged
    assert "Traceback" not in logged


def test_demo_mode_needs_the_embedded_default_and_never_weakens_production() -> None:
    resolved = Settings(twilio_account_sid="AC" + "1" * 32, twilio_auth_token="t" * 32, port=8099)
    demo = with_standin(Settings(), resolved)
    assert demo.twilio_standin
    assert demo.twilio_api_url == f"http://127.0.0.1:8099{STANDIN_PATH}"
    assert {"demo", "demo-explicit"} <= set(demo.queues)
    # with a secret key, a demo Stringee project whose recordings are on the same server
    keyed = with_standin(Settings(), replace(resolved, secret_key="k" * 40))
    assert keyed.stringee_api_urls == ("http://127.0.0.1:8099",)
    assert keyed.stringee_signing_secret and keyed.stringee_api_key_sid
    own = with_standin(
        Settings(stringee_signing_secret="mine"), replace(resolved, secret_key="k" * 40)
    )
    assert own.stringee_api_urls == Settings().stringee_api_urls  # an operator's project: kept
    for given in (
        {"database_url": "postgresql://db/callvault"},
        {"twilio_account_sid": "AC" + "2" * 32},
        {"twilio_auth_token": "real-token"},
        {"twilio_api_url": "https://api.twilio.com.example"},
    ):
        kept = with_standin(Settings(**given), resolved)  # type: ignore[arg-type]
        assert kept is resolved and not kept.twilio_standin, given


def test_the_stand_in_is_mounted_only_in_demo_mode() -> None:
    production = Settings(
        database_url="postgresql://db/callvault",
        secret_key="k" * 48,
        twilio_account_sid="AC" + "3" * 32,
        twilio_auth_token="t" * 32,
    )

    def standin_routes(settings: Settings) -> list[str]:
        app = create_app(settings)
        return [r.canonical for r in app.router.resources() if r.canonical.startswith(STANDIN_PATH)]

    assert standin_routes(production) == []
    assert standin_routes(with_standin(Settings(), production))  # the flag is what mounts it
