"""MessagePack record arrays to Columns: the compiled fast path against msgspec + rows.

The streaming shape: 1,000,000 mixed records (the decode benchmark's) as 1,000
messages of 1,000 records. Run with ``make bench`` (or ``pytest
tests/benchmarks/test_bench_msgpack_columns.py --benchmark-enable``); in a plain
test run each benchmark runs once, unmeasured, so it keeps working. Time per
1,000-record message = median / 1,000.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.msgpack_columns import decode_record_array
from engine.records import Record
from engine.wire import decode_message_with_rejects, encode_records, records_to_columns

from .test_bench_decode import N, make_records, run

PER_MESSAGE = 1_000


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return make_records(N)


@pytest.fixture(scope="module")
def messages(records: list[Record]) -> list[bytes]:
    return [
        encode_records(records[i : i + PER_MESSAGE], "msgpack") for i in range(0, N, PER_MESSAGE)
    ]


@pytest.fixture(scope="module")
def total_usage(records: list[Record]) -> int:
    return sum(r.usage for r in records)


def test_msgpack_messages_to_columns_fast(
    benchmark: Any, messages: list[bytes], total_usage: int
) -> None:
    def decode_all() -> tuple[int, int]:
        records = usage = 0
        for raw in messages:
            decoded = decode_record_array(raw)
            assert decoded is not None  # plain traffic: the fast path never declines it
            records += len(decoded.columns)
            usage += int(decoded.columns.usage.sum())
        return records, usage

    records, usage = run(benchmark, decode_all)
    assert records == N
    assert usage == total_usage


def test_msgpack_messages_to_columns_slow(
    benchmark: Any, messages: list[bytes], total_usage: int
) -> None:
    def decode_all() -> tuple[int, int]:
        records = usage = 0
        for raw in messages:
            decoded = decode_message_with_rejects(raw, "msgpack", source="bench")
            assert not decoded.rejects
            columns = records_to_columns(decoded.records)
            records += len(columns)
            usage += int(columns.usage.sum())
        return records, usage

    records, usage = run(benchmark, decode_all)
    assert records == N
    assert usage == total_usage
