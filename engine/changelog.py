"""A partition's state changes as Kafka messages, and their replay into a store.

Each checkpoint of a partition's ledger is one write batch
(:meth:`balances.ledger.Ledger.stage`). The worker ships it to the partition
of the changelog topic *before* writing it to its local RocksDB, so the
changelog is the truth and the local store a cache of it: a worker that
takes a partition over (or restarts with a stale or empty folder) replays
the changelog from where its store stopped (``chg/next``).

A batch is one message, or several ``parts`` when it is larger than
``max_bytes`` (a full amounts snapshot); a group applies only when all its
parts arrived. A single value larger than a message (the journal or the
``cdr_id``s of a large batch, e.g. one taken after a backlog) travels in
pieces: every piece but the last under ``chg/piece/<key>``, the last under
the key itself, and the replay joins them (before, such a value made one
message over the producer's limit: the batch failed on every attempt and the
worker stopped on it). Groups chain by ledger sequence numbers: a group
applies to a store at ``prev`` and leaves it at ``seq``. A group that does
not chain (written by a worker that lost the partition while it was still
working on it) is skipped and counted, never applied over newer state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import msgspec

from balances.ledger import stored_seq
from balances.store import Store, WriteBatch
from engine.exceptions import RatewireError
from engine.runs import runs_under

NEXT_KEY = b"chg/next"  # local store: the changelog offset to replay from
PIECE = b"chg/piece/"  # + key: a leading piece of a value too large for one message
MAX_BYTES = 900_000  # under Kafka's default 1 MiB message limit


class ChangelogError(RatewireError):
    """A changelog message that cannot be read."""

    code = "CHANGELOG_ERROR"


class ChangeSet(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One part of one checkpoint's writes (``None`` value: a delete)."""

    prev: int
    seq: int
    part: int
    parts: int
    ops: list[tuple[bytes, bytes | None]]


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(ChangeSet)


def encode_changes(
    batch: WriteBatch, prev: int, seq: int, max_bytes: int = MAX_BYTES
) -> list[bytes]:
    """The changelog messages of one staged batch, in order, each under ``max_bytes``."""
    groups = runs_under(_pieces(batch.operations(), max_bytes), lambda op: _weight(*op),
                        max_bytes)  # fmt: skip
    parts = len(groups)
    return [_ENC.encode(ChangeSet(prev, seq, i, parts, ops)) for i, ops in enumerate(groups)]


def _weight(key: bytes, value: bytes | None) -> int:
    return len(key) + (len(value) if value else 0) + 16


def _pieces(
    ops: Iterable[tuple[bytes, bytes | None]], max_bytes: int
) -> Iterator[tuple[bytes, bytes | None]]:
    """``ops`` with each value too large for one message cut into pieces that fit."""
    for key, value in ops:
        if value is None or _weight(key, value) <= max_bytes:
            yield key, value
            continue
        room = max(max_bytes - _weight(PIECE + key, b""), 1)
        last = (len(value) - 1) // room * room
        for start in range(0, last, room):
            yield PIECE + key, value[start : start + room]
        yield key, value[last:]


@dataclass
class Replay:
    """Applies one partition's changelog messages, in offset order, to ``store``."""

    store: Store
    seq: int = -1
    applied: int = 0  # groups written to the store
    skipped: int = 0  # groups that did not chain (stale writers)
    _parts: list[ChangeSet] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.seq < 0:
            self.seq = stored_seq(self.store)

    def apply(self, offset: int, raw: bytes) -> None:
        """Take the message at ``offset``; write its group once complete and chained."""
        try:
            change = _DEC.decode(raw)
        except msgspec.DecodeError as exc:
            msg = (
                f"changelog message @{offset} cannot be read ({exc}). Operator action: the"
                " changelog topic holds foreign data; give the workers their own topic"
            )
            raise ChangelogError(msg) from exc
        if change.part == 0:
            self._parts = []
        elif not self._parts or self._parts[-1].seq != change.seq:
            return  # a part whose group started before where we began reading
        self._parts.append(change)
        if len(self._parts) < change.parts:
            return
        parts, self._parts = self._parts, []
        if change.prev != self.seq:
            if change.seq > self.seq:
                self.skipped += 1
            return
        batch = WriteBatch()
        for key, value in _ops(parts):
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(NEXT_KEY, b"%d" % (offset + 1))
        self.store.write(batch)
        self.seq = change.seq
        self.applied += 1


def _ops(parts: list[ChangeSet]) -> Iterator[tuple[bytes, bytes | None]]:
    """The group's operations, a value sent in pieces joined again."""
    pieces: dict[bytes, list[bytes]] = {}
    for part in parts:
        for key, value in part.ops:
            if key.startswith(PIECE) and value is not None:
                pieces.setdefault(key[len(PIECE) :], []).append(value)
            elif key in pieces and value is not None:
                yield key, b"".join([*pieces.pop(key), value])
            else:
                yield key, value


def next_offset(store: Store) -> int:
    """The changelog offset a store has replayed up to (0: nothing)."""
    raw = store.get(NEXT_KEY)
    return int(raw) if raw else 0
