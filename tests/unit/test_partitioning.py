"""The compiled Kafka partitioner against aiokafka's pure-Python murmur2 and Java's values."""

from __future__ import annotations

import numpy as np
import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.columns import StrColumn
from engine.partitioning import murmur2_of, partition_of, partitions_of

# Kafka's UtilsTest.testMurmur2 (Java's signed int results)
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]
# partitions Java's producer picks among 1000 (kafka-python's and aiokafka's tests)
JAVA_PARTITION_OF_1000 = [
    (b"", 681),
    (b"a", 524),
    (b"ab", 434),
    (b"abc", 107),
    (b"123456789", 566),
    (b"\x00 ", 742),
]

KEYS = st.lists(st.binary(max_size=40), max_size=30)
UTF8_KEYS = st.lists(st.text(max_size=12).map(str.encode), max_size=30)
PARTITION_COUNTS = st.integers(1, 300)


def column(keys: list[bytes]) -> StrColumn:
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(k) for k in keys], out=offsets[1:])
    return StrColumn(np.frombuffer(b"".join(keys), dtype=np.uint8), offsets)


def aiokafka_partition(key: bytes, n: int) -> int:
    partitions = list(range(n))
    return int(DefaultPartitioner()(key, partitions, partitions))


@pytest.mark.parametrize(("key", "signed"), JAVA_MURMUR2)
def test_murmur2_matches_java(key: bytes, signed: int) -> None:
    assert murmur2_of(column([key])).tolist() == [signed & 0xFFFFFFFF]
    assert murmur2(key) == signed & 0xFFFFFFFF  # the slow twin agrees too


@pytest.mark.parametrize(("key", "partition"), JAVA_PARTITION_OF_1000)
def test_partition_matches_java(key: bytes, partition: int) -> None:
    assert partitions_of(column([key]), 1000).tolist() == [partition]
    assert partition_of(key, 1000) == partition


@pytest.mark.parametrize("length", range(41))
def test_every_length_and_high_bytes(length: int) -> None:
    # 0x80..0xff are negative Java bytes: the `& 0xff` must not be lost
    keys = [bytes(range(256 - length, 256)), b"\xff" * length, bytes(range(length))]
    assert murmur2_of(column(keys)).tolist() == [murmur2(k) for k in keys]


@settings(max_examples=300, deadline=None)
@given(KEYS)
def test_murmur2_matches_aiokafka(keys: list[bytes]) -> None:
    assert murmur2_of(column(keys)).tolist() == [murmur2(k) for k in keys]


@settings(max_examples=300, deadline=None)
@given(st.one_of(KEYS, UTF8_KEYS), PARTITION_COUNTS)
def test_partitions_match_aiokafka(keys: list[bytes], n: int) -> None:
    got = partitions_of(column(keys), n)
    assert got.dtype == np.int64
    assert got.tolist() == [aiokafka_partition(k, n) for k in keys]
    assert [partition_of(k, n) for k in keys] == got.tolist()


def test_account_strings_partition_as_their_utf8_bytes() -> None:
    accounts = ["acc-1", "acc-2", "Zoë", "東京-42", ""]
    got = partitions_of(StrColumn.from_strings(accounts), 4).tolist()
    assert got == [aiokafka_partition(a.encode(), 4) for a in accounts]


def test_a_column_from_take_partitions_like_its_values() -> None:
    keys = StrColumn.from_strings(["a", "bb", "ccc", "dddd", "eeeee"])
    picked = keys.take(np.array([4, 0, 2]))
    assert partitions_of(picked, 7).tolist() == partitions_of(keys, 7)[[4, 0, 2]].tolist()


def test_empty_column() -> None:
    assert partitions_of(column([]), 4).tolist() == []


@pytest.mark.parametrize("n", [0, -1])
def test_partition_count_must_be_positive(n: int) -> None:
    with pytest.raises(ValueError, match=f"n={n}"):
        partitions_of(column([b"x"]), n)
    with pytest.raises(ValueError, match=f"n={n}"):
        partition_of(b"x", n)


def test_faust_producer_uses_aiokafka_default_partitioner() -> None:
    # faust's aiokafka Producer takes ``conf.producer_partitioner or DefaultPartitioner()``
    # and hands it to AIOKafkaProducer; keys are serialized "raw" (UTF-8) by default
    import faust
    from faust.transport.drivers.aiokafka import Producer

    app = faust.App("partitioning-test", broker="kafka://127.0.0.1:1")
    producer = app.producer
    assert isinstance(producer, Producer)
    settings = producer._settings_default()  # what AIOKafkaProducer gets; no connection
    assert isinstance(settings["partitioner"], DefaultPartitioner)
    assert app.conf.key_serializer == "raw"
