"""Shared by the API and page tests: tokens per role, recorded calls, and ``call_api``."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import aiohttp
import asyncpg
import pytest

from service import auth
from service.db import tenancy
from service.platforms.twilio.simulate import Caller, FakeTwilio
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


async def access_bundle(
    http: aiohttp.ClientSession, service: Service, token: str, phone: str, db: asyncpg.Connection
) -> tuple[dict[str, Any], zipfile.ZipFile]:
    """An access request for ``phone`` carried out, and its bundle downloaded through the link
    the API hands out: (the request, the zip)."""
    status, req = await call_api(
        http, service, "POST", "/api/dsar", token, {"kind": "access", "phone": phone}
    )
    assert status == 201
    await settle(db)
    status, link = await call_api(http, service, "POST", f"/api/dsar/{req['id']}/bundle", token)
    assert status == 200
    async with http.get(f"{service.base_url}/files/{link['url'].split('/files/', 1)[1]}") as r:
        assert r.status == 200
        return req, zipfile.ZipFile(io.BytesIO(await r.read()))
