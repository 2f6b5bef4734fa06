"""Closing a cycle: the mass run (drafts), accept, render and send, on a generated population.

The 1,000,000-account figures in README "Performance" come from
``python -m billing.bench`` (:mod:`billing.bench`); these are the same steps at
a size a benchmark round can repeat: 20,000 accounts for the run and accept,
200 invoices to render and send. Each round works on a fresh clone of one
population store (:func:`billing.bench.clone`). Unmeasured runs (CI) use 2,000
accounts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from balances.store import RocksStore
from billing.bench import clone
from billing.catalog import Catalog, load_catalog
from billing.invoices import InvoiceStore
from billing.model import Invoice, InvoiceStatus
from billing.outbox import SendSummary, send
from billing.population import Spec, build
from billing.render import Renderer
from billing.run import RunSummary, run_on

CYCLE = "2026-11"
ISSUE_DAY = "2026-12-28"
RENDERED = 200


@dataclass(frozen=True)
class Population:
    path: Path  # a closed RocksDB folder: clone it, never open it
    accounts: int
    catalog: Catalog


@pytest.fixture(scope="module")
def population(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Population:
    measured = bool(request.config.getoption("benchmark_enable"))
    accounts = 20_000 if measured else 2_000
    catalog = load_catalog()
    path = tmp_path_factory.mktemp("billing") / "population"
    with RocksStore(path) as store:
        build(store, Spec(accounts=accounts), catalog)
    return Population(path, accounts, catalog)


@pytest.fixture(scope="module")
def issued(population: Population, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone with the cycle run and every draft accepted (closed)."""
    path = clone(population.path, tmp_path_factory.mktemp("issued") / "db")
    with RocksStore(path) as store:
        run_on(store, CYCLE, catalog=population.catalog)
        invoices = InvoiceStore(store)
        invoices.issue(invoices.ids(CYCLE), "bench", ISSUE_DAY)
    return path


@pytest.fixture
def rounds() -> Iterator[list[RocksStore]]:
    """Stores opened by a benchmark's setups, closed after it."""
    opened: list[RocksStore] = []
    yield opened
    for store in opened:
        store.close()


def test_close_cycle(
    benchmark: BenchmarkFixture, population: Population, tmp_path: Path,
    rounds: list[RocksStore],
) -> None:  # fmt: skip
    def setup() -> tuple[tuple[RocksStore], dict[str, object]]:
        store = RocksStore(clone(population.path, tmp_path / f"run{len(rounds)}"))
        rounds.append(store)
        return (store,), {}

    def run(store: RocksStore) -> RunSummary:
        return run_on(store, CYCLE, catalog=population.catalog)

    summary = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)  # type: ignore[no-untyped-call]
    assert (summary.accounts, summary.drafted, summary.pending) == (
        population.accounts, population.accounts, 0,
    )  # fmt: skip
    drafts = InvoiceStore(rounds[-1]).get_many(InvoiceStore(rounds[-1]).ids(CYCLE))
    assert all(d is not None and d.total == sum(x.amount for x in d.lines) for d in drafts)


def test_accept(
    benchmark: BenchmarkFixture, population: Population, tmp_path: Path,
    rounds: list[RocksStore],
) -> None:  # fmt: skip
    drafted = tmp_path / "drafted"
    with RocksStore(clone(population.path, drafted)) as store:
        run_on(store, CYCLE, catalog=population.catalog)

    def setup() -> tuple[tuple[InvoiceStore], dict[str, object]]:
        store = RocksStore(clone(drafted, tmp_path / f"accept{len(rounds)}"))
        rounds.append(store)
        return (InvoiceStore(store),), {}

    def accept(invoices: InvoiceStore) -> list[Invoice]:
        return invoices.issue(invoices.ids(CYCLE), "bench", ISSUE_DAY)

    issued = benchmark.pedantic(accept, setup=setup, rounds=3, iterations=1)  # type: ignore[no-untyped-call]
    assert len(issued) == population.accounts
    assert len({inv.number for inv in issued}) == population.accounts


def _sample(path: Path) -> list[Invoice]:
    with RocksStore(path) as store:
        invoices = InvoiceStore(store)
        ids = invoices.ids(CYCLE)
        found = invoices.get_many(ids[:: max(len(ids) // RENDERED, 1)][:RENDERED])
    return [inv for inv in found if inv is not None]


def test_render(benchmark: BenchmarkFixture, population: Population, issued: Path) -> None:
    docs = _sample(issued)
    renderer = Renderer(decimals=population.catalog.decimals)
    for doc in docs:  # compile every brand's and language's templates first
        renderer.render(doc, "html"), renderer.render(doc, "txt")

    def render() -> int:
        return sum(len(renderer.render(d, "html")) + len(renderer.render(d, "txt")) for d in docs)

    chars = benchmark.pedantic(render, rounds=5, iterations=1)  # type: ignore[no-untyped-call]
    assert len(docs) == RENDERED
    assert all(d.status is InvoiceStatus.ISSUED for d in docs)
    assert chars > RENDERED * 2_000


def test_send(
    benchmark: BenchmarkFixture, population: Population, issued: Path, tmp_path: Path,
    rounds: list[RocksStore],
) -> None:  # fmt: skip
    ids = [d.invoice_id for d in _sample(issued)]
    renderer = Renderer(decimals=population.catalog.decimals)

    def setup() -> tuple[tuple[InvoiceStore, Path], dict[str, object]]:
        store = RocksStore(clone(issued, tmp_path / f"send{len(rounds)}"))
        rounds.append(store)
        return (InvoiceStore(store), tmp_path / f"outbox{len(rounds)}"), {}

    def deliver(invoices: InvoiceStore, outbox: Path) -> SendSummary:
        return send(invoices, ids, outbox=outbox, renderer=renderer, actor="bench")

    summary = benchmark.pedantic(deliver, setup=setup, rounds=3, iterations=1)  # type: ignore[no-untyped-call]
    assert (summary.sent, summary.skipped) == (RENDERED, 0)
    assert len(summary.files) == 3 * RENDERED  # html, txt, json each
