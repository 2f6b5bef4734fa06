"""Proration: how many days of a period a fee was used, and the invoice lines that bill them.

Everything here is integer arithmetic on day ordinals and nanos; the slow
twin written with ``Decimal`` and day-by-day loops is
``tests/billing_reference.py``, and the tests assert the two agree.

- A fee is due for the days its product is active (not suspended) in a
  subscription. Monthly fees are prorated by days of use / days of the bill
  cycle (28-31), weekly by days / 7, daily by days, yearly by days / days of
  the subscription's year (365 or 366).
- A subscription's years are aligned to its bill cycles: year ``k`` runs from
  the first day of cycle ``A + 12k`` to the first day of cycle ``A + 12k + 12``,
  ``A`` being the cycle of the subscribe day (its anniversary cycle).
- Each line is rounded half-even to the currency's minor unit, once, and its
  ``rule`` says how (``"12/30 days of 30.00 EUR, half-even to 0.01"``).

Billing in advance (run of cycle ``C``): the next cycle's fee as the
subscription stands now, plus a PRORATION line for ``C`` of what ``C`` actually
used less what the previous invoice billed in advance for it (a plan change:
credit the old fee's unused days, charge the new one's remaining days). A
yearly fee in advance is billed on the run before its anniversary cycle for
the whole year; starting it (or resuming it) within a year charges the rest
of the year, stopping it credits the rest, each on the run of the cycle it
happens in. In arrears: ``C``'s fee by the days used; a yearly fee at the end
of the year, or of the cycle the subscription ends in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from billing.catalog import Period, Product, RecurringFee, Timing, money_text
from billing.cycles import cycle_name, parse_cycle
from billing.model import InvoiceLine, LineKind
from billing.subscriptions import Segment, Timeline, day_text

RECURRING, PRORATION = LineKind.RECURRING, LineKind.PRORATION


def round_ratio(num: int, den: int, step: int) -> int:
    """``num / den`` rounded half-even to a multiple of ``step`` (``den``, ``step`` > 0).

    Floor division keeps the remainder non-negative, so one rule serves credits
    and charges alike: exact halves go to the even multiple.
    """
    unit = den * step
    q, r = divmod(num, unit)
    twice = 2 * r
    if twice > unit or (twice == unit and q & 1):
        q += 1
    return q * step


@dataclass(frozen=True, slots=True)
class Span:
    """A bill cycle as day ordinals: ``first`` inclusive, ``end`` exclusive."""

    index: int  # year * 12 + month - 1 of the month the cycle starts in
    name: str
    first: int
    end: int
    days: int


@lru_cache(maxsize=65_536)
def span_of_index(index: int, bill_day: int) -> Span:
    year, month = divmod(index, 12)
    first = date(year, month + 1, bill_day).toordinal()
    n_year, n_month = divmod(index + 1, 12)
    end = date(n_year, n_month + 1, bill_day).toordinal()
    return Span(index, cycle_name(year, month + 1), first, end, end - first)


@lru_cache(maxsize=4096)
def cycle_index(cycle: str) -> int:
    year, month = parse_cycle(cycle)
    return year * 12 + month - 1


def span(cycle: str, bill_day: int) -> Span:
    return span_of_index(cycle_index(cycle), bill_day)


@lru_cache(maxsize=65_536)
def index_of_day(ordinal: int, bill_day: int) -> int:
    """The index of the cycle the day ``ordinal`` falls in."""
    day = date.fromordinal(ordinal)
    index = day.year * 12 + day.month - 1
    return index if day.day >= bill_day else index - 1


def active(segments: tuple[Segment, ...], product: str, lo: int, hi: int) -> tuple[int, int, int]:
    """Days ``product`` is active in ``[lo, hi)``, with the first of them and the last + 1."""
    days, first, end = 0, 0, 0
    for seg in segments:
        if seg.product != product or seg.suspended:
            continue
        start, stop = max(seg.start, lo), min(seg.end, hi)
        if stop > start:
            if not days:
                first = start
            days += stop - start
            end = stop
    return days, first, end


def stretches(
    segments: tuple[Segment, ...], product: str, lo: int, hi: int
) -> list[tuple[int, int]]:
    """The stretches ``[start, end)`` in which ``product`` is active, clipped to ``[lo, hi)``."""
    out = []
    for seg in segments:
        if seg.product == product and not seg.suspended:
            start, stop = max(seg.start, lo), min(seg.end, hi)
            if stop > start:
                out.append((start, stop))
    return out


def prorate(fee: RecurringFee, days: int, period_days: int, step: int) -> int:
    """The fee for ``days`` of a period of ``period_days`` (cycle or year), rounded."""
    if fee.period is Period.DAILY:
        return round_ratio(fee.amount * days, 1, step)
    if fee.period is Period.WEEKLY:
        return round_ratio(fee.amount * days, 7, step)
    return round_ratio(fee.amount * days, period_days, step)


def share(fee: RecurringFee, days: int, period_days: int) -> str:
    """How ``prorate`` got its amount, in words (before the rounding)."""
    if fee.period is Period.DAILY:
        return f"{days} days × {fee.text}"
    if fee.period is Period.WEEKLY:
        return f"{days}/7 weeks of {fee.text}"
    return f"{days}/{period_days} days of {fee.text}"


@dataclass(frozen=True, slots=True)
class Run:
    """What billing one account's fees for one cycle needs; built once per account."""

    cycle: Span
    upcoming: Span
    bill_day: int
    currency: str
    step: int
    decimals: int
    rounding: str  # "half-even to 0.01"


class FeeBiller:
    """Lines of one subscription's recurring fees for one run (see the module doc)."""

    def __init__(
        self,
        run: Run,
        timeline: Timeline,
        billed: Mapping[tuple[str, str], int],
        advance: dict[tuple[str, str], int],
        out: list[InvoiceLine],
    ) -> None:
        self.run, self.timeline = run, timeline
        self.billed, self.advance, self.out = billed, advance, out

    def bill(self, product: Product, fee: RecurringFee) -> None:
        if fee.period is Period.YEARLY:
            if fee.timing is Timing.ADVANCE:
                self._yearly_advance(product, fee)
            else:
                self._yearly_arrears(product, fee)
        elif fee.timing is Timing.ADVANCE:
            self._cycle_advance(product, fee)
        else:
            self._cycle_arrears(product, fee)

    def _line(
        self,
        kind: LineKind,
        product: Product,
        fee: RecurringFee,
        amount: int,
        days: int,
        period: tuple[int, int],
        what: str,
        rule: str,
    ) -> None:
        self.out.append(
            InvoiceLine(
                kind=kind,
                description=f"{product.name} {fee.description}{what}",
                amount=amount,
                currency=self.run.currency,
                quantity=days,
                unit="days",
                product=product.id,
                subscription=self.timeline.subscription,
                period_start=day_text(period[0]),
                period_end=day_text(period[1]),
                rule=f"{rule}, {self.run.rounding}",
                fee=fee.id,
            )
        )

    def _cycle_arrears(self, product: Product, fee: RecurringFee) -> None:
        cycle = self.run.cycle
        days, first, end = active(self.timeline.segments, product.id, cycle.first, cycle.end)
        if days:
            amount = prorate(fee, days, cycle.days, self.run.step)
            rule = share(fee, days, cycle.days)
            self._line(RECURRING, product, fee, amount, days, (first, end), "", rule)

    def _cycle_advance(self, product: Product, fee: RecurringFee) -> None:
        run, key = self.run, (self.timeline.subscription, fee.id)
        cycle, upcoming = run.cycle, run.upcoming
        billed = self.billed.get(key, 0)
        days, first, end = active(self.timeline.segments, product.id, cycle.first, cycle.end)
        actual = prorate(fee, days, cycle.days, run.step) if days else 0
        if actual != billed:
            what = _correction_words(actual, billed)
            rule = f"{share(fee, days, cycle.days)} = {money_text(actual, run.decimals)}"
            rule += f", less {money_text(billed, run.decimals)} billed in advance"
            period = (first, end) if days else (cycle.first, cycle.end)
            self._line(PRORATION, product, fee, actual - billed, days, period, what, rule)
        days, first, end = active(self.timeline.segments, product.id, upcoming.first, upcoming.end)
        if days:
            amount = prorate(fee, days, upcoming.days, run.step)
            rule = share(fee, days, upcoming.days)
            self._line(RECURRING, product, fee, amount, days, (first, end), "", rule)
            self.advance[key] = amount

    def _year(self, index: int) -> tuple[int, int, int] | None:
        """The subscription year holding cycle ``index``: first, end, anniversary index."""
        anchor = index_of_day(self.timeline.start, self.run.bill_day)
        if index < anchor:
            return None
        year_index = anchor + (index - anchor) // 12 * 12
        first = span_of_index(year_index, self.run.bill_day).first
        return first, span_of_index(year_index + 12, self.run.bill_day).first, year_index

    def _yearly_advance(self, product: Product, fee: RecurringFee) -> None:
        run, key = self.run, (self.timeline.subscription, fee.id)
        cycle, segments = run.cycle, self.timeline.segments
        billed = self.billed.get(key, 0)
        year = self._year(cycle.index)
        expected = 0
        if (
            year is not None
            and year[2] == cycle.index
            and active(segments, product.id, cycle.first, cycle.first + 1)[0]
        ):
            expected = prorate(fee, 1, 1, run.step)
        if expected != billed:
            what = _correction_words(expected, billed)
            rule = f"whole year of {fee.text} = {money_text(expected, run.decimals)}"
            rule += f", less {money_text(billed, run.decimals)} billed in advance"
            period = (cycle.first, year[1]) if year else (cycle.first, cycle.end)
            self._line(PRORATION, product, fee, expected - billed, 0, period, what, rule)
        if year is not None:
            first, end, _ = year
            year_days = end - first
            for start, stop in stretches(segments, product.id, first, end):
                if start > first and cycle.first <= start < cycle.end:
                    days = end - start
                    amount = prorate(fee, days, year_days, run.step)
                    rule = "remaining " + share(fee, days, year_days)
                    what = f" from {day_text(start)}"
                    self._line(PRORATION, product, fee, amount, days, (start, end), what, rule)
                if stop < end and cycle.first <= stop < cycle.end:
                    days = end - stop
                    amount = -prorate(fee, days, year_days, run.step)
                    rule = "unused " + share(fee, days, year_days)
                    what = f": credit from {day_text(stop)}"
                    self._line(PRORATION, product, fee, amount, days, (stop, end), what, rule)
        upcoming = run.upcoming
        next_year = self._year(upcoming.index)
        if (
            next_year is not None
            and next_year[2] == upcoming.index
            and active(segments, product.id, upcoming.first, upcoming.first + 1)[0]
        ):
            amount = prorate(fee, 1, 1, run.step)
            days = next_year[1] - next_year[0]
            rule = f"{days}/{days} days of {fee.text}"
            self._line(RECURRING, product, fee, amount, days, next_year[:2], "", rule)
            self.advance[key] = amount

    def _yearly_arrears(self, product: Product, fee: RecurringFee) -> None:
        run, cycle = self.run, self.run.cycle
        year = self._year(cycle.index)
        if year is None:
            return
        first, end, anchor = year
        bill_at = anchor + 11
        ended = self.timeline.end
        if first < ended < end:
            bill_at = min(bill_at, index_of_day(ended, run.bill_day))
        if bill_at != cycle.index:
            return
        days, used_first, used_end = active(self.timeline.segments, product.id, first, end)
        if days:
            amount = prorate(fee, days, end - first, run.step)
            rule = share(fee, days, end - first)
            self._line(RECURRING, product, fee, amount, days, (used_first, used_end), "", rule)


def _correction_words(actual: int, billed: int) -> str:
    if not billed:
        return ", prorated"
    if actual < billed:
        return ": credit for days not used"
    return ": days added"


def leftover(
    run: Run, product: Product, fee: RecurringFee, subscription: str, billed: int
) -> InvoiceLine:
    """The credit of an advance billed for a fee that the subscription no longer has."""
    return InvoiceLine(
        kind=PRORATION,
        description=f"{product.name} {fee.description}: credit for days not used",
        amount=-billed,
        currency=run.currency,
        unit="days",
        product=product.id,
        subscription=subscription,
        period_start=day_text(run.cycle.first),
        period_end=day_text(run.cycle.end),
        rule=f"0 days used, less {money_text(billed, run.decimals)} billed in advance",
        fee=fee.id,
    )


def paid_period(
    timeline: Timeline, product: str, fee: RecurringFee, cycle: Span, bill_day: int
) -> tuple[int, int, int] | None:
    """Prepaid: the period of ``fee`` that starts being paid in ``cycle``, if any.

    A period (the cycle, or the subscription year for a yearly fee) is paid
    from the first day the fee is active in it to its end, and belongs to the
    cycle of that day: renewed at the start of the cycle when the fee is active
    on its first day, else caught up at the next renewal (a new subscription,
    a resume, a plan change within the period). Nothing is refunded when the
    fee stops within a paid period. Returns ``(first day, end, days of the
    period)``.
    """
    segments = timeline.segments
    if fee.period is not Period.YEARLY:
        days, first, _ = active(segments, product, cycle.first, cycle.end)
        return (first, cycle.end, cycle.days) if days else None
    anchor = index_of_day(timeline.start, bill_day)
    if cycle.index < anchor:
        return None
    year_index = anchor + (cycle.index - anchor) // 12 * 12
    year_first = span_of_index(year_index, bill_day).first
    year_end = span_of_index(year_index + 12, bill_day).first
    days, first, _ = active(segments, product, year_first, year_end)
    if days and cycle.first <= first < cycle.end:
        return first, year_end, year_end - year_first
    return None
