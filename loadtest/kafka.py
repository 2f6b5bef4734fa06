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

import msgspec
from aiokafka import AIOKafkaConsumer

from balances.model import Account, Balance
from engine.account_commands import create_messages
from engine.kafka_transport import FETCH_WAIT_MS
from engine.produce import MAX_REQUEST, Outgoing, Shape, messages_of, produce, producer
from engine.topics import ACCOUNTS, RATED, REJECTED

__all__ = ["MAX_REQUEST", "Outgoing", "Shape", "messages_of", "produce", "producer"]


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


async def provision(
    bootstrap: str, accounts: Sequence[Account], balances: Sequence[Sequence[Balance]],
    partitions: int,
) -> int:  # fmt: skip
    """Send account creation commands to topic ``accounts``; returns the messages sent."""
    messages = create_messages(accounts, balances, partitions)
    p = producer(bootstrap)
    try:
        await p.start()
        sent = [await p.send(ACCOUNTS, value, key=key, partition=part)
                for part, key, value in messages]  # fmt: skip
        await asyncio.gather(*sent)
    finally:
        await p.stop()
    return len(messages)


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
