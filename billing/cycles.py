"""Bill cycles: which cycle an instant falls in, and where a cycle starts and ends.

A cycle is named by the month it starts in, ``"2026-11"``: for an account
billed on day ``D`` in time zone ``Z`` it runs from local midnight of day ``D``
of that month (inclusive) to local midnight of day ``D`` of the next month
(exclusive). Bill days are 1–28 so that every month has one. Proration counts
local calendar days, so a cycle has 28–31 days whatever DST does to its hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.exceptions import ProfileError

MAX_BILL_DAY = 28


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The time zone named ``name``; :class:`ProfileError` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin')"
        raise ProfileError(msg) from exc


def check_bill_day(day: int) -> None:
    if not 1 <= day <= MAX_BILL_DAY:
        msg = f"bill day {day} is not in 1..{MAX_BILL_DAY}"
        raise ProfileError(msg)


def parse_cycle(cycle: str) -> tuple[int, int]:
    """``"2026-11"`` → ``(2026, 11)``; :class:`ProfileError` naming the text otherwise."""
    try:
        year_text, month_text = cycle.split("-")
        year, month = int(year_text), int(month_text)
    except ValueError:
        year = month = 0
    if not (1970 <= year <= 2100 and 1 <= month <= 12 and len(cycle) == 7):
        msg = f"cycle {cycle!r} is not YYYY-MM"
        raise ProfileError(msg)
    return year, month


def cycle_name(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


@lru_cache(maxsize=4096)
def next_cycle(cycle: str, n: int = 1) -> str:
    year, month = parse_cycle(cycle)
    index = year * 12 + month - 1 + n
    return cycle_name(index // 12, index % 12 + 1)


@dataclass(frozen=True, slots=True)
class Cycle:
    """One account's cycle: local first day (inclusive) and last day + 1 (exclusive)."""

    name: str
    first_day: date
    end_day: date  # exclusive
    start_us: int  # UTC instant of local midnight of first_day
    end_us: int  # UTC instant of local midnight of end_day

    @property
    def days(self) -> int:
        return (self.end_day - self.first_day).days


def _midnight_us(day: date, tz: ZoneInfo) -> int:
    local = datetime(day.year, day.month, day.day, tzinfo=tz)
    return int(local.timestamp()) * 1_000_000


@lru_cache(maxsize=65_536)
def cycle_bounds(cycle: str, bill_day: int, timezone: str) -> Cycle:
    """The cycle named ``cycle`` for accounts billed on ``bill_day`` in ``timezone``."""
    check_bill_day(bill_day)
    tz = zone(timezone)
    year, month = parse_cycle(cycle)
    n_year, n_month = parse_cycle(next_cycle(cycle))
    first, end = date(year, month, bill_day), date(n_year, n_month, bill_day)
    return Cycle(cycle, first, end, _midnight_us(first, tz), _midnight_us(end, tz))


def local_day(at_us: int, timezone: str) -> date:
    """The local calendar day of the UTC instant ``at_us`` (microseconds) in ``timezone``."""
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at_us)
    return instant.astimezone(zone(timezone)).date()


def cycle_of_day(day: date, bill_day: int) -> str:
    """The cycle a local calendar day belongs to."""
    check_bill_day(bill_day)
    if day.day >= bill_day:
        return cycle_name(day.year, day.month)
    return next_cycle(cycle_name(day.year, day.month), -1)


def cycle_of(at_us: int, bill_day: int, timezone: str) -> str:
    """The cycle of UTC instant ``at_us`` for an account billed on ``bill_day`` in ``timezone``."""
    return cycle_of_day(local_day(at_us, timezone), bill_day)
