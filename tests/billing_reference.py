"""The slow, obviously-correct twin of billing's maths (catalog, subscriptions, proration, charges).

It shares no code with ``billing/``: it reads the catalog TOML itself, keeps
money as ``Decimal`` in currency units, and answers every question about a
subscription by asking, day by day, "what was it on this day?" — replaying
the events up to that day. Days are counted one at a time. It restates the
rules of :mod:`billing.charges` and :mod:`billing.proration` in the plainest
terms, so the tests can check the fast integer code against it:

- cycle ``Y-M`` for bill day ``D``: from date(Y, M, D) to the same day of the
  next month; a subscription's year ``k``: from the first day of its subscribe
  day's cycle + 12k months, for 12 months;
- monthly fee for some days of a cycle: amount × days / days of the cycle;
  weekly: × days / 7; daily: × days; yearly: × days / days of the year;
  each line rounded half-even to the currency's minor unit.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

from billing.model import (
    BillingProfile,
    InvoiceLine,
    LineKind,
    Mode,
    OneTimeCharge,
    SubscriptionAction,
    SubscriptionEvent,
)

ONE_DAY = timedelta(days=1)
ORDER = {"subscribe": 0, "change": 1, "suspend": 1, "resume": 1, "end": 2}
Key = tuple[str, str, str]  # (kind, subscription, fee id or description)


# --- days and cycles ----------------------------------------------------------------


def cycle_dates(cycle: str, bill_day: int) -> tuple[date, date]:
    year, month = (int(part) for part in cycle.split("-"))
    first = date(year, month, bill_day)
    end = date(year + 1, 1, bill_day) if month == 12 else date(year, month + 1, bill_day)
    return first, end


def shift(cycle: str, months: int) -> str:
    year, month = (int(part) for part in cycle.split("-"))
    month += months
    while month > 12:
        year, month = year + 1, month - 12
    while month < 1:
        year, month = year - 1, month + 12
    return f"{year:04d}-{month:02d}"


def cycle_of(day: date, bill_day: int) -> str:
    """The cycle holding ``day``: this month's if the bill day has come, else last month's."""
    this = f"{day.year:04d}-{day.month:02d}"
    return this if day.day >= bill_day else shift(this, -1)


def months_between(earlier: str, later: str) -> int:
    count = 0
    while shift(earlier, count) < later:
        count += 1
    return count


def days_of(first: date, end: date) -> list[date]:
    out = []
    day = first
    while day < end:
        out.append(day)
        day += ONE_DAY
    return out


# --- the catalog, read again ------------------------------------------------------------


def money(text: str | int) -> Decimal:
    return Decimal(str(text))


class RefCatalog:
    def __init__(self, text: str) -> None:
        doc: dict[str, Any] = tomllib.loads(text)
        self.currencies: dict[str, int] = doc["currencies"]
        self.products: dict[str, dict[str, Any]] = doc.get("products", {})
        self.one_time: dict[str, dict[str, Any]] = doc.get("one_time", {})
        self.promotions: list[tuple[str, dict[str, Any]]] = list(doc.get("promotions", {}).items())
        self.taxes: dict[str, dict[str, str]] = doc.get("taxes", {})
        self.fee_product = {
            fee: pid for pid, p in self.products.items() for fee in p.get("recurring", {})
        }

    def round(self, value: Decimal, currency: str) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = 60
            return value.quantize(Decimal(1).scaleb(-self.currencies[currency]), ROUND_HALF_EVEN)


# --- what a subscription was on a day ---------------------------------------------------


class RefSubscription:
    """One subscription's events; ``on(day)`` replays them up to that day."""

    def __init__(self, name: str, events: list[SubscriptionEvent]) -> None:
        self.name = name
        self.events = sorted(
            events, key=lambda e: (date.fromisoformat(e.day), ORDER[e.action.value], e.event_id)
        )
        self.start = date.fromisoformat(self.events[0].day)
        ends = [e for e in self.events if e.action is SubscriptionAction.END]
        self.end = date.fromisoformat(ends[0].day) if ends else None
        self.last_day = date.fromisoformat(self.events[-1].day)

    def on(self, day: date) -> tuple[str, bool]:
        """(product, suspended) on ``day``; product "" when not subscribed."""
        product, suspended = "", False
        for event in self.events:
            if date.fromisoformat(event.day) > day:
                break
            if event.action in (SubscriptionAction.SUBSCRIBE, SubscriptionAction.CHANGE):
                product = event.product
            elif event.action is SubscriptionAction.SUSPEND:
                suspended = True
            elif event.action is SubscriptionAction.RESUME:
                suspended = False
            else:
                product = ""
        return product, suspended

    def active(self, day: date, product: str) -> bool:
        return self.on(day) == (product, False)

    def products(self) -> list[str]:
        """Products it was on for at least a day, in order."""
        seen: list[str] = []
        day, stop = self.start, self.last_day + ONE_DAY
        while day < stop:
            product = self.on(day)[0]
            if product and product not in seen:
                seen.append(product)
            day += ONE_DAY
        return seen

    def first_day_on(self, product: str, until: date) -> date | None:
        for day in days_of(self.start, until):
            if self.on(day)[0] == product:
                return day
        return None


def subscriptions_of(events: Sequence[SubscriptionEvent]) -> list[RefSubscription]:
    unique = {e.event_id: e for e in events}
    by_name: dict[str, list[SubscriptionEvent]] = {}
    for event in unique.values():
        by_name.setdefault(event.subscription, []).append(event)
    return [RefSubscription(name, by_name[name]) for name in sorted(by_name)]


# --- the charges ------------------------------------------------------------------------


@dataclass
class RefLine:
    kind: str
    subscription: str
    key: str  # fee id, or the description for discount and tax lines
    amount: Decimal
    period_start: date
    product: str = ""
    fee: str = ""
    taxable: bool = True
    paid: bool = False


@dataclass
class RefCharges:
    lines: list[RefLine]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    paid_from_balance: Decimal
    advance: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def by_key(self) -> dict[Key, Decimal]:
        out: dict[Key, Decimal] = {}
        for line in self.lines:
            key = (line.kind, line.subscription, line.key)
            out[key] = out.get(key, Decimal(0)) + line.amount
        return out


def fee_share(fee: dict[str, Any], days: int, period_days: int) -> Decimal:
    amount = money(fee["amount"])
    with localcontext() as ctx:
        ctx.prec = 60
        if fee["period"] == "daily":
            return amount * days
        if fee["period"] == "weekly":
            return amount * days / 7
        return amount * days / period_days


class Reference:
    """``reference_charges`` spelled out step by step; one instance per account and cycle."""

    def __init__(self, catalog: RefCatalog, profile: BillingProfile, cycle: str) -> None:
        self.catalog, self.profile, self.cycle = catalog, profile, cycle
        self.currency = profile.currency
        self.bill_day = profile.bill_day
        self.first, self.end = cycle_dates(cycle, self.bill_day)
        self.next_first, self.next_end = cycle_dates(shift(cycle, 1), self.bill_day)

    def r(self, value: Decimal) -> Decimal:
        return self.catalog.round(value, self.currency)

    def year_of(self, sub: RefSubscription, cycle: str) -> tuple[date, date, str] | None:
        """The subscription year holding ``cycle``: first day, end, anniversary cycle."""
        anchor = cycle_of(sub.start, self.bill_day)
        if cycle < anchor:
            return None
        k = months_between(anchor, cycle) // 12
        start_cycle = shift(anchor, 12 * k)
        return (
            cycle_dates(start_cycle, self.bill_day)[0],
            cycle_dates(shift(start_cycle, 12), self.bill_day)[0],
            start_cycle,
        )

    # postpaid recurring fees

    def fees(
        self, subs: list[RefSubscription], billed: Mapping[tuple[str, str], int]
    ) -> tuple[list[RefLine], dict[tuple[str, str], Decimal]]:
        lines: list[RefLine] = []
        advance: dict[tuple[str, str], Decimal] = {}
        seen = set()
        for sub in subs:
            for pid in sub.products():
                for fee_id, fee in self.catalog.products[pid].get("recurring", {}).items():
                    seen.add((sub.name, fee_id))
                    before = Decimal(billed.get((sub.name, fee_id), 0)) / 10**9
                    args = (sub, pid, fee_id, fee, before, lines, advance)
                    if fee["period"] == "yearly":
                        self.yearly(*args)
                    else:
                        self.per_cycle(*args)
        for (name, fee_id), amount in billed.items():
            if amount and (name, fee_id) not in seen:
                pid = self.catalog.fee_product[fee_id]
                lines.append(
                    RefLine(
                        "proration", name, fee_id, -Decimal(amount) / 10**9, self.first, pid, fee_id
                    )
                )
        return lines, advance

    def per_cycle(
        self,
        sub: RefSubscription,
        pid: str,
        fee_id: str,
        fee: dict[str, Any],
        before: Decimal,
        lines: list[RefLine],
        advance: dict[tuple[str, str], Decimal],
    ) -> None:
        used = [d for d in days_of(self.first, self.end) if sub.active(d, pid)]
        cycle_days = len(days_of(self.first, self.end))
        actual = self.r(fee_share(fee, len(used), cycle_days)) if used else Decimal(0)
        if fee["timing"] == "arrears":
            if used:
                lines.append(RefLine("recurring", sub.name, fee_id, actual, used[0], pid, fee_id))
            return
        if actual != before:
            start = used[0] if used else self.first
            lines.append(
                RefLine("proration", sub.name, fee_id, actual - before, start, pid, fee_id)
            )
        coming = [d for d in days_of(self.next_first, self.next_end) if sub.active(d, pid)]
        if coming:
            next_days = len(days_of(self.next_first, self.next_end))
            amount = self.r(fee_share(fee, len(coming), next_days))
            lines.append(RefLine("recurring", sub.name, fee_id, amount, coming[0], pid, fee_id))
            advance[(sub.name, fee_id)] = amount

    def yearly(
        self,
        sub: RefSubscription,
        pid: str,
        fee_id: str,
        fee: dict[str, Any],
        before: Decimal,
        lines: list[RefLine],
        advance: dict[tuple[str, str], Decimal],
    ) -> None:
        year = self.year_of(sub, self.cycle)
        whole = self.r(money(fee["amount"]))

        def add(kind: str, amount: Decimal, start: date) -> None:
            lines.append(RefLine(kind, sub.name, fee_id, amount, start, pid, fee_id))

        if fee["timing"] == "arrears":
            if year is None:
                return
            first, end, anchor = year
            bill_at = shift(anchor, 11)
            if sub.end is not None and first < sub.end < end:
                bill_at = min(bill_at, cycle_of(sub.end, self.bill_day))
            used = [d for d in days_of(first, end) if sub.active(d, pid)]
            if bill_at == self.cycle and used:
                year_days = len(days_of(first, end))
                add("recurring", self.r(fee_share(fee, len(used), year_days)), used[0])
            return
        expected = Decimal(0)
        if year is not None and year[2] == self.cycle and sub.active(self.first, pid):
            expected = whole
        if expected != before:
            add("proration", expected - before, self.first)
        if year is not None:
            first, end, _ = year
            year_days = len(days_of(first, end))
            for day in days_of(self.first, self.end):
                if day == first:
                    continue
                now, then = sub.active(day, pid), sub.active(day - ONE_DAY, pid)
                rest = len(days_of(day, end))
                if now and not then:
                    add("proration", self.r(fee_share(fee, rest, year_days)), day)
                if then and not now:
                    add("proration", -self.r(fee_share(fee, rest, year_days)), day)
        upcoming = shift(self.cycle, 1)
        coming = self.year_of(sub, upcoming)
        if coming is not None and coming[2] == upcoming and sub.active(self.next_first, pid):
            add("recurring", whole, self.next_first)
            advance[(sub.name, fee_id)] = whole

    # prepaid: the periods paid in this cycle

    def prepaid(self, subs: list[RefSubscription]) -> list[RefLine]:
        lines = []
        for sub in subs:
            for pid in sub.products():
                for fee_id, fee in self.catalog.products[pid].get("recurring", {}).items():
                    if fee["period"] == "yearly":
                        year = self.year_of(sub, self.cycle)
                        if year is None:
                            continue
                        first, end, _ = year
                    else:
                        first, end = self.first, self.end
                    used = [d for d in days_of(first, end) if sub.active(d, pid)]
                    if not used or not self.first <= used[0] < self.end:
                        continue
                    paid_days = len(days_of(used[0], end))
                    amount = self.r(fee_share(fee, paid_days, len(days_of(first, end))))
                    lines.append(
                        RefLine(
                            "recurring",
                            sub.name,
                            fee_id,
                            amount,
                            used[0],
                            pid,
                            fee_id,
                            taxable=False,
                            paid=True,
                        )
                    )
        return lines

    # everything else

    def one_time(
        self, subs: list[RefSubscription], charges: Sequence[OneTimeCharge]
    ) -> list[RefLine]:
        lines = []
        for sub in subs:
            if self.first <= sub.start < self.end:
                pid = sub.on(sub.start)[0]
                for fee_id in self.catalog.products[pid].get("on_subscribe", []) if pid else []:
                    fee = self.catalog.one_time[fee_id]
                    lines.append(
                        RefLine(
                            "one_time",
                            "",
                            fee_id,
                            self.r(money(fee["amount"])),
                            sub.start,
                            fee=fee_id,
                            taxable=fee.get("taxable", True),
                        )
                    )
        done = set()
        for charge in charges:
            day = date.fromisoformat(charge.day)
            if charge.charge_id in done or not self.first <= day < self.end:
                done.add(charge.charge_id)
                continue
            done.add(charge.charge_id)
            fee = self.catalog.one_time[charge.fee]
            price = (
                money(fee["amount"]) if charge.amount is None else Decimal(charge.amount) / 10**9
            )
            lines.append(
                RefLine(
                    "one_time",
                    "",
                    charge.fee,
                    self.r(price * charge.quantity),
                    day,
                    fee=charge.fee,
                    taxable=fee.get("taxable", True),
                )
            )
        return lines

    def discounts(
        self, subs: list[RefSubscription], fees: list[RefLine], paid: bool
    ) -> list[RefLine]:
        by_name = {s.name: s for s in subs}
        groups: dict[tuple[int, str], list[RefLine]] = {}
        for line in fees:
            sub = by_name.get(line.subscription)
            if sub is None:
                continue
            on_product = sub.first_day_on(line.product, sub.last_day + ONE_DAY)
            for index, (_, promo) in enumerate(self.catalog.promotions):
                if not self.promotion_applies(promo, line, on_product):
                    continue
                groups.setdefault((index, line.subscription), []).append(line)
                break
        out = []
        for (index, name), members in groups.items():
            promo = self.catalog.promotions[index][1]
            if "percent" in promo:
                pct = money(promo["percent"])
                total = sum((self.r(m.amount * pct / 100) for m in members), Decimal(0))
            else:
                left = self.r(money(promo["amount"]))
                total = Decimal(0)
                for m in members:
                    take = min(left, m.amount)
                    if take > 0:
                        total += take
                        left -= take
            if total:
                out.append(
                    RefLine(
                        "discount",
                        name,
                        promo["description"],
                        -total,
                        self.first,
                        taxable=not paid,
                        paid=paid,
                    )
                )
        return out

    def promotion_applies(self, promo: dict[str, Any], line: RefLine, start: date | None) -> bool:
        if start is None:
            return False
        if promo.get("products") and line.product not in promo["products"]:
            return False
        if promo.get("fees") and line.fee not in promo["fees"]:
            return False
        if promo.get("segments") and self.profile.segment not in promo["segments"]:
            return False
        valid_from = date.fromisoformat(promo.get("valid_from", "1970-01-01"))
        valid_to = date.fromisoformat(promo.get("valid_to", "9999-12-31"))
        if not valid_from <= start <= valid_to:
            return False
        if "amount" in promo and promo["currency"] != self.currency:
            return False
        cycles = promo.get("cycles", 0)
        if cycles:
            elapsed = months_between(
                cycle_of(start, self.bill_day), cycle_of(line.period_start, self.bill_day)
            )
            if elapsed >= cycles:
                return False
        return True

    def commitment(self, subs: list[RefSubscription], used: Decimal) -> list[RefLine]:
        committed = Decimal(0)
        cycle_days = len(days_of(self.first, self.end))
        for sub in subs:
            for pid in sub.products():
                minimum = money(self.catalog.products[pid].get("commitment", "0"))
                days = sum(1 for d in days_of(self.first, self.end) if sub.active(d, pid))
                if minimum and days:
                    committed += self.r(minimum * days / cycle_days)
        if committed > used:
            return [RefLine("commitment", "", "", committed - used, self.first)]
        return []

    def taxes(self, lines: list[RefLine]) -> list[RefLine]:
        taxable = [line for line in lines if line.taxable and not line.paid]
        if not taxable or not self.profile.region:
            return []
        base = sum((line.amount for line in taxable), Decimal(0))
        if base == 0:
            return []
        rates = self.catalog.taxes[self.profile.region]
        return [
            RefLine(
                "tax",
                "",
                f"{name} {text}%",
                self.r(base * money(text) / 100),
                self.first,
                taxable=False,
            )
            for name, text in rates.items()
        ]


def reference_charges(
    catalog: RefCatalog,
    profile: BillingProfile,
    events: Sequence[SubscriptionEvent],
    one_time: Sequence[OneTimeCharge],
    cycle: str,
    usage_lines: Sequence[InvoiceLine],
    advance_billed: Mapping[tuple[str, str], int],
) -> RefCharges:
    """What :func:`billing.charges.account_charges` must answer, worked out slowly."""
    ref = Reference(catalog, profile, cycle)
    subs = subscriptions_of(events)
    usage = [
        RefLine(
            line.kind.value,
            "",
            f"usage:{i}",
            Decimal(line.amount) / 10**9,
            ref.first,
            taxable=line.taxable,
            paid=line.paid_from_balance,
        )
        for i, line in enumerate(usage_lines)
    ]
    prepaid = profile.mode is Mode.PREPAID
    advance: dict[tuple[str, str], Decimal] = {}
    if prepaid:
        fees = ref.prepaid(subs)
    else:
        fees, advance = ref.fees(subs, advance_billed)
    lines = usage + fees + ref.one_time(subs, one_time) + ref.discounts(subs, fees, prepaid)
    if not prepaid:
        used = sum(
            (
                u.amount
                for u, line in zip(usage, usage_lines, strict=True)
                if line.kind in (LineKind.USAGE, LineKind.LATE_USAGE)
            ),
            Decimal(0),
        )
        lines += ref.commitment(subs, used)
    subtotal = sum((line.amount for line in lines), Decimal(0))
    tax_lines = ref.taxes(lines)
    tax = sum((line.amount for line in tax_lines), Decimal(0))
    paid = sum((line.amount for line in lines if line.paid), Decimal(0))
    return RefCharges(lines + tax_lines, subtotal, tax, subtotal + tax, paid, advance)


def implementation_keys(lines: Sequence[InvoiceLine]) -> dict[Key, Decimal]:
    """The implementation's lines keyed like :meth:`RefCharges.by_key`, in currency units."""
    out: dict[Key, Decimal] = {}
    usage = 0
    for line in lines:
        if line.kind in (LineKind.USAGE, LineKind.LATE_USAGE):
            key = (line.kind.value, "", f"usage:{usage}")
            usage += 1
        elif line.kind in (LineKind.DISCOUNT, LineKind.TAX):
            key = (line.kind.value, line.subscription, line.description)
        elif line.kind is LineKind.COMMITMENT:
            key = (line.kind.value, "", "")
        elif line.kind is LineKind.ONE_TIME:
            key = (line.kind.value, "", line.fee)
        else:
            key = (line.kind.value, line.subscription, line.fee)
        out[key] = out.get(key, Decimal(0)) + Decimal(line.amount) / 10**9
    return out


TEST_CATALOG = """
# Every kind of fee the billing maths knows, for the tests against the reference.
[catalog]
name = "billing maths test catalog"

[currencies]
EUR = 2
XOF = 0

[one_time.ACT]
description = "Activation"
amount = "9.99"
currency = "EUR"

[one_time.DEVICE]
description = "Device"
amount = "199.00"
currency = "EUR"

[one_time.DEPOSIT]
description = "Deposit"
amount = "50.00"
currency = "EUR"
taxable = false

[products.SMALL]
name = "Small"
currency = "EUR"
on_subscribe = ["ACT"]
recurring.SMALL_M = { amount = "20.00", period = "monthly", timing = "advance" }

[products.LARGE]
name = "Large"
currency = "EUR"
recurring.LARGE_M = { amount = "35.00", period = "monthly", timing = "advance" }
recurring.LARGE_W = { amount = "4.99", period = "weekly", timing = "advance" }

[products.BIZ]
name = "Business"
currency = "EUR"
commitment = "50.00"
recurring.BIZ_M = { amount = "30.00", period = "monthly", timing = "arrears" }
recurring.BIZ_D = { amount = "0.495", period = "daily", timing = "arrears" }

[products.YEAR]
name = "Yearly add-on"
currency = "EUR"
recurring.YEAR_A = { amount = "49.00", period = "yearly", timing = "advance" }

[products.YEAR_LATE]
name = "Yearly in arrears"
currency = "EUR"
recurring.YEAR_R = { amount = "120.00", period = "yearly", timing = "arrears" }

[products.WEEKLY]
name = "Weekly pass"
currency = "EUR"
commitment = "10.00"
recurring.WEEK_R = { amount = "7.77", period = "weekly", timing = "arrears" }
recurring.DAY_A = { amount = "0.33", period = "daily", timing = "advance" }

[products.XOF_PLAN]
name = "Jamono"
currency = "XOF"
recurring.XOF_M = { amount = "5000", period = "monthly", timing = "advance" }
recurring.XOF_W = { amount = "1500", period = "weekly", timing = "arrears" }

[promotions.HALF]
description = "Half price for 3 cycles"
percent = "50"
products = ["SMALL", "LARGE"]
valid_from = "2024-01-01"
valid_to = "2028-12-31"
cycles = 3

[promotions.FIVE_OFF]
description = "5.00 off"
amount = "5.00"
currency = "EUR"
products = ["BIZ", "YEAR", "SMALL"]
segments = ["business"]

[promotions.XOF_TENTH]
description = "10% off"
percent = "10"
products = ["XOF_PLAN"]
fees = ["XOF_M"]
cycles = 2

[taxes]
DE = { VAT = "19" }
US = { State = "6.25", Local = "2" }
CH = { MWST = "8.1" }
SN = { TVA = "18" }
"""
EUR_PRODUCTS = ("SMALL", "LARGE", "BIZ", "YEAR", "YEAR_LATE", "WEEKLY")
