"""The traffic generator: distributions as the scenario says, faults as intended, and the
same stream however it is sliced.

Shares are checked on a day of 200,000 positions of the network sample (a
share's standard error is below 0.0012 there; tolerances are about 4 of them).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.columns import KIND_DATA, KIND_SMS, KIND_VOICE, Columns, StrColumn
from engine.wire import decode_message_with_rejects, encode_jsonl
from loadtest.exceptions import LoadTestError
from loadtest.generator import (
    LOOKBACK,
    Traffic,
    columns_to_records,
    generate_columns,
    generate_traffic,
    join_traffic,
)
from loadtest.scenario import MALFORMED_KINDS, Scenario, load_scenario

SAMPLES = Path(__file__).parents[2] / "loadtest" / "samples"
N = 200_000
Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    """The network sample squeezed into a day of N records, with more faults."""
    network = load_scenario(SAMPLES / "network.toml")
    return replace(network, records=N, accounts=20_000, malformed=0.01, duplicates=0.02,
                   resend_window=2_000)  # fmt: skip


@pytest.fixture(scope="module")
def day(scenario: Scenario) -> Traffic:
    return generate_traffic(scenario)


def as_lists(c: Columns) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in fields(c):
        value = getattr(c, f.name)
        out[f.name] = value.to_list() if isinstance(value, StrColumn) else value.tolist()
    return out


def buffers(c: Columns) -> list[bytes]:
    out = []
    for f in fields(c):
        value = getattr(c, f.name)
        parts = [value.data, value.offsets] if isinstance(value, StrColumn) else [value]
        out += [np.ascontiguousarray(p).tobytes() for p in parts]
    return out


def originals(t: Traffic) -> Columns:
    keep = np.flatnonzero(~t.resent)
    c = t.columns
    strings = {f.name: getattr(c, f.name).take(keep) for f in fields(c)
               if isinstance(getattr(c, f.name), StrColumn)}  # fmt: skip
    return Columns(kind=c.kind[keep], start_us=c.start_us[keep], usage=c.usage[keep], **strings)


# --- distributions --------------------------------------------------------------------


def test_service_shares(scenario: Scenario, day: Traffic) -> None:
    total = sum(x.share for x in scenario.services)
    made = Counter(originals(day).category.to_list())
    assert made == day.intended
    for service in scenario.services:
        share = made[service.category] / sum(made.values())
        assert share == pytest.approx(service.share / total, abs=0.005), service.category
    kinds = dict(zip(originals(day).category.to_list(), originals(day).kind.tolist(), strict=True))
    assert kinds == {x.category: x.kind for x in scenario.services}


def test_activity_is_a_bounded_zipf(scenario: Scenario, day: Traffic) -> None:
    weights = np.arange(1, scenario.accounts + 1, dtype=np.float64) ** -scenario.zipf
    expected = np.cumsum(weights) / weights.sum()
    numbers = np.array([int(a[3:]) for a in originals(day).account.to_list()])
    counts = np.bincount(numbers, minlength=scenario.accounts) / len(numbers)
    assert counts[0] == pytest.approx(expected[0], rel=0.1)  # the busiest: account 0
    top = scenario.accounts // 100
    assert counts[:top].sum() == pytest.approx(expected[top - 1], abs=0.01)
    assert counts[:top].sum() > 0.1  # uniform activity would give 1%
    assert (counts > 0).sum() > 0.8 * scenario.accounts  # and a long tail


@pytest.mark.parametrize(("kind", "name"), [(KIND_VOICE, "calls"), (KIND_DATA, "sessions")])
def test_usage_is_log_normal(scenario: Scenario, day: Traffic, kind: int, name: str) -> None:
    dist = getattr(scenario, name)
    c = originals(day)
    usage = c.usage[c.kind == kind]
    assert len(usage) > 50_000
    assert np.median(usage) == pytest.approx(dist.median, rel=0.03)
    p99 = dist.median * math.exp(Z99 * dist.sigma)
    assert np.percentile(usage, 99) == pytest.approx(min(p99, dist.cap), rel=0.1)
    assert usage.min() >= 0
    assert usage.max() <= dist.cap
    assert (c.usage[(c.kind != KIND_VOICE) & (c.kind != KIND_DATA)] == 1).all()


def test_the_daily_curve(scenario: Scenario, day: Traffic) -> None:
    c = originals(day)
    since = c.start_us - int(scenario.day.timestamp()) * 10**6
    assert since.min() >= 0
    assert since.max() < 86_400 * 10**6
    assert (since % 10**6 == 0).all()  # whole seconds
    assert (np.diff(c.start_us) >= 0).all()  # originals come in time order
    hours = np.bincount(since // (3600 * 10**6), minlength=24) / len(since)
    curve = np.array(scenario.daily_curve) / sum(scenario.daily_curve)
    np.testing.assert_allclose(hours, curve, atol=0.001)  # stratified: near exact
    busy = np.flatnonzero(curve == curve.max()).tolist()
    assert busy == [18, 19]
    assert int(np.argmax(hours)) in busy


def test_destination_groups(scenario: Scenario, day: Traffic) -> None:
    c = originals(day)
    called = (c.kind == KIND_VOICE) | (c.kind == KIND_SMS)
    numbers = [d for d, k in zip(c.destination.to_list(), called.tolist(), strict=True) if k]
    assert all(d == "" for d, k in zip(c.destination.to_list(), called.tolist(), strict=True)
               if not k)  # fmt: skip
    prefixes = sorted(((p, g) for p, _, g in scenario.called), key=lambda x: -len(x[0]))
    counts: Counter[str] = Counter()
    for number in numbers:
        prefix, g = next((p, g) for p, g in prefixes if number.startswith(p))
        group = scenario.destinations[g]
        assert len(number) == len(prefix) + group.digits, number
        assert number.isdigit(), number
        counts[group.name] += 1
    assert counts == day.groups
    total = sum(g.share for g in scenario.destinations)
    for group in scenario.destinations:
        share = counts[group.name] / len(numbers)
        assert share == pytest.approx(group.share / total, abs=0.005), group.name
    unknown = {g.name for g in scenario.destinations if "call" in g.unpriced_for}
    calls_to_unknown = sum(
        1 for d, k in zip(c.destination.to_list(), c.kind.tolist(), strict=True)
        if k == KIND_VOICE and any(d.startswith(p) for p, _, g in scenario.called
                                   if scenario.destinations[g].name in unknown)
    )  # fmt: skip
    assert day.unpriced == calls_to_unknown > 100


# --- faults ---------------------------------------------------------------------------


def test_fault_shares(scenario: Scenario, day: Traffic) -> None:
    assert day.size == day.messages == N
    assert sum(day.intended.values()) + day.duplicates + len(day.malformed) == N
    assert len(day.malformed) / N == pytest.approx(scenario.malformed, abs=0.002)
    assert day.duplicates / N == pytest.approx(scenario.duplicates, abs=0.002)
    assert day.duplicates == int(day.resent.sum())
    kinds = Counter(day.malformed_kinds)
    assert set(kinds) == set(MALFORMED_KINDS)
    for kind in MALFORMED_KINDS:  # drawn evenly
        assert kinds[kind] / len(day.malformed) == pytest.approx(1 / 8, abs=0.04), kind
    assert day.malformed_reasons() == Counter(MALFORMED_KINDS[k] for k in day.malformed_kinds)


def test_resends_repeat_an_earlier_record_that_rates(scenario: Scenario, day: Traffic) -> None:
    c = as_lists(day.columns)
    first_row: dict[str, int] = {}
    unknown = tuple(p for p, _, g in scenario.called if scenario.destinations[g].unpriced_for)
    for row, (cdr_id, resent) in enumerate(zip(c["cdr_id"], day.resent.tolist(), strict=True)):
        if not resent:
            assert cdr_id not in first_row  # an original's cdr_id is new
            assert cdr_id == f"{scenario.seed}-{int(day.positions[row]):09d}"
            first_row[cdr_id] = row
            continue
        original = first_row[cdr_id]
        assert all(c[name][row] == c[name][original] for name in c), cdr_id
        assert day.sources[row] == day.positions[original]
        lag = int(day.positions[row] - day.positions[original])
        assert 0 < lag <= scenario.resend_window + LOOKBACK
        assert not (c["kind"][row] == KIND_VOICE and c["destination"][row].startswith(unknown))
    assert len(c["cdr_id"]) - len(first_row) == day.duplicates


def test_each_malformed_message_gets_its_reason(day: Traffic) -> None:
    accounts = set(day.columns.account.to_list())
    for raw, kind, account in zip(day.malformed, day.malformed_kinds, day.malformed_accounts,
                                  strict=True):  # fmt: skip
        got = decode_message_with_rejects(raw, "json", source="t")
        assert not got.records
        assert [r.reason for r in got.rejects] == [MALFORMED_KINDS[kind]], (kind, raw)
        assert b"\n" not in raw  # fits a JSON-lines file
        assert account.startswith("acc")
    assert len(accounts) > 1_000
    at, where = day.malformed_at, day.malformed_positions
    assert (np.diff(at) >= 0).all()
    assert at[-1] <= len(day.columns)
    inside = at < len(day.columns)
    assert (day.positions[at[inside]] > where[inside]).all()  # the next valid record
    assert (day.positions[at[at > 0] - 1] < where[at > 0]).all()  # and the one before


# --- reproducible, and sliced anywhere -------------------------------------------------


def test_same_seed_same_bytes(scenario: Scenario) -> None:
    a, b = generate_traffic(scenario, 20_000), generate_traffic(scenario, 20_000)
    assert buffers(a.columns) == buffers(b.columns)
    assert a.malformed == b.malformed
    jsonl = [encode_jsonl(columns_to_records(t.columns)) for t in (a, b)]
    assert jsonl[0] == jsonl[1]
    other = generate_traffic(replace(scenario, seed=scenario.seed + 1), 20_000)
    x, y = as_lists(a.columns), as_lists(other.columns)
    for name in ("kind", "account", "destination", "start_us", "usage", "cdr_id"):
        assert x[name] != y[name], name
    assert a.malformed != other.malformed


@pytest.mark.parametrize("layout", ["stream", "day"])
def test_slices_join_to_the_whole(layout: str) -> None:
    s = Scenario(records=8_000, accounts=300, layout=layout,  # type: ignore[arg-type]
                 zipf=1.3, malformed=0.02, duplicates=0.05, resend_window=400)  # fmt: skip
    whole = generate_traffic(s, 20_000, first=0)
    cuts = [0, 1, 2, 999, 7_999, 8_000, 8_001, 12_345, 20_000]  # across two day boundaries
    parts = [generate_traffic(s, hi - lo, first=lo) for lo, hi in itertools.pairwise(cuts)]
    joined = join_traffic(parts)
    assert buffers(joined.columns) == buffers(whole.columns)
    for name in ("positions", "sources", "resent", "malformed_positions"):
        assert getattr(joined, name).tolist() == getattr(whole, name).tolist()
    for name in ("malformed", "malformed_kinds", "malformed_accounts", "duplicates", "intended",
                 "groups", "unpriced", "size", "first"):  # fmt: skip
        assert getattr(joined, name) == getattr(whole, name), name
    assert whole.duplicates > 500
    assert len(whole.malformed) > 200
    later = generate_traffic(s, 500, first=15_000)  # a slice alone: the same records
    assert buffers(later.columns) == buffers(join_traffic(
        [generate_traffic(s, 200, first=15_000), generate_traffic(s, 300, first=15_200)]
    ).columns)  # fmt: skip
    days = np.unique((whole.columns.start_us - int(s.day.timestamp()) * 10**6) // 86_400_000_000)
    assert days.tolist() == [0, 1, 2]


def test_the_day_layout_keeps_the_historical_records_among_the_faults() -> None:
    plain = as_lists(generate_columns(Scenario(records=5_000, accounts=100)))
    faulty = generate_traffic(Scenario(records=5_000, accounts=100, malformed=0.02,
                                       duplicates=0.03))  # fmt: skip
    got = as_lists(faulty.columns)
    for row, (position, resent) in enumerate(zip(faulty.positions.tolist(),
                                                 faulty.resent.tolist(), strict=True)):  # fmt: skip
        if not resent:
            assert all(got[name][row] == plain[name][position] for name in got)
    assert faulty.duplicates > 50


def test_slices_must_be_real() -> None:
    with pytest.raises(LoadTestError, match=r"n \(-1\) and first \(0\) must be >= 0"):
        generate_traffic(Scenario(), -1)
    with pytest.raises(LoadTestError, match="records \\(per day\\) is 0"):
        generate_traffic(Scenario(records=0), 5)
    assert len(generate_traffic(Scenario(records=0)).columns) == 0
    with pytest.raises(LoadTestError, match="does not follow"):
        join_traffic([generate_traffic(Scenario(), 5), generate_traffic(Scenario(), 5, first=6)])
