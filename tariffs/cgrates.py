"""Import a CGRateS tariff-plan folder (its rating CSV files) as a :class:`Tariff`.

Read: ``Destinations.csv``, ``Timings.csv``, ``Rates.csv``,
``DestinationRates.csv``, ``RatingPlans.csv`` and ``RatingProfiles.csv``; a
missing file counts as empty and other files (``Chargers.csv``, accounts,
actions …) are ignored. Lines starting with ``#`` and blank lines are skipped,
so a header line is optional. Every bad row raises :class:`TariffError`
naming ``file:line`` and the column, e.g.
``Rates.csv:7: RateUnit: '0x' is not a usage quantity like 60s, …``.

How CGRateS values map onto the model (CGRateS's own behaviour unless noted):

- Quantities (``RateUnit``, ``RateIncrement``, ``GroupIntervalStart``):
  durations (``60s``, ``1m``, ``1h30m``) become whole **seconds**, plain numbers
  (``1024``) stay a count of units (bytes for data). CGRateS counts voice in
  nanoseconds and data as "nanoseconds"; the model counts seconds and bytes,
  so ``60s`` is 60 and ``1024`` is 1024 here. A ``RateUnit`` or
  ``RateIncrement`` of ``0`` (or empty) is read as 1, as CGRateS uses one
  second for a zero unit or increment.
- Rows of ``Rates.csv`` with the same ID are the steps of one rate, sorted by
  ``GroupIntervalStart``; one must start at 0. The connect fee is that of the
  row starting at 0 (CGRateS charges only one connect fee per rate, and
  ignores the others). Empty amounts (``ConnectFee``, ``Rate``, ``MaxCost``)
  are 0.
- ``RoundingMethod``: ``*up`` → up, ``*down`` → down, ``*middle`` → half_up.
  An empty method means "no rounding" in CGRateS, so it becomes up to 9
  decimals (whole nanos). ``RoundingDecimals`` above 9 are 9 (exact in nanos);
  empty is 0, as in CGRateS.
- ``MaxCost`` empty or 0 means no max cost; CGRateS also ignores a max cost
  without a ``MaxCostStrategy``. ``*disconnect`` → disconnect; ``*free``
  ("anything above MaxCost is not charged") → cap, because charging at most
  ``MaxCost`` is exactly what ``cap`` does.
- A DestinationRates ID may group several destinations (one row each); the
  model's destination rate has one destination, so such an ID becomes one
  destination rate per row, named ``ID/DESTINATION``, and every RatingPlans
  row that names the ID binds each of them with the row's timing and weight.
  An ID with a single row keeps its name.
- Timings: ``*any`` or empty is "any"; lists are ``;``-separated; weekday 0 or
  7 is Sunday (stored as 7). Start time ``HH:MM:SS``; ``*asap`` (meant for
  action plans: "now") and empty are read as 00:00:00, i.e. in force all day.
- RatingProfiles: ``ActivationTime`` is RFC 3339; one without an offset is
  read in ``timezone`` (as CGRateS reads it in its default time zone). The
  fallback subjects are ``;``-separated.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Container
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tariffs.exceptions import TariffError
from tariffs.model import (
    ANY,
    Binding,
    DestinationRate,
    MaxCostStrategy,
    Rate,
    RateStep,
    RatingPlan,
    RatingProfile,
    Rounding,
    Tariff,
    Timing,
)
from tariffs.money import parse_amount
from tariffs.native import parse_quantity, parse_time_of_day
from tariffs.validate import MONTH_DAYS, MONTHS, WEEKDAYS, YEARS, check_tariff, check_timezone

COLUMNS = {
    "Destinations.csv": ("ID", "Prefix"),
    "Timings.csv": ("ID", "Years", "Months", "MonthDays", "WeekDays", "Time"),
    "Rates.csv": ("ID", "ConnectFee", "Rate", "RateUnit", "RateIncrement", "GroupIntervalStart"),
    "DestinationRates.csv": (
        "ID",
        "DestinationsID",
        "RatesID",
        "RoundingMethod",
        "RoundingDecimals",
        "MaxCost",
        "MaxCostStrategy",
    ),
    "RatingPlans.csv": ("ID", "DestinationRatesID", "TimingID", "Weight"),
    "RatingProfiles.csv": (
        "Tenant",
        "Category",
        "Subject",
        "ActivationTime",
        "RatingPlanID",
        "FallbackSubjects",
    ),
}
ROUNDINGS = {"*up": Rounding.UP, "*down": Rounding.DOWN, "*middle": Rounding.HALF_UP}
STRATEGIES = {"*free": MaxCostStrategy.CAP, "*disconnect": MaxCostStrategy.DISCONNECT}
NO_ROUNDING_DECIMALS = 9
ASAP = "*asap"


@dataclass(frozen=True, slots=True)
class Row:
    """One data line of a CSV file, its fields by column name."""

    file: str
    line: int
    fields: dict[str, str]

    def get(self, column: str) -> str:
        return self.fields[column]

    def where(self, column: str) -> str:
        return f"{self.file}:{self.line}: {column}"


def load_cgrates(folder: Path, *, currency: str = "EUR", timezone: str = "UTC") -> Tariff:
    """Import the CGRateS tariff plan in ``folder``; prices are read in ``currency``."""
    if not folder.is_dir():
        msg = f"{folder}: not a folder of CGRateS tariff-plan files"
        raise TariffError(msg)
    if not any((folder / name).is_file() for name in COLUMNS):
        msg = f"{folder}: no CGRateS tariff-plan files ({', '.join(COLUMNS)}) in this folder"
        raise TariffError(msg)
    check_timezone("timezone", timezone)
    destinations = _destinations(read_rows(folder, "Destinations.csv"))
    timings = _timings(read_rows(folder, "Timings.csv"))
    rates = _rates(read_rows(folder, "Rates.csv"))
    rows = read_rows(folder, "DestinationRates.csv")
    destination_rates, groups = _destination_rates(rows, destinations, rates)
    plans = _plans(read_rows(folder, "RatingPlans.csv"), groups, timings)
    profiles = _profiles(read_rows(folder, "RatingProfiles.csv"), plans, ZoneInfo(timezone))
    tariff = Tariff(
        name=folder.resolve().name,
        currency=currency,
        timezone=timezone,
        destinations=destinations,
        timings=timings,
        rates=rates,
        destination_rates=destination_rates,
        plans=plans,
        profiles=profiles,
    )
    try:
        check_tariff(tariff)
    except TariffError as exc:
        msg = f"{tariff.name}: {exc}"
        raise TariffError(msg) from exc
    return tariff


def read_rows(folder: Path, name: str) -> list[Row]:
    """The data lines of ``folder/name`` (none if the file is absent)."""
    path = folder / name
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{name}: cannot read: {exc}"
        raise TariffError(msg) from exc
    columns = COLUMNS[name]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = next(csv.reader([line]))
        if len(fields) != len(columns):
            msg = (
                f"{name}:{number}: expected {len(columns)} columns"
                f" ({','.join(columns)}), found {len(fields)}"
            )
            raise TariffError(msg)
        values = (field.strip() for field in fields)
        rows.append(Row(name, number, dict(zip(columns, values, strict=True))))
    return rows


# --- one function per file -------------------------------------------------------


def _destinations(rows: list[Row]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for row in rows:
        prefixes = found.setdefault(_name(row, "ID"), [])
        prefix = _required(row, "Prefix")
        if prefix in prefixes:
            msg = f"{row.where('Prefix')}: {prefix!r} is already in destination {row.get('ID')!r}"
            raise TariffError(msg)
        prefixes.append(prefix)
    return {key: tuple(prefixes) for key, prefixes in found.items()}


def _timings(rows: list[Row]) -> dict[str, Timing]:
    timings: dict[str, Timing] = {}
    for row in rows:
        key = _new_name(row, "ID", timings, "timing")
        weekdays = _numbers(row, "WeekDays", WEEKDAYS)
        timings[key] = Timing(
            id=key,
            years=_numbers(row, "Years", YEARS),
            months=_numbers(row, "Months", MONTHS),
            month_days=_numbers(row, "MonthDays", MONTH_DAYS),
            weekdays=tuple(7 if day == 0 else day for day in weekdays),
            start=_start(row),
        )
    return timings


def _rates(rows: list[Row]) -> dict[str, Rate]:
    found: dict[str, list[tuple[RateStep, int, Row]]] = {}
    for row in rows:
        step = RateStep(
            group_start=_quantity(row, "GroupIntervalStart"),
            price=_amount(row, "Rate"),
            rate_unit=_quantity(row, "RateUnit") or 1,
            increment=_quantity(row, "RateIncrement") or 1,
        )
        entries = found.setdefault(_name(row, "ID"), [])
        if any(step.group_start == other.group_start for other, _, _ in entries):
            msg = (
                f"{row.where('GroupIntervalStart')}: rate {row.get('ID')!r} already has"
                f" a row starting at {row.get('GroupIntervalStart')!r}"
            )
            raise TariffError(msg)
        entries.append((step, _amount(row, "ConnectFee"), row))
    return {key: _rate(key, entries) for key, entries in found.items()}


def _rate(key: str, entries: list[tuple[RateStep, int, Row]]) -> Rate:
    entries = sorted(entries, key=lambda entry: entry[0].group_start)
    first_step, connect_fee, first_row = entries[0]
    if first_step.group_start != 0:
        msg = (
            f"{first_row.where('GroupIntervalStart')}: rate {key!r} has no row"
            f" starting at 0 (its first starts at {first_row.get('GroupIntervalStart')!r})"
        )
        raise TariffError(msg)
    steps = tuple(step for step, _, _ in entries)
    return Rate(id=key, steps=steps, connect_fee=connect_fee)


def _destination_rates(
    rows: list[Row], destinations: dict[str, tuple[str, ...]], rates: dict[str, Rate]
) -> tuple[dict[str, DestinationRate], dict[str, tuple[str, ...]]]:
    """The destination rates, and the model ids that each CGRateS ID stands for."""
    found: dict[str, list[tuple[DestinationRate, Row]]] = {}
    for row in rows:
        drate = _destination_rate(row, destinations, rates)
        entries = found.setdefault(drate.id, [])
        if any(drate.destination == other.destination for other, _ in entries):
            msg = (
                f"{row.where('DestinationsID')}: destination rate {drate.id!r}"
                f" already has destination {drate.destination!r}"
            )
            raise TariffError(msg)
        entries.append((drate, row))
    result: dict[str, DestinationRate] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for key, entries in found.items():
        split = [_split(drate, row, found) if len(entries) > 1 else drate for drate, row in entries]
        result.update((drate.id, drate) for drate in split)
        groups[key] = tuple(drate.id for drate in split)
    return result, groups


def _destination_rate(
    row: Row, destinations: dict[str, tuple[str, ...]], rates: dict[str, Rate]
) -> DestinationRate:
    destination = _required(row, "DestinationsID")
    if destination != ANY and destination not in destinations:
        msg = f"{row.where('DestinationsID')}: unknown destination {destination!r}"
        raise TariffError(msg)
    rate = _required(row, "RatesID")
    if rate not in rates:
        msg = f"{row.where('RatesID')}: unknown rate {rate!r}"
        raise TariffError(msg)
    rounding, decimals = _rounding(row)
    max_cost, strategy = _max_cost(row)
    return DestinationRate(
        id=_name(row, "ID"),
        destination=destination,
        rate=rate,
        rounding=rounding,
        decimals=decimals,
        max_cost=max_cost,
        max_cost_strategy=strategy,
    )


def _split(drate: DestinationRate, row: Row, taken: Container[str]) -> DestinationRate:
    """One row of a multi-destination ID, as its own destination rate ``ID/DESTINATION``."""
    key = f"{drate.id}/{drate.destination}"
    if key in taken:
        msg = f"{row.where('ID')}: {drate.id!r} splits into {key!r}, which is already an ID"
        raise TariffError(msg)
    return DestinationRate(
        id=key,
        destination=drate.destination,
        rate=drate.rate,
        rounding=drate.rounding,
        decimals=drate.decimals,
        max_cost=drate.max_cost,
        max_cost_strategy=drate.max_cost_strategy,
    )


def _plans(
    rows: list[Row], groups: dict[str, tuple[str, ...]], timings: dict[str, Timing]
) -> dict[str, RatingPlan]:
    found: dict[str, list[Binding]] = {}
    for row in rows:
        group = _required(row, "DestinationRatesID")
        if group not in groups:
            msg = f"{row.where('DestinationRatesID')}: unknown destination rate {group!r}"
            raise TariffError(msg)
        timing = _required(row, "TimingID")
        if timing != ANY and timing not in timings:
            msg = f"{row.where('TimingID')}: unknown timing {timing!r}"
            raise TariffError(msg)
        bindings = found.setdefault(_name(row, "ID"), [])
        if any(b.destination_rate in groups[group] and b.timing == timing for b in bindings):
            msg = f"{row.where('ID')}: plan {row.get('ID')!r} already binds {group!r} at {timing!r}"
            raise TariffError(msg)
        weight = _weight(row)
        bindings.extend(Binding(key, timing, weight) for key in groups[group])
    return {key: RatingPlan(id=key, bindings=tuple(b)) for key, b in found.items()}


def _profiles(
    rows: list[Row], plans: dict[str, RatingPlan], zone: ZoneInfo
) -> tuple[RatingProfile, ...]:
    profiles: list[RatingProfile] = []
    seen: dict[tuple[str, str, str, datetime], int] = {}
    for row in rows:
        plan = _required(row, "RatingPlanID")
        if plan not in plans:
            msg = f"{row.where('RatingPlanID')}: unknown rating plan {plan!r}"
            raise TariffError(msg)
        profile = RatingProfile(
            tenant=_required(row, "Tenant"),
            category=_required(row, "Category"),
            subject=_required(row, "Subject"),
            activation=_activation(row, zone),
            plan=plan,
            fallback_subjects=_subjects(row, "FallbackSubjects"),
        )
        key = (profile.tenant, profile.category, profile.subject, profile.activation)
        if key in seen:
            msg = f"{row.where('ActivationTime')}: same profile and time as line {seen[key]}"
            raise TariffError(msg)
        seen[key] = row.line
        profiles.append(profile)
    return tuple(profiles)


# --- fields ------------------------------------------------------------------------


def _required(row: Row, column: str) -> str:
    value = row.get(column)
    if not value:
        msg = f"{row.where(column)}: must not be empty"
        raise TariffError(msg)
    return value


def _name(row: Row, column: str) -> str:
    value = _required(row, column)
    if value == ANY:
        msg = f"{row.where(column)}: {ANY!r} cannot be used as an ID (it means 'any')"
        raise TariffError(msg)
    return value


def _new_name(row: Row, column: str, taken: Container[str], what: str) -> str:
    value = _name(row, column)
    if value in taken:
        msg = f"{row.where(column)}: {what} {value!r} is defined twice"
        raise TariffError(msg)
    return value


def _numbers(row: Row, column: str, allowed: range) -> tuple[int, ...]:
    text = row.get(column)
    if text in ("", ANY):
        return ()
    items = [item.strip() for item in text.split(";")]
    if not all(item.isdigit() for item in items):
        msg = f"{row.where(column)}: {text!r} is not {ANY} or a ;-separated list of numbers"
        raise TariffError(msg)
    for number in map(int, items):
        if number not in allowed:
            msg = f"{row.where(column)}: {number} is out of range {allowed[0]}..{allowed[-1]}"
            raise TariffError(msg)
    return tuple(map(int, items))


def _start(row: Row) -> int:
    text = row.get("Time")
    return 0 if text in ("", ASAP) else parse_time_of_day(text, row.where("Time"))


def _quantity(row: Row, column: str) -> int:
    text = row.get(column)
    return parse_quantity(text, row.where(column)) if text else 0


def _amount(row: Row, column: str) -> int:
    text = row.get(column)
    value = parse_amount(text, row.where(column)) if text else 0
    if value < 0:
        msg = f"{row.where(column)}: {text!r} must not be negative"
        raise TariffError(msg)
    return value


def _rounding(row: Row) -> tuple[Rounding, int]:
    method = row.get("RoundingMethod")
    text = row.get("RoundingDecimals")
    if text and not text.isdigit():
        msg = f"{row.where('RoundingDecimals')}: {text!r} is not a whole number of decimals"
        raise TariffError(msg)
    if not method:
        return Rounding.UP, NO_ROUNDING_DECIMALS
    if method not in ROUNDINGS:
        msg = f"{row.where('RoundingMethod')}: {method!r} is not one of {', '.join(ROUNDINGS)}"
        raise TariffError(msg)
    return ROUNDINGS[method], min(int(text or 0), NO_ROUNDING_DECIMALS)


def _max_cost(row: Row) -> tuple[int, MaxCostStrategy]:
    max_cost = _amount(row, "MaxCost")
    strategy = row.get("MaxCostStrategy")
    if strategy and strategy not in STRATEGIES:
        msg = f"{row.where('MaxCostStrategy')}: {strategy!r} is not one of {', '.join(STRATEGIES)}"
        raise TariffError(msg)
    if not max_cost or not strategy:
        return 0, MaxCostStrategy.NONE
    return max_cost, STRATEGIES[strategy]


def _weight(row: Row) -> float:
    text = row.get("Weight")
    try:
        weight = float(text) if text else 0.0
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight):
        msg = f"{row.where('Weight')}: {text!r} is not a number"
        raise TariffError(msg)
    return weight


def _activation(row: Row, zone: ZoneInfo) -> datetime:
    text = _required(row, "ActivationTime")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = (
            f"{row.where('ActivationTime')}: {text!r} is not a date-time like 2014-01-14T00:00:00Z"
        )
        raise TariffError(msg) from exc
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=zone)


def _subjects(row: Row, column: str) -> tuple[str, ...]:
    text = row.get(column)
    subjects = tuple(subject.strip() for subject in text.split(";")) if text else ()
    if not all(subjects) or len(set(subjects)) != len(subjects):
        msg = f"{row.where(column)}: {text!r} has an empty or repeated subject"
        raise TariffError(msg)
    return subjects
