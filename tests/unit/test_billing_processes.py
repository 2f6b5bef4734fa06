"""A mass run split over processes drafts exactly what a one-process run drafts."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from balances.store import RocksStore, Store
from billing import accounts, run
from billing.accounts import ALL, WHOLE, AccountGroup
from billing.exceptions import BillingError
from billing.invoices import InvoiceStore
from billing.run import run_on
from tests.unit.test_billing_run import CATALOG, populate


@pytest.fixture(autouse=True)
def split_small_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "PARALLEL_MIN", 10)


def invoices(store: Store) -> dict[str, tuple[int, int, list[tuple[str, int, str]]]]:
    return {i.invoice_id: (i.total, i.amount_due, [(ln.kind.value, ln.amount, ln.rule)
                                                   for ln in i.lines])
            for i in InvoiceStore(store).iter("2026-11")}  # fmt: skip


def summary_of(s: run.RunSummary) -> tuple[int, int, int, int, dict[str, int]]:
    return s.accounts, s.drafted, s.already, s.pending, s.totals


def test_three_processes_draft_what_one_drafts(tmp_path: Path) -> None:
    one, three = RocksStore(tmp_path / "one"), RocksStore(tmp_path / "three")
    for s in (one, three):
        populate(s, n=60)
    alone = run_on(one, "2026-11", catalog=CATALOG, chunk=7)
    split = run_on(three, "2026-11", catalog=CATALOG, chunk=7, processes=3)
    assert summary_of(split) == summary_of(alone)
    assert (split.accounts, split.drafted) == (62, 62)
    assert invoices(three) == invoices(one)
    assert len(invoices(three)) == 62
    assert run_on(three, "2026-11", catalog=CATALOG, processes=3).already == 62


def test_a_split_run_that_dies_half_way_finishes_on_rerun(tmp_path: Path) -> None:
    whole, broken = RocksStore(tmp_path / "whole"), RocksStore(tmp_path / "broken")
    for s in (whole, broken):
        populate(s, n=60)
    run_on(whole, "2026-11", catalog=CATALOG, chunk=5)

    def die(number: int) -> None:
        if number == 4:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        run_on(broken, "2026-11", catalog=CATALOG, chunk=5, processes=2, after_chunk=die)
    assert len(invoices(broken)) == 25  # five whole chunks were written, nothing else
    rerun = run_on(broken, "2026-11", catalog=CATALOG, chunk=5, processes=2)
    assert (rerun.drafted, rerun.already) == (37, 25)
    assert invoices(broken) == invoices(whole)


def test_a_span_that_fails_fails_the_run_naming_it_and_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    whole, store = RocksStore(tmp_path / "whole"), RocksStore(tmp_path / "billing")
    for s in (whole, store):
        populate(s, n=40)
    run_on(whole, "2026-11", catalog=CATALOG)
    (good,) = accounts.load_profiles(store, ["acc-00030"]).values()
    accounts.import_profiles(store, [msgspec.structs.replace(good, currency="XXX")])
    with pytest.raises(BillingError, match=r"accounts 'acc-000\d\d' up to the last: .*'XXX'"):
        run_on(store, "2026-11", catalog=CATALOG, chunk=4, processes=2)
    assert 0 < len(invoices(store)) < 42  # whole chunks only: the other span's, the first ones
    assert "2026-11/acc-00030" not in invoices(store)
    accounts.import_profiles(store, [good])
    rerun = run_on(store, "2026-11", catalog=CATALOG, chunk=4, processes=2)
    assert rerun.drafted + rerun.already == 42
    assert invoices(store) == invoices(whole)


def test_split_group_cuts_even_spans_that_cover_every_account(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "billing")
    populate(store, n=60)
    spans = accounts.split_group(store, ALL, 3, 10)
    assert len(spans) == 3
    assert (spans[0][0], spans[-1][1]) == (b"", None)
    sizes = [sum(1 for _ in accounts.iter_billing_inputs(store, ALL, span)) for span in spans]
    assert sizes == [20, 21, 21]
    assert accounts.split_group(store, ALL, 3, 100) == [WHOLE]
    blue = AccountGroup(reseller="mvno-blue")
    assert accounts.split_group(store, blue, 2, 10) == [WHOLE]  # one account only
