"""Rated usage accumulated per account and cycle, and the invoice lines it becomes.

The billing consumer feeds whole chunks of rated JSON lines (what the worker
writes to ``rated-cdrs``) to :meth:`UsageBook.apply`: one msgspec decode per
chunk, one pass grouping records by account and cycle, one multi-get of the
touched totals and ONE :class:`~balances.store.WriteBatch` with the new
totals, the ids applied and the input offsets. So a crash leaves a chunk
either wholly counted (its offsets stored: it is skipped when read again) or
not at all.

Key layout (``\\0`` ends the account, as in :mod:`billing.accounts`):

    use/<account>\\0<cycle>     UsageTotals (msgpack)
    closed/<account>           the last closed cycle, "2026-10": it and every earlier one
    orp/<account>\\0<seq>       records of an account without a billing profile (yet)
    seen/c/<seq>, seen/seq     cdr_ids applied, one value per chunk (see Dedupe)
    off/<topic>/<partition>    the next input offset to apply

Rules:

- **Cycle**: a record belongs to the cycle its ``start_us`` falls in, by the
  account's bill day and time zone (:func:`billing.cycles.cycle_of`).
- **Late usage**: a record whose cycle is closed (at or before ``closed/``)
  goes into the earliest open cycle, the one after the last closed, in the
  ``late`` rows with ``late_from`` = its own cycle. It is on exactly one
  invoice: a run reads ``use/`` of its cycle before closing it (the consumer
  pauses while a run holds the store), and nothing enters a closed cycle.
- **Dedupe**: the worker may send a chunk again after a crash (same
  ``cdr_id``s). Ids applied are remembered in two generations of
  ``remember`` ids each (default 2 M); a record whose id is remembered, or
  repeated inside its chunk, is counted as a duplicate and not added. Resends
  come within one worker batch of the original, far inside that window.
- **Orphans**: a record of an account with no billing profile is not guessed
  into a default cycle: it is kept as it came under ``orp/`` and counted; when
  the profile arrives (:meth:`UsageBook.adopt`) the records are added to the
  account's cycles, late rules included. :func:`orphans` lists what waits.
- **Money**: ``charged`` (money paid from or owed to balances) is what an
  invoice line bills; a record without it (worker run without balances) is
  billed at its cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Generic, Protocol, TypeVar

import msgspec
import numpy as np

from balances.store import Store, WriteBatch
from billing.accounts import SEP, account_key, load_profiles
from billing.model import BillingProfile, Mode
from billing.seen import SeenIds
from billing.tally import BadLine, Cycled, Partial, ProfileKey, Rated, decode_rated, tally
from billing.usage_totals import (
    KEY_SEP,
    BalanceRow,
    UsageRow,
    UsageTotals,
    balances_consumed,
    usage_lines,
)
from engine.columns import StrColumn

V = TypeVar("V")

USAGE = b"use/"
CLOSED = b"closed/"
ORPHAN = b"orp/"
OFFSET = b"off/"
__all__ = [  # the totals and their lines live in billing.usage_totals; runs read them here
    "ApplyResult", "BalanceRow", "ClosedCycles", "ProfileCache", "UsageBook", "UsageRow",
    "UsageTotals", "apply_rated", "balances_consumed", "close_cycle", "load_offsets",
    "load_totals", "offset_key", "orphans", "read_totals", "usage_key", "usage_lines",
]  # fmt: skip

_ENC = msgspec.msgpack.Encoder()
_TOTALS = msgspec.msgpack.Decoder(UsageTotals)
_PLAIN = msgspec.msgpack.Decoder()


def usage_key(account: str, cycle: str) -> bytes:
    return USAGE + account_key(account) + SEP + cycle.encode()


def offset_key(topic: str, partition: int) -> bytes:
    return OFFSET + f"{topic}/{partition}".encode()


def load_totals(store: Store, account: str, cycle: str) -> UsageTotals | None:
    raw = store.get(usage_key(account, cycle))
    return None if raw is None else _TOTALS.decode(raw)


def read_totals(store: Store, accounts: Sequence[str], cycle: str) -> list[UsageTotals | None]:
    """The totals of ``accounts`` in ``cycle`` (``None``: no usage), one multi-get."""
    values = store.get_many([usage_key(a, cycle) for a in accounts])
    return [None if v is None else _TOTALS.decode(v) for v in values]


def load_offsets(store: Store) -> dict[tuple[str, int], int]:
    """``(topic, partition) → next offset`` of every input applied so far."""
    out = {}
    for key, raw in store.scan(OFFSET):
        topic, _, partition = key[len(OFFSET) :].decode().rpartition("/")
        out[(topic, int(partition))] = int(raw)
    return out


# -- closed cycles --------------------------------------------------------------------
class AccountCache(Generic[V]):
    """Values per account read from the store once and kept; at most ``limit`` accounts
    (emptied when full: the store has them all). ``load`` answers for the accounts it
    finds; one it leaves out is asked for again next time."""

    def __init__(self, load: Callable[[list[str]], Mapping[str, V]], limit: int) -> None:
        self.load, self.limit = load, limit
        self.known: dict[str, V] = {}

    def get(self, accounts: Sequence[str]) -> dict[str, V]:
        known = self.known
        missing = [a for a in accounts if a not in known]
        if missing:
            if len(known) + len(missing) > self.limit:
                known.clear()
                missing = list(accounts)
            known.update(self.load(missing))
        return {a: v for a in accounts if (v := known.get(a)) is not None}


class ClosedCycles:
    """The last closed cycle of each account (``closed/<account>``), read once and kept.

    Marks move only in a run (:func:`close_cycle`): call :meth:`forget` after one.
    """

    def __init__(self, store: Store, limit: int = 1_000_000) -> None:
        self.store = store
        self._cache: AccountCache[str] = AccountCache(self._load, limit)

    def _load(self, accounts: list[str]) -> dict[str, str]:
        values = self.store.get_many([CLOSED + account_key(a) for a in accounts])
        # "": no cycle closed yet (kept, so the account is not read again)
        return {a: "" if v is None else v.decode() for a, v in zip(accounts, values, strict=True)}

    def of(self, accounts: Sequence[str]) -> dict[str, str]:
        """Each account's last closed cycle (accounts with none are left out)."""
        return {a: mark for a, mark in self._cache.get(accounts).items() if mark}

    def forget(self) -> None:
        self._cache.known.clear()


def close_cycle(
    store: Store, account_ids: Sequence[str], cycle: str, batch: WriteBatch,
    marks: Sequence[bytes | None] | None = None,
) -> int:  # fmt: skip
    """Mark ``cycle`` (and every earlier one) closed for the accounts, in the caller's batch.

    Usage rated for a closed cycle goes to the next open one as late usage.
    A mark never moves back: closing an earlier cycle again changes nothing.
    ``marks``: the accounts' current marks if the caller has read them.
    Returns how many marks moved.
    """
    keys = [CLOSED + account_key(a) for a in account_ids]
    moved = 0
    wanted = cycle.encode()
    for key, old in zip(keys, store.get_many(keys) if marks is None else marks, strict=True):
        if old is None or old < wanted:
            batch.put(key, wanted)
            moved += 1
    return moved


# -- profiles as apply sees them ------------------------------------------------------
class ProfileSource(Protocol):
    def lookup(self, accounts: Sequence[str]) -> Mapping[str, Cycled]: ...


class ProfileCache:
    """Each account's bill day, zone and mode, read from the store once and kept.

    :meth:`put` a profile as it is received. Holds at most ``limit`` accounts
    (~170 bytes each); an account without a profile is read again next time.
    """

    def __init__(self, store: Store, limit: int = 1_000_000) -> None:
        self.store = store
        self._cache: AccountCache[ProfileKey] = AccountCache(self._load, limit)

    def _load(self, accounts: list[str]) -> dict[str, ProfileKey]:
        return {a: ProfileKey.of(p) for a, p in load_profiles(self.store, accounts).items()}

    def lookup(self, accounts: Sequence[str]) -> Mapping[str, Cycled]:
        return self._cache.get(accounts)

    def put(self, profile: BillingProfile) -> None:
        self._cache.known[profile.account] = ProfileKey.of(profile)

    def forget(self) -> None:
        self._cache.known.clear()


class _Static:
    def __init__(self, profiles: Mapping[str, Cycled]) -> None:
        self.profiles = profiles

    def lookup(self, accounts: Sequence[str]) -> Mapping[str, Cycled]:
        return {a: p for a in accounts if (p := self.profiles.get(a)) is not None}


# -- applying -------------------------------------------------------------------------
@dataclass
class ApplyResult:
    records: int = 0  # rated lines read (bad ones included)
    applied: int = 0  # added to totals (late ones included)
    duplicates: int = 0  # ids applied before, or repeated in the chunk: not added
    late: int = 0  # added to a later cycle than their own (theirs was closed)
    orphans: int = 0  # kept under orp/: the account has no billing profile yet
    adopted: int = 0  # orphans added to totals now that their profile is known
    totals_written: int = 0  # (account, cycle) values written
    accounts: set[str] = field(default_factory=set)  # accounts whose totals changed
    bad: list[BadLine] = field(default_factory=list)  # lines that are not rated records


class UsageBook:
    """The consumer's usage state on one billing store: remembered ids and orphan accounts.

    One process owns it. After a failed :meth:`apply` (the store write
    raised), open a new book: memory may hold ids the store does not.
    """

    def __init__(self, store: Store, *, remember: int = 2_000_000) -> None:
        self.store = store
        self.seen = SeenIds.load(store, remember)
        self.orphan_accounts: set[str] = {
            k[len(ORPHAN) : k.index(SEP, len(ORPHAN))].decode() for k, _ in store.scan(ORPHAN)
        }

    def apply(
        self,
        lines: Sequence[bytes] | bytes,
        profiles: ProfileSource | Mapping[str, Cycled],
        closed: ClosedCycles,
        *,
        offsets: Mapping[tuple[str, int], int] | None = None,
    ) -> ApplyResult:
        """Add rated JSON lines (one chunk or several) to the totals in one store write.

        ``offsets`` (next offset per input topic partition) go into the same write.
        """
        return self.apply_records(*decode_rated(lines), profiles, closed, offsets=offsets)

    def apply_records(
        self,
        records: list[Rated],
        bad: list[BadLine],
        profiles: ProfileSource | Mapping[str, Cycled],
        closed: ClosedCycles,
        *,
        offsets: Mapping[tuple[str, int], int] | None = None,
    ) -> ApplyResult:
        """:meth:`apply` of lines decoded already (:func:`billing.tally.decode_rated`)."""
        out = ApplyResult(records=len(records) + len(bad), bad=bad)
        ids = StrColumn.from_strings([r.cdr_id for r in records])
        keep = self.seen.fresh(ids)
        fresh = records if keep.all() else list(compress(records, keep.tolist()))
        out.duplicates = len(records) - len(fresh)
        batch = WriteBatch()
        self._add(fresh, _source(profiles), closed, batch, out)
        self.seen.stage(ids if len(fresh) == len(records) else ids.take(np.flatnonzero(keep)),
                        batch)  # fmt: skip
        for (topic, partition), offset in (offsets or {}).items():
            batch.put(offset_key(topic, partition), b"%d" % offset)
        self.store.write(batch)
        return out

    def adopt(
        self,
        accounts: Iterable[str],
        profiles: ProfileSource | Mapping[str, Cycled],
        closed: ClosedCycles,
        batch: WriteBatch,
    ) -> ApplyResult:
        """Move kept records of ``accounts`` that now have a profile into their totals,
        in ``batch`` (which must not hold usage totals already: they are read from the store).
        """
        source = _source(profiles)
        waiting = sorted(set(accounts) & self.orphan_accounts)
        known = source.lookup(waiting)
        records: list[Rated] = []
        for account in [a for a in waiting if a in known]:
            for key, raw in self.store.scan(ORPHAN + account_key(account) + SEP):
                records += _ORPHANS.decode(raw)
                batch.delete(key)
            self.orphan_accounts.discard(account)
        out = ApplyResult(records=len(records), adopted=len(records))
        self._add(records, source, closed, batch, out)
        return out

    def _add(
        self, records: list[Rated], profiles: ProfileSource, closed: ClosedCycles,
        batch: WriteBatch, out: ApplyResult,
    ) -> None:  # fmt: skip
        if not records:
            return
        accounts = list({r.account: None for r in records})
        known = profiles.lookup(accounts)
        marks = closed.of([a for a in accounts if a in known])
        partials, lost, late = tally(records, known, marks)
        out.applied += len(records) - len(lost)
        out.late += late
        if lost:
            out.orphans += len(lost)
            self._keep_orphans(lost, batch)
        keys = [usage_key(a, c) for a, c in partials]
        for (account, cycle), key, raw in zip(partials, keys, self.store.get_many(keys),
                                              strict=True):  # fmt: skip
            batch.put(key, _merge(raw, account, cycle, known[account].mode,
                                  partials[(account, cycle)]))  # fmt: skip
            out.accounts.add(account)
        out.totals_written += len(partials)

    def _keep_orphans(self, records: list[Rated], batch: WriteBatch) -> None:
        by_account: dict[str, list[Rated]] = {}
        for r in records:
            by_account.setdefault(r.account, []).append(r)
        seq = self.seen.next_seq()
        for account, kept in by_account.items():
            batch.put(ORPHAN + account_key(account) + SEP + b"%016d" % seq, _ENC.encode(kept))
            self.orphan_accounts.add(account)


_ORPHANS = msgspec.msgpack.Decoder(list[Rated])


def apply_rated(
    store: Store,
    lines: Sequence[bytes] | bytes,
    profiles: ProfileSource | Mapping[str, Cycled],
    closed: ClosedCycles,
    *,
    book: UsageBook | None = None,
    offsets: Mapping[tuple[str, int], int] | None = None,
) -> ApplyResult:
    """:meth:`UsageBook.apply` on ``book`` (a long-lived consumer keeps one; without it a
    book is loaded from ``store`` for this call)."""
    return (book or UsageBook(store)).apply(lines, profiles, closed, offsets=offsets)


def _source(profiles: ProfileSource | Mapping[str, Cycled]) -> ProfileSource:
    return _Static(profiles) if isinstance(profiles, Mapping) else profiles


def _merge(raw: bytes | None, account: str, cycle: str, mode: Mode, part: Partial) -> bytes:
    """Stored totals (``raw``) plus one batch's partial sums, encoded again.

    Works on the plain msgpack maps (no Structs: this runs once per account
    and batch); the layout is :class:`UsageTotals`' (array-like).
    """
    if raw is None:
        sums: dict[str, list[int]] = {}
        held: dict[str, list[int]] = {}
    else:
        sums, held = _PLAIN.decode(raw)[3:5]
    join = KEY_SEP.join
    for key, add in part.rows.items():
        name = join(key)
        have = sums.get(name)
        if have is None:
            sums[name] = add
        else:
            have[0] += add[0]
            have[1] += add[1]
            have[2] += add[2]
            have[3] += add[3]
            have[4] += add[4]
    for pair_key, (consumed, earned) in part.balances.items():
        name = join(pair_key)
        pair = held.get(name)
        if pair is None:
            held[name] = [consumed, earned]
        else:
            pair[0] += consumed
            pair[1] += earned
    encoded: bytes = _ENC.encode((account, cycle, mode.value, sums, held))
    return encoded


def orphans(store: Store) -> dict[str, int]:
    """Records waiting for a billing profile, per account (for the run's report)."""
    out: dict[str, int] = {}
    for key, raw in store.scan(ORPHAN):
        account = key[len(ORPHAN) : key.index(SEP, len(ORPHAN))].decode()
        out[account] = out.get(account, 0) + len(_ORPHANS.decode(raw))
    return out
