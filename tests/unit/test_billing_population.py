"""The benchmark population: seeded, with the shares it promises, and billable end to end.

A population is only worth measuring if the mass run can bill it: 300 accounts
(previous cycle run and accepted, then this cycle's events, charges and usage)
go through :func:`billing.run.run_on`, and every account gets exactly one draft
whose totals are the sums of its lines.
"""

from __future__ import annotations

from collections import Counter

import msgspec
import numpy as np
import pytest

from balances.store import MemoryStore, Store
from billing.catalog import Catalog, load_catalog
from billing.model import Invoice, InvoiceStatus, LineKind
from billing.population import (
    MODES,
    RESELLERS,
    SCENARIOS,
    STARTS,
    ZONES,
    Plan,
    Spec,
    account_id,
    build,
)
from billing.run import run_on
from tests.conftest import SeededRandom

CYCLE = "2026-11"
INVOICE = msgspec.msgpack.Decoder(Invoice)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def built(spec: Spec, catalog: Catalog) -> Store:
    store = MemoryStore()
    build(store, spec, catalog)
    return store


def rows(store: Store, prefix: bytes) -> dict[bytes, bytes]:
    return dict(store.scan(prefix))


def test_the_same_seed_builds_the_same_population(catalog: Catalog, rng: SeededRandom) -> None:
    spec = Spec(accounts=120, seed=rng.randrange(2**31))
    one, two = built(spec, catalog), built(spec, catalog)
    for prefix in (b"prof/", b"sub/", b"otc/", b"use/", b"rnw/", b"closed/"):
        assert rows(one, prefix) == rows(two, prefix), prefix
        assert rows(one, prefix), prefix
    # invoices carry the clock in their history; the same ones exist
    assert rows(one, b"inv/").keys() == rows(two, b"inv/").keys()
    other = built(Spec(accounts=120, seed=spec.seed + 1), catalog)
    assert rows(other, b"use/") != rows(one, b"use/")


def test_shares_are_within_tolerance() -> None:
    n = 50_000
    plan = Plan(Spec(accounts=n, seed=3))

    def share(values: np.ndarray, k: int) -> float:
        return float(np.count_nonzero(values == k)) / n

    for k, (_, wanted) in enumerate(MODES):
        assert share(plan.mode, k) == pytest.approx(wanted, abs=0.01)
    for k, (_, wanted) in enumerate(RESELLERS):
        assert share(plan.reseller, k) == pytest.approx(wanted, abs=0.01)
    for k, wanted in enumerate(SCENARIOS):
        assert share(plan.scenario, k) == pytest.approx(wanted, abs=0.01)
    eur = plan.zone >= 0
    for k, zone in enumerate(ZONES):
        assert np.count_nonzero(plan.zone == k) / np.count_nonzero(eur) == pytest.approx(
            zone[3], abs=0.01
        )
    assert set(plan.bill_day.tolist()) == set(range(1, 29))
    assert not plan.business[plan.mode == 0].any()  # no prepaid business accounts
    assert float(plan.records.mean()) == pytest.approx(5.0 * 0.95, rel=0.03)
    assert not plan.records_before[plan.scenario == STARTS].any()  # new customers


def test_three_hundred_accounts_are_drafted_once_and_add_up(
    catalog: Catalog, rng: SeededRandom
) -> None:
    store = MemoryStore()
    report = build(store, Spec(accounts=300, seed=rng.randrange(2**31)), catalog)
    assert report.profiles == 300
    assert report.previous_issued == report.previous_drafted > 250  # new customers: none
    assert report.records > 1_000

    summary = run_on(store, CYCLE, catalog=catalog)
    assert (summary.accounts, summary.drafted, summary.already, summary.pending) == (
        300, 300, 0, 0,
    )  # fmt: skip
    drafts = [INVOICE.decode(raw) for raw in rows(store, f"inv/{CYCLE}/".encode()).values()]
    assert sorted(d.account for d in drafts) == [account_id(i) for i in range(300)]
    kinds: Counter[LineKind] = Counter()
    for d in drafts:
        assert d.status is InvoiceStatus.DRAFT
        assert d.total == sum(line.amount for line in d.lines)
        assert d.tax == sum(line.amount for line in d.lines if line.kind is LineKind.TAX)
        assert d.subtotal + d.tax == d.total
        kinds.update(line.kind for line in d.lines)
    for kind in (LineKind.USAGE, LineKind.LATE_USAGE, LineKind.RECURRING, LineKind.PRORATION,
                 LineKind.ONE_TIME, LineKind.TAX):  # fmt: skip
        assert kinds[kind], kind
    for currency, total in summary.totals.items():
        assert total == sum(d.total for d in drafts if d.currency == currency)

    again = run_on(store, CYCLE, catalog=catalog)
    assert (again.drafted, again.already) == (0, 300)
