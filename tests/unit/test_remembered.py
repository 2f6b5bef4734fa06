"""The remembered-id window the ledger and the billing consumer share."""

from __future__ import annotations

import numpy as np
import pytest

from balances.remembered import RememberedIds
from balances.store import WriteBatch
from engine.columns import StrColumn


def _ids(*values: str) -> StrColumn:
    return StrColumn.from_strings(list(values))


def test_an_id_is_fresh_once_and_only_at_its_first_occurrence() -> None:
    seen = RememberedIds(remember=100)
    assert seen.fresh(_ids("a", "b", "a", "c")).tolist() == [True, True, False, True]
    assert seen.fresh(_ids("c", "d", "d")).tolist() == [False, True, False]
    assert len(seen) == 4


def test_only_the_given_rows_are_looked_at_and_remembered() -> None:
    seen = RememberedIds(remember=100)
    rows = np.array([1, 3], dtype=np.intp)
    assert seen.fresh(_ids("a", "b", "c", "b"), rows).tolist() == [True, False]
    assert seen.fresh(_ids("a", "b")).tolist() == [True, False]  # "a" was not remembered
    assert seen.fresh(_ids("x"), np.array([], dtype=np.intp)).tolist() == []


def test_the_window_is_two_generations_and_older_values_are_deleted() -> None:
    seen = RememberedIds(remember=2)
    batch = WriteBatch()
    for n, chunk in enumerate((("a", "b"), ("c", "d"), ("e", "f"))):
        assert seen.fresh(_ids(*chunk)).all()
        seen.write(batch, b"ids/%d" % n, _ids(*chunk))
        seen.forget(batch)
    # each full generation of 2 rolled over: in memory now, an empty one and [e, f];
    # the values of the last 2 x 2 ids stay, the first is deleted
    assert seen.fresh(_ids("a", "c", "f")).tolist() == [True, True, False]
    assert [key for key, value in batch.operations() if value is None] == [b"ids/0"]
    assert seen.values == 2


def test_loading_the_values_in_order_remembers_what_they_hold() -> None:
    written = WriteBatch()
    first = RememberedIds(remember=10)
    first.write(written, b"ids/1", _ids("a", "b"))
    first.write(written, b"ids/2", _ids("c"))
    seen = RememberedIds(remember=10)
    for key, value in written.operations():
        assert value is not None
        seen.load(key, value)
    assert seen.fresh(_ids("b", "c", "d")).tolist() == [False, False, True]
    assert seen.values == 2


def test_remembering_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="remember must be at least 1 id, got 0"):
        RememberedIds(0)
