"""Byte-string keys to dense item numbers, for whole batches at once.

Accounts, volume-tier counters and remembered ``cdr_id``s all need "which
item is this record's key?" for every record of a batch; a Python ``dict``
costs a string and a lookup per record, :class:`KeyTable` one kernel call
per batch (:mod:`engine.keytable_kernels`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine import keytable_kernels as kt
from engine.columns import I64, StrColumn

_NO_STRINGS = StrColumn(np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64))


class KeyTable:
    """A growing table of keys ``(a, b, tag)``; items are numbered in insertion order."""

    def __init__(self, capacity: int = 1 << 12, arena_bytes: int = 1 << 16) -> None:
        self._slots = self._empty(max(capacity, 2))
        self._arena = np.zeros(max(arena_bytes, 1), dtype=np.uint8)
        self._state = np.zeros(2, dtype=np.int64)  # items, arena fill

    @staticmethod
    def _empty(capacity: int) -> I64:
        size = 1 << (capacity - 1).bit_length()  # a power of two: probing masks the hash
        slots = np.zeros((size, kt.FIELDS), dtype=np.int64)
        slots[:, kt.LENGTH] = kt.EMPTY
        return slots

    def __len__(self) -> int:
        return int(self._state[0])

    def lookup(
        self,
        a: StrColumn,
        b: StrColumn | None = None,
        tags: I64 | None = None,
        *,
        rows: npt.NDArray[np.intp] | None = None,
        insert: bool = False,
    ) -> I64:
        """The item of each row's key (-1 for a missing key unless ``insert``).

        ``rows`` restricts the work to those rows; the others get -1.
        """
        n = len(a)
        second = b if b is not None else StrColumn(_NO_STRINGS.data, np.zeros(n + 1, np.int64))
        tag = tags if tags is not None else np.zeros(n, dtype=np.int64)
        todo = np.arange(n) if rows is None else rows
        out = np.full(n, -1, dtype=np.int64)
        while len(todo):
            stop = kt.lookup(
                todo, a.data, a.offsets, second.data, second.offsets, tag, insert,
                self._slots, self._arena, self._state, out,
            )  # fmt: skip
            if stop == kt.DONE:
                break
            todo = todo[stop:]
            self._grow()
        return out

    def _grow(self) -> None:
        if 2 * (len(self) + 1) > len(self._slots):
            bigger = self._empty(2 * len(self._slots))
            kt.rehash(self._slots, bigger)
            self._slots = bigger
        if len(self._arena) - int(self._state[1]) < 1 << 16:
            self._arena = np.concatenate(
                [self._arena, np.zeros(len(self._arena) + (1 << 16), np.uint8)]
            )
