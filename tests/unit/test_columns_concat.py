"""Joining batches: ``concat`` of the parts' columns equals the columns of the joined records."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate, pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.columns import SMALL, Columns, StrColumn, concat, concat_strings
from engine.records import DataRecord, EventRecord, Record, SmsRecord, VoiceRecord
from engine.wire import records_to_columns

T0 = datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC)
RECORDS: list[Record] = [
    VoiceRecord(cdr_id="v-1", tenant="ratewire.demo", account="acc-ä", destination="4930123",
                start=T0, usage=61),
    SmsRecord(cdr_id="s-ü", tenant="tenant-ß", account="acc-ä", subject="Jürgen",
              destination="33612", start=T0 + timedelta(seconds=1), usage=2),
    DataRecord(cdr_id="d-日本", tenant="ratewire.demo", account="口座-7",
               start=datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))),
               usage=1_000_000_000_000),
    EventRecord(cdr_id="e-🎬", tenant="ratewire.demo", account="acc-b", category="video_play",
                subject="🎬 sub", start=T0 - timedelta(days=400), usage=1),
    VoiceRecord(cdr_id="v-2", tenant="", account="acc-b", destination="", start=T0, usage=0),
    SmsRecord(cdr_id="s-ü2", tenant="tenant-ß", account="ñ", start=T0, usage=1),
]  # fmt: skip


def assert_same_columns(got: Columns, want: Columns) -> None:
    assert len(got) == len(want)
    for f in fields(Columns):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(b, StrColumn):
            assert isinstance(a, StrColumn), f.name
            assert a.to_list() == b.to_list(), f.name
            assert np.array_equal(a.offsets, b.offsets), f.name
            assert (a.offsets.dtype, a.data.dtype) == (np.dtype(np.int64), np.dtype(np.uint8)), (
                f.name
            )
        else:
            assert np.array_equal(a, b), f.name
            assert a.dtype == b.dtype, f.name


@pytest.mark.parametrize(
    "cuts",
    [
        (),  # one part
        (3,),  # two parts
        (0,),  # an empty part, then all
        (6,),  # all, then an empty part
        (2, 5),  # three parts
        (0, 4),  # three parts, the first empty
        (2, 2),  # three parts, the middle one empty
        (1, 6),  # three parts, the last empty
        (0, 0),  # two empty parts, then all
    ],
)
def test_concat_equals_the_columns_of_the_joined_records(cuts: tuple[int, ...]) -> None:
    parts = [RECORDS[lo:hi] for lo, hi in pairwise([0, *cuts, len(RECORDS)])]
    assert sum(map(len, parts)) == len(RECORDS)
    joined = concat([records_to_columns(p) for p in parts])
    want = records_to_columns(RECORDS)
    assert_same_columns(joined, want)
    # spot-check the expectation itself: subjects default to the account
    assert joined.subject.to_list() == ["acc-ä", "Jürgen", "口座-7", "🎬 sub", "acc-b", "ñ"]
    assert joined.usage.tolist() == [61, 2, 1_000_000_000_000, 1, 0, 1]


def test_concat_of_empty_parts_is_empty() -> None:
    joined = concat([records_to_columns([]), records_to_columns([])])
    assert_same_columns(joined, records_to_columns([]))
    assert len(joined) == 0
    assert joined.account.offsets.tolist() == [0]


def test_concat_strings_of_one_part_is_that_part() -> None:
    only = StrColumn.from_strings(["a", "ü"])
    assert concat_strings([only]) is only


@given(st.lists(st.lists(st.text(max_size=6), max_size=5), min_size=1, max_size=4))
def test_concat_strings_equals_packing_the_joined_values(parts: list[list[str]]) -> None:
    joined = concat_strings([StrColumn.from_strings(p) for p in parts])
    want = StrColumn.from_strings([v for p in parts for v in p])
    assert joined.to_list() == [v for p in parts for v in p]
    assert np.array_equal(joined.offsets, want.offsets)
    assert np.array_equal(joined.data, want.data)
    assert (joined.offsets.dtype, joined.data.dtype) == (np.dtype(np.int64), np.dtype(np.uint8))


@given(st.lists(st.text(), max_size=SMALL * 2 + 5))
def test_from_strings_packs_few_and_many_values_alike(values: list[str]) -> None:
    # up to SMALL values the offsets are summed in Python, past it by numpy
    column = StrColumn.from_strings(values)
    encoded = [v.encode() for v in values]
    assert column.data.tobytes() == b"".join(encoded)
    assert column.offsets.dtype == np.int64
    assert column.offsets.tolist() == [0, *accumulate(len(e) for e in encoded)]
    assert column.to_list() == values
