"""The ledger: balance state, its journal, remembered ids and their store.

Hot state lives in memory (:class:`~balances.state.BalanceState`); the store
holds what rebuilds it. Keys:

- ``log/<seq>``: structure changes in order (account created, balance
  added, mode changed), replayed on open so rows get the same numbers;
- ``amt/<chunk>``: a snapshot of balance amounts, ``CHUNK`` rows per value;
- ``dlt/<seq>``: the rows that changed since, with their amounts (one value
  per checkpoint, applied in order on open; folded into a new snapshot once
  they add up to as many rows as the snapshot);
- ``jrn/<seq>``: one journal chunk per debited batch or operation;
- ``ids/<seq>``: the ``cdr_id``s a batch applied (the replay window);
- ``op/<op id>``: the result of an idempotent operation;
- ``meta``: the checkpoint sequence.

**Durability point**: :meth:`Ledger.checkpoint` writes everything changed
since the last one in one atomic, synced store write; a crash loses at most
what came after the last checkpoint and never leaves half of one. A caller
that consumes input (a file, a partition) checkpoints its input position in
the same write (``extra``), so input and state always agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from balances import kernels as bk
from balances.debit import Debitor, DebitResult, Journal
from balances.exceptions import BalanceError, OperationConflictError, StoreError
from balances.model import MAIN, Account, Balance, Mode
from balances.remembered import RememberedIds
from balances.state import MODE_CODES, BalanceState
from balances.store import RocksStore, Store, WriteBatch
from balances.units import UnitCatalog, load_units
from engine.columns import I64, Columns, StrColumn, StrPack
from tariffs.rating import RatedBatch

CHUNK = 1 << 16
LOG_ACCOUNTS = 10_000  # accounts per structure-log value
REASONS = {
    bk.USAGE_ITEMS: "usage_items",
    bk.USAGE_MONEY: "usage_money",
    bk.USAGE_DEBT: "usage_debt",
    bk.LOYALTY_EARNED: "loyalty_earned",
}
OPERATION_REASONS = ("opening", "topup", "adjustment", "transfer", "expiry", "voucher",
                     "loyalty_redeemed", "referral", "reservation", "renewal")  # fmt: skip
for _code, _name in enumerate(OPERATION_REASONS, start=16):
    REASONS[_code] = _name
REASON_CODES = {name: code for code, name in REASONS.items()}
_OWN_PREFIXES = (b"log/", b"amt/", b"dlt/", b"jrn/", b"ids/", b"op/")


class _Log(msgspec.Struct, tag_field="event", forbid_unknown_fields=True):
    pass


class _AccountsCreated(_Log, tag="accounts"):
    accounts: list[Account]
    balances: list[list[Balance]]  # amounts 0: opening amounts are journaled


class _BalanceAdded(_Log, tag="balance"):
    account: str
    balance: Balance


class _ModeChanged(_Log, tag="mode"):
    account: str
    mode: Mode
    credit_limit: int
    at: datetime


_LOG = msgspec.msgpack.Decoder(_AccountsCreated | _BalanceAdded | _ModeChanged)
_ENC = msgspec.msgpack.Encoder()


class JournalChunk(msgspec.Struct, array_like=True, frozen=True):
    """Journal rows as packed little-endian int64 columns plus their refs (cdr_id or op id)."""

    balance: bytes
    delta: bytes
    after: bytes
    reason: bytes
    at_us: bytes
    refs: StrPack

    @classmethod
    def build(cls, balance: I64, delta: I64, after: I64, reason: I64, at_us: I64,
              refs: StrColumn) -> JournalChunk:  # fmt: skip
        def pack(a: I64) -> bytes:
            return np.asarray(a, dtype="<i8").tobytes()

        return cls(pack(balance), pack(delta), pack(after), pack(reason), pack(at_us),
                   StrPack.of(refs))  # fmt: skip

    def rows(self) -> Iterator[tuple[int, int, int, int, str, int]]:
        def unpack(b: bytes) -> list[int]:
            values: list[int] = np.frombuffer(b, dtype="<i8").tolist()
            return values

        return zip(unpack(self.balance), unpack(self.delta), unpack(self.after),
                   unpack(self.reason), self.refs.column().to_list(), unpack(self.at_us),
                   strict=True)  # fmt: skip


class JournalEntry(msgspec.Struct, frozen=True):
    account: str
    balance: str
    delta: int
    before: int
    after: int
    reason: str
    ref: str
    at_us: int


@dataclass(frozen=True, slots=True)
class BalanceView:
    id: str
    unit: str
    amount: int
    reserved: int
    weight: int
    valid_from_us: int
    valid_until_us: int


def _key(prefix: bytes, seq: int) -> bytes:
    return prefix + b"%016d" % seq


def _now_us() -> int:
    return time.time_ns() // 1000


class Ledger:
    """Accounts, balances and journal on top of a :class:`~balances.store.Store`.

    ``remember`` is how many applied ``cdr_id``s are kept to recognise a
    replay (two generations of ``remember`` each; older ids are forgotten).
    """

    def __init__(self, store: Store, units: UnitCatalog, *, remember: int = 5_000_000) -> None:
        self.store = store
        self.state = BalanceState(units)
        self._pending = WriteBatch()
        self._dirty: list[np.ndarray[Any, np.dtype[np.int64]]] = []  # rows changed since checkpoint
        self._delta_rows = 0  # rows in dlt/ values since the last snapshot
        self._snapshot_rows = 0
        self._seen = RememberedIds(remember)  # the cdr_ids applied, as ids/<seq> values
        self._seq = 0
        try:
            self._load()
        except (msgspec.DecodeError, ValueError) as exc:
            msg = (
                f"{store!r}: the state cannot be read ({exc}). Operator action: it was written "
                "by an incompatible version or is damaged; restore it from its backup or "
                "changelog, or start a new state folder"
            )
            raise StoreError(msg) from exc

    # -- loading ---------------------------------------------------------------------
    def _load(self) -> None:
        self._seq = stored_seq(self.store)
        for _, raw in self.store.scan(b"log/"):
            self._replay(_LOG.decode(raw))
        amounts = self.state.bal.arrays["amount"]
        for key, raw in self.store.scan(b"amt/"):
            chunk = int(key[4:])
            values = np.frombuffer(raw, dtype="<i8")
            amounts[chunk * CHUNK : chunk * CHUNK + len(values)] = values
            self._snapshot_rows = chunk * CHUNK + len(values)
        for _, raw in self.store.scan(b"dlt/"):
            pairs = np.frombuffer(raw, dtype="<i8").reshape(2, -1)
            amounts[pairs[0]] = pairs[1]
            self._delta_rows += pairs.shape[1]
        for key, raw in self.store.scan(b"ids/"):
            self._seen.load(key, raw)

    def _replay(self, event: _Log) -> None:
        state = self.state
        if isinstance(event, _AccountsCreated):
            state.add_accounts(event.accounts, event.balances)
        elif isinstance(event, _BalanceAdded):
            state.add_balance(state.row_of(event.account), event.balance)
        elif isinstance(event, _ModeChanged):
            state.set_mode(state.row_of(event.account), event.mode, event.credit_limit)

    def _log(self, event: _Log) -> None:
        self._seq += 1
        self._pending.put(_key(b"log/", self._seq), _ENC.encode(event))

    # -- usage -------------------------------------------------------------------------
    def debit(self, debitor: Debitor, columns: Columns, rated: RatedBatch) -> DebitResult:
        """Apply a rated batch once: records seen before (same ``cdr_id``) change nothing.

        A ``cdr_id`` repeated inside the batch is applied at its first occurrence only.
        """
        account = self.state.account_rows(columns.account)
        candidates = np.flatnonzero((rated.error == 0) & (account >= 0))
        repeat = np.zeros(len(columns), dtype=np.bool_)
        repeat[candidates] = ~self._seen.fresh(columns.cdr_id, candidates)
        skip = np.where(repeat, bk.FLAG_DUPLICATE, 0).astype(np.int64)
        result = debitor.debit(columns, rated, skip, account=account)
        applied = np.flatnonzero(result.flags & ~bk.FLAG_INSUFFICIENT_CREDIT == 0)
        if len(applied) == len(columns):
            ids = columns.cdr_id  # the usual case: no copy
        else:
            ids = columns.cdr_id.take(applied) if len(applied) else StrColumn.from_strings([])
        self._seq += 1
        key = _key(b"ids/", self._seq)
        self._seen.write(self._pending, key, ids)
        self._journal(result.journal, columns.cdr_id, columns.start_us)
        return result

    def _journal(self, journal: Journal, refs: StrColumn, at_us: np.ndarray[Any, Any]) -> None:
        if len(journal) == 0:
            return
        self._dirty.append(journal.balance)
        chunk = JournalChunk.build(
            journal.balance, journal.delta, journal.after, journal.reason,
            at_us[journal.record], refs.take(journal.record),
        )  # fmt: skip
        self._seq += 1
        self._pending.put(_key(b"jrn/", self._seq), _ENC.encode(chunk))

    # -- operations --------------------------------------------------------------------
    def done(self, op_id: str) -> Any | None:
        """The stored result of operation ``op_id``, if it was applied before."""
        raw = self.store.get(b"op/" + op_id.encode())
        if raw is None:
            for key, value in self._pending.operations():
                if key == b"op/" + op_id.encode() and value is not None:
                    raw = value
        return None if raw is None else msgspec.msgpack.decode(raw)

    def _record_op(self, op_id: str | None, result: Any) -> None:
        if op_id:
            self._pending.put(b"op/" + op_id.encode(), _ENC.encode(result))

    # -- records kept beside the balances (vouchers, referrals) ------------------------
    def record_op(self, op_id: str, result: Any) -> None:
        """Remember ``result`` (msgpack-encodable) as operation ``op_id``'s, for :meth:`done`."""
        self._record_op(op_id, result)

    def put(self, key: bytes, value: bytes) -> None:
        """Stage a write of a key outside the ledger's own prefixes for the next checkpoint."""
        if key.startswith(_OWN_PREFIXES) or key == b"meta":
            msg = f"key {key!r} belongs to the ledger; keep records under a prefix of your own"
            raise BalanceError(msg)
        self._pending.put(key, value)

    def delete(self, key: bytes) -> None:
        """Stage a delete of a key outside the ledger's own prefixes for the next checkpoint."""
        if key.startswith(_OWN_PREFIXES) or key == b"meta":
            msg = f"key {key!r} belongs to the ledger; keep records under a prefix of your own"
            raise BalanceError(msg)
        self._pending.delete(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values of ``keys`` as the next checkpoint leaves them: staged writes first."""
        staged = dict(self._pending.operations())
        stored = self.store.get_many([k for k in keys if k not in staged])
        found = iter(stored)
        return [staged[k] if k in staged else next(found) for k in keys]

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` as the next checkpoint leaves it (``None``: absent)."""
        return self.get_many([key])[0]

    def create_account(self, account: Account, balances: Sequence[Balance] = ()) -> int:
        """A new account with its main balance (and ``balances``, amounts journaled)."""
        return int(self.create_accounts([account], [balances])[0])

    def create_accounts(
        self, accounts: Sequence[Account], balances: Sequence[Sequence[Balance]]
    ) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Many new accounts at once (an import); all or nothing."""
        for own in balances:
            for b in own:
                if b.amount < 0:
                    msg = f"balance {b.id!r}: opening amount {b.amount} is negative"
                    raise BalanceError(msg)
        empty = [[msgspec.structs.replace(b, amount=0) for b in own] for own in balances]
        rows = self.state.add_accounts(accounts, empty)
        for lo in range(0, len(accounts), LOG_ACCOUNTS):  # keep each log value small
            hi = lo + LOG_ACCOUNTS
            self._log(_AccountsCreated(list(accounts[lo:hi]), empty[lo:hi]))
        opening = [
            (self.state.by_id[(int(row), b.id)], b.amount, f"open:{account.id}:{b.id}")
            for row, account, own in zip(rows.tolist(), accounts, balances, strict=True)
            for b in own
            if b.amount
        ]
        if opening:
            self._open(opening)
        return rows

    def _open(self, opening: list[tuple[int, int, str]]) -> None:
        """Journal opening amounts as one chunk."""
        amounts = self.state.bal.arrays["amount"]
        rows = np.array([o[0] for o in opening], dtype=np.int64)
        deltas = np.array([o[1] for o in opening], dtype=np.int64)
        amounts[rows] += deltas
        at = _now_us()
        chunk = JournalChunk.build(
            rows, deltas, amounts[rows], np.full(len(rows), REASON_CODES["opening"]),
            np.full(len(rows), at), StrColumn.from_strings([o[2] for o in opening]),
        )  # fmt: skip
        self._dirty.append(rows)
        self._seq += 1
        self._pending.put(_key(b"jrn/", self._seq), _ENC.encode(chunk))

    def add_balance(self, account_id: str, balance: Balance, *, op_id: str = "") -> int:
        account = self.state.row_of(account_id)
        if balance.amount < 0:
            msg = f"balance {balance.id!r}: opening amount {balance.amount} is negative"
            raise BalanceError(msg)
        row = self.state.add_balance(account, msgspec.structs.replace(balance, amount=0))
        self._log(_BalanceAdded(account_id, msgspec.structs.replace(balance, amount=0)))
        if balance.amount:
            self.change(row, balance.amount, "opening", op_id or f"open:{account_id}:{balance.id}")
        return row

    def change(
        self, row: int, delta: int, reason: str, ref: str, *, at_us: int = 0
    ) -> JournalEntry:
        """Add ``delta`` to balance ``row`` and journal it (the one way operations change money)."""
        amounts = self.state.bal.arrays["amount"]
        before = int(amounts[row])
        amounts[row] = before + delta
        at = at_us or _now_us()
        one = np.array
        chunk = JournalChunk.build(one([row]), one([delta]), one([before + delta]),
                                   one([REASON_CODES[reason]]), one([at]),
                                   StrColumn.from_strings([ref]))  # fmt: skip
        self._dirty.append(np.array([row], dtype=np.int64))
        self._seq += 1
        self._pending.put(_key(b"jrn/", self._seq), _ENC.encode(chunk))
        return self._entry(row, delta, before + delta, REASON_CODES[reason], ref, at)

    def set_mode(self, account_id: str, mode: Mode, credit_limit: int, *, at: datetime) -> None:
        self.state.set_mode(self.state.row_of(account_id), mode, credit_limit)
        self._log(_ModeChanged(account_id, mode, credit_limit, at))

    def topup(self, account_id: str, balance_id: str, amount: int, *, op_id: str) -> JournalEntry:
        """Credit ``amount`` (> 0) to a balance; the same ``op_id`` twice changes nothing."""
        if amount <= 0:
            msg = f"top-up amount {amount} must be positive"
            raise BalanceError(msg)
        row = self.state.balance_row(self.state.row_of(account_id), balance_id)
        key: list[str | int] = [account_id, balance_id, amount]
        return self._once(op_id, "topup", key, lambda: [self.change(row, amount, "topup", op_id)])[
            0
        ]

    def adjust(self, account_id: str, balance_id: str, delta: int, *, op_id: str) -> JournalEntry:
        """Correct a balance by ``delta`` (either sign), journaled as an adjustment."""
        row = self.state.balance_row(self.state.row_of(account_id), balance_id)
        key: list[str | int] = [account_id, balance_id, delta]
        apply = lambda: [self.change(row, delta, "adjustment", op_id)]  # noqa: E731
        return self._once(op_id, "adjustment", key, apply)[0]

    def renew(self, account_id: str, amount: int, *, op_id: str) -> JournalEntry | None:
        """Debit a recurring fee of ``amount`` (> 0) from the main balance, once per ``op_id``.

        Refused (``None``, nothing changes, nothing remembered: a later try after
        a top-up may pass) when the main balance less what is reserved on it,
        plus the credit limit of a postpaid or hybrid account, cannot cover it.
        """
        if amount <= 0:
            msg = f"renewal amount {amount} must be positive"
            raise BalanceError(msg)
        key: list[str | int] = [account_id, MAIN, -amount]
        done = self.replayed(op_id, "renewal", key)
        if done is not None:
            return done[0]
        account = self.state.row_of(account_id)
        row = self.state.balance_row(account, MAIN)
        arrays, acc = self.state.bal.arrays, self.state.acc.arrays
        prepaid = int(acc["mode"][account]) == MODE_CODES[Mode.PREPAID]
        limit = 0 if prepaid else int(acc["limit"][account])
        if int(arrays["amount"][row]) - int(arrays["reserved"][row]) + limit < amount:
            return None
        entries = [self.change(row, -amount, "renewal", op_id)]
        self.remember_op(op_id, "renewal", key, entries)
        return entries[0]

    def transfer(
        self,
        account_id: str,
        source: str,
        target: str,
        amount: int,
        *,
        rate: tuple[int, int] = (1, 1),
        op_id: str,
    ) -> JournalEntry:
        """Move ``amount`` from one balance of an account to another, converted at
        ``rate`` = (numerator, denominator) target units per source unit, rounded down.

        Returns the credit's journal entry; the debit is journaled beside it.
        """
        account = self.state.row_of(account_id)
        src = self.state.balance_row(account, source)
        dst = self.state.balance_row(account, target)
        num, den = rate
        if amount <= 0 or num <= 0 or den <= 0:
            msg = f"transfer: amount {amount} and rate {num}/{den} must be positive"
            raise BalanceError(msg)
        available = int(
            self.state.bal.arrays["amount"][src] - self.state.bal.arrays["reserved"][src]
        )
        if amount > available:
            msg = f"transfer: {source!r} holds {available} available, {amount} asked"
            raise BalanceError(msg)

        def apply() -> list[JournalEntry]:
            return [
                self.change(src, -amount, "transfer", op_id),
                self.change(dst, amount * num // den, "transfer", op_id),
            ]

        key: list[str | int] = [account_id, source, target, amount, num, den]
        return self._once(op_id, "transfer", key, apply)[1]

    def expire(self, now: datetime) -> list[JournalEntry]:
        """Zero every balance (main ones excepted) whose validity ended by ``now``."""
        arrays, size = self.state.bal.arrays, self.state.bal.size
        now_us = int(now.timestamp()) * 1_000_000 + now.microsecond
        ended = (arrays["until"][:size] <= now_us) & (arrays["amount"][:size] != 0)
        entries = []
        for row in np.flatnonzero(ended).tolist():
            if self.state.balance_ids[row] == MAIN:
                continue
            ref = f"expiry:{self.state.balance_ids[row]}:{now_us}"
            entries.append(self.change(row, -int(arrays["amount"][row]), "expiry", ref))
        return entries

    def replayed(self, op_id: str, kind: str, key: list[str | int]) -> list[JournalEntry] | None:
        """The entries of operation ``op_id`` if it was applied before, ``None`` if not.

        ``kind`` and ``key`` (its arguments) must match the first call's: an ``op_id``
        reused for another operation raises :class:`OperationConflictError`.
        """
        if not op_id:
            msg = f"a {kind} operation needs an op_id (it makes retries safe)"
            raise BalanceError(msg)
        before = self.done(op_id)
        if before is None:
            return None
        if not isinstance(before, dict) or before.get("op") != kind or before.get("key") != key:
            was = "another ledger operation"
            if isinstance(before, dict) and "op" in before:
                was = f"{before['op']} {before.get('key')}"
            msg = (
                f"op_id {op_id!r} was used for {was}, not {kind} {key}; give every operation"
                " its own op_id and reuse one only to retry the same operation"
            )
            raise OperationConflictError(msg)
        return msgspec.convert(before["entries"], list[JournalEntry])

    def remember_op(
        self, op_id: str, kind: str, key: list[str | int], entries: list[JournalEntry]
    ) -> None:
        """Record operation ``op_id``'s result for :meth:`replayed`."""
        result = {"op": kind, "key": key, "entries": [msgspec.to_builtins(e) for e in entries]}
        self._record_op(op_id, result)

    def _once(
        self, op_id: str, kind: str, key: list[str | int], apply: Callable[[], list[JournalEntry]]
    ) -> list[JournalEntry]:
        first = self.replayed(op_id, kind, key)
        if first is not None:
            return first
        entries = apply()
        self.remember_op(op_id, kind, key, entries)
        return entries

    def _entry(
        self, row: int, delta: int, after: int, reason: int, ref: str, at: int
    ) -> JournalEntry:
        account = int(self.state.bal.arrays["account"][row])
        return JournalEntry(
            account=self.state.accounts[account].id,
            balance=self.state.balance_ids[row],
            delta=delta,
            before=after - delta,
            after=after,
            reason=REASONS[reason],
            ref=ref,
            at_us=at,
        )

    # -- reading -----------------------------------------------------------------------
    def balances(self, account_id: str) -> list[BalanceView]:
        """The account's balances in paying order."""
        state = self.state
        arrays = state.bal.arrays
        views = []
        for row in state.chain(state.row_of(account_id)):
            views.append(
                BalanceView(
                    id=state.balance_ids[row],
                    unit=state.units.units[int(arrays["unit"][row])].name,
                    amount=int(arrays["amount"][row]),
                    reserved=int(arrays["reserved"][row]),
                    weight=int(arrays["weight"][row]),
                    valid_from_us=int(arrays["from"][row]),
                    valid_until_us=int(arrays["until"][row]),
                )
            )
        return views

    def journal(self, account_id: str | None = None) -> Iterator[JournalEntry]:
        """Every journal entry (checkpointed first, then pending), optionally of one account."""
        wanted = None if account_id is None else self.state.row_of(account_id)
        chunks = [raw for _, raw in self.store.scan(b"jrn/")]
        chunks += [v for k, v in self._pending.operations() if k.startswith(b"jrn/") and v]
        accounts = self.state.bal.arrays["account"]
        for raw in chunks:
            chunk = msgspec.msgpack.decode(raw, type=JournalChunk)
            for row, delta, after, reason, ref, at in chunk.rows():
                if wanted is None or int(accounts[row]) == wanted:
                    yield self._entry(row, delta, after, reason, ref, at)

    # -- durability --------------------------------------------------------------------
    def checkpoint(self, extra: dict[bytes, bytes] | None = None) -> None:
        """Write everything since the last checkpoint in one atomic, synced store write."""
        self.commit(self.stage(extra))

    @property
    def seq(self) -> int:
        """The sequence number of the last staged checkpoint (0 for a new ledger)."""
        return self._seq

    def stage(self, extra: dict[bytes, bytes] | None = None) -> WriteBatch:
        """Everything since the last checkpoint as one write batch, not yet written.

        A caller that must ship the batch elsewhere first (a changelog topic)
        stages, ships, then :meth:`commit`. Each staged batch that writes
        anything advances :attr:`seq`, so batches applied elsewhere can be chained.
        """
        batch = self._pending
        self._persist_amounts(batch)
        for key, value in (extra or {}).items():
            batch.put(key, value)
        self._seen.forget(batch)  # id values older than both remembered generations
        if len(batch):  # a checkpoint that writes something gets a sequence number of its own
            self._seq += 1
        batch.put(b"meta", _ENC.encode({"seq": self._seq, "at": datetime.now(UTC).isoformat()}))
        self._pending = WriteBatch()
        self._dirty.clear()
        return batch

    def commit(self, batch: WriteBatch) -> None:
        """Write a batch from :meth:`stage` to the store (atomic, synced)."""
        self.store.write(batch)

    def _persist_amounts(self, batch: WriteBatch) -> None:
        """Changed rows as one delta value, or a new snapshot when deltas outgrow it."""
        amounts, size = self.state.bal.arrays["amount"], self.state.bal.size
        if not self._dirty:
            return  # new rows start at 0, as they load when no value names them
        rows = np.unique(np.concatenate(self._dirty))
        if self._delta_rows + len(rows) <= max(size, CHUNK):
            self._seq += 1
            pairs = np.stack([rows, amounts[rows]]).astype("<i8")
            batch.put(_key(b"dlt/", self._seq), pairs.tobytes())
            self._delta_rows += len(rows)
            return
        for chunk in range(0, (size + CHUNK - 1) // CHUNK):  # a full snapshot
            values = amounts[chunk * CHUNK : min((chunk + 1) * CHUNK, size)]
            batch.put(b"amt/%08d" % chunk, values.astype("<i8").tobytes())
        for key, _ in self.store.scan(b"dlt/"):
            batch.delete(key)
        for key, value in list(batch.operations()):
            if key.startswith(b"dlt/") and value is not None:
                batch.delete(key)
        self._snapshot_rows, self._delta_rows = size, 0

    def close(self) -> None:
        self.checkpoint()
        self.store.close()


def stored_seq(store: Store) -> int:
    """The sequence number of the last checkpoint written to ``store`` (0: none)."""
    meta = store.get(b"meta")
    return int(msgspec.msgpack.decode(meta)["seq"]) if meta else 0


def open_ledger(path: Path, units_path: Path | None = None) -> Ledger:
    """The ledger in RocksDB folder ``path`` (created if missing) with a unit catalog."""
    units = load_units(units_path) if units_path else load_units()
    return Ledger(RocksStore(path), units)


__all__ = ["MAIN", "BalanceView", "JournalEntry", "Ledger", "open_ledger"]
