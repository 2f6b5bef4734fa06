"""The compiled key table against a Python dict: same items for the same keys, always."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.columns import StrColumn
from engine.keytable import KeyTable

TEXT = st.text(alphabet="xy\x00é", max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(TEXT, TEXT, st.integers(-2, 2), st.booleans()), max_size=40),
        max_size=5,
    )
)
def test_items_match_a_dict(batches: list[list[tuple[str, str, int, bool]]]) -> None:
    table = KeyTable(capacity=2, arena_bytes=1)  # tiny: growth happens inside batches
    items: dict[tuple[str, str, int], int] = {}
    for rows in batches:
        a = StrColumn.from_strings([r[0] for r in rows])
        b = StrColumn.from_strings([r[1] for r in rows])
        tags = np.array([r[2] for r in rows], dtype=np.int64)
        insert = bool(rows) and rows[0][3]
        got = table.lookup(a, b, tags, insert=insert).tolist()
        want = []
        for key in ((r[0], r[1], r[2]) for r in rows):
            if insert and key not in items:
                items[key] = len(items)
            want.append(items.get(key, -1))
        assert got == want
    assert len(table) == len(items)


def test_nul_inside_a_key_does_not_merge_keys() -> None:
    table = KeyTable()
    a = StrColumn.from_strings(["x\x00", "x"])
    b = StrColumn.from_strings(["", "\x00"])
    assert table.lookup(a, b, insert=True).tolist() == [0, 1]


def test_rows_restrict_the_work() -> None:
    table = KeyTable()
    a = StrColumn.from_strings(["p", "q", "p"])
    assert table.lookup(a, rows=np.array([1, 2]), insert=True).tolist() == [-1, 0, 1]
    assert table.lookup(a).tolist() == [1, 0, 1]
