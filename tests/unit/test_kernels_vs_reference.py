"""The compiled path (guide, start and rate kernels) agrees with the reference rater.

``Rater.rate`` must give every record the same :class:`~tariffs.rated.Rating`
as :func:`~tariffs.reference.rate_reference` — plan, destination, prefix,
connect fee, every span, subtotal, cost and flags — or fail it with the same
error code. Hand-picked cases first, then random tariffs and batches, then a
batch large enough to outgrow the kernel's first span arrays.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE
from tariffs.exceptions import TariffError
from tariffs.model import (
    ANY,
    Basis,
    Binding,
    DestinationRate,
    MaxCostStrategy,
    Rate,
    RateStep,
    Rounding,
    Tariff,
    Timing,
)
from tariffs.rated import (
    FLAG_MAX_COST_CAPPED,
    FLAG_MAX_COST_DISCONNECT,
    NO_TIMING_IN_FORCE,
    RATING_PLAN_NOT_FOUND,
    UNAUTHORIZED_DESTINATION,
    USAGE_OUT_OF_RANGE,
    Rating,
)
from tariffs.rating import PeriodCounters, Rater
from tariffs.validate import check_tariff
from tests import strategies
from tests.conftest import SeededRandom
from tests.tariff_builders import (
    HOUR,
    Record,
    call,
    columns_of,
    describe,
    hourly,
    make_tariff,
    micros,
    night_and_day,
    peak_offpeak,
    period_usages,
    rate,
    reference,
    single,
    step,
    tiered,
)

BERLIN = ZoneInfo("Europe/Berlin")
Outcome = Rating | str  # a Rating, or the error code the record fails with


def rate_compiled(
    tariff: Tariff, records: Sequence[Record], splits: Sequence[int] = ()
) -> list[Outcome]:
    """Rate ``records`` in consecutive batches cut at ``splits``, with one Rater and one set of
    period counters (so the day cache and the counters carry over from batch to batch)."""
    rater = Rater(tariff)
    counters = PeriodCounters()
    out: list[Outcome] = []
    for a, b in pairwise([0, *sorted(splits), len(records)]):
        batch = rater.rate(columns_of(records[a:b]), counters)
        assert len(batch) == b - a
        for i in range(b - a):
            code = batch.error_code(i)
            out.append(batch.rating(i) if code is None else code)
    return out


def rate_referenced(tariff: Tariff, records: Sequence[Record]) -> list[Outcome]:
    usages = period_usages(tariff, records)
    return [reference(tariff, r, u) for r, u in zip(records, usages, strict=True)]


def assert_agree(
    tariff: Tariff, records: Sequence[Record], splits: Sequence[int] = ()
) -> list[Outcome]:
    """Assert the compiled path and the reference agree on every record; return the outcomes."""
    compiled = rate_compiled(tariff, records, splits)
    expected = rate_referenced(tariff, records)
    wrong = [i for i, (c, e) in enumerate(zip(compiled, expected, strict=True)) if c != e]
    report = "".join(
        f"\nrecord {i}: {describe(records[i])}\n  kernel:    {compiled[i]}\n"
        f"  reference: {expected[i]}"
        for i in wrong[:3]
    )
    assert not wrong, f"{len(wrong)} of {len(records)} records disagree:{report}"
    return expected


def shape(outcome: Outcome) -> str | list[tuple[str, int, int, int]]:
    """(timing, step, offset, usage) of each span, or the error code."""
    if isinstance(outcome, str):
        return outcome
    return [(s.timing, s.step, s.offset, s.usage) for s in outcome.spans]


# -- hand-picked cases ----------------------------------------------------------------
MONDAY = datetime(2024, 1, 15, tzinfo=BERLIN)
FRIDAY = datetime(2024, 1, 19, tzinfo=BERLIN)


def at(day: datetime, hours: int, minutes: int = 0, seconds: int = 0) -> datetime:
    return day + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def lord_howe_day() -> Tariff:
    """Lord Howe, whose clocks go back half an hour: NIGHT from 00:00, DAY from 01:45."""
    return night_and_day(HOUR + 45 * 60, "Australia/Lord_Howe")


def no_timing_on_weekends() -> Tariff:
    rates = (rate("R", step("0.01")),)
    drs = (DestinationRate(id="DR", destination="DE", rate="R"),)
    bindings = (Binding(destination_rate="DR", timing="WEEKDAYS"),)
    return make_tariff(bindings, rates, drs, (Timing(id="WEEKDAYS", weekdays=(1, 2, 3, 4, 5)),))


def capped(strategy: MaxCostStrategy) -> Tariff:
    return single(
        rate("R", step("0.2", 60, 60), step("0.1", 60, 1, start=60), connect="0.4"),
        max_cost=650_000_000,
        max_cost_strategy=strategy,
    )


def data(start: datetime, usage: int, account: str = "acc1", category: str = "data") -> Record:
    return call(start, usage, kind=KIND_DATA, account=account, category=category)


T = tuple[str, int, int, int]
CASES: list[tuple[str, Tariff, list[Record], list[str | list[T]]]] = [
    (
        "call across 19:00",
        peak_offpeak(),
        [call(at(MONDAY, 18, 58), 240)],
        [[("PEAK", 0, 0, 120), ("OFFPEAK_EVENING", 0, 120, 120)]],
    ),
    (
        "minute straddling 19:00 is billed whole at the old price",
        peak_offpeak(60, 60),
        [call(at(MONDAY, 18, 59, 30), 150)],
        [[("PEAK", 0, 0, 60), ("OFFPEAK_EVENING", 0, 60, 90)]],
    ),
    (
        "call across midnight into the weekend",
        peak_offpeak(),
        [call(at(FRIDAY, 23, 59), 120)],
        [[("OFFPEAK_EVENING", 0, 0, 60), ("WEEKEND", 0, 60, 60)]],
    ),
    (
        "3-hour call from peak into the evening",
        peak_offpeak(60, 7),
        [call(at(MONDAY, 17, 30, 5), 3 * HOUR)],
        [[("PEAK", 0, 0, 5397), ("OFFPEAK_EVENING", 0, 5397, 5403)]],
    ),
    (
        "3-hour call from Friday evening into Saturday",
        peak_offpeak(),
        [call(at(FRIDAY, 22), 3 * HOUR)],
        [[("OFFPEAK_EVENING", 0, 0, 2 * HOUR), ("WEEKEND", 0, 2 * HOUR, HOUR)]],
    ),
    (
        "DST spring forward in Berlin",
        night_and_day(3 * HOUR),
        [call(datetime(2024, 3, 31, 0, 58, tzinfo=UTC), 240)],
        [[("NIGHT", 0, 0, 120), ("DAY", 0, 120, 120)]],
    ),
    (
        "DST fall back in Berlin repeats 02:30",
        night_and_day(2 * HOUR + 1800),
        [call(datetime(2024, 10, 27, 0, 29, tzinfo=UTC), 3720)],
        [
            [
                ("NIGHT", 0, 0, 60),
                ("DAY", 0, 60, 1800),
                ("NIGHT", 0, 1860, 1800),
                ("DAY", 0, 3660, 60),
            ]
        ],
    ),
    (
        "DST spring forward in New York skips 02:30",
        night_and_day(2 * HOUR + 1800, "America/New_York"),
        [call(datetime(2024, 3, 10, 6, 59, tzinfo=UTC), 120)],
        [[("NIGHT", 0, 0, 60), ("DAY", 0, 60, 60)]],
    ),
    (
        "Lord Howe goes back half an hour: 01:45 comes twice",
        lord_howe_day(),
        # 2024-04-07 02:00 +11 is 01:30 +10:30; 01:40 +11 is 14:40 UTC.
        [call(datetime(2024, 4, 6, 14, 40, tzinfo=UTC), 3600)],
        [
            [
                ("NIGHT", 0, 0, 300),
                ("DAY", 0, 300, 900),
                ("NIGHT", 0, 1200, 900),
                ("DAY", 0, 2100, 1500),
            ]
        ],
    ),
    (
        "Christmas outweighs peak",
        peak_offpeak(holiday=True),
        [call(at(datetime(2024, 12, 25, tzinfo=BERLIN), 10), 600)],
        [[("XMAS", 0, 0, 600)]],
    ),
    (
        "call into Christmas at midnight, out of it two days later",
        peak_offpeak(holiday=True),
        [
            call(at(datetime(2024, 12, 24, tzinfo=BERLIN), 23, 59), 120),
            call(at(datetime(2024, 12, 26, tzinfo=BERLIN), 23, 59), 120),
        ],
        [
            [("OFFPEAK_EVENING", 0, 0, 60), ("XMAS", 0, 60, 60)],
            [("XMAS", 0, 0, 60), ("OFFPEAK_MORNING", 0, 60, 60)],
        ],
    ),
    (
        "call across the year boundary into New Year's Day",
        peak_offpeak(holiday=True),
        [call(at(datetime(2024, 12, 31, tzinfo=BERLIN), 23, 58), 300)],
        [[("OFFPEAK_EVENING", 0, 0, 120), ("NEW_YEAR", 0, 120, 180)]],
    ),
    (
        "graduated tier split by the month's earlier usage",
        tiered(Basis.GRADUATED),
        [
            data(at(MONDAY, 9), 990),
            data(at(MONDAY, 10), 20),
            data(at(MONDAY, 11), 20, account="acc2"),  # another account: its own tiers
            data(at(MONDAY, 12), 20, category="call"),  # another category, too
            data(datetime(2024, 1, 31, 23, 30, tzinfo=UTC), 20),  # already February in Berlin
            data(at(MONDAY, 13), 5),
        ],
        [
            [(ANY, 0, 0, 990)],
            [(ANY, 0, 0, 10), (ANY, 1, 10, 10)],
            [(ANY, 0, 0, 20)],
            [(ANY, 0, 0, 20)],
            [(ANY, 0, 0, 20)],
            [(ANY, 1, 0, 5)],
        ],
    ),
    (
        "volume tier reached by the record's last unit",
        tiered(Basis.VOLUME),
        [data(at(MONDAY, 9), 980), data(at(MONDAY, 10), 20), data(at(MONDAY, 11), 21)],
        [[(ANY, 0, 0, 980)], [(ANY, 0, 0, 20)], [(ANY, 1, 0, 21)]],
    ),
    (
        "a call running out of every timing fails, one ending in time does not",
        no_timing_on_weekends(),
        [call(at(FRIDAY, 23, 59, 30), 60), call(at(FRIDAY, 23, 59, 30), 30)],
        [NO_TIMING_IN_FORCE, [("WEEKDAYS", 0, 0, 30)]],
    ),
    (
        "guide errors",
        peak_offpeak(),
        [
            call(at(MONDAY, 10), 60, destination="3312"),
            call(at(MONDAY, 10), 60, category="sms"),
            call(datetime(2009, 12, 31, tzinfo=UTC), 60),
            call(at(MONDAY, 10), 0, destination="3312"),
        ],
        [
            UNAUTHORIZED_DESTINATION,
            RATING_PLAN_NOT_FOUND,
            RATING_PLAN_NOT_FOUND,
            UNAUTHORIZED_DESTINATION,
        ],
    ),
    (
        "zero usage and non-time-based kinds",
        peak_offpeak(),
        [
            call(at(MONDAY, 18, 58), 0),
            call(at(MONDAY, 18, 58), 240, kind=KIND_SMS),
            call(at(MONDAY, 18, 58), 240, kind=KIND_EVENT),
        ],
        [[], [("PEAK", 0, 0, 240)], [("PEAK", 0, 0, 240)]],
    ),
]


@pytest.mark.parametrize(
    ("tariff", "records", "shapes"),
    [pytest.param(tariff, records, shapes, id=name) for name, tariff, records, shapes in CASES],
)
def test_hand_picked_cases(
    tariff: Tariff, records: list[Record], shapes: list[str | list[T]]
) -> None:
    outcomes = assert_agree(tariff, records)
    assert [shape(o) for o in outcomes] == shapes
    # one record a batch: the counters and the day cache carry over between calls
    assert_agree(tariff, records, splits=range(1, len(records)))


@pytest.mark.parametrize(
    ("strategy", "flags"),
    [
        (MaxCostStrategy.CAP, FLAG_MAX_COST_CAPPED),
        (MaxCostStrategy.DISCONNECT, FLAG_MAX_COST_DISCONNECT),
    ],
)
def test_max_cost(strategy: MaxCostStrategy, flags: int) -> None:
    outcomes = assert_agree(capped(strategy), [call(at(MONDAY, 10), 120), call(at(MONDAY, 10), 45)])
    over, under = (o for o in outcomes if isinstance(o, Rating))
    assert (over.subtotal, over.flags) == (700_000_000, flags)
    assert over.cost == (650_000_000 if strategy is MaxCostStrategy.CAP else 700_000_000)
    assert (under.cost, under.flags) == (600_000_000, 0)


@pytest.mark.parametrize(
    ("price", "unit", "increment", "usage", "method", "amount"),
    [
        # 3 units at 3 nanos per 2 are 4.5 nanos: half-even rounds to 4, the whole quotient
        # being even (not 5, from 3 for the first two units plus 1.5 rounded to 2)
        (3, 2, 1, 3, Rounding.HALF_EVEN, 4),
        (3, 2, 1, 5, Rounding.HALF_EVEN, 8),
        (3, 2, 1, 3, Rounding.HALF_UP, 5),
        (3, 2, 1, 3, Rounding.DOWN, 4),
        # 10 EUR a GB billed by the MB: 950 MB cost 9.5 EUR, though 950e6 * 1e10 passes int64
        (10**10, 10**9, 10**6, 950 * 10**6, Rounding.UP, 9_500_000_000),
        (10**10, 10**9, 10**6, 2_950 * 10**6, Rounding.UP, 29_500_000_000),
        # a 4-GB unit: even the product of the remainders passes int64; 0.75 nano rounds up
        (43_500_000_001, 4 * 10**9, 10**6, 3 * 10**9, Rounding.UP, 32_625_000_001),
        (43_500_000_001, 4 * 10**9, 10**6, 3 * 10**9, Rounding.HALF_EVEN, 32_625_000_001),
        (43_500_000_001, 4 * 10**9, 10**6, 3 * 10**9, Rounding.DOWN, 32_625_000_000),
    ],
)
def test_span_amount_is_exact(
    price: int, unit: int, increment: int, usage: int, method: Rounding, amount: int
) -> None:
    steps = (RateStep(group_start=0, price=price, rate_unit=unit, increment=increment),)
    tariff = single(Rate(id="R", steps=steps), rounding=method, decimals=9)
    (rating,) = assert_agree(tariff, [data(at(MONDAY, 10), usage)])
    assert isinstance(rating, Rating)
    assert (rating.spans[0].amount, rating.cost) == (amount, amount)


def test_calls_of_up_to_31_days() -> None:
    """A 31-day call is cut at every peak and weekend change; one second more is refused
    after guiding (a call that cannot be guided keeps its guide error)."""
    month = 31 * 24 * HOUR
    records = [
        call(at(MONDAY, 9), month),
        call(at(MONDAY, 9), month + 1),
        call(at(MONDAY, 9), month + 1, destination="3312"),
        call(at(MONDAY, 9), month + 1, kind=KIND_DATA),  # only time-based usage is a call
    ]
    long_call, *refused = assert_agree(peak_offpeak(60, 60), records[:3])
    assert isinstance(long_call, Rating)
    assert len(long_call.spans) > 60
    assert sum(s.usage for s in long_call.spans) == month
    assert refused == [USAGE_OUT_OF_RANGE, UNAUTHORIZED_DESTINATION]
    assert rate_compiled(peak_offpeak(60, 60), records[3:])[0] != USAGE_OUT_OF_RANGE


def test_days_sharing_a_day_cache_slot() -> None:
    """Days 8 apart share a slot of the 8-day cache but not a weekday: a stale cut shows."""
    offsets = (0, 8, 16, 1, 9, 17, 0, 24, 5, 13, 6, 14, 8, 0, 32, 40, 3, 11)
    days = [MONDAY + timedelta(days=k) for k in offsets]
    records = [call(at(d, 10), 60) for d in days]
    records += [call(at(d, 18, 59), 120) for d in reversed(days)]
    outcomes = assert_agree(peak_offpeak(), records, splits=[7, 20])
    timings = Counter(s.timing for o in outcomes if isinstance(o, Rating) for s in o.spans)
    assert set(timings) == {"PEAK", "OFFPEAK_EVENING", "WEEKEND"}


def test_empty_batch() -> None:
    assert rate_compiled(peak_offpeak(), []) == []


# -- random tariffs and batches -------------------------------------------------------
RANDOM = settings(
    max_examples=150,
    deadline=None,
    database=None,  # a shared checkout: no .hypothesis directory; a failure prints its blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _events(outcome: Outcome) -> list[str]:
    """Labels for ``--hypothesis-show-statistics``: which paths the examples took."""
    if isinstance(outcome, str):
        return [outcome]
    labels = [f"spans: {min(len(outcome.spans), 3)}{'+' if len(outcome.spans) >= 3 else ''}"]
    if len({s.timing for s in outcome.spans}) > 1:
        labels.append("timing changes within the record")
    if any(s.step > 0 for s in outcome.spans):
        labels.append("a later rate step")
    if outcome.flags:
        labels.append(f"max cost flag {outcome.flags}")
    return labels


def _own_plan(tariff: Tariff, record: Record) -> str | None:
    """The plan of the profile in force for the record's subject (or ``*any``)."""
    for subject in (record.subject, ANY):
        key = (record.tenant, record.category, subject)
        active = [
            p
            for p in tariff.profiles
            if (p.tenant, p.category, p.subject) == key and p.activation <= record.start
        ]
        if active:
            return max(active, key=lambda p: p.activation).plan
    return None


def check_batch(case: strategies.Batch) -> None:
    """Rate the batch both ways (in two calls to the Rater), and label what it covered."""
    tariff, records, split = case
    outcomes = assert_agree(tariff, records, [split])
    usages = period_usages(tariff, records)
    for record, outcome, before in zip(records, outcomes, usages, strict=True):
        for label in _events(outcome):
            event(label)
        if isinstance(outcome, Rating) and before:
            event("rated with earlier usage in its volume-tier period")
        if isinstance(outcome, Rating) and outcome.plan != _own_plan(tariff, record):
            event("rated by a fallback subject's plan")


@RANDOM
@given(strategies.batches())
def test_random_tariffs_and_batches(case: strategies.Batch) -> None:
    check_batch(case)


@settings(RANDOM, max_examples=120)
@given(strategies.timed_batches())
def test_calls_cut_by_timings(case: strategies.Batch) -> None:
    check_batch(case)


@settings(RANDOM, max_examples=80)
@given(strategies.guided_batches())
def test_fallback_subjects(case: strategies.Batch) -> None:
    check_batch(case)


@settings(RANDOM, max_examples=100)
@given(strategies.tiered_batches())
def test_volume_tiers(case: strategies.Batch) -> None:
    check_batch(case)


@st.composite
def _span_prices(draw: st.DrawFn) -> tuple[RateStep, int]:
    """One rate step and a usage: any unit below 2**62, any price keeping the amount in int64."""
    unit = draw(
        st.one_of(
            st.sampled_from([2, 60, 1024, 10**9, 4 * 10**9, 2**62 - 1]), st.integers(1, 2**62 - 1)
        )
    )
    increment = draw(st.one_of(st.sampled_from([1, 60, 10**6]), st.integers(1, 10**7)))
    usage = draw(st.integers(1, increment * strategies.INCREMENT_BUDGET))
    billed = -(-usage // increment) * increment
    most = min(2**62, 10**18 * unit // billed)  # the amount stays below 10**18 nanos
    price = draw(st.one_of(st.integers(0, 9), st.integers(0, most), st.integers(most // 2, most)))
    return RateStep(group_start=0, price=price, rate_unit=unit, increment=increment), usage


@settings(RANDOM, max_examples=200)
@given(_span_prices(), st.sampled_from(Rounding))
def test_span_amounts_at_any_size(priced: tuple[RateStep, int], method: Rounding) -> None:
    the_step, usage = priced
    tariff = single(Rate(id="R", steps=(the_step,)), rounding=method, decimals=9)
    (rating,) = assert_agree(tariff, [data(at(MONDAY, 10), usage)])
    assert isinstance(rating, Rating)


@settings(RANDOM, max_examples=30)
@given(
    st.one_of(
        strategies.tariffs(),
        strategies.timed_tariffs(),
        strategies.guided_tariffs(),
        strategies.tiered_tariffs(),
    )
)
def test_random_tariffs_are_valid(tariff: Tariff) -> None:
    check_tariff(tariff)


# -- a batch that outgrows the first span arrays ----------------------------------------
def test_200k_long_calls_outgrow_the_first_span_arrays(rng: SeededRandom) -> None:
    """2–5-hour calls on random days of 2019–2031, cut at every hour: about 3.5 spans a
    record, more than the 2 a record the span arrays start with, and a day cache that
    misses on almost every record."""
    numbers = rng.numpy()
    n = 200_000
    lo = micros(datetime(2019, 1, 1, tzinfo=UTC))
    hi = micros(datetime(2031, 12, 31, tzinfo=UTC))
    starts = numbers.integers(lo, hi, n)
    usages = numbers.integers(2 * HOUR, 5 * HOUR, n)
    records = [
        Record(KIND_VOICE, "t", "acc1", "call", "1001", "4930123456", int(s), int(u))
        for s, u in zip(starts.tolist(), usages.tolist(), strict=True)
    ]
    tariff = hourly(60)
    batch = Rater(tariff).rate(columns_of(records))
    assert not batch.error.any()
    assert batch.span_start[-1] > 2 * n + 16  # more than the first span arrays hold
    # each record's spans cover its usage and add up to its subtotal
    firsts = batch.span_start[:-1]
    assert (np.add.reduceat(batch.sp_usage, firsts) == usages).all()
    assert (np.add.reduceat(batch.sp_amount, firsts) == batch.subtotal).all()
    sample = sorted({0, n - 1, *numbers.choice(n, 80, replace=False).tolist()})
    for i in sample:
        assert batch.rating(i) == reference(tariff, records[i]), describe(records[i])


# -- what the compiled tables cannot hold is refused before compiling -------------------
@pytest.mark.parametrize("year", [1763, 2200])
def test_timing_years_outside_the_compiled_mask_are_refused(year: int) -> None:
    """The compiled year mask holds 1900..2155; the validator refuses other years."""
    tariff = make_tariff(
        (Binding(destination_rate="DR", timing="Y"),),
        (rate("R", step("0.01")),),
        (DestinationRate(id="DR", destination="DE", rate="R"),),
        (Timing(id="Y", years=(year,)),),
    )
    with pytest.raises(
        TariffError, match=rf"timings\.Y\.years: {year} is not a year \(1900\.\.2155\)"
    ):
        check_tariff(tariff)
