"""The embedded Tansu broker: topics, exact produce/consume round trips, and stopping."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine import broker as broker_module
from engine import topics
from engine.broker import (
    EmbeddedBroker,
    ensure_topics,
    ensure_topics_async,
    free_port,
    wait_for_broker,
)
from engine.columns import StrColumn
from engine.exceptions import BrokerError
from engine.partitioning import partitions_of

pytestmark = pytest.mark.integration


async def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes, int | None]]
) -> list[tuple[int, int]]:
    """Send ``(key, value, partition)`` records one by one; their ``(partition, offset)``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, v, key=k, partition=p) for k, v, p in records]
    finally:
        await producer.stop()
    return [(m.partition, m.offset) for m in sent]


async def consume(
    bootstrap: str, topic: str, partitions: int, count: int
) -> list[tuple[int, int, bytes, bytes]]:
    """``count`` records from the start of every partition: ``(partition, offset, key, value)``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list[tuple[int, int, bytes, bytes]] = []
        async with asyncio.timeout(10):
            while len(got) < count:
                batches = await consumer.getmany(*tps, timeout_ms=500)
                got += [
                    (m.partition, m.offset, m.key, m.value) for ms in batches.values() for m in ms
                ]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    assert sum(ends.values()) == count, f"more records than expected: {ends}"
    return sorted(got)


def test_produce_to_explicit_partitions_and_read_back(broker: EmbeddedBroker) -> None:
    ensure_topics(broker.bootstrap, {"explicit": 4})
    ensure_topics(broker.bootstrap, {"explicit": 4})  # "already exists" is fine
    records = [(b"k1", b"one", 0), (b"k2", b"two", 2), (b"k3", b"three", 2)]
    assert asyncio.run(produce(broker.bootstrap, "explicit", records)) == [(0, 0), (2, 0), (2, 1)]
    assert asyncio.run(consume(broker.bootstrap, "explicit", 4, 3)) == [
        (0, 0, b"k1", b"one"),
        (2, 0, b"k2", b"two"),
        (2, 1, b"k3", b"three"),
    ]


def test_keyed_records_land_where_partitions_of_says(broker: EmbeddedBroker) -> None:
    ensure_topics(broker.bootstrap, {"keyed": 4})
    accounts = [f"acc-{i}" for i in range(40)] + ["Zoë", "東京"]
    records = [(a.encode(), b"x", None) for a in accounts]  # the producer's partitioner picks
    placed = asyncio.run(produce(broker.bootstrap, "keyed", records))
    expected = partitions_of(StrColumn.from_strings(accounts), 4).tolist()
    assert [p for p, _ in placed] == expected
    assert len(set(expected)) == 4  # the keys really spread over every partition


def test_ensure_topics_creates_all_and_checks_counts(broker: EmbeddedBroker) -> None:
    wanted = {f"{name}-t": count for name, count in topics.all_topics(3).items()}
    ensure_topics(broker.bootstrap, wanted)
    ensure_topics(broker.bootstrap, wanted)
    with pytest.raises(BrokerError, match=r"'cdrs-t' .* has 3 partitions.*want 5"):
        ensure_topics(broker.bootstrap, {"cdrs-t": 5})
    with pytest.raises(BrokerError, match=r"'zero' .* 0 partitions"):
        asyncio.run(ensure_topics_async(broker.bootstrap, {"zero": 0}))


def test_stop_ends_the_process(tmp_path: Path) -> None:
    own = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    own.start()
    pid = own.pid
    assert pid is not None
    assert own.running
    own.stop()
    own.stop()  # idempotent
    assert own.pid is None
    assert not own.running
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped by stop(): no such process any more


def test_a_chosen_port_in_use_is_reported_with_the_log(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    late = EmbeddedBroker(port=broker.port, log_path=tmp_path / "tansu.log", startup_timeout=5)
    with pytest.raises(BrokerError, match=rf"port {broker.port}(.|\n)*AddrInUse"):
        late.start()  # the session broker answers the probe, but with another cluster id
    assert late.pid is None
    assert broker.running


def test_an_automatic_port_lost_to_a_race_is_replaced(
    broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports: Iterator[int] = iter([broker.port, free_port()])
    monkeypatch.setattr(broker_module, "free_port", lambda: next(ports))
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as own:
        assert own.port != broker.port
        assert asyncio.run(produce(own.bootstrap, "own", [(b"k", b"v", None)])) == [(0, 0)]


def test_wait_for_broker_gives_up_where_nothing_listens() -> None:
    port = free_port()
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port} within 0\.3 s"):
        wait_for_broker(f"127.0.0.1:{port}", timeout=0.3)


def test_wait_for_broker_accepts_the_running_broker(broker: EmbeddedBroker) -> None:
    wait_for_broker(broker.bootstrap, timeout=5, cluster_id=broker.cluster_id)


def test_a_temporary_log_is_removed_by_stop() -> None:
    with EmbeddedBroker() as own:
        log = own.log_path
        assert log is not None
        assert "listening on: tcp://" + own.bootstrap in log.read_text()
    assert not log.exists()
