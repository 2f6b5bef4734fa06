"""Subscription timelines: an account's subscription events folded into dated segments.

A subscription is a run of segments, each one product from a first day
(inclusive) to an end day (exclusive), active or suspended. Events come in any
order and may repeat (the same ``event_id`` is applied once); they are applied
by day, then ``subscribe`` before anything else of the same day and ``end``
after it, then by event id (the ids say which of a same-day suspend and resume
came first). A sequence that makes no sense — a change before the subscribe, a
resume of an active subscription, anything after the end — is a
:class:`~billing.exceptions.ProfileError` naming the event.

Days are kept as proleptic ordinals (``date.toordinal()``) so that counting
days is integer subtraction.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from datetime import date
from functools import lru_cache

import msgspec

from billing.exceptions import ProfileError
from billing.model import SubscriptionAction, SubscriptionEvent

OPEN = date.max.toordinal()
"""The end of a segment that has not ended (as an ordinal)."""

_SUBSCRIBE, _END = SubscriptionAction.SUBSCRIBE, SubscriptionAction.END


@lru_cache(maxsize=8192)
def day_ordinal(text: str) -> int:
    """``"2026-11-10"`` → its ordinal; :class:`ProfileError` when it is not an ISO date."""
    try:
        return date.fromisoformat(text).toordinal()
    except ValueError:
        msg = f"{text!r} is not an ISO date (YYYY-MM-DD)"
        raise ProfileError(msg) from None


@lru_cache(maxsize=8192)
def day_text(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


class Segment(msgspec.Struct, frozen=True, gc=False):
    """One product of one subscription from ``start`` to ``end`` (ordinals, end exclusive)."""

    product: str
    start: int
    end: int  # OPEN when the subscription goes on
    suspended: bool = False

    @property
    def first_day(self) -> date:
        return date.fromordinal(self.start)

    @property
    def end_day(self) -> date | None:
        return None if self.end == OPEN else date.fromordinal(self.end)


class Timeline(msgspec.Struct, frozen=True):
    """One subscription: its segments in day order, its first day and its end (if any)."""

    subscription: str
    segments: tuple[Segment, ...]
    start: int  # the subscribe day
    end: int  # the end day (exclusive), OPEN while it goes on
    product_ids: tuple[str, ...]  # the products it had, in order, each once

    def product_start(self, product: str) -> int:
        """The first day the subscription is on ``product`` (OPEN if never)."""
        for segment in self.segments:
            if segment.product == product:
                return segment.start
        return OPEN

    def products(self) -> tuple[str, ...]:
        """The products of the subscription, in the order it had them (each once)."""
        return self.product_ids


def _describe(event: SubscriptionEvent) -> str:
    return f"subscription event {event.event_id!r} ({event.action.value} on {event.day})"


def fold(
    events: Sequence[SubscriptionEvent],
    account: str | None = None,
    products: Container[str] | None = None,
) -> list[Timeline]:
    """The timelines of every subscription in ``events``, ordered by subscription id.

    ``account`` (when given) must be every event's account; ``products`` (when
    given) must hold every product a subscribe or change names.
    """
    unique: dict[str, SubscriptionEvent] = {}
    by_subscription: dict[str, list[tuple[int, int, str, SubscriptionEvent]]] = {}
    for event in events:
        event_id = event.event_id
        seen = unique.get(event_id)
        if seen is not None:
            if seen != event:
                msg = f"{_describe(event)}: the same event id was given with other content"
                raise ProfileError(msg)
            continue
        unique[event_id] = event
        if account is not None and event.account != account:
            msg = f"{_describe(event)}: belongs to account {event.account!r}, not {account!r}"
            raise ProfileError(msg)
        try:
            day = day_ordinal(event.day)
        except ProfileError as exc:
            msg = f"{_describe(event)}: {exc}"
            raise ProfileError(msg) from None
        action = event.action  # same day: subscribe first, end last, the rest by id
        key = (day, 0 if action is _SUBSCRIBE else 2 if action is _END else 1, event_id, event)
        keyed = by_subscription.get(event.subscription)
        if keyed is None:
            by_subscription[event.subscription] = [key]
        else:
            keyed.append(key)
    # Event ids are unique here, so sorting the tuples never compares two events.
    names = sorted(by_subscription) if len(by_subscription) > 1 else list(by_subscription)
    return [_timeline(name, sorted(by_subscription[name]), products) for name in names]


def _timeline(
    name: str,
    keyed: list[tuple[int, int, str, SubscriptionEvent]],
    products: Container[str] | None,
) -> Timeline:
    if len(keyed) == 1:  # the common case: one subscribe, nothing since
        day, _, _, event = keyed[0]
        product = event.product
        if (
            event.action is SubscriptionAction.SUBSCRIBE
            and product
            and (products is None or product in products)
        ):
            return Timeline(name, (Segment(product, day, OPEN),), day, OPEN, (product,))
    segments: list[Segment] = []
    product = ""
    suspended = False
    since = start = 0
    ended = OPEN
    for day, _, _, event in keyed:
        action = event.action
        problem = ""
        if ended != OPEN:
            problem = "the subscription has already ended"
        elif action is SubscriptionAction.SUBSCRIBE:
            problem = "the subscription has already started" if product else ""
        elif not product:
            problem = "the subscription has not started (no subscribe before it)"
        elif action is SubscriptionAction.CHANGE and event.product == product:
            problem = f"the subscription is already on {product!r}"
        elif action is SubscriptionAction.SUSPEND and suspended:
            problem = "the subscription is already suspended"
        elif action is SubscriptionAction.RESUME and not suspended:
            problem = "the subscription is not suspended"
        if not problem and action in (SubscriptionAction.SUBSCRIBE, SubscriptionAction.CHANGE):
            if not event.product:
                problem = "no product given"
            elif products is not None and event.product not in products:
                problem = f"product {event.product!r} is not in the catalog"
        if problem:
            msg = f"{_describe(event)} of subscription {name!r}: {problem}"
            raise ProfileError(msg)
        if product and day > since:
            _append(segments, Segment(product, since, day, suspended))
        if action is SubscriptionAction.SUBSCRIBE:
            start = day
        if action in (SubscriptionAction.SUBSCRIBE, SubscriptionAction.CHANGE):
            product = event.product
        elif action is SubscriptionAction.SUSPEND:
            suspended = True
        elif action is SubscriptionAction.RESUME:
            suspended = False
        else:
            ended = day
        since = max(since, day)
    if ended == OPEN:
        _append(segments, Segment(product, since, OPEN, suspended))
    product_ids = tuple(dict.fromkeys(segment.product for segment in segments))
    return Timeline(name, tuple(segments), start, ended, product_ids)


def _append(segments: list[Segment], segment: Segment) -> None:
    """Add ``segment``, merging it into the previous one when nothing changed in between."""
    if segments:
        last = segments[-1]
        if last.product == segment.product and last.suspended == segment.suspended:
            segments[-1] = Segment(last.product, last.start, segment.end, last.suspended)
            return
    segments.append(segment)
