"""Load-test scenarios: what a network's day of usage looks like, seeded and declarative.

A :class:`Scenario` says how many accounts there are and how they pay
(prepaid, postpaid, hybrid shares, credit limits, opening balances), how
unevenly they are active (Zipf), the service mix, call durations and data
volumes (log-normal), where calls and SMS go (destination groups of number
prefixes, some of them priced by no plan on purpose), the daily curve, and
the shares of malformed messages and resent records. The same scenario and
seed give the same traffic (:mod:`loadtest.generator`) and the same accounts
(:mod:`loadtest.accounts`).

Scenarios are written in TOML and read by :func:`load_scenario`; the
samples in ``loadtest/samples/`` are the tutorial (``network.toml``: a
national mobile operator's day against ``tariffs/samples/mobile.toml``;
``smoke.toml``: small and quick). ``Scenario()`` built in Python keeps the
defaults the demo and the older tests were written against.

Two layouts draw the records (see :mod:`loadtest.generator`): ``day`` draws
each simulated day in one go (the historical generator, kept record for
record) and ``stream`` draws each record from its own position, so any slice
of a long run is as cheap as its size.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, NoReturn

import numpy as np

from balances.exceptions import BalanceError
from balances.model import Balance, Filter, Measure, Mode
from balances.units import UnitCatalog, load_units
from engine.columns import KIND_DATA, KIND_EVENT, KIND_NAMES, KIND_SMS, KIND_VOICE
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR
from loadtest.exceptions import ScenarioError
from tariffs.exceptions import TariffError
from tariffs.money import parse_amount
from tariffs.native import parse_quantity

TENANT = "ratewire.demo"
EUR = 1_000_000_000  # amount units of EUR (nanos)
Layout = Literal["day", "stream"]

# The historical traffic of ``Scenario()``: (prefix, share) of called numbers ("999" is
# priced by no plan), (kind, category, share) of services, and the hourly weights of a day
DESTINATIONS = (
    ("4930", 0.30), ("4915", 0.20), ("4917", 0.15), ("49800", 0.02), ("49900", 0.01),
    ("33", 0.08), ("44", 0.07), ("1", 0.06), ("86", 0.04), ("234", 0.03), ("999", 0.04),
)  # fmt: skip
SERVICES = ((KIND_VOICE, "call", 0.45), (KIND_SMS, "sms", 0.25), (KIND_DATA, "data", 0.25),
            (KIND_EVENT, "video", 0.05))  # fmt: skip
DAILY_CURVE = np.array([2, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 11, 10, 10, 10, 11, 12, 14, 12,
                        10, 8, 6, 4], dtype=np.float64)  # fmt: skip
DAILY_CURVE.setflags(write=False)

MALFORMED_KINDS: Final = {
    "truncated": DECODE_ERROR,  # a record's JSON cut short
    "not_json": DECODE_ERROR,  # a record written as {key=value, …} (a toString, not JSON)
    "wrong_type": VALIDATION_ERROR,  # usage as a string
    "negative_usage": VALIDATION_ERROR,
    "missing_account": VALIDATION_ERROR,  # neither account nor subscriber
    "missing_cdr_id": VALIDATION_ERROR,
    "unknown_type": VALIDATION_ERROR,  # "type": "fax"
    "naive_start": VALIDATION_ERROR,  # a start time without UTC offset
}
"""Each kind of malformed message and the reject reason a message of it gets."""


@dataclass(frozen=True, slots=True)
class Service:
    """A share of the records: their kind (KIND_*) and category (the plan's profile key)."""

    category: str
    kind: int
    share: float


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Log-normal usage: half the values are below ``median``; ``sigma`` widens the tail."""

    median: float
    sigma: float
    cap: int | None = None  # values above are cut to it (a switch's longest call)

    @property
    def mu(self) -> float:
        return math.log(self.median)


@dataclass(frozen=True, slots=True)
class DestinationGroup:
    """Called numbers: ``prefixes`` (each with its share of all calls and SMS) and
    ``digits`` random digits after the prefix.

    ``unpriced_for`` names the categories no plan prices for these numbers:
    those records are expected to be rejected (``UNAUTHORIZED_DESTINATION``).
    """

    name: str
    prefixes: tuple[str, ...]
    shares: tuple[float, ...]
    digits: int = 7
    unpriced_for: tuple[str, ...] = ()

    @property
    def share(self) -> float:
        return sum(self.shares)


@dataclass(frozen=True, slots=True)
class ModePlan:
    """A share of the accounts that pay one way, with their credit limit and bundles."""

    mode: Mode
    share: float
    credit_limit: int = 0  # in the currency's amount units
    balances: tuple[Balance, ...] = ()


NATIONAL = Filter(destinations=("GERMANY", "DE_MOBILE"))
_BUNDLES = (
    Balance(id="free-minutes", unit="voice_seconds", amount=1800, weight=10, filter=NATIONAL),
    Balance(id="data", unit="data_bytes", amount=1_000_000_000, weight=10),
    Balance(id="credit", unit="EUR", amount=5 * EUR, weight=5),
)
_GROUPS = (
    DestinationGroup("national_fixed", ("4930",), (0.30,)),
    DestinationGroup("mobile", ("4915", "4917"), (0.20, 0.15)),
    DestinationGroup("freephone", ("49800",), (0.02,)),
    DestinationGroup("premium", ("49900",), (0.01,)),
    DestinationGroup("international_europe", ("33", "44"), (0.08, 0.07)),
    DestinationGroup("international_world", ("1", "86", "234"), (0.06, 0.04, 0.03)),
    DestinationGroup("unknown", ("999",), (0.04,), unpriced_for=("call",)),
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A day of a network's usage (``records`` per simulated day) and its accounts."""

    records: int = 100_000
    accounts: int = 10_000
    day: datetime = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday; hour 0 of the daily curve
    seed: int = 2026
    # activity skew: layout "day" draws numpy's unbounded Zipf (> 1) folded onto the
    # accounts; "stream" a bounded Zipf over the accounts (P(rank k) ∝ k**-zipf, any ≥ 0)
    zipf: float = 1.2
    layout: Layout = "day"
    name: str = "default"
    tenant: str = TENANT
    currency: str = "EUR"
    services: tuple[Service, ...] = tuple(Service(c, k, s) for k, c, s in SERVICES)
    calls: LogNormal = LogNormal(median=math.exp(4.0), sigma=1.1, cap=4 * 3600)  # seconds
    sessions: LogNormal = LogNormal(median=math.exp(14.5), sigma=1.5)  # bytes per record
    destinations: tuple[DestinationGroup, ...] = _GROUPS
    daily_curve: tuple[float, ...] = tuple(DAILY_CURVE.tolist())  # weight of each hour
    modes: tuple[ModePlan, ...] = (
        ModePlan(Mode.POSTPAID, 1 / 3, 50 * EUR, _BUNDLES),
        ModePlan(Mode.PREPAID, 2 / 3, 50 * EUR, _BUNDLES),
    )
    malformed: float = 0.0  # share of messages that are malformed
    duplicates: float = 0.0  # share of messages that resend an earlier record
    resend_window: int = 1_000  # a resend repeats one of the this many messages before it
    malformed_kinds: tuple[str, ...] = tuple(MALFORMED_KINDS)

    def __post_init__(self) -> None:
        _check(self)

    @property
    def called(self) -> list[tuple[str, float, int]]:
        """(prefix, share, group index) of every called-number prefix, in order."""
        return [(p, s, g) for g, grp in enumerate(self.destinations)
                for p, s in zip(grp.prefixes, grp.shares, strict=True)]  # fmt: skip


def _check(s: Scenario) -> None:
    def fail(text: str) -> NoReturn:
        msg = f"scenario {s.name!r}: {text}"
        raise ScenarioError(msg)

    if s.records < 0 or s.accounts < 1 or s.seed < 0:
        fail("records must be >= 0, accounts >= 1 and seed >= 0")
    if s.day.tzinfo is None:
        fail(f"day {s.day.isoformat()} has no UTC offset; add one, e.g. +01:00")
    if s.layout not in ("day", "stream"):
        fail(f"layout {s.layout!r} is unknown; use 'day' or 'stream'")
    if (s.layout == "day" and s.zipf <= 1) or s.zipf < 0:
        fail(f"zipf {s.zipf} must be > 1 with layout 'day' (>= 0 with 'stream')")
    _shares(fail, "services", [x.share for x in s.services])
    _shares(fail, "destinations", [p for g in s.destinations for p in g.shares])
    _shares(fail, "modes", [m.share for m in s.modes])
    if len(s.daily_curve) != 24:
        fail(f"daily_curve has {len(s.daily_curve)} weights, expected 24 (one per hour)")
    _shares(fail, "daily_curve", list(s.daily_curve))
    if len({x.category for x in s.services}) < len(s.services):
        fail("services: a category is listed twice")
    if any(not 0 <= x.kind < len(KIND_NAMES) for x in s.services):
        fail(f"services: a kind is not one of {', '.join(KIND_NAMES)}")
    for group in s.destinations:
        if len(group.prefixes) != len(group.shares) or not group.prefixes:
            fail(f"destinations {group.name}: needs prefixes, each with a share")
        if not all(p.isdigit() for p in group.prefixes) or not 1 <= group.digits <= 15:
            fail(f"destinations {group.name}: prefixes are digits, digits is 1..15")
        if max(map(len, group.prefixes)) + group.digits > 18:
            fail(f"destinations {group.name}: a number is at most 18 digits (prefix and digits)")
    for name, dist in (("calls", s.calls), ("sessions", s.sessions)):
        if not dist.median > 0 or not dist.sigma >= 0 or (dist.cap is not None and dist.cap < 1):
            fail(f"{name}: median must be > 0, sigma >= 0 and cap >= 1")
    if not (s.malformed >= 0 and s.duplicates >= 0 and s.malformed + s.duplicates < 1):
        fail("malformed and duplicates are shares >= 0 that add up to less than 1")
    if s.resend_window < 1:
        fail(f"resend_window must be >= 1, got {s.resend_window}")
    unknown = sorted(set(s.malformed_kinds) - set(MALFORMED_KINDS))
    if unknown or (s.malformed > 0 and not s.malformed_kinds):
        fail(f"malformed_kinds {unknown or '[]'}: use some of {', '.join(MALFORMED_KINDS)}")


def _shares(fail: Callable[[str], NoReturn], name: str, shares: list[float]) -> None:
    if not shares or any(not x >= 0 or math.isinf(x) for x in shares) or sum(shares) <= 0:
        fail(f"{name}: shares must be finite, >= 0 and add up to more than 0")


# --- TOML -----------------------------------------------------------------------------

_MISSING: Final = object()


@dataclass
class _Table:
    """One TOML table being read: typed getters whose errors name the key."""

    raw: dict[str, Any]
    file: str
    keys: tuple[str, ...] = ()  # where the table is: ("accounts", "modes", "prepaid")
    used: set[str] = field(default_factory=set)

    @property
    def where(self) -> str:
        """``network.toml [accounts.modes.prepaid]``, as an error names it."""
        return f"{self.file} [{'.'.join(self.keys)}]" if self.keys else self.file

    def reject(self, key: str, expected: str, got: object) -> NoReturn:
        msg = f"{self.where} {key}: expected {expected}, got {got!r}"
        raise ScenarioError(msg)

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.raw.get(key, _MISSING)

    def integer(self, key: str, default: int, *, low: int = 0) -> int:
        value = self.get(key)
        if value is _MISSING:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            self.reject(key, f"an integer >= {low}", value)
        return value

    def number(self, key: str, default: float, *, low: float = 0.0) -> float:
        value = self.get(key)
        if value is _MISSING:
            return default
        if not isinstance(value, int | float) or isinstance(value, bool) or not value >= low:
            self.reject(key, f"a number >= {low:g}", value)
        return float(value)

    def text(self, key: str, default: str) -> str:
        value = self.get(key)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value:
            self.reject(key, "a non-empty string", value)
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key)
        if value is _MISSING:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.reject(key, "a list of strings", value)
        return tuple(value)

    def numbers(self, key: str) -> tuple[float, ...] | None:
        value = self.get(key)
        if value is _MISSING:
            return None
        ok = isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value
        )
        if not ok:
            self.reject(key, "a list of numbers >= 0", value)
        return tuple(float(v) for v in value)

    def quantity(self, key: str, default: float | None) -> float | None:
        """A usage quantity: a number, or a string like "45s", "1m30s", "2MB"."""
        value = self.get(key)
        if value is _MISSING:
            return default
        if isinstance(value, float) and value > 0:
            return value
        if isinstance(value, int | str) and not isinstance(value, bool):
            try:
                return parse_quantity(value, f"{self.where} {key}")
            except TariffError as exc:
                raise ScenarioError(str(exc)) from exc
        self.reject(key, 'a quantity like 45, "1m30s" or "2MB"', value)

    def table(self, key: str) -> _Table:
        value = self.get(key)
        if value is _MISSING:
            value = {}
        if not isinstance(value, dict):
            self.reject(key, "a table", value)
        return _Table(value, self.file, (*self.keys, key))

    def tables(self) -> list[tuple[str, _Table]]:
        """Every key of this table, each a table of its own (in file order)."""
        return [(key, self.table(key)) for key in list(self.raw)]

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            known = ", ".join(sorted(self.used)) or "none"
            msg = f"{self.where}: unknown key {unknown[0]!r} (known keys here: {known})"
            raise ScenarioError(msg)


def load_scenario(path: Path) -> Scenario:
    """Read a scenario from TOML; every problem names the file, the table and the key."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        msg = f"scenario {path}: cannot be read ({exc.strerror or exc})"
        raise ScenarioError(msg) from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"scenario {path.name}: is not valid TOML ({exc})"
        raise ScenarioError(msg) from exc
    top = _Table(raw, path.name)
    scenario = _scenario(top, load_units())
    top.finish()
    return scenario


def _scenario(top: _Table, units: UnitCatalog) -> Scenario:
    head, accounts = top.table("scenario"), top.table("accounts")
    defaults = Scenario()
    currency = head.text("currency", defaults.currency)
    layout = head.text("layout", "stream")
    if layout not in ("day", "stream"):
        head.reject("layout", "'day' or 'stream'", layout)
    fields: dict[str, Any] = {
        "name": head.text("name", Path(top.file).stem),
        "seed": head.integer("seed", defaults.seed),
        "day": _day(head, defaults.day),
        "records": head.integer("records", defaults.records, low=1),
        "layout": layout,
        "tenant": head.text("tenant", defaults.tenant),
        "currency": currency,
        "accounts": accounts.integer("count", defaults.accounts, low=1),
        "zipf": accounts.number("zipf", defaults.zipf),
        "modes": _modes(accounts.table("modes"), currency, units) or defaults.modes,
    }
    if "services" in top.raw:
        fields["services"] = _services(top.table("services"))
    fields["calls"] = _lognormal(top.table("calls"), defaults.calls)
    fields["sessions"] = _lognormal(top.table("sessions"), defaults.sessions)
    if "destinations" in top.raw:
        fields["destinations"] = _groups(top.table("destinations"))
    daily = top.table("daily")
    curve = daily.numbers("curve")
    if curve is not None and len(curve) != 24:
        daily.reject("curve", "24 weights, one per hour", list(curve))
    fields["daily_curve"] = curve or defaults.daily_curve
    faults = top.table("faults")
    fields["malformed"] = faults.number("malformed", 0.0)
    fields["duplicates"] = faults.number("duplicates", 0.0)
    fields["resend_window"] = faults.integer("resend_window", defaults.resend_window, low=1)
    fields["malformed_kinds"] = faults.strings("malformed_kinds", defaults.malformed_kinds)
    for table in (head, accounts, daily, faults):
        table.finish()
    try:
        return Scenario(**fields)
    except ScenarioError as exc:
        msg = f"{top.where}: {exc}"
        raise ScenarioError(msg) from exc


def _day(head: _Table, default: datetime) -> datetime:
    value = head.get("day")
    if value is _MISSING:
        return default
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            head.reject("day", "an RFC 3339 time like 2026-11-02T00:00:00+01:00", value)
    if not isinstance(value, datetime) or value.tzinfo is None:
        head.reject("day", "a time with a UTC offset, like 2026-11-02T00:00:00+01:00", value)
    return value


def _services(table: _Table) -> tuple[Service, ...]:
    services = []
    for category, entry in table.tables():
        kind = entry.text("kind", "")
        if kind not in KIND_NAMES:
            entry.reject("kind", f"one of {', '.join(KIND_NAMES)}", kind or None)
        services.append(Service(category, KIND_NAMES.index(kind), entry.number("share", 0.0)))
        entry.finish()
    return tuple(services)


def _lognormal(table: _Table, default: LogNormal) -> LogNormal:
    median = table.quantity("median", default.median)
    cap = table.quantity("cap", default.cap)
    result = LogNormal(median=default.median if median is None else float(median),
                       sigma=table.number("sigma", default.sigma),
                       cap=None if cap is None else int(cap))  # fmt: skip
    table.finish()
    return result


def _groups(table: _Table) -> tuple[DestinationGroup, ...]:
    groups = []
    for name, entry in table.tables():
        share = entry.number("share", 0.0)
        prefixes = entry.strings("prefixes")
        if not prefixes or not all(p.isdigit() for p in prefixes):
            entry.reject("prefixes", "a non-empty list of digit strings", list(prefixes))
        weights = entry.numbers("weights") or tuple(1.0 for _ in prefixes)
        if len(weights) != len(prefixes) or sum(weights) <= 0:
            entry.reject("weights", f"{len(prefixes)} weights >= 0, one per prefix", weights)
        total = sum(weights)
        groups.append(DestinationGroup(
            name, prefixes, tuple(share * w / total for w in weights),
            digits=entry.integer("digits", 7, low=1), unpriced_for=entry.strings("unpriced_for"),
        ))  # fmt: skip
        entry.finish()
    return tuple(groups)


def _modes(table: _Table, currency: str, units: UnitCatalog) -> tuple[ModePlan, ...]:
    plans = []
    for name, entry in table.tables():
        if name not in {m.value for m in Mode}:
            table.reject(name, f"a mode: {', '.join(m.value for m in Mode)}", name)
        limit = entry.get("credit_limit")
        credit = 0 if limit is _MISSING else _money(entry, "credit_limit", limit, currency, units)
        balances = entry.get("balances")
        if balances is _MISSING:
            balances = []
        if not isinstance(balances, list) or not all(isinstance(b, dict) for b in balances):
            entry.reject("balances", "a list of tables", balances)
        bundle = tuple(_balance(_Table(b, entry.file, (*entry.keys, f"balances[{i}]")), units)
                       for i, b in enumerate(balances))  # fmt: skip
        plans.append(ModePlan(Mode(name), entry.number("share", 0.0), credit, bundle))
        entry.finish()
    return tuple(plans)


def _balance(entry: _Table, units: UnitCatalog) -> Balance:
    unit_name = entry.text("unit", "")
    try:
        unit = units[unit_name]
    except BalanceError as exc:
        msg = f"{entry.where} unit: {exc}"
        raise ScenarioError(msg) from exc
    raw = entry.get("amount")
    if unit.measure is Measure.MONEY:
        amount = _money(entry, "amount", raw, unit_name, units)
    else:
        quantity = entry.quantity("amount", 0)
        amount = int(quantity or 0)
    balance = Balance(
        id=entry.text("id", ""), unit=unit_name, amount=amount,
        weight=entry.integer("weight", 0, low=-(2**31)),
        filter=Filter(categories=entry.strings("categories"),
                      destinations=entry.strings("destinations"),
                      services=entry.strings("services")),
    )  # fmt: skip
    if not balance.id:
        entry.reject("id", "a non-empty string", None)
    entry.finish()
    return balance


def _money(entry: _Table, key: str, value: object, unit: str, units: UnitCatalog) -> int:
    """A decimal string in ``unit`` as its integer amount units ("5.50" EUR → 5.5e9)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        entry.reject(key, f'a decimal string in {unit}, like "5.50"', value)
    try:
        nanos = parse_amount(value, f"{entry.where} {key}")
    except TariffError as exc:
        raise ScenarioError(str(exc)) from exc
    decimals = units[unit].decimals
    if nanos < 0 or (decimals < 9 and nanos % 10 ** (9 - decimals)):
        entry.reject(key, f"an amount >= 0 with at most {decimals} decimals", value)
    scaled: int = nanos * 10 ** max(decimals - 9, 0) // 10 ** max(9 - decimals, 0)
    return scaled
