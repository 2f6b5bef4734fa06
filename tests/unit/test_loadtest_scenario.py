"""Load-test scenarios: the samples load as written, every mistake names its key, and the
accounts follow the scenario's modes and balances."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from balances.model import Balance, Filter, Mode
from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE
from engine.exceptions import RatewireError
from loadtest.accounts import account_id, mode_plans, scenario_accounts
from loadtest.exceptions import LoadTestError, ScenarioError
from loadtest.scenario import (
    DAILY_CURVE,
    DESTINATIONS,
    EUR,
    SERVICES,
    LogNormal,
    ModePlan,
    Scenario,
    load_scenario,
)

SAMPLES = Path(__file__).parents[2] / "loadtest" / "samples"
HOUR, GB = 3600, 10**9


@pytest.fixture(scope="module")
def network() -> Scenario:
    return load_scenario(SAMPLES / "network.toml")


def test_the_network_sample_reads_as_written(network: Scenario) -> None:
    s = network
    assert (s.name, s.seed, s.records, s.accounts, s.zipf, s.layout) == (
        "network", 20261102, 2_000_000, 200_000, 0.6, "stream",
    )  # fmt: skip
    assert s.day.isoformat() == "2026-11-02T00:00:00+01:00"
    assert [(x.category, x.kind, x.share) for x in s.services] == [
        ("call", KIND_VOICE, 0.36), ("sms", KIND_SMS, 0.12), ("data", KIND_DATA, 0.49),
        ("video", KIND_EVENT, 0.03),
    ]  # fmt: skip
    assert s.calls == LogNormal(median=75, sigma=1.2, cap=4 * HOUR)
    assert s.sessions == LogNormal(median=3_000_000, sigma=1.8, cap=5 * GB)
    groups = {g.name: g for g in s.destinations}
    assert list(groups) == ["national_fixed", "mobile", "freephone", "premium",
                            "international_europe", "international_world", "unknown"]  # fmt: skip
    assert groups["national_fixed"].share == pytest.approx(0.22)
    assert groups["national_fixed"].shares[0] == pytest.approx(0.22 * 8 / 23)  # by weight
    assert groups["freephone"].shares == (0.012,)
    assert groups["unknown"].unpriced_for == ("call",)
    assert groups["premium"].digits == 6
    assert all(not g.unpriced_for for name, g in groups.items() if name != "unknown")
    assert len(s.daily_curve) == 24
    assert int(max(range(24), key=lambda h: s.daily_curve[h])) == 18
    assert (s.malformed, s.duplicates, s.resend_window) == (0.001, 0.004, 10_000)


def test_the_sample_modes_and_balances(network: Scenario) -> None:
    postpaid, prepaid, hybrid = network.modes
    assert [m.mode for m in network.modes] == [Mode.POSTPAID, Mode.PREPAID, Mode.HYBRID]
    assert (postpaid.credit_limit, prepaid.credit_limit, hybrid.credit_limit) == (
        5000 * EUR, 0, 2000 * EUR,
    )  # fmt: skip
    assert prepaid.balances == (
        Balance(id="free-minutes", unit="voice_seconds", amount=100 * HOUR, weight=10,
                filter=Filter(destinations=("GERMANY", "DE_MOBILE"))),
        Balance(id="free-sms", unit="sms", amount=1000, weight=10,
                filter=Filter(categories=("sms",))),
        Balance(id="data", unit="data_bytes", amount=20 * GB, weight=10),
        Balance(id="credit", unit="EUR", amount=2500 * EUR, weight=5),
    )  # fmt: skip


def test_the_smoke_sample_is_small() -> None:
    s = load_scenario(SAMPLES / "smoke.toml")
    assert (s.name, s.records, s.accounts, s.layout) == ("smoke", 20_000, 500, "stream")
    assert s.malformed > 0
    assert s.duplicates > 0


def test_python_defaults_are_the_historical_traffic() -> None:
    s = Scenario()
    assert [(x.kind, x.category, x.share) for x in s.services] == list(SERVICES)
    assert [(p, share) for p, share, _ in s.called] == list(DESTINATIONS)
    assert s.daily_curve == tuple(DAILY_CURVE.tolist())
    assert (s.calls.mu, s.calls.sigma, s.calls.cap) == (4.0, 1.1, 4 * HOUR)
    assert (s.sessions.mu, s.sessions.sigma, s.sessions.cap) == (14.5, 1.5, None)
    assert (s.layout, s.malformed, s.duplicates) == ("day", 0.0, 0.0)


# --- errors name the key ------------------------------------------------------------

BAD = [
    ("[accounts]\ncount = -5", "bad.toml [accounts] count: expected an integer >= 1, got -5"),
    ("[accounts]\ncount = 'many'", "bad.toml [accounts] count: expected an integer >= 1"),
    ("[calls]\nsigmaa = 1.0", "bad.toml [calls]: unknown key 'sigmaa'"),
    ("[fautls]\nmalformed = 0.1", "bad.toml: unknown key 'fautls'"),
    ("[calls]\nmedian = 'forever'", "bad.toml [calls] median: 'forever' is not a usage quantity"),
    ("[sessions]\nsigma = -1", "bad.toml [sessions] sigma: expected a number >= 0, got -1"),
    ("[services.call]\nkind = 'fax'\nshare = 1", "bad.toml [services.call] kind: expected one of"),
    ("[services.call]\nkind = 'voice'\nshare = 1\nweight = 2", "[services.call]: unknown key"),
    ("[destinations.x]\nshare = 1\nprefixes = ['49a']", "bad.toml [destinations.x] prefixes"),
    ("[destinations.x]\nshare = 1\nprefixes = ['49', '33']\nweights = [1]",
     "bad.toml [destinations.x] weights: expected 2 weights"),
    ("[destinations.x]\nshare = 1\nprefixes = ['49']\ndigits = 0",
     "bad.toml [destinations.x] digits: expected an integer >= 1"),
    ("[accounts.modes.flatrate]\nshare = 1", "bad.toml [accounts.modes] flatrate: expected a mode"),
    ("[accounts.modes.prepaid]\nshare = 1\nbalances = [{id = 'c', unit = 'GBP', amount = '1'}]",
     "bad.toml [accounts.modes.prepaid.balances[0]] unit: unknown unit 'GBP'"),
    ("[accounts.modes.prepaid]\nshare = 1\nbalances = [{id = 'c', unit = 'EUR', amount = 5.5}]",
     "bad.toml [accounts.modes.prepaid.balances[0]] amount: expected a decimal string in EUR"),
    ("[accounts.modes.prepaid]\nshare = 1\ncredit_limit = '1.0000000001'",
     "bad.toml [accounts.modes.prepaid] credit_limit: '1.0000000001' has more than 9 decimals"),
    ("[accounts.modes.prepaid]\nshare = 1\nbalances = [{unit = 'sms', amount = 5}]",
     "bad.toml [accounts.modes.prepaid.balances[0]] id: expected a non-empty string"),
    ("[scenario]\nday = 2026-11-02T00:00:00", "bad.toml [scenario] day: expected a time with"),
    ("[scenario]\nlayout = 'week'", "bad.toml [scenario] layout: expected 'day' or 'stream'"),
    ("[daily]\ncurve = [1, 2, 3]", "bad.toml [daily] curve: expected 24 weights, one per hour"),
    ("[faults]\nmalformed = 0.7\nduplicates = 0.5", "malformed and duplicates are shares"),
    ("[faults]\nmalformed_kinds = ['bogus']", "malformed_kinds ['bogus']: use some of truncated"),
    ("[scenario]\nlayout = 'day'\n[accounts]\nzipf = 0.9", "zipf 0.9 must be > 1 with layout"),
    ("[services.call]\nkind = 'voice'\nshare = 0", "services: shares must be finite, >= 0 and"),
    ("[scenario\nname = 1", "scenario bad.toml: is not valid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_a_mistake_names_its_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"scenario .*nowhere\.toml: cannot be read"):
        load_scenario(tmp_path / "nowhere.toml")


def test_scenario_errors_are_ratewire_errors() -> None:
    assert issubclass(ScenarioError, LoadTestError)
    assert issubclass(LoadTestError, RatewireError)
    assert ScenarioError.code == "SCENARIO_ERROR"
    with pytest.raises(ScenarioError, match="resend_window must be >= 1"):
        Scenario(resend_window=0)


def test_an_empty_file_is_the_defaults_streamed(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text("")
    s = load_scenario(path)
    assert s.name == "plain"
    assert s.layout == "stream"  # files default to the stream layout
    assert s.services == Scenario().services
    assert s.modes == Scenario().modes


# --- accounts -----------------------------------------------------------------------


def test_the_historical_accounts() -> None:
    accounts, balances = scenario_accounts(Scenario(records=1, accounts=7))
    assert [a.id for a in accounts] == [account_id(i) for i in range(7)]
    assert [a.mode for a in accounts] == [Mode.POSTPAID if i % 3 == 0 else Mode.PREPAID
                                          for i in range(7)]  # fmt: skip
    assert {a.credit_limit for a in accounts} == {50 * EUR}
    assert [[b.id for b in own] for own in balances] == [["free-minutes", "data", "credit"]] * 7


@pytest.mark.parametrize(
    ("shares", "period"), [((1 / 3, 2 / 3), 3), ((0.35, 0.55, 0.10), 20), ((0.5, 0, 0.5), 2)]
)
def test_modes_hold_their_shares_exactly_over_each_period(
    shares: tuple[float, ...], period: int
) -> None:
    modes = tuple(ModePlan(Mode.PREPAID, share) for share in shares)
    plans = mode_plans(modes, 10 * period + 1)
    for lo in range(0, 10 * period, period):
        counts = Counter(plans[lo : lo + period])
        assert [counts[m] for m in range(len(shares))] == [round(x * period) for x in shares]
    assert plans[0] == next(m for m, x in enumerate(shares) if x > 0)  # the first mode first


def test_network_accounts_follow_the_modes(network: Scenario) -> None:
    accounts, balances = scenario_accounts(network)
    assert len(accounts) == len(balances) == 200_000
    modes = Counter(a.mode for a in accounts)
    assert modes == {Mode.POSTPAID: 70_000, Mode.PREPAID: 110_000, Mode.HYBRID: 20_000}
    by_mode = {m.mode: m for m in network.modes}
    for account, own in zip(accounts[:40], balances[:40], strict=True):
        plan = by_mode[account.mode]
        assert account.credit_limit == plan.credit_limit
        assert tuple(own) == plan.balances
        assert (account.tenant, account.currency) == ("ratewire.demo", "EUR")
        assert account.created < network.day
    assert accounts[0].mode is Mode.POSTPAID  # the busiest account: the first mode
    assert math.isclose(sum(m.share for m in network.modes), 1.0)
