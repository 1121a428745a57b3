"""The consent gate's acceptance, one parametrised test run for each platform (issue 14 item 4):
Twilio (signed webhooks, TwiML followed), Stringee (signed answer_url and eventUrls, SCCOs
followed) and a PBX (the JSON API with a telephony token), each played by its driver
(tests/platform_drivers.py: the stand-in ``callvault simulate --platform`` uses), against the
real application and PostgreSQL as the service role. The called number picks the consent mode
on every platform; each caller behaviour must end in the same outcome, the same ledger and the
same answer (record or not), whoever carries the call. The same drivers hand recordings over
under faults in tests/test_platforms_faults.py; storage details per platform are in each
platform's own tests (test_intake*, test_stringee_acceptance, test_pbx*)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service import ledger
from service.config import Settings
from service.demo.laptop import DEMO_NUMBERS, DEMO_QUEUES
from tests.conftest import Service
from tests.platform_drivers import PLATFORMS, STRINGEE_SIGNING, driver

IMPLIED, EXPLICIT = "+842873009000", "+842873009001"  # queues demo, demo-explicit
CASES = [  # called number, what the caller does, the outcome, recorded
    (IMPLIED, "stay", "consented", True),
    (IMPLIED, "hang-up", "hung_up_during_notice", False),
    (EXPLICIT, "press-1", "consented", True),
    (EXPLICIT, "press-9,2", "refused", False),
    (EXPLICIT, "silent", "no_input", False),
]


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[Service]:
    svc = Service(
        replace(
            settings,
            queues=DEMO_QUEUES,
            numbers=DEMO_NUMBERS,
            stringee_signing_secret=STRINGEE_SIGNING,
        )
    )
    await svc.start()
    # every platform's requests and the notice URLs it is given reach this loopback server
    await svc.reconfigure(public_url=svc.base_url)
    yield svc
    await svc.stop()


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_every_platform_gets_the_same_outcome_ledger_and_answer(
    platform: str,
    service: Service,
    http: aiohttp.ClientSession,
    db: asyncpg.Connection[object],
    tmp_path: Path,
) -> None:
    drive = await driver(platform, http, service.base_url, db, tmp_path)
    for n, (called, behaviour, outcome, recorded) in enumerate(CASES):
        trace = await drive.call(f"+8490555{n:04d}", called, behaviour)
        assert trace.errors == [], (behaviour, trace.steps)
        assert trace.recording_started is recorded, (behaviour, trace.steps)
        assert len(trace.played) >= 1  # the rendered notice, fetched and decoded as audio
        row = await db.fetchrow(
            "SELECT id, outcome, platform, ended_at FROM calls WHERE external_id = $1",
            trace.call_sid,
        )
        assert row is not None, behaviour
        assert (row["platform"], row["outcome"]) == (platform, outcome), behaviour
        assert row["ended_at"] is not None  # the end reached the gate too
        types = [e.type for e in await ledger.events_of(db, row["id"])]
        assert types[:2] == ["call_started", "notice_played"], (behaviour, types)
        decided = {
            "consented": "consent_given",
            "refused": "consent_refused",
            "no_input": "no_input",
            "hung_up_during_notice": "hung_up_during_notice",
        }[outcome]
        assert types.count(decided) == 1 and "call_ended" in types, (behaviour, types)
        # explicit mode asks again after no (or an invalid) answer, once
        asked = types.count("notice_played")
        assert asked == (2 if behaviour in ("silent", "press-9,2") else 1), (behaviour, types)
    assert await db.fetchval("SELECT count(*) FROM calls") == len(CASES)
    assert (await ledger.verify(db)).ok
