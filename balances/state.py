"""Balances of all accounts as columns in memory: what the debit kernel reads and writes.

Accounts are numbered by a :class:`~engine.keytable.KeyTable` on their ids;
balances are rows of parallel arrays, each account's balances chained in
paying order (``acc_head`` → ``bal_next``: weight descending, then the one
expiring first, then the older). Creating accounts and balances is the
Python side (low rate); usage debits are one kernel call per batch.
"""

from __future__ import annotations

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
        row = self.size
        if row == len(next(iter(self.arrays.values()))):
            for name, array in self.arrays.items():
                grown = np.full(2 * len(array), self._fill.get(name, 0), np.int64)
                grown[: len(array)] = array
                self.arrays[name] = grown
        for name, value in values.items():
            self.arrays[name][row] = value
        self.size += 1
        return row


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
        ids = StrColumn.from_strings([account.id])
        if int(self.index.lookup(ids)[0]) >= 0:
            msg = f"account {account.id!r} exists already"
            raise BalanceError(msg)
        currency = self.units.money(account.currency)
        row = int(self.index.lookup(ids, insert=True)[0])
        self.accounts.append(account)
        self.acc.append(mode=MODE_CODES[account.mode], limit=account.credit_limit,
                        currency=currency)  # fmt: skip
        main = self.add_balance(row, Balance(id=MAIN, unit=account.currency, weight=MAIN_WEIGHT))
        self.acc.arrays["main"][row] = main
        return row

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
