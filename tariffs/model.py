"""The tariff model: what a rating plan says, independent of where it came from.

Both loaders (the native TOML format in :mod:`tariffs.native` and the CGRateS
CSV importer in :mod:`tariffs.cgrates`) produce a :class:`Tariff`; the compiler
(:mod:`tariffs.compile`) turns it into flat arrays for the kernels, and the
slow reference rater (:mod:`tariffs.reference`) reads it directly.

Units and money
---------------
- Usage is an integer in the record's own unit: seconds for voice, bytes for
  data, a count for SMS and events. ``rate_unit``, ``increment`` and
  ``group_start`` are in that same unit.
- Money is an integer number of **nanos**: 10**-9 of the tariff's currency
  unit (``1.2`` EUR is ``1_200_000_000``). Prices in a plan may have at most
  nine decimals; a plan with more is refused, never silently rounded.

Semantics (the same as CGRateS rating plans unless noted)
--------------------------------------------------------
- A *destination* is a named set of number prefixes. A number matches the
  destination(s) holding its **longest** matching prefix among the
  destinations a plan binds; ``*any`` (the id :data:`ANY`) matches every
  number with prefix length 0, so it is only used when nothing longer binds.
- A *timing* says when a binding is in force: years, months, month days and
  ISO weekdays (1 = Monday … 7 = Sunday; 0 is read as Sunday too), each empty
  for "any", and a start time of day (seconds since local midnight in the
  tariff's time zone). A timing is in force on matching days from its start
  time until midnight; among the bindings in force at an instant the highest
  ``weight`` wins, and between equal weights the one whose start time is the
  latest (so ``PEAK`` from 08:00 gives way to ``OFFPEAK_EVENING`` from 19:00).
  A holiday is just a timing with a higher weight.
- A *rate* prices usage in steps. Each step applies from ``group_start`` of
  elapsed usage on: usage is billed in whole ``increment``s (a partial
  increment is billed whole) at ``price`` per ``rate_unit``. The connect fee
  (or, for events, the price per event) is charged once per record.
- A *destination rate* joins destination and rate, and says how the record's
  total is rounded (method and decimals) and its max cost (``cap``: charge at
  most ``max_cost``; ``disconnect``: charge what was used but flag the record
  so the switch would have cut it).
- A *rating plan* binds destination rates to timings with weights.
- A *rating profile* chooses the plan for (tenant, category, subject) by the
  latest activation time not after the record's start. A subject with no
  profile of its own uses subject ``*any``; when the chosen plan has no
  binding for the destination, the profile's fallback subjects are tried in
  order.

Beyond CGRateS: volume pricing. A rate whose ``basis`` is not ``record``
measures ``group_start`` in the account's usage so far in the current
calendar month of the tariff's time zone (for that category), not within the
record: ``graduated`` prices each unit at the step it falls in (a record that
crosses a threshold is split), ``volume`` prices the whole record at the step
reached by the usage at the record's end.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec

ANY = "*any"
"""Wildcard destination, timing or subject."""

NANOS = 1_000_000_000
"""Money unit: amounts are integers in 10**-9 of the currency unit."""

SECONDS_PER_DAY = 86_400


class Rounding(enum.Enum):
    """How a record's total is rounded to the destination rate's decimals."""

    UP = "up"
    DOWN = "down"
    HALF_UP = "half_up"
    HALF_EVEN = "half_even"


class MaxCostStrategy(enum.Enum):
    NONE = "none"
    CAP = "cap"
    DISCONNECT = "disconnect"


class Basis(enum.Enum):
    """What ``RateStep.group_start`` is measured against."""

    RECORD = "record"  # elapsed usage within the record (CGRateS)
    GRADUATED = "graduated"  # usage in the period, each unit at its tier
    VOLUME = "volume"  # usage in the period, the record at the tier it reaches


class Timing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    years: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    month_days: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()
    start: int = 0  # seconds since local midnight


ALWAYS = Timing(id=ANY)


class RateStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    group_start: int  # usage units
    price: int  # nanos per rate_unit
    rate_unit: int  # usage units, > 0
    increment: int  # usage units, > 0


class Rate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    steps: tuple[RateStep, ...]  # sorted by group_start, the first at 0
    connect_fee: int = 0  # nanos, once per record
    basis: Basis = Basis.RECORD


class DestinationRate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    destination: str  # a destination id or ANY
    rate: str
    rounding: Rounding = Rounding.UP
    decimals: int = 4
    max_cost: int = 0  # nanos; 0 with strategy NONE
    max_cost_strategy: MaxCostStrategy = MaxCostStrategy.NONE


class Binding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    destination_rate: str
    timing: str = ANY
    weight: float = 0.0


class RatingPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    bindings: tuple[Binding, ...]


class RatingProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenant: str
    category: str
    subject: str  # or ANY
    activation: datetime  # timezone-aware
    plan: str
    fallback_subjects: tuple[str, ...] = ()


class Tariff(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A whole tariff: everything needed to rate usage, already cross-checked."""

    name: str
    currency: str
    timezone: str  # IANA name, e.g. "Europe/Berlin" or "UTC"
    destinations: dict[str, tuple[str, ...]]
    timings: dict[str, Timing]
    rates: dict[str, Rate]
    destination_rates: dict[str, DestinationRate]
    plans: dict[str, RatingPlan]
    profiles: tuple[RatingProfile, ...]
