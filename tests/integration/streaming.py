"""What the worker's integration tests share: a fresh broker, worker processes, HTTP calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer

from balances.model import Account, Balance, Measure
from balances.units import UnitCatalog, load_units
from engine.broker import EmbeddedBroker, free_port
from engine.kafka_transport import FETCH_WAIT_MS
from engine.records import DataRecord, Record
from engine.worker_process import WorkerProcess
from loadtest import kafka
from loadtest.accounts import scenario_accounts
from loadtest.generator import Scenario, columns_to_records, generate_columns

PLAN = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
PARTITIONS = 4
UNITS: UnitCatalog = load_units()


@dataclass
class Stream:
    """A broker of one test's own and the workers it started (stopped at teardown)."""

    broker: EmbeddedBroker
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(self, name: str = "a", *args: str, state: Path | None = None) -> WorkerProcess:
        w = WorkerProcess(
            self.broker.url, state or self.tmp / f"state-{name}", free_port(),
            tariffs=PLAN, log=self.tmp / f"worker-{name}.log",
            args=("--partitions", str(PARTITIONS), "--session-timeout", "6", *args),
        )  # fmt: skip
        self.workers.append(w.start())
        return w

    def provision(self, scenario: Scenario) -> None:
        self.provision_accounts(*scenario_accounts(scenario))

    def provision_accounts(
        self, accounts: Sequence[Account], balances: Sequence[Sequence[Balance]]
    ) -> None:
        asyncio.run(kafka.provision(self.broker.bootstrap, accounts, balances, PARTITIONS))

    def produce(self, records: Sequence[Record], **shape: Any) -> None:
        messages = kafka.messages_of(records, PARTITIONS, **shape)
        asyncio.run(kafka.produce(self.broker.bootstrap, messages))

    def produce_raw(self, messages: list[kafka.Outgoing]) -> None:
        asyncio.run(kafka.produce(self.broker.bootstrap, messages))

    def collect(self, expected: int, timeout: float = 90.0) -> kafka.Collected:
        return asyncio.run(kafka.collect(self.broker.bootstrap, expected, timeout=timeout))


async def _read(bootstrap: str, topic: str, n: int, timeout: float) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=FETCH_WAIT_MS)  # fmt: skip
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < n and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                values += [m.value for m in messages]
    finally:
        await consumer.stop()
    return values


def read_topic(bootstrap: str, topic: str, n: int, timeout: float = 30) -> list[bytes]:
    """The first ``n`` values of ``topic`` (fewer if they do not come in ``timeout`` s)."""
    return asyncio.run(_read(bootstrap, topic, n, timeout))


def traffic(records: int, accounts: int, seed: int = 2026) -> tuple[Scenario, list[Record]]:
    """Generated records, data sessions cut to a hundredth.

    The reference rater steps through a session one 1 KB increment at a time;
    at full size (6.5 MB on average) it would take minutes to check a test.
    """
    scenario = Scenario(records=records, accounts=accounts, seed=seed)
    generated = columns_to_records(generate_columns(scenario))
    return scenario, [
        msgspec.structs.replace(r, usage=r.usage // 100) if isinstance(r, DataRecord) else r
        for r in generated
    ]


def http(method: str, url: str, body: Any = None, token: str = "") -> tuple[int, Any]:
    """One request; (status, decoded JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def amounts(worker: WorkerProcess, account: str) -> dict[str, int]:
    """An account's balances as the API shows them, back in integer amount units."""
    status, body = http("GET", f"{worker.url}/accounts/{account}/balances")
    assert status == 200, body
    out = {}
    for b in body["balances"]:
        unit = UNITS[b["unit"]]
        scale = unit.decimals if unit.measure is Measure.MONEY else 0
        out[b["id"]] = int(Decimal(b["amount"]).scaleb(scale))
    return out


def all_amounts(worker: WorkerProcess, accounts: Sequence[str]) -> dict[tuple[str, str], int]:
    return {(a, b): v for a in accounts for b, v in amounts(worker, a).items()}


class Consumer:
    """``ratewire billing consume`` as a child process (stopped or killed by its pid)."""

    def __init__(self, broker: str, billing: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.command = [sys.executable, "-m", "engine.cli_billing_consume", "consume",
                        "--broker", broker, "--billing", str(billing), "--web-port",
                        str(self.port), "--log-level", "warning", "--session-timeout", "3",
                        *args]  # fmt: skip
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Consumer:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        return self

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         data=json.dumps(body).encode(), method="POST")  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def health(self) -> dict[str, Any] | None:
        try:
            return self.get("/health")[1]  # type: ignore[no-any-return]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def wait_offsets(self, wanted: dict[str, int], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            health = self.health()
            if health and all(health["offsets"].get(k, 0) >= v for k, v in wanted.items()):
                return health
            time.sleep(0.1)
        raise AssertionError(f"offsets {wanted} not reached; {self.health()}")

    def wait(self, timeout: float = 20) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def signal(self, sig: signal.Signals) -> int:
        if self.process is None:  # never started
            return 0
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        return self.process.wait(20)
