"""The native TOML format: exact loading, every bad input, notations, and round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tariffs.exceptions import TariffError
from tariffs.loader import load_tariff
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
from tariffs.native import (
    EVENT_STEP,
    dump_native,
    format_quantity,
    load_native,
    loads_native,
    parse_quantity,
    parse_time_of_day,
    parse_weekday,
)

SAMPLE = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
QUANTITY_HELP = (
    "is not a usage quantity like 60s, 1m30s, 1024, 1MB (1000-based) or 1MiB (1024-based)"
)
EUR = 1_000_000_000  # nanos

MINI = """\
[tariff]
name = "mini"
currency = "EUR"
timezone = "Europe/Berlin"

[destinations]
HOME = ["49"]

[timings.DAY]
weekdays = ["mon", 2, "Wednesday", 0]
start = "08:00"

[rates.RT_CALL]
connect_fee = "0.05"
steps = [
  { from = "0s", price = "0.20", per = "60s", increment = "60s" },
  { from = "60s", price = "0.10", per = "60s", increment = "1s" },
]

[rates.RT_EVENT]
event_price = "0.50"

[destination_rates.DR_HOME]
destination = "HOME"
rate = "RT_CALL"
max_cost = "5"

[destination_rates.DR_EVENT]
destination = "*any"
rate = "RT_EVENT"
rounding = "half_even"
decimals = 2

[plans.RP]
bindings = [
  { destination_rate = "DR_HOME", timing = "DAY", weight = 10 },
  { destination_rate = "DR_EVENT", weight = 2.5 },
]

[[profiles]]
tenant = "t"
category = "call"
subject = "*any"
activation = "2026-01-01T00:00:00Z"
plan = "RP"

[[profiles]]
tenant = "t"
category = "call"
subject = "vip"
activation = 2026-02-01T00:00:00+01:00
plan = "RP"
fallback_subjects = ["*any"]
"""

MINI_EXPECTED = Tariff(
    name="mini",
    currency="EUR",
    timezone="Europe/Berlin",
    destinations={"HOME": ("49",)},
    timings={"DAY": Timing(id="DAY", weekdays=(1, 2, 3, 7), start=8 * 3600)},
    rates={
        "RT_CALL": Rate(
            id="RT_CALL",
            steps=(RateStep(0, 200_000_000, 60, 60), RateStep(60, 100_000_000, 60, 1)),
            connect_fee=50_000_000,
        ),
        "RT_EVENT": Rate(id="RT_EVENT", steps=(RateStep(0, 0, 1, 1),), connect_fee=500_000_000),
    },
    destination_rates={
        "DR_HOME": DestinationRate(
            id="DR_HOME",
            destination="HOME",
            rate="RT_CALL",
            max_cost=5 * EUR,
            max_cost_strategy=MaxCostStrategy.CAP,
        ),
        "DR_EVENT": DestinationRate(
            id="DR_EVENT",
            destination=ANY,
            rate="RT_EVENT",
            rounding=Rounding.HALF_EVEN,
            decimals=2,
        ),
    },
    plans={
        "RP": RatingPlan(
            id="RP", bindings=(Binding("DR_HOME", "DAY", 10.0), Binding("DR_EVENT", ANY, 2.5))
        )
    },
    profiles=(
        RatingProfile("t", "call", ANY, datetime(2026, 1, 1, tzinfo=UTC), "RP"),
        RatingProfile("t", "call", "vip", datetime(2026, 1, 31, 23, tzinfo=UTC), "RP", (ANY,)),
    ),
)


def load_mini(old: str = "", new: str = "") -> Tariff:
    assert old in MINI, f"test bug: {old!r} is not in MINI"
    return loads_native(MINI.replace(old, new, 1), source="mini.toml")


def test_mini_loads_exactly() -> None:
    tariff = load_mini()
    assert tariff == MINI_EXPECTED
    assert tariff.profiles[1].activation.utcoffset() == timedelta(hours=1)


def test_mini_round_trip() -> None:
    text = dump_native(load_mini())
    assert loads_native(text) == MINI_EXPECTED
    assert dump_native(loads_native(text)) == text
    assert 'event_price = "0.5"' in text
    assert 'weekdays = ["mon", "tue", "wed", "sun"]' in text
    assert 'activation = "2026-02-01T00:00:00+01:00"' in text


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'price = "0.20"',
            "price = 0.20",
            "rates.RT_CALL.steps[0].price: 0.2 is a TOML float;"
            ' write amounts as strings, e.g. "0.2"',
        ),
        ('per = "60s", increment = "60s"', 'per = "0x", increment = "60s"', ""),
        (
            'per = "60s", increment = "1s"',
            'per = "60s", increment = 0',
            "rates.RT_CALL.steps[1].increment: must be more than 0",
        ),
        (
            'per = "60s", increment = "1s"',
            'per = -60, increment = "1s"',
            "rates.RT_CALL.steps[1].per: -60 must not be negative",
        ),
        (
            'increment = "1s"',
            "increment = 1.5",
            f"rates.RT_CALL.steps[1].increment: 1.5 {QUANTITY_HELP}",
        ),
        (
            '{ from = "0s", price = "0.20"',
            '{ from = "1s", price = "0.20"',
            "rates.RT_CALL.steps[0].from: the first step must start at 0",
        ),
        (
            '{ from = "60s", price = "0.10"',
            '{ from = "0s", price = "0.10"',
            "rates.RT_CALL.steps[1].from: steps must be in increasing order of 'from'",
        ),
        (
            'price = "0.10"',
            'price = "-0.10"',
            "rates.RT_CALL.steps[1].price: must not be negative, got -100000000",
        ),
        (
            'connect_fee = "0.05"',
            'conect_fee = "0.05"',
            "rates.RT_CALL: Object contains unknown field `conect_fee`",
        ),
        (
            '{ from = "0s", price = "0.20", per = "60s", increment = "60s" }',
            '{ from = "0s", price = "0.20", per = "60s" }',
            "rates.RT_CALL.steps[0]: Object missing required field `increment`",
        ),
        (
            'event_price = "0.50"',
            'event_price = "0.50"\nconnect_fee = "1"',
            "rates.RT_EVENT: event_price cannot be combined with steps or connect_fee",
        ),
        (
            'event_price = "0.50"',
            'basis = "record"',
            "rates.RT_EVENT: needs steps (or event_price for a price per record)",
        ),
        (
            'event_price = "0.50"',
            'event_price = "0.5x"',
            "rates.RT_EVENT.event_price: '0.5x' is not a decimal amount",
        ),
        (
            'event_price = "0.50"',
            'event_price = "0.50"\nbasis = "monthly"',
            "rates.RT_EVENT.basis: Invalid enum value 'monthly'",
        ),
        (
            'rounding = "half_even"',
            'rounding = "sideways"',
            "destination_rates.DR_EVENT.rounding: Invalid enum value 'sideways'",
        ),
        (
            'rate = "RT_CALL"',
            'rate = "RT_NOPE"',
            "destination_rates.DR_HOME.rate: unknown rate 'RT_NOPE'",
        ),
        (
            'destination = "HOME"',
            'destination = "AWAY"',
            "destination_rates.DR_HOME.destination: unknown destination 'AWAY'",
        ),
        (
            "decimals = 2",
            "decimals = 10",
            "destination_rates.DR_EVENT.decimals: 10 is out of range 0..9",
        ),
        (
            'max_cost = "5"',
            'max_cost_strategy = "disconnect"',
            "destination_rates.DR_HOME.max_cost:"
            " must be more than 0 with max_cost_strategy 'disconnect'",
        ),
        (
            'max_cost = "5"',
            'max_cost = "5"\nmax_cost_strategy = "none"',
            "destination_rates.DR_HOME.max_cost: is set but max_cost_strategy is 'none'",
        ),
        (
            'timing = "DAY"',
            'timing = "NIGHT"',
            "plans.RP.bindings[0].timing: unknown timing 'NIGHT'",
        ),
        (
            '{ destination_rate = "DR_EVENT", weight = 2.5 }',
            '{ destination_rate = "DR_NOPE" }',
            "plans.RP.bindings[1].destination_rate: unknown destination rate 'DR_NOPE'",
        ),
        (
            "weight = 10",
            'weight = "10"',
            "plans.RP.bindings[0].weight: Expected `float`, got `str`",
        ),
        (
            '  { destination_rate = "DR_HOME", timing = "DAY", weight = 10 },\n'
            '  { destination_rate = "DR_EVENT", weight = 2.5 },\n',
            "",
            "plans.RP: has no bindings",
        ),
        ('plan = "RP"\nfallback', 'plan = "RPX"\nfallback', "profiles[1].plan: unknown plan 'RPX'"),
        (
            'activation = "2026-01-01T00:00:00Z"',
            'activation = "2026-01-01T00:00:00"',
            "profiles[0].activation: 2026-01-01T00:00:00 has no UTC offset;"
            " add one, e.g. 2026-01-01T00:00:00+01:00 or Z",
        ),
        (
            'activation = "2026-01-01T00:00:00Z"',
            "activation = 2026-01-01T00:00:00",
            "profiles[0].activation: 2026-01-01 00:00:00 has no UTC offset;"
            " add one, e.g. 2026-01-01T00:00:00+01:00 or Z",
        ),
        (
            'activation = "2026-01-01T00:00:00Z"',
            'activation = "new year"',
            "profiles[0].activation: 'new year' is not an RFC 3339 date-time"
            " like 2026-01-01T00:00:00+01:00",
        ),
        (
            'activation = "2026-01-01T00:00:00Z"',
            "activation = 2026-01-01",
            "profiles[0].activation: datetime.date(2026, 1, 1) is not an RFC 3339 date-time"
            " like 2026-01-01T00:00:00+01:00",
        ),
        (
            'fallback_subjects = ["*any"]',
            'fallback_subjects = ["*any", "*any"]',
            "profiles[1].fallback_subjects: a subject is listed twice",
        ),
        ('subject = "vip"', 'subject = "vip "', ""),
        ('tenant = "t"', "tenant = 7", "profiles[0].tenant: Expected `str`, got `int`"),
        (
            'weekdays = ["mon", 2, "Wednesday", 0]',
            'weekdays = ["mon", "funday"]',
            "timings.DAY.weekdays: 'funday' is not a weekday (mon … sun, or 1 … 7)",
        ),
        (
            'weekdays = ["mon", 2, "Wednesday", 0]',
            "weekdays = [8]",
            "timings.DAY.weekdays: 8 is not a weekday (1 = Mon … 7 = Sun)",
        ),
        (
            'start = "08:00"',
            'start = "8am"',
            "timings.DAY.start: '8am' is not a time of day like 08:00 or 08:00:00",
        ),
        (
            'start = "08:00"',
            'start = "08:00"\nmonths = [13]',
            "timings.DAY.months: 13 is not a month (1..12)",
        ),
        (
            'start = "08:00"',
            'start = "08:00"\nmonth_days = [0]',
            "timings.DAY.month_days: 0 is not a day of month (1..31)",
        ),
        (
            'HOME = ["49"]',
            "HOME = [49]",
            'destinations.HOME: expected a list of prefixes as strings, like ["49", "4915"]',
        ),
        ('HOME = ["49"]', "HOME = []", "destinations.HOME: has no prefixes"),
        ('HOME = ["49"]', 'HOME = ["49", "49"]', "destinations.HOME: prefix '49' is listed twice"),
        (
            'timezone = "Europe/Berlin"',
            'timezone = "Mars/Olympus"',
            "tariff.timezone: 'Mars/Olympus' is not a known IANA time zone"
            " (like 'Europe/Berlin' or 'UTC')",
        ),
        ('name = "mini"\n', "", "tariff: Object missing required field `name`"),
        ("[rates.RT_CALL]", "[rate.RT_CALL]", "Object contains unknown field `rate`"),
    ],
)
def test_bad_input_names_the_key(old: str, new: str, message: str) -> None:
    with pytest.raises(TariffError) as caught:
        load_mini(old, new)
    if not message:  # the cases whose message comes from a shared helper
        message = {
            'per = "0x", increment = "60s"': f"rates.RT_CALL.steps[0].per: '0x' {QUANTITY_HELP}",
            'subject = "vip "': "profiles[1].subject: 'vip ' must be non-empty,"
            " without surrounding spaces",
        }[new]
    assert str(caught.value) == f"mini.toml: {message}"


def test_duplicate_profile() -> None:
    text = MINI.replace('subject = "vip"', 'subject = "*any"').replace(
        "activation = 2026-02-01T00:00:00+01:00", "activation = 2026-01-01T01:00:00+01:00"
    )
    with pytest.raises(TariffError) as caught:
        loads_native(text, source="mini.toml")
    assert str(caught.value) == (
        "mini.toml: profiles[1]: same tenant, category, subject and activation as profiles[0]"
    )


def test_invalid_toml() -> None:
    with pytest.raises(TariffError, match=r"^mini\.toml: not valid TOML: "):
        load_mini('name = "mini"', 'name = "mini')


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.toml"
    with pytest.raises(TariffError) as caught:
        load_native(path)
    assert str(caught.value) == f"{path}: cannot read the tariff plan: No such file or directory"


# --- notations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", 0),
        ("1s", 1),
        ("60s", 60),
        ("1m", 60),
        ("1m30s", 90),
        ("1h30m", 5400),
        ("2h", 7200),
        (1024, 1024),
        ("1024", 1024),
        (" 7 ", 7),
        ("512B", 512),
        ("1KB", 1000),
        ("1kB", 1000),
        ("1MB", 1_000_000),
        ("1 MB", 1_000_000),
        ("1GB", 1_000_000_000),
        ("2TB", 2_000_000_000_000),
        ("1KiB", 1024),
        ("1MiB", 1_048_576),
        ("1GiB", 1_073_741_824),
        ("1TiB", 1_099_511_627_776),
    ],
)
def test_parse_quantity(text: str | int, expected: int) -> None:
    assert parse_quantity(text, "x") == expected


@pytest.mark.parametrize("text", ["", "s", "1.5s", "60x", "-5", "1mb", "1 h", "1s1m"])
def test_parse_quantity_refuses(text: str) -> None:
    with pytest.raises(TariffError) as caught:
        parse_quantity(text, "here")
    assert str(caught.value) == f"here: {text!r} {QUANTITY_HELP}"


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (0, "time", '"0s"'),
        (90, "time", '"1m30s"'),
        (5400, "time", '"1h30m"'),
        (0, "bytes", "0"),
        (1024, "bytes", '"1KiB"'),
        (1_000_000, "bytes", '"1MB"'),
        (10_240, "bytes", '"10KiB"'),
        (1500, "bytes", "1500"),
        (60, "count", "60"),
    ],
)
def test_format_quantity(value: int, kind: str, expected: str) -> None:
    assert format_quantity(value, kind) == expected
    assert parse_quantity(expected.strip('"') if '"' in expected else int(expected), "x") == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("08:00", 28_800), ("08:00:30", 28_830), ("8:05", 29_100), ("23:59:59", 86_399)],
)
def test_parse_time_of_day(text: str, expected: int) -> None:
    assert parse_time_of_day(text, "x") == expected


@pytest.mark.parametrize("text", ["24:00", "08:60", "08:00:60", "8", "08:00:00:00", "8am", ""])
def test_parse_time_of_day_refuses(text: str) -> None:
    with pytest.raises(TariffError) as caught:
        parse_time_of_day(text, "here")
    assert str(caught.value) == f"here: {text!r} is not a time of day like 08:00 or 08:00:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("mon", 1), ("Sun", 7), ("sunday", 7), ("SATURDAY", 6), (0, 7), (7, 7), (3, 3)],
)
def test_parse_weekday(value: str | int, expected: int) -> None:
    assert parse_weekday(value, "x") == expected


# --- the sample plan (the tutorial) ------------------------------------------------------


def test_sample_plan_loads() -> None:
    t = load_native(SAMPLE)
    assert (t.name, t.currency, t.timezone) == ("ratewire demo mobile", "EUR", "Europe/Berlin")
    assert t.destinations["DE_MOBILE"] == ("4915", "4916", "4917")
    assert t.timings["PEAK"] == Timing(id="PEAK", weekdays=(1, 2, 3, 4, 5), start=8 * 3600)
    assert t.timings["CHRISTMAS"] == Timing(id="CHRISTMAS", months=(12,), month_days=(25, 26))
    assert t.rates["RT_FIXED_PEAK"] == Rate(
        id="RT_FIXED_PEAK",
        steps=(RateStep(0, 90_000_000, 60, 60), RateStep(60, 90_000_000, 60, 1)),
        connect_fee=30_000_000,
    )
    assert t.rates["RT_DATA"] == Rate(
        id="RT_DATA",
        steps=(
            RateStep(0, 10_000_000, 1_000_000, 1000),
            RateStep(1_000_000_000, 5_000_000, 1_000_000, 1000),
            RateStep(10_000_000_000, 2_000_000, 1_000_000, 1000),
        ),
        basis=Basis.GRADUATED,
    )
    assert t.rates["RT_VIDEO_PLAY"] == Rate("RT_VIDEO_PLAY", (EVENT_STEP,), 490_000_000)
    assert t.destination_rates["DR_PREMIUM"].max_cost == 30 * EUR
    assert t.destination_rates["DR_PREMIUM"].max_cost_strategy is MaxCostStrategy.CAP
    assert Binding("DR_MOBILE_OFFPEAK", "NEW_YEAR", 20.0) in t.plans["RP_VOICE"].bindings
    assert {p.category for p in t.profiles} == {"call", "sms", "data", "video"}
    acme = next(p for p in t.profiles if p.subject == "acme-gmbh")
    assert (acme.plan, acme.fallback_subjects) == ("RP_BUSINESS", (ANY,))
    assert acme.activation == datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1)))


def test_sample_plan_round_trip() -> None:
    tariff = load_native(SAMPLE)
    text = dump_native(tariff)
    assert loads_native(text) == tariff
    assert '{ from = "1m", price = "0.09", per = "1m", increment = "1s" },' in text
    assert '{ from = "1GB", price = "0.005", per = "1MB", increment = "1KB" },' in text


def test_dump_quotes_keys_and_escapes_strings() -> None:
    odd = Tariff(
        name='say "hi"\\\n\x7f',
        currency="EUR",
        timezone="UTC",
        destinations={"with space": ("1",), "*weird.key": ("2",)},
        timings={},
        rates={"R": Rate("R", (RateStep(0, 1, 1, 1),))},
        destination_rates={"D.1": DestinationRate("D.1", "with space", "R")},
        plans={"P": RatingPlan("P", (Binding("D.1"),))},
        profiles=(),
    )
    text = dump_native(odd)
    assert 'name = "say \\"hi\\"\\\\\\u000a\\u007f"' in text
    assert '"with space" = ["1"]' in text
    assert '[destination_rates."D.1"]' in text
    assert loads_native(text) == odd


# --- load_tariff on files ---------------------------------------------------------------


def test_load_tariff_reads_toml() -> None:
    assert load_tariff(SAMPLE) == load_native(SAMPLE)
    assert load_tariff(SAMPLE, currency="EUR", timezone="Europe/Berlin") == load_native(SAMPLE)


def test_load_tariff_refuses_a_different_currency() -> None:
    with pytest.raises(TariffError) as caught:
        load_tariff(SAMPLE, currency="USD")
    assert str(caught.value) == (
        "mobile.toml: the plan's currency is 'EUR' but 'USD' was asked for;"
        " change tariff.currency in the file or drop the option"
    )


def test_load_tariff_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nothing.toml"
    with pytest.raises(TariffError) as caught:
        load_tariff(path)
    assert str(caught.value) == (
        f"{path}: no such file or folder; give a .toml tariff plan or a CGRateS folder"
    )


def test_load_tariff_not_a_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("{}")
    with pytest.raises(TariffError) as caught:
        load_tariff(path)
    assert str(caught.value) == (
        f"{path}: not a tariff plan; give a .toml file or a folder of CGRateS CSV files"
    )
