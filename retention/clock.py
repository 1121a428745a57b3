"""The legal clock of a data-subject request: when it must be acknowledged and completed.

Law 91/2025/QH15 and Decree 356/2025/ND-CP (in force since 1 January 2026) ask a controller to
acknowledge a request within 2 working days and to carry it out within 15 days (20 when a
processor is involved), with one extension. This module turns a request's ``received_at`` and
its tenant's policy into ``acknowledge_by`` and ``due_at``; it never reads a clock itself (the
database's ``now()`` is passed in by the caller).

How days are counted (a choice, documented in the README):

- The day the request arrives is not counted; counting starts the next day, and a period ends at
  the end (24:00) of its last day, in the tenant's time zone (Civil Code 2015, 91/2015/QH13,
  Articles 147 and 148, which govern periods that a law states in days).
- ``acknowledge_by``: the end of the 2nd *working* day after the day of receipt. Working days
  skip Saturdays, Sundays, Vietnam's public holidays (the ``holidays`` package, pinned: a new
  release may add days) and the tenant's own days off (the bridge days the government announces
  each year).
- ``due_at``: the end of the 15th (or 20th) *calendar* day after the day of receipt; the law
  says "days", not working days. A period whose last day is not a working day ends at the end of
  the next working day (Civil Code Article 148, clause 5), so Tết can move a deadline, never
  shorten it.
- One extension of at most 15 days adds calendar days to the last day, with the same rule.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from importlib.metadata import version
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import holidays

if TYPE_CHECKING:
    from service.config import Settings

DAY_S = 86400
DEFAULT_TIME_ZONE = "Asia/Ho_Chi_Minh"
ACKNOWLEDGE_WORKING_DAYS = 2
COMPLETE_DAYS = 15
COMPLETE_DAYS_WITH_PROCESSOR = 20
MAX_EXTENSION_DAYS = 15
# A request whose deadline is closer than this is "due soon" (metrics, `dsar list`).
DUE_SOON_S = 2 * DAY_S


class Kind(StrEnum):
    """What the data subject asks for."""

    ACCESS = "access"  # a bundle of their calls and recordings
    CORRECT = "correct"  # their statement attached to named calls, or a call unlinked
    ERASE = "erase"  # recordings and number destroyed (a legal hold wins)
    WITHDRAW = "withdraw"  # never recorded again, then erased
    RESTRICT = "restrict"  # kept, but no playback or export until lifted


class Status(StrEnum):
    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    WAITING_FOR_HOLD = "waiting_for_hold"
    IN_FORCE = "in_force"  # a restriction, until lifted
    COMPLETED = "completed"
    REJECTED = "rejected"


# The request's work is over: no deadline runs. A restriction in force has been carried out.
CLOSED = frozenset({Status.COMPLETED, Status.REJECTED})
CLOCK_STOPPED = CLOSED | {Status.IN_FORCE}


@cache
def _public_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays("VN", years=year))


def public_holidays(years: Iterable[int]) -> dict[dt.date, str]:
    """Vietnam's public holidays of these years, as the pinned ``holidays`` release knows them."""
    return dict(holidays.country_holidays("VN", years=list(years)).items())


@dataclass(frozen=True)
class ClockPolicy:
    """A tenant's deadlines, in days (built-in defaults: the law's figures)."""

    time_zone: str = DEFAULT_TIME_ZONE
    processor: bool = False  # a processor is involved: 20 days instead of 15
    acknowledge_days: int = ACKNOWLEDGE_WORKING_DAYS  # working days
    kind_days: Mapping[str, int] = field(default_factory=dict)  # calendar days, per kind
    extension_days: int = MAX_EXTENSION_DAYS
    days_off: frozenset[dt.date] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def days_for(self, kind: str) -> int:
        default = COMPLETE_DAYS_WITH_PROCESSOR if self.processor else COMPLETE_DAYS
        return self.kind_days.get(kind, default)

    def is_working_day(self, day: dt.date) -> bool:
        return (
            day.weekday() < 5 and day not in _public_holidays(day.year) and day not in self.days_off
        )

    def as_json(self) -> dict[str, Any]:
        """What the request keeps of the policy that set its clock (shown with the request)."""
        return {
            "time_zone": self.time_zone,
            "processor": self.processor,
            "acknowledge_working_days": self.acknowledge_days,
            "days": dict(self.kind_days),
            "extension_days": self.extension_days,
            "days_off": sorted(d.isoformat() for d in self.days_off),
            "holidays": f"holidays {version('holidays')} (VN)",
        }


def _whole_days(seconds: object, default: int) -> int:
    """A policy duration in whole days (a part of a day counts as a day)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        return default
    return max(1, math.ceil(seconds / DAY_S))


def policy_from(raw: Mapping[str, Any], base: ClockPolicy | None = None) -> ClockPolicy:
    """A clock policy from a tenant's stored policy (``tenants.policy``: ``deadlines`` in
    seconds, ``days_off`` as ISO dates, ``time_zone``, ``processor``) over ``base``."""
    policy = base or ClockPolicy()
    deadlines = raw.get("deadlines") or {}
    kinds = dict(policy.kind_days)
    for kind in Kind:
        if kind.value in deadlines:
            kinds[kind.value] = _whole_days(deadlines[kind.value], COMPLETE_DAYS)
    days_off = set(policy.days_off)
    for text in raw.get("days_off") or ():
        days_off.add(dt.date.fromisoformat(str(text)))
    return replace(
        policy,
        time_zone=str(raw.get("time_zone") or policy.time_zone),
        processor=bool(raw.get("processor", policy.processor)),
        acknowledge_days=_whole_days(deadlines.get("acknowledge"), policy.acknowledge_days),
        kind_days=kinds,
        extension_days=min(
            MAX_EXTENSION_DAYS, _whole_days(deadlines.get("extension"), policy.extension_days)
        ),
        days_off=frozenset(days_off),
    )


def _end_of(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    """24:00 of ``day`` in ``zone`` (the first instant of the next day), in UTC."""
    nxt = day + dt.timedelta(days=1)
    return dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).astimezone(dt.UTC)


def local_day(at: dt.datetime, policy: ClockPolicy) -> dt.date:
    return at.astimezone(policy.zone).date()


def acknowledge_by(received_at: dt.datetime, policy: ClockPolicy) -> dt.datetime:
    """The end of the ``acknowledge_days``-th working day after the day of receipt."""
    day, counted = local_day(received_at, policy), 0
    while counted < policy.acknowledge_days:
        day += dt.timedelta(days=1)
        counted += policy.is_working_day(day)
    return _end_of(day, policy.zone)


def last_day(start: dt.date, days: int, policy: ClockPolicy) -> dt.date:
    """``days`` calendar days after ``start``, moved on to the next working day if it is not
    one (Civil Code Article 148, clause 5)."""
    day = start + dt.timedelta(days=days)
    while not policy.is_working_day(day):
        day += dt.timedelta(days=1)
    return day


def due_at(received_at: dt.datetime, kind: str, policy: ClockPolicy) -> dt.datetime:
    return _end_of(
        last_day(local_day(received_at, policy), policy.days_for(kind), policy), policy.zone
    )


def extended_due_at(current_due: dt.datetime, days: int, policy: ClockPolicy) -> dt.datetime:
    """The deadline after an extension of ``days``: counted from the current deadline's last
    day (the instant 24:00 of that day belongs to it)."""
    current_last = local_day(current_due - dt.timedelta(microseconds=1), policy)
    return _end_of(last_day(current_last, days, policy), policy.zone)


@dataclass(frozen=True)
class Deadlines:
    acknowledge_by: dt.datetime
    due_at: dt.datetime


def deadlines(received_at: dt.datetime, kind: str, policy: ClockPolicy) -> Deadlines:
    return Deadlines(acknowledge_by(received_at, policy), due_at(received_at, kind, policy))


def for_settings(settings: Settings) -> ClockPolicy:
    """The tenant ``default``'s clock: from the environment and ``CALLVAULT_CONFIG``
    (``CALLVAULT_DSAR_DEADLINE`` for every kind, ``_DSAR_PROCESSOR``, ``_TIME_ZONE``,
    ``_DAYS_OFF``)."""
    deadline_s = settings.dsar_deadline_s
    kinds = {k.value: _whole_days(deadline_s, COMPLETE_DAYS) for k in Kind} if deadline_s else {}
    return ClockPolicy(
        time_zone=settings.time_zone,
        processor=settings.dsar_processor,
        kind_days=kinds,
        days_off=frozenset(settings.days_off),
    )
