"""Balances of all accounts as columns in memory: what the debit kernel reads and writes.

Accounts are numbered by a :class:`~engine.keytable.KeyTable` on their ids;
balances are rows of parallel arrays, each account's balances chained in
paying order (``acc_head`` → ``bal_next``: weight descending, then the one
expiring first, then the older). Creating accounts and balances is the
Python side (low rate); usage debits are one kernel call per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt

from balances.exceptions import BalanceError
from balances.model import MAIN, Account, Balance, Filter, Mode
from balances.units import UnitCatalog
from engine.columns import I64, StrColumn
from engine.keytable import KeyTable

NEVER = np.iinfo(np.int64).max  # valid_until of a balance that does not expire
ALWAYS = np.iinfo(np.int64).min  # valid_from of a balance valid from the start
MAIN_WEIGHT = -1_000_000  # the main balance pays after every balance of a higher weight
MODE_CODES = {Mode.PREPAID: 0, Mode.POSTPAID: 1, Mode.HYBRID: 2}


def micros(at: datetime | None, default: int) -> int:
    """A timezone-aware instant as UTC epoch microseconds (``default`` for None)."""
    if at is None:
        return default
    if at.tzinfo is None:
        msg = f"{at.isoformat()}: give a time zone offset"
        raise BalanceError(msg)
    return int(at.timestamp()) * 1_000_000 + at.microsecond


class _Columns:
    """Parallel growable int64 arrays addressed by name."""

    def __init__(self, names: tuple[str, ...], fill: dict[str, int]) -> None:
        self._fill = fill
        self.size = 0
        self.arrays: dict[str, I64] = {n: np.full(16, fill.get(n, 0), np.int64) for n in names}

    def append(self, **values: int) -> int:
        return int(self.extend(1, **{k: np.array([v]) for k, v in values.items()})[0])

    def extend(self, n: int, **values: I64) -> I64:
        """Append ``n`` rows (fields not given take their fill value); returns their numbers."""
        start = self.size
        capacity = len(next(iter(self.arrays.values())))
        if start + n > capacity:
            size = max(2 * capacity, start + n)
            for name, array in self.arrays.items():
                grown = np.full(size, self._fill.get(name, 0), np.int64)
                grown[:start] = array[:start]
                self.arrays[name] = grown
        for name, value in values.items():
            self.arrays[name][start : start + n] = value
        self.size += n
        return np.arange(start, start + n, dtype=np.int64)


ACCOUNT_FIELDS = ("mode", "limit", "head", "main", "points", "count", "currency")
BALANCE_FIELDS = ("account", "unit", "weight", "from", "until", "filter", "amount", "reserved",
                  "next", "created")  # fmt: skip


class BalanceState:
    """Every account's balances, in columns."""

    def __init__(self, units: UnitCatalog) -> None:
        self.units = units
        self.accounts: list[Account] = []
        self.index = KeyTable()
        self.acc = _Columns(ACCOUNT_FIELDS, {"head": -1, "main": -1, "points": -1})
        self.bal = _Columns(BALANCE_FIELDS, {"next": -1, "filter": -1})
        self.balance_ids: list[str] = []
        self.by_id: dict[tuple[int, str], int] = {}
        self.filters: list[Filter] = []
        self._filter_index: dict[Filter, int] = {}

    # -- lookups ---------------------------------------------------------------------
    def account_rows(self, ids: StrColumn) -> I64:
        """The row of each account id (-1 for an unknown account)."""
        return self.index.lookup(ids)

    def row_of(self, account_id: str) -> int:
        row = int(self.index.lookup(StrColumn.from_strings([account_id]))[0])
        if row < 0:
            msg = f"unknown account {account_id!r}"
            raise BalanceError(msg)
        return row

    def balance_row(self, account: int, balance_id: str) -> int:
        found = self.by_id.get((account, balance_id))
        if found is None:
            msg = f"account {self.accounts[account].id!r} has no balance {balance_id!r}"
            raise BalanceError(msg)
        return found

    def chain(self, account: int) -> list[int]:
        """The account's balance rows in paying order."""
        rows, b = [], int(self.acc.arrays["head"][account])
        nxt = self.bal.arrays["next"]
        while b >= 0:
            rows.append(b)
            b = int(nxt[b])
        return rows

    # -- changes (Python side: accounts and balances are created at low rate) ----------
    def add_account(self, account: Account) -> int:
        return int(self.add_accounts([account], [()])[0])

    def add_accounts(
        self, accounts: Sequence[Account], balances: Sequence[Sequence[Balance]]
    ) -> I64:
        """New accounts, each with its main balance and ``balances`` (amounts 0: the caller
        journals opening amounts). All or nothing: a bad account or balance changes nothing.
        """
        ids = [a.id for a in accounts]
        column = StrColumn.from_strings(ids)
        known = self.index.lookup(column)
        if len(set(ids)) != len(ids) or (known >= 0).any():
            twice = next(i for i in ids if ids.count(i) > 1) if len(set(ids)) != len(ids) else None
            name = twice or ids[int(np.argmax(known >= 0))]
            msg = f"account {name!r} exists already"
            raise BalanceError(msg)
        currencies = [self.units.money(a.currency) for a in accounts]
        specs = [
            [Balance(id=MAIN, unit=a.currency, weight=MAIN_WEIGHT), *own]
            for a, own in zip(accounts, balances, strict=True)
        ]
        rows = self._balance_rows(specs)  # validates before anything changes
        first = self.index.lookup(column, insert=True)
        self.accounts.extend(accounts)
        self.acc.extend(
            len(accounts),
            mode=np.array([MODE_CODES[a.mode] for a in accounts], dtype=np.int64),
            limit=np.array([a.credit_limit for a in accounts], dtype=np.int64),
            currency=np.array(currencies, dtype=np.int64),
            count=np.array([len(s) for s in specs], dtype=np.int64),
        )
        account_of = np.repeat(first, [len(s) for s in specs])
        new = self.bal.extend(len(account_of), account=account_of, **rows)
        for row, account, spec in zip(new.tolist(), account_of.tolist(),
                                      (b for s in specs for b in s), strict=True):  # fmt: skip
            self.balance_ids.append(spec.id)
            self.by_id[(account, spec.id)] = row
        self._link_all(new)
        return first

    def _balance_rows(self, specs: list[list[Balance]]) -> dict[str, I64]:
        columns: dict[str, list[int]] = {k: [] for k in ("unit", "weight", "from", "until",
                                                         "filter", "created")}  # fmt: skip
        created = self.bal.size
        for own in specs:
            if len({b.id for b in own}) != len(own):
                msg = f"balance ids repeat in {[b.id for b in own]}"
                raise BalanceError(msg)
            for balance in own:
                start = micros(balance.valid_from, ALWAYS)
                until = micros(balance.valid_until, NEVER)
                if until <= start:
                    msg = f"balance {balance.id!r}: valid_until is not after valid_from"
                    raise BalanceError(msg)
                columns["unit"].append(self.units.require(balance.unit))
                columns["weight"].append(balance.weight)
                columns["from"].append(start)
                columns["until"].append(until)
                columns["filter"].append(self._filter(balance.filter))
                columns["created"].append(created)
                created += 1
        return {k: np.array(v, dtype=np.int64) for k, v in columns.items()}

    def _link_all(self, rows: I64) -> None:
        """Chain new balance rows of new accounts in paying order; set main and points."""
        bal, acc = self.bal.arrays, self.acc.arrays
        account = bal["account"][rows]
        order = rows[np.lexsort((bal["created"][rows], bal["until"][rows], -bal["weight"][rows],
                                 account))]  # fmt: skip
        same = bal["account"][order[1:]] == bal["account"][order[:-1]]
        bal["next"][order[:-1]] = np.where(same, order[1:], -1)
        bal["next"][order[-1:]] = -1
        starts = np.concatenate([[True], ~same])
        acc["head"][bal["account"][order[starts]]] = order[starts]
        names = self.balance_ids
        points = [u for u, unit in enumerate(self.units.units) if unit.measure.value == "points"]
        for row in rows.tolist():  # main, and the first created points balance, of each account
            a = int(bal["account"][row])
            if names[row] == MAIN and int(bal["unit"][row]) == int(acc["currency"][a]):
                acc["main"][a] = row
            if int(bal["unit"][row]) in points and acc["points"][a] < 0:
                acc["points"][a] = row

    def add_balance(self, account: int, balance: Balance) -> int:
        """A new balance row (amount 0: the caller journals the opening amount)."""
        if (account, balance.id) in self.by_id:
            msg = f"account {self.accounts[account].id!r} has a balance {balance.id!r} already"
            raise BalanceError(msg)
        unit = self.units.require(balance.unit)
        start, until = micros(balance.valid_from, ALWAYS), micros(balance.valid_until, NEVER)
        if until <= start:
            msg = f"balance {balance.id!r}: valid_until is not after valid_from"
            raise BalanceError(msg)
        row = self.bal.append(
            account=account, unit=unit, weight=balance.weight, until=until,
            filter=self._filter(balance.filter), created=self.bal.size,
            **{"from": start},
        )  # fmt: skip
        self.balance_ids.append(balance.id)
        self.by_id[(account, balance.id)] = row
        self._link(account, row)
        acc = self.acc.arrays
        acc["count"][account] += 1
        if self.units.units[unit].measure.value == "points" and acc["points"][account] < 0:
            acc["points"][account] = row
        return row

    def set_mode(self, account: int, mode: Mode, credit_limit: int) -> None:
        if credit_limit < 0:
            msg = f"credit limit {credit_limit} is negative"
            raise BalanceError(msg)
        self.acc.arrays["mode"][account] = MODE_CODES[mode]
        self.acc.arrays["limit"][account] = credit_limit

    def _filter(self, f: Filter) -> int:
        if f == Filter():
            return -1
        found = self._filter_index.get(f)
        if found is None:
            found = self._filter_index[f] = len(self.filters)
            self.filters.append(f)
        return found

    def _order_key(self, b: int) -> tuple[int, int, int]:
        arrays = self.bal.arrays
        return (-int(arrays["weight"][b]), int(arrays["until"][b]), int(arrays["created"][b]))

    def _link(self, account: int, row: int) -> None:
        nxt = self.bal.arrays["next"]
        head = self.acc.arrays["head"]
        prev, b = -1, int(head[account])
        while b >= 0 and self._order_key(b) <= self._order_key(row):
            prev, b = b, int(nxt[b])
        nxt[row] = b
        if prev < 0:
            head[account] = row
        else:
            nxt[prev] = row

    def amounts(self) -> npt.NDArray[np.int64]:
        return self.bal.arrays["amount"][: self.bal.size]
