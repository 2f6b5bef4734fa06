"""The ``cdr_id``s the billing consumer applied: a resent chunk is recognised, not added twice.

The same scheme as the balance ledger's remembered ids
(:class:`balances.ledger.Ledger`): ids live in memory in two generations of
``remember`` ids each (:class:`engine.keytable.KeyTable`, one kernel call per
chunk), and each applied chunk's ids are persisted as ONE value,
``seen/c/<seq>``, in the same store write as the totals they were added to.
Loading replays the values in order; values older than both generations
are deleted as new ones come. So the window is ``remember`` to
``2 × remember`` ids, at the cost of one store value per chunk.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from balances.ledger import StrPack
from balances.store import Store, WriteBatch
from engine.columns import StrColumn
from engine.keytable import KeyTable

CHUNK = b"seen/c/"
SEQ = b"seen/seq"

_PACK = msgspec.msgpack.Decoder(StrPack)
_ENC = msgspec.msgpack.Encoder()


class SeenIds:
    """Remembered ids of one billing store (one owner process)."""

    def __init__(self, remember: int) -> None:
        if remember < 1:
            msg = f"remember must be at least 1 id, got {remember}"
            raise ValueError(msg)
        self.remember = remember
        self.seq = 0  # the last chunk value's number
        self._tables = [KeyTable(), KeyTable()]  # current, previous generation
        self._chunks: list[tuple[bytes, int]] = []  # stored chunk keys and sizes, oldest first
        self._kept = 0  # ids in those values

    @classmethod
    def load(cls, store: Store, remember: int) -> SeenIds:
        seen = cls(remember)
        raw = store.get(SEQ)
        seen.seq = int(raw) if raw else 0
        for key, value in store.scan(CHUNK):
            ids = _PACK.decode(value).column()
            seen._chunks.append((key, len(ids)))
            seen._kept += len(ids)
            seen._insert(ids)
        return seen

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables)

    def _insert(self, ids: StrColumn) -> None:
        current = self._tables[0]
        current.lookup(ids, insert=True)
        if len(current) >= self.remember:
            self._tables = [KeyTable(), current]

    def fresh(self, column: StrColumn) -> npt.NDArray[np.bool_]:
        """True for each id not seen before (its first occurrence in ``column``); remembers them.

        Call :meth:`stage` with the fresh ids in the write that applies them.
        """
        ids = column
        if not len(ids):
            return np.zeros(0, dtype=np.bool_)
        previous, current = self._tables[1], self._tables[0]
        repeat = np.zeros(len(ids), dtype=np.bool_)
        if len(previous):
            repeat |= previous.lookup(column) >= 0
        before = len(current)
        items = current.lookup(column, insert=True)
        first = np.zeros(len(ids), dtype=np.bool_)
        first[np.unique(items, return_index=True)[1]] = True
        repeat |= ~((items >= before) & first)
        if len(current) >= self.remember:
            self._tables = [KeyTable(), current]
        fresh: npt.NDArray[np.bool_] = ~repeat
        return fresh

    def next_seq(self) -> int:
        """The number the next :meth:`stage` gives its value (for keys written beside it)."""
        return self.seq + 1

    def stage(self, ids: StrColumn, batch: WriteBatch) -> None:
        """Persist ``ids`` (applied in ``batch``) and forget values older than the window."""
        if not len(ids):
            return
        self.seq += 1
        key = CHUNK + b"%016d" % self.seq
        batch.put(key, _ENC.encode(StrPack.of(ids)))
        batch.put(SEQ, b"%d" % self.seq)
        self._chunks.append((key, len(ids)))
        self._kept += len(ids)
        while self._chunks and self._kept - self._chunks[0][1] >= 2 * self.remember:
            old, count = self._chunks.pop(0)
            batch.delete(old)
            self._kept -= count

    def stats(self) -> dict[str, Any]:
        return {"remembered": len(self), "values": len(self._chunks), "seq": self.seq}
