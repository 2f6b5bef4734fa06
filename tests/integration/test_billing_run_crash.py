"""A mass run killed with SIGKILL half way, then run again: every invoice exactly once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from balances.store import RocksStore, Store
from billing.catalog import load_catalog
from billing.invoices import InvoiceStore
from billing.run import run_on
from tests.unit.test_billing_run import populate

pytestmark = pytest.mark.integration
CHILD = """
import os, signal, sys
from pathlib import Path
from balances.store import RocksStore
from billing.catalog import load_catalog
from billing.run import run_on

def die(number: int) -> None:
    if number == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: a power cut

run_on(RocksStore(Path(sys.argv[1])), "2026-11", catalog=load_catalog(), chunk=100,
       after_chunk=die)
"""


def invoices(store: Store) -> dict[str, tuple[int, int, list[tuple[str, int]]]]:
    return {i.invoice_id: (i.total, len(i.history), [(ln.kind.value, ln.amount) for ln in i.lines])
            for i in InvoiceStore(store).iter("2026-11")}  # fmt: skip


def test_a_killed_run_finishes_on_rerun_with_each_invoice_once(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "whole") as whole:
        populate(whole, n=1_500)
        run_on(whole, "2026-11", catalog=load_catalog(), chunk=100)
        want = invoices(whole)
    with RocksStore(tmp_path / "killed") as killed:
        populate(killed, n=1_500)
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "killed")],
                           capture_output=True, check=False)  # fmt: skip
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    with RocksStore(tmp_path / "killed") as killed:
        assert len(invoices(killed)) == 600  # chunks 0..5 of 100 landed whole, no more
        summary = run_on(killed, "2026-11", catalog=load_catalog(), chunk=100)
        assert (summary.drafted, summary.already) == (902, 600)
        assert invoices(killed) == want
        assert len(want) == 1_502
