"""The load generator: reproducible, shaped as documented, and ratable by the sample plan."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE, Columns, StrColumn
from engine.wire import encode_jsonl, records_to_columns
from loadtest.generator import (
    DAILY_CURVE,
    DESTINATIONS,
    SERVICES,
    TENANT,
    Scenario,
    columns_to_records,
    generate_columns,
)
from tariffs.loader import load_tariff
from tariffs.rated import UNAUTHORIZED_DESTINATION
from tariffs.rating import PeriodCounters, Rater

SAMPLE = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
DAY_US = 86_400 * 10**6
TAIL_DIGITS = 7  # a called number is its prefix and seven digits
SHARE_TOLERANCE = 0.01  # over 100,000 records a share's standard error is below 0.002


def columns_as_lists(c: Columns) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in fields(c):
        value = getattr(c, f.name)
        out[f.name] = value.to_list() if isinstance(value, StrColumn) else value.tolist()
    return out


@pytest.fixture(scope="module")
def day() -> Columns:
    return generate_columns(Scenario(records=100_000))


def test_same_seed_same_traffic() -> None:
    first = generate_columns(Scenario(records=5_000, seed=11))
    again = generate_columns(Scenario(records=5_000, seed=11))
    assert columns_as_lists(first) == columns_as_lists(again)
    for f in fields(first):  # the buffers too, not only the values
        a, b = getattr(first, f.name), getattr(again, f.name)
        if isinstance(a, StrColumn):
            assert a.data.tobytes() == b.data.tobytes()
            assert a.offsets.tolist() == b.offsets.tolist()


def test_other_seed_other_traffic() -> None:
    a = columns_as_lists(generate_columns(Scenario(records=5_000, seed=11)))
    b = columns_as_lists(generate_columns(Scenario(records=5_000, seed=12)))
    for name in ("kind", "account", "destination", "start_us", "usage", "cdr_id"):
        assert a[name] != b[name], name
    assert a["tenant"] == b["tenant"] == [TENANT] * 5_000


def test_records_are_the_same_traffic() -> None:
    columns = generate_columns(Scenario(records=5_000, seed=3))
    records = columns_to_records(columns)
    assert len(records) == 5_000
    assert columns_as_lists(records_to_columns(records)) == columns_as_lists(columns)


def test_identities(day: Columns) -> None:
    ids = day.cdr_id.to_list()
    assert len(set(ids)) == len(ids) == 100_000
    assert ids[0] == "2026-000000000"
    accounts = set(day.account.to_list())
    assert all(a.startswith("acc") and len(a) == 10 for a in accounts)
    assert len(accounts) <= 10_000
    assert day.subject.to_list() == day.account.to_list()


def test_service_shares(day: Columns) -> None:
    counts = Counter(day.kind.tolist())
    for kind, category, share in SERVICES:
        assert counts[kind] / len(day) == pytest.approx(share, abs=SHARE_TOLERANCE), category
    categories = Counter(zip(day.kind.tolist(), day.category.to_list(), strict=True))
    assert set(categories) == {(k, c) for k, c, _ in SERVICES}


def test_destination_shares(day: Columns) -> None:
    destinations = day.destination.to_list()
    kinds = day.kind.tolist()
    called = [d for d, k in zip(destinations, kinds, strict=True) if k in (KIND_VOICE, KIND_SMS)]
    assert all(
        d == "" for d, k in zip(destinations, kinds, strict=True) if k in (KIND_DATA, KIND_EVENT)
    )
    prefixes = Counter(d[:-TAIL_DIGITS] for d in called)
    assert all(len(d) > TAIL_DIGITS and d[-TAIL_DIGITS:].isdigit() for d in called)
    total = sum(share for _, share in DESTINATIONS)
    assert set(prefixes) == {p for p, _ in DESTINATIONS}
    for prefix, share in DESTINATIONS:
        assert prefixes[prefix] / len(called) == pytest.approx(
            share / total, abs=SHARE_TOLERANCE
        ), prefix


def test_account_activity_is_skewed(day: Columns) -> None:
    per_account = sorted(Counter(day.account.to_list()).values(), reverse=True)
    top = per_account[: 10_000 // 100]  # the top 1% of the scenario's 10,000 accounts
    assert sum(top) / len(day) > 0.5  # uniform activity would give 1%
    assert per_account[0] / len(day) > 0.1  # Zipf(1.2): the busiest alone about 18%
    assert len(per_account) > 1_000  # and a long tail of rare accounts


def test_usage(day: Columns) -> None:
    usage, kind = day.usage, day.kind
    voice = usage[kind == KIND_VOICE]
    assert voice.min() >= 0
    assert voice.max() <= 4 * 3600
    assert 30 < np.median(voice) < 120  # log-normal around e**4 ≈ 55 s
    assert (usage[(kind == KIND_SMS) | (kind == KIND_EVENT)] == 1).all()
    data = usage[kind == KIND_DATA]
    assert data.min() > 0
    assert 10**5 < np.median(data) < 10**7  # e**14.5 ≈ 2 MB


def test_one_day_with_a_busy_hour(day: Columns) -> None:
    start = day.start_us - int(Scenario().day.timestamp()) * 10**6
    assert start.min() >= 0
    assert start.max() < DAY_US
    assert (np.diff(day.start_us) >= 0).all()  # in time order
    assert (start % 10**6 == 0).all()  # whole seconds
    hours = np.bincount(start // (3600 * 10**6), minlength=24)
    assert int(np.argmax(hours)) == int(np.argmax(DAILY_CURVE)) == 18
    assert hours[18] / len(day) == pytest.approx(14 / DAILY_CURVE.sum(), abs=SHARE_TOLERANCE)


def test_the_sample_plan_rates_all_but_999(day: Columns) -> None:
    rated = Rater(load_tariff(SAMPLE)).rate(day, PeriodCounters())
    destinations = day.destination.to_list()
    kinds = day.kind.tolist()
    failed = np.flatnonzero(rated.error).tolist()
    calls_to_999 = [
        i
        for i, (k, d) in enumerate(zip(kinds, destinations, strict=True))
        if k == KIND_VOICE and d.startswith("999")
    ]
    assert failed == calls_to_999
    assert len(failed) > 1_000
    assert {rated.error_code(i) for i in failed} == {UNAUTHORIZED_DESTINATION}
    # an SMS to "999…" is priced as international (the SMS plan binds *any)
    sms_999 = [i for i, (k, d) in enumerate(zip(kinds, destinations, strict=True))
               if k == KIND_SMS and d.startswith("999")]  # fmt: skip
    assert sms_999
    assert {int(rated.cost[i]) for i in sms_999} == {190_000_000}
    ok = rated.error == 0
    assert (rated.cost[ok] >= 0).all()
    assert int(rated.cost[ok].sum()) > 0


def test_the_historical_records_are_kept() -> None:
    """``Scenario(records=…, accounts=…)`` gives, byte for byte, the records the demo and
    these tests were written against (before scenarios had layouts and faults)."""
    columns = generate_columns(Scenario(records=2_000, accounts=100, seed=5))
    lines = encode_jsonl(columns_to_records(columns)).splitlines()
    assert lines[0] == (
        b'{"type":"data","cdr_id":"5-000000000","tenant":"ratewire.demo","account":"acc0000001",'
        b'"category":"data","start":"2026-11-02T00:01:58Z","usage":2157830}'
    )
    assert lines[-1] == (
        b'{"type":"voice","cdr_id":"5-000001999","tenant":"ratewire.demo","account":"acc0000089",'
        b'"category":"call","destination":"49159706294","start":"2026-11-02T23:59:43Z","usage":31}'
    )
    digest = hashlib.sha256(b"\n".join(lines) + b"\n").hexdigest()
    assert digest == "bb18c7ec7e760d45757e375255668438705dd6677ff09de9b3e0753d1ea1dbf5"
