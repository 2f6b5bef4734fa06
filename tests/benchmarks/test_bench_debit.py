"""Debit rated records from a million accounts (target ≥ 500 k records/s, one core).

Batches of 10,000 rated records with Zipf-skewed account activity; the ledger
checkpoints to RocksDB every 10 batches (100,000 records): that synced write is
the durability point and is inside the measurement. Unmeasured runs (CI) use
100,000 accounts to keep the suite short.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from balances.debit import Debitor
from balances.ledger import Ledger
from balances.model import Account, Balance, Filter, Mode
from balances.store import RocksStore
from balances.units import load_units
from engine.columns import Columns
from loadtest.generator import Scenario, generate_columns
from tariffs.model import Tariff
from tariffs.rating import RatedBatch, Rater

BATCH = 10_000
CHECKPOINT_EVERY = 10
RECORDS = 1_000_000


def _slice(columns: Columns, lo: int, hi: int) -> Columns:
    index = np.arange(lo, hi)
    return Columns(
        kind=columns.kind[index], cdr_id=columns.cdr_id.take(index),
        tenant=columns.tenant.take(index), account=columns.account.take(index),
        category=columns.category.take(index), subject=columns.subject.take(index),
        destination=columns.destination.take(index), start_us=columns.start_us[index],
        usage=columns.usage[index],
    )  # fmt: skip


def _accounts(n: int) -> tuple[list[Account], list[list[Balance]]]:
    created = datetime(2026, 11, 1, tzinfo=UTC)
    accounts = [
        Account(id=f"acc{i:07d}", tenant="ratewire.demo", currency="EUR", created=created,
                mode=Mode.HYBRID if i % 4 == 0 else Mode.PREPAID, credit_limit=20_000_000_000)
        for i in range(n)
    ]  # fmt: skip
    bundle = Filter(destinations=("GERMANY", "DE_MOBILE"))
    balances = [
        [Balance(id="free-min", unit="voice_seconds", amount=3000, weight=10, filter=bundle),
         Balance(id="data", unit="data_bytes", amount=5_000_000_000, weight=10),
         Balance(id="credit", unit="EUR", amount=20_000_000_000, weight=5)]
        for _ in range(n)
    ]  # fmt: skip
    return accounts, balances


@pytest.fixture(scope="module")
def workload(
    request: pytest.FixtureRequest, sample_tariff: Tariff
) -> tuple[Rater, list[tuple[Columns, RatedBatch]], int]:
    measured = bool(request.config.getoption("benchmark_enable"))
    accounts = 1_000_000 if measured else 100_000
    rater = Rater(sample_tariff)
    day = generate_columns(Scenario(records=RECORDS, accounts=accounts, seed=11))
    batches = []
    for lo in range(0, RECORDS, BATCH):
        columns = _slice(day, lo, lo + BATCH)
        batches.append((columns, rater.rate(columns)))
    return rater, batches, accounts


def test_debit_million_accounts(
    benchmark: BenchmarkFixture,
    workload: tuple[Rater, list[tuple[Columns, RatedBatch]], int],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    rater, batches, n_accounts = workload
    accounts, balances = _accounts(n_accounts)

    def setup() -> tuple[tuple[Ledger, Debitor], dict[str, object]]:
        ledger = Ledger(RocksStore(Path(tmp_path_factory.mktemp("ledger"))), load_units())
        ledger.create_accounts(accounts, balances)
        ledger.checkpoint()
        return (ledger, Debitor(ledger.state, rater)), {}

    def run(ledger: Ledger, debitor: Debitor) -> int:
        applied = 0
        for k, (columns, rated) in enumerate(batches, start=1):
            result = ledger.debit(debitor, columns, rated)
            applied += int(np.count_nonzero((result.flags & ~1) == 0))
            if k % CHECKPOINT_EVERY == 0:
                ledger.checkpoint()
        ledger.checkpoint()
        ledger.store.close()
        return applied

    applied = benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    rated = sum(int(np.count_nonzero(r.error == 0)) for _, r in batches)
    assert applied == rated  # every rated record belongs to a known account
    assert rated > RECORDS * 0.9
