"""RocksStore under a real SIGKILL: a batch is all there or not there at all.

A child process writes numbered batches (1,000 keys each plus a ``last``
marker) and prints each batch number once ``write`` has returned. The parent
kills it with SIGKILL in the middle of its loop, reopens the store and checks
what survived against what the child acknowledged.

SIGKILL stops the process, not the machine: this proves atomic batches and WAL
recovery, not that an fsync reached the disk.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import pytest

from balances.exceptions import StoreError
from balances.store import RocksStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEYS_PER_BATCH = 1_000

WRITER = """
import sys
from pathlib import Path
from typing import NoReturn

from balances.store import RocksStore, WriteBatch

with RocksStore(Path(sys.argv[1])) as store:
    print("open", flush=True)
    number = 0
    while True:
        number += 1
        batch = WriteBatch()
        for i in range(1000):
            batch.put(b"k/%d/%d" % (number, i), b"%d" % i)
        batch.put(b"last", b"%d" % number)
        store.write(batch)
        print(number, flush=True)
"""

HOLDER = """
import sys
from pathlib import Path
from typing import NoReturn

from balances.store import RocksStore

with RocksStore(Path(sys.argv[1])):
    print("open", flush=True)
    sys.stdin.read()
"""


def start(script: str, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class Lines:
    """Lines a child prints, read from its pipe without blocking past a deadline."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.process = process
        self.fd = process.stdout.fileno()
        self.pending = b""

    def next(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            chunk = os.read(self.fd, 65536) if ready else b""
            if not chunk:
                self.fail(f"no line within {timeout}s" if not ready else "child exited")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def rest(self) -> list[str]:
        """Every complete line still in the pipe; call after the child is dead."""
        while chunk := os.read(self.fd, 65536):
            self.pending += chunk
        return [line.decode() for line in self.pending.split(b"\n") if line]

    def fail(self, why: str) -> NoReturn:
        self.process.kill()
        _, stderr = self.process.communicate()
        pytest.fail(f"{why}; child stderr:\n{stderr.decode()}")


@pytest.mark.parametrize("run", range(3))
def test_sigkill_leaves_only_whole_batches(tmp_path: Path, rng: random.Random, run: int) -> None:
    path = tmp_path / "db"
    child = start(WRITER, path)
    try:
        lines = Lines(child)
        assert lines.next() == "open"
        wait_for = rng.randint(3, 15)
        acknowledged = 0
        while acknowledged < wait_for:
            acknowledged = int(lines.next())
        time.sleep(rng.uniform(0, 0.005))  # land at a different point of the next batch
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        acknowledged = max([acknowledged, *map(int, lines.rest())])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.communicate()

    with RocksStore(path) as store:
        marker = store.get(b"last")
        assert marker is not None
        last = int(marker)
        # Every acknowledged batch survived; at most one more was written but not printed.
        assert acknowledged <= last <= acknowledged + 1, (acknowledged, last)
        for number in range(1, last + 1):
            keys = [b"k/%d/%d" % (number, i) for i in range(KEYS_PER_BATCH)]
            values = store.get_many(keys)
            assert values == [b"%d" % i for i in range(KEYS_PER_BATCH)], f"batch {number}"
        # Nothing of a later batch: the only batches present are 1..last, each whole.
        batches_seen = {int(key.split(b"/")[1]) for key, _ in store.scan(b"k/")}
        assert batches_seen == set(range(1, last + 1))
        assert sum(1 for _ in store.scan(b"k/")) == last * KEYS_PER_BATCH


def test_a_store_held_by_another_process_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "db"
    holder = start(HOLDER, path)
    try:
        assert Lines(holder).next() == "open"
        with pytest.raises(StoreError, match="another process holds the store's lock") as caught:
            RocksStore(path)
        assert "Operator action" in str(caught.value)
        assert str(path) in str(caught.value)
    finally:
        holder.communicate(input=b"", timeout=30)
    assert holder.returncode == 0
    with RocksStore(path) as store:  # free again once the holder has gone
        assert store.get(b"anything") is None
