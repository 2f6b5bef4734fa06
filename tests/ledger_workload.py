"""A deterministic ledger workload: accounts and rated batches, shared by tests and a
child process that the crash test kills (run as ``python -m tests.ledger_workload DIR``)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from balances.debit import Debitor
from balances.ledger import Ledger
from balances.model import Account, Balance, Filter, Mode
from balances.store import RocksStore
from balances.units import load_units
from engine.columns import Columns
from loadtest.generator import Scenario, generate_columns
from tariffs.loader import load_tariff
from tariffs.rating import Rater

SAMPLE_PLAN = Path(__file__).parents[1] / "tariffs" / "samples" / "mobile.toml"
ACCOUNTS = 200
BATCHES = 40
BATCH = 500
CREATED = datetime(2026, 11, 1, tzinfo=UTC)


def make_accounts(ledger: Ledger) -> None:
    for i in range(ACCOUNTS):
        mode = (Mode.PREPAID, Mode.POSTPAID, Mode.HYBRID)[i % 3]
        ledger.create_account(
            Account(id=f"acc{i:07d}", tenant="ratewire.demo", currency="EUR", created=CREATED,
                    mode=mode, credit_limit=2_000_000_000),
            [Balance(id="free-min", unit="voice_seconds", amount=600, weight=10,
                     filter=Filter(destinations=("GERMANY", "DE_MOBILE"))),
             Balance(id="data", unit="data_bytes", amount=50_000_000, weight=10),
             Balance(id="credit", unit="EUR", amount=1_500_000_000, weight=5)],
        )  # fmt: skip


def batches() -> list[Columns]:
    """The same ``BATCHES`` batches every time (accounts beyond ACCOUNTS are unknown)."""
    columns = generate_columns(Scenario(records=BATCHES * BATCH, accounts=ACCOUNTS + 5, seed=7))
    out = []
    for k in range(BATCHES):
        idx = np.arange(k * BATCH, (k + 1) * BATCH)
        out.append(
            Columns(
                kind=columns.kind[idx], cdr_id=columns.cdr_id.take(idx),
                tenant=columns.tenant.take(idx), account=columns.account.take(idx),
                category=columns.category.take(idx), subject=columns.subject.take(idx),
                destination=columns.destination.take(idx), start_us=columns.start_us[idx],
                usage=columns.usage[idx],
            )
        )  # fmt: skip
    return out


def run(ledger: Ledger, rater: Rater, work: list[Columns], *, report: bool = False) -> None:
    """Debit every batch, checkpointing after each (the durability point)."""
    debitor = Debitor(ledger.state, rater)
    for k, columns in enumerate(work):
        ledger.debit(debitor, columns, rater.rate(columns))
        ledger.checkpoint()
        if report:
            print(k, flush=True)  # acknowledged: this batch is durable


def main(folder: str) -> None:
    rater = Rater(load_tariff(SAMPLE_PLAN))
    ledger = Ledger(RocksStore(Path(folder)), load_units())
    make_accounts(ledger)
    ledger.checkpoint()
    print("ready", flush=True)
    run(ledger, rater, batches(), report=True)


if __name__ == "__main__":
    main(sys.argv[1])
