"""Usage accumulation: exact sums per account and cycle, resends, late usage, orphans, lines.

Rated lines are made with :class:`engine.rated_output.RatedRecord` (the
worker's format); every amount is checked against sums computed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balances.store import MemoryStore, RocksStore, Store, WriteBatch
from billing.consumer import Billing, Message
from billing.events import SetProfile, encode_event
from billing.exceptions import BillingError
from billing.model import BalanceConsumed, BillingProfile, LineKind, Mode
from billing.tally import Rated, Use, decode_rated, nanos_of, tally, tally_slow
from billing.usage import (
    ClosedCycles,
    ProfileCache,
    UsageBook,
    apply_rated,
    balances_consumed,
    close_cycle,
    load_offsets,
    load_totals,
    orphans,
    read_totals,
    usage_lines,
)
from billing.usage_totals import (
    line_of,
)
from engine.rated_output import BalanceUse, RatedRecord, RatedSpan
from engine.topics import BILLING_EVENTS, RATED

DECIMALS = {"EUR": 2, "XOF": 0, "USD": 2}
SPAN = RatedSpan("DR", "*any", "RT", 0, 0, 60, 60, 1, "0.01", 1, "0.60")
ENC = msgspec.json.Encoder()


def at(text: str) -> int:
    """UTC microseconds of an ISO instant such as ``2026-11-03T10:00``."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000


def record(cdr_id: str, account: str, start: str, *, category: str = "call", zone: str = "DE",
           usage: int = 60, cost: int = 600_000_000, charged: str | None = "0.6",
           covered: int = 0, currency: str = "EUR",
           balances: list[BalanceUse] | None = None) -> RatedRecord:  # fmt: skip
    return RatedRecord(
        cdr_id, "t", account, category, account, "4930123", at(start), usage, "x", cost,
        currency, "RP", zone, "49", "0", 0, [SPAN], charged=charged, covered=covered,
        insufficient_credit=False if charged is not None else None, balances=balances,
    )  # fmt: skip


def lines(*records: RatedRecord) -> bytes:
    return ENC.encode_lines(list(records))


PROFILES = {
    "a": BillingProfile(account="a"),  # postpaid, day 1, UTC
    "b": BillingProfile(account="b", mode=Mode.PREPAID, bill_day=15, timezone="Europe/Paris"),
}


@pytest.fixture(params=["memory", "rocks"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "db")
    yield made
    made.close()


def sums(store: Store, account: str, cycle: str) -> dict[tuple[str, str, str, str], list[int]]:
    totals = load_totals(store, account, cycle)
    assert totals is not None
    return {(r.late_from, r.category, r.zone, r.currency):
            [r.records, r.usage, r.cost, r.charged, r.covered]
            for r in (*totals.usage, *totals.late)}  # fmt: skip


# -- sums ---------------------------------------------------------------------------------
def test_exact_sums_by_category_and_zone(store: Store) -> None:
    book = UsageBook(store)
    first = lines(
        record("1", "a", "2026-11-03T10:00", usage=61, cost=610_000_000, charged="0.61"),
        record("2", "a", "2026-11-04T10:00", usage=30, cost=300_000_000, charged="0.3"),
        record("3", "a", "2026-11-04T11:00", category="sms", zone="FR", usage=1,
               cost=90_000_000, charged="0", covered=1),
        record("4", "a", "2026-11-05T11:00", category="data", zone="*any", usage=10**6,
               cost=1_234_567_891, charged="1.234567891", currency="USD"),
    )  # fmt: skip
    second = lines(record("5", "a", "2026-11-30T23:59", usage=9, cost=1, charged="0.000000001"))
    result = book.apply([first, second], PROFILES, ClosedCycles(store))
    assert (result.records, result.applied, result.duplicates, result.totals_written) == (
        5,
        5,
        0,
        1,
    )
    assert sums(store, "a", "2026-11") == {
        ("", "call", "DE", "EUR"): [3, 100, 910_000_001, 910_000_001, 0],
        ("", "sms", "FR", "EUR"): [1, 1, 90_000_000, 0, 1],
        ("", "data", "*any", "USD"): [1, 10**6, 1_234_567_891, 1_234_567_891, 0],
    }
    third = lines(record("6", "a", "2026-11-06T00:00", usage=40, cost=400_000_000, charged="0.4"))
    book.apply(third, PROFILES, ClosedCycles(store))
    assert sums(store, "a", "2026-11")[("", "call", "DE", "EUR")] == [4, 140, 1_310_000_001,
                                                                     1_310_000_001, 0]  # fmt: skip


def test_cycle_by_bill_day_and_time_zone(store: Store) -> None:
    """b: day 15, Europe/Paris (UTC+1 in November): local midnight of the 15th is 23:00Z."""
    chunk = lines(
        record("1", "b", "2026-11-14T22:59"),  # 23:59 local on the 14th: cycle 2026-10
        record("2", "b", "2026-11-14T23:00"),  # 00:00 local on the 15th: cycle 2026-11
        record("3", "b", "2026-12-14T22:59"),  # last minute of 2026-11
        record("4", "a", "2026-11-30T23:59"),
        record("5", "a", "2026-12-01T00:00"),
    )
    result = apply_rated(store, chunk, PROFILES, ClosedCycles(store))
    assert result.totals_written == 4
    assert [t.records if t else 0 for t in read_totals(store, ["b", "a"], "2026-10")] == [1, 0]
    assert [t.records if t else 0 for t in read_totals(store, ["b", "a"], "2026-11")] == [2, 1]
    assert [t.records if t else 0 for t in read_totals(store, ["b", "a"], "2026-12")] == [0, 1]


def test_charged_missing_is_billed_at_cost_and_balances_are_summed(store: Store) -> None:
    uses = [BalanceUse("sms100", "sms", -1, 99), BalanceUse("main", "EUR", -250_000_000, 0),
            BalanceUse("points", "points", 5, 5)]  # fmt: skip
    chunk = lines(
        record("1", "a", "2026-11-03T10:00", cost=700_000_000, charged=None),
        record("2", "a", "2026-11-03T11:00", cost=250_000_000, charged="0.25", balances=uses),
        record("3", "a", "2026-11-03T12:00", cost=90_000_000, charged="0", covered=1,
               balances=uses[:1]),
    )  # fmt: skip
    apply_rated(store, chunk, PROFILES, ClosedCycles(store))
    totals = load_totals(store, "a", "2026-11")
    assert totals is not None
    assert totals.charged() == {"EUR": 950_000_000}
    assert balances_consumed(totals) == [
        BalanceConsumed("main", "EUR", 250_000_000),
        BalanceConsumed("sms100", "sms", 2),
    ]
    assert [(b.balance, b.earned) for b in totals.balances if b.earned] == [("points", 5)]


# -- resends ------------------------------------------------------------------------------
def test_resent_chunk_is_counted_once(store: Store) -> None:
    chunk = lines(*[record(f"c{i}", "a", f"2026-11-0{1 + i % 9}T10:00") for i in range(50)])
    book = UsageBook(store)
    assert book.apply(chunk, PROFILES, ClosedCycles(store)).applied == 50
    before = sums(store, "a", "2026-11")
    again = book.apply(chunk, PROFILES, ClosedCycles(store))
    assert (again.applied, again.duplicates) == (0, 50)
    # after a restart the ids come back from the store
    mixed = chunk + lines(
        record("new", "a", "2026-11-20T10:00"), record("c3", "a", "2026-11-04T10:00")
    )
    restarted = UsageBook(store).apply(mixed, PROFILES, ClosedCycles(store))
    assert (restarted.applied, restarted.duplicates) == (1, 51)
    assert sums(store, "a", "2026-11")[("", "call", "DE", "EUR")] == [
        before[("", "call", "DE", "EUR")][0] + 1, 50 * 60 + 60, 51 * 600_000_000,
        51 * 600_000_000, 0]  # fmt: skip


def test_repeat_inside_one_chunk_counts_once(store: Store) -> None:
    chunk = lines(record("x", "a", "2026-11-03T10:00"), record("x", "a", "2026-11-03T10:00"))
    result = apply_rated(store, chunk, PROFILES, ClosedCycles(store))
    assert (result.applied, result.duplicates) == (1, 1)


def test_remembered_window_keeps_two_generations(tmp_path: Path) -> None:
    """With remember=10, ids of older values are deleted as new ones come (bounded state)."""
    with RocksStore(tmp_path / "db") as store:
        book = UsageBook(store, remember=10)
        for n in range(10):
            chunk = lines(*[record(f"{n}-{i}", "a", "2026-11-03T10:00") for i in range(5)])
            book.apply(chunk, PROFILES, ClosedCycles(store))
        kept = [k for k, _ in store.scan(b"seen/c/")]
        assert 4 <= len(kept) <= 5  # 20-25 ids: two generations of 10
        assert kept[-1] == b"seen/c/%016d" % 10
        latest = lines(record("9-0", "a", "2026-11-03T10:00"))
        assert UsageBook(store, remember=10).apply(latest, PROFILES,
                                                   ClosedCycles(store)).duplicates == 1  # fmt: skip


# -- late usage ---------------------------------------------------------------------------
def test_late_usage_goes_to_the_first_open_cycle_once(store: Store) -> None:
    book = UsageBook(store)
    closed = ClosedCycles(store)
    book.apply(lines(record("on-time", "a", "2026-10-20T10:00")), PROFILES, closed)
    batch = WriteBatch()
    assert close_cycle(store, ["a", "b"], "2026-10", batch) == 2
    store.write(batch)
    closed.forget()
    before = sums(store, "a", "2026-10")
    late = lines(record("late-1", "a", "2026-10-25T10:00", usage=45, cost=450_000_000,
                        charged="0.45"),
                 record("late-2", "a", "2026-09-02T10:00"),  # two cycles back
                 record("now", "a", "2026-11-02T10:00"))  # fmt: skip
    result = book.apply(late, PROFILES, closed)
    assert (result.applied, result.late) == (3, 2)
    assert sums(store, "a", "2026-10") == before  # a closed cycle never changes
    assert sums(store, "a", "2026-11") == {
        ("", "call", "DE", "EUR"): [1, 60, 600_000_000, 600_000_000, 0],
        ("2026-09", "call", "DE", "EUR"): [1, 60, 600_000_000, 600_000_000, 0],
        ("2026-10", "call", "DE", "EUR"): [1, 45, 450_000_000, 450_000_000, 0],
    }
    assert book.apply(late, PROFILES, closed).duplicates == 3  # and once only
    totals = load_totals(store, "a", "2026-11")
    assert totals is not None
    kinds = [(line.kind, line.late_from, line.amount) for line in usage_lines(totals, DECIMALS)]
    assert kinds == [(LineKind.USAGE, "", 600_000_000),
                     (LineKind.LATE_USAGE, "2026-09", 600_000_000),
                     (LineKind.LATE_USAGE, "2026-10", 450_000_000)]  # fmt: skip
    twin = [line_of(r, DECIMALS, False) for r in (*totals.usage, *totals.late)]
    assert usage_lines(totals, DECIMALS) == twin


def test_closed_mark_never_moves_back(store: Store) -> None:
    batch = WriteBatch()
    close_cycle(store, ["a"], "2026-11", batch)
    store.write(batch)
    batch = WriteBatch()
    assert close_cycle(store, ["a"], "2026-10", batch) == 0
    assert len(batch) == 0
    assert ClosedCycles(store).of(["a", "b"]) == {"a": "2026-11"}


# -- orphans ------------------------------------------------------------------------------
def test_records_without_profile_wait_and_are_adopted(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "db") as store:
        billing = Billing(store)
        rated = lines(record("1", "c", "2026-11-03T10:00"), record("2", "c", "2026-11-04T10:00"),
                      record("3", "a", "2026-11-04T10:00"))  # fmt: skip
        a_profile = encode_event(SetProfile(PROFILES["a"]))
        billing.process([Message(BILLING_EVENTS, 0, 0, a_profile), Message(RATED, 0, 0, rated)])
        assert billing.counts["orphans"] == 2
        assert orphans(store) == {"c": 2}
        assert load_totals(store, "c", "2026-11") is None
        billing.reopen()  # a restart: the waiting account is found in the store
        assert billing.book.orphan_accounts == {"c"}
        profile = SetProfile(BillingProfile(account="c", bill_day=4))
        billing.process([Message(BILLING_EVENTS, 0, 1, encode_event(profile))])
        assert billing.counts["orphans_adopted"] == 2
        assert orphans(store) == {}
        assert sums(store, "c", "2026-10") == {("", "call", "DE", "EUR"): [1, 60, 6 * 10**8,
                                                                         6 * 10**8, 0]}  # fmt: skip
        assert sums(store, "c", "2026-11")[("", "call", "DE", "EUR")][0] == 1


# -- offsets ------------------------------------------------------------------------------
def test_offsets_skip_messages_applied_before(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "db") as store:
        billing = Billing(store)
        events = encode_event(SetProfile(PROFILES["a"]))
        first = [Message(BILLING_EVENTS, 0, 7, events),
                 Message(RATED, 2, 40, lines(record("1", "a", "2026-11-03T10:00"))),
                 Message(RATED, 2, 41, lines(record("2", "a", "2026-11-03T10:00")))]  # fmt: skip
        billing.process(first)
        assert load_offsets(store) == {(BILLING_EVENTS, 0): 8, (RATED, 2): 42}
        restarted = Billing(store)  # offsets come back from the store
        third = lines(record("3", "a", "2026-11-03T11:00"))
        restarted.process([*first, Message(RATED, 2, 42, third)])
        assert restarted.counts["replayed_messages"] == 3
        assert restarted.counts["duplicates"] == 0  # skipped before decoding
        assert sums(store, "a", "2026-11")[("", "call", "DE", "EUR")][0] == 3


def test_bad_lines_and_events_are_rejected_with_their_source(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "db") as store:
        billing = Billing(store)
        good = lines(record("1", "a", "2026-11-03T10:00"))
        rejects = billing.process([
            Message(BILLING_EVENTS, 0, 0, encode_event(SetProfile(PROFILES["a"]))),
            Message(BILLING_EVENTS, 0, 1, b'{"type": "profile", "profile": {"account": 5}}'),
            Message(BILLING_EVENTS, 0, 2, encode_event(SetProfile(BillingProfile(
                account="z", bill_day=30)))),
            Message(RATED, 1, 9, good + b'{"cdr_id": "2", "account": "a"}\n' + good[:-1]),
        ])  # fmt: skip
        assert [(r.source, r.reason) for r in rejects] == [
            ("billing-events[0]@1", "BILLING_EVENT_INVALID"),
            ("billing-events[0]@2", "PROFILE_INVALID"),
            ("rated-cdrs[1]@9#1", "RATED_LINE_INVALID"),
        ]
        assert "$.profile.account" in rejects[0].message
        assert "bill day 30" in rejects[1].message
        assert billing.counts["applied"] == 1
        assert billing.counts["duplicates"] == 1


# -- invoice lines ------------------------------------------------------------------------
def test_lines_round_half_even_and_prepaid_is_paid_from_balance(store: Store) -> None:
    chunk = lines(
        record("1", "b", "2026-11-20T10:00", cost=5_000_000, charged="0.005"),  # 0.005 → 0.00
        record("2", "b", "2026-11-20T11:00", category="sms", zone="FR", cost=15_000_000,
               charged="0.015"),  # 0.015 → 0.02
        record("3", "b", "2026-11-20T12:00", category="sms", zone="FR", currency="XOF",
               cost=2_500_000_000, charged="2.5"),  # 2.5 → 2 (XOF has no minor unit)
    )  # fmt: skip
    apply_rated(store, chunk, PROFILES, ClosedCycles(store))
    totals = load_totals(store, "b", "2026-11")
    assert totals is not None
    assert totals.mode is Mode.PREPAID
    got = usage_lines(totals, DECIMALS)
    assert [(x.category, x.zone, x.currency, x.amount, x.quantity, x.usage) for x in got] == [
        ("call", "DE", "EUR", 0, 1, 60),
        ("sms", "FR", "EUR", 20_000_000, 1, 60),
        ("sms", "FR", "XOF", 2_000_000_000, 1, 60),
    ]
    assert all(x.paid_from_balance and x.kind is LineKind.USAGE for x in got)
    assert got[1].rule == ("sum of 1 rated records (0.015 EUR), rounded half-even to 0.01;"
                           " paid from balance")  # fmt: skip
    assert got[2].rule.endswith("rounded half-even to 1; paid from balance")
    assert not any(x.paid_from_balance for x in usage_lines(totals, DECIMALS, Mode.POSTPAID))
    assert got == [line_of(r, DECIMALS, True) for r in (*totals.usage, *totals.late)]
    with pytest.raises(BillingError, match="'XOF'"):
        usage_lines(totals, {"EUR": 2})


def test_profile_cache_reads_the_store_once(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "db") as store:
        from billing.accounts import import_profiles

        import_profiles(store, PROFILES.values())
        cache = ProfileCache(store)
        found = cache.lookup(["a", "b", "nobody"])
        assert sorted(found) == ["a", "b"]
        assert found["b"].bill_day == 15
        cache.put(BillingProfile(account="a", bill_day=9))
        assert cache.lookup(["a"])["a"].bill_day == 9


# -- the columnar… no: the fast tally against its slow twin --------------------------------
def test_nanos_of() -> None:
    assert nanos_of("0.55") == 550_000_000
    assert nanos_of("-1.5") == -1_500_000_000
    assert nanos_of("3") == 3_000_000_000
    assert nanos_of("0.0000000005") == 0  # half-even
    assert nanos_of("0.0000000015") == 2
    assert nanos_of("1.000000000500000001") == 1_000_000_001


def test_decode_keeps_good_lines_of_a_bad_chunk() -> None:
    good = lines(record("1", "a", "2026-11-03T10:00"))
    records, bad = decode_rated([good, b'{"cdr_id": 1}\n' + good + b"\n\n", good])
    assert [r.cdr_id for r in records] == ["1", "1", "1"]
    assert [(b.chunk, b.line) for b in bad] == [(1, 0)]
    assert decode_rated(good.replace(b'"charged":"0.6"', b'"charged":"6e-1"'))[1]
    nameless = lines(record("2", "", "2026-11-03T10:00"), record("3", "a\x00", "2026-11-03T10:00"))
    records, bad = decode_rated([good, nameless])
    assert [r.cdr_id for r in records] == ["1"]
    assert [(b.chunk, b.line) for b in bad] == [(1, 0), (1, 1)]
    assert "cannot be billed" in bad[0].message


def rated_records(first: str, last: str) -> st.SearchStrategy[Rated]:
    return st.builds(
    Rated,
    cdr_id=st.text(max_size=3),
    account=st.sampled_from(["a", "b", "c", "d"]),
    category=st.sampled_from(["call", "sms"]),
    start_us=st.integers(at(first), at(last)),
    usage=st.integers(0, 10**6),
    cost_nanos=st.integers(0, 10**10),
    currency=st.sampled_from(["EUR", "USD"]),
    zone=st.sampled_from(["DE", "FR", "*any"]),
    charged=st.one_of(st.none(), st.sampled_from(["0", "0.5", "12.000000001"])),
    covered=st.one_of(st.none(), st.integers(0, 100)),
    balances=st.one_of(st.none(), st.lists(st.builds(
        Use, balance=st.sampled_from(["main", "b1"]), unit=st.sampled_from(["EUR", "sms"]),
        delta=st.integers(-100, 100)), max_size=3).map(tuple)),
    )  # fmt: skip


zones = st.sampled_from(["UTC", "Europe/Paris", "Pacific/Kiritimati", "America/Los_Angeles"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.one_of(  # months apart (record by record), or a batch of one day (by account)
        st.lists(rated_records("2026-08-01T00:00", "2027-02-01T00:00"), max_size=40),
        st.lists(rated_records("2026-11-14T20:00", "2026-11-15T04:00"), max_size=40),
    ),
    days=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.tuples(st.integers(1, 28), zones)),
    marks=st.dictionaries(st.sampled_from(["a", "b", "c"]),
                          st.sampled_from(["2026-09", "2026-10", "2026-11"])),
)  # fmt: skip
def test_tally_agrees_with_its_slow_twin(
    records: list[Rated], days: dict[str, tuple[int, str]], marks: dict[str, str]
) -> None:
    profiles = {a: BillingProfile(account=a, bill_day=d, timezone=z) for a, (d, z) in days.items()}
    fast, slow = tally(records, profiles, marks), tally_slow(records, profiles, marks)
    assert {k: (p.rows, p.balances) for k, p in fast[0].items()} == {
        k: (p.rows, p.balances) for k, p in slow[0].items()
    }
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]
