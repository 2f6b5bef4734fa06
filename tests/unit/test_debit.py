"""Debiting rated records from balances, worked out by hand on the sample plan.

Every case runs the compiled path (:class:`~balances.debit.Debitor` on a
:class:`~balances.state.BalanceState`) and the reference
(:func:`~balances.reference.debit_reference`) on the same set-up, asserts the
two agree on every outcome, journal row and final amount, and then checks
the amounts against the arithmetic written out in the test.

Prices used below (``tariffs/samples/mobile.toml``, EUR): on a weekday from
08:00 to 19:00 Berlin time a national fixed call costs 0.03 to connect and
0.09 a minute (the first minute whole, then per second); a German mobile
0.03 and 0.19; off-peak fixed 0.04 a minute per second without a connect
fee; premium 0.49 and 1.99 a minute, capped at 30; a national SMS 0.09; data
0.01 per MB billed per KB, the total rounded up to 4 decimals; a video play
0.49.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from pathlib import Path

import msgspec
import numpy as np
import pytest

import tariffs
from balances.debit import Debitor
from balances.exceptions import BalanceError
from balances.kernels import (
    FLAG_DUPLICATE,
    FLAG_INSUFFICIENT_CREDIT,
    FLAG_NOT_RATED,
    FLAG_UNKNOWN_ACCOUNT,
    LOYALTY_EARNED,
    USAGE_DEBT,
    USAGE_ITEMS,
    USAGE_MONEY,
)
from balances.model import MAIN, Account, Balance, Filter, Mode
from balances.reference import (
    JournalRow,
    Outcome,
    RefAccount,
    RefBalance,
    RefRecord,
    debit_reference,
)
from balances.state import MAIN_WEIGHT, BalanceState
from balances.units import load_units
from engine.columns import KIND_NAMES, StrColumn
from engine.records import DataRecord, EventRecord, Record, SmsRecord, VoiceRecord
from engine.wire import records_to_columns
from tariffs.loader import load_tariff
from tariffs.rating import Rater
from tests.conftest import SeededRandom

SAMPLE_PLAN = Path(tariffs.__file__).parent / "samples" / "mobile.toml"
UNITS = load_units()
EUR = 10**9  # nanos: EUR amounts have 9 decimals
CENT = EUR // 100
T = datetime(2026, 11, 2, 10, tzinfo=UTC)  # a Monday, 11:00 in Berlin: peak
DAY = timedelta(days=1)
TENANT = "ratewire.demo"
FIXED, MOBILE, PREMIUM = "4930123456", "4916012345", "49900123"
ANYTHING = Filter()


@cache
def rater(currency: str = "EUR") -> Rater:
    """The sample plan's rater; its prices read in another ``currency`` if given."""
    return Rater(msgspec.structs.replace(load_tariff(SAMPLE_PLAN), currency=currency))


# -- set-ups: accounts and what their balances hold when the test starts -------------
@dataclass(frozen=True)
class Opening:
    balance: Balance
    amount: int = 0
    reserved: int = 0


@dataclass(frozen=True)
class Holder:
    account: Account
    main: int = 0  # opening amount of the main balance
    main_reserved: int = 0
    balances: tuple[Opening, ...] = ()


def holder(
    name: str,
    *balances: Opening,
    mode: Mode = Mode.PREPAID,
    limit: int = 0,
    main: int = 0,
    main_reserved: int = 0,
    currency: str = "EUR",
) -> Holder:
    account = Account(
        id=name, tenant=TENANT, currency=currency, mode=mode, credit_limit=limit,
        created=T - 365 * DAY,
    )  # fmt: skip
    return Holder(account, main, main_reserved, balances)


def opening(
    balance_id: str,
    unit: str,
    amount: int,
    *,
    reserved: int = 0,
    weight: int = 0,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    only: Filter = ANYTHING,
) -> Opening:
    balance = Balance(
        id=balance_id, unit=unit, weight=weight, valid_from=valid_from, valid_until=valid_until,
        filter=only,
    )  # fmt: skip
    return Opening(balance, amount, reserved)


def voice(account: str, destination: str, usage: int, start: datetime = T) -> VoiceRecord:
    return VoiceRecord(
        cdr_id="v", tenant=TENANT, account=account, destination=destination, start=start,
        usage=usage,
    )  # fmt: skip


def sms(account: str, destination: str, usage: int, start: datetime = T) -> SmsRecord:
    return SmsRecord(
        cdr_id="s", tenant=TENANT, account=account, destination=destination, start=start,
        usage=usage,
    )  # fmt: skip


def data(account: str, usage: int, start: datetime = T) -> DataRecord:
    return DataRecord(cdr_id="d", tenant=TENANT, account=account, start=start, usage=usage)


def event(account: str, category: str, usage: int = 1, start: datetime = T) -> EventRecord:
    return EventRecord(
        cdr_id="e", tenant=TENANT, account=account, category=category, start=start, usage=usage
    )


# -- both paths on one set-up --------------------------------------------------------
class Book:
    """A BalanceState opened from set-ups, and the opening amount of every balance.

    Accounts are created one balance at a time, or all at once (``bulk``).
    """

    def __init__(
        self,
        holders: Sequence[Holder],
        earn: Mapping[str, int] | None,
        rater: Rater,
        *,
        bulk: bool = False,
    ) -> None:
        self.state = BalanceState(UNITS)
        self.opening: dict[tuple[str, str], int] = {}
        if bulk:
            own = [[o.balance for o in h.balances] for h in holders]
            rows = self.state.add_accounts([h.account for h in holders], own).tolist()
        else:
            rows = [self.state.add_account(h.account) for h in holders]
            for a, h in zip(rows, holders, strict=True):
                for o in h.balances:
                    self.state.add_balance(a, o.balance)
        for a, h in zip(rows, holders, strict=True):
            self._open(self.state.balance_row(a, MAIN), h.main, h.main_reserved)
            for o in h.balances:
                self._open(self.state.balance_row(a, o.balance.id), o.amount, o.reserved)
        self.debitor = Debitor(self.state, rater, dict(earn or {}))

    def _open(self, row: int, amount: int, reserved: int) -> None:
        self.state.bal.arrays["amount"][row] = amount
        self.state.bal.arrays["reserved"][row] = reserved
        self.opening[self.key(row)] = amount

    def key(self, row: int) -> tuple[str, str]:
        account = int(self.state.bal.arrays["account"][row])
        return self.state.accounts[account].id, self.state.balance_ids[row]

    def amounts(self) -> dict[tuple[str, str], int]:
        return {self.key(row): int(v) for row, v in enumerate(self.state.amounts())}


def ref_accounts(holders: Sequence[Holder]) -> dict[str, RefAccount]:
    accounts = {}
    for h in holders:
        main = RefBalance(
            MAIN, h.account.currency, h.main, reserved=h.main_reserved, weight=MAIN_WEIGHT
        )
        others = [
            RefBalance(
                o.balance.id, o.balance.unit, o.amount, reserved=o.reserved,
                weight=o.balance.weight, valid_from=o.balance.valid_from,
                valid_until=o.balance.valid_until, filter=o.balance.filter, created=k,
            )
            for k, o in enumerate(h.balances, start=1)
        ]  # fmt: skip
        accounts[h.account.id] = RefAccount(h.account.mode, h.account.credit_limit, [main, *others])
    return accounts


@dataclass
class Debited:
    """What the compiled path did (checked equal to the reference's)."""

    book: Book
    outcomes: list[Outcome]
    journal: list[JournalRow]  # record indexes count across batches

    def amount(self, account: str, balance: str = MAIN) -> int:
        return self.book.amounts()[account, balance]


def debit(
    holders: Sequence[Holder],
    records: Sequence[Record],
    *,
    earn: Mapping[str, int] | None = None,
    skip: Sequence[int] = (),
    cuts: Sequence[int] = (),
    currency: str = "EUR",
    bulk: bool = False,
) -> Debited:
    """Debit ``records`` in batches cut at ``cuts``, compiled and reference; they must agree.

    The tariff's prices are in ``currency``; ``bulk`` creates the accounts in one call.
    """
    book = Book(holders, earn, rater(currency), bulk=bulk)
    skips = list(skip) or [0] * len(records)
    outcomes: list[Outcome] = []
    journal: list[JournalRow] = []
    ref_records: list[RefRecord] = []
    for lo, hi in pairwise([0, *cuts, len(records)]):
        columns = records_to_columns(records[lo:hi])
        rated = book.debitor.rater.rate(columns)
        result = book.debitor.debit(columns, rated, np.array(skips[lo:hi], dtype=np.int64))
        columns_out = (result.covered, result.due, result.paid, result.flags)
        outcomes += [Outcome(*row) for row in zip(*(a.tolist() for a in columns_out), strict=True)]
        j = result.journal
        journal += [
            JournalRow(lo + r, book.key(b), d, after, reason)
            for r, b, d, after, reason in zip(
                j.record.tolist(), j.balance.tolist(), j.delta.tolist(), j.after.tolist(),
                j.reason.tolist(), strict=True,
            )
        ]  # fmt: skip
        for i, record in enumerate(records[lo:hi]):
            rating = rated.rating(i) if rated.error[i] == 0 else None
            ref_records.append(
                RefRecord(
                    record.account,
                    KIND_NAMES[record.kind],
                    record.category,
                    record.start,
                    rating,
                    skips[lo + i],
                )
            )
    accounts = ref_accounts(holders)
    expected, expected_journal = debit_reference(
        accounts, ref_records, tariff=book.debitor.rater.tariff, units=UNITS, earn=earn
    )
    assert outcomes == expected
    assert journal == expected_journal
    ref_amounts = {(a, b.id): b.amount for a, acc in accounts.items() for b in acc.balances}
    assert book.amounts() == ref_amounts
    return Debited(book, outcomes, journal)


# -- the cases -----------------------------------------------------------------------
FREE_MINUTES = Filter(destinations=("GERMANY", "DE_MOBILE"))


def test_free_minutes_then_money() -> None:
    """The issue's example: 30 free minutes left, a 40-minute national call."""
    alice = holder(
        "alice", opening("free", "voice_seconds", 1800, only=FREE_MINUTES), main=10 * EUR
    )
    d = debit([alice], [voice("alice", FIXED, 2400), voice("alice", FIXED, 2400)])
    # 30 minutes from the bundle; 10 minutes at 0.09 plus the connect fee from money
    assert d.outcomes[0] == Outcome(covered=1800, due=93 * CENT, paid=93 * CENT, flags=0)
    # the bundle is empty: the second call costs what it is rated at
    assert d.outcomes[1] == Outcome(covered=0, due=363 * CENT, paid=363 * CENT, flags=0)
    assert d.journal == [
        JournalRow(0, ("alice", "free"), -1800, 0, USAGE_ITEMS),
        JournalRow(0, ("alice", MAIN), -93 * CENT, 907 * CENT, USAGE_MONEY),
        JournalRow(1, ("alice", MAIN), -363 * CENT, 544 * CENT, USAGE_MONEY),
    ]


def test_bundle_covers_from_the_start_of_the_call() -> None:
    """A call from 07:50 to 08:10 Berlin: the cheap off-peak part comes first."""
    alice = holder("alice", opening("free", "voice_seconds", 900), main=EUR)
    d = debit([alice], [voice("alice", FIXED, 1200, start=T.replace(hour=6, minute=50))])
    # 600 s off-peak and 300 s peak covered, 300 s at the peak's 0.09 a minute left;
    # the connect fee is the off-peak rate's, which has none
    assert d.outcomes == [Outcome(covered=900, due=45 * CENT, paid=45 * CENT, flags=0)]


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "covered", "due"),
    [
        pytest.param(None, T - DAY, 0, 93 * CENT, id="expired"),
        pytest.param(None, T, 0, 93 * CENT, id="expires-at-start"),
        pytest.param(T + timedelta(seconds=1), None, 0, 93 * CENT, id="not-yet-valid"),
        pytest.param(T, None, 600, 0, id="valid-from-start"),
        pytest.param(T - DAY, T + timedelta(microseconds=1), 600, 0, id="valid-at-start"),
    ],
)
def test_bundle_is_used_only_when_valid_at_the_start(
    valid_from: datetime | None, valid_until: datetime | None, covered: int, due: int
) -> None:
    bundle = opening("free", "voice_seconds", 3600, valid_from=valid_from, valid_until=valid_until)
    d = debit([holder("alice", bundle, main=EUR)], [voice("alice", FIXED, 600)])
    assert d.outcomes == [Outcome(covered, due, due, 0)]
    assert d.amount("alice", "free") == 3600 - covered


@pytest.mark.parametrize(
    ("unit", "only", "record", "covered", "due"),
    [
        pytest.param("voice_seconds", Filter(destinations=("DE_MOBILE",)), voice("a", FIXED, 120),
                     0, 21 * CENT, id="zone-refused"),
        pytest.param("voice_seconds", Filter(destinations=("DE_MOBILE",)), voice("a", MOBILE, 120),
                     120, 0, id="zone-admitted"),
        pytest.param("data_bytes", Filter(destinations=("GERMANY",)), data("a", 10_000),
                     0, 1 * CENT // 100, id="zone-never-admits-any"),
        pytest.param("video_plays", Filter(categories=("video",)), event("a", "video"),
                     1, 0, id="category-admitted"),
        pytest.param("video_plays", Filter(categories=("video",)), sms("a", FIXED, 1),
                     0, 9 * CENT, id="category-refused"),
        pytest.param("sms", Filter(services=("sms",)), sms("a", FIXED, 1),
                     1, 0, id="service-admitted"),
        pytest.param("sms", Filter(services=("sms",)), event("a", "video"),
                     0, 49 * CENT, id="service-refused"),
        pytest.param("sms", Filter(), event("a", "video"), 1, 0, id="no-filter-any-count"),
        pytest.param("sms", Filter(), voice("a", FIXED, 60), 0, 12 * CENT, id="other-measure"),
    ],
)  # fmt: skip
def test_filters_choose_what_a_bundle_pays_for(
    unit: str, only: Filter, record: Record, covered: int, due: int
) -> None:
    d = debit([holder("a", opening("b", unit, 10**6, only=only), main=EUR)], [record])
    assert d.outcomes == [Outcome(covered, due, due, 0)]


def test_bundles_split_a_call_in_paying_order() -> None:
    balances = (
        opening("low", "voice_seconds", 300, weight=5),
        opening("late", "voice_seconds", 200, weight=10, valid_until=T + 30 * DAY),
        opening("soon", "voice_seconds", 100, weight=10, valid_until=T + 10 * DAY),
        opening("soon-younger", "voice_seconds", 100, weight=10, valid_until=T + 10 * DAY),
        opening("forever", "voice_seconds", 1000, weight=10),
    )
    d = debit([holder("a", *balances, main=EUR)], [voice("a", FIXED, 1000)])
    assert d.outcomes == [Outcome(covered=1000, due=0, paid=0, flags=0)]  # no connect fee
    assert d.journal == [
        JournalRow(0, ("a", "soon"), -100, 0, USAGE_ITEMS),
        JournalRow(0, ("a", "soon-younger"), -100, 0, USAGE_ITEMS),
        JournalRow(0, ("a", "late"), -200, 0, USAGE_ITEMS),
        JournalRow(0, ("a", "forever"), -600, 400, USAGE_ITEMS),
    ]
    assert d.amount("a", "low") == 300


def test_prepaid_never_goes_below_zero() -> None:
    prepaid = holder("a", main=50 * CENT, limit=5 * EUR)  # a credit limit it does not use
    d = debit([prepaid], [voice("a", FIXED, 600), voice("a", FIXED, 600)])
    assert d.outcomes == [
        Outcome(covered=0, due=93 * CENT, paid=50 * CENT, flags=FLAG_INSUFFICIENT_CREDIT),
        Outcome(covered=0, due=93 * CENT, paid=0, flags=FLAG_INSUFFICIENT_CREDIT),
    ]
    assert d.journal == [JournalRow(0, ("a", MAIN), -50 * CENT, 0, USAGE_MONEY)]


def test_postpaid_goes_into_debt_down_to_the_credit_limit() -> None:
    bob = holder("bob", mode=Mode.POSTPAID, limit=5 * EUR, main=EUR)
    d = debit([bob], [voice("bob", FIXED, 2400), voice("bob", FIXED, 2400)])
    assert d.outcomes == [
        Outcome(covered=0, due=363 * CENT, paid=363 * CENT, flags=0),
        Outcome(covered=0, due=363 * CENT, paid=237 * CENT, flags=FLAG_INSUFFICIENT_CREDIT),
    ]
    assert d.journal == [
        JournalRow(0, ("bob", MAIN), -EUR, 0, USAGE_MONEY),
        JournalRow(0, ("bob", MAIN), -263 * CENT, -263 * CENT, USAGE_DEBT),
        JournalRow(1, ("bob", MAIN), -237 * CENT, -5 * EUR, USAGE_DEBT),
    ]


def test_hybrid_pays_bundles_then_money_then_debt() -> None:
    hybrid = holder(
        "h",
        opening("free", "voice_seconds", 1800),
        opening("topup", "EUR", 20 * CENT, weight=5),
        opening("dollars", "USD", 100 * EUR, weight=50),  # not the tariff's currency
        mode=Mode.HYBRID, limit=2 * EUR, main=50 * CENT,
    )  # fmt: skip
    d = debit([hybrid], [voice("h", FIXED, 2400)])
    assert d.outcomes == [Outcome(covered=1800, due=93 * CENT, paid=93 * CENT, flags=0)]
    assert d.journal == [
        JournalRow(0, ("h", "free"), -1800, 0, USAGE_ITEMS),
        JournalRow(0, ("h", "topup"), -20 * CENT, 0, USAGE_MONEY),
        JournalRow(0, ("h", MAIN), -50 * CENT, 0, USAGE_MONEY),
        JournalRow(0, ("h", MAIN), -23 * CENT, -23 * CENT, USAGE_DEBT),
    ]
    assert d.amount("h", "dollars") == 100 * EUR


def test_a_balance_weighted_below_the_main_balance_pays_after_it() -> None:
    a = holder("a", opening("savings", "EUR", EUR, weight=MAIN_WEIGHT - 1), main=50 * CENT)
    d = debit([a], [voice("a", FIXED, 600)])
    assert d.journal == [
        JournalRow(0, ("a", MAIN), -50 * CENT, 0, USAGE_MONEY),
        JournalRow(0, ("a", "savings"), -43 * CENT, 57 * CENT, USAGE_MONEY),
    ]


def test_zero_usage_changes_nothing() -> None:
    a = holder("a", opening("free", "voice_seconds", 60), main=EUR)
    d = debit([a], [voice("a", FIXED, 0), sms("a", FIXED, 0)])
    assert d.outcomes == [Outcome(0, 0, 0, 0)] * 2
    assert d.journal == []


@pytest.mark.parametrize(
    ("record", "flags"),
    [
        pytest.param(voice("carol", FIXED, 60), FLAG_UNKNOWN_ACCOUNT, id="unknown-account"),
        pytest.param(voice("a", "999", 60), FLAG_NOT_RATED, id="unauthorized-destination"),
        pytest.param(event("a", "fax"), FLAG_NOT_RATED, id="no-rating-plan"),
        pytest.param(event("carol", "fax"), FLAG_NOT_RATED | FLAG_UNKNOWN_ACCOUNT, id="both"),
    ],
)
def test_records_that_cannot_be_debited_change_nothing(record: Record, flags: int) -> None:
    a = holder("a", opening("free", "voice_seconds", 60), mode=Mode.POSTPAID, limit=EUR, main=EUR)
    d = debit([a], [record])
    assert d.outcomes == [Outcome(0, 0, 0, flags)]
    assert d.journal == []
    assert d.book.amounts() == d.book.opening


def test_skipped_records_keep_their_flags_and_change_nothing() -> None:
    d = debit([holder("a", main=EUR)], [voice("a", FIXED, 60)] * 2, skip=[FLAG_DUPLICATE, 0])
    assert d.outcomes == [Outcome(0, 0, 0, FLAG_DUPLICATE), Outcome(0, 12 * CENT, 12 * CENT, 0)]


def test_reserved_amounts_are_not_spent() -> None:
    a = holder("a", opening("free", "voice_seconds", 1800, reserved=1200), main=EUR,
               main_reserved=50 * CENT)  # fmt: skip
    d = debit([a], [voice("a", FIXED, 2400)])
    # 600 s covered; 1800 s at 0.09 a minute plus the connect fee: 2.73, of which 0.50 is free
    assert d.outcomes == [Outcome(600, 273 * CENT, 50 * CENT, FLAG_INSUFFICIENT_CREDIT)]
    assert (d.amount("a", "free"), d.amount("a")) == (1200, 50 * CENT)


def test_reserved_amounts_shrink_the_credit_left() -> None:
    a = holder("a", mode=Mode.POSTPAID, limit=5 * EUR, main_reserved=EUR)
    d = debit([a], [voice("a", FIXED, 2400), voice("a", FIXED, 2400)])
    assert [o.paid for o in d.outcomes] == [363 * CENT, 37 * CENT]
    assert d.amount("a") == -4 * EUR


def test_loyalty_points_on_money_paid() -> None:
    a = holder(
        "a",
        opening("free", "voice_seconds", 600, only=Filter(destinations=("DE_MOBILE",))),
        opening("points", "points", 5),
        opening("more-points", "points", 0, weight=5),  # created later: never earns
        main=10 * EUR,
    )
    records: list[Record] = [voice("a", FIXED, 600), voice("a", MOBILE, 600), sms("a", FIXED, 20)]
    d = debit([a], records, earn={"call": 10})
    assert [o.paid for o in d.outcomes] == [93 * CENT, 0, 180 * CENT]
    # 10 points per euro, rounded down: 9.3 → 9; nothing for a free call or for SMS
    assert d.journal[1] == JournalRow(0, ("a", "points"), 9, 14, LOYALTY_EARNED)
    assert (d.amount("a", "points"), d.amount("a", "more-points")) == (14, 0)


def test_points_go_to_the_first_created_points_balance_when_created_in_bulk() -> None:
    a = holder("a", opening("old", "points", 0), opening("new", "points", 0, weight=5), main=EUR)
    d = debit([a], [voice("a", FIXED, 600)], earn={"call": 10}, bulk=True)
    assert (d.amount("a", "old"), d.amount("a", "new")) == (9, 0)


def test_postpaid_debt_earns_points_too() -> None:
    a = holder("a", opening("points", "points", 0), mode=Mode.POSTPAID, limit=10 * EUR)
    d = debit([a], [voice("a", FIXED, 2400)], earn={"call": 10})
    assert d.amount("a", "points") == 36  # 3.63 paid as debt


def test_data_bundle_counts_bytes() -> None:
    a = holder("a", opening("mb", "data_bytes", 1_000_000), main=EUR)
    d = debit([a], [data("a", 1_234_567), data("a", 1_234_567)])
    # billed per KB: 1_235_000 bytes; 235_000 left at 0.01 per MB is 0.00235, rounded up
    # to 4 decimals; the second session pays all of it, 0.01235 → 0.0124
    assert d.outcomes == [
        Outcome(1_000_000, 2_400_000, 2_400_000, 0),
        Outcome(0, 12_400_000, 12_400_000, 0),
    ]


def test_sms_bundle_counts_messages() -> None:
    a = holder("a", opening("sms", "sms", 10), main=EUR)
    d = debit([a], [sms("a", FIXED, 3), sms("a", FIXED, 12)])
    assert d.outcomes == [Outcome(3, 0, 0, 0), Outcome(7, 45 * CENT, 45 * CENT, 0)]


@pytest.mark.parametrize(
    ("bundle", "due"),
    [
        pytest.param(0, 30 * EUR, id="capped"),  # 0.49 + 20 x 1.99 = 40.29
        pytest.param(300, 30 * EUR, id="capped-after-bundle"),  # 0.49 + 15 x 1.99 = 30.34
        pytest.param(600, 2039 * CENT, id="under-the-cap"),  # 0.49 + 10 x 1.99
        pytest.param(1200, 0, id="covered"),
    ],
)
def test_premium_calls_are_capped(bundle: int, due: int) -> None:
    a = holder("a", opening("free", "voice_seconds", bundle), main=100 * EUR)
    d = debit([a], [voice("a", PREMIUM, 1200)])
    assert d.outcomes == [Outcome(bundle, due, due, 0)]


@pytest.mark.parametrize(
    ("currency", "one"),
    [pytest.param("EUR", 10**9, id="EUR"), pytest.param("BTC", 10**8, id="satoshi"),
     pytest.param("ETH", 10**18, id="wei")],
)  # fmt: skip
def test_due_is_in_the_currency_units_precision(currency: str, one: int) -> None:
    """Rated nanos become satoshi (8 decimals) or wei (18); points count whole units paid."""
    a = holder("a", opening("points", "points", 0), main=5 * one, currency=currency)
    d = debit([a], [voice("a", FIXED, 2400)], earn={"call": 1}, currency=currency)
    assert d.outcomes == [Outcome(0, 363 * one // 100, 363 * one // 100, 0)]
    assert (d.amount("a"), d.amount("a", "points")) == (137 * one // 100, 3)


def test_points_on_large_amounts_in_wei() -> None:
    a = holder("a", opening("points", "points", 0), main=10**18, currency="ETH")
    d = debit([a], [voice("a", FIXED, 600)], earn={"call": 10}, currency="ETH")
    assert d.amount("a", "points") == 9  # 0.93 ETH at 10 points per ETH


@pytest.mark.parametrize(
    ("only", "message"),
    [
        pytest.param(Filter(destinations=("MARS",)),
                     "filter destination 'MARS' is not a destination of the tariff", id="zone"),
        pytest.param(Filter(services=("fax",)),
                     "filter service 'fax': expected one of voice, sms, data, event", id="service"),
        pytest.param(Filter(categories=tuple(f"c{k}" for k in range(64))),
                     "more than 63 categories", id="categories"),
    ],
)  # fmt: skip
def test_filters_the_debitor_cannot_compile_are_refused(only: Filter, message: str) -> None:
    with pytest.raises(BalanceError, match=re.escape(message)):
        Book([holder("a", opening("b", "sms", 1, only=only))], None, rater())


# -- the balance is the sum of its journal -------------------------------------------
def random_workload(rng: SeededRandom) -> tuple[list[Holder], list[Record]]:
    units = ("voice_seconds", "sms", "data_bytes", "video_plays", "points", "EUR", "USD")
    amount = {"voice_seconds": 3600, "sms": 20, "data_bytes": 10**8, "video_plays": 3,
              "points": 50, "EUR": 5 * EUR, "USD": 5 * EUR}  # fmt: skip
    holders = []
    for name in ("a", "b", "c"):
        balances = []
        for k in range(rng.randrange(6)):
            unit = rng.choice(units)
            until = T + rng.randrange(-2, 5) * DAY if rng.random() < 0.3 else None
            balances.append(opening(f"{unit}-{k}", unit, rng.randrange(amount[unit] + 1),
                                    weight=rng.randrange(3), valid_until=until))  # fmt: skip
        mode = rng.choice(list(Mode))
        holders.append(holder(name, *balances, mode=mode, limit=rng.randrange(3 * EUR),
                              main=rng.randrange(-EUR, 3 * EUR)))  # fmt: skip
    records: list[Record] = []
    for _ in range(60):
        who, start = rng.choice("abcx"), T + timedelta(minutes=rng.randrange(3 * 24 * 60))
        one_of_each: list[Record] = [
            voice(who, rng.choice([FIXED, MOBILE, PREMIUM, "999"]), rng.randrange(3600), start),
            sms(who, rng.choice([FIXED, "3312345"]), rng.randrange(5), start),
            data(who, rng.randrange(10**8), start),
            event(who, rng.choice(["video", "fax"]), rng.randrange(3), start),
        ]
        records.append(rng.choice(one_of_each))
    return holders, records


def test_every_balance_is_its_opening_amount_plus_its_journal(rng: SeededRandom) -> None:
    holders, records = random_workload(rng)
    d = debit(holders, records, earn={"call": 10, "video": 100}, cuts=(20, 45))
    assert d.journal, "the workload should debit something"
    running = dict(d.book.opening)
    deltas: dict[tuple[str, str], int] = defaultdict(int)
    for row in d.journal:
        running[row.balance] += row.delta
        deltas[row.balance] += row.delta
        assert row.after == running[row.balance]
    amounts = d.book.amounts()
    assert amounts == running
    assert all(amounts[key] == d.book.opening[key] + deltas[key] for key in amounts)
    for h in holders:
        if h.account.mode is Mode.PREPAID:  # prepaid spends only what it has
            assert amounts[h.account.id, MAIN] >= min(h.main, 0)
        else:
            assert amounts[h.account.id, MAIN] >= min(h.main, -h.account.credit_limit)


BIG_PRICE_PLAN = """
[tariff]
name = "per-GB"
currency = "EUR"
timezone = "UTC"
[rates.RT_GB]
steps = [{from = "0", price = "10", per = "1GB", increment = "1MB"}]
[destination_rates.DR_GB]
destination = "*any"
rate = "RT_GB"
rounding = "half_even"
decimals = 9
[plans.RP]
bindings = [{destination_rate = "DR_GB"}]
[[profiles]]
tenant = "t"
category = "data"
subject = "*any"
activation = "2026-01-01T00:00:00Z"
plan = "RP"
"""


def test_money_due_is_exact_for_large_prices_per_unit() -> None:
    """10 EUR per GB on a 950 MB session: billed × price passes int64 (found by the
    rating property tests); the debit prices uncovered spans the same exact way."""
    from datetime import UTC, datetime

    from balances.debit import Debitor
    from balances.ledger import Ledger
    from balances.model import Account, Mode
    from balances.store import MemoryStore
    from balances.units import load_units
    from engine.records import DataRecord
    from engine.wire import records_to_columns
    from tariffs.native import loads_native
    from tariffs.rating import Rater

    rater = Rater(loads_native(BIG_PRICE_PLAN, source="per-gb.toml"))
    ledger = Ledger(MemoryStore(), load_units())
    created = datetime(2026, 1, 1, tzinfo=UTC)
    ledger.create_account(Account(id="a", tenant="t", currency="EUR", mode=Mode.POSTPAID,
                                  credit_limit=100 * 10**9, created=created))  # fmt: skip
    columns = records_to_columns([DataRecord(cdr_id="d", tenant="t", account="a",
                                             start=datetime(2026, 2, 1, tzinfo=UTC),
                                             usage=950_000_000)])  # fmt: skip
    rated = rater.rate(columns)
    assert int(rated.cost[0]) == 9_500_000_000
    result = ledger.debit(Debitor(ledger.state, rater), columns, rated)
    assert (int(result.due[0]), int(result.paid[0])) == (9_500_000_000, 9_500_000_000)


def test_category_codes_follow_filters_added_later() -> None:
    """An API request's categories are looked up in a dict kept while the filter table does
    not grow: a category no filter named yet must get its code once a filter names it."""
    state = BalanceState(UNITS)
    d = Debitor(state, rater())
    asked = StrColumn.from_strings(["call", "sms", "call"])
    assert d.category_codes(asked).tolist() == [-1, -1, -1]
    row = state.add_account(Account(id="ann", tenant="t", currency="EUR",
                                    created=datetime(2026, 1, 1, tzinfo=UTC)))  # fmt: skip
    state.add_balance(row, Balance(id="promo", unit="EUR", filter=Filter(categories=("call",))))
    d.refresh()
    code = int(d.categories.lookup(StrColumn.from_strings(["call"]))[0])
    assert code >= 0
    assert d.category_codes(asked).tolist() == [code, -1, code]
    many = StrColumn.from_strings(["call", "sms"] * 40)  # past the dict's size: the table
    assert d.category_codes(many).tolist() == [code, -1] * 40
