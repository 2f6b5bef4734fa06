"""What a Kafka load test sent, and what came back, matched record by record.

:func:`plan_traffic` turns a scenario's traffic into the messages of a run,
in send order, with the rows (records) each carries and the time each is
due. :class:`Tally` then takes what the workers write:

* a rated record is matched to its row by ``cdr_id`` (a
  :class:`~engine.keytable.KeyTable` over the run's ids: one kernel call per
  ``rated-cdrs`` message, no JSON decoding: :func:`rated_ids` cuts the ids out
  of the lines);
* a reject is matched by its source position ``cdrs[p]@offset#index`` to the
  message this run sent at that offset (known from the producer's
  acknowledgement) and to the record at ``index`` in it.

A row is *accounted* once it is rated or rejected; a malformed message once
it is rejected. Latency: from the message's intended send time to the
moment its output was read.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace

import msgspec
import numpy as np
import numpy.typing as npt

from engine.columns import StrColumn, gather
from engine.keytable import KeyTable
from engine.produce import Outgoing, Shape
from engine.wire import Format
from loadtest.generator import Traffic
from loadtest.histogram import Intervals, Latency
from loadtest.report import Timeline
from loadtest.schedule import plan
from loadtest.sinks import encode_traffic

RATED_PREFIX = b'{"cdr_id":"'  # how every line the worker writes to rated-cdrs starts
ID_WINDOW = 48  # bytes searched for the end of a cdr_id before searching the whole line
DUPLICATE = "DUPLICATE"
UNAUTHORIZED_DESTINATION = "UNAUTHORIZED_DESTINATION"
_SOURCE = re.compile(r"^[^\[]*\[(\d+)\]@(\d+)(?:#(\d+))?$")
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass
class Planned:
    """The run's messages in send order and which rows (records) each one carries."""

    messages: list[Outgoing]
    members: list[I64]  # rows of each message; [-1 - k] for malformed message k
    offsets: F64  # each message's due time, seconds from the start
    sizes: I64  # records per message (1 for a malformed one)
    due_of_row: F64  # each row's message's due offset
    rows: int
    malformed: int
    duplicates: int
    expected: dict[str, int]  # reject reason -> count the scenario makes on purpose
    ids: IdIndex  # cdr_id -> first row with it
    resent: npt.NDArray[np.bool_]  # each row: a resend of an earlier one

    @property
    def planned(self) -> int:
        """Outputs the workers owe: one per row and one per malformed message."""
        return self.rows + self.malformed

    def resent_in(self, sent: npt.NDArray[np.bool_]) -> int:
        """Resends among the rows of the messages ``sent`` marks."""
        rows = [m for m, out in zip(self.members, sent.tolist(), strict=True) if out and len(m)]
        every = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return int(self.resent[every[every >= 0]].sum())


def prefixed(column: StrColumn, prefix: str) -> StrColumn:
    """Every value of ``column`` with ``prefix`` in front (vectorised)."""
    if not prefix:
        return column
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    n, k = len(column), len(head)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.diff(column.offsets) + k, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    at = (offsets[:-1, None] + np.arange(k)).ravel()
    data[at] = np.tile(head, n)
    rest = np.ones(len(data), dtype=bool)
    rest[at] = False
    data[rest] = column.data
    return StrColumn(data, offsets)


def plan_traffic(
    traffic: Traffic,
    *,
    rate: float,
    shape: Shape,
    fmt: Format,
    partitions: int,
    size: int = 1000,
    run_id: str = "",
) -> Planned:
    """The run's messages; every ``cdr_id`` prefixed ``<run_id>-`` (unique per run, so
    a worker that remembers earlier runs' ids takes none of these for resends)."""
    columns = traffic.columns
    columns = replace(columns, cdr_id=prefixed(columns.cdr_id, f"{run_id}-" if run_id else ""))
    t = replace(traffic, columns=columns)
    members: list[I64] = []
    messages = encode_traffic(
        t, shape=shape, fmt=fmt, partitions=partitions, size=size, members=members
    )
    sizes = np.array([len(m) for m in members], dtype=np.int64)
    offsets = plan(sizes, rate) if rate else np.zeros(len(sizes))
    rows = len(columns)
    due_of_row = np.zeros(rows)
    if members:
        every = np.concatenate(members)
        message = np.repeat(np.arange(len(members)), sizes)
        valid = every >= 0  # not a malformed message's mark
        due_of_row[every[valid]] = offsets[message[valid]]
    expected = Counter({DUPLICATE: t.duplicates, UNAUTHORIZED_DESTINATION: t.unpriced})
    expected.update(t.malformed_reasons())
    return Planned(
        messages,
        members,
        offsets,
        sizes,
        due_of_row,
        rows,
        len(t.malformed),
        t.duplicates,
        {k: v for k, v in expected.items() if v},
        IdIndex(columns.cdr_id),
        np.asarray(t.resent, dtype=bool),
    )


class IdIndex:
    """The first row of each planned ``cdr_id``; ``rows(ids)`` finds them for outputs.

    Generated ids are one run-wide prefix and a zero-padded decimal number
    (``<run>-<seed>-000000042``): then the number indexes an array (its digit
    count checked too, so ``…-42`` is not ``…-000000042``), which is several
    times faster than hashing millions of ids (a tenth of the load process's
    CPU at 200 k records/s) and needs no table. A plan whose ids are not all of
    that shape goes through a hash table instead.
    """

    def __init__(self, planned: StrColumn) -> None:
        self._prefix = _number_prefix(planned)
        self._first = 0
        self._row_of_number = self._digits = np.zeros(0, dtype=np.int64)
        self._table: KeyTable | None = None
        if self._prefix is not None and self._numbered(planned, self._prefix):
            return
        self._prefix = None
        self._table = KeyTable(capacity=2 * len(planned) + 2,
                               arena_bytes=len(planned.data) + len(planned) + 1)  # fmt: skip
        items = self._table.lookup(planned, insert=True)
        self._row_of_item = np.full(len(self._table), -1, dtype=np.int64)
        unique, first_row = np.unique(items, return_index=True)
        self._row_of_item[unique] = first_row

    def _numbered(self, planned: StrColumn, prefix: bytes) -> bool:
        """Index ``planned`` by number if every id is ``prefix`` + digits, densely numbered."""
        numbers, digits = _numbers(planned, prefix)
        if not len(numbers) or (numbers < 0).any():
            return False
        first = int(numbers.min())
        numbers -= first
        if numbers.max() >= 4 * len(numbers) + 1024:  # too sparse for an array
            return False
        unique, first_row = np.unique(numbers, return_index=True)
        width = np.zeros(int(numbers.max()) + 1, dtype=np.int64)
        width[unique] = digits[first_row]
        if (width[numbers] != digits).any():  # one number written two ways
            return False
        self._first, self._digits = first, width
        self._row_of_number = np.full(len(width), -1, dtype=np.int64)
        self._row_of_number[unique] = first_row
        return True

    def rows(self, ids: StrColumn) -> I64:
        """The first planned row of each id; -1 for an id this run did not send."""
        if self._prefix is None:
            return self._by_table(ids)
        parsed, digits = _numbers(ids, self._prefix)
        numbers = parsed - self._first
        inside = np.flatnonzero((parsed >= 0) & (numbers >= 0)
                                & (numbers < len(self._row_of_number)))  # fmt: skip
        rows = np.full(len(ids), -1, dtype=np.int64)
        at = numbers[inside]
        same = self._digits[at] == digits[inside]
        rows[inside[same]] = self._row_of_number[at[same]]
        return rows

    def _by_table(self, ids: StrColumn) -> I64:
        assert self._table is not None  # built whenever ids are not all numbered
        items = self._table.lookup(ids)
        return np.where(items >= 0, self._row_of_item[np.maximum(items, 0)], -1)


MAX_DIGITS = 18  # an int64 holds any 18-digit number


def _number_prefix(ids: StrColumn) -> bytes | None:
    """The prefix every id shares up to its last ``-`` (None if there is none)."""
    if not len(ids):
        return None
    first = ids[0].encode()
    cut = first.rfind(b"-")
    return first[: cut + 1] if cut >= 0 else None


def _numbers(ids: StrColumn, prefix: bytes) -> tuple[I64, I64]:
    """Each id's number after ``prefix`` (-1 where an id is not ``prefix`` + 1..18
    digits) and how many digits it has."""
    k, n = len(prefix), len(ids)
    starts, lengths = ids.offsets[:-1], np.diff(ids.offsets)
    digits = lengths - k
    ok = (digits >= 1) & (digits <= MAX_DIGITS)
    if k and len(ids.data):
        at = np.minimum(starts[:, None] + np.arange(k), len(ids.data) - 1)
        ok &= (ids.data[at] == np.frombuffer(prefix, dtype=np.uint8)).all(axis=1)
    # the digits right-aligned in an (n, 18) matrix, zeros in front
    place = np.arange(MAX_DIGITS) - MAX_DIGITS  # -18 .. -1 from the end of the id
    at = starts[:, None] + lengths[:, None] + place
    used = place >= -np.where(ok, digits, 0)[:, None]
    raw = ids.data[np.clip(at, 0, max(len(ids.data) - 1, 0))] if len(ids.data) else np.zeros(
        (n, MAX_DIGITS), np.uint8)  # fmt: skip
    value = np.where(used, raw.astype(np.int64) - 48, 0)
    ok &= ((value >= 0) & (value <= 9)).all(axis=1)
    numbers = value @ (10 ** np.arange(MAX_DIGITS - 1, -1, -1, dtype=np.int64))
    return np.where(ok, numbers, -1), digits


def rated_ids(value: bytes) -> tuple[StrColumn, list[bytes]]:
    """The ``cdr_id`` of every rated JSON line in ``value``, without decoding the lines.

    Lines that do not start the way the worker writes them (``{"cdr_id":"``)
    are returned apart, for the slow way.
    """
    buf = np.frombuffer(value, dtype=np.uint8)
    newlines = np.flatnonzero(buf == 10)
    if len(buf) and (not len(newlines) or newlines[-1] != len(buf) - 1):
        newlines = np.append(newlines, len(buf))  # a last line without its newline
    starts = np.concatenate([[0], newlines[:-1] + 1]).astype(np.int64)
    head = np.frombuffer(RATED_PREFIX, dtype=np.uint8)
    long_enough = newlines - starts > len(head)
    probe = np.minimum(starts[:, None] + np.arange(len(head)), max(len(buf) - 1, 0))
    fast = long_enough & (buf[probe] == head).all(axis=1) if len(buf) else long_enough
    slow = [
        value[a:b]
        for a, b in zip(starts[~fast].tolist(), newlines[~fast].tolist(), strict=True)
        if b > a
    ]
    begin = starts[fast] + len(head)
    end = _closing_quotes(buf, begin)
    return gather(buf, begin, end - begin), slow


def _closing_quotes(buf: npt.NDArray[np.uint8], begin: I64) -> I64:
    """The first ``"`` at or after each ``begin``.

    Looked for in the next ``ID_WINDOW`` bytes of each id, not in the whole
    message: a rated line holds ~80 quotes, and finding them all was a tenth
    of the load process's CPU. Ids longer than the window take the long way.
    """
    if not len(begin):
        return begin
    window = np.minimum(begin[:, None] + np.arange(ID_WINDOW), len(buf) - 1)
    quote = buf[window] == 34
    end: I64 = begin + quote.argmax(axis=1)
    long = ~quote.any(axis=1)
    if long.any():
        quotes = np.flatnonzero(buf == 34)
        end[long] = quotes[np.searchsorted(quotes, begin[long])]
    return end


class _Rated(msgspec.Struct):
    cdr_id: str


@dataclass
class Tally:
    """What came back, matched to what was sent (``start``: the plan's time zero)."""

    planned: Planned
    start: float
    rated: int = 0
    rated_again: int = 0  # a rated line for a row rated before (sent twice after a crash)
    foreign: int = 0  # outputs that match nothing this run sent
    accounted: int = 0  # rows and malformed messages rated or rejected
    rejects: Counter[str] = field(default_factory=Counter)
    latency: Intervals = field(default_factory=Intervals)  # rated, by intended second
    reject_latency: Intervals = field(default_factory=Intervals)
    recent: Latency = field(default_factory=Latency)  # rated since the last tick
    timeline: Timeline = field(default_factory=Timeline)
    last_output: float = 0.0
    sent: int = 0  # messages handed to the producer
    settled: int = 0  # of those, acknowledged or failed
    send_errors: int = 0
    first_error: str = ""

    def __post_init__(self) -> None:
        p = self.planned
        self.owed = p.planned  # outputs the workers owe: all planned, or what was sent
        self._rated_rows = np.zeros(p.rows, dtype=bool)
        self._accounted = np.zeros(p.rows + p.malformed, dtype=bool)  # rows, then malformed
        self._place = np.zeros(p.rows + p.malformed, dtype=np.int64)  # scratch of _distinct
        self._offset = np.full(len(p.messages), -1, dtype=np.int64)
        self._partition = np.array([m[0] for m in p.messages], dtype=np.int64)
        self._sources: set[str] = set()
        self._pending: list[tuple[str, float]] = []  # rejects not matched yet: (source, read at)
        self._decoder = msgspec.json.Decoder(_Rated)

    @property
    def complete(self) -> bool:
        return self.accounted >= self.owed

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    # -- the producer's side ---------------------------------------------------------------
    def on_delivered(self, message: int, offset: int) -> None:
        self._offset[message] = offset
        self.settled += 1

    def sending_ended(self, sent: npt.NDArray[np.bool_]) -> None:
        """The sender is done (``sent``: which messages went out): only those are owed."""
        self.owed = int(self.planned.sizes[sent].sum())

    def on_failed(self, error: BaseException) -> None:
        self.send_errors += 1
        self.settled += 1
        self.first_error = self.first_error or repr(error)

    # -- outputs ---------------------------------------------------------------------------
    def on_rated(self, value: bytes, now: float) -> None:
        """One ``rated-cdrs`` message (JSON lines) read at ``now``."""
        ids, slow = rated_ids(value)
        if slow:
            extra = [self._decoder.decode(line).cdr_id for line in slow]
            ids = StrColumn.from_strings([*ids.to_list(), *extra])
        rows = self.planned.ids.rows(ids)
        known = rows >= 0
        self.foreign += int(np.count_nonzero(~known))
        rows = rows[known]
        again = self._rated_rows[rows]
        self.rated_again += int(np.count_nonzero(again))
        rows = self._distinct(rows[~again])
        self._rated_rows[rows] = True
        self.rated += len(rows)
        self._account(rows)
        self.timeline.count("done", int(now - self.start), len(rows))
        due = self.planned.due_of_row[rows]
        us = (now - self.start - due) * 1e6
        self.latency.record_many(np.floor(due).astype(np.int64), us)
        self.recent.record_many(us)
        self.last_output = now

    def on_rejected(self, reason: str, source: str, now: float) -> None:
        """One ``cdrs-rejected`` message (its headers' reason and source) read at ``now``."""
        if source in self._sources:
            return  # the same reject sent again after a crash
        self._sources.add(source)
        self.rejects[reason] += 1
        self.timeline.count("rejected", int(now - self.start))
        self._pending.append((source, now))
        self.last_output = now

    def resolve(self) -> None:
        """Match the rejects read so far to the messages (and rows) they came from."""
        if not self._pending:
            return
        index = self._offset_index()
        waiting = []
        for source, now in self._pending:
            found = _SOURCE.match(source)
            if found is None:
                self.foreign += 1
                continue
            message = _find(index.get(int(found[1])), int(found[2]))
            if message >= 0:
                self._reject_of(message, None if found[3] is None else int(found[3]), now)
            elif self.settled < self.sent:
                waiting.append((source, now))  # perhaps a send not acknowledged yet
            else:
                self.foreign += 1
        self._pending = waiting

    def _reject_of(self, message: int, index: int | None, now: float) -> None:
        members = self.planned.members[message]
        due = self.planned.offsets[message]
        self.reject_latency.record(int(due), (now - self.start - due) * 1e6)
        if len(members) and members[0] < 0:  # a malformed message: rejected whole
            self._account(self.planned.rows + (-1 - members[:1]))
        elif index is None:
            self._account(members)
        elif index < len(members):
            self._account(members[index : index + 1])

    def _account(self, rows: I64) -> None:
        fresh = self._distinct(rows[~self._accounted[rows]])
        self._accounted[fresh] = True
        self.accounted += len(fresh)

    def _distinct(self, rows: I64) -> I64:
        """``rows`` with each value once, in O(n) (``np.unique`` sorts: a tenth of the
        load process's CPU when called per message and per reject)."""
        if len(rows) < 2:
            return rows
        place = np.arange(len(rows))
        self._place[rows] = place  # a repeated row keeps one of its places
        distinct: I64 = rows[self._place[rows] == place]
        return distinct

    def _offset_index(self) -> dict[int, tuple[I64, I64]]:
        """Per partition: acknowledged offsets (sorted) and their message numbers."""
        out = {}
        acked = self._offset >= 0
        for part in np.unique(self._partition[acked]).tolist():
            messages = np.flatnonzero(acked & (self._partition == part))
            order = np.argsort(self._offset[messages])
            out[part] = (self._offset[messages][order], messages[order])
        return out

    def lag_records(self, committed: dict[int, int]) -> float:
        """Records of this run's acknowledged messages at or past each committed offset."""
        behind = 0
        for part, at in committed.items():
            mine = (self._partition == part) & (self._offset >= at)
            behind += int(self.planned.sizes[mine].sum())
        return float(behind)


def _find(index: tuple[I64, I64] | None, offset: int) -> int:
    if index is None:
        return -1
    offsets, messages = index
    at = int(np.searchsorted(offsets, offset))
    return int(messages[at]) if at < len(offsets) and offsets[at] == offset else -1
