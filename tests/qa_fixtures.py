"""Fixtures shared by the QA API and page tests: tokens per role, and recorded calls."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from service import auth
from service.simulate import Caller, FakeTwilio
from tests.conftest import Service
from tests.intake_helpers import send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

Conn = asyncpg.Connection


@pytest.fixture
async def tokens(db: Conn) -> dict[str, str]:
    return {
        role: (await auth.create_token(db, f"{role}-1", role, "test"))[0] for role in auth.ROLES
    }


@pytest.fixture
async def recorded(
    service: Service, twilio: FakeTwilio, twilio_media: FakeTwilioMedia, db: Conn
) -> dict[str, Any]:
    """Seven calls of mixed outcomes; two consented ones with stored recordings."""
    outcomes = ["stay", "hang-up", "stay", "hang-up", "hang-up", "hang-up", "hang-up"]
    traces = []
    for i, behaviour in enumerate(outcomes):
        traces.append(
            await twilio.place_call(f"+8490123{i:04d}", "+842873001234", Caller.parse(behaviour))
        )
    bodies = {}
    for trace in traces:
        if trace.recording_started:
            sid = new_recording_sid()
            bodies[sid] = wav_bytes(2)
            twilio_media.add(sid, bodies[sid])
            await send_recording(twilio, trace.call_sid, sid)
    await settle(db)
    return {"traces": traces, "bodies": bodies}
