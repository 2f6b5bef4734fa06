"""The changelog writer against the real broker: offsets, order, batches, and failures."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.broker import EmbeddedBroker, ensure_topics
from engine.changelog_writer import (
    PRODUCE,
    ChangelogWriteError,
    ChangelogWriter,
    _produce_version,
    _Retriable,
)

pytestmark = pytest.mark.integration


async def _read(bootstrap: str, topic: str, partition: int) -> list[tuple[int, bytes]]:
    """Every message of one partition: ``(offset, value)``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        got: list[tuple[int, bytes]] = []
        async with asyncio.timeout(10):
            while len(got) < end:
                fetched = await consumer.getmany(tp, timeout_ms=500)
                got += [(m.offset, m.value) for m in fetched.get(tp, [])]
    finally:
        await consumer.stop()
    return got


def _pause(pid: int) -> None:
    """SIGSTOP the broker and wait until every thread of it has stopped: the signal is
    delivered asynchronously, and a thread still running could answer a request sent now."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = [(Path(task) / "stat").read_text().rsplit(")", 1)[1].split()[0]
                  for task in glob.glob(f"/proc/{pid}/task/*")]  # fmt: skip
        if states and all(state == "T" for state in states):
            return
        time.sleep(0.005)
    msg = f"broker {pid} did not stop within 5 s"
    raise AssertionError(msg)


def _run(broker: EmbeddedBroker, topic: str, partitions: int,
         body: Callable[[ChangelogWriter], Awaitable[Any]], **options: Any) -> Any:  # fmt: skip
    ensure_topics(broker.bootstrap, {topic: partitions})

    async def go() -> Any:
        writer = ChangelogWriter(broker.bootstrap, topic, **options)
        try:
            return await body(writer)
        finally:
            await writer.stop()

    return asyncio.run(go())


def test_each_partition_gets_its_messages_in_order_and_the_offset_after_them(
    broker: EmbeddedBroker,
) -> None:
    topic = "cw-order"

    async def body(writer: ChangelogWriter) -> Any:
        first = await writer.write({0: [b"a0", b"a1", b"a2"], 1: [b"b0"]})
        second = await writer.write({1: [b"b1", b"b2"], 2: [b"c0"]})
        return first, second, [await _read(broker.bootstrap, topic, p) for p in range(3)]

    first, second, read = _run(broker, topic, 3, body)
    assert first == {0: 3, 1: 1}
    assert second == {1: 3, 2: 1}
    assert read == [
        [(0, b"a0"), (1, b"a1"), (2, b"a2")],
        [(0, b"b0"), (1, b"b1"), (2, b"b2")],
        [(0, b"c0")],
    ]


def test_messages_over_one_batch_go_in_several_and_keep_their_order(
    broker: EmbeddedBroker,
) -> None:
    topic = "cw-batches"
    messages = [bytes([i]) * 3_000 for i in range(10)]

    sent: list[int] = []

    async def body(writer: ChangelogWriter) -> Any:
        await writer.start()
        for connection in writer._connections.values():  # count the Produce requests
            real = connection.send

            def counted(api: int, *rest: Any, real: Any = real) -> Any:
                sent.append(api)
                return real(api, *rest)

            connection.send = counted  # type: ignore[method-assign]
        written = await writer.write({0: messages, 1: [b"small"]})
        return written, await _read(broker.bootstrap, topic, 0)

    # 10 KB a batch: three messages each (3 x 3,064 bytes), so four batches one after another
    written, read = _run(broker, topic, 2, body, batch_bytes=10_000, compress=False)
    assert written == {0: 10, 1: 1}
    assert read == list(enumerate(messages))
    assert sent == [PRODUCE] * 4


def test_a_large_batch_is_compressed_and_read_back_as_it_was(broker: EmbeddedBroker) -> None:
    topic = "cw-zstd"
    large = b"".join(b"%08d:balance;" % i for i in range(4_000))  # 68 KB, compresses well

    async def body(writer: ChangelogWriter) -> Any:
        return await writer.write({0: [b"small", large]}), await _read(broker.bootstrap, topic, 0)

    written, read = _run(broker, topic, 1, body)
    assert written == {0: 2}
    assert read == [(0, b"small"), (1, large)]
    writer = ChangelogWriter("127.0.0.1:9", topic)
    cases = (([b"small"], 7, 0), ([b"small", large], 7, 4), ([b"small", large], 5, 0))
    # where the record batch starts: the request's head, the topic, the partition count,
    # the partition and the batch's size; its attributes come 21 bytes in (after the
    # base offset, length, leader epoch, magic and CRC)
    attributes_at = 12 + 2 + len(topic) + 4 + 8 + 21
    for messages, version, codec in cases:  # 4: zstd, which needs Produce v7
        request = writer._request({0: messages}, version, 1.0)
        assert struct.unpack_from(">h", request, attributes_at)[0] & 7 == codec
        if large in messages:  # compressed, the request is far smaller than the value
            assert (len(request) < len(large) // 2) == (codec == 4)


def test_a_partition_the_broker_does_not_have_fails_alone(broker: EmbeddedBroker) -> None:
    topic = "cw-missing"

    async def body(writer: ChangelogWriter) -> Any:
        written = await writer.write({0: [b"kept"], 7: [b"lost"]})
        return written, await _read(broker.bootstrap, topic, 0)

    written, read = _run(broker, topic, 2, body, timeout=0.5)
    assert written[0] == 1
    assert isinstance(written[7], ChangelogWriteError)
    assert "cw-missing[7]" in str(written[7])
    assert "not written, 0.5 s passed" in str(written[7])
    assert read == [(0, b"kept")]


def test_a_broker_that_went_away_fails_the_write_in_time(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as own:
        ensure_topics(own.bootstrap, {"cw-gone": 1})

        async def go() -> Any:
            writer = ChangelogWriter(own.bootstrap, "cw-gone", timeout=1.0)
            try:
                before = await writer.write({0: [b"one"]})
                own.stop()
                loop = asyncio.get_running_loop()
                started = loop.time()
                after = await writer.write({0: [b"two"]})
                return before, after, loop.time() - started
            finally:
                await writer.stop()

        before, after, seconds = asyncio.run(go())
    assert before == {0: 1}
    assert isinstance(after[0], ChangelogWriteError)
    assert "cw-gone[0]" in str(after[0])
    assert 0.9 < seconds < 5.0  # tried again until the timeout, then gave up


def test_a_broker_that_stops_answering_fails_the_write_once_its_time_is_up(
    tmp_path: Path,
) -> None:
    """SIGSTOP the real broker: the request hangs; the write gives up at its timeout (not
    at twice it), and once the broker runs again the next write goes through."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as own:
        ensure_topics(own.bootstrap, {"cw-hung": 1})
        assert own.pid is not None

        async def go() -> Any:
            writer = ChangelogWriter(own.bootstrap, "cw-hung", timeout=1.0)
            try:
                before = await writer.write({0: [b"one"]})
                _pause(own.pid)
                try:
                    loop = asyncio.get_running_loop()
                    started = loop.time()
                    hung = await writer.write({0: [b"two"]})
                    seconds = loop.time() - started
                finally:
                    os.kill(own.pid, signal.SIGCONT)
                after = await writer.write({0: [b"three"]})
                return before, hung, seconds, after, await _read(own.bootstrap, "cw-hung", 0)
            finally:
                await writer.stop()

        before, hung, seconds, after, read = asyncio.run(go())
    assert before == {0: 1}
    assert isinstance(hung[0], ChangelogWriteError)
    assert "not written, 1 s passed" in str(hung[0])
    assert 0.95 < seconds < 1.6
    # "two" may or may not have been appended before the broker stopped reading: either
    # way "three" follows it, at the offset the write answered
    assert after[0] == len(read)
    assert [v for _, v in read] in ([b"one", b"three"], [b"one", b"two", b"three"])


def test_stopping_the_writer_ends_a_write_under_way_at_once(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as own:
        ensure_topics(own.bootstrap, {"cw-stop": 1})
        assert own.pid is not None

        async def go() -> Any:
            writer = ChangelogWriter(own.bootstrap, "cw-stop", timeout=20.0)
            await writer.write({0: [b"one"]})
            _pause(own.pid)
            try:
                loop = asyncio.get_running_loop()
                pending = asyncio.ensure_future(writer.write({0: [b"two"]}))
                await asyncio.sleep(0.3)
                started = loop.time()
                await writer.stop()
                written = await asyncio.wait_for(pending, 5)
                seconds = loop.time() - started
            finally:
                os.kill(own.pid, signal.SIGCONT)
            with pytest.raises(ChangelogWriteError, match=r"cw-stop: the writer is stopped"):
                await writer.write({0: [b"three"]})
            return written, seconds

        written, seconds = asyncio.run(go())
    assert isinstance(written[0], ChangelogWriteError)
    assert "not written, the writer stopped" in str(written[0])
    assert seconds < 1.0


def test_the_produce_version_is_the_highest_both_sides_speak() -> None:
    def answer(*apis: tuple[int, int, int], code: int = 0) -> bytes:
        rows = b"".join(struct.pack(">hhh", *api) for api in apis)
        return struct.pack(">hi", code, len(apis)) + rows

    assert _produce_version(answer((18, 0, 3), (0, 0, 11)), "b:1") == 7
    assert _produce_version(answer((0, 3, 5)), "b:1") == 5
    with pytest.raises(ChangelogWriteError, match=r"b:1 does not speak Produce v3-v7"):
        _produce_version(answer((0, 0, 2)), "b:1")
    with pytest.raises(ChangelogWriteError, match=r"b:1 does not speak Produce"):
        _produce_version(answer((18, 0, 3)), "b:1")
    with pytest.raises(ChangelogWriteError, match=r"b:1 refused ApiVersions"):
        _produce_version(answer(code=35), "b:1")


def test_answers_are_read_in_the_layouts_before_and_after_v5() -> None:
    writer = ChangelogWriter("127.0.0.1:9", "t")
    for version, tail in ((3, b""), (7, struct.pack(">q", 0))):  # v5 added log_start_offset

        def entry(p: int, code: int, base: int, tail: bytes = tail) -> bytes:
            return struct.pack(">ihqq", p, code, base, -1) + tail

        answer = b"".join((struct.pack(">ih", 1, 1), b"t", struct.pack(">i", 3),
                           entry(0, 0, 41), entry(1, 6, -1), entry(2, 87, -1),
                           struct.pack(">i", 0)))  # fmt: skip
        out = writer._answers(answer, {0: [b"x", b"y"], 1: [b"z"], 2: [b"w"]}, version)
        assert out[0] == 43
        assert isinstance(out[1], _Retriable)  # NOT_LEADER_OR_FOLLOWER: tried again
        assert "t[1]: the broker answered NotLeaderForPartitionError" in str(out[1])
        assert isinstance(out[2], ChangelogWriteError)  # INVALID_RECORD: not worth it
        assert "t[2]" in str(out[2])
