"""Invoice lifecycle: drafts, gap-free numbers, crash-safe issue, cancel, payments, history."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from msgspec.structs import replace

from balances.exceptions import StoreError
from balances.store import MemoryStore, RocksStore, Store, WriteBatch
from billing.exceptions import BillingError, InvoiceStateError, UnknownInvoiceError
from billing.invoices import InvoiceStore, number_key
from billing.model import Invoice, InvoiceLine, InvoiceStatus, LineKind
from billing.search import Filters

E = 10**9  # one euro in nanos
ISSUED, PAID, CANCELLED = InvoiceStatus.ISSUED, InvoiceStatus.PAID, InvoiceStatus.CANCELLED


def draft(
    account: str, cycle: str = "2026-11", *, issuer: str = "", total: int = 119 * E // 10,
    terms: int = 14, language: str = "en",
) -> Invoice:  # fmt: skip
    """A draft with a usage line, a fee and 19 % tax; ``total`` includes the tax."""
    tax = total * 19 // 119
    lines = [
        InvoiceLine(
            kind=LineKind.USAGE,
            description="call usage, national",
            amount=total - tax - 5 * E,
            currency="EUR",
            quantity=3,
            unit="records",
            usage=125,
            category="call",
            zone="national",
        ),
        InvoiceLine(kind=LineKind.RECURRING, description="Mobile S", amount=5 * E, currency="EUR"),
        InvoiceLine(kind=LineKind.TAX, description="VAT 19%", amount=tax, currency="EUR"),
    ]
    return Invoice(
        invoice_id=f"{cycle}/{account}", account=account, cycle=cycle, issuer=issuer,
        currency="EUR", period_start=f"{cycle}-01", period_end=_next_month(cycle),
        lines=lines, subtotal=total - tax, tax=tax, total=total, amount_due=total,
        reseller=issuer, language=language, payment_terms_days=terms,
    )  # fmt: skip


def _next_month(cycle: str) -> str:
    year, month = map(int, cycle.split("-"))
    return f"{year + month // 12}-{month % 12 + 1:02d}-01"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000_000

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


class FlakyStore(Store):
    """A store whose ``fail_at``-th write (1-based, counting from creation) raises."""

    def __init__(self, inner: Store, fail_at: int) -> None:
        self.inner, self.fail_at, self.writes = inner, fail_at, 0

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.inner.get_many(keys)

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self.inner.scan(prefix, start)

    def write(self, batch: WriteBatch) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            msg = "disk full (simulated)"
            raise StoreError(msg)
        self.inner.write(batch)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(params=["memory", "rocks"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "db")
    yield made
    made.close()


@pytest.fixture
def invoices(store: Store) -> InvoiceStore:
    return InvoiceStore(store, clock=Clock())


def actions(inv: Invoice | None) -> list[str]:
    assert inv is not None
    return [e.action for e in inv.history]


# -- drafts ----------------------------------------------------------------------------------


def test_put_drafts_writes_drafts_and_extra_keys_in_one_batch(store: Store) -> None:
    spy = FlakyStore(store, fail_at=0)
    invoices = InvoiceStore(spy, clock=Clock())
    written = invoices.put_drafts([draft("a"), draft("b")], "run", {b"run/2026-11/a": b"1"})
    assert (written, spy.writes) == (2, 1)
    assert store.get(b"run/2026-11/a") == b"1"
    got = invoices.get("2026-11/a")
    assert got is not None
    assert (got.status, got.total, got.history[0].actor) == (
        InvoiceStatus.DRAFT,
        119 * E // 10,
        "run",
    )


def test_failed_draft_batch_leaves_neither_draft_nor_progress(store: Store) -> None:
    invoices = InvoiceStore(FlakyStore(store, fail_at=1), clock=Clock())
    with pytest.raises(StoreError):
        invoices.put_drafts([draft("a")], "run", {b"run/2026-11/a": b"1"})
    assert (store.get(b"inv/2026-11/a"), store.get(b"run/2026-11/a")) == (None, None)


def test_re_put_draft_replaces_it_and_identical_draft_is_left_alone(
    invoices: InvoiceStore,
) -> None:
    assert invoices.put_drafts([draft("a")], "run") == 1
    assert invoices.put_drafts([draft("a")], "run") == 0
    assert actions(invoices.get("2026-11/a")) == ["generated"]
    assert invoices.put_drafts([draft("a", total=238 * E // 10)], "rerun") == 1
    got = invoices.get("2026-11/a")
    assert got is not None
    assert (got.total, actions(got)) == (238 * E // 10, ["generated", "regenerated"])
    assert got.history[1].actor == "rerun"
    assert got.history[1].at_us > got.history[0].at_us


def test_put_drafts_skips_issued_invoices_which_stay_immutable(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("a"), draft("b")], "run")
    invoices.issue(["2026-11/a"], "clerk", "2026-12-01")
    before = invoices.get("2026-11/a")
    changed = [draft("a", total=999 * E), draft("b", total=1 * E)]
    assert invoices.put_drafts(changed, "rerun", {b"run/x": b"1"}) == 1
    assert invoices.get("2026-11/a") == before
    b = invoices.get("2026-11/b")
    assert b is not None
    assert b.total == 1 * E
    assert invoices.store.get(b"run/x") == b"1"


def test_put_drafts_refuses_non_drafts_and_duplicates(invoices: InvoiceStore) -> None:
    with pytest.raises(InvoiceStateError, match="only drafts"):
        invoices.put_drafts([replace(draft("a"), status=ISSUED)], "run")
    with pytest.raises(InvoiceStateError, match="same invoice id twice"):
        invoices.put_drafts([draft("a"), draft("a")], "run")
    assert invoices.get("2026-11/a") is None


# -- numbering -------------------------------------------------------------------------------


def test_numbers_are_gap_free_per_issuer_and_issue_is_idempotent(invoices: InvoiceStore) -> None:
    blue = "mvno-blue"
    drafts = [draft("a"), draft("b", issuer=blue), draft("c"), draft("d", issuer=blue), draft("e")]
    invoices.put_drafts(drafts, "run")
    ids = [d.invoice_id for d in drafts]
    issued = invoices.issue(ids, "clerk", "2026-12-01")
    assert [i.number for i in issued] == [
        "RW-2026-000001", "MVNOBLUE-2026-000001", "RW-2026-000002", "MVNOBLUE-2026-000002",
        "RW-2026-000003",
    ]  # fmt: skip
    assert invoices.issue(ids, "clerk", "2026-12-02") == []
    a = invoices.get("2026-11/a")
    assert a is not None
    assert (a.status, a.issued_day, a.due_day) == (ISSUED, "2026-12-01", "2026-12-15")
    assert actions(a) == ["generated", "issued"]
    # the next cycle continues the same sequences
    invoices.put_drafts([draft("a", "2026-12"), draft("b", "2026-12", issuer="mvno-blue")], "run")
    nxt = invoices.issue(["2026-12/a", "2026-12/b"], "clerk", "2026-12-31")
    assert [i.number for i in nxt] == ["RW-2026-000004", "MVNOBLUE-2026-000003"]
    # a new year starts a new sequence
    invoices.put_drafts([draft("a", "2027-01")], "run")
    assert invoices.issue(["2027-01/a"], "clerk", "2027-02-01")[0].number == "RW-2027-000001"


def test_configured_prefix_and_payment_terms(store: Store) -> None:
    invoices = InvoiceStore(store, clock=Clock(), prefixes={"mvno-blue": "BLU"})
    invoices.put_drafts([draft("a", issuer="mvno-blue", terms=30)], "run")
    (issued,) = invoices.issue(["2026-11/a"], "clerk", "2026-12-20")
    assert (issued.number, issued.due_day) == ("BLU-2026-000001", "2027-01-19")


def test_issue_unknown_invoice_writes_nothing(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("a")], "run")
    with pytest.raises(UnknownInvoiceError, match="'2026-11/nobody'"):
        invoices.issue(["2026-11/a", "2026-11/nobody"], "clerk", "2026-12-01")
    assert actions(invoices.get("2026-11/a")) == ["generated"]
    assert invoices.store.get(number_key("", 2026)) is None


@pytest.mark.parametrize(("fail_at", "issued_before"), [(1, 0), (2, 3), (3, 6)])
def test_issue_crash_mid_run_leaves_no_gap_or_duplicate_on_rocksdb(
    tmp_path: Path, fail_at: int, issued_before: int
) -> None:
    """Chunks of 3: [acc-0 1 2] [acc-3(reseller r) 4 5] [acc-6]; write ``fail_at`` dies."""
    path = tmp_path / "db"
    ids = [f"2026-11/acc-{i}" for i in range(7)]
    with RocksStore(path) as rocks:
        drafts = [draft(f"acc-{i}", issuer="r" if i == 3 else "") for i in range(7)]
        InvoiceStore(rocks).put_drafts(drafts, "run")
        flaky = InvoiceStore(FlakyStore(rocks, fail_at), clock=Clock(), chunk=3)
        with pytest.raises(StoreError, match="simulated"):
            flaky.issue(ids, "clerk", "2026-12-01")
    with RocksStore(path) as rocks:  # the restarted process runs the same accept again
        invoices = InvoiceStore(rocks, clock=Clock(), chunk=3)
        assert sum(i.status is ISSUED for i in invoices.iter("2026-11")) == issued_before
        invoices.issue(ids, "clerk", "2026-12-01")
        assert {i.account: i.number for i in invoices.iter("2026-11")} == {
            "acc-0": "RW-2026-000001", "acc-1": "RW-2026-000002", "acc-2": "RW-2026-000003",
            "acc-3": "R-2026-000001", "acc-4": "RW-2026-000004", "acc-5": "RW-2026-000005",
            "acc-6": "RW-2026-000006",
        }  # fmt: skip
        assert (rocks.get(number_key("", 2026)), rocks.get(number_key("r", 2026))) == (b"6", b"1")
        assert invoices.issue(ids, "clerk", "2026-12-02") == []


def test_numbers_continue_after_reopening_rocksdb(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "db") as rocks:
        invoices = InvoiceStore(rocks)
        invoices.put_drafts([draft("a"), draft("b")], "run")
        invoices.issue(["2026-11/a"], "clerk", "2026-12-01")
    with RocksStore(tmp_path / "db") as rocks:
        (b,) = InvoiceStore(rocks).issue(["2026-11/a", "2026-11/b"], "clerk", "2026-12-01")
        assert b.number == "RW-2026-000002"


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_issues_a_credit_note_that_negates_the_invoice(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("a"), draft("b")], "run")
    invoices.issue(["2026-11/a", "2026-11/b"], "clerk", "2026-12-01")
    credit = invoices.cancel("2026-11/a", "supervisor", "wrong tariff", day="2026-12-05")
    original = invoices.get("2026-11/a")
    assert original is not None
    assert (credit.invoice_id, credit.number, credit.status) == (
        "2026-11/a/credit", "RW-2026-000003", ISSUED)  # fmt: skip
    assert (credit.credit_note_for, credit.issued_day) == ("2026-11/a", "2026-12-05")
    assert (credit.subtotal, credit.tax, credit.total, credit.amount_due) == (
        -original.subtotal, -original.tax, -original.total, -original.total)  # fmt: skip
    assert (credit.total, credit.tax) == (-119 * E // 10, -19 * E // 10)
    assert [line.amount for line in credit.lines] == [-line.amount for line in original.lines]
    assert sum(line.amount for line in credit.lines) == credit.total
    assert original.status is CANCELLED
    assert original.history[-1].detail == "wrong tariff (credit note RW-2026-000003)"
    assert (original.history[-1].actor, actions(original)) == (
        "supervisor", ["generated", "issued", "cancelled"])  # fmt: skip
    again = invoices.cancel("2026-11/a", "supervisor", "wrong tariff")
    assert again == credit
    assert invoices.store.get(number_key("", 2026)) == b"3"


def test_cancel_refuses_drafts_credit_notes_unknown_ids_and_no_reason(
    invoices: InvoiceStore,
) -> None:
    invoices.put_drafts([draft("a"), draft("b")], "run")
    with pytest.raises(InvoiceStateError, match="2026-11/a is a draft: only issued invoices"):
        invoices.cancel("2026-11/a", "x", "why")
    invoices.issue(["2026-11/a", "2026-11/b"], "clerk", "2026-12-01")
    with pytest.raises(InvoiceStateError, match="needs a reason"):
        invoices.cancel("2026-11/a", "x", " ")
    invoices.cancel("2026-11/a", "x", "dup")
    with pytest.raises(InvoiceStateError, match="is a credit note"):
        invoices.cancel("2026-11/a/credit", "x", "why")
    with pytest.raises(UnknownInvoiceError):
        invoices.cancel("2026-11/zz", "x", "why")


# -- payments, status, sending -----------------------------------------------------------------


def test_payments_are_idempotent_by_ref_and_settle_the_invoice(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("a")], "run")
    invoices.issue(["2026-11/a"], "clerk", "2026-12-01")
    part = invoices.record_payment("2026-11/a", 5 * E, "bank", "TX1")
    assert (part.status, part.paid) == (ISSUED, 5 * E)
    assert invoices.record_payment("2026-11/a", 5 * E, "bank", "TX1") == part
    with pytest.raises(InvoiceStateError, match="recorded for 5, not 6"):
        invoices.record_payment("2026-11/a", 6 * E, "bank", "TX1")
    full = invoices.record_payment("2026-11/a", 69 * E // 10, "bank", "TX2")
    assert (full.status, full.paid) == (PAID, 119 * E // 10)
    assert actions(full)[-3:] == ["payment", "payment", "paid"]
    assert full.history[-2].detail == "6.9 EUR ref TX2"
    assert [(p.ref, p.amount) for p in invoices.payments("2026-11/a")] == [
        ("TX1", 5 * E), ("TX2", 69 * E // 10)]  # fmt: skip


def test_payments_refused_on_drafts_and_bad_amounts(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("a")], "run")
    with pytest.raises(InvoiceStateError, match="is draft: payments are recorded on issued"):
        invoices.record_payment("2026-11/a", E, "bank", "TX1")
    with pytest.raises(BillingError, match="amount must be positive, got 0"):
        invoices.record_payment("2026-11/a", 0, "bank", "TX1")
    with pytest.raises(BillingError, match="give a reference"):
        invoices.record_payment("2026-11/a", E, "bank", "")


def test_overdue_is_issued_unpaid_and_past_due(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("a"), draft("b"), draft("c"), draft("d")], "run")
    invoices.issue(["2026-11/a", "2026-11/b", "2026-11/c"], "clerk", "2026-12-01")  # due 12-15
    invoices.record_payment("2026-11/b", 119 * E // 10, "bank", "TX")
    invoices.record_payment("2026-11/c", 1 * E, "bank", "TX")
    overdue = Filters(status="overdue")
    assert [s.invoice_id for s in invoices.search(overdue, today="2026-12-15")] == []
    assert [s.invoice_id for s in invoices.search(overdue, today="2026-12-16")] == [
        "2026-11/a", "2026-11/c"]  # fmt: skip
    assert [s.invoice_id for s in invoices.search(Filters(status="paid"))] == ["2026-11/b"]


def test_mark_sent_then_resent_and_drafts_are_not_sent(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("a"), draft("b")], "run")
    invoices.issue(["2026-11/a"], "clerk", "2026-12-01")
    first = invoices.mark_sent("2026-11/a", "mailer", "outbox/operator/RW-2026-000001")
    again = invoices.mark_sent("2026-11/a", "mailer", "outbox/operator/RW-2026-000001")
    assert actions(first)[-1] == "sent"
    assert actions(again)[-2:] == ["sent", "resent"]
    assert again.history[-1].detail == "outbox/operator/RW-2026-000001"
    with pytest.raises(InvoiceStateError, match="is draft: only issued invoices and credit notes"):
        invoices.mark_sent("2026-11/b", "mailer", "x")


def test_history_records_time_and_actor_of_every_change(store: Store) -> None:
    clock = Clock()
    invoices = InvoiceStore(store, clock=clock)
    start = clock.now
    invoices.put_drafts([draft("a")], "run")
    invoices.issue(["2026-11/a"], "clerk", "2026-12-01")
    invoices.set_dunning("2026-11/a", "reminder-1", "dunner")
    invoices.record_payment("2026-11/a", 119 * E // 10, "bank", "TX")
    got = invoices.get("2026-11/a")
    assert got is not None
    assert [(e.at_us - start, e.actor, e.action, e.detail) for e in got.history] == [
        (1_000_000, "run", "generated", ""),
        (2_000_000, "clerk", "issued", "RW-2026-000001"),
        (3_000_000, "dunner", "dunning", "reminder-1"),
        (4_000_000, "bank", "payment", "11.9 EUR ref TX"),
        (4_000_000, "bank", "paid", "11.9 EUR"),
    ]


# -- last invoice, iteration, reindex ---------------------------------------------------------


def test_last_invoice_skips_cancelled_and_credit_notes(invoices: InvoiceStore) -> None:
    assert invoices.last_invoice("a") is None
    invoices.put_drafts([draft("a", "2026-10"), draft("b", "2026-10")], "run")
    invoices.issue(["2026-10/a"], "clerk", "2026-11-01")
    invoices.put_drafts([draft("a", "2026-11")], "run")
    assert [i and i.invoice_id for i in invoices.last_invoices(["a", "b", "c"])] == [
        "2026-11/a", "2026-10/b", None]  # fmt: skip
    last = invoices.last_invoice("a", before="2026-11")
    assert last is not None
    assert last.invoice_id == "2026-10/a"
    invoices.issue(["2026-11/a"], "clerk", "2026-12-01")
    invoices.cancel("2026-11/a", "x", "wrong")
    last = invoices.last_invoice("a")
    assert last is not None
    assert (last.invoice_id, last.status) == ("2026-10/a", ISSUED)


def test_iter_ids_and_reindex(invoices: InvoiceStore) -> None:
    invoices.put_drafts([draft("b"), draft("a", issuer="r"), draft("a", "2026-10")], "run")
    assert [i.invoice_id for i in invoices.iter()] == ["2026-10/a", "2026-11/a", "2026-11/b"]
    assert invoices.ids("2026-11") == ["2026-11/a", "2026-11/b"]
    assert invoices.ids("2026-11", reseller="r") == ["2026-11/a"]
    assert invoices.ids("2026-11", accounts=["b"]) == ["2026-11/b"]
    before = invoices.search(Filters())
    for key, _ in list(invoices.store.scan(b"idx/")):
        batch = WriteBatch()
        batch.delete(key)
        invoices.store.write(batch)
    assert invoices.search(Filters()) == []
    assert invoices.reindex() == 3
    assert invoices.search(Filters()) == before
    last = invoices.last_invoice("a")
    assert last is not None
    assert last.invoice_id == "2026-11/a"


def test_a_paid_invoice_can_be_cancelled_and_a_cancelled_one_is_not_redrafted(
    invoices: InvoiceStore,
) -> None:
    invoices.put_drafts([replace(draft("a"), paid_from_balance=2 * E, amount_due=99 * E // 10)],
                        "run")  # fmt: skip
    invoices.issue(["2026-11/a"], "clerk", "2026-12-01")
    invoices.record_payment("2026-11/a", 99 * E // 10, "bank", "TX")
    credit = invoices.cancel("2026-11/a", "clerk", "goodwill", day="2026-12-20")
    assert (credit.total, credit.paid_from_balance, credit.amount_due) == (
        -119 * E // 10, -2 * E, -99 * E // 10)  # fmt: skip
    original = invoices.get("2026-11/a")
    assert original is not None
    assert (original.status, original.paid) == (CANCELLED, 99 * E // 10)  # payment kept
    assert invoices.put_drafts([draft("a", total=1 * E)], "rerun") == 0
    assert invoices.get("2026-11/a") == original
