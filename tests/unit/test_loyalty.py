"""Loyalty on both balance stores: rules as data, earning on debits, redeeming offers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from balances.debit import Debitor
from balances.exceptions import (
    BalanceError,
    LoyaltyError,
    NotEnoughPointsError,
    OperationConflictError,
    UnitNotHeldError,
    UnknownAccountError,
    UnknownOfferError,
)
from balances.ledger import JournalEntry, Ledger
from balances.loyalty import Offer, load_loyalty, redeem_points, scaled_amount
from balances.model import MAIN, Account, Balance
from balances.units import load_units
from engine.columns import KIND_VOICE
from tariffs.loader import load_tariff
from tariffs.rating import Rater
from tests.tariff_builders import Record, columns_of
from tests.unit.conftest import Books, amounts, snapshot

UNITS = load_units()
RULES = load_loyalty(UNITS)
EUR = 10**9
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)  # a Monday, 11:00 in Berlin: peak
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)
PAST = datetime(2026, 3, 1, tzinfo=UTC)
SAMPLE_PLAN = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"


def us(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000


@pytest.fixture
def ledger(books: Books) -> Ledger:
    """ann: 300 points, 400 promo points (weight 10, until April), 1000 expired points;
    ben: 2000 points."""
    ledger = books.open()
    ledger.create_account(
        Account(id="ann", tenant="t", currency="EUR", created=PAST),
        [
            Balance(id="pts", unit="points", amount=300),
            Balance(id="promo", unit="points", amount=400, weight=10, valid_until=UNTIL),
            Balance(id="old", unit="points", amount=1000, valid_until=PAST),
        ],
    )
    ledger.create_account(
        Account(id="ben", tenant="t", currency="EUR", created=PAST),
        [Balance(id="pts", unit="points", amount=2000)],
    )
    ledger.checkpoint()
    return ledger


def entry(account: str, balance: str, delta: int, before: int, ref: str) -> JournalEntry:
    return JournalEntry(account, balance, delta, before, before + delta, "loyalty_redeemed",
                        ref, us(T0))  # fmt: skip


# -- rules as data -----------------------------------------------------------------------
def test_the_sample_rules() -> None:
    assert RULES.earn == {"call": 10, "sms": 2, "data": 5, "video": 1}
    assert RULES.offer("credit_5") == Offer(name="credit_5", points=500, unit="EUR", amount=5 * EUR)
    assert RULES.offer("credit_12_50").amount == 12_500_000_000
    assert RULES.offer("hour_of_calls") == Offer(
        name="hour_of_calls", points=800, unit="voice_seconds", amount=3600
    )
    assert sorted(RULES.offers) == ["credit_12_50", "credit_5", "gigabyte", "hour_of_calls",
                                    "sms_100"]  # fmt: skip


def test_an_unknown_offer_names_the_known_ones() -> None:
    with pytest.raises(UnknownOfferError, match=r"'free' .*credit_12_50, credit_5") as caught:
        RULES.offer("free")
    assert caught.value.code == "LOYALTY_UNKNOWN_OFFER"


@pytest.mark.parametrize(
    ("text", "decimals", "value"),
    [("5", 9, 5 * EUR), ("0.01", 9, 10_000_000), ("5.10", 1, 51), (3600, 0, 3600),
     ("1e3", 0, 1000), ("0.000000001", 9, 1)],
)  # fmt: skip
def test_amounts_are_whole_units_scaled_exactly(text: str | int, decimals: int, value: int) -> None:
    assert scaled_amount(text, decimals, "here") == value


@pytest.mark.parametrize(
    ("text", "decimals", "says"),
    [("0.5", 0, "more decimals than the unit's 0"), ("0", 9, "positive"), ("-1", 9, "positive"),
     ("ten", 0, "not a decimal"), ("inf", 0, "not a finite"), ("10", 18, "at most")],
)  # fmt: skip
def test_bad_amounts_are_refused(text: str, decimals: int, says: str) -> None:
    with pytest.raises(LoyaltyError, match=f"here: .*{says}"):
        scaled_amount(text, decimals, "here")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            '[redeem.x]\npoints = 5\nunit = "EUR"\namount = 5.5',
            r"redeem.x.amount: 5.5 is a float; write it as a string \(\"5.5\"\)",
        ),
        ('[redeem.x]\npoints = 5\nunit = "GBP"\namount = "5"', "redeem.x.unit: unknown unit 'GBP'"),
        ('[redeem.x]\npoints = 0\nunit = "EUR"\namount = "5"', "redeem.x.points: 0"),
        ('[redeem.x]\npoints = 5\nunit = "EUR"\namount = "5.0000000001"', "more decimals"),
        ('[redeem.x]\npoints = 5\nunit = "sms"\namount = 1\npoints_unit = "EUR"', "points_unit"),
        ("[earn]\ncall = -1", "earn.call: -1"),
        ("[earn]\ncall = 1\n[bonus]\nx = 1", "cannot read the loyalty rules"),
    ],
)
def test_a_bad_rules_file_names_the_file_and_key(tmp_path: Path, body: str, says: str) -> None:
    path = tmp_path / "loyalty.toml"
    path.write_text(body)
    with pytest.raises(LoyaltyError, match=says) as caught:
        load_loyalty(UNITS, path)
    assert str(path) in str(caught.value)


# -- earning -------------------------------------------------------------------------------
def test_debits_earn_points_by_the_rules(ledger: Ledger) -> None:
    ledger.create_account(
        Account(id="cat", tenant="ratewire.demo", currency="EUR", created=PAST),
        [Balance(id="pts", unit="points")],
    )
    ledger.topup("cat", MAIN, 20 * EUR, op_id="t1")
    rater = Rater(load_tariff(SAMPLE_PLAN))
    debitor = Debitor(ledger.state, rater, earn=RULES.earn)
    # ten minutes to a Berlin fixed line at peak: 0.03 + 10 x 0.09 = 0.93 EUR
    call = Record(KIND_VOICE, "ratewire.demo", "cat", "call", "1001", "4930123456", us(T0), 600)
    columns = columns_of([call])
    result = ledger.debit(debitor, columns, rater.rate(columns))
    assert result.paid.tolist() == [930_000_000]
    assert amounts(ledger, "cat") == {"pts": 9, MAIN: 20 * EUR - 930_000_000}  # 9.3 rounded down
    earned = [e for e in ledger.journal("cat") if e.reason == "loyalty_earned"]
    assert earned == [JournalEntry("cat", "pts", 9, 0, 9, "loyalty_earned", "cdr0", us(T0))]


# -- redeeming -------------------------------------------------------------------------------
def test_an_offer_takes_points_in_paying_order_and_credits_money(ledger: Ledger) -> None:
    entries = redeem_points(ledger, "ann", RULES.offer("credit_5"), op_id="L1", at=T0)
    assert entries == [
        entry("ann", "promo", -400, 400, "L1"),  # weight 10 pays first
        entry("ann", "pts", -100, 300, "L1"),  # then the plain points; "old" has expired
        entry("ann", MAIN, 5 * EUR, 0, "L1"),
    ]
    assert amounts(ledger, "ann") == {"promo": 0, "pts": 200, "old": 1000, MAIN: 5 * EUR}
    assert list(ledger.journal("ann"))[-3:] == entries


def test_an_item_offer_opens_a_balance_once_then_tops_it_up(ledger: Ledger) -> None:
    offer = RULES.offer("hour_of_calls")
    first = redeem_points(ledger, "ben", offer, op_id="L1", at=T0)
    second = redeem_points(ledger, "ben", offer, op_id="L2", at=T0)
    assert first == [
        entry("ben", "pts", -800, 2000, "L1"),
        entry("ben", "loyalty:hour_of_calls", 3600, 0, "L1"),
    ]
    assert second == [
        entry("ben", "pts", -800, 1200, "L2"),
        entry("ben", "loyalty:hour_of_calls", 3600, 3600, "L2"),
    ]
    assert amounts(ledger, "ben") == {"pts": 400, "loyalty:hour_of_calls": 7200, MAIN: 0}


def test_not_enough_points_says_how_many_the_account_holds(ledger: Ledger) -> None:
    before = snapshot(ledger)
    message = "account 'ann' holds 700 usable points; offer 'credit_12_50' costs 1000"
    with pytest.raises(NotEnoughPointsError, match=message) as caught:
        redeem_points(ledger, "ann", RULES.offer("credit_12_50"), op_id="L1", at=T0)
    assert caught.value.code == "LOYALTY_NOT_ENOUGH_POINTS"
    assert snapshot(ledger) == before


def test_points_that_expired_do_not_count(ledger: Ledger) -> None:
    after_promo = datetime(2026, 4, 2, tzinfo=UTC)
    with pytest.raises(NotEnoughPointsError, match="holds 300 usable points"):
        redeem_points(ledger, "ann", RULES.offer("credit_5"), op_id="L1", at=after_promo)


@pytest.mark.parametrize(
    ("account", "offer", "error", "says"),
    [
        ("ann", Offer(name="usd", points=10, unit="USD", amount=EUR), UnitNotHeldError,
         "'ann' is in EUR and holds no USD"),
        ("zed", RULES.offer("credit_5"), UnknownAccountError, "unknown account 'zed'"),
        ("ann", Offer(name="x", points=10, unit="sms", amount=1, points_unit="sms"), BalanceError,
         "holds 0 usable sms"),
    ],
)  # fmt: skip
def test_a_refused_redemption_takes_no_points_and_gives_nothing(
    ledger: Ledger, account: str, offer: Offer, error: type[BalanceError], says: str
) -> None:
    before = snapshot(ledger)
    with pytest.raises(error, match=says):
        redeem_points(ledger, account, offer, op_id="L1", at=T0)
    assert snapshot(ledger) == before


def test_redeeming_with_the_same_op_id_again_returns_the_first_result(
    books: Books, ledger: Ledger
) -> None:
    offer = RULES.offer("credit_5")
    first = redeem_points(ledger, "ann", offer, op_id="L1", at=T0)
    after = snapshot(ledger)
    assert redeem_points(ledger, "ann", offer, op_id="L1", at=T0) == first
    assert snapshot(ledger) == after
    reopened = books.reopen(ledger)
    assert redeem_points(reopened, "ann", offer, op_id="L1") == first
    assert amounts(reopened, "ann") == {"promo": 0, "pts": 200, "old": 1000, MAIN: 5 * EUR}
    with pytest.raises(OperationConflictError, match="op_id 'L1' was used for loyalty"):
        redeem_points(reopened, "ben", offer, op_id="L1")


def test_redemptions_survive_a_checkpoint_and_restart(books: Books, ledger: Ledger) -> None:
    money = redeem_points(ledger, "ben", RULES.offer("credit_5"), op_id="L1", at=T0)
    items = redeem_points(ledger, "ben", RULES.offer("sms_100"), op_id="L2", at=T0)
    ledger.checkpoint()
    reopened = books.reopen(ledger)
    assert amounts(reopened, "ben") == {"pts": 1350, "loyalty:sms_100": 100, MAIN: 5 * EUR}
    assert list(reopened.journal("ben"))[-4:] == money + items
    more = redeem_points(reopened, "ben", RULES.offer("sms_100"), op_id="L3", at=T0)
    assert more == [entry("ben", "pts", -150, 1350, "L3"),
                    entry("ben", "loyalty:sms_100", 100, 100, "L3")]  # fmt: skip
    redeem_points(reopened, "ben", RULES.offer("gigabyte"), op_id="L4", at=T0)
    assert amounts(reopened, "ben")["pts"] == 0
    with pytest.raises(NotEnoughPointsError, match="holds 0 usable points; offer 'sms_100' costs"):
        redeem_points(reopened, "ben", RULES.offer("sms_100"), op_id="L5", at=T0)


def test_a_redemption_after_the_last_checkpoint_is_lost_on_restart(
    books: Books, ledger: Ledger
) -> None:
    redeem_points(ledger, "ben", RULES.offer("credit_5"), op_id="L1", at=T0)
    reopened = books.reopen(ledger)
    assert amounts(reopened, "ben") == {"pts": 2000, MAIN: 0}
    again = redeem_points(reopened, "ben", RULES.offer("credit_5"), op_id="L1", at=T0)
    assert again[-1] == entry("ben", MAIN, 5 * EUR, 0, "L1")
