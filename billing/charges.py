"""One account's charges for one cycle: recurring, one-time, discounts, commitment, tax.

:func:`account_charges` is what the mass run calls once per account; it reads
nothing and writes nothing. Lines come in this order: usage (as given),
recurring and proration lines by subscription, one-time charges, discounts,
the commitment top-up, taxes. ``subtotal`` is every line but the taxes,
``total = subtotal + tax``; all are sums of rounded lines.

Rules where the issue leaves a choice (the catalog's docstring has the file):

- Postpaid and hybrid accounts get recurring fees on the invoice, in advance
  or arrears as the fee says (see :mod:`billing.proration`). Prepaid accounts
  pay them from balances at renewal (:func:`renewals`, debited by the run at
  the start of the next cycle): their invoice shows this run's renewals as
  lines ``paid_from_balance``. A renewal covers a period from the first day
  the fee is active in it to its end; prepaid fees are not refunded when a
  subscription stops, changes or is suspended within a paid period.
- A promotion discounts the recurring and proration lines of its products
  for the first ``cycles`` cycles a subscription is on the product (counting
  the cycle of a line's period start), when the first day on the product lies
  in ``[valid_from, valid_to]``, for accounts of its segments. A line gets the
  first promotion that applies. A percentage is taken from each line (rounded
  half-even per line) and shown as one DISCOUNT line per promotion and
  subscription; a fixed amount is taken once per invoice and subscription,
  from the eligible charges, never more than they add up to.
- A commitment (minimum usage spend) is prorated like a monthly fee by the
  days its product is active in the cycle; the usage lines given (usage and
  late usage) count towards it; a shortfall is one COMMITMENT line. Prepaid
  accounts have no commitment.
- Tax: each rate of the profile's region applies to the sum of the taxable
  lines not paid from a balance (tax on prepaid credit is due when it is
  sold), one TAX line per rate, rounded half-even. Region ``""`` has no tax;
  a region the catalog does not know is a :class:`ProfileError`.
- One-time charges dated in the cycle are billed once per ``charge_id``;
  products' ``on_subscribe`` fees are billed in the cycle of the subscribe day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import msgspec

from billing.catalog import HUNDRED_PERCENT, Catalog, Product, TaxRate, money_text
from billing.cycles import check_bill_day, cycle_bounds, next_cycle, zone
from billing.exceptions import ProfileError
from billing.invoices import Previous
from billing.model import (
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    Mode,
    OneTimeCharge,
    SubscriptionEvent,
)
from billing.proration import (
    FeeBiller,
    Run,
    Span,
    active,
    index_of_day,
    leftover,
    paid_period,
    prorate,
    round_ratio,
    share,
    span,
    span_of_index,
)
from billing.subscriptions import OPEN, Timeline, day_ordinal, day_text, fold

USAGE_KINDS = (LineKind.USAGE, LineKind.LATE_USAGE)
FEE_KINDS = (LineKind.RECURRING, LineKind.PRORATION)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class Charges:
    """One account's invoice lines for one cycle, with their sums (nanos)."""

    lines: list[InvoiceLine]
    subtotal: int
    tax: int
    total: int
    paid_from_balance: int
    advance: dict[tuple[str, str], int] = field(default_factory=dict)
    """(subscription, fee id) → what this invoice bills in advance for the next cycle."""


class Renewal(msgspec.Struct, frozen=True, kw_only=True):
    """A prepaid fee to debit from the account's main balance, once per ``op_id``."""

    account: str
    subscription: str
    product: str
    fee: str
    cycle: str  # the cycle the paid period starts in (named in the op id)
    amount: int  # nanos to debit: the fee less its discount
    gross: int
    discount: int
    currency: str
    period_start: str  # ISO local days of the period paid for (end exclusive): a refused
    period_end: str  # renewal suspends the subscription from period_start
    valid_from_us: int  # the same period as UTC microseconds
    valid_until_us: int
    rule: str
    op_id: str


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """An included allowance that becomes a balance for one cycle, once per ``op_id``."""

    account: str
    subscription: str
    product: str
    allowance: str
    unit: str
    amount: int
    categories: tuple[str, ...]
    weight: int
    cycle: str
    valid_from_us: int  # UTC microseconds: local midnight of the first day
    valid_until_us: int  # the cycle's end
    rule: str  # e.g. "21/30 days of 30000 voice_seconds, rounded down"
    balance_id: str
    op_id: str

    @property
    def valid_from(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.valid_from_us)

    @property
    def valid_until(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.valid_until_us)


def account_charges(
    catalog: Catalog,
    profile: BillingProfile,
    events: Sequence[SubscriptionEvent],
    one_time: Sequence[OneTimeCharge],
    cycle: str,
    usage_lines: Sequence[InvoiceLine],
    advance_billed: Mapping[tuple[str, str], int],
    timelines: list[Timeline] | None = None,
) -> Charges:
    """Every line of ``profile``'s invoice for ``cycle`` (see the module doc for the rules).

    ``timelines``: ``fold(events, …)`` if the caller has it.
    """
    run = _run(catalog, cycle, profile.bill_day, profile.currency)
    rates = _tax_rates(catalog, profile)
    if timelines is None:
        timelines = fold(events, profile.account, catalog.products)
    lines: list[InvoiceLine] = []
    used = 0
    for line in usage_lines:
        if line.currency != run.currency:
            msg = (
                f"account {profile.account!r}: a usage line is in {line.currency},"
                f" the account is billed in {run.currency}"
            )
            raise ProfileError(msg)
        if line.kind in USAGE_KINDS:
            used += line.amount
        lines.append(line)
    advance: dict[tuple[str, str], int] = {}
    prepaid = profile.mode is Mode.PREPAID
    if prepaid:
        fees = _renewal_lines(catalog, profile, timelines, run.cycle)
    else:
        fees = _fee_lines(catalog, profile, run, timelines, advance_billed, advance)
    lines += fees
    lines += _one_time_lines(catalog, profile, run, timelines, one_time)
    discount_lines, _ = _discounts(catalog, profile, run, timelines, fees, prepaid)
    lines += discount_lines
    if not prepaid:
        top_up = _commitment(catalog, run, timelines, used)
        if top_up is not None:
            lines.append(top_up)
    subtotal = paid = base = 0
    for line in lines:
        subtotal += line.amount
        if line.paid_from_balance:
            paid += line.amount
        elif line.taxable:
            base += line.amount
    tax = 0
    if base and rates:
        for tax_line in _tax_lines(rates, run, base):
            tax += tax_line.amount
            lines.append(tax_line)
    return Charges(lines, subtotal, tax, subtotal + tax, paid, advance)


def advance_billed_of(
    invoice: Invoice | Previous | None, cycle: str | None = None
) -> dict[tuple[str, str], int]:
    """What ``invoice`` billed in advance for the cycle after its own, by (subscription, fee).

    Read back from its recurring lines whose period starts at or after the
    invoice's period end. A cancelled invoice or a credit note billed nothing.
    With ``cycle``, only an invoice of the cycle before ``cycle`` counts.
    """
    if invoice is None or invoice.status is InvoiceStatus.CANCELLED or invoice.credit_note_for:
        return {}
    if cycle is not None and invoice.cycle != next_cycle(cycle, -1):
        return {}
    out: dict[tuple[str, str], int] = {}
    end = invoice.period_end
    for line in invoice.lines:
        if (
            line.kind is LineKind.RECURRING
            and line.fee
            and not line.paid_from_balance
            and line.period_start >= end
        ):
            key = (line.subscription, line.fee)
            out[key] = out.get(key, 0) + line.amount
    return out


def renewals(
    catalog: Catalog, profile: BillingProfile, events: Sequence[SubscriptionEvent], cycle: str
) -> list[Renewal]:
    """Prepaid fees to debit when renewing for ``cycle`` (at the run of the cycle before it).

    The periods paid in ``cycle`` and, as a catch-up, those of the cycle before
    (a subscription that started or resumed within it; see
    :func:`billing.proration.paid_period`): a period already debited has the
    same op id, so debiting by op id once is exact. Empty for other modes.
    """
    if profile.mode is not Mode.PREPAID:
        return []
    run = _run(catalog, cycle, profile.bill_day, profile.currency)
    timelines = fold(events, profile.account, catalog.products)
    before = span_of_index(run.cycle.index - 1, profile.bill_day)
    out = []
    for paid_in in (before, run.cycle):
        # discounts per cycle, as the invoice of that cycle shows them
        lines = _renewal_lines(catalog, profile, timelines, paid_in)
        _, discounts = _discounts(catalog, profile, run, timelines, lines, True)
        out += _renewals(profile, paid_in.name, lines, discounts)
    return out


def renewal_ids(
    catalog: Catalog, profile: BillingProfile, timelines: list[Timeline], cycle: str
) -> list[str]:
    """The op ids of :func:`renewals` (same order) without pricing them: what a run
    looks the outcomes up by. ``timelines``: the account's :func:`fold`."""
    if profile.mode is not Mode.PREPAID:
        return []
    run = _run(catalog, cycle, profile.bill_day, profile.currency)
    before = span_of_index(run.cycle.index - 1, profile.bill_day)
    out = []
    day = profile.bill_day
    for paid_in in (before, run.cycle):
        for timeline in timelines:
            sub = timeline.subscription
            for product in _products(catalog, profile, timeline):
                for fee in product.recurring:
                    if paid_period(timeline, product.id, fee, paid_in, day) is not None:
                        out.append(_op_id(profile.account, sub, fee.id, paid_in.name))
    return out


def _op_id(account: str, subscription: str, fee: str, cycle: str) -> str:
    return f"renew:{account}:{subscription}:{fee}:{cycle}"


def _renewals(
    profile: BillingProfile, cycle: str, lines: list[InvoiceLine], discounts: list[int]
) -> list[Renewal]:
    out = []
    for line, discount in zip(lines, discounts, strict=True):
        start, end = day_ordinal(line.period_start), day_ordinal(line.period_end)
        out.append(
            Renewal(
                account=profile.account,
                subscription=line.subscription,
                product=line.product,
                fee=line.fee,
                cycle=cycle,
                amount=line.amount - discount,
                gross=line.amount,
                discount=discount,
                currency=profile.currency,
                period_start=line.period_start,
                period_end=line.period_end,
                valid_from_us=midnight_us(start, profile.timezone),
                valid_until_us=midnight_us(end, profile.timezone),
                rule=line.rule,
                op_id=_op_id(profile.account, line.subscription, line.fee, cycle),
            )
        )
    return out


def allowance_grants(
    catalog: Catalog, profile: BillingProfile, events: Sequence[SubscriptionEvent], cycle: str
) -> list[Grant]:
    """The allowances of ``cycle`` that become balances, for every mode.

    A product active on some day of the cycle grants each allowance prorated
    by the days from the first of them to the cycle's end, rounded down, valid
    from local midnight of that day to the cycle's end. Call it for the next
    cycle at the run, and for the current cycle when a subscription starts or
    resumes within it; the op ids make a second call a no-op.
    """
    cycle_span = span(cycle, profile.bill_day)
    bounds = cycle_bounds(cycle, profile.bill_day, profile.timezone)
    out = []
    for timeline in fold(events, profile.account, catalog.products):
        sub = timeline.subscription
        for product in _products(catalog, profile, timeline):
            if not product.allowances:
                continue
            days, first, _ = active(timeline.segments, product.id, cycle_span.first, cycle_span.end)
            if not days:
                continue
            remaining = cycle_span.end - first
            start_us = (
                bounds.start_us
                if first == cycle_span.first
                else midnight_us(first, profile.timezone)
            )
            for allowance in product.allowances:
                amount = allowance.amount * remaining // cycle_span.days
                if amount <= 0:
                    continue
                rule = f"{remaining}/{cycle_span.days} days of {allowance.amount}"
                out.append(
                    Grant(
                        account=profile.account,
                        subscription=sub,
                        product=product.id,
                        allowance=allowance.id,
                        unit=allowance.unit,
                        amount=amount,
                        categories=allowance.categories,
                        weight=allowance.weight,
                        cycle=cycle,
                        valid_from_us=start_us,
                        valid_until_us=bounds.end_us,
                        rule=f"{rule} {allowance.unit}, rounded down",
                        balance_id=f"{sub}/{allowance.id}/{cycle}",
                        op_id=f"grant:{profile.account}:{sub}:{allowance.id}:{cycle}",
                    )
                )
    return out


# --- the parts ---------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _run(catalog: Catalog, cycle: str, bill_day: int, currency: str) -> Run:
    check_bill_day(bill_day)
    decimals = catalog.decimals.get(currency)
    if decimals is None:
        msg = f"currency {currency!r} is not in the catalog's [currencies] ({catalog.source})"
        raise ProfileError(msg)
    this = span(cycle, bill_day)
    upcoming = span_of_index(this.index + 1, bill_day)
    step = catalog.steps[currency]
    return Run(this, upcoming, bill_day, currency, step, decimals, catalog.rounding[currency])


@lru_cache(maxsize=65_536)
def midnight_us(ordinal: int, timezone: str) -> int:
    """UTC microseconds of local midnight starting day ``ordinal`` in ``timezone``."""
    day = date.fromordinal(ordinal)
    local = datetime(day.year, day.month, day.day, tzinfo=zone(timezone))
    return int(local.timestamp()) * 1_000_000


def _products(catalog: Catalog, profile: BillingProfile, timeline: Timeline) -> list[Product]:
    out = []
    for product_id in timeline.products():
        product = catalog.products[product_id]
        if product.currency != profile.currency:
            msg = (
                f"subscription {timeline.subscription!r} of account {profile.account!r}:"
                f" product {product.id} is priced in {product.currency},"
                f" the account is billed in {profile.currency}"
            )
            raise ProfileError(msg)
        out.append(product)
    return out


def _fee_lines(
    catalog: Catalog,
    profile: BillingProfile,
    run: Run,
    timelines: list[Timeline],
    billed: Mapping[tuple[str, str], int],
    advance: dict[tuple[str, str], int],
) -> list[InvoiceLine]:
    out: list[InvoiceLine] = []
    seen: set[tuple[str, str]] = set()
    for timeline in timelines:
        biller = FeeBiller(run, timeline, billed, advance, out)
        for product in _products(catalog, profile, timeline):
            for fee in product.recurring:
                biller.bill(product, fee)
                seen.add((timeline.subscription, fee.id))
    for key, amount in billed.items():
        known = catalog.fees.get(key[1])
        if amount and key not in seen:
            if known is None:
                msg = f"advance billed for fee {key[1]!r}, which is not in {catalog.source}"
                raise ProfileError(msg)
            product = catalog.products[known.product]
            out.append(leftover(run, product, known, key[0], amount))
    return out


def _renewal_lines(
    catalog: Catalog, profile: BillingProfile, timelines: list[Timeline], cycle: Span
) -> list[InvoiceLine]:
    """Prepaid: lines of the fee periods paid in ``cycle`` (from balance)."""
    step = catalog.steps[profile.currency]
    rounding = catalog.rounding[profile.currency]
    out = []
    for timeline in timelines:
        for product in _products(catalog, profile, timeline):
            for fee in product.recurring:
                period = paid_period(timeline, product.id, fee, cycle, profile.bill_day)
                if period is not None:
                    first, end, period_days = period
                    days = end - first
                    line = InvoiceLine(
                        kind=LineKind.RECURRING,
                        description=f"{product.name} {fee.description}",
                        amount=prorate(fee, days, period_days, step),
                        currency=profile.currency,
                        quantity=days,
                        unit="days",
                        product=product.id,
                        subscription=timeline.subscription,
                        period_start=day_text(first),
                        period_end=day_text(end),
                        rule=f"{share(fee, days, period_days)}, {rounding}, paid from balance",
                        taxable=False,
                        paid_from_balance=True,
                        fee=fee.id,
                    )
                    out.append(line)
    return out


def _one_time_lines(
    catalog: Catalog,
    profile: BillingProfile,
    run: Run,
    timelines: list[Timeline],
    one_time: Sequence[OneTimeCharge],
) -> list[InvoiceLine]:
    cycle, currency = run.cycle, run.currency
    out = []
    for timeline in timelines:
        if cycle.first <= timeline.start < cycle.end and timeline.product_ids:
            product = catalog.products[timeline.product_ids[0]]
            for fee_id in product.on_subscribe:
                fee = catalog.one_time[fee_id]
                if fee.currency != currency:
                    msg = (
                        f"subscription {timeline.subscription!r}: one-time fee {fee_id} is in"
                        f" {fee.currency}, the account is billed in {currency}"
                    )
                    raise ProfileError(msg)
                text = f"{money_text(fee.amount, run.decimals)} {currency}"
                line = _one_time_line(
                    run, fee_id, fee.description, fee.amount, 1, text, timeline.start, fee.taxable
                )
                out.append(line)
    seen: set[str] = set()
    for charge in one_time:
        if charge.charge_id in seen:
            continue
        seen.add(charge.charge_id)
        where = f"one-time charge {charge.charge_id!r}"
        try:
            day = day_ordinal(charge.day)
        except ProfileError as exc:
            msg = f"{where}: {exc}"
            raise ProfileError(msg) from None
        if not cycle.first <= day < cycle.end:
            continue
        if charge.account != profile.account:
            msg = f"{where}: belongs to account {charge.account!r}, not {profile.account!r}"
            raise ProfileError(msg)
        priced = catalog.one_time.get(charge.fee)
        if priced is None:
            msg = f"{where}: fee {charge.fee!r} is not in the catalog's [one_time]"
            raise ProfileError(msg)
        fee = priced
        price = charge.amount
        if price is None:
            if fee.currency != currency:
                msg = f"{where}: fee {fee.id} is in {fee.currency}, the account in {currency}"
                raise ProfileError(msg)
            price = fee.amount
        text = f"{money_text(price, run.decimals)} {currency}"
        description = charge.description or fee.description
        out.append(
            _one_time_line(run, fee.id, description, price, charge.quantity, text, day, fee.taxable)
        )
    return out


def _one_time_line(
    run: Run,
    fee: str,
    description: str,
    price: int,
    quantity: int,
    text: str,
    day: int,
    taxable: bool = True,
) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind.ONE_TIME,
        description=description,
        amount=round_ratio(price * quantity, 1, run.step),
        currency=run.currency,
        quantity=quantity,
        unit="units",
        period_start=day_text(day),
        period_end=day_text(day + 1),
        rule=f"{quantity} × {text}, {run.rounding}",
        taxable=taxable,
        fee=fee,
    )


def _discounts(
    catalog: Catalog,
    profile: BillingProfile,
    run: Run,
    timelines: list[Timeline],
    lines: list[InvoiceLine],
    paid: bool,
) -> tuple[list[InvoiceLine], list[int]]:
    """DISCOUNT lines for the fee ``lines``, and the discount taken from each of them."""
    taken = [0] * len(lines)
    promoted = catalog.promoted
    if not any(line.product in promoted for line in lines):
        return [], taken
    by_subscription = {t.subscription: t for t in timelines}
    groups: dict[tuple[int, str], list[int]] = {}
    for i, line in enumerate(lines):
        if line.product not in catalog.promoted or line.kind not in FEE_KINDS:
            continue
        timeline = by_subscription.get(line.subscription)
        if timeline is None:
            continue
        found = _promotion_for(catalog, profile, run, line, timeline)
        if found is not None:
            groups.setdefault((found, line.subscription), []).append(i)
    out = []
    for (index, subscription), members in groups.items():
        promo = catalog.promotions[index]
        base = sum(lines[i].amount for i in members)
        base_text = f"{money_text(base, run.decimals)} {run.currency}"
        if promo.percent:
            for i in members:
                taken[i] = round_ratio(lines[i].amount * promo.percent, HUNDRED_PERCENT, run.step)
            rule = f"{promo.id}: {promo.text} of each line ({base_text}), {run.rounding} per line"
        else:
            left = round_ratio(promo.amount, 1, run.step)
            for i in members:
                take = min(left, lines[i].amount)
                if take > 0:
                    taken[i] = take
                    left -= take
            rule = f"{promo.id}: {promo.text} per invoice, at most the {base_text} it applies to"
        total = sum(taken[i] for i in members)
        if total:
            first = lines[members[0]]
            out.append(
                InvoiceLine(
                    kind=LineKind.DISCOUNT,
                    description=promo.description,
                    amount=-total,
                    currency=run.currency,
                    quantity=len(members),
                    unit="lines",
                    product=first.product,
                    subscription=subscription,
                    period_start=min(lines[i].period_start for i in members),
                    period_end=max(lines[i].period_end for i in members),
                    rule=rule,
                    taxable=not paid,
                    paid_from_balance=paid,
                )
            )
    return out, taken


def _promotion_for(
    catalog: Catalog, profile: BillingProfile, run: Run, line: InvoiceLine, timeline: Timeline
) -> int | None:
    """The index of the first promotion that applies to ``line``, if any."""
    start = timeline.product_start(line.product)
    if start == OPEN:  # a credit for a product the subscription no longer shows
        return None
    on_product = -1
    for index, promo in enumerate(catalog.promotions):
        if (
            (promo.products and line.product not in promo.products)
            or (promo.fees and line.fee not in promo.fees)
            or (promo.segments and profile.segment not in promo.segments)
            or not promo.valid_from <= start <= promo.valid_to
            or (promo.amount and promo.currency != run.currency)
        ):
            continue
        if promo.cycles:
            if on_product < 0:
                period = index_of_day(day_ordinal(line.period_start), run.bill_day)
                on_product = period - index_of_day(start, run.bill_day)
            if on_product >= promo.cycles:
                continue
        return index
    return None


def _commitment(
    catalog: Catalog, run: Run, timelines: list[Timeline], used: int
) -> InvoiceLine | None:
    cycle = run.cycle
    committed = 0
    parts = []
    for timeline in timelines:
        for product_id in timeline.product_ids:
            if product_id not in catalog.committed:
                continue
            product = catalog.products[product_id]
            days, _, _ = active(timeline.segments, product_id, cycle.first, cycle.end)
            if days:
                committed += round_ratio(product.commitment * days, cycle.days, run.step)
                amount = money_text(product.commitment, run.decimals)
                parts.append(f"{days}/{cycle.days} days of {amount} ({product.name})")
    if committed <= used:
        return None
    minimum = f"{money_text(committed, run.decimals)} {run.currency}"
    usage = f"{money_text(used, run.decimals)} {run.currency}"
    return InvoiceLine(
        kind=LineKind.COMMITMENT,
        description=f"Minimum usage spend {minimum}: top-up",
        amount=committed - used,
        currency=run.currency,
        period_start=day_text(cycle.first),
        period_end=day_text(cycle.end),
        rule=f"minimum {minimum} ({'; '.join(parts)}, each {run.rounding}) less usage {usage}",
    )


def _tax_rates(catalog: Catalog, profile: BillingProfile) -> tuple[TaxRate, ...]:
    if not profile.region:
        return ()
    rates = catalog.taxes.get(profile.region)
    if rates is None:
        msg = (
            f"account {profile.account!r}: tax region {profile.region!r}"
            f" is not in the catalog's [taxes] ({catalog.source})"
        )
        raise ProfileError(msg)
    return rates


def _tax_lines(rates: tuple[TaxRate, ...], run: Run, base: int) -> list[InvoiceLine]:
    base_text = f"{money_text(base, run.decimals)} {run.currency}"
    cycle = run.cycle
    return [
        InvoiceLine(
            kind=LineKind.TAX,
            description=f"{rate.name} {rate.text}%",
            amount=round_ratio(base * rate.percent, HUNDRED_PERCENT, run.step),
            currency=run.currency,
            period_start=day_text(cycle.first),
            period_end=day_text(cycle.end),
            rule=f"{rate.text}% of {base_text}, {run.rounding}",
            taxable=False,
        )
        for rate in rates
    ]
