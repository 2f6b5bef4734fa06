"""ratewire's native tariff-plan format: one TOML file a billing analyst can read.

``tariffs/samples/mobile.toml`` is the tutorial; this is the reference.

.. code-block:: toml

    [tariff]
    name = "Mobile demo"
    currency = "EUR"                  # amounts below are in this currency
    timezone = "Europe/Berlin"        # timings are local times in this zone

    [destinations]                    # name = list of number prefixes (strings)
    GERMANY = ["49"]
    DE_MOBILE = ["4915", "4916", "4917"]

    [timings.PEAK]                    # every key optional: empty means "any"
    years = [2026]
    months = [12]                     # 1..12
    month_days = [25, 26]             # 1..31
    weekdays = ["mon", "tue", "wed", "thu", "fri"]   # or 1..7 (0 or 7 = Sunday)
    start = "08:00"                   # "HH:MM" or "HH:MM:SS"; in force until midnight

    [rates.RT_VOICE]
    connect_fee = "0.05"              # once per record
    basis = "record"                  # or "graduated" / "volume" (monthly volume tiers)
    steps = [
      { from = "0s",  price = "0.20", per = "1m", increment = "1m" },
      { from = "1m",  price = "0.10", per = "1m", increment = "1s" },
    ]

    [rates.RT_VIDEO_PLAY]
    event_price = "0.49"              # a price per record, no steps

    [destination_rates.DR_MOBILE]
    destination = "DE_MOBILE"         # or "*any"
    rate = "RT_VOICE"
    rounding = "up"                   # up | down | half_up | half_even  (default up)
    decimals = 4                      # 0..9                              (default 4)
    max_cost = "5"                    # optional
    max_cost_strategy = "cap"         # cap (default with max_cost) | disconnect

    [plans.RP_STANDARD]
    bindings = [
      { destination_rate = "DR_MOBILE", timing = "PEAK", weight = 10 },   # timing defaults to *any
    ]

    [[profiles]]
    tenant = "ratewire.demo"
    category = "call"
    subject = "*any"
    activation = "2026-01-01T00:00:00+01:00"   # RFC 3339 with offset (quoted or a TOML date-time)
    plan = "RP_STANDARD"
    fallback_subjects = []            # optional

Notations
---------
- Amounts are decimal strings (``"0.20"``) or integers (``5``); a TOML float
  (``0.20`` unquoted) is refused, because it is binary floating point.
- Usage quantities (``from``, ``per``, ``increment``) are plain integers in the
  record's unit (seconds, bytes or a count), or text: a duration in whole
  seconds such as ``"60s"``, ``"1m"``, ``"1h30m"``; or a size such as
  ``"1KB"``/``"1MB"``/``"1GB"``/``"1TB"`` (powers of 1000, ``"kB"`` too) or
  ``"1KiB"``/``"1MiB"``/``"1GiB"``/``"1TiB"`` (powers of 1024); ``"512B"``.
  Text is a notation only: ``"1m"`` is 60 and ``"1KB"`` is 1000, whatever the
  rate is used for.
- ``event_price = "x"`` is short for ``connect_fee = "x"`` with a single free
  step (``from 0, price 0, per 1, increment 1``): the price is charged once per
  record (a record with zero usage costs nothing).

:func:`dump_native` writes a :class:`~tariffs.model.Tariff` back in this
format (so an imported CGRateS plan can be converted and edited); loading its
output gives back an equal ``Tariff``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import msgspec

from tariffs.exceptions import TariffError
from tariffs.model import (
    ANY,
    Basis,
    Binding,
    DestinationRate,
    MaxCostStrategy,
    Rate,
    RateStep,
    RatingPlan,
    RatingProfile,
    Rounding,
    Tariff,
    Timing,
)
from tariffs.money import format_amount, parse_amount
from tariffs.validate import check_tariff

T = TypeVar("T")

Amount = str | int | float  # float only to refuse it with a clear message
Quantity = str | int | float

EVENT_STEP = RateStep(group_start=0, price=0, rate_unit=1, increment=1)
"""The single free step of a rate written as ``event_price``."""

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

SECONDS = {"h": 3600, "m": 60, "s": 1}
SIZES = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
DURATION_RE = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
SIZE_RE = re.compile(r"(\d+) ?(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
TIME_OF_DAY_RE = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


# --- the file's shape -----------------------------------------------------------


class HeaderFile(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    currency: str
    timezone: str


class TimingFile(msgspec.Struct, forbid_unknown_fields=True):
    years: list[int] = []
    months: list[int] = []
    month_days: list[int] = []
    weekdays: list[int | str] = []
    start: str = "00:00"


class StepFile(msgspec.Struct, forbid_unknown_fields=True):
    from_: Quantity = msgspec.field(name="from")
    price: Amount
    per: Quantity
    increment: Quantity


class RateFile(msgspec.Struct, forbid_unknown_fields=True):
    steps: list[StepFile] = []
    connect_fee: Amount | None = None
    event_price: Amount | None = None
    basis: Basis = Basis.RECORD


class DestinationRateFile(msgspec.Struct, forbid_unknown_fields=True):
    destination: str
    rate: str
    rounding: Rounding = Rounding.UP
    decimals: int = 4
    max_cost: Amount | None = None
    max_cost_strategy: MaxCostStrategy | None = None


class BindingFile(msgspec.Struct, forbid_unknown_fields=True):
    destination_rate: str
    timing: str = ANY
    weight: float = 0.0


class PlanFile(msgspec.Struct, forbid_unknown_fields=True):
    bindings: list[BindingFile]


class ProfileFile(msgspec.Struct, forbid_unknown_fields=True):
    tenant: str
    category: str
    subject: str
    activation: object  # an RFC 3339 string or a TOML offset date-time
    plan: str
    fallback_subjects: list[str] = []


class TariffFile(msgspec.Struct, forbid_unknown_fields=True):
    # Named tables are decoded entry by entry (see _entry) so that an error
    # names the entry: msgspec reports a dict value's path as `$.rates[...]`.
    tariff: HeaderFile
    destinations: dict[str, object] = {}
    timings: dict[str, object] = {}
    rates: dict[str, object] = {}
    destination_rates: dict[str, object] = {}
    plans: dict[str, object] = {}
    profiles: list[ProfileFile] = []


# --- loading --------------------------------------------------------------------


def load_native(path: Path) -> Tariff:
    """Load a native TOML tariff plan; errors name the file and the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the tariff plan: {exc.strerror}"
        raise TariffError(msg) from exc
    return loads_native(data, source=path.name)


def loads_native(data: str | bytes, *, source: str = "<tariff>") -> Tariff:
    """Load a native tariff plan from TOML text; ``source`` prefixes every error."""
    try:
        raw = msgspec.toml.decode(data, type=TariffFile)
    except msgspec.ValidationError as exc:
        msg = f"{source}: {_explain('', exc)}"
        raise TariffError(msg) from exc
    except msgspec.DecodeError as exc:
        msg = f"{source}: not valid TOML: {exc}"
        raise TariffError(msg) from exc
    try:
        tariff = _tariff(raw)
        check_tariff(tariff)
    except TariffError as exc:
        msg = f"{source}: {exc}"
        raise TariffError(msg) from exc
    return tariff


def _tariff(raw: TariffFile) -> Tariff:
    return Tariff(
        name=raw.tariff.name,
        currency=raw.tariff.currency,
        timezone=raw.tariff.timezone,
        destinations={k: _prefixes(k, v) for k, v in raw.destinations.items()},
        timings={
            k: _timing(k, _entry(v, TimingFile, "timings", k)) for k, v in raw.timings.items()
        },
        rates={k: _rate(k, _entry(v, RateFile, "rates", k)) for k, v in raw.rates.items()},
        destination_rates={
            k: _destination_rate(k, _entry(v, DestinationRateFile, "destination_rates", k))
            for k, v in raw.destination_rates.items()
        },
        plans={k: _plan(k, _entry(v, PlanFile, "plans", k)) for k, v in raw.plans.items()},
        profiles=tuple(_profile(f"profiles[{i}]", p) for i, p in enumerate(raw.profiles)),
    )


def _entry(value: object, type_: type[T], table: str, key: str) -> T:
    try:
        return msgspec.convert(value, type=type_)
    except msgspec.ValidationError as exc:
        msg = _explain(f"{table}.{key}", exc)
        raise TariffError(msg) from exc


def _explain(where: str, exc: msgspec.ValidationError) -> str:
    """Turn msgspec's "problem - at `$.a.b`" into "where.a.b: problem"."""
    problem, _, path = str(exc).partition(" - at `$")
    where = (where + path.rstrip("`")).lstrip(".")
    return f"{where}: {problem}" if where else problem


def _prefixes(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        msg = f'destinations.{key}: expected a list of prefixes as strings, like ["49", "4915"]'
        raise TariffError(msg)
    return tuple(value)


def _timing(key: str, raw: TimingFile) -> Timing:
    where = f"timings.{key}"
    return Timing(
        id=key,
        years=tuple(raw.years),
        months=tuple(raw.months),
        month_days=tuple(raw.month_days),
        weekdays=tuple(parse_weekday(day, f"{where}.weekdays") for day in raw.weekdays),
        start=parse_time_of_day(raw.start, f"{where}.start"),
    )


def _rate(key: str, raw: RateFile) -> Rate:
    where = f"rates.{key}"
    if raw.event_price is not None:
        if raw.steps or raw.connect_fee is not None:
            msg = f"{where}: event_price cannot be combined with steps or connect_fee"
            raise TariffError(msg)
        price = _amount(raw.event_price, f"{where}.event_price")
        return Rate(id=key, steps=(EVENT_STEP,), connect_fee=price, basis=raw.basis)
    if not raw.steps:
        msg = f"{where}: needs steps (or event_price for a price per record)"
        raise TariffError(msg)
    steps = tuple(_step(f"{where}.steps[{i}]", step) for i, step in enumerate(raw.steps))
    _check_step_order(where, steps)
    fee = 0 if raw.connect_fee is None else _amount(raw.connect_fee, f"{where}.connect_fee")
    return Rate(id=key, steps=steps, connect_fee=fee, basis=raw.basis)


def _step(where: str, raw: StepFile) -> RateStep:
    return RateStep(
        group_start=parse_quantity(raw.from_, f"{where}.from"),
        price=_amount(raw.price, f"{where}.price"),
        rate_unit=_positive_quantity(raw.per, f"{where}.per"),
        increment=_positive_quantity(raw.increment, f"{where}.increment"),
    )


def _check_step_order(where: str, steps: tuple[RateStep, ...]) -> None:
    if steps[0].group_start != 0:
        msg = f"{where}.steps[0].from: the first step must start at 0"
        raise TariffError(msg)
    for index in range(1, len(steps)):
        if steps[index].group_start <= steps[index - 1].group_start:
            msg = f"{where}.steps[{index}].from: steps must be in increasing order of 'from'"
            raise TariffError(msg)


def _destination_rate(key: str, raw: DestinationRateFile) -> DestinationRate:
    where = f"destination_rates.{key}"
    max_cost = 0 if raw.max_cost is None else _amount(raw.max_cost, f"{where}.max_cost")
    strategy = raw.max_cost_strategy
    if strategy is None:
        strategy = MaxCostStrategy.NONE if raw.max_cost is None else MaxCostStrategy.CAP
    return DestinationRate(
        id=key,
        destination=raw.destination,
        rate=raw.rate,
        rounding=raw.rounding,
        decimals=raw.decimals,
        max_cost=max_cost,
        max_cost_strategy=strategy,
    )


def _plan(key: str, raw: PlanFile) -> RatingPlan:
    bindings = tuple(
        Binding(destination_rate=b.destination_rate, timing=b.timing, weight=b.weight)
        for b in raw.bindings
    )
    return RatingPlan(id=key, bindings=bindings)


def _profile(where: str, raw: ProfileFile) -> RatingProfile:
    return RatingProfile(
        tenant=raw.tenant,
        category=raw.category,
        subject=raw.subject,
        activation=_activation(raw.activation, f"{where}.activation"),
        plan=raw.plan,
        fallback_subjects=tuple(raw.fallback_subjects),
    )


def _activation(value: object, where: str) -> datetime:
    example = "2026-01-01T00:00:00+01:00"
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            msg = f"{where}: {value!r} is not an RFC 3339 date-time like {example}"
            raise TariffError(msg) from exc
    else:
        msg = f"{where}: {value!r} is not an RFC 3339 date-time like {example}"
        raise TariffError(msg)
    if moment.utcoffset() is None:
        msg = f"{where}: {value!s} has no UTC offset; add one, e.g. {example} or Z"
        raise TariffError(msg)
    return moment


def _amount(value: Amount, where: str) -> int:
    if isinstance(value, float):
        msg = f'{where}: {value!r} is a TOML float; write amounts as strings, e.g. "{value}"'
        raise TariffError(msg)
    return parse_amount(value, where)


def _positive_quantity(value: Quantity, where: str) -> int:
    quantity = parse_quantity(value, where)
    if quantity <= 0:
        msg = f"{where}: must be more than 0"
        raise TariffError(msg)
    return quantity


# --- notations (shared with the CGRateS importer) --------------------------------


def parse_quantity(value: Quantity, where: str) -> int:
    """Parse a usage quantity: ``60``, ``"60"``, ``"1m30s"``, ``"1MB"``, ``"1MiB"``."""
    if isinstance(value, int):
        if value < 0:
            msg = f"{where}: {value} must not be negative"
            raise TariffError(msg)
        return value
    text = value.strip() if isinstance(value, str) else ""
    if text.isdigit():
        return int(text)
    duration = DURATION_RE.fullmatch(text)
    if text and duration:
        return sum(
            int(n) * s for n, s in zip(duration.groups(), SECONDS.values(), strict=True) if n
        )
    size = SIZE_RE.fullmatch(text)
    if size:
        return int(size[1]) * SIZES[size[2]]
    msg = (
        f"{where}: {value!r} is not a usage quantity"
        " like 60s, 1m30s, 1024, 1MB (1000-based) or 1MiB (1024-based)"
    )
    raise TariffError(msg)


def parse_time_of_day(text: str, where: str) -> int:
    """``"08:00"`` or ``"08:00:30"`` to seconds since midnight."""
    match = TIME_OF_DAY_RE.fullmatch(text.strip())
    hours, minutes, seconds = (int(n or 0) for n in match.groups()) if match else (99, 0, 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        msg = f"{where}: {text!r} is not a time of day like 08:00 or 08:00:00"
        raise TariffError(msg)
    return hours * 3600 + minutes * 60 + seconds


def parse_weekday(value: int | str, where: str) -> int:
    """A weekday name (``"mon"`` or ``"monday"``) or ISO number; Sunday is 7 (0 is read as 7)."""
    if isinstance(value, int):
        return 7 if value == 0 else value
    name = value.strip().lower()
    for names in (WEEKDAY_NAMES, FULL_WEEKDAY_NAMES):
        if name in names:
            return names.index(name) + 1
    msg = f"{where}: {value!r} is not a weekday (mon … sun, or 1 … 7)"
    raise TariffError(msg)


# --- writing --------------------------------------------------------------------


def dump_native(tariff: Tariff) -> str:
    """Write ``tariff`` as native TOML; :func:`loads_native` reads it back equal."""
    kinds = _rate_kinds(tariff)
    sections = [
        [
            "# Tariff plan in ratewire's native format (see tariffs/native.py).",
            "[tariff]",
            f"name = {_str(tariff.name)}",
            f"currency = {_str(tariff.currency)}",
            f"timezone = {_str(tariff.timezone)}",
        ],
        ["[destinations]"]
        + [f"{_key(k)} = {_list(map(_str, v))}" for k, v in tariff.destinations.items()],
        *(_dump_timing(k, v) for k, v in tariff.timings.items()),
        *(_dump_rate(k, v, kinds.get(k, "count")) for k, v in tariff.rates.items()),
        *(_dump_destination_rate(k, v) for k, v in tariff.destination_rates.items()),
        *(_dump_plan(k, v) for k, v in tariff.plans.items()),
        *(_dump_profile(p) for p in tariff.profiles),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _dump_timing(key: str, timing: Timing) -> list[str]:
    lines = [f"[timings.{_key(key)}]"]
    for name in ("years", "months", "month_days"):
        values: tuple[int, ...] = getattr(timing, name)
        if values:
            lines.append(f"{name} = {_list(map(str, values))}")
    if timing.weekdays:
        names = (_str(WEEKDAY_NAMES[(day - 1) % 7]) for day in timing.weekdays)
        lines.append(f"weekdays = {_list(names)}")
    if timing.start:
        lines.append(f"start = {_str(format_time_of_day(timing.start))}")
    return lines


def _dump_rate(key: str, rate: Rate, kind: str) -> list[str]:
    lines = [f"[rates.{_key(key)}]"]
    if rate.basis is not Basis.RECORD:
        lines.append(f"basis = {_str(rate.basis.value)}")
    if rate.steps == (EVENT_STEP,) and rate.basis is Basis.RECORD:
        lines.append(f"event_price = {_str(format_amount(rate.connect_fee))}")
        return lines
    if rate.connect_fee:
        lines.append(f"connect_fee = {_str(format_amount(rate.connect_fee))}")
    lines.append("steps = [")
    for step in rate.steps:
        fields = (
            f"from = {format_quantity(step.group_start, kind)}",
            f"price = {_str(format_amount(step.price))}",
            f"per = {format_quantity(step.rate_unit, kind)}",
            f"increment = {format_quantity(step.increment, kind)}",
        )
        lines.append(f"  {{ {', '.join(fields)} }},")
    lines.append("]")
    return lines


def _dump_destination_rate(key: str, drate: DestinationRate) -> list[str]:
    lines = [
        f"[destination_rates.{_key(key)}]",
        f"destination = {_str(drate.destination)}",
        f"rate = {_str(drate.rate)}",
        f"rounding = {_str(drate.rounding.value)}",
        f"decimals = {drate.decimals}",
    ]
    if drate.max_cost_strategy is not MaxCostStrategy.NONE or drate.max_cost:
        lines.append(f"max_cost = {_str(format_amount(drate.max_cost))}")
        lines.append(f"max_cost_strategy = {_str(drate.max_cost_strategy.value)}")
    return lines


def _dump_plan(key: str, plan: RatingPlan) -> list[str]:
    rows = [
        (
            f"destination_rate = {_str(b.destination_rate)},",
            f"timing = {_str(b.timing)},",
            f"weight = {_number(b.weight)}",
        )
        for b in plan.bindings
    ]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(2)]
    lines = [f"[plans.{_key(key)}]", "bindings = ["]
    for first, second, third in rows:
        lines.append(f"  {{ {first:<{widths[0]}} {second:<{widths[1]}} {third} }},")
    lines.append("]")
    return lines


def _dump_profile(profile: RatingProfile) -> list[str]:
    lines = [
        "[[profiles]]",
        f"tenant = {_str(profile.tenant)}",
        f"category = {_str(profile.category)}",
        f"subject = {_str(profile.subject)}",
        f"activation = {_str(format_activation(profile.activation))}",
        f"plan = {_str(profile.plan)}",
    ]
    if profile.fallback_subjects:
        lines.append(f"fallback_subjects = {_list(map(_str, profile.fallback_subjects))}")
    return lines


def _rate_kinds(tariff: Tariff) -> dict[str, str]:
    """Which notation suits each rate's quantities, from the categories that use it."""
    kinds: dict[str, set[str]] = {}
    for profile in tariff.profiles:
        category = profile.category.lower()
        kind = "time" if category in ("call", "voice") else "bytes" if category == "data" else ""
        plan = tariff.plans.get(profile.plan)
        for binding in plan.bindings if plan else ():
            drate = tariff.destination_rates.get(binding.destination_rate)
            if drate:
                kinds.setdefault(drate.rate, set()).add(kind)
    return {rate: found.pop() for rate, found in kinds.items() if len(found) == 1}


def format_quantity(value: int, kind: str) -> str:
    """A quantity as TOML: ``"1m30s"`` for time, ``"1MiB"`` for bytes, else an integer."""
    if kind == "time":
        hours, rest = divmod(value, 3600)
        minutes, seconds = divmod(rest, 60)
        parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
        return _str("".join(parts) or "0s")
    if kind == "bytes" and value:
        for unit in ("TiB", "TB", "GiB", "GB", "MiB", "MB", "KiB", "KB"):
            if value % SIZES[unit] == 0:
                return _str(f"{value // SIZES[unit]}{unit}")
    return str(value)


def format_time_of_day(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}" if secs else f"{hours:02d}:{minutes:02d}"


def format_activation(moment: datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _key(key: str) -> str:
    return key if BARE_KEY_RE.fullmatch(key) else _str(key)


def _str(text: str) -> str:
    """A TOML basic string: escape quotes, backslashes and control characters."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
