"""The aggregates the compliance console draws, as ``/api`` routes any client may use:
``/api/stats/consent`` (consent outcomes per day and per queue), ``/api/stats/recordings``
(stored and purged per day, due to be purged), ``/api/stats/requests`` (data-subject requests
by status, overdue ones), ``/api/stats/charts/{chart}`` (those drawn as SVG, see charts.py) and
``/api/ledger/seals/latest``.

Days are the tenant's days (its clock's time zone) and "now" is the database's. Each count is
one grouped scan of an index of the acting tenant (migration 0017), never of the rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from retention import clock, dsar
from service.api import schemas
from service.api.spec import DATETIME, MEDIA_TYPE, QUERY, Param, operation
from service.console import charts
from service.db import Conn, queries
from service.errors import NotFound
from service.qa.api import OUTCOMES
from service.qa.page import SECURITY
from service.vocabulary import Role
from service.web.context import POOL, SETTINGS

Q = queries.load("service.console")
COMPLIANCE = (Role.COMPLIANCE,)
DAYS = Param(
    "days",
    {"type": "integer", "minimum": 1, "maximum": 366, "default": 30},
    description="how many days, today (in the tenant's time zone) included: 1 to 366",
)
LANG = Param(
    "lang", {"enum": [g.value for g in charts.Lang], "default": "vi"}, description="vi or en"
)
DAY = {"type": "string", "format": "date"}
COUNT = {"type": "integer", "minimum": 0}
OUTCOME_COUNTS = {o: COUNT for o in OUTCOMES}
WINDOW = {"time_zone": {"type": "string"}, "since": DATETIME, "until": DATETIME}
CONSENT_STATS = schemas.obj(
    ["time_zone", "since", "until", "days", "queues", "totals"],
    **WINDOW,
    days={"type": "array", "items": schemas.obj(["day", *OUTCOMES], day=DAY, **OUTCOME_COUNTS)},
    queues={
        "type": "array",
        "items": schemas.obj(
            ["queue", *OUTCOMES], queue={"type": ["string", "null"]}, **OUTCOME_COUNTS
        ),
        "description": "busiest first; queue null: calls routed to no queue",
    },
    totals=schemas.obj(OUTCOMES, **OUTCOME_COUNTS),
)
RECORDING_STATS = schemas.obj(
    ["time_zone", "since", "until", "days", "due"],
    **WINDOW,
    days={
        "type": "array",
        "items": schemas.obj(["day", "stored", "purged"], day=DAY, stored=COUNT, purged=COUNT),
    },
    due={
        "type": "array",
        "description": "the next days (today first): stored recordings whose retention ends "
        "that day (today: or earlier), due to be purged, and those a hold or an open request "
        "keeps",
        "items": schemas.obj(["day", "due", "kept"], day=DAY, due=COUNT, kept=COUNT),
    },
)
REQUEST_STATS = schemas.obj(
    ["by_status", "open", "overdue"],
    by_status=schemas.obj(list(dsar.STATUSES), **{s: COUNT for s in dsar.STATUSES}),
    open=COUNT,
    overdue={**COUNT, "description": "open requests past a deadline (acknowledge or complete)"},
)
SEAL = schemas.obj(
    ["id", "at", "calls", "format", "root", "hash"],
    id={"type": "integer"},
    at=DATETIME,
    calls=COUNT,
    format={"type": "integer"},
    max_event_id={"type": "integer"},
    root={"type": "string", "description": "hex: the Merkle root (format 2) or heads digest"},
    hash={"type": "string", "description": "hex: this seal's hash, chaining it to the last"},
)


async def _window(request: web.Request, conn: Conn, days: int) -> tuple[str, Any]:
    policy = await dsar.clock_policy(conn, clock.for_settings(request.app[SETTINGS]))
    return policy.time_zone, await conn.fetchrow(Q["window"], policy.time_zone, days)


def _window_json(zone: str, w: Any) -> dict[str, Any]:
    return {"time_zone": zone, "since": w["since"].isoformat(), "until": w["until"].isoformat()}


def _dates(first: dt.date, days: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(days)]


def _outcomes() -> dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


@operation(
    "GET",
    "/api/stats/consent",
    roles=COMPLIANCE,
    summary="Consent outcomes per day (the tenant's days, oldest first, every day listed) and "
    "per queue over the last `days` days",
    query=[DAYS],
    responses={200: CONSENT_STATS},
    tag="compliance",
)
async def consent_stats(request: web.Request) -> web.Response:
    return web.json_response(await _consent(request, request[QUERY]["days"]))


async def _consent(request: web.Request, days: int) -> dict[str, Any]:
    async with request.app[POOL].acquire() as conn:
        zone, w = await _window(request, conn, days)
        per_day = await conn.fetch(Q["consent_per_day"], w["since"], w["until"], zone)
        per_queue = await conn.fetch(Q["consent_per_queue"], w["since"], w["until"])
    by_day = {d: _outcomes() for d in _dates(w["today"] - dt.timedelta(days=days - 1), days)}
    totals = _outcomes()
    for row in per_day:
        by_day[row["day"]][row["outcome"]] += row["n"]
        totals[row["outcome"]] += row["n"]
    by_queue: dict[str | None, dict[str, int]] = {}
    for row in per_queue:
        by_queue.setdefault(row["queue"], _outcomes())[row["outcome"]] += row["n"]
    queues = sorted(by_queue.items(), key=lambda q: (-sum(q[1].values()), q[0] or ""))
    return {
        **_window_json(zone, w),
        "days": [{"day": d.isoformat(), **counts} for d, counts in by_day.items()],
        "queues": [{"queue": q, **counts} for q, counts in queues],
        "totals": totals,
    }


@operation(
    "GET",
    "/api/stats/recordings",
    roles=COMPLIANCE,
    summary="Recordings stored and purged per day over the last `days` days, and those due "
    "to be purged in the next `days` days",
    query=[DAYS],
    responses={200: RECORDING_STATS},
    tag="compliance",
)
async def recording_stats(request: web.Request) -> web.Response:
    return web.json_response(await _recordings(request, request[QUERY]["days"]))


async def _recordings(request: web.Request, days: int) -> dict[str, Any]:
    async with request.app[POOL].acquire() as conn:
        zone, w = await _window(request, conn, days)
        stored = await conn.fetch(Q["stored_per_day"], w["since"], w["until"], zone)
        purged = await conn.fetch(Q["purged_per_day"], w["since"], w["until"], zone)
        # ahead: from now to the end of the day `days - 1` days after today
        ahead_until = w["until"] + dt.timedelta(days=days - 1)
        due = await conn.fetch(Q["due_per_day"], w["db_now"], ahead_until, zone)
    past = {
        d: {"stored": 0, "purged": 0} for d in _dates(w["today"] - dt.timedelta(days - 1), days)
    }
    for row in stored:
        past[row["day"]]["stored"] += row["n"]
    for row in purged:
        past[row["day"]]["purged"] += row["n"]
    ahead = {d: {"due": 0, "kept": 0} for d in _dates(w["today"], days)}
    for row in due:
        if row["day"] in ahead:  # a zone's daylight-saving hour may spill past the last day
            ahead[row["day"]]["due"] += row["due"]
            ahead[row["day"]]["kept"] += row["kept"]
    return {
        **_window_json(zone, w),
        "days": [{"day": d.isoformat(), **c} for d, c in past.items()],
        "due": [{"day": d.isoformat(), **c} for d, c in ahead.items()],
    }


@operation(
    "GET",
    "/api/stats/requests",
    roles=COMPLIANCE,
    summary="Data-subject requests by status, how many are open and how many overdue",
    responses={200: REQUEST_STATS},
    tag="compliance",
)
async def request_stats(request: web.Request) -> web.Response:
    return web.json_response(await _requests(request))


async def _requests(request: web.Request) -> dict[str, Any]:
    stopped = [s.value for s in clock.CLOCK_STOPPED]
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(Q["requests_by_status"], stopped)
    by_status = dict.fromkeys(dsar.STATUSES, 0)
    for row in rows:
        by_status[row["status"]] = row["n"]
    closed = {s.value for s in clock.CLOSED}
    return {
        "by_status": by_status,
        "open": sum(n for s, n in by_status.items() if s not in closed),
        "overdue": sum(row["overdue"] for row in rows),
    }


def _day_label(day: str) -> str:
    return f"{day[8:10]}/{day[5:7]}"  # dd/mm, as both languages write a day


@operation(
    "GET",
    "/api/stats/charts/{chart}",
    roles=COMPLIANCE,
    summary="One of the console's charts as an SVG image (image/svg+xml), drawn on the server "
    "from the `/api/stats` aggregates: consent (outcomes per day), queues (outcomes per queue), "
    "recordings (stored and purged per day), due (due to be purged ahead), requests (by status, "
    "overdue). Every bar segment has a <title>; the legend gives each series' total "
    "(data-total)",
    query=[DAYS, LANG],
    responses={200: {MEDIA_TYPE: "image/svg+xml", "type": "string"}, 404: schemas.ERROR_SCHEMA},
    tag="compliance",
    path_schemas={"chart": {"enum": [c.value for c in charts.Chart]}},
)
async def chart_svg(request: web.Request) -> web.Response:
    try:
        chart = charts.Chart(request.match_info["chart"])
    except ValueError:
        raise NotFound("no such chart", code="not_found") from None
    days, lang = request[QUERY]["days"], charts.Lang(request[QUERY]["lang"])
    series: tuple[str, ...] = charts.OUTCOMES
    extra: list[tuple[str, int]] = []
    if chart is charts.Chart.CONSENT:
        data = await _consent(request, days)
        rows = [(_day_label(d["day"]), d) for d in data["days"]]
    elif chart is charts.Chart.QUEUES:
        data = await _consent(request, days)
        none = charts.word(lang, "queue.none")
        rows = [(q["queue"] if q["queue"] is not None else none, q) for q in data["queues"]]
    elif chart is charts.Chart.RECORDINGS:
        data = await _recordings(request, days)
        series, rows = ("stored", "purged"), [(_day_label(d["day"]), d) for d in data["days"]]
    elif chart is charts.Chart.DUE:
        data = await _recordings(request, days)
        series, rows = ("due", "kept"), [(_day_label(d["day"]), d) for d in data["due"]]
    else:
        data = await _requests(request)
        series = ("count",)
        rows = [
            (charts.word(lang, f"status.{s}"), {"count": n}) for s, n in data["by_status"].items()
        ]
        extra = [("overdue", data["overdue"])]
    svg = charts.render(charts.Bars(chart, lang, series, rows, extra))
    return web.Response(text=svg, content_type="image/svg+xml", headers=SECURITY)


@operation(
    "GET",
    "/api/ledger/seals/latest",
    roles=COMPLIANCE,
    summary="The tenant's latest ledger seal; 404 no_seal before the first",
    responses={200: SEAL, 404: schemas.ERROR_SCHEMA},
    tag="compliance",
)
async def latest_seal(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(Q["latest_seal"])
    if row is None:
        raise NotFound("the ledger has not been sealed yet", code="no_seal")
    return web.json_response({**dict(row), "at": row["at"].isoformat()})
