"""The legal clock of a data-subject request, on pinned dates around Tết 2027 and 30 April -
1 May 2027 (Vietnam's public holidays from the pinned `holidays` release, in the tenant's time
zone). Every expected deadline is worked out by hand in the comment beside it."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from retention import clock
from retention.clock import ClockPolicy
from service.config import load_settings

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ROOT = Path(__file__).resolve().parent.parent


def at(text: str) -> dt.datetime:
    """A local time in Ho Chi Minh City."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=HCM)


def end_of(day: str) -> dt.datetime:
    """24:00 of a local day: the first instant of the next one."""
    return at(day) + dt.timedelta(days=1)


def test_tet_2027_pushes_the_acknowledgement_past_the_whole_holiday() -> None:
    # Wed 3 Feb 2027. Tết: Thu 4 (29th) and Fri 5 (eve), Sat 6 - Wed 10 Feb; the 1st working
    # day after the day of receipt is Thu 11, the 2nd Fri 12 Feb.
    got = clock.deadlines(at("2027-02-03T10:00"), "erase", ClockPolicy())
    assert got.acknowledge_by == end_of("2027-02-12")
    # 15 calendar days: Thu 18 Feb, a working day
    assert got.due_at == end_of("2027-02-18")
    assert got.due_at.isoformat() == "2027-02-18T17:00:00+00:00"


def test_a_processor_makes_it_20_days() -> None:
    # 3 Feb + 20 = Tue 23 Feb 2027
    got = clock.due_at(at("2027-02-03T10:00"), "access", ClockPolicy(processor=True))
    assert got == end_of("2027-02-23")


def test_a_deadline_that_falls_in_tet_ends_on_the_next_working_day() -> None:
    # Wed 20 Jan + 15 = Thu 4 Feb 2027 (29 Tết): holidays to Wed 10 (6, 7 a weekend too), so
    # the period ends at the end of Thu 11 Feb (Civil Code Art. 148(5)).
    assert clock.due_at(at("2027-01-20T08:00"), "erase", ClockPolicy()) == end_of("2027-02-11")


def test_30_april_and_1_may_2027() -> None:
    # Wed 28 Apr: Thu 29 is the 1st working day; Fri 30 (Reunification Day), Sat 1 May
    # (Labour Day), Sun 2, Mon 3 (Labour Day observed) are not; Tue 4 May is the 2nd.
    got = clock.deadlines(at("2027-04-28T09:00"), "access", ClockPolicy())
    assert got.acknowledge_by == end_of("2027-05-04")
    assert got.due_at == end_of("2027-05-13")  # 28 Apr + 15 = Thu 13 May
    # Thu 15 Apr + 15 = Fri 30 Apr: rolled over 1, 2, 3 May to Tue 4 May
    assert clock.due_at(at("2027-04-15T09:00"), "erase", ClockPolicy()) == end_of("2027-05-04")


def test_the_tenants_bridge_day_is_not_a_working_day() -> None:
    # The government makes Thu 29 Apr 2027 a day off (a bridge day, swapped for a Saturday):
    # counting from Wed 28 Apr, the working days are Tue 4 and Wed 5 May.
    bridge = ClockPolicy(days_off=frozenset({dt.date(2027, 4, 29)}))
    assert clock.acknowledge_by(at("2027-04-28T09:00"), bridge) == end_of("2027-05-05")
    assert clock.acknowledge_by(at("2027-04-28T09:00"), ClockPolicy()) == end_of("2027-05-04")


def test_days_are_counted_in_the_tenants_time_zone() -> None:
    # 20:00 UTC on Tue 2 Feb is 03:00 on Wed 3 Feb in Ho Chi Minh City: counted from the 3rd
    received = dt.datetime(2027, 2, 2, 20, 0, tzinfo=dt.UTC)
    assert clock.due_at(received, "erase", ClockPolicy()) == end_of("2027-02-18")
    # a tenant in UTC received it on Tue 2 Feb: its period ends at 24:00 UTC on Wed 17 Feb
    utc = ClockPolicy(time_zone="UTC")
    assert clock.due_at(received, "erase", utc) == dt.datetime(2027, 2, 18, tzinfo=dt.UTC)


def test_the_day_of_receipt_does_not_count_even_late_at_night() -> None:
    # 23:59 on Fri 23 Apr 2027 and 00:00 on Sat 24 Apr differ by a minute and a day
    late = clock.acknowledge_by(at("2027-04-23T23:59"), ClockPolicy())
    after = clock.acknowledge_by(at("2027-04-24T00:00"), ClockPolicy())
    assert late == end_of("2027-04-27")  # Mon 26, Tue 27
    assert after == end_of("2027-04-27")  # Mon 26, Tue 27 (the weekend is not working)
    assert clock.due_at(at("2027-04-23T23:59"), "erase", ClockPolicy()) == end_of("2027-05-10")


def test_an_extension_adds_calendar_days_to_the_last_day() -> None:
    due = clock.due_at(at("2027-02-03T10:00"), "erase", ClockPolicy())  # end of 18 Feb
    # 18 Feb + 15 = Fri 5 Mar 2027
    assert clock.extended_due_at(due, 15, ClockPolicy()) == end_of("2027-03-05")
    # Thu 22 Apr + 8 = Fri 30 Apr: rolled to Tue 4 May
    assert clock.extended_due_at(end_of("2027-04-22"), 8, ClockPolicy()) == end_of("2027-05-04")


def test_a_tenant_policy_as_stored() -> None:
    stored = {
        "time_zone": "Asia/Bangkok",
        "processor": True,
        "days_off": ["2027-04-29"],
        "deadlines": {"acknowledge": 3 * 86400, "restrict": 5 * 86400, "extension": 10 * 86400},
    }
    policy = clock.policy_from(stored)
    assert policy.time_zone == "Asia/Bangkok" and policy.days_off == {dt.date(2027, 4, 29)}
    assert policy.acknowledge_days == 3 and policy.extension_days == 10
    assert policy.days_for("restrict") == 5 and policy.days_for("erase") == 20  # processor
    assert clock.policy_from({}).days_for("erase") == 15
    # a part of a day counts as a day; an extension is never above the law's 15
    part = clock.policy_from({"deadlines": {"erase": 36 * 3600, "extension": 40 * 86400}})
    assert part.days_for("erase") == 2 and part.extension_days == 15


def test_the_default_tenants_clock_comes_from_the_environment() -> None:
    settings = load_settings(
        {
            "CALLVAULT_DSAR_PROCESSOR": "true",
            "CALLVAULT_DAYS_OFF": "2027-04-29, 2026-12-24",
            "CALLVAULT_TIME_ZONE": "Asia/Ho_Chi_Minh",
        }
    )
    policy = clock.for_settings(settings)
    assert policy.processor and policy.days_for("access") == 20
    assert policy.days_off == {dt.date(2027, 4, 29), dt.date(2026, 12, 24)}
    fixed = clock.for_settings(load_settings({"CALLVAULT_DSAR_DEADLINE": "10d"}))
    assert fixed.days_for("erase") == 10 and fixed.days_for("restrict") == 10
    assert clock.for_settings(load_settings({})).days_for("erase") == 15


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CALLVAULT_TIME_ZONE": "Mars/Olympus"}, "CALLVAULT_TIME_ZONE"),
        ({"CALLVAULT_DAYS_OFF": "2027-02-30"}, "CALLVAULT_DAYS_OFF"),
    ],
)
def test_a_bad_clock_setting_is_named(env: dict[str, str], named: str) -> None:
    from service.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{named}: "):
        load_settings(env)


def test_the_holidays_release_is_pinned_exactly_where_it_is_installed() -> None:
    # a new release may add or move days, which would move deadlines already promised
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = [d for d in deps if d.startswith("holidays")]
    assert pinned == [f"holidays=={version('holidays')}"]
    constraints = (ROOT / "constraints.txt").read_text()
    assert re.search(rf"^holidays=={re.escape(version('holidays'))}$", constraints, re.M)
    # and it knows Tết 2027 as these tests expect
    tet = sorted(d for d in clock.public_holidays([2027]) if d.month == 2)
    assert tet == [dt.date(2027, 2, d) for d in range(4, 11)]
