"""``ratewire cost``: exact prices from the sample plan, CGRateS conformance, clear errors.

Every expected amount below is worked out by hand from the plan (the sum is in
the comment beside it); nothing is copied from the program's own output. The
CGRateS cases are the answers CGRateS gives for its own tutorial tariff plans,
run when the shared corpus is present.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.cli import EXIT_BAD_INPUT, EXIT_OK, main

SAMPLE = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
CORPUS = Path(__file__).parents[2] / ".." / "shared" / "corpus"
PLANS = CORPUS / "cgrates" / "tariffplans"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")

# The sample plan is in Europe/Berlin, which is UTC+1 in November and December.
MONDAY_0900 = "2026-11-02T08:00:00Z"  # 09:00 local: PEAK (weekdays from 08:00)
MONDAY_2000 = "2026-11-02T19:00:00Z"  # 20:00 local: OFFPEAK_EVENING (from 19:00)
SATURDAY = "2026-11-07T11:00:00Z"  # WEEKEND
CHRISTMAS = "2026-12-25T09:00:00Z"  # a Friday, 10:00 local: CHRISTMAS (weight 20) beats PEAK
ACCOUNT = "acc0000001"


def run_cost(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run ``ratewire cost --json``; return the exit code and the one JSON answer."""
    code = main(["cost", "--json", *args])
    out, err = capsys.readouterr()
    assert err == ""  # nothing on stderr: no traceback, no warning
    assert out.endswith("\n")
    assert out.count("\n") == 1  # one JSON document, one line
    answer: dict[str, Any] = msgspec.json.decode(out)
    return code, answer


def sample(
    capsys: pytest.CaptureFixture[str],
    category: str,
    destination: str,
    start: str,
    usage: str,
    subject: str = ACCOUNT,
) -> tuple[int, dict[str, Any]]:
    return run_cost(
        capsys,
        *("--tariffs", str(SAMPLE), "--category", category, "--subject", subject),
        *("--destination", destination, "--start", start, "--usage", usage),
    )


# -- the sample plan ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "destination", "start", "usage", "expected"),
    [
        # fixed line, peak, 60/1: connect 0.03 + one whole minute 0.09
        ("call", "4930123456", MONDAY_0900, "45s", "0.12"),
        # 0.03 + 0.09 (first minute) + 30 s × 0.09/60
        ("call", "4930123456", MONDAY_0900, "90s", "0.165"),
        # mobile, peak: 0.03 + 0.19 + 65 × 0.19/60 = 0.22 + 0.205833333…; the span
        # rounds up to whole nanos (0.205833334), the total up to 4 decimals
        ("call", "4915112345", MONDAY_0900, "2m5s", "0.4259"),
        # mobile, evening off-peak: 100 s × 0.09/60, no connect fee
        ("call", "4915112345", MONDAY_2000, "100s", "0.15"),
        # fixed line at the weekend: 60 s × 0.04/60
        ("call", "4930123456", SATURDAY, "1m", "0.04"),
        # a Friday morning that is Christmas: the holiday's off-peak price
        ("call", "4930123456", CHRISTMAS, "1m", "0.04"),
        # starts 07:59:30 local: 30 s night off-peak (30 × 0.04/60 = 0.02), then at
        # 08:00 peak whose first step bills a whole minute (0.09); the connect fee
        # is the start binding's (none)
        ("call", "4930123456", "2026-11-02T06:59:30Z", "1m", "0.11"),
        # premium: 0.49 + 20 × 1.99 = 40.29, capped at max_cost 30
        ("call", "4990012345", MONDAY_0900, "20m", "30"),
        ("call", "4980012345", MONDAY_0900, "10m", "0"),  # freephone
        # Europe in 30 s blocks: 31 s bills 60 s × 0.29/60
        ("call", "33123456789", MONDAY_0900, "31s", "0.29"),
        # world: connect 0.10 + 2 started minutes × 0.89
        ("call", "1212555123", MONDAY_0900, "61s", "1.88"),
        ("call", "4930123456", MONDAY_0900, "0s", "0"),  # no usage, no connect fee
        ("sms", "4915112345", MONDAY_0900, "3", "0.27"),  # national: 3 × 0.09
        ("sms", "447700900123", MONDAY_0900, "1", "0.19"),  # *any: international
        # data: 1500 bytes bill 2 KB × 0.01/MB = 0.00002, rounded up to 0.0001
        ("data", "", MONDAY_0900, "1500", "0.0001"),
        # 2 GB: the first 1 GB at 0.01/MB (10) and the next at 0.005/MB (5)
        ("data", "", MONDAY_0900, "2000000000", "15"),
        ("video", "", MONDAY_0900, "1", "0.49"),  # a price per event
    ],
)
def test_sample_plan_prices(
    capsys: pytest.CaptureFixture[str],
    category: str,
    destination: str,
    start: str,
    usage: str,
    expected: str,
) -> None:
    code, answer = sample(capsys, category, destination, start, usage)
    assert code == EXIT_OK
    assert answer["cost"] == expected
    assert answer["currency"] == "EUR"


def test_max_cost_cap_is_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    _, answer = sample(capsys, "call", "4990012345", MONDAY_0900, "20m")
    breakdown = answer["breakdown"]
    assert breakdown["subtotal"] == "40.29"  # 0.49 + 1200 s × 1.99/60
    assert breakdown["flags"] == ["max_cost_capped"]
    assert answer["cost"] == "30"


def test_business_deal_and_its_fallback(capsys: pytest.CaptureFixture[str]) -> None:
    # acme-gmbh's own plan prices German mobiles (60 s × 0.05/60) …
    _, own = sample(capsys, "call", "4915112345", MONDAY_0900, "1m", subject="acme-gmbh")
    assert (own["cost"], own["breakdown"]["plan"]) == ("0.05", "RP_BUSINESS")
    # … and falls back to the standard plan for the rest (as the 45 s peak case)
    _, other = sample(capsys, "call", "4930123456", MONDAY_0900, "45s", subject="acme-gmbh")
    assert (other["cost"], other["breakdown"]["plan"]) == ("0.12", "RP_VOICE")


def test_breakdown_of_a_call_across_peak_end(capsys: pytest.CaptureFixture[str]) -> None:
    """18:59:30 local, 90 s to a mobile: one peak minute, then 30 s of evening off-peak."""
    code, answer = sample(capsys, "call", "4915112345", "2026-11-02T17:59:30Z", "90s")
    assert code == EXIT_OK
    assert answer == {
        "cost": "0.265",  # 0.03 + 0.19 + 30 × 0.09/60
        "currency": "EUR",
        "breakdown": {
            "plan": "RP_VOICE",
            "destination": "DE_MOBILE",
            "prefix": "4915",
            "connect_fee": "0.03",
            "subtotal": "0.265",
            "flags": [],
            "spans": [
                {
                    "destination_rate": "DR_MOBILE_PEAK",
                    "timing": "PEAK",
                    "rate": "RT_MOBILE_PEAK",
                    "step": 0,
                    "offset": 0,
                    "usage": 60,
                    "billed": 60,
                    "increment": 60,
                    "increments": 1,
                    "price": "0.19",
                    "rate_unit": 60,
                    "amount": "0.19",
                },
                {
                    "destination_rate": "DR_MOBILE_OFFPEAK",
                    "timing": "OFFPEAK_EVENING",
                    "rate": "RT_MOBILE_OFFPEAK",
                    "step": 0,
                    "offset": 60,
                    "usage": 30,
                    "billed": 30,
                    "increment": 1,
                    "increments": 30,
                    "price": "0.09",
                    "rate_unit": 60,
                    "amount": "0.045",
                },
            ],
        },
    }


def test_plain_output(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--tariffs", str(SAMPLE), "--category", "call", "--subject", ACCOUNT, "--start"]
    assert main(["cost", *args, MONDAY_0900, "--destination", "4930123", "--usage", "45s"]) == 0
    assert capsys.readouterr() == ("0.12 EUR\n", "")
    code = main(["cost", *args, MONDAY_0900, "--destination", "9991234", "--usage", "45s"])
    out, err = capsys.readouterr()
    assert (code, out) == (EXIT_BAD_INPUT, "")
    assert err == (
        "UNAUTHORIZED_DESTINATION: cost: unauthorized destination: "
        f"ratewire.demo/call/{ACCOUNT} → 9991234 at {MONDAY_0900}\n"
    )


def test_default_tenant_is_the_plans_first(capsys: pytest.CaptureFixture[str]) -> None:
    with_tenant = sample(capsys, "call", "4930123456", MONDAY_0900, "45s")
    code, answer = run_cost(
        capsys,
        *("--tariffs", str(SAMPLE), "--tenant", "ratewire.demo", "--category", "call"),
        *("--subject", ACCOUNT, "--destination", "4930123456"),
        *("--start", MONDAY_0900, "--usage", "45s"),
    )
    assert (code, answer) == with_tenant


# -- rating errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "destination", "code", "words"),
    [
        ("call", "9991234567", "UNAUTHORIZED_DESTINATION", "unauthorized destination"),
        ("fax", "4930123456", "RATING_PLAN_NOT_FOUND", "rating plan not found"),
    ],
)
def test_unratable_query(
    capsys: pytest.CaptureFixture[str], category: str, destination: str, code: str, words: str
) -> None:
    exit_code, answer = sample(capsys, category, destination, MONDAY_0900, "1m")
    assert exit_code == EXIT_BAD_INPUT
    assert answer == {
        "error": code,
        "message": f"cost: {words}: ratewire.demo/{category}/{ACCOUNT} → {destination} "
        f"at {MONDAY_0900}",
    }


# -- bad arguments and tariff files ---------------------------------------------------


@pytest.mark.parametrize(
    ("usage", "says"),
    [
        ("45x", "--usage '45x': expected a duration like 45s, 10m45s, 1h or a unit count"),
        ("", "--usage '': expected a duration"),
        ("-5", "--usage '-5': expected a duration"),
        ("1.5m", "--usage '1.5m': expected a duration"),
        ("²", "--usage '²': expected a duration"),  # isdigit(), but not a number
        ("9" * 20, f"--usage '{'9' * 20}': more than the 9223372036854775807 units"),
    ],
)
def test_bad_usage(capsys: pytest.CaptureFixture[str], usage: str, says: str) -> None:
    code, answer = sample(capsys, "call", "4930123456", MONDAY_0900, usage)
    assert code == EXIT_BAD_INPUT
    assert answer["error"] == "INVALID_ARGUMENT"
    assert answer["message"].startswith(says)


@pytest.mark.parametrize(
    ("start", "says"),
    [
        ("yesterday", "--start 'yesterday': expected an ISO 8601 instant"),
        ("2026-11-31T09:00:00Z", "--start '2026-11-31T09:00:00Z': expected an ISO 8601 instant"),
        ("2026-11-02T09:00:00", "--start '2026-11-02T09:00:00': give a time zone offset"),
    ],
)
def test_bad_start(capsys: pytest.CaptureFixture[str], start: str, says: str) -> None:
    code, answer = sample(capsys, "call", "4930123456", start, "1m")
    assert code == EXIT_BAD_INPUT
    assert answer["error"] == "INVALID_ARGUMENT"
    assert answer["message"].startswith(says)


def cost_with_tariff(capsys: pytest.CaptureFixture[str], tariff: Path) -> tuple[int, Any]:
    return run_cost(
        capsys,
        *("--tariffs", str(tariff), "--category", "call", "--subject", ACCOUNT),
        *("--destination", "4930123456", "--start", MONDAY_0900, "--usage", "1m"),
    )


def test_missing_tariff(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    code, answer = cost_with_tariff(capsys, missing)
    assert (code, answer["error"]) == (EXIT_BAD_INPUT, "TARIFF_ERROR")
    assert answer["message"] == (
        f"{missing}: no such file or folder; give a .toml tariff plan or a CGRateS folder"
    )


def test_tariff_that_is_not_toml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[tariff\nname = "x"\n')
    code, answer = cost_with_tariff(capsys, broken)
    assert (code, answer["error"]) == (EXIT_BAD_INPUT, "TARIFF_ERROR")
    assert answer["message"].startswith("broken.toml: not valid TOML: ")
    assert "line 1" in answer["message"]


def test_tariff_with_a_dangling_reference(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = SAMPLE.read_text()
    assert text.count('rate = "RT_EUROPE"') == 1
    broken = tmp_path / "dangling.toml"
    broken.write_text(text.replace('rate = "RT_EUROPE"', 'rate = "RT_NOPE"'))
    code, answer = cost_with_tariff(capsys, broken)
    assert code == EXIT_BAD_INPUT
    assert answer == {
        "error": "TARIFF_ERROR",
        "message": "dangling.toml: destination_rates.DR_EUROPE.rate: unknown rate 'RT_NOPE'",
    }


def test_tariff_of_unknown_kind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = tmp_path / "plan.txt"
    other.write_text("not a plan")
    code, answer = cost_with_tariff(capsys, other)
    assert (code, answer["error"]) == (EXIT_BAD_INPUT, "TARIFF_ERROR")
    assert answer["message"] == (
        f"{other}: not a tariff plan; give a .toml file or a folder of CGRateS CSV files"
    )


def test_currency_that_disagrees_with_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, answer = run_cost(
        capsys,
        *("--tariffs", str(SAMPLE), "--currency", "USD", "--category", "call"),
        *("--subject", ACCOUNT, "--destination", "4930123456"),
        *("--start", MONDAY_0900, "--usage", "1m"),
    )
    assert (code, answer["error"]) == (EXIT_BAD_INPUT, "TARIFF_ERROR")
    assert answer["message"].startswith("mobile.toml: the plan's currency is 'EUR' but 'USD'")


def test_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["cost", "--json", "--tariffs", str(SAMPLE), "--category", "call"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    assert "the following arguments are required: --subject, --start, --usage" in err


# -- CGRateS conformance ----------------------------------------------------------------

CGRATES_MONDAY = "2019-03-11T09:00:00Z"  # a Monday, peak in tutorial2 (UTC)


@needs_corpus
@pytest.mark.parametrize(
    ("plan", "category", "subject", "destination", "start", "usage", "expected"),
    [
        ("tutorial2", "call", "1001", "1002", CGRATES_MONDAY, "45s", "0.55"),
        ("tutorial2", "call", "1001", "1003", CGRATES_MONDAY, "45s", "1.4"),
        ("tutorial2", "call", "1001", "1003", "2019-03-11T21:00:00Z", "45s", "0.55"),
        ("tutorial2", "call", "1002", "2001", "2020-01-01T21:00:00Z", "45s", "0.55"),
        ("tutorial2", "data", "1001", "", CGRATES_MONDAY, "2048", "2"),
        ("tutorial2", "sms", "1003", "1002", CGRATES_MONDAY, "1", "0.1"),
        ("tutorial2", "call", "RPF_SPECIAL_BLC", "1002", CGRATES_MONDAY, "5m", "0.1"),
        ("testtp", "call", "1001", "+4986517174963", CGRATES_MONDAY, "90s", "90"),
        ("testtp", "call", "1001", "+4986517174963", CGRATES_MONDAY, "0s", "0"),
        ("tutorial", "call", "1001", "1002", CGRATES_MONDAY, "120s", "0.7"),
    ],
)
def test_cgrates_cost(
    capsys: pytest.CaptureFixture[str],
    plan: str,
    category: str,
    subject: str,
    destination: str,
    start: str,
    usage: str,
    expected: str,
) -> None:
    code, answer = run_cost(
        capsys,
        *("--tariffs", str(PLANS / plan), "--tenant", "cgrates.org", "--category", category),
        *("--subject", subject, "--destination", destination, "--start", start),
        *("--usage", usage),
    )
    assert code == EXIT_OK, answer
    assert Decimal(answer["cost"]) == Decimal(expected)


@needs_corpus
@pytest.mark.parametrize(
    ("category", "destination", "usage"),
    [("call", "4003", "1m"), ("sms", "2001", "1")],
)
def test_cgrates_unauthorized_destination(
    capsys: pytest.CaptureFixture[str], category: str, destination: str, usage: str
) -> None:
    code, answer = run_cost(
        capsys,
        *("--tariffs", str(PLANS / "tutorial2"), "--tenant", "cgrates.org"),
        *("--category", category, "--subject", "1001", "--destination", destination),
        *("--start", CGRATES_MONDAY, "--usage", usage),
    )
    assert code == EXIT_BAD_INPUT
    assert answer["error"] == "UNAUTHORIZED_DESTINATION"
    assert f"cgrates.org/{category}/1001 → {destination}" in answer["message"]


@needs_corpus
def test_cgrates_unknown_category(capsys: pytest.CaptureFixture[str]) -> None:
    code, answer = run_cost(
        capsys,
        *("--tariffs", str(PLANS / "tutorial2"), "--tenant", "cgrates.org", "--category"),
        *("telepathy", "--subject", "1001", "--destination", "1002"),
        *("--start", CGRATES_MONDAY, "--usage", "1m"),
    )
    assert code == EXIT_BAD_INPUT
    assert answer["error"] == "RATING_PLAN_NOT_FOUND"


@needs_corpus
def test_cgrates_breakdown_of_two_rate_steps(capsys: pytest.CaptureFixture[str]) -> None:
    """tutorial RT_20CNT: 0.4 connect, the first minute 0.2 per 60 s block, then 0.1/min by 1 s."""
    _, answer = run_cost(
        capsys,
        *("--tariffs", str(PLANS / "tutorial"), "--tenant", "cgrates.org", "--category"),
        *("call", "--subject", "1001", "--destination", "1002"),
        *("--start", CGRATES_MONDAY, "--usage", "120s"),
    )
    common = {"destination_rate": "DR_1002_20CNT", "timing": "*any", "rate": "RT_20CNT"}
    assert answer["breakdown"] == {
        "plan": "RP_1001",
        "destination": "DST_1002",
        "prefix": "1002",
        "connect_fee": "0.4",
        "subtotal": "0.7",
        "flags": [],
        "spans": [
            {**common, "step": 0, "offset": 0, "usage": 60, "billed": 60, "increment": 60,
             "increments": 1, "price": "0.2", "rate_unit": 60, "amount": "0.2"},
            {**common, "step": 1, "offset": 60, "usage": 60, "billed": 60, "increment": 1,
             "increments": 60, "price": "0.1", "rate_unit": 60, "amount": "0.1"},
        ],
    }  # fmt: skip
