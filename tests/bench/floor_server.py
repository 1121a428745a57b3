"""The voice webhook's floor: a bare aiohttp handler that runs only callvault's start-call
statement (``callvault_start_call``: the call, its first two ledger events, their chain, dedupe
and triggers), on a pool made as serve makes it (the service's role under row-level security,
the tenant named in the statement as ``tenancy.named_in_statement`` has it, the jsonb codec).

Its arguments are captured once, at start-up, from the real path: callvault's app (from the
``CALLVAULT_*`` environment, as ``serve`` reads it) answers one signed voice webhook in process
while ``gate.start_call``'s statement is recorded. Each request then sends them with only the
CallSid (the external id) changed: every request is a distinct new call, and one that is not
(a retried start, which returns no row) answers 500 and counts as an error.

``python -m tests.bench.floor_server PORT`` (run by ``tests.bench.floor_voice_webhook``)."""

from __future__ import annotations

import sys
import urllib.parse
from typing import Any
from unittest import mock

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from service.app import create_app
from service.config import load_settings
from service.consent import gate
from service.db import tenancy
from service.db.pool import create_pool

PATH = "/telephony/twilio/voice"
EXTERNAL_ID = 2  # the statement's third argument: the platform's call id
CAPTURE_SID = "CA" + "f" * 32  # the bench's CallSids are random hex: this one is never sent


class _Recorder:
    """A connection that notes every ``fetchrow`` of the start-call statement, then runs it."""

    def __init__(self, conn: Any, seen: list[tuple[Any, ...]]) -> None:
        self._conn, self._seen = conn, seen

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if query == gate.Q["start_call"]:
            self._seen.append(args)
        return await self._conn.fetchrow(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def capture() -> tuple[tuple[Any, ...], str]:
    """The start-call statement's arguments for one signed voice webhook answered by callvault's
    own app, and the TwiML it answered."""
    settings = load_settings()
    params = {
        "AccountSid": settings.twilio_account_sid or "",
        "CallSid": CAPTURE_SID,
        "From": "+84900000001",
        "To": "+842873001234",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    token = settings.twilio_auth_token
    assert token is not None
    signature = RequestValidator(token).compute_signature(settings.public_url + PATH, params)
    seen: list[tuple[Any, ...]] = []
    real = gate.start_call

    async def recording(conn: Any, *args: Any, **kwargs: Any) -> gate.Decision:
        return await real(_Recorder(conn, seen), *args, **kwargs)  # type: ignore[arg-type]

    with mock.patch.object(gate, "start_call", recording):
        async with TestClient(TestServer(create_app(settings, apply_migrations=False))) as client:
            resp = await client.post(
                PATH,
                data=urllib.parse.urlencode(params).encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )
            twiml = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"the capture webhook answered {resp.status}: {twiml}")
    if len(seen) != 1 or seen[0][EXTERNAL_ID] != CAPTURE_SID:
        raise RuntimeError(f"expected one start_call statement naming {CAPTURE_SID}: {seen}")
    return seen[0], twiml


async def make_app() -> web.Application:
    args, twiml = await capture()
    settings = load_settings()
    assert settings.database_url is not None
    # serve's pool (codecs, reset, tenant setup), at serve's size
    pool = await create_pool(settings.database_url, application_name="callvault-floor")
    query = gate.Q["start_call"]
    before, after = args[:EXTERNAL_ID], args[EXTERNAL_ID + 1 :]

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        sid = form.get("CallSid")
        if not isinstance(sid, str):
            raise web.HTTPBadRequest(text="CallSid is required")
        # as the webhook does: the statement names the tenant, so acquiring skips setting it
        with tenancy.named_in_statement():
            async with pool.acquire() as conn:
                row = await conn.fetchrow(query, *before, sid, *after)
        if row is None:  # not a new call: the bench sent a CallSid twice
            raise web.HTTPInternalServerError(text=f"CallSid {sid} started before")
        return web.Response(text=twiml, content_type="text/xml")

    async def close(_: web.Application) -> None:
        await pool.close()

    app = web.Application()
    app.router.add_post(PATH, handle)
    app.on_cleanup.append(close)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
