"""Hypothesis strategies: random but valid tariffs, and record batches against them.

Tariffs are small (a few destinations, timings, rates, plans and profiles) but
dense in the cases where the compiled path can go wrong: prefixes over a
four-digit alphabet so they nest and are shared, timings that cut the day at
random seconds (some inside DST gaps), holidays that outweigh the rest, rate
steps whose increments straddle their group starts, every rounding method and
max-cost strategy, tiered bases, fallback subjects with cycles, and zones with
DST shifts of an hour, half an hour (Lord Howe) or none.

Prices include exact halves of a nano a unit (so every rounding method has
ties to break) and large prices per large units (a GB: ``billed * price``
passes int64 though the amount does not).

Besides :func:`tariffs` (anything goes), three shapes stress one part each:
:func:`timed_tariffs` (bindings of one destination competing at many
timings: the day cut and DST), :func:`guided_tariffs` (plans binding
different destinations, subjects falling back to each other: the guide) and
:func:`tiered_tariffs` (graduated and volume steps: period usage).

Records mostly use the tariff's own tenants, categories, subjects and
prefixes, and start near instants where rating changes: DST changes, new
years, midnights, timing starts and holidays, between 2019 and 2031.

Every record's usage is bounded by :data:`INCREMENT_BUDGET` increments of the
tariff's smallest increment, because the reference rater walks usage one
increment at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import TypeVar
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import strategies as st

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE
from tariffs.model import (
    ANY,
    Basis,
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
from tests.tariff_builders import Record, micros

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe")
DIGITS = "1234"  # a small alphabet: prefixes nest and collide often
TENANTS = ("t1", "t2")
CATEGORIES = ("call", "data", "sms")
SUBJECTS = ("1001", "1002", "1003", "1004")
ACCOUNTS = ("acc1", "acc2", "acc3")
UNKNOWN = "zz-unknown"
FIRST_YEAR, LAST_YEAR = 2019, 2031
INCREMENT_BUDGET = 2500  # most increments a record may need (the reference walks each)
MAX_USAGE = {KIND_VOICE: 4 * 3600, KIND_SMS: 10**7, KIND_DATA: 4 * 10**9, KIND_EVENT: 10**7}
HOUR = 3600
DAY = 86_400

T = TypeVar("T")

_WEIGHTS = st.sampled_from([10.0, 10.0, 10.0, 0.0, 5.0, 10.5])
_HOLIDAY_WEIGHTS = st.sampled_from([20.0, 30.0, 100.0])
_TIMES_OF_DAY = st.one_of(
    st.sampled_from([0, 8 * HOUR, 19 * HOUR, 2 * HOUR + 1800, 3 * HOUR, DAY - 1]),
    st.integers(0, DAY - 1),
)


def _weighted(*options: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """Draw from one of the strategies, in proportion to the weights.

    (``one_of`` picks its branches evenly and folds repeated ones into one, so it
    cannot weight them.)
    """
    branches = [strategy for weight, strategy in options for _ in range(weight)]
    return st.sampled_from(branches).flatmap(lambda strategy: strategy)


def _subset(values: Sequence[int], max_size: int) -> st.SearchStrategy[tuple[int, ...]]:
    """Mostly empty (any), else a few distinct values."""
    chosen = st.lists(st.sampled_from(values), min_size=1, max_size=max_size, unique=True)
    return _weighted((2, st.just(())), (1, chosen.map(tuple)))


# -- tariffs ------------------------------------------------------------------------
@st.composite
def destinations(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    prefix = st.text(alphabet=DIGITS, min_size=1, max_size=4)
    count = draw(st.integers(1, 5))
    return {
        f"D{k}": tuple(draw(st.lists(prefix, min_size=1, max_size=3, unique=True)))
        for k in range(count)
    }


@st.composite
def timings(draw: st.DrawFn, min_size: int = 0) -> dict[str, Timing]:
    """A few ordinary timings ("T…") and holidays ("H…": one day a year)."""
    out = {}
    for k in range(draw(st.integers(min_size, 5))):
        out[f"T{k}"] = Timing(
            id=f"T{k}",
            years=draw(_subset(range(FIRST_YEAR - 1, LAST_YEAR + 2), 4)),
            months=draw(_subset(range(1, 13), 6)),
            month_days=draw(_subset(range(1, 32), 10)),
            weekdays=draw(_subset(range(8), 5)),
            start=draw(_TIMES_OF_DAY),
        )
    for k in range(draw(st.integers(0, 2))):
        out[f"H{k}"] = Timing(
            id=f"H{k}",
            years=draw(st.one_of(st.just(()), _subset(range(FIRST_YEAR, LAST_YEAR + 1), 3))),
            months=(draw(st.integers(1, 12)),),
            month_days=(draw(st.integers(1, 28)),),
            start=draw(st.sampled_from([0, 0, 8 * HOUR])),
        )
    return out


_UNITS = st.one_of(
    st.sampled_from([1, 2, 60, 1000, 1024, 10**6, 10**9]),  # 10**9: a price per GB
    st.integers(1, 3600),
)


@st.composite
def _price(draw: st.DrawFn, unit: int, increment: int) -> int:
    """Nanos per ``unit``: small (exact halves), round, or large (past int64 times usage).

    Capped so no record can cost more than 10**17 nanos: amounts are int64.
    """
    most = min(10**11, max(1, 10**17 * unit // (increment * (INCREMENT_BUDGET + 60))))
    halves = [h for h in ((2 * k + 1) * unit // 2 for k in range(10)) if h <= most]  # k.5 a unit
    return draw(
        st.one_of(
            st.integers(0, min(most, 9)),
            st.sampled_from(halves or [most]),
            st.sampled_from([p for p in (10**7, 10**8, 10**9, 10**10) if p <= most] or [most]),
            st.integers(0, most),
            st.integers(most // 10, most),
        )
    )


@st.composite
def rate_steps(draw: st.DrawFn, increment: int, min_size: int = 1) -> tuple[RateStep, ...]:
    """1–3 steps; increments are multiples of ``increment``, group starts arbitrary."""
    later = st.integers(1, increment * INCREMENT_BUDGET)
    starts = [0, *sorted(draw(st.lists(later, min_size=min_size - 1, max_size=2, unique=True)))]
    steps = []
    for group_start in starts:
        unit = draw(st.one_of(_UNITS, st.just(increment * 1000)))  # e.g. a GB billed by the MB
        steps.append(
            RateStep(
                group_start=group_start,
                price=draw(_price(unit, increment)),
                rate_unit=unit,
                increment=increment * draw(st.sampled_from([1, 1, 2, 3, 7, 60])),
            )
        )
    return tuple(steps)


_ALL_BASES = (Basis.RECORD, Basis.RECORD, Basis.GRADUATED, Basis.VOLUME)


@st.composite
def rates(
    draw: st.DrawFn, increment: int, bases: Sequence[Basis] = _ALL_BASES, min_steps: int = 1
) -> dict[str, Rate]:
    out = {}
    for k in range(draw(st.integers(1, 4))):
        out[f"R{k}"] = Rate(
            id=f"R{k}",
            steps=draw(rate_steps(increment, min_steps)),
            connect_fee=draw(st.one_of(st.just(0), st.integers(0, 10**9))),
            basis=draw(st.sampled_from(bases)),
        )
    return out


@st.composite
def destination_rates(
    draw: st.DrawFn, destination_ids: Sequence[str], rate_ids: Sequence[str]
) -> dict[str, DestinationRate]:
    """1–6 destination rates, most for the first two destinations (so they share bindings)."""
    out = {}
    for k in range(draw(st.integers(1, 6))):
        strategy = draw(st.sampled_from(MaxCostStrategy))
        max_cost = 0
        if strategy is not MaxCostStrategy.NONE:
            max_cost = draw(st.one_of(st.integers(1, 10**9), st.integers(1, 10**12)))
        out[f"DR{k}"] = DestinationRate(
            id=f"DR{k}",
            destination=draw(st.sampled_from([*destination_ids[:2], *destination_ids, ANY])),
            rate=draw(st.sampled_from(rate_ids)),
            rounding=draw(st.sampled_from(Rounding)),
            decimals=draw(st.integers(0, 9)),
            max_cost=max_cost,
            max_cost_strategy=strategy,
        )
    return out


@st.composite
def plans(
    draw: st.DrawFn, drates: dict[str, DestinationRate], timing_ids: Sequence[str]
) -> dict[str, RatingPlan]:
    """1–3 plans; most bindings of a plan price one or two destinations at several timings."""
    timing = st.sampled_from([ANY, *timing_ids, *timing_ids])
    by_destination: dict[str, list[str]] = {}
    for d in drates.values():
        by_destination.setdefault(d.destination, []).append(d.id)
    out = {}
    for k in range(draw(st.integers(1, 3))):
        focus = draw(st.lists(st.sampled_from(sorted(by_destination)), min_size=1, max_size=2))
        focused = [d for dest in focus for d in by_destination[dest]]
        drate = st.sampled_from([*focused, *focused, *focused, *drates])
        bindings = []
        for _ in range(draw(st.integers(1, 8))):
            chosen = draw(timing)
            weight = _HOLIDAY_WEIGHTS if chosen.startswith("H") else _WEIGHTS
            bindings.append(
                Binding(destination_rate=draw(drate), timing=chosen, weight=draw(weight))
            )
        out[f"P{k}"] = RatingPlan(id=f"P{k}", bindings=tuple(bindings))
    return out


def _micros_range(first: int, last: int) -> st.SearchStrategy[int]:
    return st.integers(
        micros(datetime(first, 1, 1, tzinfo=UTC)), micros(datetime(last, 1, 1, tzinfo=UTC))
    )


_FIRST_ACTIVATION = st.one_of(
    st.just(micros(datetime(2010, 1, 1, tzinfo=UTC))), _micros_range(2017, FIRST_YEAR + 1)
)
_LATER_ACTIVATION = _micros_range(2017, LAST_YEAR)
_ZONES_OF_ACTIVATION: st.SearchStrategy[tzinfo] = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30))]
)


@st.composite
def profiles(
    draw: st.DrawFn,
    plan_ids: Sequence[str],
    tenants: Sequence[str] = TENANTS,
    categories: Sequence[str] = CATEGORIES,
) -> tuple[RatingProfile, ...]:
    """Profiles for a few (tenant, category, subject) keys, each with 1–3 activations.

    Most (tenant, category) pairs have a ``*any`` profile; a key's first
    activation is early, its later ones anywhere up to 2031.
    """
    key = st.tuples(
        st.sampled_from(tenants), st.sampled_from(categories), st.sampled_from([ANY, *SUBJECTS])
    )
    keys = draw(st.lists(key, min_size=1, max_size=6, unique=True))
    for tenant, category in sorted({(t, c) for t, c, _ in keys}):
        if (tenant, category, ANY) not in keys and draw(st.sampled_from([True] * 4 + [False])):
            keys.append((tenant, category, ANY))
    out = []
    for tenant, category, subject in keys:
        # fallbacks mostly to subjects with profiles of the same tenant and category:
        # they can rate what the subject's plan does not bind, and they can form cycles
        known = [s for t, c, s in keys if (t, c) == (tenant, category) and s != subject]
        fallback = st.sampled_from([*known, *known, UNKNOWN])
        fallbacks = _weighted(
            (1, st.just([])), (3, st.lists(fallback, min_size=1, max_size=3, unique=True))
        )
        first = draw(_FIRST_ACTIVATION)
        later = draw(st.lists(_LATER_ACTIVATION, max_size=2))
        for activation_us in dict.fromkeys([first, *later]):
            activation = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=activation_us)
            out.append(
                RatingProfile(
                    tenant=tenant,
                    category=category,
                    subject=subject,
                    activation=activation.astimezone(draw(_ZONES_OF_ACTIVATION)),
                    plan=draw(st.sampled_from(plan_ids)),
                    fallback_subjects=tuple(draw(fallbacks)),
                )
            )
    return tuple(draw(st.permutations(out)))


def _tariff(
    zone: str,
    dests: dict[str, tuple[str, ...]],
    times: dict[str, Timing],
    rate_table: dict[str, Rate],
    drates: dict[str, DestinationRate],
    plan_table: dict[str, RatingPlan],
    profile_table: tuple[RatingProfile, ...],
) -> Tariff:
    return Tariff(
        name="random",
        currency="EUR",
        timezone=zone,
        destinations=dests,
        timings=times,
        rates=rate_table,
        destination_rates=drates,
        plans=plan_table,
        profiles=profile_table,
    )


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    """A random tariff that :func:`tariffs.validate.check_tariff` accepts."""
    increment = draw(st.sampled_from([1, 1, 1, 6, 60, 60, 1000, 1024, 100_000, 10**6, 10**6]))
    dests = draw(destinations())
    times = draw(timings())
    rate_table = draw(rates(increment))
    drates = draw(destination_rates(list(dests), list(rate_table)))
    plan_table = draw(plans(drates, list(times)))
    return _tariff(
        draw(st.sampled_from(ZONES)),
        dests,
        times,
        rate_table,
        drates,
        plan_table,
        draw(profiles(list(plan_table))),
    )


@st.composite
def guided_tariffs(draw: st.DrawFn) -> Tariff:
    """2–4 plans binding different destinations (no timings), and subjects falling back.

    One tenant and category share every profile, so fallback subjects (cycles
    included) usually have profiles, and plans that differ, to fall back to.
    """
    dests = draw(destinations())
    rate_table = draw(rates(1))
    drates = draw(destination_rates(list(dests), list(rate_table)))
    drate_ids = sorted(drates)
    plan_table = {}
    for k in range(draw(st.integers(2, 4))):
        chosen = draw(st.lists(st.sampled_from(drate_ids), min_size=1, max_size=2, unique=True))
        plan_table[f"P{k}"] = RatingPlan(
            id=f"P{k}", bindings=tuple(Binding(destination_rate=d) for d in chosen)
        )
    zone = draw(st.sampled_from(ZONES))
    profile_table = draw(profiles(list(plan_table), TENANTS[:1], CATEGORIES[:1]))
    return _tariff(zone, dests, {}, rate_table, drates, plan_table, profile_table)


def _everyone(plan: str, categories: Sequence[str] = CATEGORIES) -> tuple[RatingProfile, ...]:
    """Profiles putting every subject of tenant ``t1`` on ``plan`` since 2010."""
    since = datetime(2010, 1, 1, tzinfo=UTC)
    return tuple(RatingProfile("t1", c, ANY, since, plan) for c in categories)


@st.composite
def timed_tariffs(draw: st.DrawFn) -> Tariff:
    """One plan pricing one destination differently at each of 2–7 timings.

    Bindings of one destination compete at every instant, so calls are cut at
    the timings' starts, at midnights where day filters change, and around DST
    changes; a ``*any`` binding, when there is one, fills the gaps.
    """
    increment = draw(st.sampled_from([1, 1, 7, 60, 60]))
    dests = draw(destinations())
    times = draw(timings(min_size=2))
    rate_table = draw(rates(increment))
    destination = draw(st.sampled_from([*dests, ANY]))
    drates = {
        k: msgspec.structs.replace(d, destination=destination)
        for k, d in draw(destination_rates(list(dests), list(rate_table))).items()
    }
    drate = st.sampled_from(list(drates))
    bindings = [
        Binding(
            destination_rate=draw(drate),
            timing=t,
            weight=draw(_HOLIDAY_WEIGHTS if t.startswith("H") else _WEIGHTS),
        )
        for t in times
    ]
    if draw(st.booleans()):
        bindings.append(Binding(draw(drate), ANY, draw(st.sampled_from([0.0, 5.0]))))
    plan = RatingPlan(id="P0", bindings=tuple(draw(st.permutations(bindings))))
    zone = draw(st.sampled_from(ZONES))
    return _tariff(zone, dests, times, rate_table, drates, {"P0": plan}, _everyone("P0"))


@st.composite
def tiered_tariffs(draw: st.DrawFn) -> Tariff:
    """One plan for every number whose rates all have 2–3 graduated or volume steps."""
    increment = draw(st.sampled_from([1, 1, 10, 1000, 10**6]))
    dests = draw(destinations())
    times = draw(timings())
    bases = (Basis.GRADUATED, Basis.VOLUME)
    rate_table = draw(rates(increment, bases, min_steps=2))
    drates = draw(destination_rates([ANY], list(rate_table)))
    plan_table = draw(plans(drates, list(times)))
    plan_table["P0"] = RatingPlan(
        id="P0", bindings=(*plan_table["P0"].bindings, Binding(next(iter(drates)), ANY, -1.0))
    )  # a fallback in force at all times
    zone = draw(st.sampled_from(ZONES))
    return _tariff(zone, dests, times, rate_table, drates, plan_table, _everyone("P0"))


# -- records ------------------------------------------------------------------------
@lru_cache(maxsize=len(ZONES))
def zone_changes(name: str) -> tuple[int, ...]:
    """UTC seconds at which zone ``name`` changes its offset, 2019–2031.

    Found with zoneinfo day by day and refined to the second (no zone changes
    its offset twice in a day), independently of :mod:`tariffs.timezones`.
    """
    zone = ZoneInfo(name)

    def offset(t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, tz=zone).utcoffset()

    t = int(datetime(FIRST_YEAR, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(LAST_YEAR + 1, 1, 2, tzinfo=UTC).timestamp())
    out = []
    while t < end:
        lo, hi = t, t + DAY
        if offset(hi) != offset(lo):
            while hi - lo > 1:  # offset(lo) is the old one, offset(hi) the new one
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(t) else (lo, mid)
            out.append(hi)
        t += DAY
    return tuple(out)


def wall_clock(zone: str, year: int, month: int, day: int, seconds: int) -> int:
    """UTC microseconds of ``seconds`` after local midnight (the earlier one on a fold)."""
    try:
        midnight = datetime(year, month, day, tzinfo=ZoneInfo(zone))
    except ValueError:  # 30 February and the like
        midnight = datetime(year, month, 28, tzinfo=ZoneInfo(zone))
    return micros(midnight + timedelta(seconds=seconds))


_YEARS = st.integers(FIRST_YEAR, LAST_YEAR)


@st.composite
def _timing_instant(draw: st.DrawFn, zone: str, timing: Timing) -> int:
    """A start of ``timing`` on a day its filters admit (when they admit any)."""
    year = draw(st.sampled_from(timing.years) if timing.years else _YEARS)
    month = draw(st.sampled_from(timing.months) if timing.months else st.integers(1, 12))
    day = draw(st.sampled_from(timing.month_days) if timing.month_days else st.integers(1, 28))
    if timing.weekdays and not timing.month_days:  # on to the next day of a listed weekday
        weekdays = {7 if w == 0 else w for w in timing.weekdays}
        moment = date(year, month, day)
        while moment.isoweekday() not in weekdays:
            moment += timedelta(days=1)
        year, month, day = moment.year, moment.month, moment.day
    return wall_clock(zone, year, month, day, timing.start)


@st.composite
def starts(draw: st.DrawFn, tariff: Tariff, usage: int = 0) -> int:
    """A record start (UTC microseconds), mostly close to an instant where rating changes.

    The instants are new years, local midnights, the zone's DST changes and the
    tariff's timing starts; a record of ``usage`` seconds often starts early
    enough to run across one.
    """
    zone = tariff.timezone
    uniform = st.integers(
        micros(datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)),
        micros(datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)),
    )
    first_day, last_day = date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31)
    new_year = st.integers(FIRST_YEAR + 1, LAST_YEAR + 1).map(
        lambda y: wall_clock(zone, y, 1, 1, 0)
    )
    midnight = st.dates(first_day, last_day).map(
        lambda d: wall_clock(zone, d.year, d.month, d.day, 0)
    )
    near: list[tuple[int, st.SearchStrategy[int]]] = [(1, uniform), (1, new_year), (1, midnight)]
    if zone_changes(zone):
        dst = st.sampled_from(zone_changes(zone)).map(lambda t: t * 1_000_000)
        near.append((2, dst))
    bound_timings = {b.timing for plan in tariff.plans.values() for b in plan.bindings} - {ANY}
    if bound_timings:
        timing = st.sampled_from([tariff.timings[t] for t in sorted(bound_timings)])
        near.append((4, timing.flatmap(lambda t: _timing_instant(zone, t))))
    base = draw(_weighted(*near))
    shift = draw(
        _weighted(
            (3, st.integers(-max(usage, 1), 0)),  # runs across the instant
            (1, st.integers(-120, 120)),
            (1, st.integers(-DAY, DAY)),
        )
    )
    micro = draw(st.one_of(st.just(0), st.integers(0, 999_999)))
    return int(base + shift * 1_000_000 + micro)


def _names(values: Sequence[str]) -> st.SearchStrategy[str]:
    """Mostly one of ``values``, sometimes a name the tariff does not know."""
    return st.sampled_from([*values, *values, *values, UNKNOWN])


_ALL_KINDS = (KIND_VOICE, KIND_VOICE, KIND_SMS, KIND_DATA, KIND_EVENT)


@st.composite
def records(
    draw: st.DrawFn,
    tariff: Tariff,
    max_size: int = 30,
    kinds: Sequence[int] = _ALL_KINDS,
    anchored: int = 1,
) -> list[Record]:
    """A batch against ``tariff``; ``anchored`` in four records fall within ten days.

    Those records share volume-tier periods (per account and category) and
    days, while others fall on days that share a slot of the day cache.
    """
    profiles_ = tariff.profiles
    subjects = {p.subject for p in profiles_} | {s for p in profiles_ for s in p.fallback_subjects}
    prefixes = sorted({p for ps in tariff.destinations.values() for p in ps})
    bound_destinations = {
        tariff.destination_rates[b.destination_rate].destination
        for plan in tariff.plans.values()
        for b in plan.bindings
    }
    bound_prefixes = sorted(
        {p for d in bound_destinations if d != ANY for p in tariff.destinations[d]}
    )
    smallest = min(s.increment for r in tariff.rates.values() for s in r.steps)
    prefix = st.sampled_from(bound_prefixes * 4 + prefixes)
    prefixed = st.tuples(prefix, st.text(DIGITS + "5", max_size=6)).map("".join)
    destination = _weighted(
        (6, prefixed),
        (1, st.text(DIGITS + "59", max_size=8)),
        (1, st.sampled_from(["5", "+4930", ""])),
    )
    pairs = st.sampled_from(sorted({(p.tenant, p.category) for p in profiles_}))
    strangers = st.tuples(
        _names(sorted({p.tenant for p in profiles_})),
        _names(sorted({p.category for p in profiles_})),
    )
    anchor = draw(starts(tariff))
    near_anchor = st.integers(-10 * DAY, 10 * DAY).map(lambda s: anchor + s * 1_000_000)
    out = []
    for _ in range(draw(_weighted((1, st.integers(1, 5)), (3, st.integers(5, max_size))))):
        kind = draw(st.sampled_from(kinds))
        bound = min(MAX_USAGE[kind], smallest * INCREMENT_BUDGET)
        usage = draw(
            _weighted(
                (1, st.just(0)),
                (1, st.integers(1, 10)),
                (2, st.integers(0, bound)),
                (1, st.integers(bound // 2, bound)),
            )
        )
        tenant, category = draw(_weighted((7, pairs), (1, strangers)))
        out.append(
            Record(
                kind=kind,
                tenant=tenant,
                account=draw(st.sampled_from(ACCOUNTS)),
                category=category,
                subject=draw(_names(sorted(subjects | set(SUBJECTS)))),
                destination=draw(destination),
                start_us=draw(
                    _weighted((4 - anchored, starts(tariff, usage)), (anchored, near_anchor))
                ),
                usage=usage,
            )
        )
    return out


Batch = tuple[Tariff, list[Record], int]


@st.composite
def batches(draw: st.DrawFn, max_size: int = 30) -> Batch:
    """A tariff, a batch against it, and where to split the batch into two calls."""
    tariff = draw(tariffs())
    batch = draw(records(tariff, max_size))
    return tariff, batch, draw(st.integers(0, len(batch)))


@st.composite
def timed_batches(draw: st.DrawFn, max_size: int = 20) -> Batch:
    """Calls (and a few other records) against a :func:`timed_tariffs` tariff."""
    tariff = draw(timed_tariffs())
    batch = draw(records(tariff, max_size, kinds=(KIND_VOICE,) * 4 + (KIND_DATA,)))
    return tariff, batch, draw(st.integers(0, len(batch)))


@st.composite
def guided_batches(draw: st.DrawFn, max_size: int = 30) -> Batch:
    """Short records of every subject against a :func:`guided_tariffs` tariff."""
    tariff = draw(guided_tariffs())
    batch = draw(records(tariff, max_size))
    return tariff, batch, draw(st.integers(0, len(batch)))


@st.composite
def tiered_batches(draw: st.DrawFn, max_size: int = 30) -> Batch:
    """Records of few accounts, mostly in one month, against a :func:`tiered_tariffs` tariff."""
    tariff = draw(tiered_tariffs())
    batch = draw(records(tariff, max_size, anchored=3))
    return tariff, batch, draw(st.integers(0, len(batch)))
