"""Applied ids kept to recognise a replay: two generations in memory, one store value a chunk.

The balance ledger (the ``cdr_id``s it debited) and the billing consumer (the
``cdr_id``s it added to invoices) both remember what they applied, the same
way. In memory: two generations of ``remember`` ids each
(:class:`engine.keytable.KeyTable`, one kernel call per chunk of ids). In
their store: one value per applied chunk, written with the changes it
applied, under a key of the owner's choosing. Loading replays the values in
order; values older than both generations are deleted as new ones come. So
the window is ``remember`` to ``2 × remember`` ids, at the cost of one store
value per chunk.
"""

from __future__ import annotations

from collections import deque

import msgspec
import numpy as np
import numpy.typing as npt

from balances.store import WriteBatch
from engine.columns import StrColumn, StrPack
from engine.keytable import KeyTable

_DECODE = msgspec.msgpack.Decoder(StrPack)
_ENCODE = msgspec.msgpack.Encoder()


class RememberedIds:
    """The ids one owner applied, and the store values that hold them."""

    def __init__(self, remember: int) -> None:
        if remember < 1:
            msg = f"remember must be at least 1 id, got {remember}"
            raise ValueError(msg)
        self.remember = remember
        self._tables = [KeyTable(), KeyTable()]  # current, previous generation
        self._chunks: deque[tuple[bytes, int]] = deque()  # value keys and sizes, oldest first
        self._kept = 0  # ids in those values: one value per chunk, so never summed again

    def __len__(self) -> int:
        """Ids in memory (both generations)."""
        return sum(len(t) for t in self._tables)

    @property
    def values(self) -> int:
        """Store values that hold remembered ids."""
        return len(self._chunks)

    def load(self, key: bytes, value: bytes) -> None:
        """One stored value (as :meth:`write` wrote it), in the order they were written."""
        ids = _DECODE.decode(value).column()
        self._kept_as(key, len(ids))
        self._tables[0].lookup(ids, insert=True)
        self._roll()

    def fresh(
        self, ids: StrColumn, rows: npt.NDArray[np.intp] | None = None
    ) -> npt.NDArray[np.bool_]:
        """For each of ``rows`` (all by default): whether its id is new, that is not
        remembered and its first occurrence among them. Remembers them all.

        Then :meth:`write` the fresh ids that were applied, as one value.
        """
        todo = np.arange(len(ids)) if rows is None else rows
        if not len(todo):
            return np.zeros(0, dtype=np.bool_)
        previous, current = self._tables[1], self._tables[0]
        repeat = np.zeros(len(todo), dtype=np.bool_)
        if len(previous):
            repeat |= previous.lookup(ids, rows=rows)[todo] >= 0
        # one pass both checks and remembers: an id new to the table gets an item number
        # from ``before`` up, and only its first row is not a repeat
        before = len(current)
        items = current.lookup(ids, rows=rows, insert=True)[todo]
        first = np.zeros(len(todo), dtype=np.bool_)
        first[np.unique(items, return_index=True)[1]] = True
        repeat |= ~((items >= before) & first)
        self._roll()
        fresh: npt.NDArray[np.bool_] = ~repeat
        return fresh

    def write(self, batch: WriteBatch, key: bytes, ids: StrColumn) -> None:
        """Put ``ids`` in ``batch`` as the value under ``key`` (the write that applies them)."""
        batch.put(key, _ENCODE.encode(StrPack.of(ids)))
        self._kept_as(key, len(ids))

    def forget(self, batch: WriteBatch) -> None:
        """Delete, in ``batch``, the values older than both generations."""
        chunks = self._chunks
        while chunks and self._kept - chunks[0][1] >= 2 * self.remember:
            old, count = chunks.popleft()
            batch.delete(old)
            self._kept -= count

    def _kept_as(self, key: bytes, count: int) -> None:
        self._chunks.append((key, count))
        self._kept += count

    def _roll(self) -> None:
        if len(self._tables[0]) >= self.remember:
            self._tables = [KeyTable(), self._tables[0]]
