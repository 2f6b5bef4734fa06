"""Records that could not be processed, kept with their reason and position.

Nothing read is dropped silently: a record (or a whole message) that fails
goes to a rejects sink as a :class:`Reject`, and the counts per reason let a
caller prove ``records in = rated + rejected``.

Reason codes:

* ``DECODE_ERROR``: the bytes are not JSON / MessagePack (malformed,
  truncated, empty).
* ``VALIDATION_ERROR``: well-formed, but not a valid record (wrong type,
  missing field, ``usage < 0``, naive ``start``, …) or a columnar batch whose
  arrays disagree.
* ``UNKNOWN_SUBSCRIBER``: no account given and the subscriber maps to none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

import msgspec

DECODE_ERROR: Final = "DECODE_ERROR"
VALIDATION_ERROR: Final = "VALIDATION_ERROR"
UNKNOWN_SUBSCRIBER: Final = "UNKNOWN_SUBSCRIBER"


class Reject(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One record (or one whole message) that could not be processed."""

    source: str  # ``topic[partition]@offset`` or ``file:line``
    reason: str  # DECODE_ERROR, VALIDATION_ERROR, UNKNOWN_SUBSCRIBER
    message: str  # for people: names the record, the field and what was wrong
    raw: bytes  # the record's own bytes (the whole message if it could not be split)
    # The record's position in its message (0 for a one-record message); None
    # when a whole message, a file line or a resolved record is rejected.
    index: int | None = None


class RejectSink:
    """Append rejects to a JSON-lines file and count them per reason.

    ``raw`` is written base64-encoded (msgspec's JSON form for ``bytes``);
    :func:`read_rejects` gives the :class:`Reject` values back. Each
    :meth:`write` call is flushed, so what a caller counted as rejected is on
    disk before it commits its input offsets.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: dict[str, int] = {}
        self._encoder = msgspec.json.Encoder()
        self._file: BinaryIO = path.open("ab")

    def write(self, rejects: Iterable[Reject]) -> int:
        """Append ``rejects``; returns how many were written."""
        batch = list(rejects)
        if not batch:
            return 0
        self._file.write(self._encoder.encode_lines(batch))
        self._file.flush()
        for reject in batch:
            self.counts[reject.reason] = self.counts.get(reject.reason, 0) + 1
        return len(batch)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RejectSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_rejects(path: Path) -> Iterator[Reject]:
    """Every reject in a file written by :class:`RejectSink`, in order."""
    decoder = msgspec.json.Decoder(Reject)
    with path.open("rb") as file:
        for line in file:
            if line.strip():
                yield decoder.decode(line)
