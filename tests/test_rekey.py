"""Rotating CALLVAULT_SECRET_KEY: numbers stay readable and matchable throughout, and
``callvault secrets rotate`` moves every stored number to the new key."""

from __future__ import annotations

import asyncio

import asyncpg

from retention import holds
from service.consent.gate import add_to_do_not_record
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import SECRET_KEY, Service, run_cli

NEW_KEY = "a-brand-new-secret-key-" + "n" * 30
HOTLINE = "+842873001234"


async def test_rotation_keeps_numbers_readable_and_do_not_record_effective(
    service: Service, twilio: FakeTwilio, db: asyncpg.Connection, database_url: str
) -> None:
    old = PhoneVault(SECRET_KEY)
    await add_to_do_not_record(db, old, "+84911111111", "withdrawn")
    await holds.place(db, old, "test", phone="+84933333333", reason="court order")
    before = await twilio.place_call("+84922222222", HOTLINE, Caller.parse("stay"))

    # every replica now writes with the new key and still reads the old one
    await service.reconfigure(secret_key=NEW_KEY, previous_secret_key=SECRET_KEY)
    during = await twilio.place_call("+84911111111", HOTLINE, Caller.parse("stay"))
    assert not during.recording_started and during.played == []  # still on the list

    env = {"CALLVAULT_SECRET_KEY": NEW_KEY, "CALLVAULT_PREVIOUS_SECRET_KEY": SECRET_KEY}
    result = await asyncio.to_thread(run_cli, database_url, "secrets", "rotate", env_overrides=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "re-keyed 1 calls and 1 do-not-record entries, 1 holds"
    again = await asyncio.to_thread(run_cli, database_url, "secrets", "rotate", env_overrides=env)
    assert again.stdout.strip() == "re-keyed 0 calls and 0 do-not-record entries"

    # the old key is gone: everything is readable and matchable with the new one alone
    await service.reconfigure(secret_key=NEW_KEY, previous_secret_key=None)
    new = PhoneVault(NEW_KEY)
    rows = await db.fetch("SELECT external_id, caller_enc, caller_hash FROM calls")
    numbers = {r["external_id"]: new.decrypt(r["caller_enc"]) for r in rows}
    assert numbers[before.call_sid] == "+84922222222"
    assert all(r["caller_hash"] == new.lookup_hash(numbers[r["external_id"]]) for r in rows)
    after = await twilio.place_call("+84911111111", HOTLINE, Caller.parse("stay"))
    assert not after.recording_started and after.played == []
    # the hold on a number still matches that number's calls under the new key alone
    held = await twilio.place_call("+84933333333", HOTLINE, Caller.parse("stay"))
    covered = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM holds h JOIN calls c ON c.caller_hash = h.phone_hash "
        "WHERE c.external_id = $1 AND h.released_at IS NULL)",
        held.call_sid,
    )
    assert covered


async def test_rotate_without_a_previous_key_explains_itself(database_url: str) -> None:
    result = await asyncio.to_thread(run_cli, database_url, "secrets", "rotate")
    assert result.returncode == 1
    assert result.stderr.startswith("callvault: error: CALLVAULT_PREVIOUS_SECRET_KEY:")
