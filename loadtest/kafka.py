"""The Kafka side of a run: provision accounts, produce usage, collect what the worker wrote.

Used by the demo, the worker's integration tests and the load tester.
Records are produced to the partition their account hashes to (Kafka's
default partitioner, :func:`engine.partitioning.partitions_of`), keyed by
account, in one of the shapes the worker accepts: one record per message,
arrays of records (``batch``), or columnar batches.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from balances.model import Account, Balance
from engine.account_commands import create_messages
from engine.columns import I64, StrColumn
from engine.kafka_transport import FETCH_WAIT_MS
from engine.partitioning import partitions_of
from engine.records import Record
from engine.topics import ACCOUNTS, CDRS, RATED, REJECTED
from engine.wire import Format, columns_to_columnar, encode_record, encode_records
from engine.wire import records_to_columns as to_columns

Shape = Literal["single", "batch", "columnar"]
Outgoing = tuple[int, bytes, bytes, list[tuple[str, bytes]]]  # partition, key, value, headers
MAX_REQUEST = 32 << 20


class Rated(msgspec.Struct):
    """The fields of a rated record a run checks (the rest are ignored)."""

    cdr_id: str
    account: str
    cost: str


@dataclass
class Collected:
    """What the worker wrote to ``rated-cdrs`` and ``cdrs-rejected``."""

    rated: dict[str, Rated] = field(default_factory=dict)  # cdr_id -> first rated record
    rated_messages: int = 0
    rated_lines: int = 0  # lines read (a record sent twice after a crash counts twice)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    reject_sources: set[str] = field(default_factory=set)  # each reject once, if sent twice

    @property
    def total(self) -> int:
        return len(self.rated) + sum(self.rejected.values())


def producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=MAX_REQUEST,
                            linger_ms=5, compression_type="zstd", **options)  # fmt: skip


async def provision(
    bootstrap: str, accounts: Sequence[Account], balances: Sequence[Sequence[Balance]],
    partitions: int,
) -> int:  # fmt: skip
    """Send account creation commands to topic ``accounts``; returns the messages sent."""
    messages = create_messages(accounts, balances, partitions)
    p = producer(bootstrap)
    await p.start()
    try:
        sent = [await p.send(ACCOUNTS, value, key=key, partition=part)
                for part, key, value in messages]  # fmt: skip
        await asyncio.gather(*sent)
    finally:
        await p.stop()
    return len(messages)


def messages_of(
    records: Sequence[Record], partitions: int, *, shape: Shape = "batch", size: int = 1000,
    fmt: Format = "msgpack", members: list[I64] | None = None,
) -> list[Outgoing]:  # fmt: skip
    """``(partition, key, value, headers)`` per message, each account's records in order.

    With ``members``, the indexes in ``records`` of each message's records are
    appended to it (a load tester's bookkeeping of what it sent when).
    """
    where = partitions_of(StrColumn.from_strings([r.account for r in records]), partitions)
    out: list[Outgoing] = []
    for part in range(partitions):
        rows = np.flatnonzero(where == part)
        mine = [records[i] for i in rows.tolist()]
        step = 1 if shape == "single" else size
        if members is not None:
            members += [rows[lo : lo + step] for lo in range(0, len(rows), step)]
        if shape == "single":
            out += [(part, r.account.encode(), encode_record(r, fmt), []) for r in mine]
            continue
        for lo in range(0, len(mine), size):
            chunk = mine[lo : lo + size]
            key = chunk[0].account.encode()
            if shape == "columnar":
                value = columns_to_columnar(to_columns(chunk))
                out.append((part, key, value, [("ratewire-format", b"columnar")]))
            else:
                out.append((part, key, encode_records(chunk, fmt), []))
    return out


async def produce(
    bootstrap: str, messages: Sequence[Outgoing],
    topic: str = CDRS,
) -> float:  # fmt: skip
    """Send the messages (in order per partition); returns the seconds it took."""
    p = producer(bootstrap)
    await p.start()
    started = time.perf_counter()
    try:
        sent = [await p.send(topic, value, key=key, partition=part, headers=headers or None)
                for part, key, value, headers in messages]  # fmt: skip
        await asyncio.gather(*sent)
    finally:
        await p.stop()
    return time.perf_counter() - started


async def collect(bootstrap: str, expected: int, *, timeout: float = 60.0) -> Collected:
    """Read ``rated-cdrs`` and ``cdrs-rejected`` from the start until ``expected`` are in.

    Stops at ``timeout`` seconds with what it has; a second copy of a rated
    record (sent again after a crash) is counted in ``rated_lines`` only.
    """
    decoder = msgspec.json.Decoder(Rated)
    got = Collected()
    consumer = AIOKafkaConsumer(
        RATED, REJECTED, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS,
        max_partition_fetch_bytes=MAX_REQUEST,
        fetch_max_bytes=MAX_REQUEST,
    )  # fmt: skip
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        while got.total < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for m in messages:
                    if tp.topic == RATED:
                        got.rated_messages += 1
                        for rated in decoder.decode_lines(m.value):
                            got.rated_lines += 1
                            got.rated.setdefault(rated.cdr_id, rated)
                    else:
                        headers = dict(m.headers)
                        source = headers["ratewire-source"].decode()
                        if source not in got.reject_sources:
                            got.reject_sources.add(source)
                            got.rejected[headers["ratewire-reason"].decode()] += 1
    finally:
        await consumer.stop()
    return got
