"""What rating one record produces: the amount and the breakdown that explains it.

The compiled path (:mod:`tariffs.rating`) and the reference rater
(:mod:`tariffs.reference`) both produce :class:`Rating` values, so tests can
compare them field by field.

How a record is cut into spans (both implementations follow this exactly):

1. Usage is walked from elapsed ``e = 0``. For a time-based record (voice),
   at each point the binding in force at instant ``start + e`` is chosen (see
   :mod:`tariffs.model`); for other records the binding in force at ``start``
   is used throughout.
2. The rate step is the last step whose ``group_start`` is ``<=`` the step
   position: ``e`` for basis ``record``, ``period_usage + e`` for
   ``graduated``, and ``period_usage + usage - 1`` for ``volume``.
3. Usage is billed in whole increments of that step. An increment that starts
   before a change (timing boundary, next step) is billed whole at the old
   price, so billing resumes at the first increment boundary after it.
4. Consecutive increments with the same binding and step form one
   :class:`Span`; its ``amount`` is ``billed * price / rate_unit`` rounded to
   whole nanos by the destination rate's rounding method (the only rounding
   below the plan's own decimals, and it is exact for any price with
   ``rate_unit`` dividing ``billed * price``).
5. ``subtotal`` is the connect fee plus the span amounts; ``cost`` is
   ``subtotal`` rounded to the destination rate's decimals by its method and
   then capped or flagged by its max cost. The destination rate and rate in
   force at the record's start decide connect fee, rounding and max cost.

A record with zero usage has no spans and costs nothing (no connect fee).
"""

from __future__ import annotations

import msgspec

FLAG_MAX_COST_CAPPED = 1
FLAG_MAX_COST_DISCONNECT = 2

# Stable error codes (also the reject reasons of unratable records).
RATING_PLAN_NOT_FOUND = "RATING_PLAN_NOT_FOUND"
UNAUTHORIZED_DESTINATION = "UNAUTHORIZED_DESTINATION"
NO_TIMING_IN_FORCE = "NO_TIMING_IN_FORCE"
USAGE_OUT_OF_RANGE = "USAGE_OUT_OF_RANGE"

MAX_CALL_SECONDS = 31 * 86_400
"""The longest time-based record rated: a call claiming more is a mediation error
(``USAGE_OUT_OF_RANGE``), and rating it would cut one span per timing change."""


class Span(msgspec.Struct, frozen=True):
    destination_rate: str
    timing: str
    rate: str
    step: int  # index of the rate step
    offset: int  # elapsed usage at which the span starts
    usage: int  # usage of the record covered by the span
    billed: int  # usage billed: whole increments
    increment: int
    price: int  # nanos per rate_unit
    rate_unit: int
    amount: int  # nanos


class Rating(msgspec.Struct, frozen=True):
    plan: str
    destination: str  # destination id, or "*any"
    prefix: str  # the matched prefix ("" for *any)
    connect_fee: int  # nanos
    spans: tuple[Span, ...]
    subtotal: int  # nanos, before rounding
    cost: int  # nanos, rounded and capped
    flags: int = 0
