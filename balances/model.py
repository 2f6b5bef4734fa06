"""The balances model: units, accounts and the balances they hold.

Units are data (:func:`balances.units.load_units`), never hard-coded: a unit
has a name, a kind (money, crypto, item), the measure it counts (money, or
the usage it can pay for: seconds, bytes, count; points pay for nothing
directly) and ``decimals``, the precision of its integer amounts:

- money and crypto amounts are integers of 10**-decimals of the unit (EUR
  with decimals 9 counts nanos, the unit rated amounts are in; BTC with 8
  counts satoshi; ETH with 18 counts wei, so an ``int64`` balance holds at
  most 9.22 ETH);
- item amounts count their measure (seconds, bytes, messages, plays,
  points) with decimals 0.

An account is prepaid (never below zero), postpaid (its main balance may go
down to ``-credit_limit``: debt), or hybrid (bundles first, then prepaid
money, then postpaid overflow up to the credit limit). Postpaid and hybrid
debit the same way; they differ in how billing treats them. Mode and credit
limit are per account and change over time (``Account.changes``).

A balance has a weight (higher pays first; among equal weights the one that
expires first, then the older one), an optional validity window
``[valid_from, valid_until)`` and a filter of what it may pay for
(categories, destination zones of the tariff, services = record kinds). An
item balance pays usage of its measure at zero price (a "free minutes"
bundle covers voice seconds); a money balance pays money in its currency.
"""

from __future__ import annotations

import enum
from datetime import datetime

import msgspec


class UnitKind(enum.Enum):
    MONEY = "money"
    CRYPTO = "crypto"
    ITEM = "item"


class Measure(enum.Enum):
    """What a unit counts: money, or the usage a bundle of it pays for."""

    MONEY = "money"
    SECONDS = "seconds"  # voice usage
    BYTES = "bytes"  # data usage
    COUNT = "count"  # SMS and events (messages, video plays, API calls)
    POINTS = "points"  # loyalty points: redeemed, never debited by usage


class Unit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    kind: UnitKind
    measure: Measure
    decimals: int = 0  # precision of the integer amount (10**-decimals of the unit)
    display: str = ""  # how people name it ("EUR", "minutes", "MB")
    display_factor: int = 1  # amount units per displayed unit (60 for minutes shown from seconds)


class Mode(enum.Enum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"
    HYBRID = "hybrid"


class Filter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a balance may pay for; an empty tuple admits anything."""

    categories: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()  # destination (zone) ids of the tariff
    services: tuple[str, ...] = ()  # record kinds: voice, sms, data, event


class Balance(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str  # unique within the account
    unit: str
    amount: int = 0
    weight: int = 0
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    filter: Filter = Filter()


class ModeChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at: datetime
    mode: Mode
    credit_limit: int  # in the currency's amount units


class Account(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    tenant: str
    currency: str  # a money unit: the main balance's unit
    mode: Mode = Mode.PREPAID
    credit_limit: int = 0  # postpaid/hybrid: how far the main balance may go below zero
    created: datetime
    referrer: str = ""
    changes: tuple[ModeChange, ...] = ()  # later mode/limit changes, in time order


MAIN = "main"
"""Id of every account's main money balance (its currency, no filter, no expiry)."""
