"""What one account used in one cycle, and the invoice lines it becomes.

:class:`UsageTotals` is the value :mod:`billing.usage` keeps under
``use/<account>\\0<cycle>``; :func:`usage_lines` turns it into USAGE and
LATE_USAGE lines (charged money rounded half-even to the currency's minor
unit, the rule stated on each line) and :func:`balances_consumed` into the
invoice's balances section.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from billing.exceptions import BillingError
from billing.model import BalanceConsumed, InvoiceLine, LineKind, Mode
from tariffs.model import Rounding
from tariffs.money import format_amount, round_nanos

KEY_SEP = "\x1f"  # between the parts of a sums key (names never contain it)
_ENC = msgspec.msgpack.Encoder()


class UsageRow(msgspec.Struct, array_like=True, gc=False, frozen=True):
    """Records of one category, zone and currency (and original cycle, for late rows)."""

    category: str
    zone: str
    currency: str
    records: int
    usage: int  # units of the category: seconds, bytes, messages
    cost: int  # nanos, as rated
    charged: int  # nanos paid from / owed to money balances
    covered: int  # usage units paid by bundles
    late_from: str = ""


class BalanceRow(msgspec.Struct, array_like=True, gc=False, frozen=True):
    balance: str
    unit: str
    consumed: int  # taken from the balance (debits)
    earned: int = 0  # added to it by usage (e.g. loyalty points)


class UsageTotals(msgspec.Struct, array_like=True, kw_only=True):
    """One account's usage in one cycle.

    Stored as sums by key (what each batch adds to in place); :attr:`usage`,
    :attr:`late` and :attr:`balances` are the sorted rows to read.
    """

    account: str
    cycle: str
    mode: Mode = Mode.POSTPAID  # the account's mode when usage was last added
    # "late_from␟category␟zone␟currency" → records, usage, cost, charged, covered
    sums: dict[str, tuple[int, int, int, int, int]] = msgspec.field(default_factory=dict)
    # "balance␟unit" → consumed, earned
    balance_sums: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)

    def _rows(self, late: bool) -> list[UsageRow]:
        rows = []
        for key, (records, used, cost, charged, covered) in sorted(self.sums.items()):
            late_from, category, zone, currency = key.split(KEY_SEP)
            if bool(late_from) == late:
                rows.append(UsageRow(category, zone, currency, records, used, cost, charged,
                                     covered, late_from))  # fmt: skip
        return rows

    @property
    def usage(self) -> list[UsageRow]:
        """Usage of this cycle, by category, zone and currency."""
        return self._rows(late=False)

    @property
    def late(self) -> list[UsageRow]:
        """Usage rated for closed earlier cycles, by original cycle, category, zone, currency."""
        return self._rows(late=True)

    @property
    def balances(self) -> list[BalanceRow]:
        out = []
        for key, (consumed, earned) in sorted(self.balance_sums.items()):
            balance, unit = key.split(KEY_SEP)
            out.append(BalanceRow(balance, unit, consumed, earned))
        return out

    @property
    def records(self) -> int:
        return sum(v[0] for v in self.sums.values())

    def charged(self) -> dict[str, int]:
        """Charged nanos per currency, late rows included."""
        out: dict[str, int] = {}
        for key, value in self.sums.items():
            currency = key.rsplit(KEY_SEP, 1)[1]
            out[currency] = out.get(currency, 0) + value[3]
        return out


def _minor(decimals: int) -> str:
    return "1" if decimals == 0 else "0." + "0" * (decimals - 1) + "1"


def line_of(row: UsageRow, decimals: Mapping[str, int], paid: bool) -> InvoiceLine:
    """One usage row's line, plainly: the slow twin of :func:`usage_lines`."""
    try:
        places = decimals[row.currency]
    except KeyError:
        msg = f"usage in {row.currency!r}: the catalog gives no minor unit for that currency"
        raise BillingError(msg) from None
    exact = format_amount(row.charged)
    covered = f"; {row.covered} units covered by bundles" if row.covered else ""
    paid_text = "; paid from balance" if paid else ""
    late = bool(row.late_from)
    what = f"{row.category} usage, {row.zone}" + (f" (late, rated for {row.late_from})"
                                                 if late else "")  # fmt: skip
    return InvoiceLine(
        kind=LineKind.LATE_USAGE if late else LineKind.USAGE,
        description=what, amount=round_nanos(row.charged, places, Rounding.HALF_EVEN),
        currency=row.currency,
        quantity=row.records, unit="records", usage=row.usage, category=row.category,
        zone=row.zone, late_from=row.late_from, paid_from_balance=paid,
        rule=(f"sum of {row.records} rated records ({exact} {row.currency}{covered}),"
              f" rounded half-even to {_minor(places)}{paid_text}"),
    )  # fmt: skip


def usage_lines(
    totals: UsageTotals, decimals: Mapping[str, int], mode: Mode | None = None
) -> list[InvoiceLine]:
    """USAGE lines by category and zone, then LATE_USAGE lines by original cycle.

    Amount: the charged money, rounded half-even to the currency's minor unit.
    Prepaid (``mode``, default the totals' mode): lines are already paid from
    balances (``paid_from_balance``), shown, not due.

    One pass over the sorted sums (keys of this cycle's usage start with the
    separator, so they sort before every late key): the lines :func:`line_of`
    makes of ``(*totals.usage, *totals.late)``, without building the rows.
    """
    paid = (mode or totals.mode) is Mode.PREPAID
    paid_text = "; paid from balance" if paid else ""
    out = []
    tails: dict[str, tuple[int, str]] = {}
    for key, (records, used, _, charged, covered) in sorted(totals.sums.items()):
        late_from, category, zone, currency = key.split(KEY_SEP)
        tail = tails.get(currency)
        if tail is None:
            try:
                places = decimals[currency]
            except KeyError:
                msg = f"usage in {currency!r}: the catalog gives no minor unit for that currency"
                raise BillingError(msg) from None
            tail = tails[currency] = (places, f" rounded half-even to {_minor(places)}{paid_text}")
        bundles = f"; {covered} units covered by bundles" if covered else ""
        out.append(InvoiceLine(
            kind=LineKind.LATE_USAGE if late_from else LineKind.USAGE,
            description=(f"{category} usage, {zone} (late, rated for {late_from})" if late_from
                         else f"{category} usage, {zone}"),
            amount=round_nanos(charged, tail[0], Rounding.HALF_EVEN), currency=currency,
            quantity=records, unit="records", usage=used, category=category, zone=zone,
            late_from=late_from, paid_from_balance=paid,
            rule=(f"sum of {records} rated records ({format_amount(charged)} {currency}"
                  f"{bundles}),{tail[1]}"),
        ))  # fmt: skip
    return out


def balances_consumed(totals: UsageTotals) -> list[BalanceConsumed]:
    """What usage took from each balance in the cycle (balances it only added to: left out)."""
    return [BalanceConsumed(b.balance, b.unit, b.consumed) for b in totals.balances if b.consumed]
