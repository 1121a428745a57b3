"""The compliance console in real headless Chromium (Debian's, driven by Playwright, with the
/qa tests' fixtures): sign in, the request queue by deadline with the overdue marked,
acknowledge, extend, log and lift a request, place and release a hold, filter the audit trail
to one playback, verify the ledger, download a receipt, and the charts' totals read from the
page; both languages, each with nothing of the other; roles. Screenshots in test-artifacts/."""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Page

from service.config import Settings
from service.ledger import seals
from service.personal.numbers import mask_phone
from tests import console_seed
from tests import test_qa_page as qa
from tests.conftest import Service
from tests.qa_fixtures import access_bundle, call_api

pytestmark = pytest.mark.slow
ARTIFACTS = qa.ARTIFACTS
# axe-core 4.14.1 (MPL-2.0), vendored from `npm pack axe-core`: nothing fetched when testing
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core-4.14.1.min.js"
Conn = asyncpg.Connection
CALLER, OTHER_CALLER = "+84901230000", "+84901230002"  # two of `recorded`'s consenting callers

# the /qa tests' service, browser and page
service = qa.service
browser = qa.browser
page = qa.page


@pytest.fixture
async def quiet_service(intake_settings: Settings) -> AsyncIterator[Service]:
    """The service without its scheduled passes, for the seeded data: the first purge pass
    would run 5 s after start and purge the seeded recording past its retention, so the
    charts' totals would depend on how fast the page was read (under load: purged 2 and due
    1, not 1 and 2). (Not for erasures waiting on a hold: they retry at the purge interval.)"""
    svc = Service(replace(intake_settings, purge_interval_s=0))
    await svc.start()
    yield svc
    await svc.stop()


# Every English label and sentence the console can show, matched as whole words (not derived
# from app.js on purpose: a label hard-coded outside its table must be caught too).
ENGLISH = [
    "Compliance console", "Sign out", "Data-subject requests", "Legal holds", "Audit trail",
    "Consent ledger", "At a glance", "Show", "Open", "Closed", "Soonest deadline", "Received",
    "Kind", "Status", "Acknowledge by", "Complete by", "OVERDUE", "left", "overdue by",
    "Request details", "History", "Calls", "Acknowledge", "Extend", "Reject", "Lift restriction",
    "Download access bundle", "Log a request", "Kind of request", "phone number", "Received at",
    "access", "erasure", "restriction", "received", "acknowledged", "in force", "Place hold",
    "Reason", "Case reference", "State", "Placed", "Released", "Release", "active", "released",
    "From", "To", "Actor", "Action", "Filter", "entries", "entry", "recording played",
    "Verify the ledger",
    "Intact", "Latest seal", "Seal", "receipt", "Download signed JSON", "Download printable page",
    "Consent outcomes", "per day", "per queue", "Recordings stored", "due to be purged",
    "Requests by status", "Consented", "Refused", "Hung up", "No key pressed", "Not asked",
    "Stored", "Purged", "Overdue", "Tenant", "role", "Acknowledged", "Extended", "Hold placed",
    "Hold released", "Request logged", "Receipt downloaded", "calls", "events", "seals",
    "Load more", "there are more", "numbers as a table", "Received by", "not recorded",
    "letter", "in person", "erased number",
]  # fmt: skip

# the charts are drawn by the server in one language: after a switch, wait for the new drawing
CHARTS_IN = "document.getElementById('glance').dataset.lang === '{lang}'"


async def _vietnamese_left(p: Page) -> list[str]:
    text: str = await p.evaluate(qa.SCREEN_TEXT)
    return [line for line in text.splitlines() if re.search(qa.VIETNAMESE, line, re.IGNORECASE)]


async def _english_left(p: Page) -> list[str]:
    text: str = await p.evaluate(qa.SCREEN_TEXT)
    return [w for w in ENGLISH if re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE)]


async def _serious_violations(p: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is (WCAG 2.1 A and AA)."""
    if not await p.evaluate("typeof axe !== 'undefined'"):
        await p.add_script_tag(path=str(AXE))
    found = await p.evaluate(
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})"
        ".then((r) => r.violations.filter((v) => ['serious', 'critical'].includes(v.impact))"
        ".map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`))"
    )
    return list(found)


async def _sign_in(p: Page, base_url: str, token: str) -> None:
    await p.goto(base_url + "/console")
    await p.get_by_test_id("token").fill(token)
    await p.get_by_test_id("signin-submit").click()


async def _confirm(p: Page, reason: str | None = None) -> None:
    await p.get_by_test_id("confirm").wait_for()
    if reason is not None:
        await p.get_by_test_id("confirm-reason").fill(reason)
    await p.get_by_test_id("confirm-ok").click()
    await p.get_by_test_id("confirm").wait_for(state="hidden")


async def _total(p: Page, chart: str, series: str) -> int:
    value = (
        await p.get_by_test_id(chart).get_by_test_id(f"total-{series}").get_attribute("data-total")
    )
    return int(value or -1)


@pytest.fixture
async def seeded(db: Conn, http: aiohttp.ClientSession, tokens: dict[str, str]) -> Any:
    data = await console_seed.seed(db)
    await seals.seal(db)
    return data


async def test_a_compliance_officer_works_the_console(
    quiet_service: Service,
    page: Page,
    tokens: dict[str, str],
    seeded: Any,
    db: Conn,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    # two playbacks, by two people, with their reasons
    rec = seeded["recordings"]["due"]
    for role, reason in (("qa_trainer", "training greeting"), ("compliance", "complaint 42")):
        status, _ = await call_api(
            http, quiet_service, "POST", f"/api/recordings/{rec}/playback", tokens[role],
            {"reason": reason},
        )  # fmt: skip
        assert status == 200
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(quiet_service.base_url + "/console")
    assert await page.locator("h1").first.inner_text() == "Đăng nhập"  # Vietnamese first
    await page.get_by_test_id("token").fill(tokens["compliance"])
    await page.get_by_test_id("signin-submit").click()
    await page.wait_for_function("document.body.dataset.ready === 'true'")
    assert await page.evaluate("localStorage.length") == 0  # the token stays in this tab

    # the queue: soonest deadline first, the two overdue ones marked
    reqs = seeded["requests"]
    rows = page.get_by_test_id("request-row")
    ids = [await rows.nth(i).get_attribute("data-id") for i in range(await rows.count())]
    order = ["late", "unacknowledged", "fresh", "restricted"]
    assert ids == [str(reqs[k]) for k in order]
    for i, key in enumerate(order):
        overdue = await rows.nth(i).get_by_test_id("overdue").count()
        assert overdue == (1 if key in ("late", "unacknowledged") else 0), key
    assert "QUÁ HẠN" in await rows.nth(0).inner_text()
    assert "quá hạn 5 ngày" in await rows.nth(0).inner_text()
    assert "còn 13 ngày" in await rows.nth(2).inner_text()  # 14 days less a few seconds

    # at a glance: the seeded totals, read from the page
    assert await _total(page, "chart-consent", "consented") == 3
    for outcome in ("refused", "hung_up_during_notice", "no_input", "not_asked"):
        assert await _total(page, "chart-consent", outcome) == 1
    assert await _total(page, "chart-queues", "consented") == 3
    queue_titles = (
        await page.get_by_test_id("chart-queues").locator("rect title").all_text_contents()
    )
    assert "sales: Đồng ý ghi âm 3" in queue_titles
    assert "support: Từ chối 1" in queue_titles
    # the text alternative says the same: sales' row in the queues' table
    table = page.get_by_test_id("chart-queues").locator("details table")
    sales = table.locator("tbody tr").filter(has=page.locator("th", has_text="sales"))
    assert (await sales.locator("td").all_text_contents())[0] == "3"
    expected = console_seed.EXPECTED_RECORDINGS
    assert await _total(page, "chart-recordings", "stored") == expected["stored"]
    assert await _total(page, "chart-recordings", "purged") == expected["purged"]
    assert await _total(page, "chart-due", "due") == expected["due"]
    assert await _total(page, "chart-due", "kept") == expected["kept"]
    assert await _total(page, "chart-requests", "count") == 5
    assert await _total(page, "chart-requests", "overdue") == console_seed.EXPECTED_OVERDUE
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "console-vietnamese.png"), full_page=True)
    assert await _english_left(page) == []
    assert await _serious_violations(page) == []

    # acknowledge the fresh one, then extend it (a reason is required)
    await rows.nth(2).get_by_test_id("request-open").click()
    await page.get_by_test_id("dsar-detail").wait_for()
    await page.get_by_test_id("act-acknowledge").click()
    assert "Xác nhận đã nhận" in await page.get_by_test_id("confirm-title").inner_text()
    await _confirm(page)
    await page.wait_for_function(
        "document.querySelector('[data-testid=dsar-message]').innerText === 'Đã xác nhận.'"
    )
    assert await page.get_by_test_id("dsar-status-value").inner_text() == "đã xác nhận"
    assert await page.get_by_test_id("act-acknowledge").is_disabled()
    fresh = await db.fetchrow("SELECT * FROM dsar_requests WHERE id = $1", reqs["fresh"])
    assert fresh["acknowledged_by"] == "token:compliance-1"

    await page.get_by_test_id("act-extend").click()
    await page.get_by_test_id("confirm-ok").click()  # no reason: not sent
    assert await page.locator("#confirm-error").inner_text() == "Vui lòng nêu lý do."
    await page.get_by_test_id("confirm-days").fill("10")
    await _confirm(page, "ref HS-2026-01")
    await page.wait_for_function(
        "document.querySelector('[data-testid=dsar-message]').innerText.startsWith('Đã gia hạn')"
    )
    fresh = await db.fetchrow("SELECT * FROM dsar_requests WHERE id = $1", reqs["fresh"])
    assert fresh["extension_days"] == 10
    assert fresh["extension_reason"] == "ref HS-2026-01"
    assert "ref HS-2026-01" in await page.get_by_test_id("dsar-history").inner_text()
    assert await page.get_by_test_id("act-extend").is_disabled()  # once
    await page.screenshot(path=str(ARTIFACTS / "console-request-vietnamese.png"), full_page=True)
    assert await _serious_violations(page) == []  # the request open, its actions

    # a hold on a call, then released after a confirmation
    call = seeded["calls"]["consented"][0]
    await page.get_by_test_id("hold-target").fill(str(call))
    await page.get_by_test_id("hold-reason").fill("inspection 2026-12")
    await page.get_by_test_id("hold-case").fill("HS-2026-01")
    await page.get_by_test_id("hold-place").click()
    await page.wait_for_function(
        "document.querySelector('[data-testid=holds-message]').innerText === 'Đã đặt phong toả.'"
    )
    new = page.get_by_test_id("hold-row").filter(has_text="HS-2026-01")
    assert "đang hiệu lực" in await new.inner_text()
    hold_id = await db.fetchval("SELECT id FROM holds WHERE case_ref = 'HS-2026-01'")
    await new.get_by_test_id("hold-release").click()
    assert "Gỡ phong toả" in await page.get_by_test_id("confirm-title").inner_text()
    await _confirm(page)
    await page.wait_for_function(
        "document.querySelector('[data-testid=holds-message]').innerText === 'Đã gỡ phong toả.'"
    )
    assert (
        "đã gỡ" in await page.get_by_test_id("hold-row").filter(has_text="HS-2026-01").inner_text()
    )
    released = await db.fetchrow(
        "SELECT released_at, released_by FROM holds WHERE id = $1", hold_id
    )
    assert released["released_by"] == "token:compliance-1"

    # the audit trail: one person's playbacks, with the reason
    await page.get_by_test_id("audit-action").select_option("playback")
    await page.get_by_test_id("audit-actor").fill("token:qa_trainer-1")
    await page.get_by_test_id("audit-submit").click()
    await page.wait_for_function(
        "document.querySelector('[data-testid=audit-message]').innerText === '1 mục.'"
    )
    row = page.get_by_test_id("audit-row")
    assert await row.count() == 1
    assert await row.get_by_test_id("audit-reason").inner_text() == "training greeting"
    assert "nghe lại bản ghi" in await row.inner_text()

    # the ledger: verified, its last seal, and a call's receipt in both forms
    await page.get_by_test_id("verify").click()
    await page.wait_for_function(
        "(() => { const s = document.querySelector('[data-testid=verify-result]').innerText;"
        " return s !== '' && !s.startsWith('Đang kiểm tra'); })()"
    )
    verified = await page.get_by_test_id("verify-result").inner_text()
    assert verified.startswith("Toàn vẹn"), verified
    assert "Niêm phong số" in await page.get_by_test_id("seal").inner_text()
    await page.get_by_test_id("receipt-call").fill(str(call))
    async with page.expect_download() as info:
        await page.get_by_test_id("receipt-json").click()
    path = tmp_path / "receipt.json"
    await (await info.value).save_as(path)
    receipt = json.loads(path.read_text())
    assert str(call) in json.dumps(receipt)
    async with page.expect_download() as info:
        await page.get_by_test_id("receipt-html").click()
    html = tmp_path / "receipt.html"
    await (await info.value).save_as(html)
    assert str(call) in html.read_text() and "<html" in html.read_text().lower()
    await page.screenshot(path=str(ARTIFACTS / "console-ledger-vietnamese.png"), full_page=True)
    assert await _english_left(page) == []

    # English, in place: nothing Vietnamese left (the charts are drawn again, in English)
    await page.get_by_test_id("lang-en").click()
    await page.wait_for_function(CHARTS_IN.format(lang="en"))
    assert await page.locator("#requests-h").inner_text() == "Data-subject requests"
    assert "OVERDUE" in await rows.nth(0).inner_text()
    assert await page.get_by_test_id("audit-message").inner_text() == "1 entry."
    assert await _vietnamese_left(page) == [], await _vietnamese_left(page)
    await page.screenshot(path=str(ARTIFACTS / "console-english.png"), full_page=True)
    assert await _serious_violations(page) == []

    # a request received by phone, logged with when it came in; a restriction, then lifted
    await page.get_by_test_id("log-open").click()
    await page.get_by_test_id("log-kind").select_option("restrict")
    await page.get_by_test_id("log-channel").select_option("letter")
    await page.get_by_test_id("log-phone").fill(console_seed.SUBJECT)
    await page.get_by_test_id("log-received").fill("2026-11-30T09:15")
    await page.get_by_test_id("log-submit").click()
    await page.wait_for_function(
        "document.querySelector('[data-testid=log-message]').innerText.startsWith('Request logged')"
    )
    logged = await db.fetchrow(
        "SELECT * FROM dsar_requests WHERE kind = 'restrict' "
        "AND requested_by = 'token:compliance-1'"
    )
    local = await page.evaluate("new Date('2026-11-30T09:15').toISOString()")
    assert logged["received_at"].isoformat().replace("+00:00", ".000Z") == local
    # the detail still shows the request opened before until the new one has been fetched
    await page.wait_for_function(
        f"document.querySelector('#dsar-facts').innerText.includes('{logged['id']}')"
    )
    assert await page.get_by_test_id("dsar-status-value").inner_text() == "in force"
    assert await page.get_by_test_id("dsar-channel").inner_text() == "letter"
    assert logged["channel"] == "letter"
    await page.get_by_test_id("act-lift").click()
    await page.get_by_test_id("confirm").wait_for()
    assert await _serious_violations(page) == []  # the confirmation dialog, open
    await _confirm(page)
    await page.wait_for_function(
        "document.querySelector('[data-testid=dsar-message]').innerText === 'Restriction lifted.'"
    )
    assert await db.fetchval("SELECT lifted_at FROM dsar_requests WHERE id = $1", logged["id"])
    assert await _vietnamese_left(page) == []
    await page.screenshot(path=str(ARTIFACTS / "console-request-english.png"), full_page=True)

    # and back: nothing English left on the Vietnamese screen
    await page.get_by_test_id("lang-vi").click()
    await page.wait_for_function(CHARTS_IN.format(lang="vi"))
    assert await _english_left(page) == [], await _english_left(page)
    assert errors == []


async def test_roles_no_access_and_a_platform_token_picks_the_tenant(
    quiet_service: Service, page: Page, tokens: dict[str, str], seeded: Any, db: Conn
) -> None:
    from service import auth
    from service.db import tenancy

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await _sign_in(page, quiet_service.base_url, tokens["qa_trainer"])
    await page.wait_for_function("document.querySelector('[data-testid=message]').innerText !== ''")
    text = await page.get_by_test_id("message").inner_text()
    assert "qa_trainer" in text and "không có quyền" in text
    assert not await page.get_by_test_id("requests").is_visible()
    await page.get_by_test_id("lang-en").click()
    assert "has no access" in await page.get_by_test_id("message").inner_text()
    await page.screenshot(path=str(ARTIFACTS / "console-no-access-english.png"), full_page=True)

    # a platform token with the compliance role: the page asks for the tenant
    await tenancy.set_tenant(db, tenancy.ALL)
    platform, _ = await auth.create_token(db, "bpo-dpo", "compliance", "test")
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    await page.get_by_test_id("signout").click()
    await page.get_by_test_id("token").fill(platform)
    await page.get_by_test_id("signin-submit").click()
    await page.get_by_test_id("tenant-form").wait_for()
    assert not await page.get_by_test_id("requests").is_visible()
    await page.get_by_test_id("tenant").fill("beta")
    await page.get_by_test_id("tenant-use").click()
    await page.wait_for_function("document.body.dataset.ready === 'true'")
    assert await page.get_by_test_id("who").inner_text() == "Tenant: Beta BPO · role: compliance"
    rows = page.get_by_test_id("request-row")
    assert await rows.count() == 1  # beta's one request, not default's
    assert await rows.first.get_by_test_id("overdue").count() == 1
    assert await _total(page, "chart-consent", "consented") == 4
    assert errors == []


async def test_an_access_bundle_is_downloaded_and_a_request_rejected(
    service: Service,
    page: Page,
    tokens: dict[str, str],
    recorded: dict[str, Any],
    db: Conn,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    access, bundle = await access_bundle(http, service, tokens["compliance"], CALLER, db)
    # an erasure waiting for a legal hold stays open to be rejected (a restriction in force is
    # lifted, not rejected: 409 restriction_in_force)
    status, held = await call_api(
        http, service, "POST", "/api/holds", tokens["compliance"],
        {"phone": OTHER_CALLER, "reason": "court order", "case_ref": "C-7"},
    )  # fmt: skip
    assert status == 201, held
    status, waiting = await call_api(
        http, service, "POST", "/api/dsar", tokens["compliance"],
        {"kind": "erase", "phone": OTHER_CALLER},
    )  # fmt: skip
    assert status == 201, waiting
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await _sign_in(page, service.base_url, tokens["compliance"])
    await page.wait_for_function("document.body.dataset.ready === 'true'")
    # the hold on a number shows it masked, never whole
    held_row = page.locator(f"[data-testid=hold-row][data-id='{held['id']}']")
    assert f"số {mask_phone(OTHER_CALLER)}" in await held_row.inner_text()
    assert OTHER_CALLER not in await page.get_by_test_id("holds").inner_text()
    await page.get_by_test_id("dsar-status").select_option("all")
    row = page.locator(f"[data-testid=request-row][data-id='{access['id']}']")
    await row.get_by_test_id("request-open").click()
    await page.get_by_test_id("dsar-detail").wait_for()
    async with page.expect_download() as info:
        await page.get_by_test_id("act-bundle").click()
        await _confirm(page)
    path = tmp_path / "bundle.zip"
    await (await info.value).save_as(path)
    with zipfile.ZipFile(path) as got:
        assert sorted(got.namelist()) == sorted(bundle.namelist())
    assert await page.get_by_test_id("dsar-message").inner_text() == "Đang tải gói dữ liệu."

    row = page.locator(f"[data-testid=request-row][data-id='{waiting['id']}']")
    await row.get_by_test_id("request-open").click()
    await page.wait_for_function(
        f"document.querySelector('#dsar-facts').innerText.includes('{waiting['id']}')"
    )
    await page.get_by_test_id("act-reject").click()
    await _confirm(page, "not the caller's number")
    await page.wait_for_function(
        "document.querySelector('[data-testid=dsar-message]').innerText === 'Đã từ chối.'"
    )
    assert await page.get_by_test_id("dsar-status-value").inner_text() == "đã từ chối"
    assert "not the caller's number" in await page.get_by_test_id("dsar-history").inner_text()
    assert (
        await db.fetchval(
            "SELECT rejected_reason FROM dsar_requests WHERE id = $1", uuid.UUID(waiting["id"])
        )
        == "not the caller's number"
    )
    assert errors == []


async def test_a_tampered_ledger_is_unmistakable(
    quiet_service: Service, page: Page, tokens: dict[str, str], seeded: Any, db: Conn
) -> None:
    from tests.test_ledger import _tamper

    call = seeded["calls"]["refused"][0]
    await _tamper(
        db, "UPDATE ledger_events SET details = '{\"x\": 1}' WHERE call_id = $1 AND seq = 1", call
    )
    await _sign_in(page, quiet_service.base_url, tokens["compliance"])
    await page.wait_for_function("document.body.dataset.ready === 'true'")
    await page.get_by_test_id("verify").click()
    result = page.get_by_test_id("verify-result")
    await page.wait_for_function(
        "document.querySelector('[data-testid=verify-result]').innerText.startsWith('BỊ SỬA ĐỔI')"
    )
    assert str(call) in await result.inner_text()
    assert "error" in (await result.get_attribute("class") or "")  # shown in red
    await page.get_by_test_id("lang-en").click()
    assert (await result.inner_text()).startswith("BROKEN: 1 break(s) found in")
    await page.screenshot(path=str(ARTIFACTS / "console-ledger-broken-english.png"), full_page=True)
