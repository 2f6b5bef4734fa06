"""Cross-check a :class:`~tariffs.model.Tariff`: the contract every loader ends with.

Both loaders call :func:`check_tariff` on what they built; anything that
builds a ``Tariff`` in code should too. Each error names the key that is
wrong, as the native TOML file spells it, e.g.
``destination_rates.DR_X.rate: unknown rate 'RT_Y'``.

What is *not* checked: a fallback subject need not have a profile of its own
(CGRateS skips fallback subjects it cannot find, and so do the raters), and
two destinations may share a prefix (a number then matches both).
"""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tariffs.exceptions import TariffError
from tariffs.model import (
    ANY,
    SECONDS_PER_DAY,
    Binding,
    DestinationRate,
    MaxCostStrategy,
    Rate,
    RatingProfile,
    Tariff,
    Timing,
)

YEARS = range(1900, 2156)  # the compiled timing tables hold a 256-year mask from 1900
MONTHS = range(1, 13)
MONTH_DAYS = range(1, 32)
WEEKDAYS = range(8)  # ISO 1 = Monday … 7 = Sunday; 0 is read as Sunday too
DECIMALS = range(10)


def check_tariff(t: Tariff) -> None:
    """Raise :class:`TariffError` naming the first key that breaks the model's rules."""
    check_header(t)
    for key, prefixes in t.destinations.items():
        check_destination(key, prefixes)
    for key, timing in t.timings.items():
        check_timing(key, timing)
    for key, rate in t.rates.items():
        check_rate(key, rate)
    for key, drate in t.destination_rates.items():
        check_destination_rate(t, key, drate)
    for key, plan in t.plans.items():
        _check_id(f"plans.{key}", key, plan.id)
        if not plan.bindings:
            msg = f"plans.{key}: has no bindings"
            raise TariffError(msg)
        for index, binding in enumerate(plan.bindings):
            check_binding(t, f"plans.{key}.bindings[{index}]", binding)
    check_profiles(t)


def check_header(t: Tariff) -> None:
    if not t.name.strip():
        msg = "tariff.name: must not be empty"
        raise TariffError(msg)
    if not t.currency or t.currency != t.currency.strip():
        msg = f"tariff.currency: {t.currency!r} is not a currency code like 'EUR'"
        raise TariffError(msg)
    check_timezone("tariff.timezone", t.timezone)


def check_timezone(where: str, name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"{where}: {name!r} is not a known IANA time zone (like 'Europe/Berlin' or 'UTC')"
        raise TariffError(msg) from exc


def check_destination(key: str, prefixes: tuple[str, ...]) -> None:
    where = f"destinations.{key}"
    _check_key(where, key)
    if not prefixes:
        msg = f"{where}: has no prefixes"
        raise TariffError(msg)
    seen: set[str] = set()
    for prefix in prefixes:
        if not prefix or prefix != prefix.strip():
            msg = f"{where}: {prefix!r} is not a prefix (empty or with spaces)"
            raise TariffError(msg)
        if prefix in seen:
            msg = f"{where}: prefix {prefix!r} is listed twice"
            raise TariffError(msg)
        seen.add(prefix)


def check_timing(key: str, timing: Timing) -> None:
    where = f"timings.{key}"
    _check_key(where, key)
    _check_id(where, key, timing.id)
    _check_range(f"{where}.years", timing.years, YEARS, "a year (1900..2155)")
    _check_range(f"{where}.months", timing.months, MONTHS, "a month (1..12)")
    _check_range(f"{where}.month_days", timing.month_days, MONTH_DAYS, "a day of month (1..31)")
    _check_range(f"{where}.weekdays", timing.weekdays, WEEKDAYS, "a weekday (1 = Mon … 7 = Sun)")
    if not 0 <= timing.start < SECONDS_PER_DAY:
        msg = f"{where}.start: {timing.start} is not a time of day (0..86399 seconds)"
        raise TariffError(msg)


def check_rate(key: str, rate: Rate) -> None:
    where = f"rates.{key}"
    _check_id(where, key, rate.id)
    _check_not_negative(f"{where}.connect_fee", rate.connect_fee)
    if not rate.steps:
        msg = f"{where}.steps: a rate needs at least one step"
        raise TariffError(msg)
    if rate.steps[0].group_start != 0:
        msg = f"{where}.steps[0].group_start: the first step must start at 0"
        raise TariffError(msg)
    previous = -1
    for index, step in enumerate(rate.steps):
        at = f"{where}.steps[{index}]"
        if step.group_start <= previous:
            msg = f"{at}.group_start: steps must be in increasing order of group_start"
            raise TariffError(msg)
        previous = step.group_start
        _check_not_negative(f"{at}.price", step.price)
        _check_positive(f"{at}.rate_unit", step.rate_unit)
        _check_positive(f"{at}.increment", step.increment)


def check_destination_rate(t: Tariff, key: str, drate: DestinationRate) -> None:
    where = f"destination_rates.{key}"
    _check_id(where, key, drate.id)
    if drate.destination != ANY and drate.destination not in t.destinations:
        msg = f"{where}.destination: unknown destination {drate.destination!r}"
        raise TariffError(msg)
    if drate.rate not in t.rates:
        msg = f"{where}.rate: unknown rate {drate.rate!r}"
        raise TariffError(msg)
    if drate.decimals not in DECIMALS:
        msg = f"{where}.decimals: {drate.decimals} is out of range 0..9"
        raise TariffError(msg)
    if drate.max_cost_strategy is MaxCostStrategy.NONE:
        if drate.max_cost != 0:
            msg = f"{where}.max_cost: is set but max_cost_strategy is 'none'"
            raise TariffError(msg)
    elif drate.max_cost <= 0:
        strategy = drate.max_cost_strategy.value
        msg = f"{where}.max_cost: must be more than 0 with max_cost_strategy {strategy!r}"
        raise TariffError(msg)


def check_binding(t: Tariff, where: str, binding: Binding) -> None:
    if binding.destination_rate not in t.destination_rates:
        msg = f"{where}.destination_rate: unknown destination rate {binding.destination_rate!r}"
        raise TariffError(msg)
    if binding.timing != ANY and binding.timing not in t.timings:
        msg = f"{where}.timing: unknown timing {binding.timing!r}"
        raise TariffError(msg)
    if not math.isfinite(binding.weight):
        msg = f"{where}.weight: {binding.weight} is not a finite number"
        raise TariffError(msg)


def check_profiles(t: Tariff) -> None:
    seen: dict[tuple[str, str, str, object], int] = {}
    for index, profile in enumerate(t.profiles):
        where = f"profiles[{index}]"
        check_profile(t, where, profile)
        key = (profile.tenant, profile.category, profile.subject, profile.activation)
        if key in seen:
            msg = f"{where}: same tenant, category, subject and activation as profiles[{seen[key]}]"
            raise TariffError(msg)
        seen[key] = index


def check_profile(t: Tariff, where: str, profile: RatingProfile) -> None:
    for name in ("tenant", "category", "subject"):
        value: str = getattr(profile, name)
        if not value or value != value.strip():
            msg = f"{where}.{name}: {value!r} must be non-empty, without surrounding spaces"
            raise TariffError(msg)
    if profile.activation.utcoffset() is None:
        msg = f"{where}.activation: {profile.activation.isoformat()} has no UTC offset"
        raise TariffError(msg)
    if profile.plan not in t.plans:
        msg = f"{where}.plan: unknown plan {profile.plan!r}"
        raise TariffError(msg)
    if len(set(profile.fallback_subjects)) != len(profile.fallback_subjects):
        msg = f"{where}.fallback_subjects: a subject is listed twice"
        raise TariffError(msg)
    if not all(profile.fallback_subjects):
        msg = f"{where}.fallback_subjects: empty subject"
        raise TariffError(msg)


def _check_key(where: str, key: str) -> None:
    if not key or key == ANY:
        msg = f"{where}: {key!r} cannot be used as a name ('{ANY}' means 'any')"
        raise TariffError(msg)


def _check_id(where: str, key: str, id_: str) -> None:
    if key != id_:
        msg = f"{where}: is keyed {key!r} but its id is {id_!r}"
        raise TariffError(msg)


def _check_range(where: str, values: tuple[int, ...], allowed: range, what: str) -> None:
    for value in values:
        if value not in allowed:
            msg = f"{where}: {value} is not {what}"
            raise TariffError(msg)


def _check_positive(where: str, value: int) -> None:
    if value <= 0:
        msg = f"{where}: must be more than 0, got {value}"
        raise TariffError(msg)


def _check_not_negative(where: str, value: int) -> None:
    if value < 0:
        msg = f"{where}: must not be negative, got {value}"
        raise TariffError(msg)
