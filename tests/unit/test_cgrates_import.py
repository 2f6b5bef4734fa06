"""The CGRateS importer: our own small fixture, every bad row, then the CGRateS corpus."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tariffs.cgrates import load_cgrates
from tariffs.exceptions import TariffError
from tariffs.loader import load_tariff
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
from tariffs.native import dump_native, loads_native

SMALL = Path(__file__).parents[1] / "fixtures" / "cgrates_small"
CORPUS = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "cgrates" / "tariffplans"
CORPUS_FOLDERS = ("tutorial", "tutorial2", "testtp", "engine_loader_csv_test")
EUR = 1_000_000_000  # nanos
QUANTITY_HELP = (
    "is not a usage quantity like 60s, 1m30s, 1024, 1MB (1000-based) or 1MiB (1024-based)"
)

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DAY_STEPS = (
    RateStep(group_start=0, price=250_000_000, rate_unit=60, increment=30),
    RateStep(group_start=30, price=50_000_000, rate_unit=60, increment=1),
    RateStep(group_start=3600, price=20_000_000, rate_unit=60, increment=1),
)
SMALL_EXPECTED = Tariff(
    name="cgrates_small",
    currency="SEK",
    timezone="Europe/Stockholm",
    destinations={
        "DST_HOME": ("46",),
        "DST_HOME_MOBILE": ("467",),
        "DST_NORDIC": ("45", "47", "358"),
    },
    timings={
        "TM_DAY": Timing(id="TM_DAY", weekdays=(1, 2, 3, 4, 5), start=27_000),
        "TM_NIGHT": Timing(id="TM_NIGHT", weekdays=(1, 2, 3, 4, 5)),
        "TM_WEEKEND": Timing(id="TM_WEEKEND", weekdays=(6, 7)),
        "TM_MIDSUMMER": Timing(id="TM_MIDSUMMER", years=(2027,), months=(6,), month_days=(25,)),
    },
    rates={
        "RT_DAY": Rate(id="RT_DAY", steps=DAY_STEPS, connect_fee=150_000_000),
        "RT_NIGHT": Rate(id="RT_NIGHT", steps=(RateStep(0, 100_000_000, 60, 60),)),
        "RT_DATA": Rate(id="RT_DATA", steps=(RateStep(0, 500_000_000, 1_048_576, 1024),)),
        "RT_FLAT": Rate(id="RT_FLAT", steps=(RateStep(0, 0, 1, 1),), connect_fee=350_000_000),
    },
    destination_rates={
        "DR_DAY/DST_HOME": DestinationRate(
            id="DR_DAY/DST_HOME", destination="DST_HOME", rate="RT_DAY"
        ),
        "DR_DAY/DST_NORDIC": DestinationRate(
            id="DR_DAY/DST_NORDIC",
            destination="DST_NORDIC",
            rate="RT_DAY",
            rounding=Rounding.HALF_UP,
            decimals=2,
            max_cost=2_500_000_000,
            max_cost_strategy=MaxCostStrategy.CAP,
        ),
        "DR_NIGHT": DestinationRate(
            id="DR_NIGHT",
            destination="DST_HOME",
            rate="RT_NIGHT",
            rounding=Rounding.DOWN,
            decimals=9,
        ),
        "DR_MOBILE": DestinationRate(
            id="DR_MOBILE",
            destination="DST_HOME_MOBILE",
            rate="RT_DAY",
            max_cost=1_500_000_000,
            max_cost_strategy=MaxCostStrategy.DISCONNECT,
        ),
        "DR_DATA": DestinationRate(id="DR_DATA", destination=ANY, rate="RT_DATA", decimals=9),
        "DR_FLAT": DestinationRate(id="DR_FLAT", destination=ANY, rate="RT_FLAT"),
    },
    plans={
        "RP_MAIN": RatingPlan(
            id="RP_MAIN",
            bindings=(
                Binding("DR_DAY/DST_HOME", "TM_DAY", 10.0),
                Binding("DR_DAY/DST_NORDIC", "TM_DAY", 10.0),
                Binding("DR_NIGHT", "TM_NIGHT", 10.0),
                Binding("DR_NIGHT", "TM_WEEKEND", 10.0),
                Binding("DR_MOBILE", ANY, 10.0),
                Binding("DR_NIGHT", "TM_MIDSUMMER", 20.5),
            ),
        ),
        "RP_DATA": RatingPlan(id="RP_DATA", bindings=(Binding("DR_DATA", ANY, 0.0),)),
        "RP_FLAT": RatingPlan(id="RP_FLAT", bindings=(Binding("DR_FLAT", ANY, 0.0),)),
    },
    profiles=(
        RatingProfile("example.net", "call", ANY, datetime(2025, 1, 1, tzinfo=UTC), "RP_MAIN"),
        RatingProfile(
            "example.net",
            "call",
            "vip",
            datetime(2025, 5, 31, 22, tzinfo=UTC),
            "RP_FLAT",
            ("alice", ANY),
        ),
        RatingProfile(
            "example.net", "data", ANY, datetime(2025, 1, 1, tzinfo=STOCKHOLM), "RP_DATA"
        ),
        RatingProfile("example.net", "call", ANY, datetime(2026, 1, 1, tzinfo=UTC), "RP_FLAT"),
    ),
)


def test_small_fixture_imports_exactly() -> None:
    tariff = load_cgrates(SMALL, currency="SEK", timezone="Europe/Stockholm")
    assert tariff == SMALL_EXPECTED
    assert tariff.profiles[2].activation.utcoffset() == STOCKHOLM.utcoffset(
        datetime(2025, 1, 1)  # noqa: DTZ001 - asking the zone for a local time's offset
    )


def test_small_fixture_defaults_to_eur_and_utc() -> None:
    tariff = load_cgrates(SMALL)
    assert (tariff.currency, tariff.timezone) == ("EUR", "UTC")
    assert tariff.profiles[2].activation == datetime(2025, 1, 1, tzinfo=UTC)


def test_small_fixture_survives_native_round_trip() -> None:
    tariff = load_cgrates(SMALL, currency="SEK", timezone="Europe/Stockholm")
    text = dump_native(tariff)
    assert loads_native(text) == tariff
    assert '[destination_rates."DR_DAY/DST_NORDIC"]' in text
    assert '{ from = "0s", price = "0.25", per = "1m", increment = "30s" },' in text
    assert '{ from = 0, price = "0.5", per = "1MiB", increment = "1KiB" },' in text
    assert 'event_price = "0.35"' in text


def test_load_tariff_imports_a_folder() -> None:
    tariff = load_tariff(SMALL, currency="SEK", timezone="Europe/Stockholm")
    assert tariff == SMALL_EXPECTED


# --- bad rows: each names file:line and column ---------------------------------------


def with_row(tmp_path: Path, file: str, row: str) -> tuple[Path, int]:
    """A copy of the small fixture with ``row`` appended to ``file``; its line number."""
    folder = tmp_path / "plan"
    shutil.copytree(SMALL, folder)
    path = folder / file
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, row]) + "\n")
    return folder, len(lines) + 1


@pytest.mark.parametrize(
    ("file", "row", "message"),
    [
        ("Rates.csv", "RT_X,0,0.1,0x,1s,0", f"RateUnit: '0x' {QUANTITY_HELP}"),
        ("Rates.csv", "RT_X,0,0.1,60s,1.5s,0", f"RateIncrement: '1.5s' {QUANTITY_HELP}"),
        ("Rates.csv", "RT_X,abc,0.1,60s,1s,0", "ConnectFee: 'abc' is not a decimal amount"),
        (
            "Rates.csv",
            "RT_X,0,0.0000000001,1s,1s,0",
            "Rate: '0.0000000001' has more than 9 decimals",
        ),
        ("Rates.csv", "RT_X,0,-1,60s,1s,0", "Rate: '-1' must not be negative"),
        (
            "Rates.csv",
            "RT_X,0,1,60s,1s,60s",
            "GroupIntervalStart: rate 'RT_X' has no row starting at 0 (its first starts at '60s')",
        ),
        (
            "Rates.csv",
            "RT_DAY,0,1,60s,1s,0",
            "GroupIntervalStart: rate 'RT_DAY' already has a row starting at '0'",
        ),
        (
            "Rates.csv",
            "RT_X,0,1,60s,1s",
            "expected 6 columns (ID,ConnectFee,Rate,RateUnit,RateIncrement,GroupIntervalStart),"
            " found 5",
        ),
        ("Rates.csv", ",0,1,60s,1s,0", "ID: must not be empty"),
        ("Destinations.csv", "DST_HOME,46", "Prefix: '46' is already in destination 'DST_HOME'"),
        ("Destinations.csv", "*any,99", "ID: '*any' cannot be used as an ID (it means 'any')"),
        ("Destinations.csv", "DST_X,", "Prefix: must not be empty"),
        ("Timings.csv", "TM_X,*any,13,*any,*any,00:00:00", "Months: 13 is out of range 1..12"),
        ("Timings.csv", "TM_X,*any,*any,32,*any,00:00:00", "MonthDays: 32 is out of range 1..31"),
        ("Timings.csv", "TM_X,0,*any,*any,*any,00:00:00", "Years: 0 is out of range 1900..2155"),
        ("Timings.csv", "TM_X,*any,*any,*any,1;8,00:00:00", "WeekDays: 8 is out of range 0..7"),
        (
            "Timings.csv",
            "TM_X,*any,*any,*any,mon,00:00:00",
            "WeekDays: 'mon' is not *any or a ;-separated list of numbers",
        ),
        (
            "Timings.csv",
            "TM_X,*any,*any,*any,*any,25:00:00",
            "Time: '25:00:00' is not a time of day like 08:00 or 08:00:00",
        ),
        (
            "Timings.csv",
            "TM_DAY,*any,*any,*any,*any,00:00:00",
            "ID: timing 'TM_DAY' is defined twice",
        ),
        (
            "DestinationRates.csv",
            "DR_X,DST_NOPE,RT_DAY,*up,4,,",
            "DestinationsID: unknown destination 'DST_NOPE'",
        ),
        (
            "DestinationRates.csv",
            "DR_X,DST_HOME,RT_NOPE,*up,4,,",
            "RatesID: unknown rate 'RT_NOPE'",
        ),
        (
            "DestinationRates.csv",
            "DR_X,DST_HOME,RT_DAY,*toeven,4,,",
            "RoundingMethod: '*toeven' is not one of *up, *down, *middle",
        ),
        (
            "DestinationRates.csv",
            "DR_X,DST_HOME,RT_DAY,*up,-1,,",
            "RoundingDecimals: '-1' is not a whole number of decimals",
        ),
        (
            "DestinationRates.csv",
            "DR_X,DST_HOME,RT_DAY,*up,4,1,*maybe",
            "MaxCostStrategy: '*maybe' is not one of *free, *disconnect",
        ),
        (
            "DestinationRates.csv",
            "DR_X,DST_HOME,RT_DAY,*up,4,x,*free",
            "MaxCost: 'x' is not a decimal amount",
        ),
        (
            "DestinationRates.csv",
            "DR_DAY,DST_HOME,RT_NIGHT,*up,4,,",
            "DestinationsID: destination rate 'DR_DAY' already has destination 'DST_HOME'",
        ),
        (
            "RatingPlans.csv",
            "RP_X,DR_NOPE,*any,10",
            "DestinationRatesID: unknown destination rate 'DR_NOPE'",
        ),
        ("RatingPlans.csv", "RP_X,DR_DAY,TM_NOPE,10", "TimingID: unknown timing 'TM_NOPE'"),
        ("RatingPlans.csv", "RP_X,DR_DAY,*any,ten", "Weight: 'ten' is not a number"),
        ("RatingPlans.csv", "RP_X,DR_DAY,*any,nan", "Weight: 'nan' is not a number"),
        (
            "RatingPlans.csv",
            "RP_MAIN,DR_DAY,TM_DAY,5",
            "ID: plan 'RP_MAIN' already binds 'DR_DAY' at 'TM_DAY'",
        ),
        (
            "RatingProfiles.csv",
            "example.net,call,bob,yesterday,RP_MAIN,",
            "ActivationTime: 'yesterday' is not a date-time like 2014-01-14T00:00:00Z",
        ),
        (
            "RatingProfiles.csv",
            "example.net,call,bob,2025-01-01T00:00:00Z,RP_NOPE,",
            "RatingPlanID: unknown rating plan 'RP_NOPE'",
        ),
        (
            "RatingProfiles.csv",
            "example.net,call,*any,2025-01-01T01:00:00+01:00,RP_FLAT,",
            "ActivationTime: same profile and time as line 2",
        ),
        (
            "RatingProfiles.csv",
            "example.net,call,bob,2025-01-01T00:00:00Z,RP_MAIN,a;;b",
            "FallbackSubjects: 'a;;b' has an empty or repeated subject",
        ),
        (
            "RatingProfiles.csv",
            "example.net,call,bob,2025-01-01T00:00:00Z,RP_MAIN,a;a",
            "FallbackSubjects: 'a;a' has an empty or repeated subject",
        ),
        (
            "RatingProfiles.csv",
            ",call,bob,2025-01-01T00:00:00Z,RP_MAIN,",
            "Tenant: must not be empty",
        ),
    ],
)
def test_bad_row_names_file_line_and_column(
    tmp_path: Path, file: str, row: str, message: str
) -> None:
    folder, line = with_row(tmp_path, file, row)
    with pytest.raises(TariffError) as caught:
        load_cgrates(folder)
    assert str(caught.value) == f"{file}:{line}: {message}"


def test_split_name_that_is_already_taken(tmp_path: Path) -> None:
    folder, _ = with_row(
        tmp_path, "DestinationRates.csv", "DR_DAY/DST_HOME,DST_HOME,RT_DAY,*up,4,,"
    )
    with pytest.raises(TariffError) as caught:
        load_cgrates(folder)
    assert str(caught.value) == (
        "DestinationRates.csv:2: ID: 'DR_DAY' splits into 'DR_DAY/DST_HOME', which is already an ID"
    )


def test_model_check_runs_after_import() -> None:
    with pytest.raises(TariffError) as caught:
        load_cgrates(SMALL, currency=" ")
    assert (
        str(caught.value) == "cgrates_small: tariff.currency: ' ' is not a currency code like 'EUR'"
    )


def test_unknown_timezone() -> None:
    with pytest.raises(TariffError) as caught:
        load_cgrates(SMALL, timezone="Mars/Olympus")
    assert str(caught.value) == (
        "timezone: 'Mars/Olympus' is not a known IANA time zone (like 'Europe/Berlin' or 'UTC')"
    )


def test_not_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "Rates.csv"
    path.write_text("RT,0,1,1s,1s,0\n")
    with pytest.raises(TariffError) as caught:
        load_cgrates(path)
    assert str(caught.value) == f"{path}: not a folder of CGRateS tariff-plan files"


def test_folder_without_tariff_files(tmp_path: Path) -> None:
    (tmp_path / "Chargers.csv").write_text("#nothing\n")
    with pytest.raises(TariffError) as caught:
        load_cgrates(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: no CGRateS tariff-plan files (Destinations.csv, Timings.csv, Rates.csv,"
        " DestinationRates.csv, RatingPlans.csv, RatingProfiles.csv) in this folder"
    )


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "plan"
    shutil.copytree(SMALL, folder)
    (folder / "Rates.csv").write_bytes(b"RT_X,0,\xff,1s,1s,0\n")
    with pytest.raises(TariffError, match=r"^Rates\.csv: cannot read: 'utf-8' codec"):
        load_cgrates(folder)


def test_missing_files_count_as_empty(tmp_path: Path) -> None:
    (tmp_path / "Rates.csv").write_text("RT_ONLY,0,1,1s,1s,0\n")
    tariff = load_cgrates(tmp_path)
    assert tariff.rates == {"RT_ONLY": Rate(id="RT_ONLY", steps=(RateStep(0, EUR, 1, 1),))}
    assert (tariff.destinations, tariff.timings, tariff.plans, tariff.profiles) == ({}, {}, {}, ())


# --- the CGRateS corpus (their sample tariff plans) ------------------------------------

corpus = pytest.mark.skipif(not CORPUS.exists(), reason=f"no CGRateS corpus at {CORPUS}")


@pytest.fixture(scope="module")
def plans() -> dict[str, Tariff]:
    return {name: load_cgrates(CORPUS / name) for name in CORPUS_FOLDERS}


@corpus
def test_corpus_tutorial2(plans: dict[str, Tariff]) -> None:
    t = plans["tutorial2"]
    assert t.rates["RT_120C"] == Rate(
        id="RT_120C",
        steps=(RateStep(0, 1_200_000_000, 60, 60), RateStep(60, 1_200_000_000, 60, 1)),
        connect_fee=200_000_000,
    )
    assert t.rates["RT_10C_CN"] == Rate("RT_10C_CN", (RateStep(0, 0, 1, 1),), 100_000_000)
    assert t.rates["RT_1024_1"].steps == (RateStep(0, EUR, 1024, 1024),)
    assert t.timings["PEAK"] == Timing(id="PEAK", weekdays=(1, 2, 3, 4, 5), start=8 * 3600)
    assert t.timings["OFFPEAK_WEEKEND"] == Timing(id="OFFPEAK_WEEKEND", weekdays=(6, 7))
    assert t.timings["NEW_YEAR"] == Timing(id="NEW_YEAR", months=(1,), month_days=(1,))
    assert t.destinations["DST_2030"] == ("20", "30")
    assert t.destinations["DST_VOICEMAIL"] == ("voicemail",)
    assert t.destination_rates["DR_10_120C"] == DestinationRate("DR_10_120C", "DST_10", "RT_120C")
    assert len(t.plans["RP_STANDARD"].bindings) == 7
    assert t.plans["RP_STANDARD"].bindings[5] == Binding("DR_20_60C", "NEW_YEAR", 20.0)
    assert t.profiles[1] == RatingProfile(
        "cgrates.org", "call", "1001", datetime(2019, 3, 1, tzinfo=UTC), "RP_1001", (ANY,)
    )
    assert [p.category for p in t.profiles] == ["call", "call", "call", "data", "sms", "reseller1"]


@corpus
def test_corpus_tutorial(plans: dict[str, Tariff]) -> None:
    t = plans["tutorial"]
    assert t.timings == {}  # the folder has no Timings.csv
    assert t.rates["RT_40CNT"] == Rate(
        id="RT_40CNT",
        steps=(RateStep(0, 400_000_000, 60, 30), RateStep(60, 200_000_000, 60, 10)),
        connect_fee=800_000_000,
    )
    assert t.rates["RT_SMS"].steps == (RateStep(0, 10_000_000, 1, 1),)
    assert t.destination_rates["DR_1003_MAXCOST_DISC"] == DestinationRate(
        id="DR_1003_MAXCOST_DISC",
        destination="DST_1003",
        rate="RT_1CNT_PER_SEC",
        max_cost=120_000_000,
        max_cost_strategy=MaxCostStrategy.DISCONNECT,
    )
    assert t.plans["RP_1001"].bindings == (
        Binding("DR_1002_20CNT", ANY, 10.0),
        Binding("DR_1003_MAXCOST_DISC", ANY, 10.0),
    )
    assert len(t.profiles) == 8
    assert t.profiles[1].activation == datetime(2010, 1, 14, tzinfo=UTC)


@corpus
def test_corpus_testtp(plans: dict[str, Tariff]) -> None:
    t = plans["testtp"]
    assert t.destinations["GERMANY_MOBILE"] == ("+4915", "+4916", "+4917")
    assert t.timings["ASAP"] == Timing(id="ASAP")
    assert t.rates["RT_DATA_r"].steps == (RateStep(0, 100_000_000, 1_048_576, 10_240),)
    # DR_RETAIL groups two destinations: one destination rate each, both bound.
    assert t.plans["RP_RETAIL"].bindings == (
        Binding("DR_RETAIL/GERMANY", "ALWAYS", 10.0),
        Binding("DR_RETAIL/GERMANY_MOBILE", "ALWAYS", 10.0),
    )
    assert t.destination_rates["DR_RETAIL/GERMANY_MOBILE"] == DestinationRate(
        "DR_RETAIL/GERMANY_MOBILE", "GERMANY_MOBILE", "RT_1CENT"
    )
    assert t.destination_rates["DR_FREE"].rounding is Rounding.HALF_UP
    assert t.destination_rates["DR_FREE"].decimals == 2
    assert t.destination_rates["DR_DATA_r"].decimals == 5


@corpus
def test_corpus_engine_loader(plans: dict[str, Tariff]) -> None:
    t = plans["engine_loader_csv_test"]
    assert t.timings["ONE_TIME_RUN"] == Timing(id="ONE_TIME_RUN", years=(2012,))
    assert t.timings["WEEKENDS"].weekdays == (6, 7)
    assert t.rates["LANDLINE_OFFPEAK"].steps == (RateStep(0, EUR, 1, 60), RateStep(60, EUR, 1, 1))
    assert t.rates["GBP_71"].steps == (RateStep(0, 5_555_550_000, 1, 1),)
    assert t.rates["CF"].connect_fee == 1_120_000_000
    assert t.destination_rates["MX_FREE"].max_cost_strategy is MaxCostStrategy.CAP
    assert t.destination_rates["MX_FREE"].max_cost == 10 * EUR
    assert t.destination_rates["MX_DISC"].max_cost_strategy is MaxCostStrategy.DISCONNECT
    assert t.destination_rates["RT_DY/RET"] == DestinationRate(
        "RT_DY/RET", "RET", "DY", Rounding.UP, 2
    )
    assert t.destination_rates["RT_DY/EU_LANDLINE"] == DestinationRate(
        "RT_DY/EU_LANDLINE", "EU_LANDLINE", "CF", Rounding.HALF_UP, 4
    )
    assert [b.destination_rate for b in t.plans["STANDARD"].bindings] == [
        "RT_STANDARD/GERMANY",
        "RT_STANDARD/GERMANY_O2",
        "RT_STANDARD/GERMANY_PREMIUM",
        "RT_STD_WEEKEND/GERMANY",
        "RT_STD_WEEKEND/GERMANY_O2",
        "RT_STD_WEEKEND/GERMANY",
        "RT_STD_WEEKEND/GERMANY_O2",
        "RT_URG",
    ]
    assert len(t.profiles) == 27
    trp = next(p for p in t.profiles if p.subject == "trp")
    assert (trp.tenant, trp.category, trp.fallback_subjects) == ("test", "0", ("rif", "danb"))


@corpus
@pytest.mark.parametrize("name", CORPUS_FOLDERS)
def test_corpus_survives_native_round_trip(plans: dict[str, Tariff], name: str) -> None:
    tariff = plans[name]
    assert loads_native(dump_native(tariff)) == tariff
    assert load_tariff(CORPUS / name) == tariff
