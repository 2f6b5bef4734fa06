"""The embedded cluster a load test can start itself (``--embedded``): broker and workers.

The Tansu broker (:class:`~engine.broker.EmbeddedBroker`) with every topic
created, and ``workers`` ``ratewire worker`` processes
(:class:`~engine.worker_process.WorkerProcess`) sharing its partitions. A
run starts only once the group has settled (every partition owned, every
worker busy), so it does not begin inside a rebalance; the CPU each process
used is read from ``/proc`` for the report.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType

from engine.broker import EmbeddedBroker, ensure_topics, free_port
from engine.topics import all_topics
from engine.worker_process import WorkerProcess, WorkerProcessError

PLAN = Path(__file__).parents[1] / "tariffs" / "samples" / "mobile.toml"


class Cluster:
    """The embedded Tansu broker and ``workers`` worker processes, for ``--embedded``.

    Logs and state go to ``keep`` (kept) or a temporary folder (removed).
    Started by ``with``; workers are stopped (SIGTERM, by pid) and the broker
    with them on exit.
    """

    def __init__(
        self,
        workers: int = 1,
        partitions: int = 4,
        *,
        keep: Path | None = None,
        tariffs: Path = PLAN,
        worker_args: tuple[str, ...] = (),
    ) -> None:
        self.n, self.partitions, self.keep = workers, partitions, keep
        self.tariffs, self.worker_args = tariffs, worker_args
        self.tmp = keep or Path(tempfile.mkdtemp(prefix="ratewire-loadtest-"))
        self.broker = EmbeddedBroker(log_path=self.tmp / "broker.log")
        self.workers: list[WorkerProcess] = []

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def __enter__(self) -> Cluster:
        self.tmp.mkdir(parents=True, exist_ok=True)
        try:
            self.broker.start()
            ensure_topics(self.broker.bootstrap, all_topics(self.partitions))
            for i in range(self.n):
                w = WorkerProcess(
                    self.broker.url,
                    self.tmp / f"state-{i}",
                    free_port(),
                    tariffs=self.tariffs,
                    log=self.tmp / f"worker-{i}.log",
                    args=("--partitions", str(self.partitions), *self.worker_args),
                )
                self.workers.append(w.start())
            self.wait_balanced()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def wait_balanced(self, timeout: float = 90.0) -> None:
        """Until every partition is assigned once and every worker (up to one per
        partition) has some: a run must not start inside a rebalance."""
        deadline = time.monotonic() + timeout
        busy = min(self.n, self.partitions)
        while time.monotonic() < deadline:
            assigned = [(w.health() or {}).get("assigned") or [] for w in self.workers]
            owned = sorted(p for a in assigned for p in a)
            if owned == list(range(self.partitions)) and sum(map(bool, assigned)) >= busy:
                return
            time.sleep(0.2)
        logs = ", ".join(str(w.log) for w in self.workers)
        msg = (
            f"{self.n} worker(s) did not share the {self.partitions} partitions in"
            f" {timeout:g} s; see {logs}"
        )
        raise WorkerProcessError(msg)

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by each process of the run."""
        used = {f"worker{i}": _cpu_of(w.pid) for i, w in enumerate(self.workers)}
        used["broker"] = _cpu_of(self.broker.pid)
        used["load"] = time.process_time()
        return used

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for w in self.workers:
            w.stop()
        self.broker.stop()
        if self.keep is None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _cpu_of(pid: int | None) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
