"""Bad input on every route it can reach: the JSON error shape with the right 4xx, ``Server:
callvault``, and exactly one server log line (the access line), never a 500 or a traceback.

Each test is named after the item of issue 12 ("Bad input that still gets a 500 with a traceback
in the log") it reproduces. Twilio webhooks are signed exactly as Twilio signs them (the test
also proves the same request with good values is accepted), so a refusal is never just the
signature check. The unit tests at the end are hypothesis properties of the one parser
(``service.web.untrusted``) every route uses.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from yarl import URL

from service.app import create_app
from service.config import Settings
from service.errors import BadRequest
from service.links.http import RangeNotSatisfiable, _parse_range
from service.links.signed import LinkSigner
from service.observability import logs
from service.personal.numbers import PhoneVault
from service.storage import create_store
from service.web.untrusted import loads_json, parse_int, parse_timestamp, text_problem
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_URL,
    SECRET_KEY,
    Service,
    new_sid,
    run_cli,
)
from tests.seed import seed_recording
from tests.waiting import eventually

Conn = asyncpg.Connection
CALLER = "+84901234678"
HOTLINE = "+842873001234"
EDGE_DATES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
NOT_UTF8_QUERIES = ["%ED%A0%80", "%FF"]  # an encoded surrogate; a lone byte


class CapturedLog(logging.Handler):
    """What the server logs, formatted as `callvault serve` writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, self.format(record)))


@pytest.fixture
def server_log() -> Iterator[CapturedLog]:
    logs.install_filters()
    handler = CapturedLog()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


class LoggedService(Service):
    """The app as `callvault serve` runs it: with its access logger."""

    async def start(self) -> None:
        self.server = TestServer(
            create_app(self.settings, apply_migrations=False), host="127.0.0.1", port=self.port
        )
        await self.server.start_server(access_log_class=logs.AccessLogger)
        self.port = self.server.port


@pytest.fixture
async def service(settings: Settings, server_log: CapturedLog) -> AsyncIterator[Service]:
    svc = LoggedService(settings)
    await svc.start()
    yield svc
    await svc.stop()


@dataclass
class Sent:
    status: int
    headers: dict[str, str]
    body: bytes
    log: list[tuple[str, str]] = field(default_factory=list)


class Client:
    """Sends one request and collects what the server logged for it."""

    def __init__(self, http: aiohttp.ClientSession, service: Service, log: CapturedLog) -> None:
        self.http = http
        self.service = service
        self.log = log

    async def send(
        self,
        method: str,
        path_and_query: str,
        *,
        token: str | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Sent:
        self.log.lines.clear()
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        url = URL(self.service.base_url + path_and_query, encoded=True)
        async with self.http.request(method, url, data=body, headers=all_headers) as resp:
            sent = Sent(resp.status, dict(resp.headers), await resp.read())

        async def logged() -> bool:
            return any(name == "aiohttp.access" for name, _ in self.log.lines)

        # aiohttp writes the access line after the response went out
        await eventually(logged, what="the access log line", timeout_s=10)
        sent.log = list(self.log.lines)
        return sent


def assert_refused(sent: Sent, status: int, code: str) -> None:
    assert sent.status == status, sent.body[:500]
    assert sent.headers["Content-Type"].startswith("application/json")
    error = json.loads(sent.body)
    assert list(error) == ["error"] and sorted(error["error"]) == ["code", "message"]
    assert error["error"]["code"] == code, error
    assert isinstance(error["error"]["message"], str) and error["error"]["message"]
    assert_one_clean_line(sent)


def assert_one_clean_line(sent: Sent) -> None:
    assert sent.headers["Server"] == "callvault"
    assert len(sent.log) == 1, sent.log
    assert "Traceback" not in sent.log[0][1]


@pytest.fixture
def client(http: aiohttp.ClientSession, service: Service, server_log: CapturedLog) -> Client:
    return Client(http, service, server_log)


@pytest.fixture
async def admin(tokens: dict[str, str]) -> str:
    return tokens["admin"]


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # ensure_ascii: NUL and surrogates as \u escapes


JSON = {"Content-Type": "application/json"}
NOWHERE = "00000000-0000-0000-0000-000000000000"
# Every route with a JSON body, with a valid body and the string fields bad text can go into.
BODY_ROUTES: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "hold": (
        "/api/holds",
        {"call_id": NOWHERE, "reason": "subpoena 12", "case_ref": "C-1"},
        ["reason", "case_ref"],
    ),
    "playback": (f"/api/recordings/{NOWHERE}/playback", {"reason": "coaching"}, ["reason"]),
    "token": ("/api/tokens", {"name": "ops-x", "role": "qa_trainer"}, ["name"]),
    "dsar": ("/api/dsar", {"kind": "access", "phone": "+84905550123"}, ["phone"]),
}
BODY_FIELDS = [(route, f) for route, (_, _, fields) in BODY_ROUTES.items() for f in fields]
LIMIT_ROUTES = ["/api/calls", "/api/audit", "/api/holds"]
TEXT_FILTERS = [
    ("/api/calls", "external_id"),
    ("/api/calls", "queue"),
    ("/api/audit", "actor"),
    ("/api/audit", "action"),
]


# --- query parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("path", LIMIT_ROUTES)
@pytest.mark.parametrize("limit", ["²", "--5", "٣", "9" * 5000, "1e3", " 5"])
async def test_limit_that_isdigit_accepts_but_int_refuses_is_400(
    client: Client, admin: str, path: str, limit: str
) -> None:
    query = urllib.parse.urlencode({"limit": limit})
    assert_refused(await client.send("GET", f"{path}?{query}", token=admin), 400, "bad_limit")


@pytest.mark.parametrize("path", ["/api/calls", "/api/audit"])
@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize("date", EDGE_DATES)
async def test_dates_at_the_edges_of_the_calendar_in_filters_are_400(
    client: Client, admin: str, path: str, name: str, date: str
) -> None:
    query = urllib.parse.urlencode({name: date})
    sent = await client.send("GET", f"{path}?{query}", token=admin)
    assert_refused(sent, 400, f"bad_{name}")


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


CURSORS = {
    "edge-date-early": _cursor([EDGE_DATES[0], NOWHERE]),
    "edge-date-late": _cursor([EDGE_DATES[1], NOWHERE]),
    "date-without-zone": _cursor(["2026-01-01T00:00:00", NOWHERE]),
    "list-of-three": _cursor(["2026-01-01T00:00:00+00:00", NOWHERE, "x"]),
    "number": _cursor(5),
    "object-of-two": _cursor({"2026-01-01T00:00:00+00:00": 1, NOWHERE: 2}),
    "nested-lists": _cursor([["2026-01-01T00:00:00+00:00"], [NOWHERE]]),
    "uuid-as-number": _cursor(["2026-01-01T00:00:00+00:00", 5]),
    "date-as-number": _cursor([20260101, NOWHERE]),
    "null": _cursor(None),
    "nul-in-date": _cursor(["2026-01-01T00:00:00+00:00\x00", NOWHERE]),
    "not-json": base64.urlsafe_b64encode(b"\xff\xfe[").decode(),
    "not-base64": "%%%",
}


@pytest.mark.parametrize("cursor", list(CURSORS.values()), ids=list(CURSORS))
async def test_cursors_of_other_shapes_or_edge_dates_are_400(
    client: Client, admin: str, cursor: str
) -> None:
    query = urllib.parse.urlencode({"cursor": cursor})
    sent = await client.send("GET", f"/api/calls?{query}", token=admin)
    assert_refused(sent, 400, "bad_cursor")


INT64_MAX = 2**63 - 1
AT = "2026-01-01T00:00:00+00:00"
# Every list that pages, with the parts of its cursor as the service writes them (a real key's
# shape, so only the values decide), and values of each part's type the database cannot take.
LIST_CURSORS: dict[str, list[tuple[str, str]]] = {
    "/api/audit": [("timestamp", AT), ("bigint", "1")],
    "/api/holds": [("flag", "0"), ("timestamp", AT), ("uuid", NOWHERE)],
    "/api/dsar": [("flag", "0"), ("timestamp", AT), ("timestamp", AT), ("uuid", NOWHERE)],
    "/api/calls": [("timestamp", AT), ("uuid", NOWHERE)],
}
BAD_PARTS = {
    "timestamp": [*EDGE_DATES, "2026-01-01T00:00:00", "2026-13-01T00:00:00+00:00", "infinity"],
    "bigint": [
        "99999999999999999999",
        str(INT64_MAX + 1),
        str(-INT64_MAX - 2),
        "9" * 5000,
        "٣",
        "1_000",
        " 1",
        "1.0",
        "",
    ],
    "uuid": ["x", NOWHERE[:-1], NOWHERE + "0", "g" * 32, ""],
    "flag": ["2", "true", ""],
}
GOOD_PARTS = {"bigint": [str(INT64_MAX), str(-INT64_MAX - 1)]}


@pytest.mark.parametrize("path", list(LIST_CURSORS))
async def test_cursors_whose_parts_the_database_cannot_take_are_400(
    client: Client, admin: str, path: str
) -> None:
    """Issue: an audit cursor whose id is past int64 reached asyncpg and was a 500. Every part
    of every list's cursor is checked for its type's range before the query."""
    parts = LIST_CURSORS[path]
    good = [value for _, value in parts]
    sent = await client.send("GET", f"{path}?cursor={_cursor(good)}", token=admin)
    assert sent.status == 200, sent.body[:500]  # the shape is right: only a bad value refuses
    for i, (kind, _) in enumerate(parts):
        for edge in GOOD_PARTS.get(kind, []):  # the type's own limits are still a key
            cursor = _cursor([*good[:i], edge, *good[i + 1 :]])
            sent = await client.send("GET", f"{path}?cursor={cursor}", token=admin)
            assert sent.status == 200, (kind, edge, sent.body[:500])
        for bad in BAD_PARTS[kind]:
            cursor = _cursor([*good[:i], bad, *good[i + 1 :]])
            sent = await client.send("GET", f"{path}?cursor={cursor}", token=admin)
            assert_refused(sent, 400, "bad_cursor")


@pytest.mark.parametrize(("path", "name"), TEXT_FILTERS)
async def test_nul_in_query_parameters_is_400(
    client: Client, admin: str, path: str, name: str
) -> None:
    sent = await client.send("GET", f"{path}?{name}=a%00b", token=admin)
    assert_refused(sent, 400, f"bad_{name}")


@pytest.mark.parametrize(("path", "name"), TEXT_FILTERS)
@pytest.mark.parametrize("raw", NOT_UTF8_QUERIES)
async def test_unpaired_surrogate_or_non_utf8_in_query_strings_is_400(
    client: Client, admin: str, path: str, name: str, raw: str
) -> None:
    sent = await client.send("GET", f"{path}?{name}=a{raw}", token=admin)
    assert_refused(sent, 400, "bad_query")


# --- JSON bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "name"), BODY_FIELDS)
@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["nul", "unpaired-surrogate"])
async def test_nul_or_unpaired_surrogate_in_body_fields_is_400(
    client: Client, admin: str, route: str, name: str, bad: str
) -> None:
    path, body, _ = BODY_ROUTES[route]
    sent = await client.send(
        "POST", path, token=admin, body=_json({**body, name: bad}), headers=JSON
    )
    assert_refused(sent, 400, "invalid_body")


@pytest.mark.parametrize("route", list(BODY_ROUTES))
async def test_json_nested_100000_deep_is_400(client: Client, admin: str, route: str) -> None:
    path, _, _ = BODY_ROUTES[route]
    deep = b'{"reason": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    sent = await client.send("POST", path, token=admin, body=deep, headers=JSON)
    assert_refused(sent, 400, "bad_json")
    shallow_but_deeper_than_any_body = b"[" * 200 + b"]" * 200
    sent = await client.send(
        "POST", path, token=admin, body=shallow_but_deeper_than_any_body, headers=JSON
    )
    assert_refused(sent, 400, "bad_json")


@pytest.mark.parametrize("route", list(BODY_ROUTES))
async def test_duplicate_json_keys_are_refused_not_last_wins(
    client: Client, admin: str, route: str
) -> None:
    path, body, fields = BODY_ROUTES[route]
    text = json.dumps(body)[:-1] + f', "{fields[0]}": "again"}}'
    sent = await client.send("POST", path, token=admin, body=text.encode(), headers=JSON)
    assert_refused(sent, 400, "bad_json")


@pytest.mark.parametrize(
    "raw",
    [b'{"reason": "\xff"}', b'{"reason": NaN}', b'{"reason": ' + b"9" * 5000 + b"}"],
    ids=["not-utf8", "nan", "5000-digit-number"],
)
async def test_bodies_json_cannot_hold_are_400(client: Client, admin: str, raw: bytes) -> None:
    sent = await client.send("POST", "/api/holds", token=admin, body=raw, headers=JSON)
    assert_refused(sent, 400, "bad_json")


async def test_gzip_content_encoding_on_a_body_that_is_not_gzip_is_400(
    client: Client, admin: str
) -> None:
    path, body, _ = BODY_ROUTES["hold"]
    headers = {**JSON, "Content-Encoding": "gzip"}
    sent = await client.send("POST", path, token=admin, body=_json(body), headers=headers)
    assert_refused(sent, 400, "bad_body")
    # the server cannot read past the broken body and drops the connection: it must say so,
    # or a keep-alive client's next request on it dies with ECONNRESET
    assert sent.headers.get("Connection", "").lower() == "close", sent.headers
    after = await client.send("GET", "/api/calls", token=admin)
    assert after.status == 200


async def test_gzip_content_encoding_on_a_route_that_reads_no_body_is_harmless(
    client: Client, admin: str
) -> None:
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
    sent = await client.send("GET", "/api/calls", token=admin, body=b"not gzip", headers=headers)
    assert sent.status in (200, 400)
    assert_one_clean_line(sent)


# --- Twilio webhooks, signed -----------------------------------------------------------------

WEBHOOKS = {
    "voice": ("/telephony/twilio/voice", {}),
    "consent": ("/telephony/twilio/consent?attempt=1", {"Digits": "1"}),
    "status": ("/telephony/twilio/status", {"CallDuration": "12"}),
    "recording": (
        "/telephony/twilio/recording",
        {
            "RecordingSid": "RE" + "1" * 32,
            "RecordingStatus": "absent",
            "RecordingDuration": "0",
        },
    ),
}
VALIDATOR = RequestValidator(AUTH_TOKEN)


def _params(route: str, status: str = "in-progress") -> dict[str, str]:
    base = {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": new_sid(),
        "CallStatus": "completed" if route == "status" else status,
        "Direction": "inbound",
        "From": CALLER,
        "To": HOTLINE,
    }
    return {**base, **WEBHOOKS[route][1]}


async def _webhook(
    client: Client,
    route: str,
    params: dict[str, str],
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Sent:
    """POST ``params`` form-encoded (or ``body`` as given) with the signature Twilio would send
    for ``params`` at the public URL."""
    path = WEBHOOKS[route][0]
    signature = VALIDATOR.compute_signature(PUBLIC_URL + path, params)
    form = body if body is not None else urllib.parse.urlencode(params).encode()
    return await client.send(
        "POST",
        path,
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
            **(headers or {}),
        },
    )


@pytest.mark.parametrize("route", list(WEBHOOKS))
async def test_signed_webhooks_with_good_values_are_accepted(client: Client, route: str) -> None:
    """The control for the refusals below: the same signing gets through."""
    sent = await _webhook(client, route, _params(route))
    assert sent.status in (200, 204), sent.body[:300]


@pytest.mark.parametrize("route", list(WEBHOOKS))
@pytest.mark.parametrize("raw", [b"\xff\xfe", b"%ED%A0%80", b"%FF"], ids=["raw", "surr", "byte"])
async def test_signed_webhook_bodies_not_utf8_are_400(
    client: Client, route: str, raw: bytes
) -> None:
    params = _params(route)
    body = urllib.parse.urlencode(params).encode() + b"&CallerName=" + raw
    # signed over what a lenient decoder would see: the server must refuse before trusting it
    signed = {**params, "CallerName": raw.decode("latin-1")}
    sent = await _webhook(client, route, signed, body=body)
    assert_refused(sent, 400, "bad_form")


@pytest.mark.parametrize("route", list(WEBHOOKS))
@pytest.mark.parametrize("name", ["CallSid", "To", "From"])
async def test_signed_webhooks_with_nul_in_a_parameter_are_400(
    client: Client, route: str, name: str
) -> None:
    params = _params(route)
    params[name] = params[name][:6] + "\x00" + params[name][6:]
    assert_refused(await _webhook(client, route, params), 400, "bad_form")


@pytest.mark.parametrize("route", list(WEBHOOKS))
async def test_gzip_content_encoding_on_a_signed_webhook_that_is_not_gzip_is_400(
    client: Client, route: str
) -> None:
    sent = await _webhook(client, route, _params(route), headers={"Content-Encoding": "gzip"})
    assert_refused(sent, 400, "bad_body")


@pytest.mark.parametrize("attempt", ["²", "--5", "9" * 5000])
async def test_consent_attempt_that_isdigit_accepts_but_int_refuses_is_400(
    client: Client, attempt: str
) -> None:
    params = _params("consent")
    path = "/telephony/twilio/consent?" + urllib.parse.urlencode({"attempt": attempt})
    signature = VALIDATOR.compute_signature(PUBLIC_URL + path, params)
    sent = await client.send(
        "POST",
        path,
        body=urllib.parse.urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert_refused(sent, 400, "bad_attempt")


@pytest.mark.parametrize(
    ("route", "name"), [("status", "CallDuration"), ("recording", "RecordingDuration")]
)
@pytest.mark.parametrize("duration", ["²", "9" * 5000, "99999999999"])
async def test_signed_durations_that_are_not_numbers_are_ignored_not_500(
    client: Client, db: Conn, route: str, name: str, duration: str
) -> None:
    params = {**_params(route), name: duration}
    sent = await _webhook(client, route, params)
    assert sent.status in (200, 204), sent.body[:300]
    assert all("Traceback" not in line for _, line in sent.log)


# --- Range, unparsable requests, the Server header -------------------------------------------


@pytest.fixture
async def file_url(settings: Settings, db: Conn, service: Service) -> str:
    store = create_store(settings)
    try:
        rec = await seed_recording(
            db, store, PhoneVault(SECRET_KEY), settings.home, body=b"RIFF" + b"\x01" * 996
        )
    finally:
        await store.close()
    token, _ = LinkSigner(SECRET_KEY).sign(rec["key"], "playback:x", 600)
    return f"/files/{token}"


async def test_range_header_with_thousands_of_digits_is_answered_not_500(
    client: Client, file_url: str
) -> None:
    huge = "9" * 5000
    sent = await client.send("GET", file_url, headers={"Range": f"bytes={huge}-"})
    assert_refused(sent, 416, "range_not_satisfiable")
    assert sent.headers["Content-Range"] == "bytes */1000"
    sent = await client.send("GET", file_url, headers={"Range": f"bytes=10-{huge}"})
    assert sent.status == 206 and sent.headers["Content-Range"] == "bytes 10-999/1000"
    assert_one_clean_line(sent)
    sent = await client.send("GET", file_url, headers={"Range": f"bytes=-{huge}"})
    assert sent.status == 206 and len(sent.body) == 1000
    assert_one_clean_line(sent)
    sent = await client.send("GET", file_url, headers={"Range": f"bytes={'0' * 5000}5-9"})
    assert sent.status == 206 and sent.body == b"\x01" * 5


UNPARSABLE = {
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
    "bad-version": b"GET /healthz HTTP/9.z\r\nHost: x\r\n\r\n",
    "nul-in-target": b"GET /api/calls?queue=\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-chunk-size": b"POST /api/holds HTTP/1.1\r\nHost: x\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
}


@pytest.mark.parametrize("raw", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
async def test_requests_that_fail_to_parse_get_one_access_line_and_no_traceback(
    service: Service, server_log: CapturedLog, raw: bytes
) -> None:
    server_log.lines.clear()
    assert service.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    writer.write(raw)
    await writer.drain()
    head = await reader.read(65536)
    writer.close()
    await writer.wait_closed()
    assert head.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), head[:200]
    assert b"\r\nServer: callvault\r\n" in head

    async def logged() -> bool:
        return any(name == "aiohttp.access" for name, _ in server_log.lines)

    await eventually(logged, what="the access log line", timeout_s=10)
    assert len(server_log.lines) == 1, server_log.lines
    access = json.loads(server_log.lines[0][1])
    assert access["route"] == "unparsed" and access["status"] == 400
    assert "Traceback" not in server_log.lines[0][1]


@pytest.mark.parametrize(
    "path", ["/healthz", "/qa/", "/qa/app.js", "/openapi.json", "/nope", "/api/calls"]
)
async def test_server_header_names_no_versions(client: Client, path: str) -> None:
    sent = await client.send("GET", path)
    assert sent.headers["Server"] == "callvault"
    assert "aiohttp" not in json.dumps(sent.headers) and "Python" not in json.dumps(sent.headers)


# --- token names -----------------------------------------------------------------------------


async def test_token_names_are_unique_409_token_name_taken(
    client: Client, admin: str, db: Conn
) -> None:
    body = _json({"name": "ops-lan", "role": "qa_trainer"})
    sent = await client.send("POST", "/api/tokens", token=admin, body=body, headers=JSON)
    assert sent.status == 201
    again = _json({"name": "ops-lan", "role": "compliance"})
    sent = await client.send("POST", "/api/tokens", token=admin, body=again, headers=JSON)
    assert_refused(sent, 409, "token_name_taken")
    assert await db.fetchval("SELECT count(*) FROM api_tokens WHERE name = 'ops-lan'") == 1
    # the refusal rolled back its audit entry with it
    created = await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'token_created'")
    assert created == 1


@pytest.mark.parametrize("name", ["ops\x1b[2Jx", "ops\u202egnp.exe", "ops\nline"])
async def test_token_names_with_control_characters_are_refused(
    client: Client, admin: str, name: str
) -> None:
    body = _json({"name": name, "role": "qa_trainer"})
    sent = await client.send("POST", "/api/tokens", token=admin, body=body, headers=JSON)
    assert_refused(sent, 400, "bad_name")


# --- the parser's properties (hypothesis) ----------------------------------------------------


@given(st.binary(max_size=300))
def test_loads_json_refuses_any_bytes_with_bad_request_only(raw: bytes) -> None:
    try:
        loads_json(raw)
    except BadRequest as exc:
        assert exc.code in ("bad_json", "invalid_body")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=20,
    )
)
def test_loads_json_accepts_what_json_writes_unless_postgresql_cannot_store_it(
    value: Any,
) -> None:
    storable = all(text_problem(s) is None for s in _strings(value))
    try:
        assert loads_json(json.dumps(value).encode()) == value
    except BadRequest as exc:
        assert not storable and exc.code == "invalid_body", exc.message


@given(st.text(max_size=40))
def test_parse_int_and_parse_timestamp_never_raise(raw: str) -> None:
    number = parse_int(raw)
    assert number is None or (raw.isascii() and abs(number) < 10**18)
    stamp = parse_timestamp(raw)
    assert stamp is None or stamp.utcoffset() is not None


def _check_range(header: str, size: int) -> None:
    try:
        wanted = _parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if wanted is not None:
        start, end = wanted
        assert 0 <= start <= end < size


@given(st.text(max_size=60), st.integers(min_value=1, max_value=10**6))
def test_range_parser_answers_every_header(header: str, size: int) -> None:
    _check_range(header, size)


@given(st.from_regex(r"bytes=[0-9]{0,30}-[0-9]{0,30}", fullmatch=True), st.integers(1, 10**6))
def test_range_parser_answers_long_numbers(header: str, size: int) -> None:
    _check_range(header, size)


# --- the CLI: token names, and what it prints ------------------------------------------------


async def test_cli_token_create_with_a_taken_name_is_one_line_error(
    db: Conn, database_url: str
) -> None:
    args = ("token", "create", "--name", "qa-lan", "--role", "qa_trainer")
    first = await asyncio.to_thread(run_cli, database_url, *args)
    assert first.returncode == 0, first.stderr
    again = await asyncio.to_thread(run_cli, database_url, *args)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.splitlines() == [
        "callvault: error: a token named 'qa-lan' exists already (names are never reused)"
    ]
    assert await db.fetchval("SELECT count(*) FROM api_tokens") == 1


async def test_cli_token_list_and_hold_list_escape_control_characters(
    db: Conn, database_url: str
) -> None:
    # rows written before names were checked, or straight into the database
    await db.execute(
        "INSERT INTO api_tokens (name, role, token_sha256, created_by) "
        "VALUES ($1, 'qa_trainer', '\\x01', 'test')",
        "ops\x1b[2J\x1b]0;owned\x07\rroot",
    )
    await db.execute(
        "INSERT INTO holds (phone_hash, phone_enc, reason, case_ref, placed_by) "
        "VALUES ('\\x01', '\\x01', $1, $2, 'test')",
        "subpoena\x1b[8m hidden\nFAKE released",
        "C-\u202e1",
    )
    tokens = await asyncio.to_thread(run_cli, database_url, "token", "list")
    holds = await asyncio.to_thread(run_cli, database_url, "hold", "list")
    assert tokens.returncode == 0 and holds.returncode == 0, tokens.stderr + holds.stderr
    for out in (tokens.stdout, holds.stdout):
        assert len(out.splitlines()) == 1, out
        assert all(ch.isprintable() for ch in out.rstrip("\n")), repr(out)
    assert tokens.stdout.rstrip("\n").endswith("ops\\x1b[2J\\x1b]0;owned\\x07\\rroot")
    assert "case C-\\u202e1: subpoena\\x1b[8m hidden\\nFAKE released" in holds.stdout


async def test_cli_hold_reason_that_is_not_utf8_is_one_line_error(
    db: Conn, database_url: str
) -> None:
    # argv bytes that are not UTF-8 reach Python as lone surrogates (surrogateescape)
    result = await asyncio.to_thread(
        run_cli,
        database_url,
        "hold",
        "place",
        "--phone",
        "+84901234567",
        "--reason",
        "court \udcff",
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "reason" in result.stderr and "Traceback" not in result.stderr
    assert await db.fetchval("SELECT count(*) FROM holds") == 0
