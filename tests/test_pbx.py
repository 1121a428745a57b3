"""Any PBX through callvault's JSON API (issue 14 item 3): the Asterisk recipe's AGI script and
MixMonitor upload script run as Asterisk runs them (subprocesses; the AGI dialogue on their
stdin/stdout played by a fake Asterisk that answers as the AGI documentation says), against the
real service, PostgreSQL and moto's S3 server. Bad input: tokens, other tenants, malformed
bodies, replays, a truncated upload, a Digest that does not match, an erased call."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from retention import dsar
from service import auth, ledger
from service.config import Settings
from service.db import tenancy
from service.db.pool import connect, create_pool
from service.personal.numbers import PhoneVault
from service.storage import sealed
from service.storage.registry import StoreRegistry
from service.tenants.offboard import offboard
from tests.conftest import SECRET_KEY, Service
from tests.intake_helpers import objects, settle
from tests.twilio_media import wav_bytes
from tests.waiting import eventually

Conn = asyncpg.Connection
ASTERISK = Path(__file__).resolve().parent.parent / "deploy" / "pbx" / "asterisk"
CALLER = "+84901234678"
HOTLINE = "+842873001234"
OTHER = "beta"


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    # the notice URL callvault hands out must reach this server, as it would in production
    await svc.reconfigure(public_url=svc.base_url)
    yield svc
    await svc.stop()


async def _token(db: Conn, tenant: str, role: str = "telephony", name: str = "pbx") -> str:
    await tenancy.set_tenant(db, tenant)
    try:
        return (await auth.create_token(db, f"{name}-{role}", role, "test"))[0]
    finally:
        await tenancy.set_tenant(db, tenancy.DEFAULT)


@pytest.fixture
async def token(db: Conn) -> str:
    return await _token(db, tenancy.DEFAULT)


@pytest.fixture
def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "callvault.token"
    path.write_text(token + "\n")
    return path


def _script_env(base_url: str, token_file: Path, tmp_path: Path) -> dict[str, str]:
    """The environment Asterisk gives its child processes (its own, plus AST_* paths), with
    the recipe's settings as the operator would set them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(
        AST_AGI_DIR=str(ASTERISK),
        AST_CONFIG_DIR=str(tmp_path),
        CALLVAULT_AGI_CONFIG=str(tmp_path / "callvault.ini"),
        CALLVAULT_URL=base_url,
        CALLVAULT_TOKEN_FILE=str(token_file),
        CALLVAULT_SOUNDS_DIR=str(tmp_path / "sounds"),
        CALLVAULT_BACKOFF_S="0.01",
    )
    return env


@dataclass
class FakeAsterisk:
    """Runs ``callvault_agi.py`` as ``AGI()`` does: the ``agi_*`` variables on stdin ended by a
    blank line, then one ``200 result=...`` line per command. ``caller`` decides what the
    caller does while a file plays: ``stay`` (hears it all), ``hangup`` (SIGHUP, then -1 as for a
    gone channel), or a key pressed (``1``, ``2``); ``keys`` answers WAIT FOR DIGIT in turn."""

    env: dict[str, str]
    sounds: Path
    caller: list[str] = field(default_factory=lambda: ["stay"])
    keys: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    played: list[bytes] = field(default_factory=list)

    async def run(self, uniqueid: str, *args: str) -> int:
        agi_vars = {
            "agi_request": "callvault_agi.py",
            "agi_channel": "PJSIP/trunk-00000001",
            "agi_language": "vi",
            "agi_type": "PJSIP",
            "agi_uniqueid": uniqueid,
            "agi_version": "20.5.0",
            "agi_callerid": CALLER,
            "agi_calleridname": "unknown",
            "agi_callingpres": "0",
            "agi_dnid": HOTLINE,
            "agi_rdnis": "unknown",
            "agi_context": "callvault-in",
            "agi_extension": HOTLINE,
            "agi_priority": "3",
            "agi_enhanced": "0.0",
            "agi_accountcode": "",
            "agi_threadid": "140000000000000",
        }
        for i, arg in enumerate(args, start=1):
            agi_vars[f"agi_arg_{i}"] = arg
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ASTERISK / "callvault_agi.py"),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=self.env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        head = "".join(f"{k}: {v}\n" for k, v in agi_vars.items()) + "\n"
        proc.stdin.write(head.encode())
        await proc.stdin.drain()
        gone = False
        while line := (await proc.stdout.readline()).decode().strip():
            self.commands.append(line)
            if gone:
                answer = "511 Command Not Permitted on a dead channel or intercept routine"
            else:
                answer, gone = self._answer(line, proc)
            proc.stdin.write((answer + "\n").encode())
            await proc.stdin.drain()
        return await proc.wait()

    def _answer(self, line: str, proc: asyncio.subprocess.Process) -> tuple[str, bool]:
        if line.startswith("STREAM FILE"):
            sound = line.split()[2]
            # Asterisk finds the file by name plus a format's extension: .ulaw is raw mu-law
            self.played.append(Path(sound + ".ulaw").read_bytes())
            what = self.caller.pop(0) if self.caller else "stay"
            if what == "hangup":
                proc.send_signal(signal.SIGHUP)
                return "200 result=-1 endpos=4000", True
            if what == "stay":
                return "200 result=0 endpos=16000", False
            return f"200 result={ord(what)} endpos=8000", False
        if line.startswith("WAIT FOR DIGIT"):
            key = self.keys.pop(0) if self.keys else ""
            return f"200 result={ord(key) if key else 0}", False
        if line.startswith("SET VARIABLE"):
            _, _, name, value = line.split(" ", 3)
            self.variables[name] = value
        return "200 result=1", False


@pytest.fixture
def asterisk(service: Service, token_file: Path, tmp_path: Path) -> FakeAsterisk:
    return FakeAsterisk(_script_env(service.base_url, token_file, tmp_path), tmp_path / "sounds")


async def run_upload(env: dict[str, str], call_id: str, path: Path) -> tuple[int, str]:
    """MixMonitor's post-command, as the dialplan writes it: ``callvault_upload.py
    ${UNIQUEID} ^{MIXMONITOR_FILENAME}``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ASTERISK / "callvault_upload.py"),
        call_id,
        str(path),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    return await proc.wait(), err.decode()


async def _events(db: Conn, call_id: str, tenant: str = tenancy.DEFAULT) -> list[str]:
    call = await db.fetchval(
        "SELECT id FROM calls WHERE platform = 'pbx' AND external_id = $1 AND tenant_id = $2",
        call_id,
        tenant,
    )
    return [e.type for e in await ledger.events_of(db, call)]


async def _api(
    http: aiohttp.ClientSession,
    service: Service,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    async with http.request(method, service.base_url + path, data=data, headers=sent) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


def _recording(path: Path, seconds: float = 1.0) -> bytes:
    body = wav_bytes(seconds)
    path.write_bytes(body)
    return body


async def _nothing_kept(db: Conn, settings: Settings, moto_url: str) -> None:
    assert await db.fetchval("SELECT count(*) FROM recordings") == 0
    assert settings.s3_bucket is not None
    assert await objects(moto_url, settings.s3_bucket) == []
    tmp = settings.home / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


# --- the Asterisk recipe, end to end -----------------------------------------------------


async def test_asterisk_consent_record_upload_stores_one_verified_object(
    service: Service, asterisk: FakeAsterisk, db: Conn, moto_url: str, tmp_path: Path
) -> None:
    assert await asterisk.run("1700000000.1", "start", "", "inbound") == 0
    assert asterisk.variables == {"CALLVAULT_RECORD": "1"}
    # what was played is exactly the notice the ledger names
    notice = await db.fetchval(
        "SELECT details FROM ledger_events WHERE type = 'notice_played' LIMIT 1"
    )
    assert len(asterisk.played) == 1 and asterisk.played[0]
    assert notice["sha256"] == next(
        p.stem for p in asterisk.sounds.iterdir() if p.suffix == ".ulaw"
    )
    assert await _events(db, "1700000000.1") == ["call_started", "notice_played", "consent_given"]

    recording = tmp_path / "1700000000.1.wav"
    body = _recording(recording)
    keep = tmp_path / "copy.wav"
    shutil.copy(recording, keep)
    code, err = await run_upload(asterisk.env, "1700000000.1", recording)
    assert code == 0, err
    assert not recording.exists()  # uploaded and verified: the PBX's copy goes
    row = await db.fetchrow("SELECT id, state, sha256, size_bytes FROM recordings")
    assert row["state"] == "stored" and row["sha256"] == hashlib.sha256(body).hexdigest()
    assert service.settings.s3_bucket is not None
    stored = await objects(moto_url, service.settings.s3_bucket)
    assert [o["key"] for o in stored] == [f"recordings/{row['id']}.wav"]
    assert (await _events(db, "1700000000.1"))[-1] == "recording_stored"

    # MixMonitor's command run again (an operator's rerun, a retry): same answer, one object
    code, err = await run_upload(asterisk.env, "1700000000.1", keep)
    assert code == 0 and "201" in err, err
    assert await db.fetchval("SELECT count(*) FROM recordings") == 1
    assert len(await objects(moto_url, service.settings.s3_bucket)) == 1
    assert (await _events(db, "1700000000.1")).count("recording_stored") == 1
    # and the hang-up handler's report changes no outcome
    assert await asterisk.run("1700000000.1", "ended") == 0
    assert await db.fetchval("SELECT outcome FROM calls") == "consented"


async def test_asterisk_explicit_refusal_then_upload_is_409_and_nothing_kept(
    service: Service, asterisk: FakeAsterisk, db: Conn, moto_url: str, tmp_path: Path
) -> None:
    defaults = replace(service.settings.defaults, consent_mode="explicit")
    await service.reconfigure(defaults=defaults)
    asterisk.caller = ["2"]  # pressed 2 during the notice
    assert await asterisk.run("1700000000.2", "start") == 0
    assert asterisk.variables == {"CALLVAULT_RECORD": "0"}
    assert any(c == "STREAM FILE " + c.split()[2] + ' "12"' for c in asterisk.commands)
    assert await db.fetchval("SELECT outcome FROM calls") == "refused"

    recording = tmp_path / "1700000000.2.wav"
    _recording(recording)
    code, err = await run_upload(asterisk.env, "1700000000.2", recording)
    assert code == 0 and "409 no_consent" in err, err
    assert not recording.exists()  # callvault may not keep it: neither may the PBX
    await _nothing_kept(db, service.settings, moto_url)


async def test_asterisk_explicit_silence_asks_again_then_no_input(
    service: Service, asterisk: FakeAsterisk, db: Conn
) -> None:
    defaults = replace(service.settings.defaults, consent_mode="explicit", gather_retries=1)
    await service.reconfigure(defaults=defaults)
    assert await asterisk.run("1700000000.3", "start") == 0
    assert asterisk.variables == {"CALLVAULT_RECORD": "0"}
    assert [c.split()[0] for c in asterisk.commands if c.startswith(("STREAM", "WAIT"))] == [
        "STREAM",
        "WAIT",
        "STREAM",
        "WAIT",
    ]
    assert "WAIT FOR DIGIT 8000" in asterisk.commands
    assert await db.fetchval("SELECT outcome FROM calls") == "no_input"


async def test_asterisk_explicit_key_1_records(service: Service, asterisk: FakeAsterisk) -> None:
    await service.reconfigure(defaults=replace(service.settings.defaults, consent_mode="explicit"))
    asterisk.keys = ["1"]  # heard the notice through, then pressed 1
    assert await asterisk.run("1700000000.4", "start") == 0
    assert asterisk.variables == {"CALLVAULT_RECORD": "1"}


async def test_asterisk_hang_up_during_the_notice(
    service: Service, asterisk: FakeAsterisk, db: Conn
) -> None:
    asterisk.caller = ["hangup"]
    assert await asterisk.run("1700000000.5", "start") == 0
    assert (
        "CALLVAULT_RECORD" not in asterisk.variables
        or asterisk.variables["CALLVAULT_RECORD"] == "0"
    )
    call = await db.fetchrow("SELECT outcome, ended_at FROM calls")
    assert call["outcome"] == "hung_up_during_notice" and call["ended_at"] is not None
    # the hangup handler's report after it changes nothing
    before = await _events(db, "1700000000.5")
    assert await asterisk.run("1700000000.5", "ended") == 0
    assert await _events(db, "1700000000.5") == before
    assert before[-1] == "hung_up_during_notice"


async def test_a_notice_that_does_not_match_its_hash_is_not_played(
    service: Service, asterisk: FakeAsterisk, http: aiohttp.ClientSession
) -> None:
    # a cached file under the notice's name is trusted; a download is verified: corrupt the
    # served audio by pointing the script at a server that answers other bytes
    other = web.Application()

    async def notice(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            return web.Response(body=b"RIFF0000WAVEnot-the-notice")
        async with http.request(
            request.method,
            service.base_url + request.path,
            data=await request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
        ) as resp:
            text = (await resp.text()).replace(service.base_url, f"http://{request.host}")
            return web.Response(text=text, status=resp.status, content_type="application/json")

    other.router.add_route("*", "/{tail:.*}", notice)
    server = TestServer(other, host="127.0.0.1")
    await server.start_server()
    try:
        asterisk.env["CALLVAULT_URL"] = str(server.make_url("")).rstrip("/")
        assert await asterisk.run("1700000000.6", "start") == 0
    finally:
        await server.close()
    assert asterisk.played == []  # never played
    assert asterisk.variables == {"CALLVAULT_RECORD": "0"}


# --- bad input ---------------------------------------------------------------------------


async def _start(
    http: aiohttp.ClientSession, service: Service, token: str, call_id: str
) -> dict[str, Any]:
    status, body = await _api(
        http,
        service,
        "POST",
        "/telephony/pbx/calls",
        token,
        {"call_id": call_id, "from": CALLER, "to": HOTLINE},
    )
    assert status == 200, body
    return dict(body)


async def test_call_start_answers_the_documented_shape(
    service: Service, http: aiohttp.ClientSession, token: str
) -> None:
    answer = await _start(http, service, token, "c-1")
    assert answer["action"] == "notice" and answer["mode"] == "implied"
    assert set(answer["notice"]) >= {"url", "sha256", "text"}
    assert answer["digits"] == {"allow": "1", "refuse": "2", "timeout_s": 8, "retries": 1}
    async with http.get(answer["notice"]["url"]) as resp:
        assert hashlib.sha256(await resp.read()).hexdigest() == answer["notice"]["sha256"]


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer cv_not-a-token", 401), ("Basic dXNlcjpwdw==", 401), ("qa", 403)],
)
async def test_wrong_or_missing_token_writes_nothing(
    service: Service, http: aiohttp.ClientSession, db: Conn, header: str | None, status: int
) -> None:
    headers = {}
    if header == "qa":
        headers["Authorization"] = "Bearer " + await _token(db, tenancy.DEFAULT, "qa_trainer")
    elif header is not None:
        headers["Authorization"] = header
    for method, path, body in [
        ("POST", "/telephony/pbx/calls", {"call_id": "x-1", "from": CALLER, "to": HOTLINE}),
        ("POST", "/telephony/pbx/calls/x-1/consent", {"stayed": True}),
        ("POST", "/telephony/pbx/calls/x-1/ended", {"during_notice": True}),
    ]:
        got, answer = await _api(http, service, method, path, None, body, headers=headers)
        assert got == status and set(answer["error"]) == {"code", "message"}
    got, _ = await _api(
        http,
        service,
        "PUT",
        "/telephony/pbx/calls/x-1/recording",
        None,
        data=wav_bytes(0.1),
        headers={**headers, "Content-Type": "audio/wav"},
    )
    assert got == status
    assert await db.fetchval("SELECT count(*) FROM calls") == 0
    assert await db.fetchval("SELECT count(*) FROM ledger_events") == 0


async def test_another_tenants_call_is_404_and_the_same_id_is_theirs_alone(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str
) -> None:
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Beta')", OTHER)
    theirs = await _token(db, OTHER)
    mine = await _start(http, service, token, "shared-1")
    for method, path, body in [
        ("POST", "/telephony/pbx/calls/shared-1/consent", {"stayed": True}),
        ("POST", "/telephony/pbx/calls/shared-1/ended", {"during_notice": True}),
    ]:
        status, answer = await _api(http, service, method, path, theirs, body)
        assert status == 404 and answer["error"]["code"] == "unknown_call"
    status, answer = await _api(
        http,
        service,
        "PUT",
        "/telephony/pbx/calls/shared-1/recording",
        theirs,
        data=wav_bytes(0.1),
        headers={"Content-Type": "audio/wav"},
    )
    assert status == 404
    assert await db.fetchval("SELECT outcome FROM calls") == "in_progress"
    # their PBX may use the same id for a call of its own: a separate call, and each tenant
    # finds its own by the PBX's id as sent (consent, upload, search, pause)
    bodies: dict[str, bytes] = {}
    for n, (tenant, own) in enumerate(((OTHER, theirs), (tenancy.DEFAULT, token))):
        started = await _start(http, service, own, "shared-1") if tenant == OTHER else mine
        said = {"stayed": True} if started["mode"] == "implied" else {"digit": "1"}
        path = "/telephony/pbx/calls/shared-1/"
        status, answer = await _api(http, service, "POST", path + "consent", own, said)
        assert (status, answer["record"]) == (200, True), answer
        bodies[tenant] = wav_bytes(0.2 + n / 10)
        status, answer = await _api(
            http,
            service,
            "PUT",
            path + "recording",
            own,
            data=bodies[tenant],
            headers={"Content-Type": "audio/wav"},
        )
        assert status == 201, answer
        reader = await _token(db, tenant, "qa_trainer")
        status, found = await _api(http, service, "GET", "/api/calls?external_id=shared-1", reader)
        assert status == 200
        assert [(c["platform"], c["external_id"]) for c in found["items"]] == [("pbx", "shared-1")]
        status, answer = await _api(
            http, service, "POST", "/api/calls/shared-1/recording/pause", own, {"reason": "card"}
        )
        # found, and only theirs (another tenant's would make it ambiguous, 409 too)
        assert (status, answer["error"]["code"]) == (409, "platform_cannot_pause"), answer
    rows = await db.fetch(
        "SELECT c.tenant_id, c.external_id, r.external_id AS rec, r.state, r.sha256 "
        "FROM calls c JOIN recordings r ON r.call_id = c.id ORDER BY c.tenant_id"
    )
    assert [tuple(r) for r in rows] == [
        (t, "shared-1", "shared-1", "stored", hashlib.sha256(bodies[t]).hexdigest())
        for t in sorted(bodies)
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/telephony/pbx/calls", b"{not json"),
        ("/telephony/pbx/calls", b'{"call_id": "a", "from": "1"}'),
        ("/telephony/pbx/calls", b'{"call_id": "../x", "from": "1", "to": "2"}'),
        ("/telephony/pbx/calls", b'{"call_id": 7, "from": "1", "to": "2"}'),
        ("/telephony/pbx/calls", b'{"call_id": "a", "from": "1", "to": "2", "extra": 1}'),
        ("/telephony/pbx/calls", b"[]"),
        # not a phone number, an extension or a withheld caller id
        ("/telephony/pbx/calls", b'{"call_id": "g-1", "from": "0901abc567", "to": "100"}'),
        ("/telephony/pbx/calls", b'{"call_id": "g-2", "from": "+84901234678", "to": "s"}'),
        ("/telephony/pbx/calls", b'{"call_id": "g-3", "from": "+8490123456789012", "to": "1"}'),
        ("/telephony/pbx/calls", b'{"call_id": "g-4", "from": "<sip:x@y>", "to": "100"}'),
        ("/telephony/pbx/calls/c-1/consent", b"{}"),
        ("/telephony/pbx/calls/c-1/consent", b'{"digit": "1", "stayed": true}'),
        ("/telephony/pbx/calls/c-1/consent", b'{"digit": 1}'),
        ("/telephony/pbx/calls/c-1/consent", b'{"stayed": false}'),
        ("/telephony/pbx/calls/c-1/consent", b'{"digit": "1", "attempt": 99}'),
        ("/telephony/pbx/calls/c-1/ended", b'{"during_notice": "yes"}'),
        ("/telephony/pbx/calls/c-1/ended", b""),
    ],
)
async def test_malformed_bodies_are_400_in_the_json_error_shape(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str, path: str, body: bytes
) -> None:
    await _start(http, service, token, "c-1")
    before = await db.fetchval("SELECT count(*) FROM ledger_events")
    status, answer = await _api(
        http, service, "POST", path, token, data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400, answer
    assert set(answer["error"]) == {"code", "message"}
    assert await db.fetchval("SELECT count(*) FROM ledger_events") == before
    assert await db.fetchval("SELECT outcome FROM calls") == "in_progress"


async def test_numbers_are_kept_as_e164_with_national_ones_read_as_vietnams(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str
) -> None:
    """A Vietnamese trunk gives 0901234678: it must be the caller an erasure or hold asked for
    +84901234678 finds, and 028 7300 1234 must be the hotline its policy is configured for."""
    await service.reconfigure(numbers={HOTLINE: {"consent_mode": "explicit"}})
    vault = PhoneVault(SECRET_KEY)
    status, answer = await _api(
        http,
        service,
        "POST",
        "/telephony/pbx/calls",
        token,
        {"call_id": "n-1", "from": "090 123 4678", "to": "028 7300 1234"},
    )
    assert status == 200 and answer["mode"] == "explicit", answer  # the hotline's policy
    row = await db.fetchrow(
        "SELECT caller_enc, caller_hash, called FROM calls WHERE external_id = 'n-1'"
    )
    assert vault.decrypt(row["caller_enc"]) == CALLER
    assert bytes(row["caller_hash"]) == vault.lookup_hash(CALLER)
    assert row["called"] == HOTLINE
    # a withheld caller id is no number at all (nothing to encrypt, hash or erase)
    for n, withheld in enumerate(("unknown", "Anonymous")):
        status, _ = await _api(
            http,
            service,
            "POST",
            "/telephony/pbx/calls",
            token,
            {"call_id": f"w-{n}", "from": withheld, "to": HOTLINE},
        )
        assert status == 200
    assert (
        await db.fetchval(
            "SELECT count(*) FROM calls WHERE external_id LIKE 'w-%' AND caller_enc IS NULL"
        )
        == 2
    )


async def test_replayed_requests_change_nothing(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str
) -> None:
    first = await _start(http, service, token, "r-1")
    path = "/telephony/pbx/calls/r-1"
    answers = [await _api(http, service, "POST", path + "/consent", token, {"stayed": True})]
    events = await _events(db, "r-1")
    answers.append(await _api(http, service, "POST", path + "/consent", token, {"stayed": True}))
    assert answers[0] == answers[1] == (200, answers[0][1]) and answers[0][1]["record"] is True
    # a replayed start does not play the notice again and says the decision
    again = await _start(http, service, token, "r-1")
    assert again["action"] == "skip" and again["record"] is True and first["action"] == "notice"
    ended = [
        await _api(http, service, "POST", path + "/ended", token, {"during_notice": False})
        for _ in range(2)
    ]
    assert ended[0] == ended[1] == (200, {"outcome": "consented"})
    assert await _events(db, "r-1") == [*events, "call_ended"]
    assert await db.fetchval("SELECT count(*) FROM calls") == 1


# --- uploads ------------------------------------------------------------------------------


async def _consented(http: aiohttp.ClientSession, service: Service, token: str, call: str) -> None:
    await _start(http, service, token, call)
    status, body = await _api(
        http, service, "POST", f"/telephony/pbx/calls/{call}/consent", token, {"stayed": True}
    )
    assert status == 200 and body["record"] is True


async def _put(
    http: aiohttp.ClientSession,
    service: Service,
    token: str,
    call: str,
    body: bytes,
    **headers: str,
) -> tuple[int, Any]:
    return await _api(
        http,
        service,
        "PUT",
        f"/telephony/pbx/calls/{call}/recording",
        token,
        data=body,
        headers={"Content-Type": "audio/wav", **headers},
    )


async def test_a_digest_that_does_not_match_is_400_and_nothing_kept(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str, moto_url: str
) -> None:
    await _consented(http, service, token, "d-1")
    body = wav_bytes(0.5)
    wrong = base64.b64encode(hashlib.sha256(body + b"x").digest()).decode()
    status, answer = await _put(http, service, token, "d-1", body, Digest=f"sha-256={wrong}")
    assert status == 400 and answer["error"]["code"] == "digest_mismatch"
    await _nothing_kept(db, service.settings, moto_url)
    status, answer = await _put(http, service, token, "d-1", body, Digest="sha-256=short")
    assert status == 400 and answer["error"]["code"] == "bad_digest"
    # the right one (RFC 9530 spelling) is stored
    right = base64.b64encode(hashlib.sha256(body).digest()).decode()
    status, answer = await _put(
        http, service, token, "d-1", body, **{"Content-Digest": f"sha-256=:{right}:"}
    )
    assert status == 201 and answer["sha256"] == hashlib.sha256(body).hexdigest()


async def test_uploads_that_are_not_audio_too_large_or_unlabelled_keep_nothing(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str, moto_url: str
) -> None:
    await _consented(http, service, token, "b-1")
    status, answer = await _put(http, service, token, "b-1", b"<html>not audio</html>")
    assert (status, answer["error"]["code"]) == (400, "not_audio")
    status, answer = await _put(
        http, service, token, "b-1", wav_bytes(0.1), **{"Content-Type": "text/plain"}
    )
    assert status == 415
    await service.reconfigure(max_recording_bytes=4096)
    status, answer = await _put(http, service, token, "b-1", wav_bytes(1))
    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    await _nothing_kept(db, service.settings, moto_url)


async def test_another_recording_for_a_stored_call_is_409(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str
) -> None:
    await _consented(http, service, token, "s-1")
    first = await _put(http, service, token, "s-1", wav_bytes(0.5))
    assert first[0] == 201
    assert await _put(http, service, token, "s-1", wav_bytes(0.5)) == first
    status, answer = await _put(http, service, token, "s-1", wav_bytes(0.7))
    assert (status, answer["error"]["code"]) == (409, "recording_exists")
    assert await db.fetchval("SELECT sha256 FROM recordings") == first[1]["sha256"]


async def test_an_upload_cut_off_half_way_leaves_no_object_and_no_row(
    service: Service,
    http: aiohttp.ClientSession,
    db: Conn,
    token: str,
    moto_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _consented(http, service, token, "t-1")
    body = wav_bytes(4)
    host, port = "127.0.0.1", service.port
    assert port is not None
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            "PUT /telephony/pbx/calls/t-1/recording HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[: len(body) // 2]
    )
    await writer.drain()

    async def receiving() -> bool:
        tmp = service.settings.home / "tmp"
        return tmp.exists() and any(p.is_dir() and any(p.iterdir()) for p in tmp.iterdir())

    await eventually(receiving, what="the server is receiving the upload")
    writer.close()  # the PBX went away half-way
    await writer.wait_closed()

    async def cleaned() -> bool:
        tmp = service.settings.home / "tmp"
        return not any(tmp.iterdir())

    await eventually(cleaned, what="the half upload is thrown away")
    await _nothing_kept(db, service.settings, moto_url)
    assert (await _events(db, "t-1"))[-1] == "consent_given"
    assert "unhandled error" not in caplog.text  # the client's going away is no server fault
    # the PBX's retry of the whole file then succeeds
    status, _ = await _put(http, service, token, "t-1", body)
    assert status == 201


async def test_an_upload_for_an_erased_call_is_discarded(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str, moto_url: str
) -> None:
    await _consented(http, service, token, "e-1")
    request_id = await dsar.create(
        db, PhoneVault(SECRET_KEY), kind="erase", phone=CALLER, actor="test"
    )
    await settle(db)
    assert await db.fetchval("SELECT status FROM dsar_requests WHERE id = $1", request_id) == (
        "completed"
    )
    status, answer = await _put(http, service, token, "e-1", wav_bytes(0.5))
    assert (status, answer["error"]["code"]) == (409, "call_erased")
    await _nothing_kept(db, service.settings, moto_url)
    assert (await _events(db, "e-1"))[-1] == "recording_discarded"


async def test_consent_asked_after_the_number_was_erased_never_answers_record(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str
) -> None:
    """An erasure covers recordings still to come, so a call erased while its notice played is
    not recorded whatever the caller answers, and a consent given before the erasure, replayed
    after it, no longer says record (either would start a recorder whose file is refused)."""
    await _start(http, service, token, "x-asked")  # the notice is playing
    await _consented(http, service, token, "x-given")  # consented, the recorder running
    request_id = await dsar.create(
        db, PhoneVault(SECRET_KEY), kind="erase", phone=CALLER, actor="test"
    )
    await settle(db)
    assert await db.fetchval("SELECT status FROM dsar_requests WHERE id = $1", request_id) == (
        "completed"
    )
    for call, said in (("x-asked", {"stayed": True}), ("x-given", {"stayed": True})):
        for _ in range(2):  # and again, as a PBX retries
            status, body = await _api(
                http, service, "POST", f"/telephony/pbx/calls/{call}/consent", token, said
            )
            assert status == 200 and body["record"] is False, (call, body)
    assert body["outcome"] == "consented"  # what was decided before the erasure stays true
    status, body = await _api(
        http,
        service,
        "POST",
        "/telephony/pbx/calls/x-asked/consent",
        token,
        {"digit": "1", "attempt": 1},
    )
    assert (status, body["record"], body["outcome"]) == (200, False, "not_asked")
    events = await _events(db, "x-asked")
    assert events[-2:] == ["erased", "not_asked"] and "consent_given" not in events
    call_id = await db.fetchval("SELECT id FROM calls WHERE external_id = 'x-asked'")
    reasons = [e.details.get("reason") for e in await ledger.events_of(db, call_id)]
    assert reasons[-1] == "call_erased"
    # a replayed call start is not asked again either
    status, body = await _api(
        http,
        service,
        "POST",
        "/telephony/pbx/calls",
        token,
        {"call_id": "x-asked", "from": CALLER, "to": HOTLINE},
    )
    assert (status, body["action"], body["record"]) == (200, "skip", False)


# --- the FreeSWITCH recipe: mod_httapi through the bridge -----------------------------------

FREESWITCH = ASTERISK.parent / "freeswitch"


@dataclass
class FakeFreeSwitch:
    """mod_httapi as its source does it: POSTs the session's params (``session_id``, the
    ``Caller-*`` caller-profile fields, the httapi data's ``{queue=...}``), runs the returned
    document's work, sends ``<params>`` back on every later request, applies ``<variables>``,
    stops at ``<break/>``, and on hang-up makes one last request with ``exiting=true``."""

    http: aiohttp.ClientSession
    url: str
    caller: list[str] = field(default_factory=lambda: ["stay"])
    variables: dict[str, str] = field(default_factory=dict)
    played: list[str] = field(default_factory=list)

    async def _hit(self, form: dict[str, str]) -> ET.Element:
        async with self.http.post(self.url, data=form) as resp:
            assert resp.status == 200 and resp.content_type == "text/xml"
            return ET.fromstring(await resp.text())

    async def call(self, uuid: str, queue: str | None = None) -> bool:
        """The call; True if it hung up inside httapi."""
        params = {
            "session_id": uuid,
            "hostname": "fs1",
            "url": self.url,
            "Caller-Caller-ID-Number": CALLER,
            "Caller-Destination-Number": HOTLINE,
            "Caller-Unique-ID": uuid,
        }
        if queue:
            params["queue"] = queue
        once: dict[str, str] = {}
        while True:
            doc = await self._hit({**params, **once})
            once = {}
            for tag in doc.findall("params/*"):
                params[tag.tag] = tag.text or ""
            for tag in doc.findall("variables/*"):
                self.variables[tag.tag] = tag.text or ""
            work = doc.find("work")
            assert work is not None
            for tag in work:
                if tag.tag == "break":
                    return False
                assert tag.tag == "playback", tag.tag
                self.played.append(Path(tag.attrib["file"]).read_bytes().hex()[:16])
                what = self.caller.pop(0) if self.caller else "stay"
                if what == "hangup":
                    await self._hit({**params, "exiting": "true"})
                    return True
                if what != "stay" and tag.find("bind") is not None:
                    once = {tag.attrib["name"]: what, "input_type": "dtmf"}

    async def run(self, uuid: str, data: dict[str, str]) -> None:
        """A later ``httapi`` action on the channel (``{httapi_profile=callvault,...}``): its
        data as params, ``<variables>`` applied, up to ``<break/>``."""
        doc = await self._hit({"session_id": uuid, "hostname": "fs1", "url": self.url, **data})
        for tag in doc.findall("variables/*"):
            self.variables[tag.tag] = tag.text or ""
        work = doc.find("work")
        assert work is not None and [t.tag for t in work] == ["break"]

    async def hang_up(self, uuid: str) -> None:
        """The channel ends after the dialplan went on: the reporting-state request."""
        await self._hit(
            {"session_id": uuid, "exiting": "true", "callvault_step": "done", "url": self.url}
        )


@pytest.fixture
async def freeswitch(
    service: Service, token_file: Path, tmp_path: Path, http: aiohttp.ClientSession
) -> AsyncIterator[FakeFreeSwitch]:
    env = _script_env(service.base_url, token_file, tmp_path)
    env.update(CALLVAULT_LISTEN="127.0.0.1:0", CALLVAULT_HTTAPI_CONFIG=str(tmp_path / "none.ini"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(FREESWITCH / "callvault_httapi.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode()
    port = line.strip().rsplit(":", 1)[1]
    yield FakeFreeSwitch(http, f"http://127.0.0.1:{port}/httapi")
    proc.terminate()
    await proc.wait()


async def test_freeswitch_consent_record_upload(
    service: Service,
    freeswitch: FakeFreeSwitch,
    asterisk: FakeAsterisk,
    db: Conn,
    moto_url: str,
    tmp_path: Path,
) -> None:
    assert await freeswitch.call("6f1c0d2e-0000-4000-8000-000000000001", queue=None) is False
    assert freeswitch.variables == {"callvault_record": "1"} and len(freeswitch.played) == 1
    uuid = "6f1c0d2e-0000-4000-8000-000000000001"
    # record_session, then record_post_process_exec_api runs the shared upload script
    recording = tmp_path / f"{uuid}.wav"
    body = _recording(recording)
    code, err = await run_upload(asterisk.env, uuid, recording)
    assert code == 0, err
    await freeswitch.hang_up(uuid)
    assert await db.fetchval("SELECT sha256 FROM recordings WHERE state = 'stored'") == (
        hashlib.sha256(body).hexdigest()
    )
    assert await _events(db, uuid) == [
        "call_started",
        "notice_played",
        "consent_given",
        "recording_stored",
        "call_ended",
    ]


async def test_freeswitch_card_payment_mask_is_reported_as_a_pause(
    service: Service, freeswitch: FakeFreeSwitch, db: Conn, token_file: Path, tmp_path: Path
) -> None:
    """dialplan.xml's callvault-pause / callvault-resume (the agent's *5 / *6): the recording is
    masked, then httapi runs with {callvault_action=pause,callvault_reason=card payment}; an
    agent desktop on the event socket reports with the script's command line instead."""
    uuid = "6f1c0d2e-0000-4000-8000-0000000000c4"
    assert await freeswitch.call(uuid) is False
    assert freeswitch.variables == {"callvault_record": "1"}
    pause = {"callvault_action": "pause", "callvault_reason": "card payment"}
    await freeswitch.run(uuid, pause)
    assert freeswitch.variables["callvault_paused"] == "1"
    # pressed twice: callvault's record disagrees (409 already paused); the variable stays
    # unset and the mask holds
    del freeswitch.variables["callvault_paused"]
    await freeswitch.run(uuid, pause)
    assert "callvault_paused" not in freeswitch.variables

    env = _script_env(service.base_url, token_file, tmp_path)
    env.update(CALLVAULT_HTTAPI_CONFIG=str(tmp_path / "none.ini"))

    async def desktop(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(FREESWITCH / "callvault_httapi.py"),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode().strip()

    # the desktop unmasked over the event socket (uuid_record UUID unmask FILE), then reports
    assert await desktop("resume", uuid, "card", "taken") == (0, "paused=0")
    assert await desktop("resume", uuid) == (1, "")  # not paused: callvault says so
    assert await _events(db, uuid) == [
        "call_started",
        "notice_played",
        "consent_given",
        "recording_paused",
        "recording_resumed",
    ]
    call = await db.fetchval("SELECT id FROM calls WHERE external_id = $1", uuid)
    reasons = [
        (e.type, e.details.get("reason"), e.details.get("source"))
        for e in await ledger.events_of(db, call)
        if e.type.startswith("recording_")
    ]
    assert reasons == [
        ("recording_paused", "card payment", "pbx"),
        ("recording_resumed", "card taken", "pbx"),
    ]


async def test_freeswitch_explicit_refusal_and_silence(
    service: Service, freeswitch: FakeFreeSwitch, db: Conn
) -> None:
    await service.reconfigure(defaults=replace(service.settings.defaults, consent_mode="explicit"))
    freeswitch.caller = ["2"]
    assert await freeswitch.call("fs-refused") is False
    assert freeswitch.variables == {"callvault_record": "0"}
    freeswitch.caller, freeswitch.variables = ["stay", "stay"], {}
    assert await freeswitch.call("fs-silent") is False
    assert freeswitch.variables == {"callvault_record": "0"}
    outcomes = dict(await db.fetch("SELECT external_id, outcome FROM calls"))
    assert outcomes == {"fs-refused": "refused", "fs-silent": "no_input"}
    freeswitch.caller, freeswitch.variables = ["1"], {}
    assert await freeswitch.call("fs-yes") is False
    assert freeswitch.variables == {"callvault_record": "1"}


async def test_freeswitch_hang_up_during_the_notice(
    service: Service, freeswitch: FakeFreeSwitch, db: Conn
) -> None:
    freeswitch.caller = ["hangup"]
    assert await freeswitch.call("fs-gone") is True
    assert "callvault_record" not in freeswitch.variables
    assert await db.fetchval("SELECT outcome FROM calls") == "hung_up_during_notice"


async def test_concurrent_uploads_of_one_call_store_one_object_that_matches_its_row(
    service: Service, http: aiohttp.ClientSession, db: Conn, token: str, moto_url: str
) -> None:
    await _consented(http, service, token, "c-2")
    same = wav_bytes(1)
    answers = await asyncio.gather(*(_put(http, service, token, "c-2", same) for _ in range(3)))
    assert [a[0] for a in answers] == [201, 201, 201]
    assert answers[0] == answers[1] == answers[2]
    # a PBX that sends other bytes for the same call at the same moment: one wins, whole
    await _consented(http, service, token, "c-3")
    bodies = [wav_bytes(1.0), wav_bytes(1.5)]
    answers = await asyncio.gather(*(_put(http, service, token, "c-3", b) for b in bodies))
    assert sorted(a[0] for a in answers) == [201, 409]
    rows = await db.fetch("SELECT object_key, sha256, size_bytes FROM recordings")
    assert len(rows) == 2
    assert service.settings.s3_bucket is not None
    stored = {o["key"]: o for o in await objects(moto_url, service.settings.s3_bucket)}
    assert len(stored) == 2
    for row in rows:  # what the bucket holds is what the row says, byte count and hash
        head = stored[row["object_key"]]
        # sealed (issue 17): the plaintext's size and hash, the sealed object's own size
        assert head["head"]["Metadata"]["callvault-plaintext-size"] == str(row["size_bytes"])
        assert head["size"] == sealed.sealed_size(row["size_bytes"])
        assert head["head"]["Metadata"]["sha256"] == row["sha256"]


async def test_offboard_cuts_the_pbx_off_first_and_erases_a_call_that_lands_during_it(
    service: Service,
    http: aiohttp.ClientSession,
    db: Conn,
    service_url: str,
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PBX needs no platform account, so removing accounts does not stop it: its token is
    revoked before anything is read; and a call that still lands while the calls are erased
    (one whose request was past authentication: here a token made meanwhile) is erased too,
    its object deleted, before the tenant's rows go."""
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1, 'Beta')", OTHER)
    theirs = await _token(db, OTHER)
    await _consented(http, service, theirs, "o-1")
    assert (await _put(http, service, theirs, "o-1", wav_bytes(0.5)))[0] == 201
    bucket = service.settings.s3_bucket
    assert bucket is not None and len(await objects(moto_url, bucket)) == 1
    landed: list[tuple[str, int]] = []
    erase_call = dsar.erase_call

    async def erase_while_the_pbx_uploads(*args: Any) -> str:
        if not landed:
            # the tenant's own token no longer starts anything
            start = {"call_id": "o-0", "from": CALLER, "to": HOTLINE}
            status, _ = await _api(http, service, "POST", "/telephony/pbx/calls", theirs, start)
            landed.append(("revoked token", status))
            late = await _token(db, OTHER, name="late")
            await _consented(http, service, late, "o-2")
            landed.append(("upload", (await _put(http, service, late, "o-2", wav_bytes(0.5)))[0]))
            assert len(await objects(moto_url, bucket)) == 2
        return await erase_call(*args)

    monkeypatch.setattr(dsar, "erase_call", erase_while_the_pbx_uploads)
    pool = await create_pool(service_url, min_size=1, max_size=2)
    stores = StoreRegistry.from_settings(service.settings, reader=pool.acquire)
    conn = await connect(service_url)
    try:
        await tenancy.set_tenant(conn, OTHER)
        report = await offboard(conn, stores, OTHER, actor="test", out=None)
    finally:
        await conn.close()
        await stores.close()
        await pool.close()
    assert landed == [("revoked token", 401), ("upload", 201)]
    assert report.calls == 2 and report.tokens_revoked == 2
    assert await objects(moto_url, bucket) == []  # no object outlives its row
    await tenancy.set_tenant(db, tenancy.ALL)
    calls = await db.fetch(
        "SELECT external_id, erased_at, caller_enc, caller_hash FROM calls WHERE tenant_id = $1",
        OTHER,
    )
    assert len(calls) == 2
    assert all(c["erased_at"] and c["caller_enc"] is None and not c["caller_hash"] for c in calls)
    assert await db.fetchval("SELECT count(*) FROM recordings WHERE tenant_id = $1", OTHER) == 0
    assert not await db.fetchval(
        "SELECT count(*) FROM api_tokens WHERE tenant_id = $1 AND revoked_at IS NULL", OTHER
    )
