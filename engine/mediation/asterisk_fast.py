"""Asterisk ``Master.csv`` straight to :class:`~engine.columns.Columns` (no Record objects).

The checked wrapper around :mod:`engine.mediation.asterisk_kernels`. It gives
the same records (as columns, in the same order), skips and rejects as the
slow twin :func:`engine.mediation.asterisk.parse_master_csv_bytes`: the kernels
decide the common lines, and every line they leave ``SLOW`` (malformed, non
ASCII, lenient numbers or times) goes through the slow parser's own line
function, so its reject messages are the slow parser's word for word.

``uniqueid`` repeats (``#n``) are counted over every line with 18 fields, as
the slow parser counts them: the kernels hash each id, and only ids whose hash
occurs twice are compared as bytes, in line order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from engine.columns import KIND_VOICE, Columns, StrColumn, concat, gather
from engine.mediation import asterisk_kernels as k
from engine.mediation.asterisk import COLUMNS, SKIPPED_DISPOSITIONS, line_outcome
from engine.mediation.common import (
    BLANK,
    LineError,
    csv_fields,
    empty_file_reject,
    line_reject,
    read_bytes,
    zone,
)
from engine.records import Record
from engine.rejects import Reject
from engine.wire import records_to_columns
from tariffs.timezones import offset_table

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

# Kernel disposition table: ANSWERED first, then the skipped ones in the slow parser's order.
_RULES: Final = ("", *SKIPPED_DISPOSITIONS.values())
_WORDS: Final = ("ANSWERED", *SKIPPED_DISPOSITIONS)
_UNIQUEID: Final = COLUMNS.index("uniqueid")
# The fields the kernel reads; the others (clid, channels, lastdata, ...) are only scanned.
_KEEP: Final = ("accountcode", "src", "dst", "start", "answer", "duration", "billsec",
                "disposition", "uniqueid")  # fmt: skip


@dataclass
class ParsedColumns:
    """What one ``Master.csv`` gave: records as columns, skips per rule, rejects.

    ``len(columns) + sum(skipped.values()) + len(rejects) == lines`` (an empty
    file: one reject at ``file:0`` and ``lines == 1``), as ``Parsed.total``.
    """

    columns: Columns
    skipped: dict[str, int] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    lines: int = 0


def parse_master_csv_columns(path: Path, *, tenant: str, timezone: str = "UTC") -> ParsedColumns:
    """Read an Asterisk ``Master.csv``; see :func:`parse_master_csv_columns_bytes`."""
    return parse_master_csv_columns_bytes(
        read_bytes(path), name=str(path), tenant=tenant, timezone=timezone
    )


def parse_master_csv_columns_bytes(
    data: bytes, *, name: str, tenant: str, timezone: str = "UTC"
) -> ParsedColumns:
    """Mediate the bytes of a ``Master.csv``; ``name`` is the file in reject sources."""
    tz = zone(timezone)
    if not data:
        return ParsedColumns(empty_columns(), {}, [empty_file_reject(name)], 1)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, ends, n = _split(data, buf)
    starts, ends = starts[:n], ends[:n]
    words = [w.encode() for w in _WORDS]
    word_offsets = np.cumsum([0, *map(len, words)]).astype(np.int64)
    text = np.empty(len(buf), np.uint8)
    status = np.empty(n, np.int8)
    bounds = np.zeros((n, k.BOUNDS), np.int64)
    local, usage = np.zeros(n, np.int64), np.zeros(n, np.int64)
    hashes = np.zeros(n, np.uint64)
    k.mediate_lines(buf, starts, ends, np.frombuffer(b"".join(words), np.uint8), word_offsets,
                    np.array([c in _KEEP for c in COLUMNS], np.uint8),
                    np.empty((k.N_COLUMNS, 2), np.int64), text, status, bounds, local, usage,
                    hashes)  # fmt: skip
    lines = _Lines(data, name, starts, ends, text, bounds)
    slow = lines.read_slow(np.flatnonzero(status == k.SLOW), hashes)
    has_fields = status > k.BLANK
    has_fields[list(slow.uniqueids)] = True
    repeats = lines.repeats(np.flatnonzero(has_fields), hashes, slow.uniqueids)
    slow.decide(tenant, tz, repeats)
    fast = np.flatnonzero(status == k.FIRST_RULE)
    columns = _columns(lines, fast, repeats, tenant, _utc_us(local[fast], timezone), usage[fast])
    if slow.records:
        columns = _merge(columns, fast, slow.records)
    return ParsedColumns(columns, _skipped(status, slow.skips), slow.rejects, n)


def _split(data: bytes, buf: U8) -> tuple[I64, I64, int]:
    """Line bounds; room for ``\\n`` line ends first (one memchr pass), lone ``\\r`` on retry."""
    room = data.count(b"\n") + 1
    starts, ends = np.empty(room, np.int64), np.empty(room, np.int64)
    n = k.split_lines(buf, starts, ends)
    if n < 0:
        room += data.count(b"\r")
        starts, ends = np.empty(room, np.int64), np.empty(room, np.int64)
        n = k.split_lines(buf, starts, ends)
    return starts, ends, n


@dataclass
class _Slow:
    """The lines the kernels left to the slow parser, and what it made of them."""

    raw: dict[int, bytes]  # line index -> its bytes
    uniqueids: dict[int, str]  # line index -> uniqueid, for lines with 18 fields
    rejects: list[Reject]
    name: str
    records: list[tuple[int, Record]] = field(default_factory=list)
    skips: list[tuple[int, str]] = field(default_factory=list)

    def decide(self, tenant: str, tz: ZoneInfo, repeats: dict[int, int]) -> None:
        """Run the slow line function with the ``seen`` count the line would have met."""
        for i, uniqueid in self.uniqueids.items():
            raw = self.raw[i]
            seen = {uniqueid: repeats.get(i, 1) - 1}
            try:
                outcome = line_outcome(raw, tenant=tenant, tz=tz, seen=seen)
            except LineError as error:
                self.rejects.append(line_reject(self.name, i + 1, raw, error))
                continue
            if isinstance(outcome, str):
                self.skips.append((i, outcome))
            else:
                self.records.append((i, outcome))
        self.rejects.sort(key=lambda r: int(r.source.rsplit(":", 1)[1]))


@dataclass(frozen=True)
class _Lines:
    data: bytes
    name: str
    starts: I64
    ends: I64
    text: U8  # unquoted fields, as the kernel wrote them
    bounds: I64

    def read_slow(self, index: I64, hashes: npt.NDArray[np.uint64]) -> _Slow:
        """CSV-split the lines the kernel left; hash the uniqueid of those with 18 fields."""
        slow = _Slow(raw={}, uniqueids={}, rejects=[], name=self.name)
        for i in index.tolist():
            raw = self.data[self.starts[i] : self.ends[i]]
            slow.raw[i] = raw
            try:
                fields = csv_fields(raw, len(COLUMNS))
            except LineError as error:
                slow.rejects.append(line_reject(self.name, i + 1, raw, error))
                continue
            slow.uniqueids[i] = fields[_UNIQUEID]
            hashes[i] = fnv1a(fields[_UNIQUEID].encode())
        return slow

    def repeats(
        self, index: I64, hashes: npt.NDArray[np.uint64], slow: dict[int, str]
    ) -> dict[int, int]:
        """Line index -> ``n`` for the n-th (n ≥ 2) line with the same uniqueid."""
        # Sorting the hashes finds the few that occur twice (a dict of a million ids costs more).
        ordered = np.sort(hashes[index])
        twice = ordered[1:][ordered[1:] == ordered[:-1]]
        if not len(twice):
            return {}
        shared = index[np.isin(hashes[index], twice)]
        seen: dict[str, int] = {}
        found: dict[int, int] = {}
        for i in shared.tolist():
            if i in slow:
                uniqueid = slow[i]
            else:
                s, e = self.bounds[i, k.UID_S], self.bounds[i, k.UID_E]
                uniqueid = self.text[s:e].tobytes().decode()
            n = seen[uniqueid] = seen.get(uniqueid, 0) + 1
            if n > 1:
                found[i] = n
        return found

    def strings(self, index: I64, s: int, e: int) -> StrColumn:
        """The kernel's unquoted values ``bounds[index, s:e]`` as a column."""
        size = int((self.bounds[index, e] - self.bounds[index, s]).sum())
        data, offsets = np.empty(size, np.uint8), np.empty(len(index) + 1, np.int64)
        k.gather_values(self.text, self.bounds, index, s, e, data, offsets)
        return StrColumn(data, offsets)


def fnv1a(value: bytes) -> np.uint64:
    """The kernel's uniqueid hash, for lines the slow parser split."""
    h = int(k.FNV_OFFSET)
    for byte in value:
        h = ((h ^ byte) * int(k.FNV_PRIME)) & 0xFFFF_FFFF_FFFF_FFFF
    return np.uint64(h)


def _constant(value: str, n: int) -> StrColumn:
    raw = np.frombuffer(value.encode(), np.uint8)
    return StrColumn(np.tile(raw, n), np.arange(n + 1, dtype=np.int64) * len(raw))


def empty_columns() -> Columns:
    return _voice(_constant("", 0), _constant("", 0), _constant("", 0), _constant("", 0),
                  np.zeros(0, np.int64), np.zeros(0, np.int64))  # fmt: skip


def _voice(cdr_id: StrColumn, tenant: StrColumn, account: StrColumn, destination: StrColumn,
           start_us: I64, usage: I64) -> Columns:  # fmt: skip
    n = len(usage)
    return Columns(kind=np.full(n, KIND_VOICE, np.uint8), cdr_id=cdr_id, tenant=tenant,
                   account=account, category=_constant("call", n), subject=account,
                   destination=destination, start_us=start_us, usage=usage)  # fmt: skip


def _columns(lines: _Lines, fast: I64, repeats: dict[int, int], tenant: str, start_us: I64,
             usage: I64) -> Columns:  # fmt: skip
    """The kernel's records; a repeated uniqueid gets its ``#n`` from an extra buffer."""
    cdr_id = lines.strings(fast, k.UID_S, k.UID_E)
    again = [(j, i) for j, i in enumerate(fast.tolist()) if i in repeats] if repeats else []
    if again:
        extra = StrColumn.from_strings([f"{cdr_id[j]}#{repeats[i]}" for j, i in again])
        rows = np.array([j for j, _ in again], np.int64)
        begin, size = cdr_id.offsets[:-1].copy(), np.diff(cdr_id.offsets)
        begin[rows] = extra.offsets[:-1] + len(cdr_id.data)
        size[rows] = np.diff(extra.offsets)
        cdr_id = gather(np.concatenate([cdr_id.data, extra.data]), begin, size)
    return _voice(cdr_id, _constant(tenant, len(fast)), lines.strings(fast, k.ACC_S, k.ACC_E),
                  lines.strings(fast, k.DST_S, k.DST_E), start_us, usage)  # fmt: skip


def _utc_us(local: I64, timezone: str) -> I64:
    """Wall seconds in ``timezone`` as UTC epoch microseconds (``fold=0``, as the slow twin)."""
    if not len(local):
        return np.zeros(0, np.int64)  # no table to build (the first one per zone costs ~0.1 s)
    transitions, offsets = offset_table(timezone)
    wall = transitions.copy()
    wall[1:] += np.maximum(offsets[:-1], offsets[1:])
    out = np.empty(len(local), np.int64)
    k.local_to_utc(local, wall, offsets, out)
    return out * 1_000_000


def _merge(columns: Columns, fast: I64, records: list[tuple[int, Record]]) -> Columns:
    """Fast and slow records together, in line order."""
    rows = np.array([i for i, _ in records], np.int64)
    joined = concat([columns, records_to_columns([r for _, r in records])])
    order = np.argsort(np.concatenate([fast, rows]), kind="stable")
    return Columns(kind=joined.kind[order], cdr_id=joined.cdr_id.take(order),
                   tenant=joined.tenant.take(order), account=joined.account.take(order),
                   category=joined.category.take(order), subject=joined.subject.take(order),
                   destination=joined.destination.take(order),
                   start_us=joined.start_us[order], usage=joined.usage[order])  # fmt: skip


def _skipped(status: npt.NDArray[np.int8], slow: list[tuple[int, str]]) -> dict[str, int]:
    """Lines skipped per rule, rules in the order the slow parser first meets them."""
    first: dict[str, tuple[int, int]] = {}
    codes, where, counts = np.unique(status, return_index=True, return_counts=True)
    for code, at, count in zip(codes.tolist(), where.tolist(), counts.tolist(), strict=True):
        if code == k.BLANK:
            first[BLANK] = (at, count)
        elif code > k.FIRST_RULE:
            first[_RULES[code - k.FIRST_RULE]] = (at, count)
    for i, rule in slow:
        at, count = first.get(rule, (i, 0))
        first[rule] = (min(at, i), count + 1)
    return {rule: count for rule, (_, count) in sorted(first.items(), key=lambda x: x[1][0])}
