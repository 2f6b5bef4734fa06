"""Mass runs: one draft per account, exact totals, re-runs and crashes, prepaid renewals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from balances.ledger import Ledger
from balances.model import MAIN, Account
from balances.model import Mode as BalanceMode
from balances.store import MemoryStore, RocksStore, Store
from balances.units import load_units
from billing import accounts
from billing.accounts import AccountGroup
from billing.catalog import load_catalog
from billing.invoices import InvoiceStore
from billing.model import (
    BillingProfile,
    InvoiceStatus,
    LineKind,
    Mode,
    OneTimeCharge,
    SubscriptionAction,
    SubscriptionEvent,
)
from billing.run import renewal_commands, run_on
from billing.usage import ClosedCycles, UsageBook
from engine.account_commands import Renew, RenewalOutcome

CATALOG = load_catalog()
EUR = 1_000_000_000
CENT = EUR // 100
NOV_2 = int(datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp()) * 1_000_000


def profile(account: str, mode: Mode = Mode.POSTPAID, **kw: object) -> BillingProfile:
    return msgspec.structs.replace(
        BillingProfile(account=account, mode=mode, region="DE", timezone="Europe/Berlin"), **kw
    )


def subscribe(account: str, product: str, day: str = "2026-11-01") -> SubscriptionEvent:
    return SubscriptionEvent(event_id=f"{account}-sub", account=account,
                             subscription=f"{account}-s", action=SubscriptionAction.SUBSCRIBE,
                             day=day, product=product)  # fmt: skip


def rated(cdr_id: str, account: str, charged: str) -> bytes:
    return msgspec.json.encode({
        "cdr_id": cdr_id, "account": account, "category": "call", "start_us": NOV_2,
        "usage": 60, "cost_nanos": int(float(charged) * EUR), "currency": "EUR",
        "zone": "DST_DE", "charged": charged,
    })  # fmt: skip


def populate(store: Store, n: int = 0) -> None:
    """acc-a postpaid MOBILE_M + a call of 1.234 EUR; acc-b reseller hybrid; n more postpaid."""
    people = [profile("acc-a"), profile("acc-b", Mode.HYBRID, reseller="mvno-blue"),
              *[profile(f"acc-{i:05d}") for i in range(n)]]  # fmt: skip
    accounts.import_profiles(store, people)
    events = [subscribe(p.account, "MOBILE_M") for p in people]
    accounts.put_subscription_events(store, events)
    writer = accounts.EventWriter(store)
    writer.charge(OneTimeCharge(charge_id="dev-1", account="acc-b", fee="DEVICE_PHONE",
                                day="2026-11-15"))  # fmt: skip
    store.write(writer.batch)
    book = UsageBook(store)
    book.apply(rated("c1", "acc-a", "1.234"), {p.account: p for p in people}, ClosedCycles(store))


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "billing")


def test_one_draft_per_account_with_exact_totals(store: Store) -> None:
    populate(store)
    summary = run_on(store, "2026-11", catalog=CATALOG)
    assert (summary.accounts, summary.drafted, summary.already) == (2, 2, 0)
    a = InvoiceStore(store).require("2026-11/acc-a")
    assert a.status is InvoiceStatus.DRAFT
    # November (started on the 1st, billed in advance, no earlier invoice) + December in
    # advance, activation, the welcome promotion (50 % of both months), the call rounded
    # half-even to the cent, VAT 19 % of 31.22 = 5.9318 -> 5.93
    assert [(ln.kind, ln.amount) for ln in a.lines] == [
        (LineKind.USAGE, 123 * CENT),
        (LineKind.PRORATION, 20 * EUR),
        (LineKind.RECURRING, 20 * EUR),
        (LineKind.ONE_TIME, 999 * CENT),
        (LineKind.DISCOUNT, -20 * EUR),
        (LineKind.TAX, 593 * CENT),
    ]
    assert (a.subtotal, a.tax, a.total, a.amount_due) == (
        3122 * CENT, 593 * CENT, 3715 * CENT, 3715 * CENT)  # fmt: skip
    b = InvoiceStore(store).require("2026-11/acc-b")
    assert b.issuer == "mvno-blue"
    assert (b.subtotal, b.tax, b.total) == (22899 * CENT, 4351 * CENT, 27250 * CENT)
    assert summary.totals == {"EUR": a.total + b.total}


def test_a_rerun_drafts_nothing_twice_and_a_group_run_only_its_group(store: Store) -> None:
    populate(store, n=5)
    first = run_on(store, "2026-11", catalog=CATALOG, group=AccountGroup(reseller="mvno-blue"))
    assert (first.accounts, first.drafted) == (1, 1)
    again = run_on(store, "2026-11", catalog=CATALOG, chunk=3)
    assert (again.accounts, again.drafted, again.already) == (7, 6, 1)
    assert run_on(store, "2026-11", catalog=CATALOG).drafted == 0
    assert len(list(InvoiceStore(store).iter("2026-11"))) == 7


def test_a_run_that_dies_half_way_finishes_on_rerun_with_the_same_invoices(tmp_path: Path) -> None:
    whole, broken = RocksStore(tmp_path / "whole"), RocksStore(tmp_path / "broken")
    for s in (whole, broken):
        populate(s, n=50)
    run_on(whole, "2026-11", catalog=CATALOG, chunk=7)

    def die(number: int) -> None:
        if number == 3:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        run_on(broken, "2026-11", catalog=CATALOG, chunk=7, after_chunk=die)
    assert len(list(InvoiceStore(broken).iter("2026-11"))) == 28  # chunks 0..3 landed whole
    rerun = run_on(broken, "2026-11", catalog=CATALOG, chunk=7)
    assert (rerun.drafted, rerun.already) == (24, 28)

    def invoices(s: Store) -> dict[str, tuple[int, list[tuple[str, int]]]]:
        return {i.invoice_id: (i.total, [(ln.kind.value, ln.amount) for ln in i.lines])
                for i in InvoiceStore(s).iter("2026-11")}  # fmt: skip

    assert invoices(broken) == invoices(whole)
    assert len(invoices(whole)) == 52


def test_late_usage_goes_on_the_next_invoice_only(store: Store) -> None:
    populate(store)
    run_on(store, "2026-11", catalog=CATALOG)
    people = {p.account: p for p in [profile("acc-a"), profile("acc-b", Mode.HYBRID)]}
    UsageBook(store).apply(rated("c2", "acc-a", "2.00"), people, ClosedCycles(store))
    run_on(store, "2026-12", catalog=CATALOG)
    nov = InvoiceStore(store).require("2026-11/acc-a")
    dec = InvoiceStore(store).require("2026-12/acc-a")
    assert [ln.amount for ln in nov.lines if ln.kind is LineKind.USAGE] == [123 * CENT]
    late = [ln for ln in dec.lines if ln.kind is LineKind.LATE_USAGE]
    assert [(ln.amount, ln.late_from) for ln in late] == [(2 * EUR, "2026-11")]


def test_previous_balance_and_payments_carry_once_issued(store: Store) -> None:
    populate(store)
    invoices = InvoiceStore(store)
    run_on(store, "2026-11", catalog=CATALOG)
    (nov,) = invoices.issue(["2026-11/acc-a"], "tester", "2026-12-01")
    invoices.record_payment(nov.invoice_id, 20 * EUR, "tester", "pay-1")
    run_on(store, "2026-12", catalog=CATALOG)
    dec = invoices.require("2026-12/acc-a")
    assert (dec.previous_balance, dec.payments) == (nov.amount_due, 20 * EUR)
    assert dec.amount_due == nov.amount_due - 20 * EUR + dec.total


def prepaid_population(store: Store) -> Ledger:
    accounts.import_profiles(store, [profile("rich", Mode.PREPAID),
                                     profile("poor", Mode.PREPAID)])  # fmt: skip
    accounts.put_subscription_events(
        store, [subscribe("rich", "GO_PREPAID"), subscribe("poor", "GO_PREPAID")]
    )
    ledger = Ledger(MemoryStore(), load_units())
    created = datetime(2026, 10, 1, tzinfo=UTC)
    for name, credit in (("rich", 50 * EUR), ("poor", 5 * EUR)):
        ledger.create_account(Account(id=name, tenant="t", currency="EUR", created=created,
                                      mode=BalanceMode.PREPAID))  # fmt: skip
        ledger.topup(name, MAIN, credit, op_id=f"t-{name}")
    return ledger


def test_prepaid_renewals_debit_once_and_a_refusal_suspends(store: Store) -> None:
    ledger = prepaid_population(store)
    summary = run_on(store, "2026-11", catalog=CATALOG, ledger=ledger)
    # rich pays November (catch-up: started on the 1st) and December; poor cannot pay
    # November, which suspends the subscription (December is not tried)
    assert (summary.renewals, summary.renewals_refused) == (2, 1)
    main = {n: next(b.amount for b in ledger.balances(n) if b.id == MAIN) for n in ("rich", "poor")}
    assert main == {"rich": 50 * EUR - 2 * 999 * CENT, "poor": 5 * EUR}
    poor = accounts.load_subscription_events(store, "poor")
    assert [(e.action, e.day) for e in poor][-1] == (SubscriptionAction.SUSPEND, "2026-11-01")
    grants = {b.id for b in ledger.balances("rich")} - {MAIN}
    assert len(grants) == 2  # December's minutes and data
    run_on(store, "2026-11", catalog=CATALOG, ledger=ledger)  # a rerun debits nothing
    assert next(b.amount for b in ledger.balances("rich") if b.id == MAIN) == main["rich"]


def test_streaming_renewals_wait_for_their_outcomes(store: Store) -> None:
    prepaid_population(store)
    asked = renewal_commands(store, "2026-11", catalog=CATALOG)
    renews = [c for c in asked if isinstance(c, Renew)]
    assert sorted((c.account, c.amount) for c in renews) == [("poor", 999 * CENT)] * 2 + [
        ("rich", 999 * CENT)] * 2  # fmt: skip
    first = run_on(store, "2026-11", catalog=CATALOG)
    assert (first.drafted, first.pending) == (0, 2)
    writer = accounts.EventWriter(store)
    for c in renews:
        ok = c.account == "rich"
        writer.renewal(RenewalOutcome(op_id=c.op_id, account=c.account,
                                              subscription=c.subscription, day=c.day,
                                              amount=c.amount, ok=ok,
                                              reason="" if ok else "short"))  # fmt: skip
    store.write(writer.batch)
    assert [c for c in renewal_commands(store, "2026-11", catalog=CATALOG)
            if isinstance(c, Renew)] == []  # fmt: skip
    second = run_on(store, "2026-11", catalog=CATALOG)
    assert (second.drafted, second.pending) == (2, 0)
    assert (second.renewals, second.renewals_refused) == (2, 1)  # rich: Nov + Dec; poor: Nov

    def fees(account: str) -> list[tuple[int, bool]]:
        invoice = InvoiceStore(store).require(f"2026-11/{account}")
        return [(ln.amount, ln.paid_from_balance) for ln in invoice.lines
                if ln.kind in (LineKind.RECURRING, LineKind.PRORATION)]  # fmt: skip

    assert fees("rich") == [(999 * CENT, True)]  # November, paid from the balance
    assert fees("poor") == []  # suspended from November 1st (both refusals: one suspension)
