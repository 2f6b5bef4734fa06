"""Compiled Kafka default partitioner: murmur2 of each key's bytes, then a partition.

Pure ``@njit`` loops over a string column (``data`` bytes + ``offsets``, see
:mod:`engine.columns`) writing into caller-supplied ``out`` arrays; the checks
are in :mod:`engine.partitioning`. The slow twin is
``aiokafka.partitioner.murmur2`` (plain Python ints masked to 32 bits, itself
a port of Java's ``org.apache.kafka.common.utils.Utils.murmur2``).

Java computes murmur2 in ``int`` (32-bit, wrapping). Here every value is an
``int64`` kept in ``[0, 2**32)`` by masking with ``MASK32`` after each step
that can leave it:

* a product of two values below ``2**32`` needs 64 bits and may wrap an
  ``int64``, but wrapping only changes bits 32 and up, and the low 32 bits
  (all that Java keeps) are exact, so ``(h * M) & MASK32`` is Java's ``h * M``;
* with the value masked non-negative, ``>>`` shifts in zeros, which is
  Java's unsigned ``>>>``;
* ``^`` and ``<<`` of masked values stay exact, and ``<<`` is masked again.

The result equals Java's hash read as unsigned, which is what aiokafka
returns; ``h & 0x7fffffff`` (Java's ``Utils.toPositive``) is then the same in
both readings.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MASK32 = 0xFFFFFFFF
POSITIVE = 0x7FFFFFFF
SEED = 0x9747B28C
M = 0x5BD1E995
R = 24


@njit(cache=True, inline="always")
def _murmur2(data, a, b):  # type: ignore[no-untyped-def]
    """murmur2 of ``data[a:b]`` as an unsigned 32-bit value in an int64."""
    length = b - a
    h = (SEED ^ length) & MASK32
    # four bytes at a time, little-endian, as Java's loop
    stop = a + (length & ~3)
    for j in range(a, stop, 4):
        k = (
            np.int64(data[j])
            | (np.int64(data[j + 1]) << 8)
            | (np.int64(data[j + 2]) << 16)
            | (np.int64(data[j + 3]) << 24)
        )
        k = (k * M) & MASK32
        k ^= k >> R
        k = (k * M) & MASK32
        h = ((h * M) & MASK32) ^ k
    # the 1-3 byte tail: Java's switch falls through 3 -> 2 -> 1
    tail = length & 3
    if tail >= 3:
        h ^= np.int64(data[stop + 2]) << 16
    if tail >= 2:
        h ^= np.int64(data[stop + 1]) << 8
    if tail >= 1:
        h ^= np.int64(data[stop])
        h = (h * M) & MASK32
    h ^= h >> 13
    h = (h * M) & MASK32
    h ^= h >> 15
    return h


@njit(cache=True)
def murmur2(data, offsets, out):  # type: ignore[no-untyped-def]
    """``out[i]`` = murmur2 of key ``i`` (``data[offsets[i]:offsets[i + 1]]``), unsigned.

    Mirrors ``aiokafka.partitioner.murmur2`` key by key.
    """
    for i in range(len(offsets) - 1):
        out[i] = _murmur2(data, offsets[i], offsets[i + 1])


@njit(cache=True)
def partitions(data, offsets, n, out):  # type: ignore[no-untyped-def]
    """``out[i]`` = Kafka's default partition of key ``i`` among ``n`` partitions.

    Mirrors ``aiokafka.partitioner.DefaultPartitioner`` (and Java's
    ``Utils.toPositive(Utils.murmur2(key)) % n``); ``n`` must be positive.
    """
    for i in range(len(offsets) - 1):
        out[i] = (_murmur2(data, offsets[i], offsets[i + 1]) & POSITIVE) % n
