"""One partition of the worker: its ledger and input positions; a batch in, effects out.

Plain code, no Kafka: the worker (:mod:`engine.worker`) hands a partition
the messages of one batch and ships what :meth:`Partition.process` returns.
Per batch the order is fixed, and it is what makes a crash harmless:

1. ``process``: skip messages below the partition's input positions (applied
   before), apply provisioning commands, decode, forward records keyed to
   another partition, rate and debit the rest in one call;
2. the worker sends rated records, rejects and forwards, and waits for them;
3. ``stage`` → the worker sends the write batch to the changelog, waits;
4. ``commit``: the same batch to the local RocksDB.

A crash before 3 completes leaves no trace in the state: the batch is read
and applied again, its rated records may be sent twice (same ``cdr_id``;
consumers keep the first). After 3, the changelog has the batch and its
input positions, so the batch is never applied twice.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from typing import Any, overload

import msgspec
import numpy as np
import numpy.typing as npt

from balances.debit import Debitor
from balances.exceptions import BalanceError
from balances.ledger import Ledger
from balances.reservations import Reservations
from balances.store import WriteBatch
from engine.account_commands import Applied, apply_command, decode_command
from engine.columns import I64, Columns, StrColumn, concat
from engine.exceptions import DecodeError
from engine.msgpack_columns import RecordArray, decode_record_array
from engine.partitioning import partitions_of
from engine.rate_file import Batch, StatefulRating, rate_batch
from engine.rated_output import Lines, RatedWriter
from engine.records import Record
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR, Reject
from engine.topics import ACCOUNTS
from engine.wire import (
    Format,
    decode_columnar,
    decode_message_with_rejects,
    decode_record,
    records_to_columns,
)
from tariffs.rating import PeriodCounters, Rater

MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
ACCOUNT_COMMAND_FAILED = "ACCOUNT_COMMAND_FAILED"
DUPLICATE = "DUPLICATE"
PERIOD_PREFIX = b"per/"  # volume-tier usage per (account, category, month): kept with the state
KEPT_RAW_BYTES = 1 << 16  # of a message too large: its head, for people; it stays in its topic
_RECORD = msgspec.msgpack.Encoder()
_JSON_HEADS = b"{[ \t\r\n"  # a message starting with one of these is JSON
_COUNTER = msgspec.msgpack.Decoder(tuple[str, str, int, int])
_COUNTER_ENC = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed message (value bytes as they arrived)."""

    topic: str
    offset: int
    value: bytes
    columnar: bool = False  # header ``ratewire-format: columnar``


@dataclass
class Outcome:
    """What one batch of one partition did and must send."""

    messages: int = 0  # messages taken from the batch
    replayed: int = 0  # messages below the input position: applied before, skipped
    records: int = 0  # usage records read (rated + rejected + forwarded)
    rated: int = 0
    forwarded: int = 0
    # JSON lines, one per rated record: views of the writer's buffer, which it writes
    # again only once no view of it is alive (keeping them is safe, and keeps its memory)
    rated_lines: list[memoryview] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    forwards: list[tuple[int, bytes, bytes]] = field(
        default_factory=list
    )  # (partition, key, value)
    accounts: Applied = field(default_factory=Applied)
    charged: int = 0  # nanos of the tariff's currency


class Partition:
    """The state a worker holds for partition ``number`` of ``partitions``."""

    def __init__(
        self, number: int, partitions: int, ledger: Ledger, rater: Rater, *,
        max_message_bytes: int = 4 << 20,
    ) -> None:  # fmt: skip
        self.number, self.partitions = number, partitions
        self.ledger, self.rater = ledger, rater
        self.debitor = Debitor(ledger.state, rater)
        self.reservations = Reservations(ledger, self.debitor)
        self.counters = PeriodCounters()
        self.max_message_bytes = max_message_bytes
        self._stateful = StatefulRating(ledger, self.debitor)
        self._out = Lines()
        self._writer = RatedWriter(self._out, rater.compiled)
        self.offsets: dict[str, int] = {}
        self._known: set[str] = set()
        for key, raw in ledger.store.scan(b"in/"):
            self.offsets[key[3:].decode()] = int(raw)
        self.counters.load([_COUNTER.decode(raw) for _, raw in ledger.store.scan(PERIOD_PREFIX)])

    # -- a batch -------------------------------------------------------------------------
    def process(self, messages: Sequence[Message]) -> Outcome:
        """Apply the messages of one batch, in their order.

        Consecutive messages of one kind (provisioning, records, columnar
        batches) are handled together; kinds are never reordered, so each
        account's usage is debited in the order it arrived.
        """
        out = Outcome(messages=len(messages))
        fresh = []
        for m in messages:
            if m.offset < self.offsets.get(m.topic, 0):
                out.replayed += 1
                continue
            self.offsets[m.topic] = m.offset + 1
            fresh.append(m)
        for kind, run in groupby(fresh, key=_kind):
            group = list(run)
            if kind == "command":
                for m in group:
                    self._command(m, out)
            elif kind == "columnar":
                self._columnar(group, out)
            else:
                self._records(group, out)
        return out

    def stage(self) -> WriteBatch:
        """The batch's writes (state, tier counters, input positions) for changelog and store."""
        extra = {b"in/" + topic.encode(): b"%d" % n for topic, n in self.offsets.items()}
        for entry in self.counters.drain():
            account, category, period, _ = entry
            extra[PERIOD_PREFIX + f"{account}\x1f{category}\x1f{period}".encode()] = (
                _COUNTER_ENC.encode(entry)
            )
        return self.ledger.stage(extra)

    def commit(self, batch: WriteBatch) -> None:
        self.ledger.commit(batch)

    # -- provisioning --------------------------------------------------------------------
    def _command(self, m: Message, out: Outcome) -> None:
        source = self._source(m)
        try:
            apply_command(self.ledger, decode_command(m.value), out.accounts)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reason = VALIDATION_ERROR if isinstance(exc, msgspec.ValidationError) else DECODE_ERROR
            out.rejects.append(Reject(source=source, reason=reason, raw=m.value,
                                      message=f"account command: {exc}"))  # fmt: skip
        except (BalanceError, KeyError, ValueError) as exc:
            out.rejects.append(Reject(source=source, reason=ACCOUNT_COMMAND_FAILED, raw=m.value,
                                      message=f"account command: {exc}"))  # fmt: skip

    # -- usage ---------------------------------------------------------------------------
    def _source(self, m: Message) -> str:
        return f"{m.topic}[{self.number}]@{m.offset}"

    def _too_large(self, m: Message, out: Outcome) -> bool:
        if len(m.value) <= self.max_message_bytes:
            return False
        message = (
            f"message of {len(m.value):,} bytes is over the limit of {self.max_message_bytes:,}"
            f" (--max-message-bytes); the reject keeps its first {KEPT_RAW_BYTES:,} bytes,"
            " the whole message stays in its topic at this offset"
        )
        out.rejects.append(Reject(source=self._source(m), reason=MESSAGE_TOO_LARGE,
                                  message=message, raw=m.value[:KEPT_RAW_BYTES]))  # fmt: skip
        out.records += 1
        return True

    def _records(self, usage: list[Message], out: Outcome) -> None:
        """Messages of records (JSON or MessagePack, one or an array): one rating call.

        A MessagePack array the compiled decoder takes whole, every record this
        partition's, becomes columns without a Python object per record
        (:mod:`engine.msgpack_columns`); any other message goes through msgspec,
        which names each bad record. Parts stay in message order, so an account's
        records are debited in the order they arrived.
        """
        parts: list[_Part] = []
        slow: list[Message] = []
        for m in usage:
            if self._too_large(m, out):
                continue
            fast = self._fast(m)
            if fast is None:
                slow.append(m)
                continue
            if slow:
                parts += self._decoded(slow, out)
                slow = []
            out.records += len(fast.columns)
            parts.append(_Part.of_array(fast, m))
        if slow:
            parts += self._decoded(slow, out)
        if not parts:
            return
        prefix = f"{usage[0].topic}[{self.number}]"
        joined = _Part.join(parts)
        batch = Batch(joined.columns, [], partial(_Positions, prefix, joined.offsets, joined.index),
                      f"{prefix}#", record_bytes=joined.record_bytes)  # fmt: skip
        self._rate(batch, out)

    def _fast(self, m: Message) -> RecordArray | None:
        if m.value[:1] in _JSON_HEADS:
            return None
        decoded = decode_record_array(m.value)
        if decoded is None:
            return None
        here = partitions_of(decoded.columns.account, self.partitions) == self.number
        return decoded if here.all() else None  # forwarding records is msgspec's path

    def _decoded(self, usage: list[Message], out: Outcome) -> list[_Part]:
        """Messages decoded by msgspec: their good records (forwarded ones taken out)."""
        rows = _Rows([], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        at_offset: list[int] = []
        counts: list[int] = []
        gaps: list[tuple[int, list[int]]] = []  # (first row, indexes) of messages with bad records
        for m in usage:
            fmt: Format = "json" if m.value[:1] in _JSON_HEADS else "msgpack"
            decoded = decode_message_with_rejects(m.value, fmt, source=self._source(m))
            if decoded.rejects and decoded.records:  # good records keep their own index
                bad = {r.index for r in decoded.rejects}
                kept = [i for i in range(len(decoded.records) + len(bad)) if i not in bad]
                gaps.append((len(rows.records), kept))
            out.rejects += decoded.rejects
            out.records += len(decoded.records) + len(decoded.rejects)
            rows.records += decoded.records
            at_offset.append(m.offset)
            counts.append(len(decoded.records))
        if not rows.records:
            return []
        rows.index = _index_in_message(counts)
        for first, kept in gaps:
            rows.index[first : first + len(kept)] = kept
        rows.offsets = np.repeat(np.array(at_offset, dtype=np.int64), counts)
        try:
            columns = records_to_columns(rows.records)
        except DecodeError:  # a record without account or cdr_id (allowed by the schema)
            missing = [i for i, r in enumerate(rows.records) if not r.account or not r.cdr_id]
            out.rejects += [self._no_id(rows, i) for i in missing]
            rows = rows.keep(np.setdiff1d(np.arange(len(rows.records)), missing))
            if not rows.records:
                return []
            columns = records_to_columns(rows.records)
        where = partitions_of(columns.account, self.partitions)
        elsewhere = np.flatnonzero(where != self.number).tolist()
        if elsewhere:
            records = rows.records
            out.forwards += [
                (int(where[i]), records[i].account.encode(), _RECORD.encode(records[i]))
                for i in elsewhere
            ]
            out.forwarded += len(elsewhere)
            rows = rows.keep(np.flatnonzero(where == self.number))
            if not rows.records:
                return []
            columns = records_to_columns(rows.records)
        return [_Part(columns, rows.offsets, rows.index, rows.record_bytes)]

    def _columnar(self, usage: list[Message], out: Outcome) -> None:
        """Columnar batches, each checked whole, then rated together in one call."""
        accepted: list[Columns] = []
        at_offset: list[int] = []
        for m in usage:
            if self._too_large(m, out):
                continue
            try:
                columns = decode_columnar(m.value)
            except DecodeError as exc:
                out.rejects.append(Reject(source=self._source(m), reason=DECODE_ERROR,
                                          message=str(exc), raw=m.value))  # fmt: skip
                out.records += 1
                continue
            # a producer of columnar batches partitions them itself: a batch in the wrong
            # partition is refused whole rather than split record by record
            elsewhere = int(np.count_nonzero(partitions_of(columns.account, self.partitions)
                                             != self.number))  # fmt: skip
            if elsewhere:
                message = (
                    f"columnar batch: {elsewhere} of {len(columns)} records belong to other"
                    " partitions; a columnar producer must partition by account"
                )
                out.rejects.append(Reject(source=self._source(m), reason=VALIDATION_ERROR,
                                          message=message, raw=m.value))  # fmt: skip
                out.records += 1
                continue
            out.records += len(columns)
            accepted.append(columns)
            at_offset.append(m.offset)
        if not accepted:
            return
        counts = [len(c) for c in accepted]
        offsets = np.repeat(np.array(at_offset, dtype=np.int64), counts)
        positions = _Positions(f"{usage[0].topic}[{self.number}]", offsets,
                               _index_in_message(counts))  # fmt: skip
        self._rate(Batch(concat(accepted), [], lambda: positions, ""), out)

    def _rate(self, batch: Batch, out: Outcome) -> None:
        result = rate_batch(self.rater, batch, self.counters, self._writer, self._stateful)
        out.rejects += result.rejects
        out.rated += result.rated
        out.charged += result.charged
        out.rated_lines += self._out.take()

    def _no_id(self, rows: _Rows, i: int) -> Reject:
        record, index = rows.records[i], int(rows.index[i])
        field_name = "account" if not record.account else "cdr_id"
        return Reject(
            source=f"cdrs[{self.number}]@{int(rows.offsets[i])}#{index}", reason=VALIDATION_ERROR,
            message=f"record has no {field_name}: the worker rates records that name their account",
            raw=msgspec.json.encode(record), index=index,
        )  # fmt: skip

    # -- queries -------------------------------------------------------------------------
    def knows(self, account: str) -> bool:
        """Whether the account exists here (accounts are never removed: found ones are cached)."""
        if account in self._known:
            return True
        found = bool(self.ledger.state.account_rows(StrColumn.from_strings([account]))[0] >= 0)
        if found:
            self._known.add(account)
        return found


@dataclass
class _Rows:
    """Decoded records with the offset of their message and their index in it."""

    records: list[Record]
    offsets: I64
    index: I64

    def keep(self, rows: npt.NDArray[np.integer[Any]]) -> _Rows:
        return _Rows([self.records[i] for i in rows.tolist()], self.offsets[rows], self.index[rows])

    def record_bytes(self, i: int) -> bytes:
        return msgspec.json.encode(self.records[i])


@dataclass(frozen=True, slots=True)
class _Part:
    """Rows to rate: their columns, message offsets, indexes in their message and bytes."""

    columns: Columns
    offsets: I64
    index: I64
    record_bytes: Callable[[int], bytes]  # a row's record as JSON, for its reject

    @classmethod
    def of_array(cls, decoded: RecordArray, m: Message) -> _Part:
        n, raw, bounds = len(decoded.columns), m.value, decoded.bounds

        def record_bytes(i: int) -> bytes:
            return msgspec.json.encode(decode_record(raw[bounds[i] : bounds[i + 1]], "msgpack"))

        return cls(decoded.columns, np.full(n, m.offset, dtype=np.int64),
                   np.arange(n, dtype=np.int64), record_bytes)  # fmt: skip

    @classmethod
    def join(cls, parts: list[_Part]) -> _Part:
        if len(parts) == 1:
            return parts[0]
        firsts = np.cumsum([0, *(len(p.columns) for p in parts)]).tolist()

        def record_bytes(i: int) -> bytes:
            k = bisect_right(firsts, i) - 1
            return parts[k].record_bytes(i - firsts[k])

        return cls(concat([p.columns for p in parts]),
                   np.concatenate([p.offsets for p in parts]),
                   np.concatenate([p.index for p in parts]), record_bytes)  # fmt: skip


class _Positions(Sequence[str]):
    """``topic[partition]@offset#index`` of each row, made only for the rows asked for."""

    def __init__(self, prefix: str, offsets: I64, index: I64) -> None:
        self._prefix, self._offsets, self._index = prefix, offsets, index

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return f"{self._prefix}@{int(self._offsets[i])}#{int(self._index[i])}"


def _kind(m: Message) -> str:
    return "command" if m.topic == ACCOUNTS else "columnar" if m.columnar else "records"


def _index_in_message(counts: list[int]) -> I64:
    """Each record's position in its message, for records laid out message after message."""
    n = sum(counts)
    starts = np.repeat(np.cumsum([0, *counts[:-1]]).astype(np.int64), counts)
    return np.arange(n, dtype=np.int64) - starts
