"""The wire format of topic ``billing-events``: profiles, subscription changes, one-time charges.

A message holds one event, or a JSON array of events, each an object tagged
by ``"type"`` that wraps the billing record it carries::

    {"type": "profile", "profile": {"account": "a1", "bill_day": 5, "timezone": "Europe/Paris"}}
    {"type": "subscription", "event": {"event_id": "e1", "account": "a1", "subscription": "s1",
                                       "action": "subscribe", "day": "2026-11-03",
                                       "product": "mobile-m"}}
    {"type": "one_time", "charge": {"charge_id": "c1", "account": "a1", "fee": "activation",
                                    "day": "2026-11-03"}}
    {"type": "renewal", "op_id": "renew:a1:s1:M_MONTHLY:2026-12", "account": "a1", ...}

(the last is a worker's answer to a prepaid renewal:
:class:`engine.account_commands.RenewalOutcome`).

Produce them keyed by account (any partition works: one billing consumer
reads them all). A profile replaces the account's profile; a subscription
event or a charge is kept once per id (the first copy wins).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from billing.exceptions import BillingError
from billing.model import BillingProfile, OneTimeCharge, SubscriptionEvent
from engine.account_commands import RenewalOutcome


class BillingEventError(BillingError):
    """A ``billing-events`` message that cannot be read; the message says which part and why."""

    code = "BILLING_EVENT_INVALID"


class _Event(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=True):
    pass


class SetProfile(_Event, frozen=True, tag="profile"):
    """Create or replace an account's billing profile."""

    profile: BillingProfile


class AddSubscriptionEvent(_Event, frozen=True, tag="subscription"):
    """Record a subscription change (subscribe, change, suspend, resume, end)."""

    event: SubscriptionEvent


class AddOneTimeCharge(_Event, frozen=True, tag="one_time"):
    """Record a one-time fee or ad-hoc credit."""

    charge: OneTimeCharge


BillingEvent = SetProfile | AddSubscriptionEvent | AddOneTimeCharge | RenewalOutcome

_ONE = msgspec.json.Decoder(BillingEvent)
_MANY = msgspec.json.Decoder(list[BillingEvent])
_ENC = msgspec.json.Encoder()


def event_account(event: BillingEvent) -> str:
    """The account an event is about (its Kafka key)."""
    if isinstance(event, SetProfile):
        return event.profile.account
    if isinstance(event, AddSubscriptionEvent):
        return event.event.account
    if isinstance(event, RenewalOutcome):
        return event.account
    return event.charge.account


def encode_event(event: BillingEvent) -> bytes:
    return _ENC.encode(event)


def encode_events(events: Sequence[BillingEvent]) -> bytes:
    """Several events as one message (a JSON array)."""
    return _ENC.encode(list(events))


def decode_events(raw: bytes, source: str = "billing event") -> list[BillingEvent]:
    """The events of one message (one object or an array of them).

    Raises :class:`BillingEventError` naming ``source`` (e.g.
    ``billing-events[0]@12``) and msgspec's path to the bad field.
    """
    body = raw.lstrip()
    try:
        if body[:1] == b"[":
            return _MANY.decode(body)
        return [_ONE.decode(body)]
    except msgspec.ValidationError as exc:
        msg = f"{source}: invalid billing event: {exc}"
        raise BillingEventError(msg) from exc
    except msgspec.DecodeError as exc:
        msg = f"{source}: not a JSON billing event (or array of them): {exc}"
        raise BillingEventError(msg) from exc
