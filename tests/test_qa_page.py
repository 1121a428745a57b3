"""The /qa page in real headless Chromium (Debian's, driven by Playwright): sign in, search,
open a call, give a reason, and the audio element plays and seeks; a screenshot is kept in
``test-artifacts/``."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, async_playwright

from service.config import Settings
from tests.conftest import Service

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
async def service(intake_settings: Settings) -> AsyncIterator[Service]:
    svc = Service(intake_settings)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield b
        await b.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    # bypass_csp lets the test's own predicates run; the page still sends its strict CSP
    context = await browser.new_context(
        viewport={"width": 1366, "height": 900}, locale="vi-VN", bypass_csp=True
    )
    p = await context.new_page()
    yield p
    await context.close()


async def test_a_qa_trainer_finds_a_call_and_plays_it(
    service: Service,
    page: Page,
    tokens: dict[str, str],
    recorded: dict[str, Any],
    db: asyncpg.Connection,
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(service.base_url + "/qa")
    assert await page.get_by_test_id("signin").is_visible()
    assert "Đăng nhập" in await page.locator("h2").first.inner_text()  # Vietnamese first

    await page.get_by_test_id("token").fill(tokens["qa_trainer"])
    await page.get_by_test_id("signin-submit").click()
    await page.get_by_test_id("call-row").first.wait_for()
    assert await page.get_by_test_id("call-row").count() == 7
    stored = await page.evaluate("sessionStorage.getItem('callvault.token')")
    assert stored == tokens["qa_trainer"]
    assert await page.evaluate("localStorage.length") == 0  # the token stays in this tab

    await page.get_by_test_id("outcome").select_option("consented")
    await page.get_by_test_id("search").click()
    await page.wait_for_function("document.querySelectorAll('[data-testid=call-row]').length === 2")
    text = await page.get_by_test_id("calls").inner_text()
    assert "+84 9** *** " in text and "+849012300" not in text  # masked numbers only

    await page.get_by_test_id("call-row").first.click()
    await page.get_by_test_id("detail").wait_for()
    events = await page.get_by_test_id("events").inner_text()
    assert "Đồng ý ghi âm" in events and "Đã lưu bản ghi" in events  # consent_given, stored

    # no reason, no playback
    await page.get_by_test_id("play").first.click()
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'playback'") == 0
    await page.get_by_test_id("reason").first.fill("Huấn luyện: chào hỏi khách hàng")
    await page.get_by_test_id("play").first.click()
    await page.wait_for_function(
        "(() => { const a = document.querySelector('[data-testid=audio]');"
        " return a && !a.paused && a.currentTime > 0; })()",
        timeout=20000,
    )
    # seeking works: the browser fetches with Range and the element moves there
    await page.evaluate("document.querySelector('[data-testid=audio]').currentTime = 1.5")
    await page.wait_for_function(
        "document.querySelector('[data-testid=audio]').currentTime >= 1.5", timeout=10000
    )
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "qa-playing.png"), full_page=True)
    reason = await db.fetchval("SELECT details->>'reason' FROM audit_log WHERE action = 'playback'")
    assert reason == "Huấn luyện: chào hỏi khách hàng"
    # the playback is in the call's ledger at once, shown without reopening the call, and the
    # recording is still playing
    await page.wait_for_function(
        "document.querySelector('[data-testid=events]').innerText.includes('Đã nghe lại bản ghi')",
        timeout=10000,
    )
    assert not await page.evaluate("document.querySelector('[data-testid=audio]').paused")

    assert errors == []


# Letters only Vietnamese uses among the page's languages: ă â đ ê ô ơ ư and every vowel with a
# tone mark. English text has none of them.
VIETNAMESE = "[ăâđêôơưàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ]"
# Every English label and sentence the page can show (not derived from app.js on purpose: a
# label hard-coded outside its table must be caught too). Matched as whole words, any case
# (table headers are upper-cased by CSS).
ENGLISH = [
    "Call review", "Sign in", "Sign out", "Access token", "Find calls", "From", "Search",
    "Load more", "Consent outcome", "Any", "Consented", "Refused", "Hung up", "No key pressed",
    "Not asked", "In progress", "Started", "Caller", "Queue", "Outcome", "Recording",
    "Recordings", "Call details", "Close", "Consent ledger", "tamper-evident",
    "Why are you listening", "Play", "Call id", "Platform call id", "Number called", "Stored",
    "Being stored", "Purged", "Erased", "Failed", "kept until", "legal hold", "Searching",
    "No calls match", "calls shown", "Playing", "playback is logged", "Give a reason",
    "Something went wrong", "Call started", "notice played", "Consent given", "Call ended",
    "copy deleted", "Event", "Language", "Tenant", "Platform token", "choose a tenant",
    "Show this tenant", "No such tenant", "Why it is still here", "retention policy",
    "Will be purged", "if nothing changes", "Legal hold since", "compliance only", "Not purged",
    "data-subject request", "purge run",
]  # fmt: skip
SCREEN_TEXT = """() => {
  // what a person reads: everything but the language switch, which names each language in
  // that language ("Tiếng Việt", "English") on purpose
  const parts = [document.querySelector("header .brand"), document.querySelector("main")];
  return parts.map((el) => el.innerText).join(" | ");
}"""


async def _vietnamese_left(page: Page) -> list[str]:
    text: str = await page.evaluate(SCREEN_TEXT)
    return [line for line in text.splitlines() if re.search(VIETNAMESE, line, re.IGNORECASE)]


async def _english_left(page: Page) -> list[str]:
    text: str = await page.evaluate(SCREEN_TEXT)
    return [
        label for label in ENGLISH if re.search(rf"\b{re.escape(label)}\b", text, re.IGNORECASE)
    ]


async def _open_first(page: Page, outcome: str) -> None:
    await page.get_by_test_id("outcome").select_option(outcome)
    await page.get_by_test_id("search").click()
    await page.wait_for_function(
        "(() => { const rows = document.querySelectorAll('[data-testid=call-row]');"
        f" return rows.length > 0 && [...rows].every((r) => r.querySelector('.badge.{outcome}'));"
        " })()"
    )
    # the detail may still show this call from an earlier opening: mark what is on screen and
    # wait for the events this opening renders (its recording cards are rendered before them),
    # or a reason typed now lands in a card that is about to be replaced
    await page.evaluate(
        "document.querySelectorAll('[data-testid=events] li')"
        ".forEach((li) => { li.dataset.stale = '1'; })"
    )
    await page.get_by_test_id("call-row").first.click()
    await page.get_by_test_id("detail").wait_for()
    await page.wait_for_function(
        "(() => { const li = document.querySelectorAll('[data-testid=events] li');"
        " return li.length > 0 && [...li].every((l) => !l.dataset.stale); })()"
    )


async def _play(page: Page, reason: str) -> None:
    await page.get_by_test_id("reason").first.fill(reason)
    await page.get_by_test_id("play").first.click()
    await page.wait_for_function(
        "(() => { const a = document.querySelector('[data-testid=audio]');"
        " return a && !a.paused && a.currentTime > 0; })()",
        timeout=20000,
    )


async def test_each_language_is_that_language_everywhere(
    service: Service, page: Page, tokens: dict[str, str], recorded: dict[str, Any]
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(service.base_url + "/qa")
    await page.get_by_test_id("token").fill(tokens["qa_trainer"])
    await page.get_by_test_id("signin-submit").click()
    await page.get_by_test_id("call-row").first.wait_for()
    # the tenant's name in both languages (a tenant token: no tenant to pick)
    assert await page.get_by_test_id("who").inner_text() == "Khách hàng: Default"
    assert not await page.get_by_test_id("tenant-form").is_visible()
    # every label exists in both languages (a missing one would fall back to English)
    missing = await page.evaluate(
        "[...Object.keys(TEXT.en).filter((k) => !(k in TEXT.vi)),"
        " ...Object.keys(TEXT.vi).filter((k) => !(k in TEXT.en))]"
    )
    assert missing == []

    # Vietnamese first: details, a playback, then switch to English with all of it on screen
    await _open_first(page, "consented")
    await _play(page, "Huấn luyện: chào hỏi")
    assert "Đang phát" in await page.get_by_test_id("message").inner_text()
    assert await _english_left(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "qa-vietnamese.png"), full_page=True)

    await page.get_by_test_id("lang-en").click()
    assert await page.locator("#search-card h2").inner_text() == "Find calls"
    assert await page.get_by_test_id("who").inner_text() == "Tenant: Default"
    assert await page.get_by_test_id("play").first.inner_text() == "Play"
    assert await page.get_by_test_id("message").inner_text() == "Playing. This playback is logged."
    assert "Consent given" in await page.get_by_test_id("events").inner_text()
    assert await _vietnamese_left(page) == []  # switched in place, playback and all
    await page.screenshot(path=str(ARTIFACTS / "qa-english.png"), full_page=True)

    # opened and played in English: the ledger now shows the playback too
    await _open_first(page, "consented")
    await _play(page, "Training: greeting")
    await _open_first(page, "consented")
    events = await page.get_by_test_id("events").inner_text()
    assert "Recording played" in events and "Recording stored" in events
    assert await _vietnamese_left(page) == []
    await _open_first(page, "hung_up_during_notice")
    await page.get_by_test_id("play").first.wait_for(state="hidden")  # nothing to play
    assert "Hung up during the notice" in await page.get_by_test_id("events").inner_text()
    assert await _vietnamese_left(page) == []

    # and back: nothing English is left on the Vietnamese screen, messages included
    await page.get_by_test_id("lang-vi").click()
    assert "Gác máy khi nghe thông báo" in await page.get_by_test_id("events").inner_text()
    await _open_first(page, "consented")
    assert "Đang hiển thị" in await page.get_by_test_id("message").inner_text()
    assert await _english_left(page) == []
    assert errors == []


async def test_a_platform_token_picks_the_tenant_and_sees_its_calls_only(
    service: Service, page: Page, db: asyncpg.Connection
) -> None:
    """Issue 13 item 9: a BPO's DPO holds one platform token with a tenant role; the page asks
    which tenant, shows its name, and every request then acts for that tenant."""
    from service import auth
    from service.db import tenancy

    await db.execute("INSERT INTO tenants (id, name) VALUES ('beta', 'Beta BPO')")

    async def call(tenant: str, external_id: str) -> str:
        await tenancy.set_tenant(db, tenant)
        return str(
            await db.fetchval(
                "INSERT INTO calls (platform, external_id, policy) "
                "VALUES ('twilio', $1, '{}') RETURNING id",
                external_id,
            )
        )

    await call(tenancy.DEFAULT, "CA-default-1")
    mine = {await call("beta", "CA-beta-1"), await call("beta", "CA-beta-2")}
    await tenancy.set_tenant(db, tenancy.ALL)
    platform, _ = await auth.create_token(db, "bpo-dpo", "qa_trainer", "test")
    await tenancy.set_tenant(db, tenancy.DEFAULT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    opened: list[str] = []
    page.on(
        "request",
        lambda r: (
            opened.append(r.headers.get("callvault-tenant", "-")) if "/api/calls" in r.url else None
        ),
    )

    await page.goto(service.base_url + "/qa")
    await page.get_by_test_id("token").fill(platform)
    await page.get_by_test_id("signin-submit").click()
    await page.get_by_test_id("tenant-form").wait_for()
    who = page.get_by_test_id("who")
    await page.wait_for_function("document.querySelector('[data-testid=who]').innerText !== ''")
    assert await who.inner_text() == "Mã của nền tảng: vui lòng chọn khách hàng."
    assert await page.get_by_test_id("call-row").count() == 0  # nothing until a tenant is chosen

    await page.get_by_test_id("tenant").fill("beta")
    await page.get_by_test_id("tenant-use").click()
    await page.wait_for_function("document.querySelectorAll('[data-testid=call-row]').length > 0")
    assert await who.inner_text() == "Khách hàng: Beta BPO"
    assert await page.get_by_test_id("call-row").count() == len(mine) == 2
    assert opened and set(opened) == {"beta"}  # every call request named the tenant
    await page.get_by_test_id("call-row").first.click()
    await page.get_by_test_id("detail").wait_for()
    shown = await page.locator("#facts").inner_text()
    assert any(str(call) in shown for call in mine)
    await page.get_by_test_id("lang-en").click()
    assert await who.inner_text() == "Tenant: Beta BPO"

    # a tenant that does not exist: said so, and no calls of anyone
    await page.get_by_test_id("tenant").fill("nobody-here")
    await page.get_by_test_id("tenant-use").click()
    await page.wait_for_function(
        "document.querySelector('[data-testid=who]').innerText.startsWith('Platform token')"
    )
    assert await page.get_by_test_id("call-row").count() == 0
    assert errors == []


async def test_a_recording_says_why_it_is_still_here_in_both_languages(
    service: Service,
    page: Page,
    tokens: dict[str, str],
    recorded: dict[str, Any],
    db: asyncpg.Connection,
) -> None:
    """Issue 15 item 5 on /qa: the retention, the hold that keeps one recording (its reason
    withheld from a trainer), and when the other goes."""
    from retention import holds
    from service import ledger
    from service.ledger import NewEvent
    from service.personal.numbers import PhoneVault
    from tests.conftest import SECRET_KEY

    held_call, free_call = await db.fetch(
        "SELECT c.id FROM calls c JOIN recordings r ON r.call_id = c.id ORDER BY c.started_at"
    )
    await holds.place(
        db, PhoneVault(SECRET_KEY), "test", call_id=held_call["id"], reason="lệnh của toà án"
    )
    # issue 17: the other call's recording was paused for a card payment and never resumed
    async with db.transaction():
        await ledger.append(
            db, free_call["id"], [NewEvent("recording_paused", {"reason": "card payment"})]
        )
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(service.base_url + "/qa")
    await page.get_by_test_id("token").fill(tokens["qa_trainer"])
    await page.get_by_test_id("signin-submit").click()
    await page.get_by_test_id("call-row").first.wait_for()

    async def open_call(call_id: Any) -> str:
        await page.evaluate(f"openCall('{call_id}')")
        await page.wait_for_function(
            f"document.querySelector('#facts').innerText.includes('{call_id}')"
            " && document.querySelector('[data-testid=retention-purge]') !== null"
        )
        text: str = await page.get_by_test_id("retention").inner_text()
        return text

    held = await open_call(held_call["id"])
    assert "Lưu đến" in held and "chính sách lưu trữ của khách hàng" in held
    assert "Phong toả pháp lý từ" in held and "chỉ hiển thị với bộ phận tuân thủ" in held
    assert "lệnh của toà án" not in held  # casework stays with compliance
    assert "Không bị xoá khi còn lý do nêu trên" in held
    assert await _english_left(page) == []
    await page.get_by_test_id("lang-en").click()
    held_en = await page.get_by_test_id("retention").inner_text()
    assert "Legal hold since" in held_en and "Not purged while anything above keeps it" in held_en
    assert "the client's retention policy" in held_en
    assert await _vietnamese_left(page) == []

    free = await open_call(free_call["id"])
    assert "Will be purged at" in free and "Legal hold" not in free
    pause = await page.get_by_test_id("pause").inner_text()
    assert "never resumed" in pause and "card payment" in pause
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "qa-retention.png"), full_page=True)

    # compliance, on the same page, reads the hold's reason
    await page.get_by_test_id("lang-vi").click()
    await page.evaluate(f"sessionStorage.setItem('callvault.token', '{tokens['compliance']}')")
    assert "lệnh của toà án" in await open_call(held_call["id"])
    assert errors == []
