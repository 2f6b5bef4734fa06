"""Usage records onto topic ``cdrs``: keyed by account, to the account's partition.

Records are produced to the partition their account hashes to (Kafka's
default partitioner, :func:`engine.partitioning.partitions_of`), in one of the
shapes the worker accepts: one record per message, arrays of records
(``batch``), or columnar batches. ``ratewire ingest --broker`` and the load
tester send through here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from aiokafka import AIOKafkaProducer

from engine.account_commands import Command, command_message
from engine.columns import I64, StrColumn
from engine.partitioning import partitions_of
from engine.records import Record
from engine.topics import ACCOUNTS, CDRS
from engine.wire import Format, columns_to_columnar, encode_record, encode_records
from engine.wire import records_to_columns as to_columns

Shape = Literal["single", "batch", "columnar"]
Outgoing = tuple[int, bytes, bytes, list[tuple[str, bytes]]]  # partition, key, value, headers
MAX_REQUEST = 32 << 20


def producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=MAX_REQUEST,
                            linger_ms=5, compression_type="zstd", **options)  # fmt: skip


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
    """Send the messages (in order per partition); returns the seconds sending took."""
    p = producer(bootstrap)
    try:
        await p.start()
        started = time.perf_counter()
        sent = [await p.send(topic, value, key=key, partition=part, headers=headers or None)
                for part, key, value, headers in messages]  # fmt: skip
        await asyncio.gather(*sent)
        took = time.perf_counter() - started
    finally:
        await p.stop()
    return took


async def send_records(bootstrap: str, records: Sequence[Record], *, size: int = 1000) -> int:
    """Produce ``records`` as MessagePack arrays to ``cdrs`` (its partition count from the
    broker); returns how many were sent once the broker has them all."""
    p = producer(bootstrap)
    try:
        await p.start()
        partitions = len(await p.partitions_for(CDRS))
        messages = messages_of(records, partitions, size=size)
        sent = [await p.send(CDRS, value, key=key, partition=part, headers=headers or None)
                for part, key, value, headers in messages]  # fmt: skip
        await asyncio.gather(*sent)
    finally:
        await p.stop()
    return len(records)


async def send_commands(bootstrap: str, commands: Sequence[Command]) -> int:
    """Produce account commands to ``accounts``, each to its account's partition (the
    partition count from the broker); returns how many once the broker has them all."""
    p = producer(bootstrap)
    try:
        await p.start()
        partitions = len(await p.partitions_for(ACCOUNTS))
        sent = []
        for command in commands:
            part, key, value = command_message(command, partitions)
            sent.append(await p.send(ACCOUNTS, value, key=key, partition=part))
        await asyncio.gather(*sent)
    finally:
        await p.stop()
    return len(commands)
