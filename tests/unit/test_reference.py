"""The reference rater on small hand-built tariffs, then on the CGRateS corpus."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tariffs.cgrates import load_cgrates
from tariffs.exceptions import RatingError
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
from tariffs.money import parse_amount
from tariffs.rated import (
    FLAG_MAX_COST_CAPPED,
    FLAG_MAX_COST_DISCONNECT,
    NO_TIMING_IN_FORCE,
    RATING_PLAN_NOT_FOUND,
    UNAUTHORIZED_DESTINATION,
    Rating,
    Span,
)
from tariffs.reference import rate_reference

BERLIN = ZoneInfo("Europe/Berlin")
EPOCH = datetime(2010, 1, 1, tzinfo=UTC)
MONDAY_10 = datetime(2024, 1, 15, 10, 0, tzinfo=BERLIN)
DESTINATIONS = {
    "DE": ("49",),
    "DE_MOBILE": ("4915", "4916"),
    "FR": ("33",),
    "US": ("1",),
    "DST_20": ("20",),
    "DST_2030": ("20", "30"),
}
WEEKDAYS = (1, 2, 3, 4, 5)
PEAK = Timing(id="PEAK", weekdays=WEEKDAYS, start=8 * 3600)
OFFPEAK_MORNING = Timing(id="OFFPEAK_MORNING", weekdays=WEEKDAYS)
OFFPEAK_EVENING = Timing(id="OFFPEAK_EVENING", weekdays=WEEKDAYS, start=19 * 3600)
WEEKEND = Timing(id="WEEKEND", weekdays=(6, 7))


def nanos(text: str) -> int:
    return parse_amount(text, "test")


def step(price: str, unit: int = 1, increment: int = 1, start: int = 0) -> RateStep:
    return RateStep(group_start=start, price=nanos(price), rate_unit=unit, increment=increment)


def rate(rate_id: str, *steps: RateStep, connect: str = "0", basis: Basis = Basis.RECORD) -> Rate:
    return Rate(id=rate_id, steps=steps, connect_fee=nanos(connect), basis=basis)


def profile(subject: str, plan: str, *fallbacks: str, since: datetime = EPOCH) -> RatingProfile:
    return RatingProfile(
        tenant="t",
        category="call",
        subject=subject,
        activation=since,
        plan=plan,
        fallback_subjects=fallbacks,
    )


def make_tariff(
    plans: Mapping[str, tuple[Binding, ...]],
    rates: tuple[Rate, ...],
    dest_rates: tuple[DestinationRate, ...],
    timings: tuple[Timing, ...] = (),
    profiles: tuple[RatingProfile, ...] = (profile(ANY, "P"),),
) -> Tariff:
    return Tariff(
        name="test",
        currency="EUR",
        timezone="Europe/Berlin",
        destinations=DESTINATIONS,
        timings={t.id: t for t in timings},
        rates={r.id: r for r in rates},
        destination_rates={d.id: d for d in dest_rates},
        plans={pid: RatingPlan(id=pid, bindings=b) for pid, b in plans.items()},
        profiles=profiles,
    )


def single(the_rate: Rate, **dest_rate: Any) -> Tariff:
    """One plan "P" binding "DR" (destination DE) to ``the_rate`` at all times."""
    dr = DestinationRate(id="DR", destination="DE", rate=the_rate.id, **dest_rate)
    return make_tariff({"P": (Binding(destination_rate="DR"),)}, (the_rate,), (dr,))


def rate_it(
    tariff: Tariff,
    usage: int,
    start: datetime = MONDAY_10,
    *,
    subject: str = "1001",
    destination: str = "4930123456",
    time_based: bool = True,
    period_usage: int = 0,
) -> Rating:
    return rate_reference(
        tariff,
        tenant="t",
        category="call",
        subject=subject,
        destination=destination,
        start=start,
        usage=usage,
        time_based=time_based,
        period_usage=period_usage,
    )


def code_of(tariff: Tariff, usage: int, start: datetime = MONDAY_10, **kwargs: Any) -> str:
    """The error code with which rating fails."""
    with pytest.raises(RatingError) as info:
        rate_it(tariff, usage, start, **kwargs)
    return info.value.code


def spans_of(rating: Rating) -> list[tuple[str, int, int, int, int]]:
    """(timing, step, offset, usage, amount) of each span: the shape of the cut."""
    return [(s.timing, s.step, s.offset, s.usage, s.amount) for s in rating.spans]


# The CGRateS tutorial's RT_20CNT: 0.4 to connect, 0.2 for the first whole
# minute, then 0.1 a minute billed by the second.
RT_20CNT = rate(
    "RT_20CNT",
    step("0.2", unit=60, increment=60),
    step("0.1", unit=60, increment=1, start=60),
    connect="0.4",
)


def test_single_step_per_second() -> None:
    rating = rate_it(single(rate("R", step("0.01"))), 45)
    assert rating == Rating(
        plan="P",
        destination="DE",
        prefix="49",
        connect_fee=0,
        spans=(
            Span(
                destination_rate="DR",
                timing=ANY,
                rate="R",
                step=0,
                offset=0,
                usage=45,
                billed=45,
                increment=1,
                price=10_000_000,
                rate_unit=1,
                amount=450_000_000,
            ),
        ),
        subtotal=450_000_000,
        cost=450_000_000,
    )


def test_minute_block_then_seconds() -> None:
    rating = rate_it(single(RT_20CNT), 120)
    assert rating.connect_fee == 400_000_000
    assert spans_of(rating) == [(ANY, 0, 0, 60, 200_000_000), (ANY, 1, 60, 60, 100_000_000)]
    assert [(s.billed, s.increment) for s in rating.spans] == [(60, 60), (60, 1)]
    assert (rating.subtotal, rating.cost) == (700_000_000, 700_000_000)


@pytest.mark.parametrize(
    ("usage", "subtotal", "cost"),
    [
        (1, 600_000_000, 600_000_000),  # the first minute is billed whole
        (60, 600_000_000, 600_000_000),
        (61, 601_666_667, 601_700_000),  # 0.1/60 rounds up to nanos, then to 4 decimals
        (90, 650_000_000, 650_000_000),
    ],
)
def test_minute_block_partial_usage(usage: int, subtotal: int, cost: int) -> None:
    rating = rate_it(single(RT_20CNT), usage)
    assert (rating.subtotal, rating.cost) == (subtotal, cost)
    assert sum(s.usage for s in rating.spans) == usage


def peak_offpeak(price_unit: int = 1, increment: int = 1) -> Tariff:
    """Plan "P": DE at 0.02 a unit in PEAK, 0.01 off-peak, 0.005 at weekends."""
    rates = (
        rate("R_PEAK", step("0.02", price_unit, increment)),
        rate("R_OFF", step("0.01", price_unit, increment)),
        rate("R_WKND", step("0.005", price_unit, increment)),
    )
    drs = (
        DestinationRate(id="DR_PEAK", destination="DE", rate="R_PEAK"),
        DestinationRate(id="DR_OFF", destination="DE", rate="R_OFF"),
        DestinationRate(id="DR_WKND", destination="DE", rate="R_WKND"),
    )
    bindings = (
        Binding(destination_rate="DR_PEAK", timing="PEAK", weight=10),
        Binding(destination_rate="DR_OFF", timing="OFFPEAK_MORNING", weight=10),
        Binding(destination_rate="DR_OFF", timing="OFFPEAK_EVENING", weight=10),
        Binding(destination_rate="DR_WKND", timing="WEEKEND", weight=10),
    )
    timings = (PEAK, OFFPEAK_MORNING, OFFPEAK_EVENING, WEEKEND)
    return make_tariff({"P": bindings}, rates, drs, timings)


def test_call_crossing_19_00_splits_peak_from_offpeak() -> None:
    rating = rate_it(peak_offpeak(), 240, datetime(2024, 1, 15, 18, 58, tzinfo=BERLIN))
    assert spans_of(rating) == [
        ("PEAK", 0, 0, 120, 2_400_000_000),
        ("OFFPEAK_EVENING", 0, 120, 120, 1_200_000_000),
    ]
    assert rating.cost == 3_600_000_000


def test_increment_straddling_19_00_is_billed_whole_at_the_old_price() -> None:
    tariff = peak_offpeak(price_unit=60, increment=60)
    rating = rate_it(tariff, 150, datetime(2024, 1, 15, 18, 59, 30, tzinfo=BERLIN))
    # 18:59:30-19:00:30 is one PEAK minute; billing resumes off-peak at 19:00:30.
    assert spans_of(rating) == [
        ("PEAK", 0, 0, 60, 20_000_000),
        ("OFFPEAK_EVENING", 0, 60, 90, 20_000_000),
    ]
    assert [s.billed for s in rating.spans] == [60, 120]


def test_call_crossing_midnight_into_the_weekend() -> None:
    friday = datetime(2024, 1, 19, 23, 59, tzinfo=BERLIN)
    rating = rate_it(peak_offpeak(), 120, friday)
    assert spans_of(rating) == [
        ("OFFPEAK_EVENING", 0, 0, 60, 600_000_000),
        ("WEEKEND", 0, 60, 60, 300_000_000),
    ]
    assert rating.cost == 900_000_000


def test_holiday_with_higher_weight_beats_a_later_start() -> None:
    tariff = peak_offpeak()
    xmas = Timing(id="XMAS", months=(12,), month_days=(25,))
    holiday = Binding(destination_rate="DR_HOLI", timing="XMAS", weight=20)
    tariff = make_tariff(
        {"P": (*tariff.plans["P"].bindings, holiday)},
        (*tariff.rates.values(), rate("R_HOLI", step("0.001"))),
        (
            *tariff.destination_rates.values(),
            DestinationRate(id="DR_HOLI", destination="DE", rate="R_HOLI"),
        ),
        (*tariff.timings.values(), xmas),
    )
    christmas = rate_it(tariff, 60, datetime(2024, 12, 25, 10, tzinfo=BERLIN))  # a Wednesday
    assert spans_of(christmas) == [("XMAS", 0, 0, 60, 60_000_000)]
    eve = rate_it(tariff, 60, datetime(2024, 12, 24, 10, tzinfo=BERLIN))
    assert spans_of(eve) == [("PEAK", 0, 0, 60, 1_200_000_000)]


def night_and_day(day_starts: int) -> Tariff:
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
    return make_tariff({"P": bindings}, rates, drs, timings)


def test_dst_spring_forward_in_berlin() -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST, so 01:58 CET + 120 s is 03:00.
    start = datetime(2024, 3, 31, 0, 58, tzinfo=UTC)
    rating = rate_it(night_and_day(3 * 3600), 240, start)
    assert spans_of(rating) == [
        ("NIGHT", 0, 0, 120, 1_200_000_000),
        ("DAY", 0, 120, 120, 2_400_000_000),
    ]


def test_dst_fall_back_in_berlin_repeats_the_wall_clock_hour() -> None:
    # 2024-10-27: 03:00 CEST falls back to 02:00 CET, so 02:30 comes twice.
    start = datetime(2024, 10, 27, 0, 29, tzinfo=UTC)  # 02:29 CEST
    rating = rate_it(night_and_day(2 * 3600 + 1800), 3720, start)
    assert spans_of(rating) == [
        ("NIGHT", 0, 0, 60, 600_000_000),
        ("DAY", 0, 60, 1800, 36_000_000_000),
        ("NIGHT", 0, 1860, 1800, 18_000_000_000),
        ("DAY", 0, 3660, 60, 1_200_000_000),
    ]
    assert rating.cost == 55_800_000_000


@pytest.mark.parametrize(
    ("method", "decimals", "subtotal", "cost"),
    [
        (Rounding.UP, 4, "0.12345", "0.1235"),
        (Rounding.DOWN, 4, "0.12345", "0.1234"),
        (Rounding.HALF_UP, 4, "0.12345", "0.1235"),
        (Rounding.HALF_EVEN, 4, "0.12345", "0.1234"),
        (Rounding.HALF_EVEN, 4, "0.12355", "0.1236"),
        (Rounding.HALF_UP, 4, "0.123449", "0.1234"),
        (Rounding.UP, 2, "0.125", "0.13"),
        (Rounding.DOWN, 2, "0.125", "0.12"),
        (Rounding.HALF_UP, 2, "0.125", "0.13"),
        (Rounding.HALF_EVEN, 2, "0.125", "0.12"),
        (Rounding.HALF_EVEN, 2, "0.135", "0.14"),
        (Rounding.UP, 2, "0.120000001", "0.13"),
        (Rounding.DOWN, 2, "0.129999999", "0.12"),
    ],
)
def test_total_rounding(method: Rounding, decimals: int, subtotal: str, cost: str) -> None:
    tariff = single(rate("R", step(subtotal)), rounding=method, decimals=decimals)
    rating = rate_it(tariff, 1)
    assert (rating.subtotal, rating.cost) == (nanos(subtotal), nanos(cost))


@pytest.mark.parametrize(
    ("method", "third", "half"),
    [
        (Rounding.UP, 4, 3),
        (Rounding.DOWN, 3, 2),
        (Rounding.HALF_UP, 3, 3),
        (Rounding.HALF_EVEN, 3, 2),
    ],
)
def test_span_amount_rounds_to_nanos_by_the_method(method: Rounding, third: int, half: int) -> None:
    # 10 nanos per 3 units and 5 nanos per 2 units, one unit billed: 3.33 and 2.5 nanos.
    per_three = RateStep(group_start=0, price=10, rate_unit=3, increment=1)
    per_two = RateStep(group_start=0, price=5, rate_unit=2, increment=1)
    for price_step, expected in ((per_three, third), (per_two, half)):
        tariff = single(Rate(id="R", steps=(price_step,)), rounding=method, decimals=9)
        rating = rate_it(tariff, 1)
        assert (rating.spans[0].amount, rating.cost) == (expected, expected)


@pytest.mark.parametrize(
    ("strategy", "usage", "max_cost", "cost", "flags"),
    [
        (MaxCostStrategy.CAP, 120, "0.5", 500_000_000, FLAG_MAX_COST_CAPPED),
        (MaxCostStrategy.DISCONNECT, 120, "0.5", 700_000_000, FLAG_MAX_COST_DISCONNECT),
        (MaxCostStrategy.CAP, 45, "0.65", 600_000_000, 0),
        (MaxCostStrategy.DISCONNECT, 45, "0.65", 600_000_000, 0),
        (MaxCostStrategy.CAP, 120, "0.7", 700_000_000, 0),  # reaching it is not exceeding it
    ],
)
def test_max_cost(
    strategy: MaxCostStrategy, usage: int, max_cost: str, cost: int, flags: int
) -> None:
    tariff = single(RT_20CNT, max_cost=nanos(max_cost), max_cost_strategy=strategy)
    rating = rate_it(tariff, usage)
    assert (rating.cost, rating.flags) == (cost, flags)
    assert rating.subtotal == sum(s.amount for s in rating.spans) + 400_000_000


def test_zero_usage_charges_nothing_but_still_guides() -> None:
    tariff = single(RT_20CNT)
    rating = rate_it(tariff, 0)
    assert rating == Rating(
        plan="P", destination="DE", prefix="49", connect_fee=0, spans=(), subtotal=0, cost=0
    )
    assert code_of(tariff, 0, destination="33123") == UNAUTHORIZED_DESTINATION


def fallback_tariff() -> Tariff:
    """A falls back to B then D; B to C; C back to A. Each plan binds one destination."""
    plans = {
        "PA": (Binding(destination_rate="DR_US"),),
        "PB": (Binding(destination_rate="DR_FR"),),
        "PC": (Binding(destination_rate="DR_DE_C"),),
        "PD": (Binding(destination_rate="DR_DE_D"),),
    }
    rates = (rate("R1", step("0.01")), rate("R2", step("0.02")))
    drs = (
        DestinationRate(id="DR_US", destination="US", rate="R1"),
        DestinationRate(id="DR_FR", destination="FR", rate="R1"),
        DestinationRate(id="DR_DE_C", destination="DE", rate="R1"),
        DestinationRate(id="DR_DE_D", destination="DE", rate="R2"),
    )
    profiles = (
        profile("A", "PA", "NOBODY", "B", "D"),
        profile("B", "PB", "C"),
        profile("C", "PC", "A"),
        profile("D", "PD"),
    )
    return make_tariff(plans, rates, drs, profiles=profiles)


@pytest.mark.parametrize(
    ("destination", "plan", "cost"),
    [
        ("1555", "PA", 100_000_000),  # the subject's own plan
        ("3312", "PB", 100_000_000),  # first fallback
        ("4930", "PC", 100_000_000),  # B's fallback C, depth-first, before A's next (D)
    ],
)
def test_fallback_subjects(destination: str, plan: str, cost: int) -> None:
    rating = rate_it(fallback_tariff(), 10, subject="A", destination=destination)
    assert (rating.plan, rating.cost) == (plan, cost)


def test_fallback_cycle_ends_in_unauthorized_destination() -> None:
    code = code_of(fallback_tariff(), 10, subject="A", destination="44207")
    assert code == UNAUTHORIZED_DESTINATION


def prefix_tariff() -> Tariff:
    plans = {
        "P": (
            Binding(destination_rate="DR_ANY"),
            Binding(destination_rate="DR_DE"),
            Binding(destination_rate="DR_MOBILE"),
        )
    }
    rates = (rate("R1", step("0.001")), rate("R2", step("0.01")), rate("R3", step("0.02")))
    drs = (
        DestinationRate(id="DR_ANY", destination=ANY, rate="R1"),
        DestinationRate(id="DR_DE", destination="DE", rate="R2"),
        DestinationRate(id="DR_MOBILE", destination="DE_MOBILE", rate="R3"),
    )
    return make_tariff(plans, rates, drs)


@pytest.mark.parametrize(
    ("number", "destination", "prefix", "dest_rate", "cost"),
    [
        ("4916123", "DE_MOBILE", "4916", "DR_MOBILE", 200_000_000),
        ("4930123", "DE", "49", "DR_DE", 100_000_000),
        ("3312345", ANY, "", "DR_ANY", 10_000_000),
        ("", ANY, "", "DR_ANY", 10_000_000),
    ],
)
def test_longest_prefix_beats_shorter_and_any(
    number: str, destination: str, prefix: str, dest_rate: str, cost: int
) -> None:
    rating = rate_it(prefix_tariff(), 10, destination=number)
    assert (rating.destination, rating.prefix, rating.cost) == (destination, prefix, cost)
    assert rating.spans[0].destination_rate == dest_rate


@pytest.mark.parametrize(
    ("day", "destination", "cost"), [(1, "DST_20", 100_000_000), (2, "DST_2030", 200_000_000)]
)
def test_destination_is_that_of_the_binding_in_force(day: int, destination: str, cost: int) -> None:
    # Both destinations hold "20"; the New Year binding (weight 20) names DST_20.
    plans = {
        "P": (
            Binding(destination_rate="DR_2030", weight=10),
            Binding(destination_rate="DR_20", timing="NEW_YEAR", weight=20),
        )
    }
    rates = (rate("R1", step("0.01")), rate("R2", step("0.02")))
    drs = (
        DestinationRate(id="DR_20", destination="DST_20", rate="R1"),
        DestinationRate(id="DR_2030", destination="DST_2030", rate="R2"),
    )
    new_year = Timing(id="NEW_YEAR", months=(1,), month_days=(1,))
    tariff = make_tariff(plans, rates, drs, (new_year,))
    rating = rate_it(tariff, 10, datetime(2020, 1, day, 21, tzinfo=UTC), destination="2001")
    assert (rating.destination, rating.prefix, rating.cost) == (destination, "20", cost)


def test_unauthorized_destination() -> None:
    assert code_of(single(RT_20CNT), 60, destination="33123") == UNAUTHORIZED_DESTINATION


def test_rating_plan_not_found() -> None:
    tariff = single(RT_20CNT)
    before = datetime(2009, 12, 31, tzinfo=UTC)
    assert code_of(tariff, 60, before) == RATING_PLAN_NOT_FOUND
    with pytest.raises(RatingError) as info:
        rate_reference(
            tariff,
            tenant="another",
            category="call",
            subject="1001",
            destination="4930",
            start=MONDAY_10,
            usage=60,
            time_based=True,
        )
    assert info.value.code == RATING_PLAN_NOT_FOUND


def test_subject_with_only_future_profiles_uses_any_until_then() -> None:
    future = profile("1001", "P", since=datetime(2030, 1, 1, tzinfo=UTC))
    tariff = single(RT_20CNT)
    tariff = make_tariff(
        {"P": tariff.plans["P"].bindings},
        tuple(tariff.rates.values()),
        tuple(tariff.destination_rates.values()),
        profiles=(profile(ANY, "P"), future),
    )
    assert rate_it(tariff, 60).cost == 600_000_000
    assert rate_it(tariff, 60, subject="1002").cost == 600_000_000


@pytest.mark.parametrize(
    ("start", "plan", "cost"),
    [
        (datetime(2022, 6, 1, tzinfo=UTC), "P_OLD", 600_000_000),
        (datetime(2023, 1, 1, tzinfo=UTC), "P_NEW", 300_000_000),  # activation is inclusive
        (datetime(2024, 6, 1, tzinfo=UTC), "P_NEW", 300_000_000),
    ],
)
def test_latest_activation_wins(start: datetime, plan: str, cost: int) -> None:
    plans = {
        "P_OLD": (Binding(destination_rate="DR_OLD"),),
        "P_NEW": (Binding(destination_rate="DR_NEW"),),
    }
    rates = (rate("R_OLD", step("0.01")), rate("R_NEW", step("0.005")))
    drs = (
        DestinationRate(id="DR_OLD", destination="DE", rate="R_OLD"),
        DestinationRate(id="DR_NEW", destination="DE", rate="R_NEW"),
    )
    profiles = (
        profile("1001", "P_NEW", since=datetime(2023, 1, 1, tzinfo=UTC)),
        profile("1001", "P_OLD", since=datetime(2020, 1, 1, tzinfo=UTC)),
    )
    rating = rate_it(make_tariff(plans, rates, drs, profiles=profiles), 60, start)
    assert (rating.plan, rating.cost) == (plan, cost)


def tiered(basis: Basis) -> Tariff:
    """0.10 a unit for the first 1000 units of the period, 0.05 after that."""
    return single(rate("R", step("0.1"), step("0.05", start=1000), basis=basis))


@pytest.mark.parametrize(
    ("period_usage", "expected"),
    [
        (0, [(0, 0, 20, 2_000_000_000)]),
        (980, [(0, 0, 20, 2_000_000_000)]),
        (990, [(0, 0, 10, 1_000_000_000), (1, 10, 10, 500_000_000)]),  # split at 1000
        (1000, [(1, 0, 20, 1_000_000_000)]),
    ],
)
def test_graduated_tiers(period_usage: int, expected: list[tuple[int, int, int, int]]) -> None:
    rating = rate_it(tiered(Basis.GRADUATED), 20, time_based=False, period_usage=period_usage)
    assert [(s.step, s.offset, s.usage, s.amount) for s in rating.spans] == expected
    assert rating.cost == sum(amount for *_, amount in expected)


@pytest.mark.parametrize(
    ("period_usage", "step_index", "cost"),
    [(0, 0, 2_000_000_000), (980, 0, 2_000_000_000), (981, 1, 1_000_000_000)],
)
def test_volume_tiers(period_usage: int, step_index: int, cost: int) -> None:
    # The whole record is priced at the tier its last unit (period_usage + 19) reaches.
    rating = rate_it(tiered(Basis.VOLUME), 20, time_based=False, period_usage=period_usage)
    assert [(s.step, s.usage) for s in rating.spans] == [(step_index, 20)]
    assert rating.cost == cost


def test_non_time_based_record_ignores_timing_boundaries() -> None:
    start = datetime(2024, 1, 15, 18, 58, tzinfo=BERLIN)
    rating = rate_it(peak_offpeak(), 240, start, time_based=False)
    assert spans_of(rating) == [("PEAK", 0, 0, 240, 4_800_000_000)]


def test_no_timing_in_force() -> None:
    rates = (rate("R", step("0.01")),)
    drs = (DestinationRate(id="DR", destination="DE", rate="R"),)
    tariff = make_tariff(
        {"P": (Binding(destination_rate="DR", timing="PEAK"),)}, rates, drs, (PEAK,)
    )
    sunday = datetime(2024, 1, 21, 10, tzinfo=BERLIN)
    early = datetime(2024, 1, 15, 7, 59, 59, tzinfo=BERLIN)
    assert code_of(tariff, 60, sunday) == NO_TIMING_IN_FORCE
    assert code_of(tariff, 60, early) == NO_TIMING_IN_FORCE
    assert code_of(tariff, 0, sunday) == NO_TIMING_IN_FORCE
    # A call that runs out of every timing (Friday night into Saturday) fails too.
    friday_late = datetime(2024, 1, 19, 23, 59, 30, tzinfo=BERLIN)
    assert code_of(tariff, 60, friday_late) == NO_TIMING_IN_FORCE
    assert rate_it(tariff, 30, friday_late).cost == 300_000_000


def test_weekday_zero_is_sunday() -> None:
    rates = (rate("R", step("0.01")),)
    drs = (DestinationRate(id="DR", destination="DE", rate="R"),)
    sunday_only = Timing(id="SUN", weekdays=(0,))
    tariff = make_tariff(
        {"P": (Binding(destination_rate="DR", timing="SUN"),)}, rates, drs, (sunday_only,)
    )
    assert rate_it(tariff, 10, datetime(2024, 1, 21, 10, tzinfo=BERLIN)).cost == 100_000_000
    saturday = datetime(2024, 1, 20, 10, tzinfo=BERLIN)
    assert code_of(tariff, 10, saturday) == NO_TIMING_IN_FORCE


# --- Conformance with the CGRateS sample tariff plans (when the corpus is present) ---

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "cgrates" / "tariffplans"


@pytest.fixture(scope="module")
def cgrates_plan() -> Callable[[str], Tariff]:
    loaded: dict[str, Tariff] = {}

    def load(name: str) -> Tariff:
        if name not in loaded:
            loaded[name] = load_cgrates(CORPUS / name)
        return loaded[name]

    return load


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the CGRateS corpus is not beside the project")
@pytest.mark.parametrize(
    ("plan", "category", "subject", "destination", "start", "usage", "expected"),
    [
        ("tutorial2", "call", "1001", "1002", "2019-03-11T09:00:00Z", 45, "0.55"),
        ("tutorial2", "call", "1001", "1002", "2019-03-16T23:30:00Z", 45, "0.55"),
        ("tutorial2", "call", "1001", "1003", "2019-03-11T09:00:00Z", 45, "1.4"),
        ("tutorial2", "call", "1001", "1003", "2019-03-11T21:00:00Z", 45, "0.55"),
        ("tutorial2", "call", "1002", "2001", "2020-01-01T21:00:00Z", 45, "0.55"),
        ("tutorial2", "call", "1001", "4003", "2019-03-11T09:00:00Z", 60, UNAUTHORIZED_DESTINATION),
        ("tutorial2", "data", "1001", ANY, "2019-03-11T09:00:00Z", 2048, "2"),
        ("tutorial2", "sms", "1003", "1002", "2019-03-11T09:00:00Z", 1, "0.1"),
        ("tutorial2", "sms", "1001", "2001", "2019-03-11T09:00:00Z", 1, UNAUTHORIZED_DESTINATION),
        ("tutorial2", "call", "RPF_SPECIAL_BLC", "1002", "2019-03-11T09:00:00Z", 300, "0.1"),
        ("testtp", "call", "1001", "+4986517174963", "2024-01-01T10:00:00Z", 90, "90"),
        ("testtp", "call", "1001", "+4986517174963", "2024-01-01T10:00:00Z", 0, "0"),
        ("tutorial", "call", "1001", "1002", "2024-01-01T10:00:00Z", 120, "0.7"),
    ],
)
def test_cgrates_conformance(
    cgrates_plan: Callable[[str], Tariff],
    plan: str,
    category: str,
    subject: str,
    destination: str,
    start: str,
    usage: int,
    expected: str,
) -> None:
    tariff = cgrates_plan(plan)
    record: dict[str, Any] = {
        "tenant": "cgrates.org",
        "category": category,
        "subject": subject,
        "destination": destination,
        "start": datetime.fromisoformat(start),
        "usage": usage,
        "time_based": category == "call",
    }
    if expected == UNAUTHORIZED_DESTINATION:
        with pytest.raises(RatingError) as info:
            rate_reference(tariff, **record)
        assert info.value.code == expected
    else:
        assert rate_reference(tariff, **record).cost == nanos(expected)
