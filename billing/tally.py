"""The hot path of usage accumulation: rated JSON lines in, sums per account and cycle out.

Plain code, no store: :mod:`billing.usage` reads and writes around it. One
msgspec decode per chunk into a lean Struct (only the fields billing needs;
``spans`` and the rest are skipped by the decoder), then one pass over the
records with per-record work kept to a few dict operations and additions.
Cycle bounds are computed per bill day and zone, a few times per batch, not
per record (:func:`tally`); :func:`tally_slow` is the obviously-correct twin
that tests hold it equal to.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, NamedTuple, Protocol

import msgspec

from billing.cycles import cycle_bounds, cycle_of, next_cycle
from billing.model import BillingProfile, Mode

RowKey = tuple[str, str, str, str]  # late_from, category, zone, currency
ROW_FIELDS = 5  # records, usage, cost, charged, covered


class Use(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """One balance movement of a rated record (``delta`` < 0: taken from the balance)."""

    balance: str
    unit: str
    delta: int


Amount = Annotated[str, msgspec.Meta(pattern=r"^-?[0-9]+(\.[0-9]+)?$")]


class Rated(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """The fields of a rated record (:class:`engine.rated_output.RatedRecord`) billing uses."""

    cdr_id: str
    account: str
    category: str
    start_us: int
    usage: int
    cost_nanos: int
    currency: str
    zone: str
    charged: Amount | None = None  # decimal text in the currency; None: not debited
    covered: int | None = None
    balances: tuple[Use, ...] | None = None


class Cycled(Protocol):
    """What accumulation needs of a billing profile (a profile, or a cached :class:`ProfileKey`)."""

    @property
    def bill_day(self) -> int: ...
    @property
    def timezone(self) -> str: ...
    @property
    def mode(self) -> Mode: ...


class ProfileKey(NamedTuple):
    """The part of a profile accumulation uses, small enough to cache for every account."""

    bill_day: int
    timezone: str
    mode: Mode

    @classmethod
    def of(cls, profile: BillingProfile) -> ProfileKey:
        return cls(profile.bill_day, sys.intern(profile.timezone), profile.mode)


@dataclass(frozen=True, slots=True)
class BadLine:
    chunk: int  # index of the chunk in the call
    line: int  # 0-based line in the chunk
    message: str
    raw: bytes


_DECODER = msgspec.json.Decoder(Rated)


def decode_rated(lines: Sequence[bytes] | bytes) -> tuple[list[Rated], list[BadLine]]:
    """Records of one or several chunks of JSON lines, and the lines that are not records.

    A chunk decodes in one call; only a chunk with a bad line is read line by line.
    A record must name an account billing can key (not empty, no NUL).
    """
    chunks = [lines] if isinstance(lines, bytes | bytearray | memoryview) else lines
    records: list[Rated] = []
    bad: list[BadLine] = []
    for n, chunk in enumerate(chunks):
        try:
            records += _DECODER.decode_lines(chunk)
        except (msgspec.DecodeError, msgspec.ValidationError):
            _by_line(chunk, n, records, bad)
    if any(not a or "\x00" in a for a in {r.account for r in records}):  # rare: find them
        records, bad = [], []
        for n, chunk in enumerate(chunks):
            _by_line(chunk, n, records, bad)
    return records, bad


def _by_line(chunk: bytes | memoryview, n: int, records: list[Rated], bad: list[BadLine]) -> None:
    for i, line in enumerate(bytes(chunk).split(b"\n")):
        if not line.strip():
            continue
        try:
            record = _DECODER.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad.append(BadLine(n, i, f"rated record: {exc}", line))
            continue
        if not record.account or "\x00" in record.account:
            message = f"rated record: account {record.account!r} cannot be billed (empty or NUL)"
            bad.append(BadLine(n, i, message, line))
        else:
            records.append(record)


def nanos_of(text: str) -> int:
    """``"0.55"`` → 550000000 for text matching :data:`Amount`; beyond 9 decimals (a
    crypto unit) the amount is rounded half-even to nanos."""
    whole, _, frac = text.partition(".")
    if len(frac) <= 9:
        return int(whole + frac.ljust(9, "0"))
    return int(Decimal(text).scaleb(9).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class Partial:
    """One batch's sums for one (account, cycle)."""

    __slots__ = ("balances", "rows")

    def __init__(self) -> None:
        self.rows: dict[RowKey, list[int]] = {}  # ROW_FIELDS sums
        self.balances: dict[tuple[str, str], list[int]] = {}  # consumed, earned


Spans = dict[tuple[int, str], list[tuple[int, int, str]]]  # (bill day, zone) → cycles seen
Slot = tuple[str, str, str]  # account, the cycle summed into, late_from ("" when on time)


def cycle_in(spans: Spans, profile: Cycled, at_us: int) -> tuple[str, int, int]:
    """The cycle of ``at_us`` and its bounds; accounts of one bill day and zone share them,
    so ``cycle_of`` runs a few times per batch, not per account."""
    known = spans.setdefault((profile.bill_day, profile.timezone), [])
    for lo, hi, cycle in known:
        if lo <= at_us < hi:
            return cycle, lo, hi
    cycle = cycle_of(at_us, profile.bill_day, profile.timezone)
    bounds = cycle_bounds(cycle, profile.bill_day, profile.timezone)
    known.append((bounds.start_us, bounds.end_us, cycle))
    return cycle, bounds.start_us, bounds.end_us


def slot_of(account: str, cycle: str, mark: str) -> Slot:
    """Where a record of ``cycle`` is summed: its cycle, or after the account's last closed."""
    if mark and cycle <= mark:
        return (account, next_cycle(mark), cycle)
    return (account, cycle, "")


def tally(
    records: Sequence[Rated], profiles: Mapping[str, Cycled], marks: Mapping[str, str]
) -> tuple[dict[tuple[str, str], Partial], list[Rated], int]:
    """Sums per (account, target cycle); records of accounts without a profile; late count.

    ``marks``: each account's last closed cycle. A record of a closed cycle is
    summed into the cycle after the mark, in a row keyed by its own cycle.
    :func:`tally_slow` is its twin.

    How it stays cheap: a batch spans minutes of traffic, so for most accounts
    every record of it falls in one cycle (the cycles of the batch's first and
    last instants agree for their bill day and zone). Their records are summed
    by one dict look-up each, keyed by account, category, zone and currency;
    the rest (a cycle boundary inside the batch, late records) record by
    record. (A numpy version grouping by codes measured slower here: building
    columns from Structs costs more than the additions it saves.)
    """
    if not records:
        return {}, [], 0
    starts = [r.start_us for r in records]
    first, last = min(starts), max(starts)
    spans: Spans = {}
    single: dict[str, Slot] = {}  # accounts whose records all fall in one cycle
    for account, profile in profiles.items():
        cycle = cycle_in(spans, profile, first)[0]
        if cycle_in(spans, profile, last)[0] == cycle:
            single[account] = slot_of(account, cycle, marks.get(account, ""))
    sums: dict[tuple[str, str, str, str], list[int]] = {}
    held: dict[tuple[str, str, str], list[int]] = {}
    rest: list[Rated] = []
    money: dict[str, int] = {}
    for r in records:
        if r.account not in single:
            rest.append(r)
            continue
        key = (r.account, r.category, r.zone, r.currency)
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0] * ROW_FIELDS
        row[0] += 1
        row[1] += r.usage
        row[2] += r.cost_nanos
        text = r.charged
        if text is None:
            row[3] += r.cost_nanos
        else:
            paid = money.get(text)
            if paid is None:
                paid = money[text] = nanos_of(text)
            row[3] += paid
        if r.covered:
            row[4] += r.covered
        if r.balances:
            for u in r.balances:
                pair = held.get((r.account, u.balance, u.unit))
                if pair is None:
                    pair = held[(r.account, u.balance, u.unit)] = [0, 0]
                if u.delta < 0:
                    pair[0] -= u.delta
                else:
                    pair[1] += u.delta
    partials: dict[tuple[str, str], Partial] = {}
    for (account, category, zone, currency), row in sums.items():
        _, target, late_from = single[account]
        part = partials.get((account, target))
        if part is None:
            part = partials[(account, target)] = Partial()
        part.rows[(late_from, category, zone, currency)] = row
    for (account, balance, unit), pair in held.items():
        partials[(account, single[account][1])].balances[(balance, unit)] = pair
    lost = _each(rest, profiles, marks, partials, spans, money)
    late = sum(row[0] for part in partials.values() for key, row in part.rows.items() if key[0])
    return partials, lost, late


def _each(
    records: list[Rated], profiles: Mapping[str, Cycled], marks: Mapping[str, str],
    partials: dict[tuple[str, str], Partial], spans: Spans, money: dict[str, int],
) -> list[Rated]:  # fmt: skip
    """Add ``records`` to ``partials`` one by one (locating each one's cycle); the lost ones."""
    # per account: [lo_us, hi_us, late_from, Partial, profile, mark]
    where: dict[str, list[Any]] = {}
    lost: list[Rated] = []
    for r in records:
        w = where.get(r.account)
        if w is None:
            profile = profiles.get(r.account)
            if profile is None:
                lost.append(r)
                continue
            w = where[r.account] = [0, 0, "", None, profile, marks.get(r.account, "")]
        at = r.start_us
        if not w[0] <= at < w[1]:
            cycle, w[0], w[1] = cycle_in(spans, w[4], at)
            account, target, w[2] = slot_of(r.account, cycle, w[5])
            part = partials.get((account, target))
            if part is None:
                part = partials[(account, target)] = Partial()
            w[3] = part
        part = w[3]
        key = (w[2], r.category, r.zone, r.currency)
        row = part.rows.get(key)
        if row is None:
            row = part.rows[key] = [0] * ROW_FIELDS
        row[0] += 1
        row[1] += r.usage
        row[2] += r.cost_nanos
        if r.charged is None:
            row[3] += r.cost_nanos
        else:
            paid = money.get(r.charged)
            row[3] += paid if paid is not None else nanos_of(r.charged)
        row[4] += r.covered or 0
        for u in r.balances or ():
            pair = part.balances.setdefault((u.balance, u.unit), [0, 0])
            if u.delta < 0:
                pair[0] -= u.delta
            else:
                pair[1] += u.delta
    return lost


def tally_slow(
    records: Sequence[Rated], profiles: Mapping[str, Cycled], marks: Mapping[str, str]
) -> tuple[dict[tuple[str, str], Partial], list[Rated], int]:
    """:func:`tally` record by record, with nothing cached: its obviously-correct twin."""
    partials: dict[tuple[str, str], Partial] = {}
    lost: list[Rated] = []
    late = 0
    for r in records:
        profile = profiles.get(r.account)
        if profile is None:
            lost.append(r)
            continue
        cycle = cycle_of(r.start_us, profile.bill_day, profile.timezone)
        account, target, late_from = slot_of(r.account, cycle, marks.get(r.account, ""))
        late += bool(late_from)
        part = partials.setdefault((account, target), Partial())
        row = part.rows.setdefault((late_from, r.category, r.zone, r.currency), [0] * ROW_FIELDS)
        paid = r.cost_nanos if r.charged is None else nanos_of(r.charged)
        for i, value in enumerate((1, r.usage, r.cost_nanos, paid, r.covered or 0)):
            row[i] += value
        for u in r.balances or ():
            pair = part.balances.setdefault((u.balance, u.unit), [0, 0])
            pair[0 if u.delta < 0 else 1] += abs(u.delta)
    return partials, lost, late
