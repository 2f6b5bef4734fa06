"""The product catalog: what an operator sells besides usage, read from a TOML file.

``billing/samples/catalog.toml`` is the tutorial; this is the reference.

.. code-block:: toml

    [catalog]
    name = "ratewire demo mobile"

    [currencies]                      # currency = minor decimals (what an invoice line rounds to)
    EUR = 2
    XOF = 0

    [products.MOBILE_M]
    name = "Mobile M"
    currency = "EUR"                  # every price of the product is in this currency
    commitment = "0"                  # optional: minimum usage spend per cycle
    on_subscribe = ["ACTIVATION"]     # optional: one-time fees charged on the subscribe day

    [products.MOBILE_M.recurring.M_MONTHLY]   # fee ids are unique in the whole catalog
    description = "monthly fee"
    amount = "20.00"                  # decimal text, parsed exactly (at most 9 decimals)
    period = "monthly"                # daily | weekly | monthly | yearly
    timing = "advance"                # advance (next cycle, billed now) | arrears (this cycle)

    [products.MOBILE_M.allowances.M_MINUTES]  # becomes a balance every cycle
    unit = "voice_seconds"            # a unit of balances/samples/units.toml
    amount = "500m"                   # item units: 30000, "500m", "10GB"; money units: "5.00"
    categories = ["call"]             # optional filter: rating categories it pays for
    weight = 10                       # optional: higher pays first

    [one_time.ACTIVATION]
    description = "SIM activation"
    amount = "9.99"
    currency = "EUR"
    taxable = true                    # optional (default true)

    [promotions.WELCOME50]
    description = "Welcome offer: 50% off the plan"
    percent = "50"                    # or: amount = "5.00" with currency = "EUR" (fixed)
    products = ["MOBILE_M"]           # optional: empty means any product
    fees = []                         # optional: only these recurring fees
    segments = ["consumer"]           # optional: only accounts of these segments
    valid_from = "2026-01-01"         # optional: the first day on the product must be in
    valid_to = "2026-12-31"           #   [valid_from, valid_to] (both inclusive)
    cycles = 3                        # optional: the first N cycles on the product (0 = all)

    [taxes]                           # region = { rate name = percent text }
    DE = { VAT = "19" }

Amounts and percents are decimal text (a TOML float is refused: it is binary).
Nothing of a catalog that fails to load is used: :class:`CatalogError` names the
file and the key (``products.MOBILE_M.recurring.M_MONTHLY.amount: ...``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import msgspec

from balances.exceptions import BalanceError
from balances.model import Measure
from balances.units import UnitCatalog, load_units
from billing.exceptions import CatalogError
from tariffs.exceptions import TariffError
from tariffs.money import NANO_DECIMALS, parse_amount
from tariffs.native import parse_quantity

T = TypeVar("T")
SAMPLE_CATALOG = Path(__file__).parent / "samples" / "catalog.toml"
NANOS = 10**NANO_DECIMALS
HUNDRED_PERCENT = 100 * NANOS
Text = str | int | float  # float only to refuse it with a clear message


class Period(enum.Enum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    YEARLY = "yearly"


class Timing(enum.Enum):
    ADVANCE = "advance"
    ARREARS = "arrears"


@dataclass(frozen=True, slots=True)
class RecurringFee:
    id: str
    product: str
    description: str
    amount: int  # nanos
    period: Period
    timing: Timing
    text: str  # the amount as printed on rules, e.g. "30.00 EUR"


@dataclass(frozen=True, slots=True)
class Allowance:
    id: str
    product: str
    unit: str
    amount: int  # in the unit's integer amount (seconds, bytes, nanos …)
    categories: tuple[str, ...]
    weight: int
    description: str


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    currency: str
    recurring: tuple[RecurringFee, ...]
    allowances: tuple[Allowance, ...]
    commitment: int  # nanos of minimum usage spend per cycle; 0 for none
    on_subscribe: tuple[str, ...]  # one-time fee ids


@dataclass(frozen=True, slots=True)
class OneTimeFee:
    id: str
    description: str
    amount: int
    currency: str
    taxable: bool


@dataclass(frozen=True, slots=True)
class Promotion:
    id: str
    description: str
    percent: int  # nanos of a percent ("50" → 50 * 10**9); 0 for a fixed discount
    amount: int  # nanos off per invoice and subscription; 0 for a percentage
    currency: str  # of ``amount``
    products: frozenset[str]  # empty: any
    fees: frozenset[str]
    segments: frozenset[str]
    valid_from: int  # date ordinals, inclusive
    valid_to: int
    cycles: int  # 0: unlimited
    text: str  # "50%" or "5.00 EUR"


@dataclass(frozen=True, slots=True)
class TaxRate:
    name: str
    percent: int  # nanos of a percent
    text: str  # as written: "19", "7.5"


class Catalog:
    """A loaded catalog: parsed amounts and lookups, built once and shared by every account."""

    def __init__(
        self,
        name: str,
        source: str,
        decimals: Mapping[str, int],
        products: Mapping[str, Product],
        one_time: Mapping[str, OneTimeFee],
        promotions: tuple[Promotion, ...],
        taxes: Mapping[str, tuple[TaxRate, ...]],
    ) -> None:
        self.name, self.source = name, source
        self.decimals = dict(decimals)
        self.products = dict(products)
        self.one_time = dict(one_time)
        self.promotions = promotions
        self.taxes = dict(taxes)
        self.fees = {f.id: f for p in products.values() for f in p.recurring}
        self.steps: dict[str, int] = {c: _step(d) for c, d in decimals.items()}
        self.rounding = {
            c: f"half-even to {money_text(self.steps[c], d)}" for c, d in decimals.items()
        }
        self.committed = frozenset(p.id for p in products.values() if p.commitment)
        self.promoted = frozenset(
            pid for pid in products if any(not m.products or pid in m.products for m in promotions)
        )

    def minor_decimals(self, currency: str) -> int:
        """Decimals of ``currency``'s minor unit (EUR 2, XOF 0)."""
        found = self.decimals.get(currency)
        if found is None:
            msg = f"{self.source}: currency {currency!r} is not in [currencies]"
            raise CatalogError(msg)
        return found

    def step(self, currency: str) -> int:
        """Nanos in one minor unit of ``currency`` (10**7 for EUR)."""
        self.minor_decimals(currency)
        return self.steps[currency]


def _step(decimals: int) -> int:
    step: int = 10 ** (NANO_DECIMALS - decimals)
    return step


@lru_cache(maxsize=65_536)
def money_text(nanos: int, decimals: int) -> str:
    """Nanos as decimal text with at least ``decimals`` places: ``30.00``, ``0.495``, ``19650``."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS)
    digits = f"{frac:09d}".rstrip("0")
    digits = digits.ljust(decimals, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


# --- the file's shape ---------------------------------------------------------------


class _Header(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str = ""


class _File(msgspec.Struct, forbid_unknown_fields=True):
    # Named tables are converted entry by entry so that an error names the entry.
    catalog: _Header
    currencies: dict[str, object]
    products: dict[str, object] = {}
    one_time: dict[str, object] = {}
    promotions: dict[str, object] = {}
    taxes: dict[str, object] = {}


class _Product(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    currency: str
    description: str = ""
    commitment: Text = "0"
    on_subscribe: list[str] = []
    recurring: dict[str, object] = {}
    allowances: dict[str, object] = {}


class _Recurring(msgspec.Struct, forbid_unknown_fields=True):
    amount: Text
    period: Period
    timing: Timing
    description: str = ""


class _Allowance(msgspec.Struct, forbid_unknown_fields=True):
    unit: str
    amount: Text
    categories: list[str] = []
    weight: int = 10
    description: str = ""


class _OneTime(msgspec.Struct, forbid_unknown_fields=True):
    description: str
    amount: Text
    currency: str
    taxable: bool = True


class _Promotion(msgspec.Struct, forbid_unknown_fields=True):
    description: str
    percent: Text | None = None
    amount: Text | None = None
    currency: str = ""
    products: list[str] = []
    fees: list[str] = []
    segments: list[str] = []
    valid_from: str = "1970-01-01"
    valid_to: str = "9999-12-31"
    cycles: int = 0


# --- loading --------------------------------------------------------------------------


def load_catalog(path: Path = SAMPLE_CATALOG, units: UnitCatalog | None = None) -> Catalog:
    """Read and check a catalog file; :class:`CatalogError` names the file and the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the catalog: {exc}"
        raise CatalogError(msg) from exc
    return loads_catalog(data, source=str(path), units=units)


def loads_catalog(
    data: str | bytes, *, source: str = "<catalog>", units: UnitCatalog | None = None
) -> Catalog:
    try:
        raw = msgspec.toml.decode(data, type=_File)
    except msgspec.ValidationError as exc:
        msg = f"{source}: {_explain('', exc)}"
        raise CatalogError(msg) from exc
    except msgspec.DecodeError as exc:
        msg = f"{source}: not a TOML catalog: {exc}"
        raise CatalogError(msg) from exc
    try:
        return _Loader(raw, source, units or load_units()).catalog()
    except _Bad as exc:
        msg = f"{source}: {exc}"
        raise CatalogError(msg) from None


class _Bad(Exception):
    """A problem at a key; ``load_catalog`` adds the file name."""


def _entry(value: object, type_: type[T], where: str) -> T:
    try:
        return msgspec.convert(value, type=type_)
    except msgspec.ValidationError as exc:
        raise _Bad(_explain(where, exc)) from exc


def _explain(where: str, exc: msgspec.ValidationError) -> str:
    """Turn msgspec's "problem - at `$.a.b`" into "where.a.b: problem"."""
    problem, _, path = str(exc).partition(" - at `$")
    where = (where + path.rstrip("`")).lstrip(".")
    return f"{where}: {problem}" if where else problem


def _amount(value: Text, where: str) -> int:
    if isinstance(value, float):
        msg = f'{where}: {value!r} is a TOML float; write amounts as text, e.g. "{value}"'
        raise _Bad(msg)
    try:
        nanos = parse_amount(value, where)
    except TariffError as exc:
        raise _Bad(str(exc)) from None
    if nanos < 0:
        msg = f"{where}: {value!r} is negative"
        raise _Bad(msg)
    return nanos


def _percent(value: Text, where: str) -> int:
    nanos = _amount(value, where)
    if nanos > HUNDRED_PERCENT:
        msg = f"{where}: {value!r} is more than 100 percent"
        raise _Bad(msg)
    return nanos


def _day(text: str, where: str) -> int:
    try:
        return date.fromisoformat(text).toordinal()
    except ValueError:
        msg = f"{where}: {text!r} is not an ISO date (YYYY-MM-DD)"
        raise _Bad(msg) from None


class _Loader:
    def __init__(self, raw: _File, source: str, units: UnitCatalog) -> None:
        self.raw, self.source, self.units = raw, source, units
        self.decimals: dict[str, int] = {}
        self.fee_ids: set[str] = set()

    def catalog(self) -> Catalog:
        for code, value in self.raw.currencies.items():
            self.decimals[code] = self._currency_entry(code, value)
        one_time = {k: self._one_time(k, v) for k, v in self.raw.one_time.items()}
        products = {k: self._product(k, v, one_time) for k, v in self.raw.products.items()}
        promotions = tuple(self._promotion(k, v, products) for k, v in self.raw.promotions.items())
        taxes = {k: self._taxes(k, v) for k, v in self.raw.taxes.items()}
        name = self.raw.catalog.name
        return Catalog(name, self.source, self.decimals, products, one_time, promotions, taxes)

    def _currency_entry(self, code: str, value: object) -> int:
        where = f"currencies.{code}"
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
            msg = f"{where}: minor decimals must be an integer 0..9, not {value!r}"
            raise _Bad(msg)
        try:
            self.units.money(code)
        except BalanceError as exc:
            msg = f"{where}: {exc}"
            raise _Bad(msg) from None
        return value

    def _currency(self, code: str, where: str) -> str:
        if code not in self.decimals:
            msg = f"{where}: currency {code!r} is not in [currencies] ({', '.join(self.decimals)})"
            raise _Bad(msg)
        return code

    def _new_fee_id(self, fee_id: str, where: str) -> None:
        if fee_id in self.fee_ids:
            msg = f"{where}: fee id {fee_id!r} is used twice (fee ids are unique in a catalog)"
            raise _Bad(msg)
        self.fee_ids.add(fee_id)

    def _one_time(self, key: str, value: object) -> OneTimeFee:
        where = f"one_time.{key}"
        raw = _entry(value, _OneTime, where)
        self._new_fee_id(key, where)
        currency = self._currency(raw.currency, f"{where}.currency")
        amount = _amount(raw.amount, f"{where}.amount")
        return OneTimeFee(key, raw.description, amount, currency, raw.taxable)

    def _product(self, key: str, value: object, one_time: Mapping[str, OneTimeFee]) -> Product:
        where = f"products.{key}"
        raw = _entry(value, _Product, where)
        currency = self._currency(raw.currency, f"{where}.currency")
        for fee in raw.on_subscribe:
            if fee not in one_time:
                msg = f"{where}.on_subscribe: {fee!r} is not in [one_time]"
                raise _Bad(msg)
        decimals = self.decimals[currency]
        recurring = []
        for fee_id, fee_value in raw.recurring.items():
            fee_where = f"{where}.recurring.{fee_id}"
            spec = _entry(fee_value, _Recurring, fee_where)
            self._new_fee_id(fee_id, fee_where)
            amount = _amount(spec.amount, f"{fee_where}.amount")
            text = f"{money_text(amount, decimals)} {currency}"
            description = spec.description or f"{spec.period.value} fee"
            recurring.append(
                RecurringFee(fee_id, key, description, amount, spec.period, spec.timing, text)
            )
        allowances = tuple(
            self._allowance(key, a_id, a_value, f"{where}.allowances.{a_id}")
            for a_id, a_value in raw.allowances.items()
        )
        commitment = _amount(raw.commitment, f"{where}.commitment")
        on_subscribe = tuple(raw.on_subscribe)
        return Product(
            key, raw.name, currency, tuple(recurring), allowances, commitment, on_subscribe
        )

    def _allowance(self, product: str, key: str, value: object, where: str) -> Allowance:
        raw = _entry(value, _Allowance, where)
        try:
            unit = self.units[raw.unit]
        except BalanceError as exc:
            msg = f"{where}.unit: {exc}"
            raise _Bad(msg) from None
        if isinstance(raw.amount, float):
            msg = f"{where}.amount: {raw.amount!r} is a TOML float; write it as text or an integer"
            raise _Bad(msg)
        if unit.measure is Measure.MONEY:
            amount = _scaled(raw.amount, unit.decimals, f"{where}.amount")
        else:
            try:
                amount = parse_quantity(raw.amount, f"{where}.amount")
            except TariffError as exc:
                raise _Bad(str(exc)) from None
        if amount <= 0:
            msg = f"{where}.amount: must be more than 0"
            raise _Bad(msg)
        description = raw.description or key
        return Allowance(
            key, product, raw.unit, amount, tuple(raw.categories), raw.weight, description
        )

    def _promotion(self, key: str, value: object, products: Mapping[str, Product]) -> Promotion:
        where = f"promotions.{key}"
        raw = _entry(value, _Promotion, where)
        if (raw.percent is None) == (raw.amount is None):
            msg = f"{where}: give exactly one of percent (a percentage) or amount (fixed)"
            raise _Bad(msg)
        percent = amount = 0
        currency = ""
        if raw.percent is not None:
            percent = _percent(raw.percent, f"{where}.percent")
            text = f"{raw.percent}%"
        else:
            assert raw.amount is not None
            currency = self._currency(raw.currency, f"{where}.currency")
            amount = _amount(raw.amount, f"{where}.amount")
            text = f"{money_text(amount, self.decimals[currency])} {currency}"
        for product in raw.products:
            if product not in products:
                msg = f"{where}.products: {product!r} is not in [products]"
                raise _Bad(msg)
        known_fees = {f.id for p in products.values() for f in p.recurring}
        for fee in raw.fees:
            if fee not in known_fees:
                msg = f"{where}.fees: {fee!r} is not a recurring fee of any product"
                raise _Bad(msg)
        if raw.cycles < 0:
            msg = f"{where}.cycles: {raw.cycles} is negative"
            raise _Bad(msg)
        first = _day(raw.valid_from, f"{where}.valid_from")
        last = _day(raw.valid_to, f"{where}.valid_to")
        if last < first:
            msg = f"{where}.valid_to: {raw.valid_to} is before valid_from {raw.valid_from}"
            raise _Bad(msg)
        return Promotion(
            key,
            raw.description,
            percent,
            amount,
            currency,
            frozenset(raw.products),
            frozenset(raw.fees),
            frozenset(raw.segments),
            first,
            last,
            raw.cycles,
            text,
        )

    def _taxes(self, region: str, value: object) -> tuple[TaxRate, ...]:
        where = f"taxes.{region}"
        rates = _entry(value, dict[str, Text], where)
        return tuple(
            TaxRate(name, _percent(text, f"{where}.{name}"), str(text))
            for name, text in rates.items()
        )


def _scaled(value: str | int, decimals: int, where: str) -> int:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        msg = f"{where}: {value!r} is not a decimal amount"
        raise _Bad(msg) from None
    scaled = number.scaleb(decimals)
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        msg = f"{where}: {value!r} has more than {decimals} decimals"
        raise _Bad(msg)
    return int(scaled)
