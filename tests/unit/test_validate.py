"""check_tariff: a valid tariff passes; each broken rule names its key."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from msgspec.structs import replace

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
    Tariff,
    Timing,
)
from tariffs.validate import check_tariff

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)
STEP = RateStep(group_start=0, price=100, rate_unit=60, increment=1)
RATE = Rate(id="RT", steps=(STEP, RateStep(60, 50, 60, 1)), connect_fee=10)
DRATE = DestinationRate(id="DR", destination="HOME", rate="RT")
PLAN = RatingPlan(id="RP", bindings=(Binding("DR", "DAY", 10.0), Binding("DR", ANY, 0.0)))
PROFILE = RatingProfile("t", "call", ANY, NEW_YEAR, "RP", ("nobody-has-this-subject",))
TIMING = Timing(id="DAY", years=(2026,), months=(1, 12), month_days=(1, 31), weekdays=(0, 7))
VALID = Tariff(
    name="valid",
    currency="EUR",
    timezone="Europe/Berlin",
    destinations={"HOME": ("49", "4915")},
    timings={"DAY": TIMING},
    rates={"RT": RATE},
    destination_rates={"DR": DRATE},
    plans={"RP": PLAN},
    profiles=(PROFILE,),
)


def test_valid_tariff_passes() -> None:
    check_tariff(VALID)  # fallback subjects need no profile; weekday 0 is Sunday


def test_max_cost_with_strategy_passes() -> None:
    capped = replace(DRATE, max_cost=1, max_cost_strategy=MaxCostStrategy.DISCONNECT)
    check_tariff(replace(VALID, destination_rates={"DR": capped}))


def broken(**changes: Any) -> str:
    with pytest.raises(TariffError) as caught:
        check_tariff(replace(VALID, **changes))
    return str(caught.value)


def with_timing(**changes: Any) -> dict[str, Timing]:
    return {"DAY": replace(TIMING, **changes)}


def with_rate(**changes: Any) -> dict[str, Rate]:
    return {"RT": replace(RATE, **changes)}


def with_step(**changes: Any) -> dict[str, Rate]:
    return with_rate(steps=(replace(STEP, **changes),))


def with_drate(**changes: Any) -> dict[str, DestinationRate]:
    return {"DR": replace(DRATE, **changes)}


def with_profile(**changes: Any) -> tuple[RatingProfile, ...]:
    return (replace(PROFILE, **changes),)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": " "}, "tariff.name: must not be empty"),
        ({"currency": ""}, "tariff.currency: '' is not a currency code like 'EUR'"),
        (
            {"timezone": "Mars/Olympus"},
            "tariff.timezone: 'Mars/Olympus' is not a known IANA time zone"
            " (like 'Europe/Berlin' or 'UTC')",
        ),
        (
            {"timezone": "../etc"},
            "tariff.timezone: '../etc' is not a known IANA time zone"
            " (like 'Europe/Berlin' or 'UTC')",
        ),
        ({"destinations": {"HOME": ()}}, "destinations.HOME: has no prefixes"),
        (
            {"destinations": {"HOME": ("49", "")}},
            "destinations.HOME: '' is not a prefix (empty or with spaces)",
        ),
        (
            {"destinations": {"HOME": ("49", "49")}},
            "destinations.HOME: prefix '49' is listed twice",
        ),
        (
            {"destinations": {ANY: ("1",)}},
            "destinations.*any: '*any' cannot be used as a name ('*any' means 'any')",
        ),
        (
            {"timings": {"DAY": Timing(id="NIGHT")}},
            "timings.DAY: is keyed 'DAY' but its id is 'NIGHT'",
        ),
        ({"timings": with_timing(years=(0,))}, "timings.DAY.years: 0 is not a year (1900..2155)"),
        ({"timings": with_timing(months=(13,))}, "timings.DAY.months: 13 is not a month (1..12)"),
        (
            {"timings": with_timing(month_days=(32,))},
            "timings.DAY.month_days: 32 is not a day of month (1..31)",
        ),
        (
            {"timings": with_timing(weekdays=(8,))},
            "timings.DAY.weekdays: 8 is not a weekday (1 = Mon … 7 = Sun)",
        ),
        (
            {"timings": with_timing(start=86_400)},
            "timings.DAY.start: 86400 is not a time of day (0..86399 seconds)",
        ),
        (
            {"timings": with_timing(start=-1)},
            "timings.DAY.start: -1 is not a time of day (0..86399 seconds)",
        ),
        ({"rates": with_rate(steps=())}, "rates.RT.steps: a rate needs at least one step"),
        (
            {"rates": with_step(group_start=5)},
            "rates.RT.steps[0].group_start: the first step must start at 0",
        ),
        (
            {"rates": with_rate(steps=(STEP, STEP))},
            "rates.RT.steps[1].group_start: steps must be in increasing order of group_start",
        ),
        (
            {"rates": with_step(rate_unit=0)},
            "rates.RT.steps[0].rate_unit: must be more than 0, got 0",
        ),
        (
            {"rates": with_step(increment=-1)},
            "rates.RT.steps[0].increment: must be more than 0, got -1",
        ),
        ({"rates": with_step(price=-1)}, "rates.RT.steps[0].price: must not be negative, got -1"),
        (
            {"rates": with_rate(connect_fee=-5)},
            "rates.RT.connect_fee: must not be negative, got -5",
        ),
        ({"rates": {"RT": replace(RATE, id="RX")}}, "rates.RT: is keyed 'RT' but its id is 'RX'"),
        (
            {"destination_rates": with_drate(rate="RT_Y")},
            "destination_rates.DR.rate: unknown rate 'RT_Y'",
        ),
        (
            {"destination_rates": with_drate(destination="AWAY")},
            "destination_rates.DR.destination: unknown destination 'AWAY'",
        ),
        (
            {"destination_rates": with_drate(decimals=-1)},
            "destination_rates.DR.decimals: -1 is out of range 0..9",
        ),
        (
            {"destination_rates": with_drate(decimals=10)},
            "destination_rates.DR.decimals: 10 is out of range 0..9",
        ),
        (
            {"destination_rates": with_drate(max_cost=5)},
            "destination_rates.DR.max_cost: is set but max_cost_strategy is 'none'",
        ),
        (
            {"destination_rates": with_drate(max_cost_strategy=MaxCostStrategy.CAP)},
            "destination_rates.DR.max_cost: must be more than 0 with max_cost_strategy 'cap'",
        ),
        ({"plans": {"RP": RatingPlan(id="RP", bindings=())}}, "plans.RP: has no bindings"),
        (
            {"plans": {"RP": RatingPlan(id="RP", bindings=(Binding("DR_X"),))}},
            "plans.RP.bindings[0].destination_rate: unknown destination rate 'DR_X'",
        ),
        (
            {"plans": {"RP": RatingPlan(id="RP", bindings=(Binding("DR", "NIGHT"),))}},
            "plans.RP.bindings[0].timing: unknown timing 'NIGHT'",
        ),
        (
            {"plans": {"RP": RatingPlan(id="RP", bindings=(Binding("DR", ANY, math.inf),))}},
            "plans.RP.bindings[0].weight: inf is not a finite number",
        ),
        ({"profiles": with_profile(plan="NOPE")}, "profiles[0].plan: unknown plan 'NOPE'"),
        (
            {"profiles": with_profile(tenant="")},
            "profiles[0].tenant: '' must be non-empty, without surrounding spaces",
        ),
        (
            {"profiles": with_profile(activation=datetime(2026, 1, 1))},  # noqa: DTZ001 - on purpose
            "profiles[0].activation: 2026-01-01T00:00:00 has no UTC offset",
        ),
        (
            {"profiles": with_profile(fallback_subjects=("a", ""))},
            "profiles[0].fallback_subjects: empty subject",
        ),
        (
            {"profiles": with_profile(fallback_subjects=("a", "a"))},
            "profiles[0].fallback_subjects: a subject is listed twice",
        ),
        (
            {"profiles": (PROFILE, replace(PROFILE, plan="RP"))},
            "profiles[1]: same tenant, category, subject and activation as profiles[0]",
        ),
    ],
)
def test_broken_rule_names_the_key(changes: dict[str, Any], message: str) -> None:
    assert broken(**changes) == message
