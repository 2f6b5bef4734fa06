"""The load tester against a real broker and worker: its counts are the worker's counts.

Each test starts its own Tansu broker (the worker's topics and consumer group
have fixed names) and one ``ratewire worker`` process, runs a short load test
through the drivers the CLI uses, and checks the report against what the
worker itself wrote and counted: the ``rated-cdrs`` and ``cdrs-rejected``
topics read independently, the worker's ``/metrics`` counters, and (HTTP) the
balances its API shows.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from balances.model import Balance, Mode
from engine.broker import EmbeddedBroker, ensure_topics, free_port
from engine.kafka_transport import FETCH_WAIT_MS
from engine.topics import RATED, REJECTED, all_topics
from engine.worker_process import WorkerProcess
from loadtest import http_driver, kafka_driver
from loadtest import report as reports
from loadtest.cluster import PLAN
from loadtest.http_driver import HttpLoad
from loadtest.kafka import Rated
from loadtest.kafka_driver import KafkaLoad
from loadtest.scenario import EUR, ModePlan, Scenario, load_scenario

pytestmark = pytest.mark.integration
PARTITIONS = 4
SMOKE = Path(__file__).parents[2] / "loadtest" / "samples" / "smoke.toml"


@dataclass
class Setup:
    broker: EmbeddedBroker
    worker: WorkerProcess


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap, all_topics(PARTITIONS))
        worker = WorkerProcess(
            broker.url, tmp_path / "state", free_port(), tariffs=PLAN, log=tmp_path / "worker.log",
            args=("--partitions", str(PARTITIONS), "--session-timeout", "6"),
        )  # fmt: skip
        worker.start()
        try:
            worker.wait_assigned()
            yield Setup(broker, worker)
        finally:
            worker.stop()


def metrics(worker: WorkerProcess) -> Counter[str]:
    """The worker's counters: ``rated``, ``rejected:<reason>`` and ``http:<route>:<status>``."""
    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("ratewire_records_rated_total "):
            out["rated"] = int(float(line.split()[-1]))
        elif found := re.match(r'ratewire_records_rejected_total\{reason="(\w+)"\} (\S+)', line):
            out[f"rejected:{found[1]}"] = int(float(found[2]))
        elif found := re.match(
            r'ratewire_http_requests_total\{route="(\w+)",status="(\d+)"\} (\S+)', line
        ):
            out[f"http:{found[1]}:{found[2]}"] = int(float(found[3]))
    return out


async def _outputs(bootstrap: str) -> tuple[set[str], Counter[str]]:
    """Every rated cdr_id and every reject's reason (once per source), from the start."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )  # fmt: skip
    await consumer.start()
    parts = [TopicPartition(t, p) for t in (RATED, REJECTED) for p in range(PARTITIONS)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    ends = await consumer.end_offsets(parts)
    rated: set[str] = set()
    sources: dict[str, str] = {}
    decoder = msgspec.json.Decoder(Rated)
    try:
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                for m in messages:
                    if tp.topic == RATED:
                        rated.update(r.cdr_id for r in decoder.decode_lines(m.value))
                    else:
                        headers = dict(m.headers)
                        reason = headers["ratewire-reason"].decode()
                        sources[headers["ratewire-source"].decode()] = reason
    finally:
        await consumer.stop()
    return rated, Counter(sources.values())


def test_a_short_kafka_run_counts_what_the_worker_rated_and_rejected(
    setup: Setup, tmp_path: Path
) -> None:
    scenario = load_scenario(SMOKE)
    load = KafkaLoad(rate=2000, records=6000, warmup=1.0, shape="batch", fmt="json", size=200,
                     partitions=PARTITIONS, drain=30.0)  # fmt: skip
    report = asyncio.run(kafka_driver.run(setup.broker.bootstrap, scenario, load))
    c = report.counts
    # every record sent came back rated or rejected, nothing else came back
    assert c["planned"] == c["sent"] == 6000
    assert c["missing"] == 0
    assert c["rated"] + c["rejected"] == 6000
    assert c["foreign"] == c["rated_again"] == c["send_errors"] == 0
    # what the worker wrote, read independently, is exactly what the report counted
    rated, rejected = asyncio.run(_outputs(setup.broker.bootstrap))
    assert len(rated) == c["rated"]
    assert all(cdr.startswith(f"{report.config['run_id']}-") for cdr in rated)
    assert dict(rejected) == report.rejects
    # ... and what it counted itself
    counted = metrics(setup.worker)
    assert counted["rated"] == c["rated"]
    by_reason = {k.split(":", 1)[1]: n for k, n in counted.items() if k.startswith("rejected:")}
    assert by_reason == report.rejects
    # the rejects are the ones the scenario makes on purpose, resends caught as DUPLICATE
    assert report.rejects == report.expected_rejects
    assert c["duplicates_caught"] == c["duplicates_sent"] > 0
    assert c["malformed_sent"] > 0
    # latency and the series are there; the report is written
    latency = report.latency_ms["rated"]
    assert 0 < latency["count"] <= c["rated"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 30_000
    assert sum(report.series.sent) == 6000
    assert sum(report.series.done) == c["rated"]
    assert report.passed
    written = {p.name for p in reports.write(report, tmp_path / "report")}
    assert {"report.json", "report.md", "throughput.png", "latency.png", "percentiles.png",
            "lag.png"} <= written  # fmt: skip


TIGHT = Scenario(
    records=0, accounts=10,
    modes=(
        ModePlan(Mode.PREPAID, 0.5, 0,
                 (Balance(id="credit", unit="EUR", amount=2 * EUR, weight=5),)),
        ModePlan(Mode.POSTPAID, 0.5, 1 * EUR,
                 (Balance(id="credit", unit="EUR", amount=1 * EUR, weight=5),)),
    ),
)  # fmt: skip
"""Ten accounts with a little money each: parallel sessions run them dry."""


def test_a_short_http_run_never_overspends_and_every_request_is_counted(setup: Setup) -> None:
    asyncio.run(kafka_driver.provision(setup.broker.bootstrap, TIGHT, partitions=PARTITIONS))
    load = HttpLoad(rps=300, duration=3.0, sessions=40, accounts=TIGHT.accounts, warmup=0.5)
    driven: list[dict[str, float]] = []  # the worker's counts once the run was answered

    async def read_metrics() -> None:
        driven.append(await asyncio.to_thread(metrics, setup.worker))

    report = asyncio.run(http_driver.run(setup.worker.url, load, driven=read_metrics))
    c = report.counts
    # the status counts add up to the requests sent, and every planned request was sent
    assert sum(n for by in report.statuses.values() for n in by.values()) == c["sent"] == 900
    assert c["answered"] == 900
    assert c["errors"] == c["unanswered"] == 0
    # sessions ran the balances down to where authorizations were refused ...
    assert c["granted"] > 0
    assert c["denied"] > 0
    assert set(report.rejects) == {"denied: INSUFFICIENT_CREDIT"}
    # ... yet nothing went below its floor, nothing stayed reserved, and the balances went
    # down by exactly what the commits said they charged
    assert (c["violations"], c["leaks"], c["mismatches"]) == (0, 0, 0)
    assert report.passed
    checked = {check.name for check in report.checks}
    assert {"balance violations", "charges not matching balances"} <= checked
    # the worker counted the same requests, operation by operation and status by status
    counted = metrics(setup.worker)
    served = {tuple(k.split(":")[1:]): n for k, n in counted.items() if k.startswith("http:")}
    for op, by in report.statuses.items():
        for status, n in by.items():
            assert served[(op, status)] >= n  # the final releases of held grants come on top
    assert (
        sum(n for (op, _), n in served.items() if op == "authorize") == c["granted"] + c["denied"]
    )
    # the hook ran after the run's requests were answered, before held grants were released
    then = {tuple(k.split(":")[1:]): n for k, n in driven[0].items() if k.startswith("http:")}
    assert sum(n for (op, _), n in then.items() if op in http_driver.OPERATIONS) == 900
    assert report.latency_ms["all"]["count"] > 0
