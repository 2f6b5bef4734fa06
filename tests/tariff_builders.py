"""Small tariffs and record batches built in Python, and the reference's answer for them.

Shared by the kernel-vs-reference tests: hand-built tariffs (one plan binding
destination rates to timings), a :class:`Record` that is at once a row of a
:class:`~engine.columns.Columns` batch and the arguments of
:func:`~tariffs.reference.rate_reference`, and the period usage the reference
needs for volume tiers, computed from the rules rather than from
:class:`~tariffs.rating.PeriodCounters`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from engine.columns import KIND_NAMES, KIND_SMS, KIND_VOICE, Columns, StrColumn
from tariffs.exceptions import RatingError
from tariffs.model import (
    ANY,
    Basis,
    Binding,
    DestinationRate,
    Rate,
    RateStep,
    RatingPlan,
    RatingProfile,
    Tariff,
    Timing,
)
from tariffs.money import parse_amount
from tariffs.rated import Rating
from tariffs.reference import rate_reference

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SINCE = datetime(2010, 1, 1, tzinfo=UTC)
WEEKDAYS = (1, 2, 3, 4, 5)
HOUR = 3600


# -- records ------------------------------------------------------------------------
class Record(NamedTuple):
    """One usage record: a row of a batch and a query to the reference rater."""

    kind: int  # engine.columns.KIND_*
    tenant: str
    account: str
    category: str
    subject: str
    destination: str
    start_us: int  # UTC epoch microseconds
    usage: int

    @property
    def start(self) -> datetime:
        return EPOCH + timedelta(microseconds=self.start_us)

    @property
    def time_based(self) -> bool:
        return self.kind == KIND_VOICE


def micros(moment: datetime) -> int:
    """UTC epoch microseconds of an aware datetime, exactly (no float)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def call(
    start: datetime,
    usage: int,
    *,
    kind: int = KIND_VOICE,
    destination: str = "4930123456",
    subject: str = "1001",
    account: str = "acc1",
    category: str = "call",
) -> Record:
    return Record(kind, "t", account, category, subject, destination, micros(start), usage)


def columns_of(records: Sequence[Record]) -> Columns:
    """The batch the kernels read, one row per record, in order."""

    def strings(field: str) -> StrColumn:
        return StrColumn.from_strings([getattr(r, field) for r in records])

    return Columns(
        kind=np.array([r.kind for r in records], dtype=np.uint8),
        cdr_id=StrColumn.from_strings([f"cdr{i}" for i in range(len(records))]),
        tenant=strings("tenant"),
        account=strings("account"),
        category=strings("category"),
        subject=strings("subject"),
        destination=strings("destination"),
        start_us=np.array([r.start_us for r in records], dtype=np.int64),
        usage=np.array([r.usage for r in records], dtype=np.int64),
    )


def describe(record: Record) -> str:
    """The record as a failing test shows it: its fields, kind by name, start as ISO time."""
    fields: dict[str, object] = {**record._asdict(), "kind": KIND_NAMES[record.kind]}
    return f"{fields} start={record.start.isoformat()}"


# -- the reference's answers --------------------------------------------------------
def reference(tariff: Tariff, record: Record, period_usage: int = 0) -> Rating | str:
    """The reference's Rating for ``record``, or the error code it fails with."""
    try:
        return rate_reference(
            tariff,
            tenant=record.tenant,
            category=record.category,
            subject=record.subject,
            destination=record.destination,
            start=record.start,
            usage=record.usage,
            time_based=record.time_based,
            period_usage=period_usage,
        )
    except RatingError as exc:
        return exc.code


def tiered_at_start(tariff: Tariff, record: Record) -> bool:
    """Whether the rate in force at the record's start counts period usage.

    One unit rated as not time based prices only the binding at the start, so
    its single span names that rate (and a record that cannot be guided, or has
    no timing at its start, is not tiered).
    """
    first = reference(tariff, record._replace(usage=1, kind=KIND_SMS))
    return not isinstance(first, str) and tariff.rates[first.spans[0].rate].basis != Basis.RECORD


def period_usages(tariff: Tariff, records: Sequence[Record]) -> list[int]:
    """Each record's ``period_usage``: usage before it of tiered records of its period.

    The period is (account, category, calendar month in the tariff's zone); a
    record counts when the rate in force at its start is tiered.
    """
    zone = ZoneInfo(tariff.timezone)
    used: dict[tuple[str, str, int, int], int] = {}
    out = []
    for record in records:
        if not tiered_at_start(tariff, record):
            out.append(0)
            continue
        local = record.start.astimezone(zone)
        key = (record.account, record.category, local.year, local.month)
        out.append(used.get(key, 0))
        used[key] = used.get(key, 0) + record.usage
    return out


# -- hand-built tariffs -------------------------------------------------------------
def nanos(text: str) -> int:
    return parse_amount(text, "test")


def step(price: str, unit: int = 1, increment: int = 1, start: int = 0) -> RateStep:
    return RateStep(group_start=start, price=nanos(price), rate_unit=unit, increment=increment)


def rate(rate_id: str, *steps: RateStep, connect: str = "0", basis: Basis = Basis.RECORD) -> Rate:
    return Rate(id=rate_id, steps=steps, connect_fee=nanos(connect), basis=basis)


def make_tariff(
    bindings: tuple[Binding, ...],
    rates: tuple[Rate, ...],
    dest_rates: tuple[DestinationRate, ...],
    timings: tuple[Timing, ...] = (),
    *,
    timezone: str = "Europe/Berlin",
    destinations: Mapping[str, tuple[str, ...]] | None = None,
) -> Tariff:
    """One plan "P" for tenant "t", categories "call" and "data", every subject."""
    return Tariff(
        name="test",
        currency="EUR",
        timezone=timezone,
        destinations=dict(destinations or {"DE": ("49",), "DE_MOBILE": ("4915", "4916")}),
        timings={t.id: t for t in timings},
        rates={r.id: r for r in rates},
        destination_rates={d.id: d for d in dest_rates},
        plans={"P": RatingPlan(id="P", bindings=bindings)},
        profiles=tuple(
            RatingProfile(tenant="t", category=category, subject=ANY, activation=SINCE, plan="P")
            for category in ("call", "data")
        ),
    )


def single(the_rate: Rate, **dest_rate: Any) -> Tariff:
    """Destination DE at ``the_rate`` at all times."""
    dr = DestinationRate(id="DR", destination="DE", rate=the_rate.id, **dest_rate)
    return make_tariff((Binding(destination_rate="DR"),), (the_rate,), (dr,))


def peak_offpeak(
    unit: int = 1, increment: int = 1, *, holiday: bool = False, timezone: str = "Europe/Berlin"
) -> Tariff:
    """DE at 0.02 in PEAK (weekdays 08-19), 0.01 off-peak, 0.005 at weekends.

    With ``holiday``, Christmas and New Year's Day cost 0.001 (weight 20).
    """
    rates = [
        rate("R_PEAK", step("0.02", unit, increment), connect="0.05"),
        rate("R_OFF", step("0.01", unit, increment)),
        rate("R_WKND", step("0.005", unit, increment)),
    ]
    drs = [
        DestinationRate(id="DR_PEAK", destination="DE", rate="R_PEAK"),
        DestinationRate(id="DR_OFF", destination="DE", rate="R_OFF"),
        DestinationRate(id="DR_WKND", destination="DE", rate="R_WKND"),
    ]
    bindings = [
        Binding(destination_rate="DR_PEAK", timing="PEAK", weight=10),
        Binding(destination_rate="DR_OFF", timing="OFFPEAK_MORNING", weight=10),
        Binding(destination_rate="DR_OFF", timing="OFFPEAK_EVENING", weight=10),
        Binding(destination_rate="DR_WKND", timing="WEEKEND", weight=10),
    ]
    timings = [
        Timing(id="PEAK", weekdays=WEEKDAYS, start=8 * HOUR),
        Timing(id="OFFPEAK_MORNING", weekdays=WEEKDAYS),
        Timing(id="OFFPEAK_EVENING", weekdays=WEEKDAYS, start=19 * HOUR),
        Timing(id="WEEKEND", weekdays=(6, 0)),
    ]
    if holiday:
        rates.append(rate("R_HOLI", step("0.001", unit, increment)))
        drs.append(DestinationRate(id="DR_HOLI", destination="DE", rate="R_HOLI"))
        bindings += [
            Binding(destination_rate="DR_HOLI", timing="XMAS", weight=20),
            Binding(destination_rate="DR_HOLI", timing="NEW_YEAR", weight=20),
        ]
        timings += [
            Timing(id="XMAS", months=(12,), month_days=(25, 26)),
            Timing(id="NEW_YEAR", months=(1,), month_days=(1,)),
        ]
    return make_tariff(tuple(bindings), tuple(rates), tuple(drs), tuple(timings), timezone=timezone)


def night_and_day(day_starts: int, timezone: str = "Europe/Berlin") -> Tariff:
    """Every day: NIGHT (0.01/s) from 00:00, DAY (0.02/s) from ``day_starts``."""
    rates = (rate("R_NIGHT", step("0.01")), rate("R_DAY", step("0.02")))
    drs = (
        DestinationRate(id="DR_NIGHT", destination="DE", rate="R_NIGHT"),
        DestinationRate(id="DR_DAY", destination="DE", rate="R_DAY"),
    )
    bindings = (
        Binding(destination_rate="DR_NIGHT", timing="NIGHT"),
        Binding(destination_rate="DR_DAY", timing="DAY"),
    )
    timings = (Timing(id="NIGHT"), Timing(id="DAY", start=day_starts))
    return make_tariff(bindings, rates, drs, timings, timezone=timezone)


def hourly(increment: int = 60) -> Tariff:
    """A new binding every hour of every day: a long call is cut at each hour.

    Hour ``h`` is priced at ``0.001 * (h % 3 + 1)`` a minute, billed per
    ``increment`` seconds; the day cut has 24 segments, the most a day can have.
    """
    rates = tuple(rate(f"R{k}", step(f"0.00{k + 1}", 60, increment)) for k in range(3))
    drs = tuple(DestinationRate(id=f"DR{k}", destination="DE", rate=f"R{k}") for k in range(3))
    timings = tuple(Timing(id=f"H{h:02d}", start=h * HOUR) for h in range(24))
    bindings = tuple(
        Binding(destination_rate=f"DR{h % 3}", timing=f"H{h:02d}", weight=1) for h in range(24)
    )
    return make_tariff(bindings, rates, drs, timings)


def tiered(basis: Basis) -> Tariff:
    """0.10 a unit for the first 1000 units of the month, 0.05 after that."""
    return single(rate("R", step("0.1"), step("0.05", start=1000), basis=basis))
