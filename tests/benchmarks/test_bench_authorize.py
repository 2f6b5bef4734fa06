"""Real-time authorize + commit pairs on the sample plan, 10,000 prepaid accounts, one core.

Target: 50,000 pairs/s. Two figures, both in process on one ledger:

- ``single``: ``authorize()`` then ``commit()``, one request at a time (each is a
  batch of one: a rating, a kernel call and a debit per request);
- ``batched``: ``authorize_many()`` / ``commit_many()`` on 1,000 concurrent
  requests at a time, the way a server micro-batches what arrives together.

Requests are a seeded mix of national, mobile and European calls, SMS and data
sessions on random accounts (several sessions of one account often share a
batch); each commit reports a share of the grant. The ledger checkpoints to
RocksDB every 10 batches (10,000 pairs), inside the measurement.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from balances.debit import Debitor
from balances.ledger import Ledger
from balances.model import Account, Balance, Filter
from balances.reservations import AuthorizeRequest, Charge, CommitRequest, Reservations
from balances.store import RocksStore
from balances.units import load_units
from tariffs.model import Tariff
from tariffs.rating import Rater

ACCOUNTS = 10_000
BATCH = 1_000
BATCHES = 10  # per measured round; the ledger checkpoints once per round
SINGLE_PAIRS = 2_000
T = datetime(2026, 11, 2, 10, tzinfo=UTC)  # a Monday, 11:00 in Berlin: peak
ASKS = (  # category, destination, smallest and largest usage asked
    ("call", "4930123456", 30, 1800),
    ("call", "4916012345", 30, 1800),
    ("call", "33123456", 30, 900),
    ("sms", "4930123456", 1, 3),
    ("data", "", 100_000, 50_000_000),
)


@dataclass
class Bench:
    ledger: Ledger
    res: Reservations
    batches: list[list[AuthorizeRequest]]


@pytest.fixture(scope="module")
def bench(sample_tariff: Tariff, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    ledger = Ledger(RocksStore(tmp_path_factory.mktemp("authorize") / "db"), load_units())
    created = T - timedelta(days=30)
    bundle = Filter(destinations=("GERMANY", "DE_MOBILE"))
    ledger.create_accounts(
        [Account(id=f"acc{i:05d}", tenant="ratewire.demo", currency="EUR", created=created)
         for i in range(ACCOUNTS)],
        [[Balance(id="free-min", unit="voice_seconds", amount=3000, weight=10, filter=bundle),
          Balance(id="data", unit="data_bytes", amount=2_000_000_000, weight=10),
          Balance(id="credit", unit="EUR", amount=10**15, weight=5)]
         for _ in range(ACCOUNTS)],
    )  # fmt: skip
    ledger.checkpoint()
    res = Reservations(ledger, Debitor(ledger.state, Rater(sample_tariff)))
    rng = random.Random(7)
    batches = []
    for _ in range(BATCHES):
        batch = []
        for _ in range(BATCH):
            category, destination, lo, hi = rng.choice(ASKS)
            batch.append(AuthorizeRequest(
                account=f"acc{rng.randrange(ACCOUNTS):05d}", category=category,
                destination=destination, requested=rng.randint(lo, hi), start=T,
            ))  # fmt: skip
        batches.append(batch)
    pair(res, batches[0][:10])  # compile outside the measurement
    yield Bench(ledger, res, batches)
    ledger.close()


def pair(res: Reservations, requests: list[AuthorizeRequest]) -> list[Charge]:
    """Authorize a batch, then commit three quarters of every grant."""
    grants = res.authorize_many(requests)
    commits = [CommitRequest(g.reservation_id, g.granted * 3 // 4) for g in grants if g.granted]
    return [c for c in res.commit_many(commits) if isinstance(c, Charge)]


def check(bench: Bench, charges: list[Charge], pairs: int) -> None:
    assert len(charges) == pairs  # every request granted (the accounts are rich) and committed
    assert all(c.reason == "" and c.paid == c.due for c in charges)
    reserved = bench.ledger.state.bal.arrays["reserved"][: bench.ledger.state.bal.size]
    assert not np.any(reserved)  # every reservation committed, nothing left held
    assert len(bench.res) == 0


def test_authorize_commit_batched(benchmark: BenchmarkFixture, bench: Bench) -> None:
    def run() -> list[Charge]:
        charges = []
        for batch in bench.batches:
            charges += pair(bench.res, batch)
        bench.ledger.checkpoint()
        return charges

    charges = benchmark.pedantic(run, rounds=5, iterations=1)  # type: ignore[no-untyped-call]
    check(bench, charges, BATCH * BATCHES)
    if benchmark.stats:
        benchmark.extra_info["pairs_per_second"] = BATCH * BATCHES / benchmark.stats["median"]


def test_authorize_commit_single(benchmark: BenchmarkFixture, bench: Bench) -> None:
    requests = [q for batch in bench.batches for q in batch][:SINGLE_PAIRS]

    def run() -> list[Charge]:
        charges = []
        for q in requests:
            grant = bench.res.authorize(q.account, category=q.category,
                                        destination=q.destination, requested=q.requested,
                                        start=q.start)  # fmt: skip
            charges.append(bench.res.commit(grant.reservation_id, grant.granted * 3 // 4))
        bench.ledger.checkpoint()
        return charges

    charges = benchmark.pedantic(run, rounds=3, iterations=1)  # type: ignore[no-untyped-call]
    check(bench, charges, SINGLE_PAIRS)
    if benchmark.stats:
        benchmark.extra_info["pairs_per_second"] = SINGLE_PAIRS / benchmark.stats["median"]
