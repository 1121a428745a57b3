"""The console's aggregates on the real service: consent outcomes per day and per queue,
recordings stored, purged and due, requests by status and overdue, the latest seal; counted
for the acting tenant only, on its calendar, and published in /openapi.json."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import asyncpg
import pytest

from service.config import Settings
from service.personal.numbers import mask_phone
from tests import console_seed
from tests.conftest import Service
from tests.intake_helpers import settle
from tests.qa_fixtures import call_api

Conn = asyncpg.Connection


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def seeded(db: Conn) -> dict[str, Any]:
    return await console_seed.seed(db)


async def test_consent_per_day_and_per_queue(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], seeded: Any
) -> None:
    status, stats = await call_api(
        http, service, "GET", "/api/stats/consent?days=30", tokens["compliance"]
    )
    assert status == 200, stats
    assert stats["time_zone"] == console_seed.ZONE
    assert len(stats["days"]) == 30
    assert stats["totals"] == console_seed.EXPECTED_TOTALS
    today, first = stats["days"][-1], stats["days"][0]
    assert (today["consented"], today["refused"]) == (2, 1)
    assert first["consented"] == 1  # 29 days ago is in; 30 days ago is not
    three = stats["days"][-4]
    assert (three["no_input"], three["hung_up_during_notice"], three["not_asked"]) == (1, 1, 1)
    queues = {
        q["queue"]: {k: v for k, v in q.items() if k != "queue" and v} for q in stats["queues"]
    }
    assert queues == console_seed.EXPECTED_QUEUES
    assert stats["queues"][0]["queue"] == "sales"  # busiest first

    # a shorter window: today only
    _, one = await call_api(http, service, "GET", "/api/stats/consent?days=1", tokens["admin"])
    assert one["totals"]["consented"] == 2 and len(one["days"]) == 1


async def test_recordings_stored_purged_and_due(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], seeded: Any
) -> None:
    status, stats = await call_api(
        http, service, "GET", "/api/stats/recordings", tokens["compliance"]
    )
    assert status == 200, stats
    assert len(stats["days"]) == len(stats["due"]) == 30
    totals = {
        "stored": sum(d["stored"] for d in stats["days"]),
        "purged": sum(d["purged"] for d in stats["days"]),
        "due": sum(d["due"] for d in stats["due"]),
        "kept": sum(d["kept"] for d in stats["due"]),
    }
    assert totals == console_seed.EXPECTED_RECORDINGS
    assert stats["due"][0]["due"] == 1  # past its retention already: the next purge run's
    assert stats["days"][-1]["stored"] == 2


async def test_requests_by_status_and_overdue(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], seeded: Any
) -> None:
    status, stats = await call_api(http, service, "GET", "/api/stats/requests", tokens["admin"])
    assert status == 200, stats
    assert {k: v for k, v in stats["by_status"].items() if v} == console_seed.EXPECTED_REQUESTS
    assert stats["overdue"] == console_seed.EXPECTED_OVERDUE
    assert stats["open"] == 4
    # the same count as the queue the console shows
    _, queue = await call_api(http, service, "GET", "/api/dsar", tokens["compliance"])
    late = [r for r in queue["items"] if r["overdue"]["acknowledge"] or r["overdue"]["complete"]]
    assert len(late) == stats["overdue"]


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)


async def test_charts_are_svg_drawn_from_the_aggregates(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], seeded: Any
) -> None:
    ns = {"s": "http://www.w3.org/2000/svg"}
    token = tokens["compliance"]
    _, consent = await call_api(http, service, "GET", "/api/stats/consent", token)
    status, text = await call_api(http, service, "GET", "/api/stats/charts/queues", token)
    assert status == 200, text
    svg = _svg(text)
    assert svg.get("role") == "img" and svg.get("data-lang") == "vi"
    assert svg.find("s:title", ns).text == "Kết quả đồng ý theo hàng chờ (30 ngày)"  # type: ignore[union-attr]
    # every segment titled with its number, and the same numbers the JSON gives
    titles = [t.text for t in svg.findall(".//s:rect/s:title", ns)]
    expected = [
        f"{q['queue'] or '(không có hàng chờ)'}: {label} {q[o]}"
        for q in consent["queues"]
        for o, label in (("consented", "Đồng ý ghi âm"), ("refused", "Từ chối"),
                         ("hung_up_during_notice", "Gác máy khi nghe thông báo"),
                         ("no_input", "Không bấm phím"), ("not_asked", "Không hỏi"))
        if q[o]
    ]  # fmt: skip
    assert titles == expected
    totals = {
        g.get("data-series"): int(g.get("data-total", -1))
        for g in svg.iter()
        if g.get("data-total")
    }
    assert totals == {k: v for k, v in console_seed.EXPECTED_TOTALS.items() if k != "in_progress"}

    # in English, with the overdue requests as a legend-only total
    status, text = await call_api(
        http, service, "GET", "/api/stats/charts/requests?lang=en", tokens["admin"]
    )
    svg = _svg(text)
    titles = [t.text for t in svg.findall(".//s:rect/s:title", ns)]
    assert "in force: Requests 1" in titles and "received: Requests 2" in titles
    overdue = next(g for g in svg.iter() if g.get("data-series") == "overdue")
    assert int(overdue.get("data-total", -1)) == console_seed.EXPECTED_OVERDUE
    assert overdue.get("data-extra") == "true"
    assert "Overdue: 2" in (svg.find("s:desc", ns).text or "")  # type: ignore[union-attr]

    async with http.get(
        service.base_url + "/api/stats/charts/due?days=7",
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        assert r.status == 200 and r.content_type == "image/svg+xml"
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        days = _svg(await r.text()).findall("s:g[@data-label]", ns)
        assert len(days) == 7
    status, body = await call_api(http, service, "GET", "/api/stats/charts/pie", token)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call_api(http, service, "GET", "/api/stats/charts/due?lang=fr", token)
    assert (status, body["error"]["code"]) == (400, "bad_lang")


async def test_lists_page_through_without_repeats_or_gaps(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], db: Conn
) -> None:
    from retention import dsar, holds
    from service.observability import audit

    # one transaction: one now(), so the rows tie on every sort key but their id
    async with db.transaction():
        placed = []
        for i in range(7):
            phone = f"+8490555{i:04d}"
            await dsar.create(db, console_seed.VAULT, kind="withdraw", phone=phone, actor="t")
            # (another number: the withdrawal's erasure forgets a released hold's number)
            held = f"+8490666{i:04d}"
            hold = await holds.place(db, console_seed.VAULT, "t", phone=held, reason="court")
            placed.append(hold.id)
            await audit.record(db, "t", "paged", "test", str(i), {})
        for hold_id in placed[:3]:  # released ones come after the active ones
            await holds.release(db, console_seed.VAULT, hold_id, "t")
    # the worker carries the withdrawals out: their status, a sort key, changes until it has
    await settle(db)
    lists = {
        "/api/dsar?status=all": "id",
        "/api/holds?include_released=true": "id",
        "/api/audit?action=paged": "id",
    }
    for path, key in lists.items():
        _, whole = await call_api(http, service, "GET", path + "&limit=100", tokens["compliance"])
        assert len(whole["items"]) == 7 and whole["next_cursor"] is None
        seen, cursor, pages = [], "", 0
        while cursor is not None:
            status, page = await call_api(
                http, service, "GET", f"{path}&limit=3&cursor={cursor}", tokens["compliance"]
            )
            assert status == 200, page
            seen += [item[key] for item in page["items"]]
            cursor, pages = page["next_cursor"], pages + 1
        assert seen == [item[key] for item in whole["items"]], path  # same order, each once
        assert pages == 3
    _, active_first = await call_api(
        http, service, "GET", "/api/holds?include_released=true", tokens["compliance"]
    )
    assert [h["active"] for h in active_first["items"]] == [True] * 4 + [False] * 3
    # each hold on a number shows it masked, never whole
    assert sorted(h["phone"] for h in active_first["items"]) == sorted(
        mask_phone(f"+8490666{i:04d}") for i in range(7)
    )
    assert "+8490666" not in json.dumps(active_first)
    for bad in ("x", "WyJhIl0", "W10"):  # not base64 JSON; ["a"]; []
        status, body = await call_api(
            http, service, "GET", f"/api/audit?cursor={bad}", tokens["compliance"]
        )
        assert (status, body["error"]["code"]) == (400, "bad_cursor"), bad


async def test_a_requests_channel_is_recorded_and_shown(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], db: Conn
) -> None:
    token = tokens["compliance"]
    # a withdrawal needs no call of the number
    body = {"kind": "withdraw", "phone": "+84905550300", "channel": "in_person"}
    status, made = await call_api(http, service, "POST", "/api/dsar", token, body)
    assert status == 201, made
    assert made["channel"] == "in_person"
    assert (
        await db.fetchval("SELECT channel FROM dsar_requests WHERE id = $1::uuid", made["id"])
        == "in_person"
    )
    _, unsaid = await call_api(
        http, service, "POST", "/api/dsar", token, {"kind": "withdraw", "phone": "+84905550301"}
    )
    assert unsaid["channel"] is None  # not recorded, as on requests from before
    status, bad = await call_api(
        http, service, "POST", "/api/dsar", token, {**body, "channel": "fax"}
    )
    assert (status, bad["error"]["code"]) == (400, "invalid_body")
    _, listed = await call_api(http, service, "GET", "/api/dsar?status=all", token)
    assert {r["id"]: r["channel"] for r in listed["items"]} == {
        made["id"]: "in_person",
        unsaid["id"]: None,
    }


async def test_latest_seal(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], db: Conn
) -> None:
    from service.ledger import seals

    path = "/api/ledger/seals/latest"
    status, body = await call_api(http, service, "GET", path, tokens["compliance"])
    assert (status, body["error"]["code"]) == (404, "no_seal")
    await console_seed._call(db, 0, "consented", None)
    call_id = await db.fetchval("SELECT id FROM calls LIMIT 1")
    from service import ledger
    from service.ledger import NewEvent

    async with db.transaction():
        await ledger.append(db, call_id, [NewEvent("call_started", {})])
    seal_id = await seals.seal(db)
    status, body = await call_api(http, service, "GET", path, tokens["compliance"])
    assert status == 200, body
    assert body["id"] == seal_id and body["calls"] == 1 and len(body["root"]) == 64


@pytest.mark.parametrize(
    "path",
    [
        "/api/stats/consent",
        "/api/stats/recordings",
        "/api/stats/requests",
        "/api/stats/charts/{chart}",
        "/api/ledger/seals/latest",
    ],
)
async def test_roles_and_documentation(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str], path: str
) -> None:
    url = path.replace("{chart}", "consent")
    assert (await call_api(http, service, "GET", url, tokens["qa_trainer"]))[0] == 403
    assert (await call_api(http, service, "GET", url))[0] == 401
    _, spec = await call_api(http, service, "GET", "/openapi.json")
    assert "get" in spec["paths"][path]
    if path.startswith("/api/stats/c") or path.startswith("/api/stats/r"):
        assert spec["paths"][path]["get"]["responses"]["200"]["content"]
    if "{chart}" in path:
        assert "image/svg+xml" in spec["paths"][path]["get"]["responses"]["200"]["content"]


async def test_bad_days_are_400(
    service: Service, http: aiohttp.ClientSession, tokens: dict[str, str]
) -> None:
    for days in ("0", "367", "x"):
        status, body = await call_api(
            http, service, "GET", f"/api/stats/consent?days={days}", tokens["compliance"]
        )
        assert (status, body["error"]["code"]) == (400, "bad_days")
