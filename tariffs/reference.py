"""The slow, obviously-correct reference rater: the twin of :mod:`tariffs.kernels`.

The kernels must agree with :func:`rate_reference` on every field of the Rating.
It reads the Tariff as it is, keeps money in ``Decimal``, finds local time with
``zoneinfo`` and walks usage one increment at a time. The rules (as
:mod:`tariffs.model` and :mod:`tariffs.rated` state them):

- Profile: of the (tenant, category, subject) profiles the one with the
  latest activation not after ``start`` (first listed on a tie); when the
  subject has none in force, the same among ``*any``'s. None:
  ``RATING_PLAN_NOT_FOUND``.
- Destination: the longest prefix of the number that a destination bound by
  the plan holds (``*any`` holds ""); the candidates are the bindings whose
  destination holds it. None: the profile's fallback subjects, depth-first,
  each subject once, each by its own profiles. Else ``UNAUTHORIZED_DESTINATION``.
- Timing: a candidate is in force when its years, months, month days and ISO
  weekdays (empty = any, 0 = Sunday) match the local date and its start is
  not after the local wall-clock time of day; ``*any`` always is. Highest
  weight wins, then latest start, then plan order. None (at any instant the
  record needs): ``NO_TIMING_IN_FORCE``. The binding at ``start`` gives the
  destination id, connect fee, rounding and max cost.
- Spans: each increment is billed at the binding in force at its start (time
  based) or at ``start`` (otherwise), and at the last step whose
  ``group_start`` is not after ``e``, ``period_usage + e`` or ``period_usage +
  usage - 1`` (by basis). Runs of one binding and step are spans, rounded to
  whole nanos by their own destination rate's method.
- Zero usage: guided as usual (errors raise), no spans, nothing charged.
"""

from __future__ import annotations

import decimal
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from typing import NamedTuple
from zoneinfo import ZoneInfo

from tariffs import model, rated
from tariffs.exceptions import RatingError
from tariffs.model import ANY, Basis, Binding, MaxCostStrategy, Rounding, Tariff
from tariffs.money import round_nanos
from tariffs.rated import Rating, Span

_DECIMAL_ROUNDING = {
    Rounding.UP: decimal.ROUND_UP,
    Rounding.DOWN: decimal.ROUND_DOWN,
    Rounding.HALF_UP: decimal.ROUND_HALF_UP,
    Rounding.HALF_EVEN: decimal.ROUND_HALF_EVEN,
}


class _Guided(NamedTuple):
    plan: str
    prefix: str
    candidates: list[tuple[int, Binding]]  # (index in the plan, binding), in plan order


class _Increment(NamedTuple):
    binding: int  # index in the plan
    step: int
    offset: int


def rate_reference(
    tariff: Tariff,
    *,
    tenant: str,
    category: str,
    subject: str,
    destination: str,
    start: datetime,
    usage: int,
    time_based: bool,
    period_usage: int = 0,
) -> Rating:
    """Rate one record; raise :class:`RatingError` when it cannot be rated."""
    if start.tzinfo is None or usage < 0 or period_usage < 0:
        msg = f"reference rater: need an aware start and usage >= 0, got {start!r}, {usage}"
        raise ValueError(msg)
    guided = _guide(tariff, tenant, category, subject, destination, start)
    if time_based and usage > rated.MAX_CALL_SECONDS:
        msg = f"rating: a call of {usage} s is longer than {rated.MAX_CALL_SECONDS} s"
        raise RatingError(rated.USAGE_OUT_OF_RANGE, msg)
    bindings = tariff.plans[guided.plan].bindings
    zone = ZoneInfo(tariff.timezone)
    begin = start.astimezone(UTC)  # add seconds in UTC: aware + timedelta is wall-clock
    at_start = _in_force(tariff, guided.candidates, begin.astimezone(zone))
    increments: list[_Increment] = []
    elapsed = 0
    while elapsed < usage:
        index = at_start
        if time_based:
            instant = begin + timedelta(seconds=elapsed)
            index = _in_force(tariff, guided.candidates, instant.astimezone(zone))
        rate = tariff.rates[tariff.destination_rates[bindings[index].destination_rate].rate]
        step = _step(rate, elapsed, usage, period_usage)
        increments.append(_Increment(index, step, elapsed))
        elapsed += rate.steps[step].increment
    spans = tuple(
        _span(tariff, bindings[index], step, list(group), usage)
        for (index, step), group in groupby(increments, key=lambda i: (i.binding, i.step))
    )
    dest_rate = tariff.destination_rates[bindings[at_start].destination_rate]
    connect_fee = tariff.rates[dest_rate.rate].connect_fee if usage else 0
    subtotal = connect_fee + sum(span.amount for span in spans)
    cost = round_nanos(subtotal, dest_rate.decimals, dest_rate.rounding)
    flags = 0
    if dest_rate.max_cost_strategy is not MaxCostStrategy.NONE and cost > dest_rate.max_cost:
        if dest_rate.max_cost_strategy is MaxCostStrategy.CAP:
            cost, flags = dest_rate.max_cost, rated.FLAG_MAX_COST_CAPPED
        else:
            flags = rated.FLAG_MAX_COST_DISCONNECT
    return Rating(
        plan=guided.plan,
        destination=dest_rate.destination,
        prefix=guided.prefix,
        connect_fee=connect_fee,
        spans=spans,
        subtotal=subtotal,
        cost=cost,
        flags=flags,
    )


def _guide(
    tariff: Tariff, tenant: str, category: str, subject: str, destination: str, start: datetime
) -> _Guided:
    first_subject = subject
    profile = _active_profile(tariff, tenant, category, subject, start)
    if profile is None:  # no profile of its own in force: the tenant/category's *any
        first_subject = ANY
        profile = _active_profile(tariff, tenant, category, ANY, start)
    if profile is None:
        msg = f"rating: no profile for {tenant}/{category}/{first_subject} at {start.isoformat()}"
        raise RatingError(rated.RATING_PLAN_NOT_FOUND, msg)
    guided = _search(tariff, profile, destination, start, seen={subject, first_subject})
    if guided is None:
        msg = f"rating: {destination!r} is in no plan of {tenant}/{category}/{subject} or fallbacks"
        raise RatingError(rated.UNAUTHORIZED_DESTINATION, msg)
    return guided


def _active_profile(
    tariff: Tariff, tenant: str, category: str, subject: str, start: datetime
) -> model.RatingProfile | None:
    key = (tenant, category, subject)
    own = [p for p in tariff.profiles if (p.tenant, p.category, p.subject) == key]
    active = [p for p in own if p.activation <= start]
    return max(active, key=lambda p: p.activation) if active else None  # max keeps the first


def _search(
    tariff: Tariff, profile: model.RatingProfile, destination: str, start: datetime, seen: set[str]
) -> _Guided | None:
    """The profile's plan if it binds the destination, else its fallbacks, depth-first."""
    bindings = tariff.plans[profile.plan].bindings
    held = [_prefixes(tariff, b) for b in bindings]
    matching = [p for prefixes in held for p in prefixes if destination.startswith(p)]
    if matching:
        longest = max(matching, key=len)
        candidates = [(i, b) for i, b in enumerate(bindings) if longest in held[i]]
        return _Guided(profile.plan, longest, candidates)
    for fallback in profile.fallback_subjects:
        if fallback in seen:
            continue
        seen.add(fallback)
        found = _active_profile(tariff, profile.tenant, profile.category, fallback, start)
        guided = None if found is None else _search(tariff, found, destination, start, seen)
        if guided is not None:
            return guided
    return None


def _prefixes(tariff: Tariff, binding: Binding) -> tuple[str, ...]:
    destination = tariff.destination_rates[binding.destination_rate].destination
    return ("",) if destination == ANY else tariff.destinations[destination]


def _in_force(tariff: Tariff, candidates: list[tuple[int, Binding]], local: datetime) -> int:
    """Index in the plan of the binding in force at the local time ``local``."""
    in_force = [(i, b) for i, b in candidates if _matches(_timing(tariff, b), local)]
    if not in_force:
        msg = f"rating: no timing of the matching bindings is in force at {local.isoformat()}"
        raise RatingError(rated.NO_TIMING_IN_FORCE, msg)
    index, _ = max(in_force, key=lambda c: (c[1].weight, _timing(tariff, c[1]).start, -c[0]))
    return index


def _timing(tariff: Tariff, binding: Binding) -> model.Timing:
    return model.ALWAYS if binding.timing == ANY else tariff.timings[binding.timing]


def _matches(timing: model.Timing, local: datetime) -> bool:
    weekdays = {7 if day == 0 else day for day in timing.weekdays}
    seconds = local.hour * 3600 + local.minute * 60 + local.second  # wall clock
    return (
        (not timing.years or local.year in timing.years)
        and (not timing.months or local.month in timing.months)
        and (not timing.month_days or local.day in timing.month_days)
        and (not weekdays or local.isoweekday() in weekdays)
        and timing.start <= seconds
    )


def _step(rate: model.Rate, elapsed: int, usage: int, period_usage: int) -> int:
    position = {
        Basis.RECORD: elapsed,
        Basis.GRADUATED: period_usage + elapsed,
        Basis.VOLUME: period_usage + usage - 1,
    }[rate.basis]
    return max(k for k, step in enumerate(rate.steps) if step.group_start <= position)


def _span(
    tariff: Tariff, binding: Binding, step_index: int, group: list[_Increment], usage: int
) -> Span:
    dest_rate = tariff.destination_rates[binding.destination_rate]
    rate = tariff.rates[dest_rate.rate]
    step = rate.steps[step_index]
    offset = group[0].offset
    billed = len(group) * step.increment
    # 60 digits hold any realistic billed * price exactly, and the quotient well
    # past the units digit, so the rounding to whole nanos below is exact.
    with decimal.localcontext(prec=60):
        exact = Decimal(billed) * Decimal(step.price) / Decimal(step.rate_unit)
        amount = int(exact.to_integral_value(rounding=_DECIMAL_ROUNDING[dest_rate.rounding]))
    return Span(
        destination_rate=dest_rate.id,
        timing=binding.timing,
        rate=rate.id,
        step=step_index,
        offset=offset,
        usage=min(offset + billed, usage) - offset,
        billed=billed,
        increment=step.increment,
        price=step.price,
        rate_unit=step.rate_unit,
        amount=amount,
    )
