"""The ``cdr_id``s the billing consumer applied: a resent chunk is recognised, not added twice.

The scheme is the balance ledger's (:class:`balances.remembered.RememberedIds`):
two generations of ``remember`` ids in memory, and each applied chunk's ids
persisted as ONE value, ``seen/c/<seq>``, in the same store write as the
totals they were added to. So the window is ``remember`` to ``2 × remember``
ids, at the cost of one store value per chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from balances.remembered import RememberedIds
from balances.store import Store, WriteBatch
from engine.columns import StrColumn

CHUNK = b"seen/c/"
SEQ = b"seen/seq"


class SeenIds:
    """Remembered ids of one billing store (one owner process)."""

    def __init__(self, remember: int) -> None:
        self._ids = RememberedIds(remember)
        self.seq = 0  # the last chunk value's number

    @classmethod
    def load(cls, store: Store, remember: int) -> SeenIds:
        seen = cls(remember)
        raw = store.get(SEQ)
        seen.seq = int(raw) if raw else 0
        for key, value in store.scan(CHUNK):
            seen._ids.load(key, value)
        return seen

    def __len__(self) -> int:
        return len(self._ids)

    def fresh(self, column: StrColumn) -> npt.NDArray[np.bool_]:
        """True for each id not seen before (its first occurrence in ``column``); remembers them.

        Call :meth:`stage` with the fresh ids in the write that applies them.
        """
        return self._ids.fresh(column)

    def next_seq(self) -> int:
        """The number the next :meth:`stage` gives its value (for keys written beside it)."""
        return self.seq + 1

    def stage(self, ids: StrColumn, batch: WriteBatch) -> None:
        """Persist ``ids`` (applied in ``batch``) and forget values older than the window."""
        if not len(ids):
            return
        self.seq += 1
        key = CHUNK + b"%016d" % self.seq
        self._ids.write(batch, key, ids)
        batch.put(SEQ, b"%d" % self.seq)
        self._ids.forget(batch)

    def stats(self) -> dict[str, Any]:
        return {"remembered": len(self), "values": self._ids.values, "seq": self.seq}
