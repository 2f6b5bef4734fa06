"""Billing profiles, subscription events and one-time charges in the billing store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from balances.store import MemoryStore, RocksStore, Store, WriteBatch
from billing.accounts import (
    AccountGroup,
    EventWriter,
    account_key,
    import_profiles,
    iter_billing_inputs,
    iter_profiles,
    load_billing_inputs,
    load_profile,
    put_subscription_events,
)
from billing.events import (
    AddOneTimeCharge,
    AddSubscriptionEvent,
    BillingEvent,
    BillingEventError,
    SetProfile,
    decode_events,
    encode_event,
    encode_events,
    event_account,
)
from billing.exceptions import ProfileError
from billing.model import (
    BillingProfile,
    Mode,
    OneTimeCharge,
    SubscriptionAction,
    SubscriptionEvent,
)


@pytest.fixture(params=["memory", "rocks"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "db")
    yield made
    made.close()


def sub(
    event_id: str, account: str, day: str, action: str = "subscribe", product: str = "mobile-m"
) -> SubscriptionEvent:
    return SubscriptionEvent(
        event_id=event_id,
        account=account,
        subscription="s1",
        action=SubscriptionAction(action),
        day=day,
        product=product if action in ("subscribe", "change") else "",
    )


def charge(charge_id: str, account: str, day: str, amount: int | None = None) -> OneTimeCharge:
    return OneTimeCharge(charge_id=charge_id, account=account, fee="activation", day=day,
                         amount=amount)  # fmt: skip


# -- events on the wire -------------------------------------------------------------------
def test_events_round_trip_one_or_an_array() -> None:
    events: list[BillingEvent] = [
        SetProfile(BillingProfile(account="a", bill_day=5, mode=Mode.HYBRID)),
        AddSubscriptionEvent(sub("e1", "a", "2026-11-03")),
        AddOneTimeCharge(charge("c1", "a", "2026-11-03", 19_990_000_000)),
    ]
    assert decode_events(encode_events(events)) == events
    assert decode_events(b"  " + encode_event(events[1])) == [events[1]]
    assert [event_account(e) for e in events] == ["a", "a", "a"]
    text = b'{"type": "profile", "profile": {"account": "a", "bill_day": 5, "timezone": "UTC"}}'
    assert decode_events(text) == [SetProfile(BillingProfile(account="a", bill_day=5))]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"type": "invoice"}', "invalid billing event"),
        (b'{"type": "profile", "profile": {"account": "a", "colour": 1}}', "$.profile"),
        (b'[{"type": "one_time", "charge": {"charge_id": "c"}}]', "$[0].charge"),
        (b"\x93\x01", "not a JSON billing event"),
    ],
)
def test_bad_events_name_the_source_and_the_path(raw: bytes, words: str) -> None:
    with pytest.raises(BillingEventError, match="billing-events\\[2\\]@7") as info:
        decode_events(raw, "billing-events[2]@7")
    assert words in str(info.value)


# -- idempotent writes --------------------------------------------------------------------
def test_event_writer_keeps_each_id_once(store: Store) -> None:
    writer = EventWriter(store)
    first = sub("e1", "a", "2026-11-03")
    assert writer.subscription(first) == "new"
    assert writer.subscription(first) == "same"  # in the same batch
    store.write(writer.batch)
    again = EventWriter(store)
    assert again.subscription(first) == "same"
    assert again.subscription(sub("e1", "a", "2026-12-01")) == "conflict"  # not applied
    assert again.charge(charge("c1", "a", "2026-11-04")) == "new"
    assert again.profile(BillingProfile(account="a")) == "new"
    assert again.profile(BillingProfile(account="a", bill_day=7)) == "new"  # replaces
    store.write(again.batch)
    assert dict(again.counts) == {"subscription:same": 1, "subscription:conflict": 1,
                                  "one_time:new": 1, "profile:new": 2}  # fmt: skip
    inputs = load_billing_inputs(store, "a")
    assert inputs is not None
    assert inputs.profile.bill_day == 7
    assert inputs.events == [first]
    assert [c.charge_id for c in inputs.one_time] == ["c1"]
    assert put_subscription_events(store, [first, sub("e2", "a", "2026-11-20", "end")]) == {
        "subscription:same": 1,
        "subscription:new": 1,
    }


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        (BillingProfile(account="a", bill_day=29), "bill day 29"),
        (BillingProfile(account="a", timezone="Mars/Olympus"), "Mars/Olympus"),
        (BillingProfile(account=""), "empty"),
        (BillingProfile(account="a\x00b"), "NUL"),
    ],
)
def test_bad_profiles_are_refused(store: Store, profile: BillingProfile, words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        EventWriter(store).profile(profile)
    with pytest.raises(ProfileError, match=words):
        import_profiles(store, [profile])


def test_charges_need_an_id_and_a_quantity(store: Store) -> None:
    with pytest.raises(ProfileError, match="no charge_id"):
        EventWriter(store).charge(charge("", "a", "2026-11-01"))
    with pytest.raises(ProfileError, match="quantity 0"):
        EventWriter(store).charge(OneTimeCharge(charge_id="c", account="a", fee="f",
                                                day="2026-11-01", quantity=0))  # fmt: skip
    with pytest.raises(ProfileError, match="no event_id"):
        EventWriter(store).subscription(sub("", "a", "2026-11-01"))
    assert account_key("acc-1") == b"acc-1"


# -- bulk import --------------------------------------------------------------------------
class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, batch: WriteBatch) -> None:
        self.writes.append(len(batch))
        super().write(batch)


def test_import_is_one_write_per_chunk_and_idempotent() -> None:
    store = CountingStore()
    profiles = [BillingProfile(account=f"acc-{i:05d}", bill_day=1 + i % 28,
                               reseller=("", "r1")[i % 2]) for i in range(25_000)]  # fmt: skip
    result = import_profiles(store, iter(profiles), chunk=10_000)
    assert (result.written, result.unchanged) == (25_000, 0)
    assert store.writes == [10_000, 10_000, 5_000]
    changed = [*profiles[:-1], BillingProfile(account="acc-24999", bill_day=3)]
    again = import_profiles(store, changed, chunk=10_000)
    assert (again.written, again.unchanged) == (1, 24_999)
    assert load_profile(store, "acc-24999") == BillingProfile(account="acc-24999", bill_day=3)


# -- groups and the mass run's inputs ------------------------------------------------------
ACCOUNTS = ["a", "a-b", "a/b", "b", "ç", "zz"]  # "a" is a prefix of two others


def filled(store: Store) -> None:
    import_profiles(store, [
        BillingProfile(account=a, reseller="r1" if i % 2 else "", segment=("consumer",
                       "business")[i % 3 == 0], bill_day=1 + i) for i, a in enumerate(ACCOUNTS)
    ])  # fmt: skip
    writer = EventWriter(store)
    for account in ["a", "a-b", "ç", "no-profile"]:
        writer.subscription(sub(f"{account}-2", account, "2026-11-20", "change", "mobile-l"))
        writer.subscription(sub(f"{account}-1", account, "2026-11-02"))
    for account in ["a/b", "no-profile", "zz"]:
        writer.charge(charge(f"{account}-c", account, "2026-11-05"))
    store.write(writer.batch)


Inputs = tuple[BillingProfile, list[SubscriptionEvent], list[OneTimeCharge]]


def summary(inputs: Sequence[Inputs]) -> list[tuple[str, list[str], list[str]]]:
    return [(p.account, [e.event_id for e in ev], [c.charge_id for c in ch])
            for p, ev, ch in inputs]  # fmt: skip


def test_billing_inputs_merge_three_scans_by_account(store: Store) -> None:
    filled(store)
    merged = summary(list(iter_billing_inputs(store)))
    one_by_one = summary([x for a in sorted(ACCOUNTS, key=str.encode)
                          if (x := load_billing_inputs(store, a)) is not None])  # fmt: skip
    assert (
        merged
        == one_by_one
        == [
            ("a", ["a-1", "a-2"], []),
            ("a-b", ["a-b-1", "a-b-2"], []),
            ("a/b", [], ["a/b-c"]),
            ("b", [], []),
            ("zz", [], ["zz-c"]),
            ("ç", ["ç-1", "ç-2"], []),
        ]
    )
    assert load_billing_inputs(store, "no-profile") is None


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (AccountGroup(), ["a", "a-b", "a/b", "b", "zz", "ç"]),
        (AccountGroup(reseller="r1"), ["a-b", "b", "zz"]),
        (AccountGroup(segment="business"), ["a", "b"]),
        (AccountGroup(bill_day=3), ["a/b"]),
        (AccountGroup(accounts=frozenset({"zz", "a", "nobody"})), ["a", "zz"]),
        (AccountGroup(accounts=frozenset({"zz", "a-b"}), reseller="r1"), ["a-b", "zz"]),
    ],
)
def test_groups(store: Store, group: AccountGroup, expected: list[str]) -> None:
    filled(store)
    assert [p.account for p in iter_profiles(store, group)] == expected
    assert [x.profile.account for x in iter_billing_inputs(store, group)] == expected
