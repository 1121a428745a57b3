"""The console's charts as SVG drawn here, on the server, from the same aggregates
``/api/stats/*`` serve: stacked bars, a <title> on every bar segment (what a pointer or a
screen reader is told), a legend with each series' total, the chart's title and totals as its
accessible name. No chart library and nothing fetched: the page inserts the SVG as it is and
builds its data table from the bars' ``data-*`` attributes.

Colours are presentation attributes, not a <style> element: the page's Content-Security-Policy
allows no inline styles, and the SVG must look the same saved on its own.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from service.vocabulary import Outcome

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH, PLOT_H = 760, 200
LEFT, TOP, BOTTOM = 34, 8, 22
LEGEND_ROW = 20
FONT = "system-ui, sans-serif"


class Chart(enum.StrEnum):
    CONSENT = "consent"
    QUEUES = "queues"
    RECORDINGS = "recordings"
    DUE = "due"
    REQUESTS = "requests"


class Lang(enum.StrEnum):
    VI = "vi"
    EN = "en"


# The consent outcomes a chart shows (a call still in progress has none yet).
OUTCOMES = tuple(outcome.value for outcome in Outcome if outcome is not Outcome.IN_PROGRESS)
COLOURS = {
    "consented": "#0b6e4f",
    "refused": "#b44d12",
    "hung_up_during_notice": "#e3a008",
    "no_input": "#7b61a8",
    "not_asked": "#9aa5b1",
    "stored": "#0b6e4f",
    "purged": "#a61b1b",
    "due": "#b44d12",
    "kept": "#3e6fb0",
    "count": "#3e6fb0",
    "overdue": "#a61b1b",
}
WORDS: dict[Lang, dict[str, str]] = {
    Lang.VI: {
        "chart.consent": "Kết quả đồng ý mỗi ngày (30 ngày)",
        "chart.queues": "Kết quả đồng ý theo hàng chờ (30 ngày)",
        "chart.recordings": "Bản ghi được lưu và bị xoá mỗi ngày (30 ngày)",
        "chart.due": "Bản ghi đến hạn xoá trong 30 ngày tới",
        "chart.requests": "Yêu cầu theo trạng thái",
        "consented": "Đồng ý ghi âm",
        "refused": "Từ chối",
        "hung_up_during_notice": "Gác máy khi nghe thông báo",
        "no_input": "Không bấm phím",
        "not_asked": "Không hỏi",
        "stored": "Đã lưu",
        "purged": "Đã xoá",
        "due": "Đến hạn xoá",
        "kept": "Đến hạn nhưng được giữ (phong toả hoặc yêu cầu)",
        "count": "Yêu cầu",
        "overdue": "Quá hạn",
        "queue.none": "(không có hàng chờ)",
        "status.received": "đã nhận",
        "status.acknowledged": "đã xác nhận",
        "status.in_progress": "đang xử lý",
        "status.waiting_for_hold": "chờ gỡ phong toả",
        "status.in_force": "đang có hiệu lực",
        "status.completed": "đã hoàn thành",
        "status.rejected": "đã từ chối",
    },
    Lang.EN: {
        "chart.consent": "Consent outcomes per day (30 days)",
        "chart.queues": "Consent outcomes per queue (30 days)",
        "chart.recordings": "Recordings stored and purged per day (30 days)",
        "chart.due": "Recordings due to be purged in the next 30 days",
        "chart.requests": "Requests by status",
        "consented": "Consented",
        "refused": "Refused",
        "hung_up_during_notice": "Hung up during notice",
        "no_input": "No key pressed",
        "not_asked": "Not asked",
        "stored": "Stored",
        "purged": "Purged",
        "due": "Due to be purged",
        "kept": "Due but kept (hold or request)",
        "count": "Requests",
        "overdue": "Overdue",
        "queue.none": "(no queue)",
        "status.received": "received",
        "status.acknowledged": "acknowledged",
        "status.in_progress": "in progress",
        "status.waiting_for_hold": "waiting for a hold",
        "status.in_force": "in force",
        "status.completed": "completed",
        "status.rejected": "rejected",
    },
}


def word(lang: Lang, key: str) -> str:
    """The word in that language; a code with none (a new status) is shown as it is."""
    return WORDS[lang].get(key, key.split(".", 1)[-1])


@dataclass
class Bars:
    """One chart: bars (a label, a count per series) stacked in the series' order, and
    legend-only totals (``extra``: series, count) such as the overdue requests."""

    chart: Chart
    lang: Lang
    series: Sequence[str]
    rows: list[tuple[str, Mapping[str, int]]]
    extra: list[tuple[str, int]] = field(default_factory=list)

    def totals(self) -> list[tuple[str, int]]:
        sums = [(s, sum(counts.get(s, 0) for _, counts in self.rows)) for s in self.series]
        return sums + self.extra


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.replace("_", "-"): str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _legend_width(text: str) -> int:
    # an estimate (no font metrics on the server): 12 px type averages under 7 px a character
    return 20 + 7 * len(text) + 18


def render(bars: Bars) -> str:
    """The chart as a standalone SVG document (text)."""
    lang, title_id = bars.lang, f"chart-{bars.chart}-title"
    totals = bars.totals()
    label_of = {series: word(lang, series) for series, _ in totals}
    # the legend's rows first, so the height is known
    legend: list[list[tuple[str, int, str]]] = [[]]
    x = LEFT
    for series, n in totals:
        text = f"{label_of[series]}: {n}"
        w = _legend_width(text)
        if x + w > WIDTH and legend[-1]:
            legend.append([])
            x = LEFT
        legend[-1].append((series, n, text))
        x += w
    height = PLOT_H + 8 + LEGEND_ROW * len(legend)
    svg = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "viewBox": f"0 0 {WIDTH} {height}",
            "role": "img",
            "aria-labelledby": f"{title_id} {title_id}-desc",
            "lang": lang.value,
            "font-family": FONT,
            "data-chart": bars.chart.value,
            "data-lang": lang.value,
        },
    )
    _el(svg, "title", word(lang, f"chart.{bars.chart}"), id=title_id)
    _el(svg, "desc", "; ".join(text for row in legend for _, _, text in row), id=f"{title_id}-desc")
    base = PLOT_H - BOTTOM
    _el(svg, "line", x1=LEFT, y1=base, x2=WIDTH, y2=base, stroke="#d9dee4")
    top = max([1, *(sum(c.get(s, 0) for s in bars.series) for _, c in bars.rows)])
    # whole numbers only: 0, the top, and the middle when it is one
    for value in sorted({0, top, *([top // 2] if top % 2 == 0 and top > 2 else [])}):
        y = base - value / top * (base - TOP)
        _el(svg, "text", str(value), x=LEFT - 4, y=f"{y + 3:.1f}", text_anchor="end",
            font_size=10, fill="#52606d")  # fmt: skip
    slot = (WIDTH - LEFT) / max(len(bars.rows), 1)
    bar_w = max(2.0, min(slot * 0.7, 60.0))
    every = -(-len(bars.rows) // 12)  # at most a dozen labels under the axis
    for i, (label, counts) in enumerate(bars.rows):
        x0 = LEFT + i * slot + (slot - bar_w) / 2
        group = _el(svg, "g", data_label=label)
        y = float(base)
        for series in bars.series:
            n = counts.get(series, 0)
            if not n:
                continue
            h = n / top * (base - TOP)
            y -= h
            rect = _el(group, "rect", x=f"{x0:.1f}", y=f"{y:.1f}", width=f"{bar_w:.1f}",
                       height=f"{h:.1f}", fill=COLOURS.get(series, "#3e6fb0"),
                       data_series=series, data_value=n)  # fmt: skip
            _el(rect, "title", f"{label}: {label_of[series]} {n}")
        if i % every == 0:
            _el(svg, "text", label, x=f"{x0 + bar_w / 2:.1f}", y=PLOT_H - 6,
                text_anchor="middle", font_size=10, fill="#52606d")  # fmt: skip
    for r, row in enumerate(legend):
        x, y = LEFT, PLOT_H + 8 + r * LEGEND_ROW
        for series, n, text in row:
            item = _el(svg, "g", data_testid=f"total-{series}", data_series=series,
                       data_name=label_of[series], data_total=n)  # fmt: skip
            if series not in bars.series:
                item.set("data-extra", "true")  # a total only, no bars
            _el(item, "rect", x=x, y=y + 2, width=11, height=11, rx=2,
                fill=COLOURS.get(series, "#3e6fb0"), aria_hidden="true")  # fmt: skip
            _el(item, "text", text, x=x + 16, y=y + 12, font_size=12, fill="#1f2933")
            x += _legend_width(text)
    return ET.tostring(svg, encoding="unicode")
