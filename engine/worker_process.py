"""A ``ratewire worker`` as a child process: started, waited for, stopped or killed by pid.

For the demo, the load tester and the integration tests, which need real
worker processes (a crash test kills one with SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.exceptions import RatewireError

READY_SECONDS = 60.0


class WorkerProcessError(RatewireError):
    code = "WORKER_ERROR"


def wait_accounts(
    workers: list[WorkerProcess], n: int, timeout: float = READY_SECONDS
) -> tuple[int, int]:
    """Until the workers counted ``n`` provisioning commands; ``(created, existing)``.

    Counts follow a batch once it is durable (the API sees accounts a moment
    earlier). ``existing``: accounts a broker with an earlier run held already.
    """
    deadline = time.monotonic() + timeout
    while True:
        created = existing = 0
        for w in workers:
            counts = (w.health() or {"counts": {}})["counts"]
            created += counts.get("accounts_created", 0)
            existing += counts.get("accounts_existing", 0)
        if created + existing >= n:
            return created, existing
        if time.monotonic() > deadline:
            msg = f"workers counted {created + existing} of {n} accounts in {timeout:g} s"
            raise WorkerProcessError(msg)
        time.sleep(0.1)


class WorkerProcess:
    """``ratewire worker`` with ``args`` (besides --broker, --state, --web-port)."""

    def __init__(
        self, broker: str, state: Path, web_port: int, *, tariffs: Path, log: Path,
        args: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.broker, self.state, self.web_port, self.log = broker, state, web_port, log
        self.command = [
            sys.executable, "-m", "engine.cli", "worker", "--broker", broker, "--state",
            str(state), "--web-port", str(web_port), "--tariffs", str(tariffs), *args,
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        return self

    def health(self) -> dict[str, Any] | None:
        """The worker's ``/health`` answer, or None while it is not serving."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                body: dict[str, Any] = json.loads(answer.read())
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def wait_assigned(self, timeout: float = READY_SECONDS) -> list[int]:
        """Wait until the group gave this worker partitions; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                msg = f"worker exited with {self._process.returncode}; see {self.log}"
                raise WorkerProcessError(msg)
            health = self.health()
            if health and health["assigned"]:
                return list(health["assigned"])
            time.sleep(0.1)
        msg = f"worker on port {self.web_port} got no partitions in {timeout:.0f} s; see {self.log}"
        raise WorkerProcessError(msg)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: the crash a test simulates."""
        return self._signal(signal.SIGKILL, 10.0)

    def _signal(self, sig: signal.Signals, timeout: float) -> int | None:
        process = self._process
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        os.kill(process.pid, sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
