"""Kill a ledger writer mid-run (a real SIGKILL); reopening shows only whole batches,
and replaying the whole input gives exactly the balances of a run that never crashed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from balances.ledger import Ledger
from balances.store import MemoryStore, RocksStore
from balances.units import load_units
from tariffs.loader import load_tariff
from tariffs.rating import Rater
from tests import ledger_workload as work

ROOT = Path(__file__).parents[2]


def journal_sums(ledger: Ledger) -> dict[tuple[str, str], int]:
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for entry in ledger.journal():
        sums[(entry.account, entry.balance)] += entry.delta
    return sums


def amounts(ledger: Ledger) -> dict[tuple[str, str], int]:
    return {
        (account.id, view.id): view.amount
        for account in ledger.state.accounts
        for view in ledger.balances(account.id)
    }


@pytest.fixture(scope="module")
def reference() -> dict[tuple[str, str], int]:
    """Balances after the whole input, applied once without a crash."""
    ledger = Ledger(MemoryStore(), load_units())
    work.make_accounts(ledger)
    work.run(ledger, Rater(load_tariff(work.SAMPLE_PLAN)), work.batches())
    return amounts(ledger)


@pytest.mark.integration
@pytest.mark.parametrize("kill_after", [3, 11, 23])
def test_sigkill_mid_run_then_replay(
    tmp_path: Path, kill_after: int, reference: dict[tuple[str, str], int]
) -> None:
    folder = tmp_path / "state"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger_workload", str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    acknowledged = -1
    for line in child.stdout:
        if line.strip().isdigit():
            acknowledged = int(line)
            if acknowledged >= kill_after:
                break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    ledger = Ledger(RocksStore(folder), load_units())
    # nothing half-applied: every balance is exactly the sum of its durable journal
    sums = journal_sums(ledger)
    now = amounts(ledger)
    assert all(now[key] == sums.get(key, 0) for key in now)
    # everything acknowledged is there: replaying those batches changes nothing
    rater = Rater(load_tariff(work.SAMPLE_PLAN))
    before = dict(now)
    work.run(ledger, rater, work.batches()[: acknowledged + 1])
    assert amounts(ledger) == before
    # the rest of the input completes the run: same balances as without a crash
    work.run(ledger, rater, work.batches())
    assert amounts(ledger) == reference
    ledger.close()


def test_reference_run_moves_money(reference: dict[tuple[str, str], int]) -> None:
    spent = [v for (_, balance), v in reference.items() if balance == "credit"]
    assert min(spent) < 1_500_000_000  # the workload really debits
    assert np.count_nonzero(np.array([v for (_, b), v in reference.items() if b == "main"]) < 0)
