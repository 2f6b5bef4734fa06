"""Decode-stage throughput on 1,000,000 mixed usage records.

Run with ``make bench`` (or ``pytest tests/benchmarks/test_bench_decode.py
--benchmark-enable``); in a plain test run each benchmark runs once, unmeasured,
so it keeps working. Records per second = 1,000,000 / median.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.columns import Columns
from engine.records import DataRecord, EventRecord, Record, SmsRecord, VoiceRecord
from engine.wire import (
    columns_to_columnar,
    decode_columnar,
    decode_message,
    encode_records,
    records_to_columns,
)

N = 1_000_000
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def make_records(n: int) -> list[Record]:
    """``n`` records, the same every run: 50% voice, 20% SMS, 25% data, 5% events.

    Built with plain constructors from precomputed cycles of values (no random
    calls), which keeps generating a million of them to about a second.
    """
    numbers = [f"4479{i:08d}" for i in range(10_007)]
    accounts = [f"ACC-{i:06d}" for i in range(5_003)]
    cells = [f"23415-{i:05d}" for i in range(997)]
    starts = [T0 + timedelta(seconds=i * 7, microseconds=i * 13 % 1_000_000) for i in range(86_413)]
    records: list[Record] = []
    append = records.append
    for i in range(n):
        account, start = accounts[i % 5_003], starts[i % 86_413]
        slot = i % 20
        if slot < 10:
            append(
                VoiceRecord(
                    cdr_id=f"v{i}",
                    tenant="acme",
                    account=account,
                    origin=numbers[i % 10_007],
                    destination=numbers[(i * 31) % 10_007],
                    start=start,
                    usage=i % 3_600,
                    cell=cells[i % 997],
                )
            )
        elif slot < 14:
            append(
                SmsRecord(
                    cdr_id=f"s{i}",
                    tenant="acme",
                    account=account,
                    destination=numbers[(i * 17) % 10_007],
                    start=start,
                    usage=1,
                )
            )
        elif slot < 19:
            append(
                DataRecord(
                    cdr_id=f"d{i}",
                    tenant="acme",
                    account=account,
                    start=start,
                    usage=(i * 7_919) % 50_000_000,
                    apn="internet",
                    roaming=slot == 18,
                )
            )
        else:
            append(
                EventRecord(
                    cdr_id=f"e{i}",
                    tenant="acme",
                    account=account,
                    subject="VOD-PREMIUM",
                    category="vod",
                    start=start,
                    usage=1,
                )
            )
    return records


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return make_records(N)


@pytest.fixture(scope="module")
def columns(records: list[Record]) -> Columns:
    return records_to_columns(records)


def run(benchmark: Any, function: Callable[[], Any]) -> Any:
    # A million records per call: a few rounds give a stable median.
    return benchmark.pedantic(function, rounds=7, iterations=1, warmup_rounds=1)


def test_msgpack_array_to_structs(benchmark: Any, records: list[Record]) -> None:
    raw = encode_records(records, "msgpack")
    decoded = run(benchmark, lambda: decode_message(raw, "msgpack"))
    assert len(decoded) == N
    assert decoded[N - 1] == records[N - 1]


def test_msgpack_1000_record_messages_to_structs(benchmark: Any, records: list[Record]) -> None:
    # The streaming shape: the same million records as 1,000 messages. Memory freed
    # by one message is reused by the next, so no fresh pages are faulted in (a
    # one-call decode of 1 M records spends ~40% of its time doing that here).
    messages = [encode_records(records[i : i + 1_000], "msgpack") for i in range(0, N, 1_000)]

    def decode_all() -> int:
        return sum(len(decode_message(raw, "msgpack")) for raw in messages)

    assert run(benchmark, decode_all) == N


def test_json_array_to_structs(benchmark: Any, records: list[Record]) -> None:
    raw = encode_records(records, "json")
    decoded = run(benchmark, lambda: decode_message(raw, "json"))
    assert len(decoded) == N
    assert decoded[N - 1] == records[N - 1]


def test_records_to_columns(benchmark: Any, records: list[Record]) -> None:
    columns = run(benchmark, lambda: records_to_columns(records))
    assert len(columns) == N
    assert columns.subject[N - 1] == "VOD-PREMIUM"
    assert columns.subject[0] == records[0].account


def test_columnar_to_columns(benchmark: Any, columns: Columns) -> None:
    raw = columns_to_columnar(columns)
    decoded = run(benchmark, lambda: decode_columnar(raw))
    assert len(decoded) == N
    assert int(decoded.usage.sum()) == int(columns.usage.sum())
