"""The compiled period-usage table against its dictionary twin."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.columns import Columns, StrColumn
from tariffs.rating import PeriodCounters, PeriodCountersSlow

NAMES = st.text(alphabet="ab\x00é", min_size=0, max_size=4)


def batch(accounts: list[str], categories: list[str], usage: list[int]) -> Columns:
    n = len(accounts)
    col = StrColumn.from_strings
    return Columns(
        kind=np.full(n, 2, dtype=np.uint8), cdr_id=col([str(i) for i in range(n)]),
        tenant=col(["t"] * n), account=col(accounts), category=col(categories),
        subject=col(accounts), destination=col([""] * n),
        start_us=np.zeros(n, dtype=np.int64), usage=np.array(usage, dtype=np.int64),
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(NAMES, NAMES, st.integers(0, 3), st.integers(0, 10**12), st.booleans()),
                 max_size=60),
        min_size=1, max_size=4,
    )
)  # fmt: skip
def test_compiled_table_equals_dict_over_batches(
    batches: list[list[tuple[str, str, int, int, bool]]],
) -> None:
    fast = PeriodCounters()
    slow = PeriodCountersSlow()
    for rows in batches:
        if not rows:
            continue
        accounts, categories, months, usage, tiered = (list(x) for x in zip(*rows, strict=True))
        columns = batch(accounts, categories, usage)
        period = np.array(months, dtype=np.int64) + 24_300
        mask = np.array(tiered, dtype=np.bool_)
        got = fast.prior(columns, period, mask)
        want = slow.prior(columns, period, mask)
        assert got.tolist() == want.tolist()
    assert len(fast) == len(slow.used)


def test_prior_counts_earlier_records_of_the_same_account_category_and_month() -> None:
    columns = batch(
        ["a", "a", "b", "a", "a"], ["data", "data", "data", "sms", "data"], [5, 7, 11, 13, 17]
    )
    period = np.array([1, 1, 1, 1, 2], dtype=np.int64)
    counters = PeriodCounters()
    assert counters.prior(columns, period, np.ones(5, dtype=np.bool_)).tolist() == [0, 5, 0, 0, 0]
    # the next batch continues from what the first one used
    assert counters.prior(columns, period, np.ones(5, dtype=np.bool_)).tolist() == [
        12,
        17,
        11,
        13,
        17,
    ]


def test_drained_counters_loaded_elsewhere_continue_alike() -> None:
    """What a worker stores after each batch rebuilds the same counters on another one."""
    ones = np.ones(5, dtype=np.bool_)
    first = batch(["a", "a", "b", "a", "a"], ["data", "data", "data", "sms", "data"],
                  [5, 7, 11, 13, 17])  # fmt: skip
    period = np.array([1, 1, 1, 1, 2], dtype=np.int64)
    here = PeriodCounters()
    here.prior(first, period, ones)
    drained = here.drain()
    assert sorted(drained) == [("a", "data", 1, 12), ("a", "data", 2, 17), ("a", "sms", 1, 13),
                               ("b", "data", 1, 11)]  # fmt: skip
    assert here.drain() == []  # nothing changed since
    second = batch(["b", "a", "c"], ["data", "data", "data"], [1, 2, 3])
    there = PeriodCounters()
    there.load(drained)
    assert there.drain() == []  # loaded counters are not changes
    later = np.array([1, 2, 1], dtype=np.int64)
    assert there.prior(second, later, np.ones(3, dtype=np.bool_)).tolist() == [11, 17, 0]
    assert here.prior(second, later, np.ones(3, dtype=np.bool_)).tolist() == [11, 17, 0]
    assert sorted(there.drain()) == sorted(here.drain())
