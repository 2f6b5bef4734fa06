"""The slow, obviously-correct twin of :func:`balances.kernels.debit_kernel`.

:func:`debit_reference` debits one record at a time from plain Python
objects: accounts holding :class:`RefBalance` values with datetimes and
:class:`~balances.model.Filter` s, and each record's
:class:`~tariffs.rated.Rating` (its spans), never the kernel's arrays. Money
is priced in ``Decimal`` from the spans' prices and the tariff's destination
rates. It follows the rules of :mod:`balances.debit` in the same steps:

1. item balances whose unit measures the record's usage (voice → seconds,
   data → bytes, SMS and events → count), valid at the record's start
   (``valid_from <= start < valid_until``) and admitted by their filter, cover
   the record's billed usage from its start, in paying order (weight
   descending, then the one expiring first, then the older; the main balance
   is ordinary here: the caller gives it the weight
   :data:`balances.state.MAIN_WEIGHT` and the creation order it has);
2. what they leave is priced: the connect fee (none when everything is
   covered) plus, per span, its uncovered billed units at its price, each
   rounded to whole nanos by the span's destination rate; the sum rounded and
   capped by the destination rate in force at the start; then converted to
   the currency's precision, rounding up;
3. balances in the tariff's currency pay in paying order from what is not
   reserved; postpaid and hybrid accounts then let the main balance go down
   to minus the credit limit; the rest is flagged insufficient credit;
4. ``earn[category]`` points per whole currency unit paid, rounded down, go
   to the account's first points balance.

Balances are changed in place: pass copies.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from balances.kernels import (
    FLAG_INSUFFICIENT_CREDIT,
    FLAG_NOT_RATED,
    FLAG_UNKNOWN_ACCOUNT,
    LOYALTY_EARNED,
    USAGE_DEBT,
    USAGE_ITEMS,
    USAGE_MONEY,
)
from balances.model import MAIN, Filter, Measure, Mode
from balances.units import UnitCatalog
from tariffs.model import ANY, MaxCostStrategy, Rounding, Tariff
from tariffs.money import NANO_DECIMALS, round_nanos
from tariffs.rated import Rating

KIND_MEASURE = {
    "voice": Measure.SECONDS,
    "data": Measure.BYTES,
    "sms": Measure.COUNT,
    "event": Measure.COUNT,
}
_DECIMAL_ROUNDING = {
    Rounding.UP: decimal.ROUND_UP,
    Rounding.DOWN: decimal.ROUND_DOWN,
    Rounding.HALF_UP: decimal.ROUND_HALF_UP,
    Rounding.HALF_EVEN: decimal.ROUND_HALF_EVEN,
}


@dataclass
class RefBalance:
    id: str
    unit: str
    amount: int
    reserved: int = 0
    weight: int = 0
    valid_from: datetime | None = None  # None: valid from the beginning
    valid_until: datetime | None = None  # None: never expires
    filter: Filter = field(default_factory=Filter)
    created: int = 0  # creation order within the account (older pays first among equals)


@dataclass
class RefAccount:
    mode: Mode
    credit_limit: int
    balances: list[RefBalance] = field(default_factory=list)  # the main balance among them


@dataclass(frozen=True)
class RefRecord:
    account: str
    kind: str  # voice, sms, data, event
    category: str
    start: datetime
    rating: Rating | None  # None: the record could not be rated
    skip: int = 0  # flags the caller set (e.g. duplicate): the record is left alone


class Outcome(NamedTuple):
    covered: int
    due: int
    paid: int
    flags: int


class JournalRow(NamedTuple):
    record: int
    balance: tuple[str, str]  # (account id, balance id)
    delta: int
    after: int
    reason: int


def debit_reference(
    accounts: Mapping[str, RefAccount],
    records: Sequence[RefRecord],
    *,
    tariff: Tariff,
    units: UnitCatalog,
    earn: Mapping[str, int] | None = None,
) -> tuple[list[Outcome], list[JournalRow]]:
    """Debit ``records`` in order; the per-record outcomes and the journal."""
    outcomes: list[Outcome] = []
    journal: list[JournalRow] = []
    decimals = units[tariff.currency].decimals
    for i, record in enumerate(records):
        flags = record.skip
        if record.rating is None:
            flags |= FLAG_NOT_RATED
        if record.account not in accounts:
            flags |= FLAG_UNKNOWN_ACCOUNT
        if flags or record.rating is None:
            outcomes.append(Outcome(0, 0, 0, flags))
            continue
        account, rating = accounts[record.account], record.rating

        def log(
            balance: RefBalance, delta: int, reason: int, i: int = i, who: str = record.account
        ) -> None:
            balance.amount += delta
            journal.append(JournalRow(i, (who, balance.id), delta, balance.amount, reason))

        order = sorted(account.balances, key=_paying_order)
        usable = [b for b in order if _admits(b, record)]
        # 1. bundles
        billed = sum(span.billed for span in rating.spans)
        covered = 0
        for b in usable:
            if units[b.unit].measure is KIND_MEASURE[record.kind]:
                take = min(b.amount - b.reserved, billed - covered)
                if take > 0:
                    covered += take
                    log(b, -take, USAGE_ITEMS)
        # 2. money due
        due = _to_unit(_due_nanos(rating, covered, tariff), decimals)
        # 3. money, then debt
        left = due
        for b in usable:
            if b.unit == tariff.currency:
                take = min(b.amount - b.reserved, left)
                if take > 0:
                    left -= take
                    log(b, -take, USAGE_MONEY)
        main = next(b for b in account.balances if b.id == MAIN)
        if left > 0 and account.mode is not Mode.PREPAID and main.unit == tariff.currency:
            take = min(max(main.amount - main.reserved + account.credit_limit, 0), left)
            if take > 0:
                left -= take
                log(main, -take, USAGE_DEBT)
        paid = due - left
        # 4. loyalty points
        points = [b for b in account.balances if units[b.unit].measure is Measure.POINTS]
        earned = paid * (earn or {}).get(record.category, 0) // 10**decimals
        if points and earned > 0:
            log(min(points, key=lambda b: b.created), earned, LOYALTY_EARNED)
        outcomes.append(Outcome(covered, due, paid, FLAG_INSUFFICIENT_CREDIT if left else 0))
    return outcomes, journal


def _paying_order(b: RefBalance) -> tuple[int, bool, datetime | None, int]:
    # a balance that never expires (True) pays after every one that does
    return (-b.weight, b.valid_until is None, b.valid_until, b.created)


def _admits(b: RefBalance, record: RefRecord) -> bool:
    """Valid at the record's start and admitted by the balance's filter."""
    if b.valid_from is not None and record.start < b.valid_from:
        return False
    if b.valid_until is not None and record.start >= b.valid_until:
        return False
    f = b.filter
    if f.categories and record.category not in f.categories:
        return False
    if f.services and record.kind not in f.services:
        return False
    zone = record.rating.destination if record.rating is not None else ANY
    return not f.destinations or (zone != ANY and zone in f.destinations)


def _due_nanos(rating: Rating, covered: int, tariff: Tariff) -> int:
    """Nanos due for the billed usage after the first ``covered`` units."""
    if covered >= sum(span.billed for span in rating.spans):
        return 0
    total = rating.connect_fee
    before = 0  # billed units of the spans before this one
    with decimal.localcontext(prec=60):
        for span in rating.spans:
            rest = span.billed - min(span.billed, max(0, covered - before))
            before += span.billed
            exact = Decimal(rest) * Decimal(span.price) / Decimal(span.rate_unit)
            rounding = tariff.destination_rates[span.destination_rate].rounding
            total += int(exact.to_integral_value(rounding=_DECIMAL_ROUNDING[rounding]))
    first = tariff.destination_rates[rating.spans[0].destination_rate]
    due = round_nanos(total, first.decimals, first.rounding)
    if first.max_cost_strategy is MaxCostStrategy.CAP:
        due = min(due, first.max_cost)
    return due


def _to_unit(nanos: int, decimals: int) -> int:
    """Nanos in a currency's precision, rounded up: what is due is never short."""
    exact = Decimal(nanos).scaleb(decimals - NANO_DECIMALS)
    return int(exact.to_integral_value(rounding=decimal.ROUND_CEILING))
