"""Debit rated records from balances: the wrapper around :func:`balances.kernels.debit_kernel`.

The rules, per record (the kernel and its twin ``balances.reference`` follow them):

- Records that were not rated, whose account is unknown, or that were seen
  before (same ``cdr_id``) change nothing and are flagged.
- Usage bundles pay first: item balances whose measure is the record's
  (voice → seconds, data → bytes, SMS and events → count), valid at the
  record's start and whose filter admits it, in paying order, cover the
  record's *billed* usage from its start.
- What they do not cover is priced from the rating's spans: the connect fee
  (waived when bundles cover everything) plus, per span, the uncovered
  increments at the span's price, each rounded to nanos, the sum rounded and
  capped as the rating does. Without bundles this is exactly the rated cost.
- Money balances in the tariff's currency pay it in order; postpaid and
  hybrid accounts then take the rest as debt on the main balance, down to
  minus the credit limit. A prepaid account never goes below zero: what is
  left unpaid is flagged ``insufficient_credit``.
- Loyalty points are earned on the money paid, by category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from balances import kernels as bk
from balances.exceptions import BalanceError
from balances.model import Measure
from balances.state import BalanceState
from engine.columns import I64, KIND_NAMES, SMALL, Columns, StrColumn
from engine.keytable import KeyTable
from tariffs.compile import (
    BINDING_DESTINATION,
    DRATE_DECIMALS,
    DRATE_MAX_COST,
    DRATE_ROUNDING,
    DRATE_STRATEGY,
    STEP_PRICE,
    STEP_UNIT,
)
from tariffs.rating import RatedBatch, Rater

MEASURE_CODES = {m: i for i, m in enumerate(Measure)}
# the measure a record's usage is in, by record kind
KIND_MEASURE = np.array([bk.SECONDS, bk.COUNT, bk.BYTES, bk.COUNT], dtype=np.int64)
MAX_CATEGORIES = 63


@dataclass(frozen=True, slots=True)
class Journal:
    """Journal rows of one batch: ``record`` indexes the batch, ``balance`` the state."""

    record: I64
    balance: I64
    delta: I64
    after: I64
    reason: I64

    def __len__(self) -> int:
        return len(self.record)


@dataclass(frozen=True, slots=True)
class DebitResult:
    covered: I64  # item units consumed per record
    due: I64  # money due per record, in the currency's amount units
    paid: I64  # money paid per record (balances and debt)
    flags: I64  # balances.kernels FLAG_*
    journal: Journal


class Debitor:
    """Debits batches rated by ``rater`` from ``state``; compiles filters against the tariff.

    ``earn`` gives loyalty points per whole currency unit paid, by category.
    """

    def __init__(
        self, state: BalanceState, rater: Rater, earn: dict[str, int] | None = None
    ) -> None:
        self.state = state
        self.rater = rater
        self.earn = dict(earn or {})
        self.categories = KeyTable()
        self._codes: dict[str, int] = {}  # category_codes' cache, for the table's size below
        self._codes_for = 0
        tariff = rater.tariff
        self.currency = state.units.money(tariff.currency)
        self.currency_decimals = state.units.units[self.currency].decimals
        self._zones = {name: i for i, name in enumerate(rater.compiled.destination_names)}
        self._compiled_filters = -1
        self.refresh()

    def _category_code(self, name: str) -> int:
        code = int(self.categories.lookup(StrColumn.from_strings([name]), insert=True)[0])
        if code >= MAX_CATEGORIES:
            msg = f"more than {MAX_CATEGORIES} categories named in balance filters and earn rules"
            raise BalanceError(msg)
        return code

    def category_codes(self, categories: StrColumn) -> I64:
        """Each record's category code in the filter tables (-1: named by no filter).

        An API request's few categories are looked up in a dict kept while the
        table does not grow (a table lookup costs ~3 µs of fixed work a call).
        """
        if len(categories) > SMALL:
            return self.categories.lookup(categories)
        if self._codes_for != len(self.categories):
            self._codes, self._codes_for = {}, len(self.categories)
        names = categories.to_list()
        if any(name not in self._codes for name in names):
            found = self.categories.lookup(categories).tolist()
            self._codes.update(zip(names, found, strict=True))
        return np.array([self._codes[name] for name in names], dtype=np.int64)

    def refresh(self) -> None:
        """(Re)build the filter and earn tables when filters were added."""
        filters = self.state.filters
        if len(filters) == self._compiled_filters:
            return
        n_zones = len(self._zones)
        self.f_cat = np.zeros(max(len(filters), 1), dtype=np.int64)
        self.f_kind = np.zeros(max(len(filters), 1), dtype=np.int64)
        self.f_dest = np.zeros((max(len(filters), 1), n_zones + 1), dtype=np.uint8)
        for f, spec in enumerate(filters):
            for name in spec.categories:
                self.f_cat[f] |= 1 << self._category_code(name)
            for service in spec.services:
                if service not in KIND_NAMES:
                    msg = f"filter service {service!r}: expected one of {', '.join(KIND_NAMES)}"
                    raise BalanceError(msg)
                self.f_kind[f] |= 1 << KIND_NAMES.index(service)
            if spec.destinations:
                self.f_dest[f, 0] = 1
            for zone in spec.destinations:
                if zone not in self._zones:
                    msg = f"filter destination {zone!r} is not a destination of the tariff"
                    raise BalanceError(msg)
                self.f_dest[f, self._zones[zone] + 1] = 1
        points = np.zeros(MAX_CATEGORIES + 1, dtype=np.int64)
        for name, per_unit in self.earn.items():
            points[self._category_code(name)] = per_unit
        self.points_per_unit = points
        self._compiled_filters = len(filters)

    def debit(
        self,
        columns: Columns,
        rated: RatedBatch,
        skip: npt.NDArray[np.int64] | None = None,
        *,
        account: I64 | None = None,
    ) -> DebitResult:
        """Apply every record of the batch; ``skip`` flags records to leave alone.

        ``account`` is each record's account row if the caller looked it up already.
        """
        self.refresh()
        state, c = self.state, self.rater.compiled
        n = len(columns)
        if account is None:
            account = state.account_rows(columns.account)
        flags = np.zeros(n, dtype=np.int64) if skip is None else skip.astype(np.int64)
        flags[rated.error != 0] |= bk.FLAG_NOT_RATED
        flags[account < 0] |= bk.FLAG_UNKNOWN_ACCOUNT
        first = np.where(rated.error == 0, rated.first_binding, 0)
        by_binding = self.rater.binding_drate
        d = by_binding[first]
        category = self.category_codes(columns.category)
        kind = columns.kind.astype(np.int64)
        acc, bal = state.acc.arrays, state.bal.arrays
        rows = int((acc["count"][np.maximum(account, 0)] + 2).sum())
        j_record, j_balance, j_delta, j_after, j_reason = (
            np.empty(rows, np.int64) for _ in range(5)
        )
        covered, due, paid = (np.empty(n, dtype=np.int64) for _ in range(3))
        written = bk.debit_kernel(
            np.maximum(account, 0), flags, columns.start_us, kind, KIND_MEASURE[kind], category,
            c.bindings[first, BINDING_DESTINATION],
            rated.span_start, rated.sp_offset, rated.sp_billed,
            c.steps[rated.sp_step, STEP_PRICE], c.steps[rated.sp_step, STEP_UNIT],
            by_binding[rated.sp_binding, DRATE_ROUNDING],
            rated.connect_fee, d[:, DRATE_DECIMALS], d[:, DRATE_ROUNDING], d[:, DRATE_MAX_COST],
            d[:, DRATE_STRATEGY] == 1,
            self.currency, self.currency_decimals, self.points_per_unit,
            acc["mode"], acc["limit"], acc["head"], acc["main"], acc["points"], acc["count"],
            bal["unit"], bal["from"], bal["until"], bal["filter"], bal["amount"], bal["reserved"],
            bal["next"], self._unit_measures(), self.f_cat, self.f_kind, self.f_dest,
            covered, due, paid, flags, j_record, j_balance, j_delta, j_after, j_reason,
        )  # fmt: skip
        if written < 0:  # cannot happen: the journal is sized for the worst case
            msg = f"debit journal undersized at record {-1 - written}"
            raise BalanceError(msg)
        journal = Journal(
            j_record[:written], j_balance[:written], j_delta[:written], j_after[:written],
            j_reason[:written],
        )  # fmt: skip
        return DebitResult(covered, due, paid, flags, journal)

    def _unit_measures(self) -> I64:
        return np.array([MEASURE_CODES[u.measure] for u in self.state.units.units], dtype=np.int64)
