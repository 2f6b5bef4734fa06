"""Billing profiles, subscription events and one-time charges in the billing store.

Key layout (``\\0`` ends the account in composite keys, so that every prefix
below sorts accounts in the same byte order and three scans merge by account):

    prof/<account>                 BillingProfile (msgpack)
    sub/<account>\\0<event_id>      SubscriptionEvent
    otc/<account>\\0<charge_id>     OneTimeCharge

A profile is replaced by a newer one; a subscription event or a charge is
kept once per id: the same id again changes nothing (the first copy wins,
and a different copy under a used id is counted as a conflict, not applied).
Account ids must be non-empty and free of NUL.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby, islice
from typing import Any, Literal, NamedTuple, TypeVar

import msgspec

from balances.store import Store, WriteBatch
from billing.cycles import check_bill_day, zone
from billing.events import AddSubscriptionEvent, BillingEvent, SetProfile
from billing.exceptions import ProfileError
from billing.model import BillingProfile, OneTimeCharge, SubscriptionAction, SubscriptionEvent
from engine.account_commands import RenewalOutcome

PROFILE = b"prof/"
SUBSCRIPTION = b"sub/"
ONE_TIME = b"otc/"
SEP = b"\x00"
RENEWAL = b"rnw/"  # + op id: b"ok" or b"refused", a worker's answer to a prepaid renewal
REFUSED = "refused:"  # event id prefix of the suspension a refused renewal causes
IMPORT_CHUNK = 50_000

_ENC = msgspec.msgpack.Encoder()
_PROFILE = msgspec.msgpack.Decoder(BillingProfile)
_EVENT = msgspec.msgpack.Decoder(SubscriptionEvent)
_CHARGE = msgspec.msgpack.Decoder(OneTimeCharge)
T = TypeVar("T")


def account_key(account: str) -> bytes:
    """The account as it appears in keys; :class:`ProfileError` for an unusable id."""
    if not account or "\x00" in account:
        msg = f"account id {account!r} is empty or contains NUL: it cannot be billed"
        raise ProfileError(msg)
    return account.encode()


def profile_key(account: str) -> bytes:
    return PROFILE + account_key(account)


def check_profile(profile: BillingProfile) -> None:
    """Raise :class:`ProfileError` naming the account when a profile cannot be used."""
    account_key(profile.account)
    try:
        check_bill_day(profile.bill_day)
        zone(profile.timezone)
    except ProfileError as exc:
        msg = f"billing profile of {profile.account!r}: {exc}"
        raise ProfileError(msg) from exc
    if profile.payment_terms_days < 0:
        msg = f"billing profile of {profile.account!r}: payment_terms_days is negative"
        raise ProfileError(msg)


# -- profiles --------------------------------------------------------------------------
def load_profile(store: Store, account: str) -> BillingProfile | None:
    raw = store.get(profile_key(account))
    return None if raw is None else _PROFILE.decode(raw)


def load_profiles(store: Store, accounts: Sequence[str]) -> dict[str, BillingProfile]:
    """The profiles of ``accounts`` that exist, in one multi-get."""
    values = store.get_many([profile_key(a) for a in accounts])
    return {a: _PROFILE.decode(v) for a, v in zip(accounts, values, strict=True) if v is not None}


@dataclass(frozen=True, slots=True)
class ImportResult:
    written: int  # new or changed profiles
    unchanged: int  # already stored exactly so


def import_profiles(
    store: Store, profiles: Iterable[BillingProfile], *, chunk: int = IMPORT_CHUNK
) -> ImportResult:
    """Store many profiles: one multi-get and one WriteBatch per ``chunk`` profiles.

    Idempotent: importing the same file again writes nothing. Every profile
    of a chunk is checked before the chunk is written, so a bad one stops the
    import with the earlier chunks stored (import again after fixing it).
    """
    written = unchanged = 0
    it = iter(profiles)
    while part := list(islice(it, chunk)):
        for p in part:
            check_profile(p)
        keys = [PROFILE + p.account.encode() for p in part]
        values = [_ENC.encode(p) for p in part]
        batch = WriteBatch()
        for key, value, old in zip(keys, values, store.get_many(keys), strict=True):
            if old == value:
                unchanged += 1
            else:
                batch.put(key, value)
        written += len(batch)
        store.write(batch)
    return ImportResult(written, unchanged)


@dataclass(frozen=True, slots=True)
class AccountGroup:
    """Which accounts a run covers; ``None`` fields do not filter. All set fields must match."""

    accounts: frozenset[str] | None = None
    reseller: str | None = None
    segment: str | None = None
    bill_day: int | None = None

    def matches(self, p: BillingProfile) -> bool:
        return (
            (self.accounts is None or p.account in self.accounts)
            and (self.reseller is None or p.reseller == self.reseller)
            and (self.segment is None or p.segment == self.segment)
            and (self.bill_day is None or p.bill_day == self.bill_day)
        )


ALL = AccountGroup()
Span = tuple[bytes, bytes | None]  # accounts from [0] (bytes) up to, not including, [1]
WHOLE: Span = (b"", None)


def iter_profiles(store: Store, group: AccountGroup = ALL) -> Iterator[BillingProfile]:
    """The group's profiles in account (byte) order."""
    if group.accounts is not None:
        ordered = sorted(group.accounts, key=str.encode)
        for lo in range(0, len(ordered), IMPORT_CHUNK):
            found = load_profiles(store, ordered[lo : lo + IMPORT_CHUNK])
            yield from (p for a in ordered[lo : lo + IMPORT_CHUNK]
                        if (p := found.get(a)) is not None and group.matches(p))  # fmt: skip
        return
    for _, raw in store.scan(PROFILE):
        p = _PROFILE.decode(raw)
        if group.matches(p):
            yield p


# -- subscription events and one-time charges --------------------------------------------
Outcome = Literal["new", "same", "conflict"]  # conflict: another copy holds the id; not applied


def subscription_key(event: SubscriptionEvent) -> bytes:
    if not event.event_id:
        msg = f"subscription event of {event.account!r} has no event_id"
        raise ProfileError(msg)
    return SUBSCRIPTION + account_key(event.account) + SEP + event.event_id.encode()


def charge_key(charge: OneTimeCharge) -> bytes:
    if not charge.charge_id:
        msg = f"one-time charge of {charge.account!r} has no charge_id"
        raise ProfileError(msg)
    if charge.quantity < 1:
        msg = f"one-time charge {charge.charge_id!r}: quantity {charge.quantity} is below 1"
        raise ProfileError(msg)
    return ONE_TIME + account_key(charge.account) + SEP + charge.charge_id.encode()


def check_event(event: BillingEvent) -> None:
    """Raise :class:`ProfileError` when an event cannot be stored (nothing is written)."""
    if isinstance(event, SetProfile):
        check_profile(event.profile)
    elif isinstance(event, AddSubscriptionEvent):
        subscription_key(event.event)
    elif not isinstance(event, RenewalOutcome):
        charge_key(event.charge)


class EventWriter:
    """Billing events into one :class:`WriteBatch` that sees its own earlier writes.

    A profile replaces the stored one; a subscription event or charge is
    written once per id. Counts outcomes per kind (``profile:new`` …).
    """

    def __init__(self, store: Store, batch: WriteBatch | None = None) -> None:
        self.store = store
        self.batch = batch if batch is not None else WriteBatch()
        self.counts: Counter[str] = Counter()
        self._pending: dict[bytes, bytes] = {}

    def _stored(self, key: bytes) -> bytes | None:
        value = self._pending.get(key)
        return value if value is not None else self.store.get(key)

    def _put(self, kind: str, key: bytes, value: bytes, *, replace: bool) -> Outcome:
        old = self._stored(key)
        outcome: Outcome = "same" if old == value else "new" if old is None or replace else (
            "conflict")  # fmt: skip
        if outcome == "new":
            self.batch.put(key, value)
            self._pending[key] = value
        self.counts[f"{kind}:{outcome}"] += 1
        return outcome

    def profile(self, profile: BillingProfile) -> Outcome:
        check_profile(profile)
        return self._put("profile", profile_key(profile.account), _ENC.encode(profile),
                         replace=True)  # fmt: skip

    def subscription(self, event: SubscriptionEvent) -> Outcome:
        return self._put("subscription", subscription_key(event), _ENC.encode(event),
                         replace=False)  # fmt: skip

    def charge(self, charge: OneTimeCharge) -> Outcome:
        return self._put("one_time", charge_key(charge), _ENC.encode(charge), replace=False)

    def renewal(self, outcome: RenewalOutcome) -> Outcome:
        """A worker's answer to a renewal; a refusal suspends the subscription from the
        first day the fee would have paid for."""
        done = self._put("renewal", RENEWAL + outcome.op_id.encode(),
                         b"ok" if outcome.ok else b"refused", replace=False)  # fmt: skip
        if not outcome.ok:
            self.subscription(SubscriptionEvent(
                event_id=f"{REFUSED}{outcome.op_id}", account=outcome.account,
                subscription=outcome.subscription, action=SubscriptionAction.SUSPEND,
                day=outcome.day, reason=outcome.reason,
            ))  # fmt: skip
        return done

    def apply(self, event: BillingEvent) -> Outcome:
        if isinstance(event, SetProfile):
            return self.profile(event.profile)
        if isinstance(event, AddSubscriptionEvent):
            return self.subscription(event.event)
        if isinstance(event, RenewalOutcome):
            return self.renewal(event)
        return self.charge(event.charge)


def put_subscription_events(store: Store, events: Sequence[SubscriptionEvent]) -> Counter[str]:
    """Store events (each id once) in one write; counts of outcomes (``subscription:new`` …)."""
    writer = EventWriter(store)
    for event in events:
        writer.subscription(event)
    store.write(writer.batch)
    return writer.counts


def _by_day(events: list[T]) -> list[T]:
    """Events and charges in day order; the same day in id order (ids say what comes first)."""
    return sorted(events, key=lambda e: (getattr(e, "day", ""), _id_of(e)))


def _id_of(e: Any) -> str:
    return str(getattr(e, "event_id", "") or getattr(e, "charge_id", ""))


def load_subscription_events(store: Store, account: str) -> list[SubscriptionEvent]:
    rows = store.scan(SUBSCRIPTION + account_key(account) + SEP)
    return _by_day([_EVENT.decode(raw) for _, raw in rows])


def load_one_time_charges(store: Store, account: str) -> list[OneTimeCharge]:
    rows = store.scan(ONE_TIME + account_key(account) + SEP)
    return _by_day([_CHARGE.decode(raw) for _, raw in rows])


# -- what a run needs per account --------------------------------------------------------
class BillingInputs(NamedTuple):
    """What a run needs of one account; unpacks as ``(profile, events, one_time)``."""

    profile: BillingProfile
    events: list[SubscriptionEvent]  # day order
    one_time: list[OneTimeCharge]  # day order


def load_billing_inputs(store: Store, account: str) -> BillingInputs | None:
    """One account's profile, events and charges: one get and two short scans."""
    profile = load_profile(store, account)
    if profile is None:
        return None
    return BillingInputs(profile, load_subscription_events(store, account),
                         load_one_time_charges(store, account))  # fmt: skip


def _grouped(
    store: Store, prefix: bytes, first: bytes = b""
) -> Iterator[tuple[bytes, list[bytes]]]:
    """``(account key, raw values)`` per account under ``prefix`` (from account ``first``
    on), accounts in byte order."""
    rows = store.scan(prefix, first)
    start = len(prefix)
    for account, run in groupby(rows, key=lambda kv: kv[0][start : kv[0].index(SEP, start)]):
        yield account, [raw for _, raw in run]


def iter_billing_inputs(
    store: Store, group: AccountGroup = ALL, span: Span = WHOLE
) -> Iterator[BillingInputs]:
    """Every account of ``group`` (within ``span``) with its events and charges, in
    account (byte) order.

    Three sequential scans (``prof/``, ``sub/``, ``otc/``) merged by account,
    not three reads per account: a million accounts stream in seconds. A small
    list of accounts is read account by account instead.
    """
    first, stop = span
    if group.accounts is not None and len(group.accounts) <= IMPORT_CHUNK:
        for profile in iter_profiles(store, group):
            if _within(profile.account.encode(), span):
                yield BillingInputs(profile, load_subscription_events(store, profile.account),
                                    load_one_time_charges(store, profile.account))  # fmt: skip
        return
    subs, otcs = _grouped(store, SUBSCRIPTION, first), _grouped(store, ONE_TIME, first)
    sub_next, otc_next = next(subs, None), next(otcs, None)
    for key, raw in store.scan(PROFILE, first):
        account = key[len(PROFILE) :]
        if stop is not None and account >= stop:
            return
        while sub_next is not None and sub_next[0] < account:  # events without a profile
            sub_next = next(subs, None)
        while otc_next is not None and otc_next[0] < account:
            otc_next = next(otcs, None)
        profile = _PROFILE.decode(raw)
        if not group.matches(profile):
            continue
        events: list[SubscriptionEvent] = []
        charges: list[OneTimeCharge] = []
        if sub_next is not None and sub_next[0] == account:
            events = _by_day([_EVENT.decode(v) for v in sub_next[1]])
            sub_next = next(subs, None)
        if otc_next is not None and otc_next[0] == account:
            charges = _by_day([_CHARGE.decode(v) for v in otc_next[1]])
            otc_next = next(otcs, None)
        yield BillingInputs(profile, events, charges)


def _within(account: bytes, span: Span) -> bool:
    return span[0] <= account and (span[1] is None or account < span[1])


def split_group(store: Store, group: AccountGroup, parts: int, minimum: int) -> list[Span]:
    """``group``'s accounts cut into ``parts`` spans of about as many accounts each,
    or one span of everything when the group has fewer than ``minimum`` accounts."""
    if parts < 2 or (group.accounts is not None and len(group.accounts) < minimum):
        return [WHOLE]
    names = [key[len(PROFILE) :] for key, raw in store.scan(PROFILE)
             if group == ALL or group.matches(_PROFILE.decode(raw))]  # fmt: skip
    if len(names) < minimum:
        return [WHOLE]
    cuts = [names[len(names) * i // parts] for i in range(1, parts)]
    return list(zip([b"", *cuts], [*cuts, None], strict=True))
