"""``ratewire billing …`` and ``ratewire invoices …``: outputs, exit codes, error lines."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import types
from pathlib import Path
from typing import Any

import msgspec
import pytest

from balances.store import RocksStore
from billing.invoices import InvoiceStore
from billing.render import Renderer
from engine import cli_billing
from engine.exceptions import RatewireError
from tests.unit.test_billing_invoices import draft

E = 10**9


def ratewire(*argv: str) -> tuple[int, str, str]:
    """Run a command as ``engine.cli.main`` does (same error handling); (code, out, err)."""
    parser = argparse.ArgumentParser(prog="ratewire")
    cli_billing.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli_billing.main(args)
        except RatewireError as exc:  # what engine.cli.main does
            if args.json:
                print(msgspec.json.encode({"error": exc.code, "message": str(exc)}).decode())
            else:
                sys.stderr.write(f"ratewire {args.command}: {exc}\n")
            code = 2
    return code, out.getvalue(), err.getvalue()


def answer(*argv: str) -> Any:
    code, out, err = ratewire(*argv, "--json")
    assert (code, err) == (0, ""), out
    return msgspec.json.decode(out)


@pytest.fixture
def billing(tmp_path: Path) -> str:
    """A billing store holding four drafts of 2026-11 (b by reseller r)."""
    path = tmp_path / "billing"
    with RocksStore(path) as store:
        InvoiceStore(store).put_drafts(
            [draft("a"), draft("b", issuer="r"), draft("c"), draft("d")], "run"
        )
    return str(path)


def test_accept_a_cycle_then_again_changes_nothing(billing: str) -> None:
    first = answer("billing", "accept", "--billing", billing, "--cycle", "2026-11",
                   "--day", "2026-12-01")  # fmt: skip
    assert first == {"issued": 4, "unchanged": 0, "day": "2026-12-01", "numbers": [
        "RW-2026-000001", "R-2026-000001", "RW-2026-000002", "RW-2026-000003"]}  # fmt: skip
    again = answer("billing", "accept", "--billing", billing, "--cycle", "2026-11")
    assert (again["issued"], again["unchanged"], again["numbers"]) == (0, 4, [])


def test_accept_by_reseller_or_accounts_or_ids(billing: str) -> None:
    base = ("billing", "accept", "--billing", billing, "--day", "2026-12-01")
    assert answer(*base, "--cycle", "2026-11", "--reseller", "r")["numbers"] == ["R-2026-000001"]
    assert answer(*base, "--cycle", "2026-11", "--account", "d")["numbers"] == ["RW-2026-000001"]
    got = answer(*base, "--invoice", "2026-11/c", "--invoice", "2026-11/a")
    assert got["numbers"] == ["RW-2026-000002", "RW-2026-000003"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--invoice", "2026-11/zz"), "ratewire billing: invoice '2026-11/zz' is not in the "
         "billing store (ids look like 2026-11/<account>; find one with `ratewire invoices "
         "search`)\n"),
        (("--cycle", "2026-13"), "ratewire billing: cycle '2026-13' is not YYYY-MM\n"),
        (("--cycle", "2026-12"), "ratewire billing: no invoices for cycle 2026-12 (make drafts "
         "with `ratewire billing run --cycle 2026-12`)\n"),
        (("--invoice", "2026-11/a", "--reseller", "r"), "ratewire billing: --reseller and "
         "--account select within a --cycle; with --invoice give ids only\n"),
        (("--cycle", "2026-11", "--day", "1.12.2026"), "ratewire billing: --day '1.12.2026': "
         "expected a date such as 2026-12-01\n"),
    ],
)  # fmt: skip
def test_accept_bad_input_exits_2_with_one_line(
    billing: str, argv: tuple[str, ...], message: str
) -> None:
    assert ratewire("billing", "accept", "--billing", billing, *argv) == (2, "", message)


def test_missing_store_and_missing_selection(tmp_path: Path) -> None:
    code, _, err = ratewire("invoices", "search", "--billing", str(tmp_path / "none"))
    assert (code, err) == (2, f"ratewire invoices: --billing {tmp_path / 'none'}: no billing "
                              "store there (`ratewire billing run` creates it)\n")  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        ratewire("billing", "accept", "--billing", str(tmp_path))
    assert exited.value.code == 2


def test_cancel_a_draft_is_refused_and_an_issued_one_gets_a_credit_note(billing: str) -> None:
    cancel = ("billing", "cancel", "--billing", billing, "--invoice", "2026-11/a")
    code, out, _ = ratewire(*cancel, "--reason", "typo", "--json")
    assert code == 2
    assert msgspec.json.decode(out) == {"error": "INVOICE_STATE", "message": (
        "invoice 2026-11/a is a draft: only issued invoices are cancelled (a draft has no "
        "number; re-run the cycle to replace it, or leave it unaccepted)")}  # fmt: skip
    answer("billing", "accept", "--billing", billing, "--cycle", "2026-11", "--day", "2026-12-01")
    got = answer(*cancel, "--reason", "wrong tariff", "--day", "2026-12-03")
    assert got == {"cancelled": "2026-11/a", "number": "RW-2026-000001",
                   "credit_note": "2026-11/a/credit", "credit_number": "RW-2026-000004",
                   "credited": "11.90", "currency": "EUR"}  # fmt: skip
    assert answer(*cancel, "--reason", "again") == got  # idempotent


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "--amount 'abc': expected an amount such as 12.34 (at most 9 decimals)"),
        ("0", "--amount '0': give a positive EUR amount with at most 2 decimals"),
        ("-1", "--amount '-1': give a positive EUR amount with at most 2 decimals"),
        ("12.345", "--amount '12.345': give a positive EUR amount with at most 2 decimals"),
        ("nan", "--amount 'nan': expected an amount such as 12.34 (at most 9 decimals)"),
    ],
)
def test_pay_bad_amount_exits_2(billing: str, amount: str, message: str) -> None:
    answer("billing", "accept", "--billing", billing, "--invoice", "2026-11/a")
    argv = ("billing", "pay", "--billing", billing, "--invoice", "2026-11/a", "--ref", "TX")
    assert ratewire(*argv, "--amount", amount) == (2, "", f"ratewire billing: {message}\n")


def test_pay_partly_then_fully_and_retry_is_safe(billing: str) -> None:
    answer("billing", "accept", "--billing", billing, "--invoice", "2026-11/a")
    pay = ("billing", "pay", "--billing", billing, "--invoice", "2026-11/a")
    first = answer(*pay, "--amount", "10", "--ref", "TX1")
    assert (first["status"], first["paid"], first["amount_due"]) == ("issued", "10.00", "11.90")
    assert answer(*pay, "--amount", "10", "--ref", "TX1") == first
    assert answer(*pay, "--amount", "1.90", "--ref", "TX2")["status"] == "paid"
    code, _, err = ratewire(*pay, "--amount", "1", "--ref", "TX1")
    assert (code, err) == (2, "ratewire billing: payment ref 'TX1' on 2026-11/a was recorded for"
                              " 10, not 1; a different payment needs its own ref\n")  # fmt: skip
    code, _, err = ratewire("billing", "pay", "--billing", billing, "--invoice", "2026-11/c",
                            "--amount", "1", "--ref", "TX")  # fmt: skip
    assert (code, err) == (2, "ratewire billing: invoice 2026-11/c is draft: payments are"
                              " recorded on issued invoices only\n")  # fmt: skip


def test_search_json_and_text(billing: str) -> None:
    answer("billing", "accept", "--billing", billing, "--invoice", "2026-11/b", "--day",
           "2026-12-01")  # fmt: skip
    search = ("invoices", "search", "--billing", billing)
    got = answer(*search, "--status", "overdue", "--today", "2026-12-16")
    assert (got["count"], [r["invoice_id"] for r in got["invoices"]]) == (1, ["2026-11/b"])
    assert (got["invoices"][0]["status"], got["invoices"][0]["total"]) == ("overdue", "11.90")
    assert answer(*search, "--min", "11.90", "--max", "11.90", "--status", "draft")["count"] == 3
    assert answer(*search, "--reseller", "")["count"] == 3
    assert answer(*search, "--dunning", "none", "--limit", "2")["shown"] == 2
    code, out, _ = ratewire(*search, "--cycle", "2026-11", "--limit", "1")
    assert (code, out.splitlines()) == (0, [
        "-                    2026-11/a                        draft            11.90 EUR due -",
        "4 invoices (first 1 shown; --limit 0 for all)"])  # fmt: skip
    code, _, err = ratewire(*search, "--min", "ten")
    assert (code, err) == (2, "ratewire invoices: --min 'ten': expected an amount such as 12.34"
                              " (at most 9 decimals)\n")  # fmt: skip


def test_show_json_text_html_and_unknown(billing: str) -> None:
    answer("billing", "accept", "--billing", billing, "--invoice", "2026-11/a", "--day",
           "2026-12-01", "--actor", "alice")  # fmt: skip
    answer("billing", "pay", "--billing", billing, "--invoice", "2026-11/a", "--amount", "1",
           "--ref", "TX1")  # fmt: skip
    shown = answer("invoices", "show", "2026-11/a", "--billing", billing)
    assert (shown["number"], shown["status"], shown["paid"]) == ("RW-2026-000001", "issued", E)
    assert [(e["actor"], e["action"]) for e in shown["history"]][:2] == [
        ("run", "generated"), ("alice", "issued")]  # fmt: skip
    assert [(p["ref"], p["amount"]) for p in shown["payments"]] == [("TX1", E)]
    assert shown["links"]["account_invoices"] == "ratewire invoices search --account a"
    with RocksStore(Path(billing)) as store:
        inv = InvoiceStore(store).require("2026-11/a")
    for fmt, kind in (("text", "txt"), ("html", "html")):
        code, out, _ = ratewire("invoices", "show", "2026-11/a", "--billing", billing,
                                "--format", fmt)  # fmt: skip
        assert (code, out) == (0, Renderer().render(inv, kind))  # type: ignore[arg-type]
    code, _, err = ratewire("invoices", "show", "2026-11/nope", "--billing", billing)
    assert (code, err[:52]) == (2, "ratewire invoices: invoice '2026-11/nope' is not in ")


def test_send_a_cycle_sends_only_issued_ones(billing: str, tmp_path: Path) -> None:
    answer("billing", "accept", "--billing", billing, "--invoice", "2026-11/a", "--invoice",
           "2026-11/b", "--day", "2026-12-01")  # fmt: skip
    outbox = tmp_path / "outbox"
    send = ("billing", "send", "--billing", billing, "--outbox", str(outbox))
    got = answer(*send, "--cycle", "2026-11")
    assert got == {"sent": 2, "resent": 0, "skipped": 0, "notified": 0, "files": 6,
                   "outbox": str(outbox)}  # fmt: skip
    assert sorted(p.name for p in outbox.rglob("*.txt")) == ["R-2026-000001.txt",
                                                             "RW-2026-000001.txt"]  # fmt: skip
    assert answer(*send, "--cycle", "2026-11")["skipped"] == 2
    assert answer(*send, "--invoice", "2026-11/a", "--resend")["resent"] == 1
    code, _, err = ratewire(*send, "--invoice", "2026-11/c")
    assert (code, err) == (2, "ratewire billing: invoice 2026-11/c is draft: only issued invoices"
                              " and credit notes are sent (accept drafts first with `ratewire"
                              " billing accept`)\n")  # fmt: skip


def test_run_calls_the_mass_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []

    class Summary:
        def as_dict(self) -> dict[str, Any]:
            return {"cycle": "2026-11", "drafted": 2}

    def run_cycle(store_path: Path, cycle: str, **options: Any) -> Summary:
        calls.append((store_path, cycle, options))
        return Summary()

    fake = types.ModuleType("billing.run")
    fake.run_cycle = run_cycle  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "billing.run", fake)
    got = answer("billing", "run", "--billing", str(tmp_path), "--cycle", "2026-11",
                 "--reseller", "r", "--account", "a", "--account", "b", "--bill-day", "5",
                 "--actor", "ops", "--processes", "3")  # fmt: skip
    assert got == {"cycle": "2026-11", "drafted": 2}
    assert calls == [(tmp_path, "2026-11", {
        "accounts": ["a", "b"], "reseller": "r", "segment": None, "bill_day": 5,
        "catalog_path": None, "actor": "ops", "balances": None, "processes": 3})]  # fmt: skip
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        ratewire("billing", "run", "--billing", str(tmp_path), "--cycle", "2026-11",
                 "--processes", "0")  # fmt: skip
    assert exited.value.code == 2
    assert "--processes: expected a whole number of at least 1, got '0'" in err.getvalue()


def test_send_to_an_unreachable_broker_sends_nothing(billing: str, tmp_path: Path) -> None:
    answer("billing", "accept", "--billing", billing, "--invoice", "2026-11/a")
    outbox = tmp_path / "outbox"
    send = ("billing", "send", "--billing", billing, "--outbox", str(outbox))
    code, _, err = ratewire(*send, "--invoice", "2026-11/a", "--broker", "kafka://127.0.0.1:1")
    assert code == 2
    assert err.startswith("ratewire billing: cannot reach broker 127.0.0.1:1 to send to topic"
                          " notifications: ")  # fmt: skip
    assert not outbox.exists()
    shown = answer("invoices", "show", "2026-11/a", "--billing", billing)
    assert [e["action"] for e in shown["history"]] == ["generated", "issued"]
