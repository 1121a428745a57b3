"""The consent gate end to end: a fake Twilio places calls against the real service and real
PostgreSQL, follows the TwiML it gets back, and we check outcomes, ledger and TwiML."""

from __future__ import annotations

import asyncio
import hashlib
import io
import xml.etree.ElementTree as ET
from typing import Any

import asyncpg
import pytest

from service import ledger
from service.config import Policy
from service.consent.gate import add_to_do_not_record
from service.personal.numbers import PhoneVault
from service.platforms.twilio.simulate import Caller, FakeTwilio
from tests.conftest import CONTINUE_URL, PUBLIC_URL, SECRET_KEY, Service, new_sid

CALLER = "+84901234678"
HOTLINE = "+842873001234"

Conn = asyncpg.Connection


async def call_of(db: Conn, sid: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM calls WHERE external_id = $1", sid)
    assert row is not None, f"no call row for {sid}"
    return row


async def events_of(db: Conn, sid: str) -> list[ledger.Event]:
    call = await call_of(db, sid)
    return await ledger.events_of(db, call["id"])


async def types_of(db: Conn, sid: str) -> list[str]:
    return [e.type for e in await events_of(db, sid)]


async def test_implied_caller_who_stays_consents_and_is_recorded(
    twilio: FakeTwilio, db: Conn, built_prompts: Any
) -> None:
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert trace.errors == []
    # The notice was played from our rendered audio, which decodes as 8 kHz mono telephony audio.
    assert len(trace.played) == 1
    played = trace.played[0]
    assert played.url == f"{PUBLIC_URL}/prompts/notice-implied-vi/1.wav"
    assert (played.frame_rate, played.channels) == (8000, 1)
    assert played.duration_ms > 5000
    # Recording starts with its callback on our public URL, then the call goes on.
    assert trace.recording_callback == f"{PUBLIC_URL}/telephony/twilio/recording"
    assert trace.continued_to == CONTINUE_URL
    call = await call_of(db, trace.call_sid)
    assert call["outcome"] == "consented"
    events = await events_of(db, trace.call_sid)
    assert [e.type for e in events] == [
        "call_started",
        "notice_played",
        "consent_given",
        "call_ended",
    ]
    notice = events[1].details
    assert notice["prompt_id"] == "notice-implied-vi"
    assert notice["version"] == 1
    assert notice["language"] == "vi-VN"
    # The ledger names the exact bytes the platform fetched and played.
    assert notice["sha256"] == played.sha256
    assert (await ledger.verify(db)).ok


async def test_implied_caller_who_hangs_up_during_notice_is_not_recorded(
    twilio: FakeTwilio, db: Conn
) -> None:
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("hang-up"))
    assert trace.errors == []
    assert not trace.recording_started
    assert (await call_of(db, trace.call_sid))["outcome"] == "hung_up_during_notice"
    assert await types_of(db, trace.call_sid) == [
        "call_started",
        "notice_played",
        "call_ended",
        "hung_up_during_notice",
    ]


@pytest.fixture
async def explicit(service: Service) -> Service:
    await service.reconfigure(
        defaults=Policy(consent_mode="explicit", continue_url=CONTINUE_URL, gather_retries=1)
    )
    return service


@pytest.mark.parametrize(
    ("behaviour", "outcome", "recorded", "gathers", "last_event"),
    [
        ("press-1", "consented", True, 1, "consent_given"),
        ("press-2", "refused", False, 1, "consent_refused"),
        ("silent", "no_input", False, 2, "no_input"),
        ("press-none,1", "consented", True, 2, "consent_given"),
        ("press-9,2", "refused", False, 2, "consent_refused"),
        ("press-9,9", "no_input", False, 2, "no_input"),
        ("hang-up", "hung_up_during_notice", False, 1, "hung_up_during_notice"),
    ],
)
async def test_explicit_mode_outcomes(
    explicit: Service,
    twilio: FakeTwilio,
    db: Conn,
    behaviour: str,
    outcome: str,
    recorded: bool,
    gathers: int,
    last_event: str,
) -> None:
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse(behaviour))
    assert trace.errors == []
    assert trace.gathers == gathers
    assert trace.recording_started is recorded
    assert (await call_of(db, trace.call_sid))["outcome"] == outcome
    types = await types_of(db, trace.call_sid)
    assert last_event in types
    assert types.count("notice_played") == gathers
    # exactly one outcome event, whatever the path
    outcome_events = {"consent_given", "consent_refused", "no_input", "hung_up_during_notice"}
    assert sum(t in outcome_events for t in types) == 1
    if not recorded and outcome != "hung_up_during_notice":
        assert trace.continued_to == CONTINUE_URL


async def test_explicit_silence_is_never_consent_even_without_retries(
    service: Service, twilio: FakeTwilio, db: Conn
) -> None:
    await service.reconfigure(defaults=Policy(consent_mode="explicit", gather_retries=0))
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("silent"))
    assert trace.gathers == 1
    assert not trace.recording_started
    assert (await call_of(db, trace.call_sid))["outcome"] == "no_input"


async def test_explicit_gather_asks_for_one_digit_with_the_explicit_notice(
    explicit: Service, twilio: FakeTwilio
) -> None:
    sid = new_sid()
    status, body = await twilio.post(
        twilio.url("/telephony/twilio/voice"), twilio.call_params(sid, CALLER, HOTLINE, "ringing")
    )
    assert status == 200
    root = ET.fromstring(body)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == f"{PUBLIC_URL}/telephony/twilio/consent?attempt=1"
    play = gather.find("Play")
    assert play is not None and play.text == f"{PUBLIC_URL}/prompts/notice-explicit-vi/1.wav"
    # after the Gather, silence falls through to a Redirect that reports no input
    assert root[-1].tag == "Redirect"


async def test_do_not_record_number_is_not_asked_and_not_recorded(
    twilio: FakeTwilio, db: Conn
) -> None:
    await add_to_do_not_record(db, PhoneVault(SECRET_KEY), "+84 90 123 4678", "withdrawn")
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert trace.played == [] and trace.said == []
    assert not trace.recording_started
    assert trace.continued_to == CONTINUE_URL
    assert (await call_of(db, trace.call_sid))["outcome"] == "not_asked"
    events = await events_of(db, trace.call_sid)
    assert [e.type for e in events] == ["call_started", "not_asked", "call_ended"]
    assert events[1].details == {"reason": "do_not_record_list"}


async def test_never_record_policy_for_a_number_skips_the_notice(
    service: Service, twilio: FakeTwilio, db: Conn
) -> None:
    await service.reconfigure(numbers={HOTLINE: {"never_record": True}})
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert not trace.recording_started and trace.played == []
    assert (await call_of(db, trace.call_sid))["outcome"] == "not_asked"
    assert (await events_of(db, trace.call_sid))[1].details == {"reason": "policy_never_record"}


async def test_queue_policy_picks_language_and_mode(
    service: Service, twilio: FakeTwilio, db: Conn
) -> None:
    await service.reconfigure(
        queues={"english": {"language": "en-US", "consent_mode": "explicit"}},
        numbers={"+842873009999": {"queue": "english"}},
    )
    trace = await twilio.place_call(CALLER, "+842873009999", Caller.parse("press-1"))
    assert trace.played[0].url.endswith("/prompts/notice-explicit-en/1.wav")
    assert trace.recording_started
    # the queue can also be named on the webhook URL (one URL per Twilio number)
    trace = await twilio.place_call(
        CALLER, HOTLINE, Caller.parse("press-2"), voice_path="/telephony/twilio/voice?queue=english"
    )
    assert trace.played[0].url.endswith("/prompts/notice-explicit-en/1.wav")
    assert (await call_of(db, trace.call_sid))["outcome"] == "refused"


async def test_say_fallback_when_rendered_audio_is_missing(
    service: Service, twilio: FakeTwilio, db: Conn, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broken_home = tmp_path / "broken"
    broken_home.mkdir()
    (broken_home / "prompts").write_text("not a folder")  # rendering cannot write here
    await service.reconfigure(home=broken_home)
    assert "fall back to <Say>" in caplog.text
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    assert trace.played == []
    assert len(trace.said) == 1 and "ghi âm" in trace.said[0]
    assert any("<- Say (vi-VN, Google.vi-VN-Standard-A)" in step for step in trace.steps)
    assert trace.errors == []
    assert trace.recording_started
    notice = (await events_of(db, trace.call_sid))[1].details
    assert notice["rendering"] == "say"
    assert notice["sha256"] == hashlib.sha256(trace.said[0].encode()).hexdigest()


# --- signatures -------------------------------------------------------------------------------


async def _count(db: Conn) -> tuple[int, int]:
    calls = await db.fetchval("SELECT count(*) FROM calls")
    events = await db.fetchval("SELECT count(*) FROM ledger_events")
    return calls, events


@pytest.mark.parametrize("path", ["voice", "consent", "status"])
@pytest.mark.parametrize("forgery", ["missing", "wrong_token", "other_url", "tampered_param"])
async def test_bad_signature_is_403_and_writes_nothing(
    twilio: FakeTwilio, db: Conn, path: str, forgery: str
) -> None:
    url = twilio.url(f"/telephony/twilio/{path}")
    params = twilio.call_params(new_sid(), CALLER, HOTLINE, "completed")
    if forgery == "missing":
        signature = ""
    elif forgery == "wrong_token":
        other = FakeTwilio(
            twilio.session, PUBLIC_URL, account_sid=twilio.account_sid, auth_token="f" * 32
        )
        signature = other.sign(url, params)
    elif forgery == "other_url":
        signature = twilio.sign("https://attacker.example/telephony/twilio/" + path, params)
    else:
        signature = twilio.sign(url, params)
        params = {**params, "From": "+84999999999"}
    status, body = await twilio.post(url, params, signature=signature)
    assert status == 403
    assert '"bad_signature"' in body
    assert await _count(db) == (0, 0)


async def test_signature_with_explicit_port_is_accepted(twilio: FakeTwilio, db: Conn) -> None:
    # Twilio sometimes signs https://host:443/...; the validator accepts both forms.
    url = twilio.url("/telephony/twilio/voice")
    params = twilio.call_params(new_sid(), CALLER, HOTLINE, "ringing")
    signature = twilio.sign(url.replace(".vn/", ".vn:443/"), params)
    status, _ = await twilio.post(url, params, signature=signature)
    assert status == 200
    assert (await _count(db))[0] == 1


async def test_webhook_for_another_account_is_refused(twilio: FakeTwilio, db: Conn) -> None:
    params = {**twilio.call_params(new_sid(), CALLER, HOTLINE), "AccountSid": "AC" + "9" * 32}
    status, body = await twilio.post(twilio.url("/telephony/twilio/voice"), params)
    assert status == 403 and '"unknown_account"' in body
    assert await _count(db) == (0, 0)


# --- retries, duplicates and reordering ---------------------------------------------------------


async def test_duplicated_voice_webhooks_create_one_call(twilio: FakeTwilio, db: Conn) -> None:
    sid = new_sid()
    params = twilio.call_params(sid, CALLER, HOTLINE, "ringing")
    url = twilio.url("/telephony/twilio/voice")
    results = await asyncio.gather(*(twilio.post(url, params) for _ in range(6)))
    assert {status for status, _ in results} == {200}
    assert len({body for _, body in results}) == 1  # every retry gets the same TwiML
    assert await types_of(db, sid) == ["call_started", "notice_played"]


async def test_duplicated_consent_and_status_callbacks_give_one_outcome(
    twilio: FakeTwilio, db: Conn
) -> None:
    sid = new_sid()
    await twilio.post(
        twilio.url("/telephony/twilio/voice"), twilio.call_params(sid, CALLER, HOTLINE, "ringing")
    )
    consent = twilio.call_params(sid, CALLER, HOTLINE)
    results = await asyncio.gather(
        *(twilio.post(twilio.url("/telephony/twilio/consent"), consent) for _ in range(5))
    )
    assert all("<Recording" in body for _, body in results)
    end = {**twilio.call_params(sid, CALLER, HOTLINE, "completed"), "CallDuration": "40"}
    results = await asyncio.gather(
        *(twilio.post(twilio.url("/telephony/twilio/status"), end) for _ in range(5))
    )
    assert {status for status, _ in results} == {204}
    assert await types_of(db, sid) == [
        "call_started",
        "notice_played",
        "consent_given",
        "call_ended",
    ]
    assert (await call_of(db, sid))["outcome"] == "consented"


async def test_status_before_voice_webhook_ends_the_call_unrecorded(
    twilio: FakeTwilio, db: Conn
) -> None:
    sid = new_sid()
    end = twilio.call_params(sid, CALLER, HOTLINE, "completed")
    status, _ = await twilio.post(twilio.url("/telephony/twilio/status"), end)
    assert status == 204
    # the late (reordered) start and consent callbacks must not start a recording
    _, voice_body = await twilio.post(
        twilio.url("/telephony/twilio/voice"), twilio.call_params(sid, CALLER, HOTLINE, "ringing")
    )
    _, consent_body = await twilio.post(
        twilio.url("/telephony/twilio/consent"), twilio.call_params(sid, CALLER, HOTLINE)
    )
    for body in (voice_body, consent_body):
        assert ET.fromstring(body)[0].tag == "Hangup"
    assert (await call_of(db, sid))["outcome"] == "hung_up_during_notice"
    assert await types_of(db, sid) == ["call_started", "call_ended", "hung_up_during_notice"]


async def test_consent_arriving_after_the_call_ended_does_not_change_the_outcome(
    twilio: FakeTwilio, db: Conn
) -> None:
    sid = new_sid()
    await twilio.post(
        twilio.url("/telephony/twilio/voice"), twilio.call_params(sid, CALLER, HOTLINE, "ringing")
    )
    await twilio.post(
        twilio.url("/telephony/twilio/status"),
        twilio.call_params(sid, CALLER, HOTLINE, "completed"),
    )
    _, body = await twilio.post(
        twilio.url("/telephony/twilio/consent"), twilio.call_params(sid, CALLER, HOTLINE)
    )
    assert "<Recording" not in body
    assert (await call_of(db, sid))["outcome"] == "hung_up_during_notice"


async def test_first_answer_wins_in_explicit_mode(
    explicit: Service, twilio: FakeTwilio, db: Conn
) -> None:
    sid = new_sid()
    await twilio.post(
        twilio.url("/telephony/twilio/voice"), twilio.call_params(sid, CALLER, HOTLINE, "ringing")
    )
    consent_url = twilio.url("/telephony/twilio/consent?attempt=1")
    _, refused = await twilio.post(
        consent_url, {**twilio.call_params(sid, CALLER, HOTLINE), "Digits": "2"}
    )
    _, later = await twilio.post(
        consent_url, {**twilio.call_params(sid, CALLER, HOTLINE), "Digits": "1"}
    )
    assert "<Recording" not in refused and "<Recording" not in later
    assert (await call_of(db, sid))["outcome"] == "refused"


async def test_concurrent_calls_each_get_their_own_chain(twilio: FakeTwilio, db: Conn) -> None:
    behaviours = ["stay", "hang-up"] * 10
    traces = await asyncio.gather(
        *(
            twilio.place_call(f"+8490{i:07d}", HOTLINE, Caller.parse(b))
            for i, b in enumerate(behaviours)
        )
    )
    assert all(t.errors == [] for t in traces)
    rows = await db.fetch("SELECT outcome, count(*) AS n FROM calls GROUP BY outcome")
    assert {r["outcome"]: r["n"] for r in rows} == {"consented": 10, "hung_up_during_notice": 10}
    report = await ledger.verify(db)
    assert report.ok and report.calls == 20


# --- personal data -----------------------------------------------------------------------------


async def test_caller_number_is_stored_encrypted_and_never_logged(
    twilio: FakeTwilio, db: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    trace = await twilio.place_call(CALLER, HOTLINE, Caller.parse("stay"))
    call = await call_of(db, trace.call_sid)
    vault = PhoneVault(SECRET_KEY)
    assert vault.decrypt(call["caller_enc"]) == CALLER
    assert call["caller_hash"] == vault.lookup_hash(CALLER)
    # No column of any table holds the number in clear, in any common spelling.
    dump = await db.fetchval(
        "SELECT string_agg(t::text, ' ') FROM (SELECT c::text AS t FROM calls c "
        "UNION ALL SELECT e::text FROM ledger_events e) x"
    )
    for spelling in (CALLER, CALLER[1:], "0" + CALLER[3:], "901234678"):
        assert spelling not in dump
        assert spelling not in caplog.text


# --- malformed input ---------------------------------------------------------------------------


async def test_signed_webhook_without_call_sid_is_400(twilio: FakeTwilio, db: Conn) -> None:
    params = twilio.call_params("", CALLER, HOTLINE)
    status, body = await twilio.post(twilio.url("/telephony/twilio/voice"), params)
    assert status == 400 and '"missing_call_sid"' in body
    assert await _count(db) == (0, 0)


async def test_bad_attempt_parameter_is_400(twilio: FakeTwilio) -> None:
    url = twilio.url("/telephony/twilio/consent?attempt=zero")
    status, body = await twilio.post(url, twilio.call_params(new_sid(), CALLER, HOTLINE))
    assert status == 400 and '"bad_attempt"' in body


async def test_unknown_route_and_oversized_body_are_json_errors(
    service: Service, twilio: FakeTwilio
) -> None:
    async with twilio.session.get(service.base_url + "/nope") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    big = io.BytesIO(b"CallSid=CA1&Junk=" + b"x" * (2 * 1024 * 1024))
    headers = {"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"}
    async with twilio.session.post(
        service.base_url + "/telephony/twilio/voice", data=big, headers=headers
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"
    async with twilio.session.get(service.base_url + "/telephony/twilio/voice") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"]["code"] == "method_not_allowed"


# --- the call's start in one statement --------------------------------------------------------


def _heard(_: Any) -> dict[str, Any]:
    return {"say": 'ü "x"', "ratio": 0.5}


async def test_the_database_hashes_a_started_call_as_the_verifier_does(
    db: Conn, built_prompts: Any
) -> None:
    """The call start's first two events are written and hashed by one SQL function (migration
    0021); each branch (notice played, do-not-record list, never record) with awkward text in
    the details must hash exactly as event_hash defines, and a retried start adds nothing."""
    from service.consent import gate
    from service.notices.library import PromptLibrary

    vault, prompts = PhoneVault(SECRET_KEY), PromptLibrary.load(built_prompts)
    await add_to_do_not_record(db, vault, "+84901111111", "withdrawn")
    queue = 'Hàng "chờ" \\ 😀\n\x01'
    cases = [
        ("+84902222222", Policy(queue=queue), "in_progress", "notice_played"),
        ("+84901111111", Policy(queue=queue), "not_asked", "not_asked"),
        ("+84903333333", Policy(queue=queue, never_record=True), "not_asked", "not_asked"),
    ]
    for caller, policy, outcome, second in cases:
        sid = new_sid()
        kwargs: dict[str, Any] = dict(
            platform="twilio", external_id=sid, caller=caller, called=HOTLINE, policy=policy
        )
        first = await gate.start_call(db, vault, prompts, heard=_heard, **kwargs)
        again = await gate.start_call(db, vault, prompts, **kwargs)
        assert first.call.outcome == again.call.outcome == outcome
        assert again.call.id == first.call.id
        events = await events_of(db, sid)
        assert [e.type for e in events] == ["call_started", second]
        assert events[0].details["queue"] == queue
        prev = ledger.GENESIS
        for e in events:
            assert e.prev_hash == prev
            assert e.hash == ledger.event_hash_reference(
                e.call_id, e.seq, e.type, e.at, e.details, e.dedupe_key, e.prev_hash
            )
            prev = e.hash
        if second == "not_asked":
            reason = "do_not_record_list" if caller == "+84901111111" else "policy_never_record"
            assert events[1].details == {"reason": reason}
        else:
            assert events[1].details["say"] == 'ü "x"'
    assert (await ledger.verify(db)).ok


async def test_a_lent_connection_of_another_tenant_starts_the_call_in_the_webhooks_tenant(
    db: Conn, service_url: str, built_prompts: Any
) -> None:
    """The voice webhook's connection is lent without setting the tenant (one round trip): one
    last used by tenant beta still starts acme's call in acme, under row-level security."""
    from service.consent import gate
    from service.db import tenancy
    from service.db.pool import create_pool
    from service.notices.library import PromptLibrary

    await db.execute("INSERT INTO tenants (id, name) VALUES ('acme', 'ACME'), ('beta', 'Beta')")
    pool = await create_pool(service_url, min_size=1, max_size=1)
    sid = new_sid()
    try:
        with tenancy.as_tenant("beta"):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM calls") == 0
        with tenancy.as_tenant("acme"), tenancy.named_in_statement():
            async with pool.acquire() as conn:
                decision = await gate.start_call(
                    conn,
                    PhoneVault(SECRET_KEY),
                    PromptLibrary.load(built_prompts),
                    platform="twilio",
                    external_id=sid,
                    caller=CALLER,
                    called=HOTLINE,
                    policy=Policy(),
                )
                # no round trip gave the session acme: it is still the last borrower's
                setting = "SELECT current_setting('callvault.tenant', true)"
                assert await conn.fetchval(setting) == "beta"
                await tenancy.ensure(conn)
                assert await conn.fetchval(setting) == "acme"
    finally:
        await pool.close()
    assert decision.step.value == "play_notice"
    row = await call_of(db, sid)
    assert row["tenant_id"] == "acme"
    tenants = await db.fetch(
        "SELECT DISTINCT tenant_id FROM ledger_events WHERE call_id = $1", row["id"]
    )
    assert [r["tenant_id"] for r in tenants] == ["acme"]
