"""Outbound calls (Twilio ``Direction=outbound-api``): the person called is ``To``, and they are
the data subject: told when they answer, their number encrypted, hashed, masked and erasable,
found by holds and requests on their number; the contact centre's number (``From``) decides the
policy. Inbound calls are unchanged."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.config import Settings
from service.consent.gate import add_to_do_not_record
from service.db import migrations
from service.db.pool import connect
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import SECRET_KEY, Service, db_url, run_cli
from tests.intake_helpers import objects, send_recording, settle
from tests.qa_fixtures import access_bundle, call_api
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

VAULT = PhoneVault(SECRET_KEY)
CENTRE = "+842873009999"  # the contact centre's outbound line (configured: explicit consent)
CUSTOMER = "+84912345321"
MASK = re.compile(r"^\+84 9\*\* \*\*\* \d{3}$")
Conn = asyncpg.Connection


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    settings = replace(
        intake_settings,
        purge_interval_s=3600,
        numbers={CENTRE: {"consent_mode": "explicit", "queue": "collections"}},
        queues={"collections": {}},
    )
    svc = Service(settings)
    await svc.start()
    yield svc
    await svc.stop()


def spellings(number: str) -> list[str]:
    national = number[3:]
    return [number, number[1:], "0" + national, national]


async def dump_all_tables(db: Conn) -> str:
    """Every row of every table in the schema, as text."""
    tables = [
        r["table_name"]
        for r in await db.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    ]
    parts = []
    for table in tables:
        rows = await db.fetch(f'SELECT t::text AS row FROM "{table}" t')  # noqa: S608 - catalogue names
        parts.extend(r["row"] for r in rows)
    return "\n".join(parts)


async def outbound_recorded_call(
    twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn
) -> dict[str, Any]:
    trace = await twilio.place_call(
        CENTRE, CUSTOMER, Caller.parse("press-1"), direction="outbound-api"
    )
    assert not trace.errors, trace.errors
    assert trace.played and trace.gathers == 1  # the callee heard the notice and was asked
    assert trace.recording_started
    sid = new_recording_sid()
    twilio_media.add(sid, wav_bytes(2))
    status, _ = await send_recording(twilio, trace.call_sid, sid)
    assert status == 204
    await settle(db)
    call = await db.fetchrow("SELECT * FROM calls WHERE external_id = $1", trace.call_sid)
    rec = await db.fetchrow("SELECT * FROM recordings WHERE call_id = $1", call["id"])
    assert rec["state"] == "stored"
    return {"trace": trace, "call": call, "recording": rec}


async def test_outbound_callee_is_the_data_subject_everywhere(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    tokens: dict[str, str],
    db: Conn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    made = await outbound_recorded_call(twilio, twilio_media, db)
    call = made["call"]
    assert call["direction"] == "outbound"
    assert call["called"] == CENTRE  # the contact centre's own number stays plain
    assert VAULT.decrypt(call["caller_enc"]) == CUSTOMER
    assert call["caller_hash"] == VAULT.lookup_hash(CUSTOMER)
    assert call["policy"]["queue"] == "collections"  # the centre's number chose the policy
    # an outbound call nobody answered reaches only the status callback: still no plain number
    unanswered = twilio.call_params("CA" + "7" * 32, CENTRE, "+84912345999", status="no-answer")
    unanswered["Direction"] = "outbound-api"
    status, _ = await twilio.post(twilio.url("/telephony/twilio/status"), unanswered)
    assert status == 204

    dump = await dump_all_tables(db)
    for number in (CUSTOMER, "+84912345999"):
        for spelling in spellings(number):
            assert spelling not in dump, spelling
            assert spelling not in caplog.text, spelling
    started = await db.fetchval(
        "SELECT details FROM ledger_events WHERE call_id = $1 AND type = 'call_started'",
        call["id"],
    )
    assert started["direction"] == "outbound" and started["caller"] == CENTRE

    status, seen = await call_api(
        http, service, "GET", f"/api/calls/{call['id']}", tokens["qa_trainer"]
    )
    assert status == 200
    assert seen["direction"] == "outbound"
    assert seen["caller"] == CENTRE and MASK.match(seen["called"]), seen
    assert CUSTOMER[4:] not in str(seen)


async def test_holds_and_erasure_by_the_callee_number_reach_outbound_calls(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    tokens: dict[str, str],
    db: Conn,
    moto_url: str,
    intake_settings: Settings,
) -> None:
    made = await outbound_recorded_call(twilio, twilio_media, db)
    rec = made["recording"]
    status, hold = await call_api(
        http,
        service,
        "POST",
        "/api/holds",
        tokens["compliance"],
        {"phone": CUSTOMER, "reason": "dispute"},
    )
    assert status == 201 and hold["held_recordings"] == [str(rec["id"])]
    status, _ = await call_api(
        http, service, "DELETE", f"/api/holds/{hold['id']}", tokens["compliance"]
    )
    assert status == 204

    status, req = await call_api(
        http,
        service,
        "POST",
        "/api/dsar",
        tokens["compliance"],
        {"kind": "erase", "phone": "+84 912 345 321"},
    )
    assert status == 201
    await settle(db)
    _, req = await call_api(http, service, "GET", f"/api/dsar/{req['id']}", tokens["compliance"])
    assert req["status"] == "completed" and req["result"]["erased_calls"] == 1
    assert await db.fetchval("SELECT state FROM recordings WHERE id = $1", rec["id"]) == "erased"
    keys = {o["key"] for o in await objects(moto_url, intake_settings.s3_bucket or "")}
    assert rec["object_key"] not in keys
    row = await db.fetchrow(
        "SELECT caller_enc, caller_hash FROM calls WHERE id = $1", rec["call_id"]
    )
    assert row["caller_enc"] is None and row["caller_hash"] is None


async def test_inbound_calls_are_unchanged(
    service: Service, twilio: FakeTwilio, tokens: dict[str, str], db: Conn
) -> None:
    trace = await twilio.place_call(CUSTOMER, CENTRE, Caller.parse("press-2"))
    assert trace.gathers == 1  # the called number (the centre's) chose the policy
    call = await db.fetchrow("SELECT * FROM calls WHERE external_id = $1", trace.call_sid)
    assert call["direction"] == "inbound" and call["called"] == CENTRE
    assert call["caller_hash"] == VAULT.lookup_hash(CUSTOMER)
    started = await db.fetchval(
        "SELECT details FROM ledger_events WHERE call_id = $1 AND type = 'call_started'",
        call["id"],
    )
    assert started["called"] == CENTRE and "direction" not in started


@pytest.fixture
async def fresh_database(pg_base_url: str) -> AsyncIterator[str]:
    name = "outbound_migration_" + secrets.token_hex(4)
    conn = await asyncpg.connect(pg_base_url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    yield db_url(pg_base_url, name)
    conn = await asyncpg.connect(pg_base_url)
    await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await conn.close()


async def test_calls_written_before_directions_migrate_as_inbound(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = migrations.available()
    before = [m for m in everything if m.version < 8]  # up to 0008_call_direction
    conn = await connect(fresh_database)
    try:
        monkeypatch.setattr(migrations, "available", lambda: before)
        await migrations.migrate(conn)
        # a call as the old gate wrote it: From encrypted and hashed, To plain
        call_id = await conn.fetchval(
            "INSERT INTO calls (platform, external_id, caller_enc, caller_hash, called, policy) "
            "VALUES ('twilio', 'CAold', $1, $2, $3, '{}') RETURNING id",
            VAULT.encrypt(CUSTOMER),
            VAULT.lookup_hash(CUSTOMER),
            CENTRE,
        )
        monkeypatch.setattr(migrations, "available", lambda: everything)
        applied = await migrations.migrate(conn)
        assert applied[0].name == "call_direction"
        row = await conn.fetchrow("SELECT * FROM calls WHERE id = $1", call_id)
        assert row["direction"] == "inbound" and row["called"] == CENTRE
        assert row["caller_hash"] == VAULT.lookup_hash(CUSTOMER)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE calls SET direction = 'sideways' WHERE id = $1", call_id)
    finally:
        await conn.close()


async def test_outbound_calls_stored_as_inbound_are_repaired_and_become_erasable(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    tokens: dict[str, str],
    db: Conn,
    database_url: str,
) -> None:
    # What the gate made of an outbound call before it read Direction: From taken as the person
    trace = await twilio.place_call(CENTRE, CUSTOMER, Caller.parse("stay"), direction="inbound")
    sid = new_recording_sid()
    twilio_media.add(sid, wav_bytes(2))
    await send_recording(twilio, trace.call_sid, sid)
    other = await twilio.place_call("+84987654321", CENTRE, Caller.parse("stay"))
    await settle(db)
    call = await db.fetchrow("SELECT * FROM calls WHERE external_id = $1", trace.call_sid)
    assert call["called"] == CUSTOMER  # the leak being repaired

    done = await asyncio.to_thread(
        run_cli, database_url, "calls", "mark-outbound", "--from", CENTRE
    )
    assert done.returncode == 0, done.stderr
    assert "marked 1 calls" in done.stdout and CUSTOMER not in done.stdout
    call = await db.fetchrow("SELECT * FROM calls WHERE id = $1", call["id"])
    assert call["direction"] == "outbound" and call["called"] == CENTRE
    assert call["caller_hash"] == VAULT.lookup_hash(CUSTOMER)
    untouched = await db.fetchrow("SELECT * FROM calls WHERE external_id = $1", other.call_sid)
    assert untouched["direction"] == "inbound"
    # the ledger keeps its first copy (append-only) but a trainer no longer sees it
    headers = {"Authorization": f"Bearer {tokens['qa_trainer']}"}
    async with http.get(f"{service.base_url}/api/calls/{call['id']}", headers=headers) as resp:
        text = await resp.text()
    for spelling in spellings(CUSTOMER):
        assert spelling not in text
    assert '"direction_corrected"' in text
    assert (await ledger.verify(db, call["id"])).ok

    status, _ = await call_api(
        http,
        service,
        "POST",
        "/api/dsar",
        tokens["compliance"],
        {"kind": "erase", "phone": CUSTOMER},
    )
    assert status == 201
    await settle(db)
    state = await db.fetchval("SELECT state FROM recordings WHERE call_id = $1", call["id"])
    assert state == "erased"


async def test_a_callee_on_the_do_not_record_list_is_not_asked_or_recorded(
    service: Service, twilio: FakeTwilio, db: Conn
) -> None:
    await add_to_do_not_record(db, VAULT, CUSTOMER, "asked not to be recorded")
    trace = await twilio.place_call(
        CENTRE, CUSTOMER, Caller.parse("press-1"), direction="outbound-api"
    )
    assert not trace.recording_started and trace.played == []
    outcome = await db.fetchval("SELECT outcome FROM calls WHERE external_id = $1", trace.call_sid)
    assert outcome == "not_asked"


async def test_the_access_bundle_of_an_outbound_call_names_the_centre_as_the_centre(
    service: Service,
    http: aiohttp.ClientSession,
    twilio: FakeTwilio,
    twilio_media: FakeTwilioMedia,
    tokens: dict[str, str],
    db: Conn,
) -> None:
    made = await outbound_recorded_call(twilio, twilio_media, db)
    _, bundle = await access_bundle(http, service, tokens["compliance"], CUSTOMER, db)
    (call,) = json.loads(bundle.read("calls.json"))
    assert call["id"] == str(made["call"]["id"])
    assert call["direction"] == "outbound" and call["contact_centre_number"] == CENTRE
    assert "called" not in call  # it named the centre "called" on an outbound call


async def test_a_dial_leg_keeps_an_unlisted_from_number_masked_not_plain(
    service: Service, twilio: FakeTwilio, db: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``<Dial>`` leg (``outbound-dial``) carries the original caller's number as ``From``
    unless the ``<Dial>`` sets a caller id: only a number the configuration names is kept plain."""
    caplog.set_level("DEBUG")
    original_caller, dialled = "+84987650077", "+84987650078"
    leg = await twilio.place_call(
        original_caller, dialled, Caller.parse("stay"), direction="outbound-dial"
    )
    listed = await twilio.place_call(
        CENTRE, dialled, Caller.parse("stay"), direction="outbound-dial"
    )
    assert not leg.errors and not listed.errors
    dump = await dump_all_tables(db)
    for number in (original_caller, dialled):
        for spelling in spellings(number):
            assert spelling not in dump, spelling
            assert spelling not in caplog.text, spelling
    row = await db.fetchrow("SELECT * FROM calls WHERE external_id = $1", leg.call_sid)
    assert row["direction"] == "outbound" and MASK.match(row["called"]), row["called"]
    assert VAULT.decrypt(row["caller_enc"]) == dialled  # the person called is still the subject
    started = await db.fetchval(
        "SELECT details FROM ledger_events WHERE call_id = $1 AND type = 'call_started'", row["id"]
    )
    assert MASK.match(started["caller"]), started
    # a <Dial callerId> that is one of the centre's configured numbers stays plain
    kept = await db.fetchval("SELECT called FROM calls WHERE external_id = $1", listed.call_sid)
    assert kept == CENTRE
