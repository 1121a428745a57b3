"""Shared by the API and page tests: tokens per role, recorded calls, and ``call_api``."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import auth
from service.db import tenancy
from service.simulate import Caller, FakeTwilio
from tests.conftest import Service
from tests.intake_helpers import send_recording, settle
from tests.twilio_media import FakeTwilioMedia, new_recording_sid, wav_bytes

Conn = asyncpg.Connection


@pytest.fixture
async def tokens(db: Conn) -> dict[str, str]:
    made = {}
    for role in auth.ROLES:
        # the operator's is a platform token: created for the tenant '*'
        await tenancy.set_tenant(db, tenancy.ALL if role == "operator" else tenancy.DEFAULT)
        made[role] = (await auth.create_token(db, f"{role}-1", role, "test"))[0]
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    return made


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


async def call_api(
    http: aiohttp.ClientSession,
    service: Service,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, service.base_url + path, json=body, headers=headers) as r:
        text = await r.text()
        return r.status, (
            json.loads(text) if text and r.content_type == "application/json" else text
        )
