"""Loyalty: points earned on the money paid, and the offers they are redeemed for.

The rules are data (``balances/samples/loyalty.toml`` is the tutorial):

```toml
[earn]                   # points per whole currency unit paid, by category
call = 10
[redeem.credit_5]        # an offer: 500 points buy 5 EUR of credit
points = 500
unit = "EUR"
amount = "5"             # in whole units of `unit`: a string for money, exact
[redeem.hour_of_calls]   # items count their measure: 3600 voice seconds
points = 800
unit = "voice_seconds"
amount = 3600
```

``earn`` is what :class:`balances.debit.Debitor` takes (``earn=rules.earn``):
the debit kernel credits the points to the account's first points balance.
:func:`redeem_points` takes an offer's points from the account's points
balances (in paying order, only those valid at the time) and credits the
offer's value where :mod:`balances.vouchers` says a credit lands, journaling
both sides as ``loyalty_redeemed``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import msgspec

from balances.exceptions import LoyaltyError, NotEnoughPointsError, UnknownOfferError
from balances.ledger import JournalEntry, Ledger
from balances.model import Account, Balance, Measure
from balances.state import micros
from balances.units import UnitCatalog
from balances.vouchers import (
    INT64_MAX,
    apply_credit,
    plan_credit,
    require_account,
)

SAMPLE_LOYALTY = Path(__file__).parent / "samples" / "loyalty.toml"


class Offer(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    points: int  # what it costs, in ``points_unit``
    unit: str  # what it gives …
    amount: int  # … in the unit's amounts (10**-decimals of it)
    points_unit: str = "points"


class LoyaltyRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    earn: dict[str, int]  # points per whole currency unit paid, by category
    offers: dict[str, Offer]

    def offer(self, name: str) -> Offer:
        found = self.offers.get(name)
        if found is None:
            known = ", ".join(sorted(self.offers)) or "none"
            msg = f"unknown loyalty offer {name!r} (offers: {known})"
            raise UnknownOfferError(msg)
        return found


class _OfferFile(msgspec.Struct, forbid_unknown_fields=True):
    points: int
    unit: str
    amount: int | str | float  # whole units of `unit`; a float is refused with advice
    points_unit: str = "points"


class _RulesFile(msgspec.Struct, forbid_unknown_fields=True):
    earn: dict[str, int] = {}
    redeem: dict[str, _OfferFile] = {}


def load_loyalty(units: UnitCatalog, path: Path = SAMPLE_LOYALTY) -> LoyaltyRules:
    """Read loyalty rules; every problem names the file and the key."""
    try:
        raw = msgspec.toml.decode(path.read_bytes(), type=_RulesFile)
    except (OSError, msgspec.DecodeError) as exc:
        msg = f"{path}: cannot read the loyalty rules: {exc}"
        raise LoyaltyError(msg) from exc
    for category, per_unit in raw.earn.items():
        if per_unit < 0:
            msg = f"{path}: earn.{category}: {per_unit} points per unit is negative"
            raise LoyaltyError(msg)
    offers = {
        name: _offer(units, f"{path}: redeem.{name}", name, o) for name, o in raw.redeem.items()
    }
    return LoyaltyRules(earn=dict(raw.earn), offers=offers)


def _offer(units: UnitCatalog, where: str, name: str, raw: _OfferFile) -> Offer:
    problem = ""
    if raw.unit not in units.index:
        problem = f"unit: unknown unit {raw.unit!r} (known: {', '.join(sorted(units.index))})"
    elif raw.points_unit not in units.index or units[raw.points_unit].measure is not Measure.POINTS:
        problem = f"points_unit: {raw.points_unit!r} is not a unit of measure points"
    elif raw.points <= 0:
        problem = f"points: {raw.points} must be positive"
    elif isinstance(raw.amount, float):
        problem = f'amount: {raw.amount} is a float; write it as a string ("{raw.amount}"), exact'
    if problem:
        msg = f"{where}.{problem}"
        raise LoyaltyError(msg)
    amount = scaled_amount(str(raw.amount), units[raw.unit].decimals, f"{where}.amount")
    return Offer(
        name=name, points=raw.points, unit=raw.unit, amount=amount, points_unit=raw.points_unit
    )


def scaled_amount(text: int | str, decimals: int, where: str) -> int:
    """``text`` whole units as an integer of 10**-decimals units, exactly, in 1..2**63-1."""
    try:
        sign, digits, exponent = Decimal(str(text).strip()).as_tuple()
    except InvalidOperation:
        msg = f"{where}: {text!r} is not a decimal amount"
        raise LoyaltyError(msg) from None
    if not isinstance(exponent, int):
        msg = f"{where}: {text!r} is not a finite amount"
        raise LoyaltyError(msg)
    number = int("".join(map(str, digits)))
    while exponent < 0 and number % 10 == 0 and number:  # 5.10 is 5.1
        number, exponent = number // 10, exponent + 1
    if exponent + decimals < 0 and number:
        msg = f"{where}: {text!r} has more decimals than the unit's {decimals}"
        raise LoyaltyError(msg)
    scale: int = 10 ** max(exponent + decimals, 0)  # exponent + decimals >= 0 here
    value = number * scale
    if sign or not 0 < value <= INT64_MAX:
        msg = f"{where}: {text!r} must be positive and at most {INT64_MAX} amount units"
        raise LoyaltyError(msg)
    return value


def redeem_points(
    ledger: Ledger,
    account_id: str,
    offer: Offer,
    *,
    op_id: str,
    at: datetime | None = None,
) -> list[JournalEntry]:
    """Buy ``offer`` with the account's points at ``at`` (default now), once per ``op_id``.

    Returns the journal entries: the points taken (one per points balance it
    drew on), then the credit. Either all of them happen or, with an error,
    nothing does; the same ``op_id`` again returns the first result.
    """
    when = at or datetime.now(UTC)
    at_us = micros(when, 0)
    key: list[str | int] = [account_id, offer.name, offer.points, offer.points_unit, offer.unit,
                            offer.amount]  # fmt: skip
    first = ledger.replayed(op_id, "loyalty", key)
    if first is not None:
        return first
    account = require_account(ledger, account_id)
    takes = _take(ledger, account, offer, at_us)
    new = Balance(id=f"loyalty:{offer.name}", unit=offer.unit)
    credit = plan_credit(ledger, account, offer.unit, offer.amount, at_us=at_us, new=new)
    # Nothing below can fail: the plan found a free balance id and a known unit.
    entries = [ledger.change(row, -n, "loyalty_redeemed", op_id, at_us=at_us) for row, n in takes]
    entries.append(apply_credit(ledger, credit, "loyalty_redeemed", op_id, at_us))
    ledger.remember_op(op_id, "loyalty", key, entries)
    return entries


def _take(ledger: Ledger, account: Account, offer: Offer, at_us: int) -> list[tuple[int, int]]:
    """(balance row, points) to take for ``offer``, in paying order; refuses if short."""
    state = ledger.state
    bal = state.bal.arrays
    unit = state.units.require(offer.points_unit)
    takes, wanted = [], offer.points
    for row in state.chain(state.row_of(account.id)):
        if int(bal["unit"][row]) != unit or not bal["from"][row] <= at_us < bal["until"][row]:
            continue
        n = min(int(bal["amount"][row] - bal["reserved"][row]), wanted)
        if n > 0:
            takes.append((row, n))
            wanted -= n
    if wanted > 0:
        held = offer.points - wanted
        msg = (
            f"account {account.id!r} holds {held} usable {offer.points_unit}; offer"
            f" {offer.name!r} costs {offer.points}"
        )
        raise NotEnoughPointsError(msg)
    return takes
