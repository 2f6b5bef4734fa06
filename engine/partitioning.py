"""Which partition Kafka puts a keyed record on, for a whole column of keys at once.

Kafka's default partitioner (Java's and aiokafka's ``DefaultPartitioner``)
sends a record with key bytes ``k`` to partition
``(murmur2(k) & 0x7fffffff) % n``. Knowing it ahead lets a batch be split by
the partition (the worker) that will own each account.

Faust-streaming 0.15.3 uses the same function: its aiokafka producer is built
with ``partitioner=conf.producer_partitioner`` or, by default,
``aiokafka.partitioner.DefaultPartitioner()``
(``faust/transport/drivers/aiokafka.py``, ``Producer.__post_init__`` and
``_settings_default``), and ``Producer.key_partition`` asks
``AIOKafkaProducer._partition`` with the serialized key, which calls that
partitioner. With Faust's default ``key_serializer="raw"`` the key bytes of an
account are its UTF-8 encoding, the bytes a :class:`StrColumn` holds, so a
record keyed by account lands where :func:`partitions_of` says (unless an app
sets its own ``producer_partitioner`` or another key serializer).

aiokafka returns ``all_partitions[index]``, where ``all_partitions`` is the
topic's partition ids 0..n-1 in order, i.e. ``index`` itself.

The kernels are in :mod:`engine.partitioning_kernels`.
"""

from __future__ import annotations

import numpy as np

from engine import partitioning_kernels as pk
from engine.columns import I64, StrColumn


def _check(n: int) -> None:
    if n < 1:
        msg = f"partitioning: a topic has at least 1 partition, got n={n}"
        raise ValueError(msg)


def partitions_of(keys: StrColumn, n: int) -> I64:
    """The partition (0..n-1) of every key among ``n`` partitions."""
    _check(n)
    out = np.empty(len(keys), dtype=np.int64)
    pk.partitions(keys.data, keys.offsets, n, out)
    return out


def murmur2_of(keys: StrColumn) -> I64:
    """Kafka's murmur2 of every key, as an unsigned 32-bit value."""
    out = np.empty(len(keys), dtype=np.int64)
    pk.murmur2(keys.data, keys.offsets, out)
    return out


def partition_of(key: bytes, n: int) -> int:
    """The partition (0..n-1) of one key among ``n`` partitions."""
    _check(n)
    one = StrColumn(np.frombuffer(key, dtype=np.uint8), np.array([0, len(key)], dtype=np.int64))
    out = np.empty(1, dtype=np.int64)
    pk.partitions(one.data, one.offsets, n, out)
    return int(out[0])
