"""The commands on a state folder: accounts, vouchers, authorize/commit/release, rate --state.

Every bad input exits 2 with a JSON error naming what was wrong, and the state
folder is unchanged afterwards (compared through ``accounts show`` and the journal).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from balances.ledger import open_ledger
from engine.cli import EXIT_BAD_INPUT, EXIT_OK, main
from engine.records import VoiceRecord
from engine.wire import encode_jsonl
from tests.ledger_workload import SAMPLE_PLAN

PLAN = str(SAMPLE_PLAN)
LOYALTY = SAMPLE_PLAN.parents[2] / "balances" / "samples" / "loyalty.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out else None


def journal(state: Path) -> list[tuple[str, str, int, str]]:
    ledger = open_ledger(state)
    try:
        return [(e.account, e.balance, e.delta, e.reason) for e in ledger.journal()]
    finally:
        ledger.store.close()


@pytest.fixture
def state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "state"
    code, answer = run(
        capsys, "accounts", "create", "--state", str(folder), "--account", "acc1",
        "--tenant", "ratewire.demo",
        "--balance", "id=free,unit=voice_seconds,amount=1800,weight=10,destinations=GERMANY",
    )  # fmt: skip
    assert code == EXIT_OK
    assert [b["id"] for b in answer["balances"]] == ["free", "main"]
    code, _ = run(capsys, "accounts", "topup", "--state", str(folder), "--account", "acc1",
                  "--amount", "1", "--op-id", "t1")  # fmt: skip
    assert code == EXIT_OK
    return folder


def test_topup_adjust_show(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, answer = run(capsys, "accounts", "adjust", "--state", str(state), "--account", "acc1",
                       "--amount", "-0.25", "--op-id", "a1")  # fmt: skip
    assert code == EXIT_OK
    assert answer["entry"] == {
        "balance": "main",
        "delta": -250_000_000,
        "before": 1_000_000_000,
        "after": 750_000_000,
        "reason": "adjustment",
        "ref": "a1",
    }
    # the same top-up again (a retry) changes nothing
    run(capsys, "accounts", "topup", "--state", str(state), "--account", "acc1", "--amount", "1",
        "--op-id", "t1")  # fmt: skip
    code, shown = run(capsys, "accounts", "show", "--state", str(state), "--account", "acc1")
    assert code == EXIT_OK
    assert {b["id"]: b["amount"] for b in shown["balances"]} == {"free": "1800", "main": "0.75"}


@pytest.mark.parametrize(
    ("argv", "error", "text"),
    [
        (["accounts", "topup", "--account", "nobody", "--amount", "1", "--op-id", "x"],
         "BALANCE_ERROR", "unknown account 'nobody'"),
        (["accounts", "topup", "--account", "acc1", "--amount", "-1", "--op-id", "x"],
         "INVALID_ARGUMENT", "amount '-1' must be positive"),
        (["accounts", "topup", "--account", "acc1", "--amount", "0.0000000001", "--op-id", "x"],
         "INVALID_ARGUMENT", "more precision than EUR holds"),
        (["accounts", "topup", "--account", "acc1", "--balance", "nope", "--amount", "1",
          "--op-id", "x"], "BALANCE_ERROR", "has no balance 'nope'"),
        (["accounts", "create", "--account", "bad id!", "--tenant", "t"],
         "INVALID_ARGUMENT", "account 'bad id!'"),
        (["accounts", "create", "--account", "acc2", "--tenant", "t", "--currency", "DOGE"],
         "BALANCE_ERROR", "unknown unit 'DOGE'"),
        (["accounts", "create", "--account", "acc1", "--tenant", "t"],
         "BALANCE_ERROR", "account 'acc1' exists already"),
        (["accounts", "create", "--account", "acc3", "--tenant", "t", "--balance",
          "id=x,unit=parsecs"], "BALANCE_ERROR", "unknown unit 'parsecs'"),
        (["vouchers", "redeem", "--code", "ABCD-EFGH-JKMN-PQRS", "--account", "acc1",
          "--op-id", "r1"], "VOUCHER_MISTYPED", "check character"),
        (["release", "--tariffs", PLAN, "--reservation", "nope"],
         "RESERVATION_UNKNOWN", "reservation 'nope' is unknown"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_and_changes_nothing(
    state: Path, capsys: pytest.CaptureFixture[str], argv: list[str], error: str, text: str
) -> None:
    before = journal(state)
    words = 2 if argv[0] in ("accounts", "vouchers") else 1  # command (and action), then flags
    code, answer = run(capsys, *argv[:words], "--state", str(state), *argv[words:])
    assert code == EXIT_BAD_INPUT
    assert answer["error"] == error
    assert text in answer["message"]
    assert journal(state) == before


def test_voucher_issue_and_redeem_once(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    issue = ["vouchers", "issue", "--state", str(state), "--batch", "B1", "--count", "2",
             "--unit", "EUR", "--amount", "10", "--from", "2026-01-01T00:00Z",
             "--until", "2030-01-01T00:00Z"]  # fmt: skip
    code, first = run(capsys, *issue)
    assert code == EXIT_OK
    assert run(capsys, *issue)[1] == first  # re-issuing the batch gives the same vouchers
    card = first["vouchers"][0]["code"]
    code, credit = run(capsys, "vouchers", "redeem", "--state", str(state), "--code", card,
                       "--account", "acc1", "--op-id", "r1")  # fmt: skip
    assert (code, credit["delta"], credit["after"]) == (EXIT_OK, 10 * 10**9, 11 * 10**9)
    code, again = run(capsys, "vouchers", "redeem", "--state", str(state), "--code", card,
                      "--account", "acc1", "--op-id", "r2")  # fmt: skip
    assert (code, again["error"]) == (EXIT_BAD_INPUT, "VOUCHER_ALREADY_REDEEMED")


def test_authorize_commit_across_processes(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's example as a session: 30 free minutes and 1 EUR, a 40-minute call."""
    code, grant = run(capsys, "authorize", "--state", str(state), "--tariffs", PLAN,
                      "--account", "acc1", "--category", "call", "--destination", "4930123",
                      "--usage", "60m", "--start", "2026-11-02T10:00:00Z")  # fmt: skip
    assert code == EXIT_OK
    assert grant["reason"] == "INSUFFICIENT_CREDIT"
    assert grant["reserved"] == {"free": 1800, "main": 999_000_000}
    code, charge = run(capsys, "commit", "--state", str(state), "--tariffs", PLAN,
                       "--reservation", grant["reservation_id"], "--usage", "40m")  # fmt: skip
    assert code == EXIT_OK
    assert (charge["covered"], charge["paid"]) == (1800, 930_000_000)
    code, shown = run(capsys, "accounts", "show", "--state", str(state), "--account", "acc1")
    assert {b["id"]: (b["amount"], b["reserved"]) for b in shown["balances"]} == {
        "free": ("0", "0"), "main": ("0.07", "0")}  # fmt: skip


def test_rate_with_state_debits_and_rejects(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime(2026, 11, 2, 10, tzinfo=UTC)
    records = [
        VoiceRecord(cdr_id="c1", tenant="ratewire.demo", account="acc1", destination="4930123",
                    start=start, usage=2400),
        VoiceRecord(cdr_id="c1", tenant="ratewire.demo", account="acc1", destination="4930123",
                    start=start, usage=2400),  # a resend
        VoiceRecord(cdr_id="c2", tenant="ratewire.demo", account="ghost", destination="4930123",
                    start=start, usage=60),
    ]  # fmt: skip
    source = tmp_path / "cdrs.jsonl"
    source.write_bytes(encode_jsonl(records))
    argv = ["rate", "--tariffs", PLAN, "--in", str(source), "--out", str(tmp_path / "out.jsonl"),
            "--rejects", str(tmp_path / "rej.jsonl"), "--state", str(state)]  # fmt: skip
    code, summary = run(capsys, *argv)
    assert code == EXIT_OK
    assert (summary["read"], summary["rated"], summary["rejected"]) == (3, 1, 2)
    assert summary["rejected_by_reason"] == {"DUPLICATE": 1, "UNKNOWN_ACCOUNT": 1}
    rated = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    outcome = (rated["charged"], rated["covered"], rated["insufficient_credit"])
    assert outcome == ("0.93", 1800, False)
    assert [(b["balance"], b["delta"]) for b in rated["balances"]] == [
        ("free", -1800), ("main", -930_000_000)]  # fmt: skip
    # the whole file again: every record is now a duplicate, nothing moves
    before = journal(state)
    code, summary = run(capsys, *argv)
    assert summary["rejected_by_reason"] == {"DUPLICATE": 2, "UNKNOWN_ACCOUNT": 1}
    assert journal(state) == before


def test_set_mode_lets_a_postpaid_account_owe(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, shown = run(capsys, "accounts", "set-mode", "--state", str(state), "--account", "acc1",
                      "--mode", "postpaid", "--credit-limit", "20")  # fmt: skip
    assert code == EXIT_OK
    assert (shown["mode"], shown["credit_limit"]) == ("postpaid", "20")
    code, answer = run(capsys, "accounts", "set-mode", "--state", str(state), "--account", "acc1",
                       "--mode", "postpaid", "--credit-limit", "-5")  # fmt: skip
    assert (code, answer["error"]) == (EXIT_BAD_INPUT, "INVALID_ARGUMENT")


def test_referral_rewards_both_once(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create = ["accounts", "create", "--state", str(state), "--account", "acc2", "--tenant",
              "ratewire.demo", "--referrer", "acc1", "--referral-reward", "EUR:5"]  # fmt: skip
    code, shown = run(capsys, *create)
    assert code == EXIT_OK
    assert {b["id"]: b["amount"] for b in shown["balances"]} == {"main": "5"}
    code, again = run(capsys, *create)  # the same request again is a retry: nothing more
    assert (code, again) == (EXIT_OK, shown)
    code, referrer = run(capsys, "accounts", "show", "--state", str(state), "--account", "acc1")
    assert {b["id"]: b["amount"] for b in referrer["balances"]} == {"free": "1800", "main": "6"}
    code, selfish = run(capsys, "accounts", "create", "--state", str(state), "--account",
                        "acc3", "--tenant", "t", "--referrer", "acc3", "--referral-reward",
                        "EUR:5")  # fmt: skip
    assert (code, selfish["error"]) == (EXIT_BAD_INPUT, "REFERRAL_SELF")


def test_rate_with_loyalty_rules_earns_points(
    state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "accounts", "create", "--state", str(state), "--account", "pts", "--tenant",
        "ratewire.demo", "--balance", "id=points,unit=points")  # fmt: skip
    run(capsys, "accounts", "topup", "--state", str(state), "--account", "pts", "--amount", "5",
        "--op-id", "p1")  # fmt: skip
    call = VoiceRecord(cdr_id="p-1", tenant="ratewire.demo", account="pts",
                       destination="4930123", start=datetime(2026, 11, 2, 10, tzinfo=UTC),
                       usage=2400)  # fmt: skip
    source = tmp_path / "cdrs.jsonl"
    source.write_bytes(encode_jsonl([call]))
    code, _ = run(capsys, "rate", "--tariffs", PLAN, "--in", str(source), "--out",
                  str(tmp_path / "out.jsonl"), "--rejects", str(tmp_path / "rej.jsonl"),
                  "--state", str(state), "--loyalty",
                  str(LOYALTY))  # fmt: skip
    assert code == EXIT_OK
    code, shown = run(capsys, "accounts", "show", "--state", str(state), "--account", "pts")
    # 3.63 EUR paid for 40 peak minutes, 10 points per whole EUR: 36 points
    assert {b["id"]: b["amount"] for b in shown["balances"]} == {"points": "36", "main": "1.37"}
