"""Gift vouchers on both balance stores: codes, batches, redemption, errors, durability."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from balances.exceptions import (
    BalanceError,
    OperationConflictError,
    UnitNotHeldError,
    UnknownAccountError,
    VoucherAlreadyRedeemedError,
    VoucherBatchConflictError,
    VoucherExpiredError,
    VoucherMistypedError,
    VoucherNotYetValidError,
    VoucherUnknownError,
)
from balances.ledger import JournalEntry, Ledger
from balances.model import MAIN, Account, Balance, Filter
from balances.state import NEVER
from balances.units import load_units
from balances.vouchers import (
    ALPHABET,
    Voucher,
    check_character,
    display,
    find,
    issue_batch,
    new_code,
    normalize,
    redeem,
)
from tests.unit.conftest import Books, amounts, snapshot

UNITS = load_units()
EUR = 10**9  # EUR amounts are nanos
T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
FROM, UNTIL = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)


def us(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000


@pytest.fixture
def ledger(books: Books) -> Ledger:
    """alice (EUR), bob (EUR, a BTC wallet, voice seconds: a plain and a filtered bundle)."""
    ledger = books.open()
    ledger.create_account(Account(id="alice", tenant="t", currency="EUR", created=FROM))
    ledger.create_account(
        Account(id="bob", tenant="t", currency="EUR", created=FROM),
        [
            Balance(id="wallet", unit="BTC", amount=5),
            Balance(id="night", unit="voice_seconds", amount=60, filter=Filter(("call",))),
            Balance(id="minutes", unit="voice_seconds", amount=600),
        ],
    )
    ledger.checkpoint()
    return ledger


def eur_batch(ledger: Ledger, count: int = 3, batch_id: str = "B1") -> list[Voucher]:
    return issue_batch(
        ledger, batch_id=batch_id, count=count, unit="EUR", amount=10 * EUR,
        valid_from=FROM, valid_until=UNTIL,
    )  # fmt: skip


# -- codes ---------------------------------------------------------------------------------
def test_a_code_is_16_characters_in_groups_of_four_with_a_valid_check_character() -> None:
    for _ in range(200):
        code = new_code()
        assert len(code) == 16
        assert set(code) <= set(ALPHABET)
        assert code[-1] == check_character(code[:-1])
        assert re.fullmatch(r"[0-9A-Z]{4}(-[0-9A-Z]{4}){3}", display(code))
        assert normalize(display(code)) == code


def test_codes_use_no_ambiguous_letters() -> None:
    assert len(ALPHABET) == 32
    assert not set("ILOU") & set(ALPHABET)


def test_typing_is_forgiving_about_case_dashes_and_lookalikes() -> None:
    code = "0" * 4 + "1" * 4 + "ABCD" + "EFG"
    code += check_character(code)
    typed = display(code).lower().replace("0", "o").replace("1", "l")
    assert normalize(f"  {typed} ") == code
    assert normalize(typed.replace("-", " ").replace("l", "I")) == code


def test_every_single_mistyped_character_is_caught() -> None:
    code = new_code()
    for position in range(len(code)):
        for char in ALPHABET:
            if char != code[position]:
                typo = code[:position] + char + code[position + 1 :]
                with pytest.raises(VoucherMistypedError, match="check character"):
                    normalize(typo)


def test_swapped_neighbours_are_caught_except_0_and_z() -> None:
    for a, b in itertools.permutations(ALPHABET, 2):
        code = f"7KQ2M{a}{b}DA4TN83W"
        code += check_character(code)
        swapped = code[:5] + code[6] + code[5] + code[7:]
        if {a, b} == {"0", "Z"}:  # Luhn mod 32's one blind spot
            assert normalize(swapped) == swapped
            continue
        with pytest.raises(VoucherMistypedError, match="swapped"):
            normalize(swapped)


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("7KQ2-M9XD-A4TN-83WU", "'U' is not used"),
        ("7KQ2-M9XD-A4TN-83W", "has 15 characters"),
        ("7KQ2-M9XD-A4TN-83W!", "'!' is not used"),
    ],
)
def test_malformed_codes_are_mistyped(typed: str, says: str) -> None:
    with pytest.raises(VoucherMistypedError, match=says) as caught:
        normalize(typed)
    assert caught.value.code == "VOUCHER_MISTYPED"


# -- issuing -------------------------------------------------------------------------------
def test_a_batch_has_serials_unique_codes_and_its_terms(ledger: Ledger) -> None:
    vouchers = eur_batch(ledger, count=5)
    assert [v.serial for v in vouchers] == [f"B1-00000{n}" for n in range(1, 6)]
    assert len({v.code for v in vouchers}) == 5
    for v in vouchers:
        assert (v.batch_id, v.unit, v.amount) == ("B1", "EUR", 10 * EUR)
        assert (v.valid_from, v.valid_until, v.redeemed_at, v.redeemed_by) == (
            FROM, UNTIL, None, "",
        )  # fmt: skip
        assert find(ledger, v.display) == v


def test_a_prefix_leads_the_code_and_is_covered_by_the_check(ledger: Ledger) -> None:
    [voucher] = issue_batch(
        ledger, batch_id="X", count=1, unit="EUR", amount=EUR, valid_from=FROM,
        valid_until=UNTIL, prefix="XMAS",
    )  # fmt: skip
    assert voucher.code.startswith("XMAS")
    assert len(voucher.code) == 20
    assert voucher.display.startswith("XMAS-")
    with pytest.raises(VoucherMistypedError):
        normalize("YMAS" + voucher.code[4:])


def test_issuing_a_batch_again_gives_back_the_same_vouchers(ledger: Ledger) -> None:
    first = eur_batch(ledger)
    assert eur_batch(ledger) == first
    ledger.checkpoint()
    assert eur_batch(ledger) == first
    after = snapshot(ledger)
    assert eur_batch(ledger) == first
    assert snapshot(ledger) == after


def test_issuing_a_batch_again_shows_what_was_redeemed(ledger: Ledger) -> None:
    first = eur_batch(ledger)
    redeem(ledger, first[1].code, "alice", at=T0, op_id="r1")
    again = eur_batch(ledger)
    assert [v.code for v in again] == [v.code for v in first]
    assert (again[1].redeemed_at, again[1].redeemed_by, again[1].redeemed_op) == (
        T0, "alice", "r1",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "term"),
    [
        ({"count": 4}, "count"),
        ({"amount": 5 * EUR}, "amount"),
        ({"unit": "USD"}, "unit"),
        ({"valid_until": UNTIL + timedelta(days=1)}, "valid_until"),
        ({"prefix": "XMAS"}, "prefix"),
    ],
)
def test_a_batch_id_cannot_be_issued_with_other_terms(
    ledger: Ledger, change: dict[str, Any], term: str
) -> None:
    eur_batch(ledger)
    before = snapshot(ledger)
    terms: dict[str, Any] = {
        "batch_id": "B1", "count": 3, "unit": "EUR", "amount": 10 * EUR,
        "valid_from": FROM, "valid_until": UNTIL, **change,
    }  # fmt: skip
    with pytest.raises(VoucherBatchConflictError, match=f"issued with {term} .*new batch id"):
        issue_batch(ledger, **terms)
    assert snapshot(ledger) == before


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"count": 0}, "count 0"),
        ({"amount": 0}, "amount 0"),
        ({"batch_id": ""}, "batch id"),
        ({"prefix": "GOLD"}, "prefix 'GOLD'"),
        ({"valid_until": FROM}, "not after valid_from"),
        ({"valid_from": datetime(2026, 3, 1)}, "time zone"),  # noqa: DTZ001
    ],
)
def test_bad_batch_terms_are_refused(ledger: Ledger, change: dict[str, Any], says: str) -> None:
    before = snapshot(ledger)
    terms: dict[str, Any] = {
        "batch_id": "B9", "count": 3, "unit": "EUR", "amount": EUR,
        "valid_from": FROM, "valid_until": UNTIL, **change,
    }  # fmt: skip
    with pytest.raises(BalanceError, match=says):
        issue_batch(ledger, **terms)
    assert snapshot(ledger) == before


def test_an_unknown_unit_is_refused(ledger: Ledger) -> None:
    with pytest.raises(BalanceError, match="unknown unit 'GBP'"):
        issue_batch(ledger, batch_id="G", count=1, unit="GBP", amount=1, valid_from=FROM,
                    valid_until=UNTIL)  # fmt: skip


# -- redeeming -------------------------------------------------------------------------------
def test_a_voucher_in_the_account_currency_credits_the_main_balance(ledger: Ledger) -> None:
    voucher = eur_batch(ledger)[0]
    entry = redeem(ledger, voucher.display.lower(), "alice", at=T0, op_id="r1")
    assert entry == JournalEntry(
        account="alice", balance=MAIN, delta=10 * EUR, before=0, after=10 * EUR,
        reason="voucher", ref="r1", at_us=us(T0),
    )  # fmt: skip
    assert amounts(ledger, "alice") == {MAIN: 10 * EUR}
    assert list(ledger.journal("alice")) == [entry]
    assert find(ledger, voucher.code).redeemed_by == "alice"


def test_an_item_voucher_tops_up_the_unfiltered_bundle_of_its_unit(ledger: Ledger) -> None:
    [voucher] = issue_batch(ledger, batch_id="V", count=1, unit="voice_seconds", amount=3600,
                            valid_from=FROM, valid_until=UNTIL)  # fmt: skip
    entry = redeem(ledger, voucher.code, "bob", at=T0, op_id="r1")
    assert (entry.balance, entry.before, entry.after) == ("minutes", 600, 4200)
    assert amounts(ledger, "bob") == {"night": 60, "minutes": 4200, "wallet": 5, MAIN: 0}


def test_an_item_voucher_opens_a_balance_with_its_validity(ledger: Ledger) -> None:
    [voucher] = issue_batch(ledger, batch_id="V", count=1, unit="sms", amount=100,
                            valid_from=FROM, valid_until=UNTIL)  # fmt: skip
    entry = redeem(ledger, voucher.code, "alice", at=T0, op_id="r1")
    assert (entry.balance, entry.delta, entry.after) == ("voucher:V-000001", 100, 100)
    [opened] = [b for b in ledger.balances("alice") if b.id == "voucher:V-000001"]
    assert (opened.unit, opened.amount) == ("sms", 100)
    assert (opened.valid_from_us, opened.valid_until_us) == (us(FROM), us(UNTIL))


def test_a_crypto_voucher_needs_a_balance_of_its_unit(ledger: Ledger) -> None:
    [voucher] = issue_batch(ledger, batch_id="C", count=1, unit="BTC", amount=1000,
                            valid_from=FROM, valid_until=UNTIL)  # fmt: skip
    before = snapshot(ledger)
    with pytest.raises(UnitNotHeldError, match="'alice' is in EUR and holds no BTC") as caught:
        redeem(ledger, voucher.code, "alice", at=T0, op_id="r1")
    assert caught.value.code == "UNIT_NOT_HELD"
    assert snapshot(ledger) == before
    entry = redeem(ledger, voucher.code, "bob", at=T0, op_id="r2")
    assert (entry.balance, entry.after) == ("wallet", 1005)


def test_redeeming_with_the_same_op_id_again_returns_the_first_result(
    books: Books, ledger: Ledger
) -> None:
    voucher = eur_batch(ledger)[0]
    first = redeem(ledger, voucher.code, "alice", at=T0, op_id="r1")
    assert redeem(ledger, voucher.display, "alice", at=T0, op_id="r1") == first
    ledger.checkpoint()
    after = snapshot(ledger)
    assert redeem(ledger, voucher.code, "alice", at=T0 + timedelta(hours=1), op_id="r1") == first
    assert snapshot(ledger) == after
    reopened = books.reopen(ledger)
    assert redeem(reopened, voucher.code, "alice", at=T0, op_id="r1") == first
    assert amounts(reopened, "alice") == {MAIN: 10 * EUR}
    assert list(reopened.journal("alice")) == [first]


def test_an_op_id_cannot_be_reused_for_another_operation(ledger: Ledger) -> None:
    one, two, _ = eur_batch(ledger)
    redeem(ledger, one.code, "alice", at=T0, op_id="r1")
    ledger.topup("bob", MAIN, EUR, op_id="t1")
    before = snapshot(ledger)
    with pytest.raises(OperationConflictError, match="op_id 'r1' was used for voucher") as caught:
        redeem(ledger, two.code, "alice", at=T0, op_id="r1")
    assert caught.value.code == "OPERATION_CONFLICT"
    with pytest.raises(OperationConflictError, match="op_id 'r1' was used for voucher"):
        redeem(ledger, one.code, "bob", at=T0, op_id="r1")
    with pytest.raises(
        OperationConflictError, match="'t1' was used for topup \\['bob', 'main', 1000000000\\]"
    ):
        redeem(ledger, two.code, "bob", at=T0, op_id="t1")
    assert snapshot(ledger) == before
    assert find(ledger, two.code).redeemed_at is None


def ops(ledger: Ledger, voucher: Voucher) -> dict[str, Callable[[], object]]:
    return {
        "unknown code": lambda: redeem(ledger, _unissued(), "alice", at=T0, op_id="x"),
        "mistyped": lambda: redeem(ledger, _typo(voucher.code), "alice", at=T0, op_id="x"),
        "redeemed": lambda: redeem(ledger, voucher.code, "bob", at=T0, op_id="x"),
        "expired": lambda: redeem(ledger, voucher.code, "alice", at=UNTIL, op_id="x"),
        "early": lambda: redeem(
            ledger, voucher.code, "alice", at=FROM - timedelta(microseconds=1), op_id="x"
        ),
        "no account": lambda: redeem(ledger, voucher.code, "zed", at=T0, op_id="x"),
        "no op id": lambda: redeem(ledger, voucher.code, "alice", at=T0, op_id=""),
    }


def _unissued() -> str:
    return new_code()


def _typo(code: str) -> str:
    return code[:3] + ALPHABET[(ALPHABET.index(code[3]) + 1) % 32] + code[4:]


ERRORS = [
    ("unknown code", VoucherUnknownError, "VOUCHER_UNKNOWN", "was never issued"),
    ("mistyped", VoucherMistypedError, "VOUCHER_MISTYPED", "check character"),
    ("expired", VoucherExpiredError, "VOUCHER_EXPIRED", "expired at 2026-04-01T00:00:00"),
    ("early", VoucherNotYetValidError, "VOUCHER_NOT_YET_VALID", "valid from 2026-03-01"),
    ("no account", UnknownAccountError, "ACCOUNT_UNKNOWN", "unknown account 'zed'"),
    ("no op id", BalanceError, "BALANCE_ERROR", "needs an op_id"),
]


@pytest.mark.parametrize(("case", "error", "code", "says"), ERRORS)
def test_a_refused_redemption_changes_nothing(
    ledger: Ledger, case: str, error: type[BalanceError], code: str, says: str
) -> None:
    voucher = eur_batch(ledger)[0]
    before = snapshot(ledger)
    with pytest.raises(error, match=says) as caught:
        ops(ledger, voucher)[case]()
    assert caught.value.code == code
    assert snapshot(ledger) == before
    assert find(ledger, voucher.code).redeemed_at is None


def test_a_voucher_is_redeemed_once(books: Books, ledger: Ledger) -> None:
    voucher = eur_batch(ledger)[0]
    redeem(ledger, voucher.code, "alice", at=T0, op_id="r1")
    before = snapshot(ledger)
    message = (
        rf"voucher {voucher.display} \(B1-000001\) was redeemed already, at"
        r" 2026-03-02T10:00:00\+00:00 by account 'alice'"
    )
    with pytest.raises(VoucherAlreadyRedeemedError, match=message) as caught:
        ops(ledger, voucher)["redeemed"]()
    assert caught.value.code == "VOUCHER_ALREADY_REDEEMED"
    assert snapshot(ledger) == before
    reopened = books.reopen(ledger)
    with pytest.raises(VoucherAlreadyRedeemedError, match=message):
        redeem(reopened, voucher.code, "bob", at=T0, op_id="r2")
    assert amounts(reopened, "bob")[MAIN] == 0


def test_the_last_instant_of_validity_is_still_valid(ledger: Ledger) -> None:
    voucher = eur_batch(ledger)[0]
    at = UNTIL - timedelta(microseconds=1)
    assert redeem(ledger, voucher.code, "alice", at=at, op_id="r1").after == 10 * EUR


# -- durability ------------------------------------------------------------------------------
def test_vouchers_and_redemptions_survive_a_checkpoint_and_restart(
    books: Books, ledger: Ledger
) -> None:
    one, two, three = eur_batch(ledger)
    [sms] = issue_batch(ledger, batch_id="S", count=1, unit="sms", amount=50,
                        valid_from=FROM, valid_until=UNTIL)  # fmt: skip
    e1 = redeem(ledger, one.code, "alice", at=T0, op_id="r1")
    e2 = redeem(ledger, sms.code, "alice", at=T0, op_id="r2")
    ledger.checkpoint()
    reopened = books.reopen(ledger)
    assert amounts(reopened, "alice") == {"voucher:S-000001": 50, MAIN: 10 * EUR}
    assert list(reopened.journal("alice")) == [e1, e2]
    assert find(reopened, one.code).redeemed_by == "alice"
    assert eur_batch(reopened)[1:] == [two, three]
    e3 = redeem(reopened, two.code, "alice", at=T0, op_id="r3")
    assert (e3.before, e3.after) == (10 * EUR, 20 * EUR)


def test_nothing_issued_or_redeemed_after_the_last_checkpoint_survives(
    books: Books, ledger: Ledger
) -> None:
    voucher = eur_batch(ledger)[0]
    ledger.checkpoint()
    redeem(ledger, voucher.code, "alice", at=T0, op_id="r1")
    [lost] = issue_batch(ledger, batch_id="L", count=1, unit="EUR", amount=EUR,
                         valid_from=FROM, valid_until=UNTIL)  # fmt: skip
    reopened = books.reopen(ledger)
    assert amounts(reopened, "alice") == {MAIN: 0}
    assert find(reopened, voucher.code).redeemed_at is None
    with pytest.raises(VoucherUnknownError):
        find(reopened, lost.code)
    assert redeem(reopened, voucher.code, "alice", at=T0, op_id="r1").after == 10 * EUR


def test_a_new_balance_keeps_its_validity_after_a_restart(books: Books, ledger: Ledger) -> None:
    [voucher] = issue_batch(ledger, batch_id="V", count=1, unit="sms", amount=100,
                            valid_from=FROM, valid_until=UNTIL)  # fmt: skip
    redeem(ledger, voucher.code, "alice", at=T0, op_id="r1")
    ledger.checkpoint()
    reopened = books.reopen(ledger)
    [opened] = [b for b in reopened.balances("alice") if b.id == "voucher:V-000001"]
    assert (opened.amount, opened.valid_from_us, opened.valid_until_us) == (
        100, us(FROM), us(UNTIL),
    )  # fmt: skip
    assert opened.valid_until_us != NEVER
