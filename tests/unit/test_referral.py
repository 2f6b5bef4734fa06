"""Referrals on both balance stores: rewards, refusals, idempotency and durability."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from balances.exceptions import (
    AccountExistsError,
    BalanceError,
    OperationConflictError,
    ReferralAlreadyRewardedError,
    ReferralError,
    ReferralLoopError,
    SelfReferralError,
    UnitNotHeldError,
    UnknownReferrerError,
)
from balances.ledger import JournalEntry, Ledger
from balances.model import MAIN, Account, Balance
from balances.referral import Grant, Referral, Reward, create_with_referrer, referral_of
from balances.units import load_units
from tests.unit.conftest import Books, amounts, snapshot

UNITS = load_units()
EUR = 10**9
PAST = datetime(2026, 1, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
CASH = Reward(referrer=Grant("EUR", 5 * EUR), referee=Grant("EUR", 3 * EUR))


def us(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000


def new(account_id: str, referrer: str, currency: str = "EUR") -> Account:
    return Account(id=account_id, tenant="t", currency=currency, created=T0, referrer=referrer)


def credit(account: str, balance: str, amount: int, before: int, ref: str) -> JournalEntry:
    return JournalEntry(account, balance, amount, before, before + amount, "referral", ref,
                        us(T0))  # fmt: skip


@pytest.fixture
def ledger(books: Books) -> Ledger:
    """amy (EUR, a points balance with 100) and bo (EUR, nothing but main)."""
    ledger = books.open()
    ledger.create_account(
        Account(id="amy", tenant="t", currency="EUR", created=PAST),
        [Balance(id="pts", unit="points", amount=100)],
    )
    ledger.create_account(Account(id="bo", tenant="t", currency="EUR", created=PAST))
    ledger.checkpoint()
    return ledger


# -- rewards -------------------------------------------------------------------------------
def test_a_referral_creates_the_account_and_rewards_both_once(ledger: Ledger) -> None:
    entries = create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    assert entries == [credit("amy", MAIN, 5 * EUR, 0, "R1"), credit("cy", MAIN, 3 * EUR, 0, "R1")]
    assert amounts(ledger, "amy") == {"pts": 100, MAIN: 5 * EUR}
    assert amounts(ledger, "cy") == {MAIN: 3 * EUR}
    assert list(ledger.journal("cy")) == entries[1:]
    assert ledger.state.accounts[-1] == new("cy", "amy")
    assert referral_of(ledger, "cy") == Referral(referee="cy", referrer="amy", at=T0, op_id="R1")
    assert referral_of(ledger, "amy") is None


def test_rewards_in_items_land_on_a_balance_of_their_unit(ledger: Ledger) -> None:
    reward = Reward(referrer=Grant("points", 500), referee=Grant("voice_seconds", 3600))
    first = create_with_referrer(ledger, new("cy", "amy"), reward=reward, op_id="R1")
    second = create_with_referrer(ledger, new("dee", "bo"), reward=reward, op_id="R2")
    assert first == [credit("amy", "pts", 500, 100, "R1"),
                     credit("cy", "referral:cy", 3600, 0, "R1")]  # fmt: skip
    assert second == [credit("bo", "referral:dee", 500, 0, "R2"),
                      credit("dee", "referral:dee", 3600, 0, "R2")]  # fmt: skip
    [opened] = [b for b in ledger.balances("bo") if b.id == "referral:dee"]
    assert opened.unit == "points"


def test_a_side_granted_nothing_gets_no_entry(ledger: Ledger) -> None:
    reward = Reward(referrer=Grant("points", 50), referee=Grant("EUR", 0))
    entries = create_with_referrer(ledger, new("cy", "amy"), reward=reward, op_id="R1")
    assert entries == [credit("amy", "pts", 50, 100, "R1")]
    assert amounts(ledger, "cy") == {MAIN: 0}


def test_a_negative_grant_is_refused() -> None:
    with pytest.raises(ValueError, match="grant of -1 EUR is negative"):
        Grant("EUR", -1)


# -- refusals --------------------------------------------------------------------------------
REFUSALS = [
    ("self", new("cy", "cy"), CASH, SelfReferralError, "REFERRAL_SELF",
     "'cy' names itself as its referrer"),
    ("unknown", new("cy", "zed"), CASH, UnknownReferrerError, "REFERRAL_UNKNOWN_REFERRER",
     "names referrer 'zed', which is not an account"),
    ("none", new("cy", ""), CASH, ReferralError, "REFERRAL_ERROR", "names no referrer"),
    ("exists", new("bo", "amy"), CASH, AccountExistsError, "ACCOUNT_EXISTS",
     "'bo' exists already"),
    ("usd referee", new("cy", "amy"), Reward(referrer=Grant("EUR", 1), referee=Grant("USD", 1)),
     UnitNotHeldError, "UNIT_NOT_HELD", "'cy' is in EUR and holds no USD"),
    ("btc referrer", new("cy", "amy"), Reward(referrer=Grant("BTC", 1), referee=Grant("EUR", 1)),
     UnitNotHeldError, "UNIT_NOT_HELD", "'amy' is in EUR and holds no BTC"),
    ("points currency", new("cy", "amy", currency="points"), CASH, BalanceError,
     "BALANCE_ERROR", "'points' is not money"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("account", "reward", "error", "code", "says"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_a_refused_referral_changes_nothing(
    ledger: Ledger,
    account: Account,
    reward: Reward,
    error: type[BalanceError],
    code: str,
    says: str,
) -> None:
    before = snapshot(ledger)
    with pytest.raises(error, match=says) as caught:
        create_with_referrer(ledger, account, reward=reward, op_id="R9")
    assert caught.value.code == code
    assert snapshot(ledger) == before
    assert referral_of(ledger, account.id) is None


def refused(ledger: Ledger, account: Account, error: type[BalanceError], says: str) -> None:
    before = snapshot(ledger)
    with pytest.raises(error, match=says):
        create_with_referrer(ledger, account, reward=CASH, op_id="R9")
    assert snapshot(ledger) == before


def test_a_referrer_referred_by_the_new_account_is_a_loop(ledger: Ledger) -> None:
    create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    message = "'cy' was referred by 'amy' \\(cy ← amy\\), so 'amy' cannot be referred by 'cy'"
    refused(ledger, new("amy", "cy"), ReferralLoopError, message)


def test_a_loop_through_others_is_a_loop(ledger: Ledger) -> None:
    create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    create_with_referrer(ledger, new("dee", "cy"), reward=CASH, op_id="R2")
    refused(ledger, new("amy", "dee"), ReferralLoopError,
            "'dee' was referred through 'cy' by 'amy' \\(dee ← cy ← amy\\)")  # fmt: skip


def test_a_loop_through_an_account_named_before_it_exists(ledger: Ledger) -> None:
    ledger.create_account(new("eve", "fay"))  # a plain creation names a referrer unchecked
    refused(ledger, new("fay", "eve"), ReferralLoopError, "'eve' was referred by 'fay'")


def test_a_referee_is_rewarded_once(books: Books, ledger: Ledger) -> None:
    create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    message = (
        "account 'cy' was referred by 'amy' at 2026-03-02T10:00:00\\+00:00 and that referral"
        " was rewarded \\(op_id 'R1'\\)"
    )
    refused(ledger, new("cy", "amy"), ReferralAlreadyRewardedError, message)
    refused(ledger, new("cy", "bo"), ReferralAlreadyRewardedError, "referred by 'amy'")
    reopened = books.reopen(ledger)
    refused(reopened, new("cy", "amy"), ReferralAlreadyRewardedError, message)
    assert amounts(reopened, "amy") == {"pts": 100, MAIN: 5 * EUR}


# -- idempotency and durability -------------------------------------------------------------
def test_the_same_op_id_again_returns_the_first_result(books: Books, ledger: Ledger) -> None:
    first = create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    after = snapshot(ledger)
    assert create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1") == first
    assert snapshot(ledger) == after
    reopened = books.reopen(ledger)
    assert create_with_referrer(reopened, new("cy", "amy"), reward=CASH, op_id="R1") == first
    assert amounts(reopened, "amy") == {"pts": 100, MAIN: 5 * EUR}
    assert amounts(reopened, "cy") == {MAIN: 3 * EUR}


def test_an_op_id_cannot_be_reused_for_another_referral(ledger: Ledger) -> None:
    create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    before = snapshot(ledger)
    with pytest.raises(OperationConflictError, match="'R1' was used for referral") as caught:
        create_with_referrer(ledger, new("dee", "amy"), reward=CASH, op_id="R1")
    assert caught.value.code == "OPERATION_CONFLICT"
    other = Reward(referrer=Grant("EUR", 1), referee=Grant("EUR", 1))
    with pytest.raises(OperationConflictError):
        create_with_referrer(ledger, new("cy", "amy"), reward=other, op_id="R1")
    assert snapshot(ledger) == before


def test_referrals_survive_a_checkpoint_and_restart(books: Books, ledger: Ledger) -> None:
    one = create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    two = create_with_referrer(ledger, new("dee", "cy"), reward=CASH, op_id="R2")
    ledger.checkpoint()
    reopened = books.reopen(ledger)
    assert amounts(reopened, "amy") == {"pts": 100, MAIN: 5 * EUR}
    assert amounts(reopened, "cy") == {MAIN: 8 * EUR}
    assert amounts(reopened, "dee") == {MAIN: 3 * EUR}
    assert list(reopened.journal("cy")) == [one[1], two[0]]
    assert referral_of(reopened, "dee") == Referral(referee="dee", referrer="cy", at=T0,
                                                   op_id="R2")  # fmt: skip
    refused(reopened, new("amy", "dee"), ReferralLoopError, "dee ← cy ← amy")


def test_a_referral_after_the_last_checkpoint_is_lost_on_restart(
    books: Books, ledger: Ledger
) -> None:
    create_with_referrer(ledger, new("cy", "amy"), reward=CASH, op_id="R1")
    reopened = books.reopen(ledger)
    assert [a.id for a in reopened.state.accounts] == ["amy", "bo"]
    assert amounts(reopened, "amy") == {"pts": 100, MAIN: 0}
    assert referral_of(reopened, "cy") is None
    again = create_with_referrer(reopened, new("cy", "amy"), reward=CASH, op_id="R1")
    assert again == [credit("amy", MAIN, 5 * EUR, 0, "R1"), credit("cy", MAIN, 3 * EUR, 0, "R1")]
