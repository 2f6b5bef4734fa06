"""Invoice search: each filter, their combinations, the order, and result rows."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from balances.store import MemoryStore
from billing.exceptions import BillingError
from billing.invoices import InvoiceStore
from billing.search import Filters, as_row, money, summary_of
from tests.unit.test_billing_invoices import Clock, draft

E = 10**9
TODAY = "2026-12-01"


@pytest.fixture(scope="module")
def invoices() -> InvoiceStore:
    """Seven documents of every status, two cycles, a reseller, a dunning level, two currencies.

    2026-10/a  paid       10.00 EUR  issued 2026-11-01
    2026-10/b  overdue    50.00 EUR  issued 2026-11-01 (due 11-15), reseller r, reminder-1
    2026-11/a  draft      20.00 EUR
    2026-11/b  issued     30.00 EUR  issued 2026-12-01, reseller r
    2026-11/c  cancelled  15.00 EUR  issued 2026-12-01
    2026-11/c/credit  issued  -15.00 EUR  2026-12-02
    2026-11/d  issued     40.00 USD  issued 2026-12-01
    """
    store = InvoiceStore(MemoryStore(), clock=Clock())
    store.put_drafts([
        draft("a", "2026-10", total=10 * E), draft("b", "2026-10", issuer="r", total=50 * E),
        draft("a", total=20 * E), draft("b", issuer="r", total=30 * E), draft("c", total=15 * E),
        replace(draft("d", total=40 * E), currency="USD"),
    ], "run")  # fmt: skip
    store.issue(["2026-10/a", "2026-10/b"], "clerk", "2026-11-01")
    store.issue(["2026-11/b", "2026-11/c", "2026-11/d"], "clerk", "2026-12-01")
    store.record_payment("2026-10/a", 10 * E, "bank", "TX1")
    store.set_dunning("2026-10/b", "reminder-1", "dunner")
    store.cancel("2026-11/c", "clerk", "duplicate", day="2026-12-02")
    return store


def found(invoices: InvoiceStore, **criteria: object) -> list[str]:
    return [s.invoice_id for s in invoices.search(Filters(**criteria), today=TODAY)]  # type: ignore[arg-type]


ALL = ["2026-10/a", "2026-10/b", "2026-11/a", "2026-11/b", "2026-11/c", "2026-11/c/credit",
       "2026-11/d"]  # fmt: skip


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({}, ALL),
        ({"min_total": 20 * E}, ["2026-10/b", "2026-11/a", "2026-11/b", "2026-11/d"]),
        ({"max_total": 15 * E}, ["2026-10/a", "2026-11/c", "2026-11/c/credit"]),
        ({"min_total": 20 * E, "max_total": 30 * E}, ["2026-11/a", "2026-11/b"]),
        ({"from_day": "2026-12-01"}, ["2026-11/b", "2026-11/c", "2026-11/c/credit", "2026-11/d"]),
        ({"from_day": "2026-12-02", "to_day": "2026-12-31"}, ["2026-11/c/credit"]),
        ({"to_day": "2026-11-30"}, ["2026-10/a", "2026-10/b"]),
        ({"status": "draft"}, ["2026-11/a"]),
        ({"status": "issued"}, ["2026-10/b", "2026-11/b", "2026-11/c/credit", "2026-11/d"]),
        ({"status": "cancelled"}, ["2026-11/c"]),
        ({"status": "paid"}, ["2026-10/a"]),
        ({"status": "overdue"}, ["2026-10/b"]),
        ({"reseller": "r"}, ["2026-10/b", "2026-11/b"]),
        (
            {"reseller": ""},
            ["2026-10/a", "2026-11/a", "2026-11/c", "2026-11/c/credit", "2026-11/d"],
        ),
        ({"cycle": "2026-10"}, ["2026-10/a", "2026-10/b"]),
        ({"dunning": "reminder-1"}, ["2026-10/b"]),
        ({"dunning": ""}, [i for i in ALL if i != "2026-10/b"]),
        ({"account": "c"}, ["2026-11/c", "2026-11/c/credit"]),
        ({"account": "a"}, ["2026-10/a", "2026-11/a"]),
        ({"account": "nobody"}, []),
        ({"currency": "USD"}, ["2026-11/d"]),
        ({"cycle": "2026-11", "status": "issued", "reseller": "r"}, ["2026-11/b"]),
        ({"account": "b", "status": "overdue"}, ["2026-10/b"]),
        (
            {"cycle": "2026-11", "min_total": 0},
            ["2026-11/a", "2026-11/b", "2026-11/c", "2026-11/d"],
        ),
    ],
)
def test_each_filter_finds_exactly(
    invoices: InvoiceStore, criteria: dict[str, object], expected: list[str]
) -> None:
    assert found(invoices, **criteria) == expected


def test_overdue_depends_on_today(invoices: InvoiceStore) -> None:
    overdue = Filters(status="overdue")
    assert [s.invoice_id for s in invoices.search(overdue, today="2026-11-15")] == []
    assert [s.invoice_id for s in invoices.search(overdue, today="2026-12-16")] == [
        "2026-10/b", "2026-11/b", "2026-11/d"]  # fmt: skip


def test_unknown_status_is_refused() -> None:
    with pytest.raises(BillingError, match="status 'late': use one of draft, issued, cancelled"):
        Filters(status="late")


def test_result_rows_format_money_and_derive_status(invoices: InvoiceStore) -> None:
    (b,) = invoices.search(Filters(account="b", cycle="2026-10"), today=TODAY)
    assert as_row(b, {"EUR": 2}, TODAY) == {
        "invoice_id": "2026-10/b", "number": "R-2026-000001", "account": "b",
        "cycle": "2026-10", "reseller": "r", "status": "overdue", "currency": "EUR",
        "total": "50.00", "amount_due": "50.00", "paid": "0.00", "issued_day": "2026-11-01",
        "due_day": "2026-11-15", "dunning": "reminder-1", "credit_note_for": "",
    }  # fmt: skip
    assert [money(-1_005 * E // 1000, "EUR", {}), money(7 * E, "JPY", {"JPY": 0})] == [
        "-1.00", "7"]  # fmt: skip


def test_summary_of_a_draft(invoices: InvoiceStore) -> None:
    inv = invoices.get("2026-11/a")
    assert inv is not None
    s = summary_of(inv)
    assert (s.status, s.number, s.issued_day, s.effective_status(TODAY)) == (
        "draft",
        "",
        "",
        "draft",
    )
