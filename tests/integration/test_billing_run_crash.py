"""A mass run killed with SIGKILL half way, then run again: every invoice exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from balances.store import RocksStore, Store
from billing import run
from billing.catalog import load_catalog
from billing.invoices import InvoiceStore
from billing.run import run_on
from tests.unit.test_billing_run import populate

pytestmark = pytest.mark.integration
CHILD = """
import os, signal, sys
from pathlib import Path
from balances.store import RocksStore
from billing import run
from billing.catalog import load_catalog

def die(number: int) -> None:
    if number == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: a power cut

run.PARALLEL_MIN = 100
run.run_on(RocksStore(Path(sys.argv[1])), "2026-11", catalog=load_catalog(), chunk=100,
           after_chunk=die, processes=int(sys.argv[2]))
"""


def marked(mark: str) -> list[int]:
    """Processes whose environment holds ``mark`` (the killed run's span processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def invoices(store: Store) -> dict[str, tuple[int, int, list[tuple[str, int]]]]:
    return {i.invoice_id: (i.total, len(i.history), [(ln.kind.value, ln.amount) for ln in i.lines])
            for i in InvoiceStore(store).iter("2026-11")}  # fmt: skip


@pytest.mark.parametrize("processes", [1, 2])
def test_a_killed_run_finishes_on_rerun_with_each_invoice_once(
    tmp_path: Path, processes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "PARALLEL_MIN", 100)
    with RocksStore(tmp_path / "whole") as whole:
        populate(whole, n=1_500)
        run_on(whole, "2026-11", catalog=load_catalog(), chunk=100)
        want = invoices(whole)
    with RocksStore(tmp_path / "killed") as killed:
        populate(killed, n=1_500)
    mark = f"RATEWIRE_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "killed"), str(processes)],
                           capture_output=True, check=False, env=env)  # fmt: skip
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    deadline = time.monotonic() + 20
    while marked(mark) and time.monotonic() < deadline:  # span processes see the pipe break
        time.sleep(0.1)
    assert marked(mark) == []
    with RocksStore(tmp_path / "killed") as killed:
        assert len(invoices(killed)) == 600  # chunks 0..5 of 100 landed whole, no more
        summary = run_on(killed, "2026-11", catalog=load_catalog(), chunk=100,
                         processes=processes)  # fmt: skip
        assert (summary.drafted, summary.already) == (902, 600)
        assert invoices(killed) == want
        assert len(want) == 1_502
