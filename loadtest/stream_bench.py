"""``python -m loadtest.stream_bench``: the worker's end-to-end speed, broker included.

Starts the embedded broker (or uses ``--broker``), ``--workers`` worker
processes, provisions the scenario's accounts, encodes all messages first
(so the producer costs little while timing), then:

* throughput (default): sends everything as fast as the broker takes it and
  times from the first send until every record is visible on
  ``rated-cdrs`` or ``cdrs-rejected`` (records/s end to end);
* latency (``--rate R``): sends open-loop at R records/s (each message at its
  planned time, however late the previous one was) and reports the latency
  of every rated record from its message's *planned* send time to the
  moment the rated record was read (p50/p99/max), so a stall shows up as
  latency instead of silently slowing the sender (coordinated omission).

Prints one JSON object; the README's performance table quotes its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer

from engine.broker import EmbeddedBroker, ensure_topics, free_port
from engine.kafka_transport import FETCH_WAIT_MS
from engine.topics import RATED, REJECTED, all_topics
from engine.worker_process import WorkerProcess, wait_accounts
from loadtest import kafka
from loadtest.accounts import scenario_accounts
from loadtest.generator import Scenario, columns_to_records, generate_columns

PLAN = Path(__file__).parents[1] / "tariffs" / "samples" / "mobile.toml"
_SEQ = re.compile(rb'"cdr_id":"[^"]*-(\d+)"')  # generated ids end in their sequence number


@dataclass
class Seen:
    """What the reader saw: counts, and each rated record's latency when asked to."""

    records: int = 0
    last_at: float = 0.0
    latencies: list[np.ndarray[Any, Any]] = field(default_factory=list)


async def _read(bootstrap: str, total: int, planned: np.ndarray[Any, Any] | None,
                seen: Seen, timeout: float) -> None:  # fmt: skip
    """Count records on both output topics until ``total``; latency per rated record."""
    consumer = AIOKafkaConsumer(
        RATED, REJECTED, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS,
        fetch_max_bytes=kafka.MAX_REQUEST,
        max_partition_fetch_bytes=kafka.MAX_REQUEST,
    )  # fmt: skip
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        while seen.records < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for tp, messages in batches.items():
                for m in messages:
                    if tp.topic == REJECTED:
                        seen.records += 1
                        continue
                    seen.records += m.value.count(b"\n")
                    if planned is not None:
                        seqs = np.array(_SEQ.findall(m.value), dtype=np.int64)
                        seen.latencies.append(now - planned[seqs])
            seen.last_at = now
    finally:
        await consumer.stop()


async def _send(bootstrap: str, messages: list[Any], at: np.ndarray[Any, Any] | None) -> None:
    """Send ``messages``; each at ``at[i]`` (perf_counter seconds) when given."""
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        pending = []
        for i, (part, key, value, headers) in enumerate(messages):
            if at is not None:
                delay = at[i] - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await producer.send(
                "cdrs", value, key=key, partition=part, headers=headers or None))  # fmt: skip
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def run(
    args: argparse.Namespace, bootstrap: str, workers: list[WorkerProcess], bootstrap_pid: int
) -> dict[str, Any]:
    scenario = Scenario(records=args.records, accounts=args.accounts)
    records = columns_to_records(generate_columns(scenario))
    accounts, balances = scenario_accounts(scenario)
    await kafka.provision(bootstrap, accounts, balances, args.partitions)
    wait_accounts(workers, len(accounts), timeout=300)
    members: list[np.ndarray[Any, Any]] = []
    messages = kafka.messages_of(records, args.partitions, shape=args.shape, size=args.size,
                                 fmt=args.format, members=members)  # fmt: skip
    planned = None
    at = None
    if args.rate:  # message i is due when the records before it are, at the target rate
        sizes = np.array([len(m) for m in members], dtype=np.float64)
        at = time.perf_counter() + 1.0 + (np.cumsum(sizes) - sizes) / args.rate
        planned = np.empty(len(records))
        for i, rows in enumerate(members):
            planned[rows] = at[i]
    seen = Seen()
    cpu_before = _cpu(workers, bootstrap_pid)
    reader = asyncio.ensure_future(_read(bootstrap, len(records), planned, seen, args.timeout))
    await asyncio.sleep(0.5)
    began = time.perf_counter()
    await _send(bootstrap, messages, at)
    sent = time.perf_counter()
    await reader
    seconds = seen.last_at - began
    cpu = {k: round(v - cpu_before[k], 2) for k, v in _cpu(workers, bootstrap_pid).items()}
    out: dict[str, Any] = {
        "records": len(records), "messages": len(messages), "shape": args.shape,
        "size": args.size, "workers": len(workers), "seen": seen.records,
        "send_seconds": round(sent - began, 3), "seconds": round(seconds, 3),
        "records_per_second": round(seen.records / seconds) if seconds > 0 else 0,
        "cpu_seconds": cpu,
    }  # fmt: skip
    if seen.latencies:
        lat = np.concatenate(seen.latencies) * 1000
        out["rate"] = args.rate
        out["latency_ms"] = {
            q: round(float(np.percentile(lat, p)), 1)
            for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))
        }
        out["latency_ms"]["max"] = round(float(lat.max()), 1)
    return out


def _cpu(workers: list[WorkerProcess], broker: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process of the run."""

    def of(pid: int | None) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    used = {f"worker{i}": of(w.pid) for i, w in enumerate(workers)}
    used["broker"] = of(broker)
    used["load"] = time.process_time()  # this process: the sender and the reader
    return used


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--shape", choices=("batch", "single", "columnar"), default="batch")
    p.add_argument("--size", type=int, default=1000, help="records per batch message")
    p.add_argument("--format", choices=("msgpack", "json"), default="msgpack")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rate", type=float, help="records/s, open loop (latency mode)")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--keep", type=Path, help="keep logs and state here (default: a temp dir)")
    args = p.parse_args(argv)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="ratewire-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
        ensure_topics(broker.bootstrap, all_topics(args.partitions))
        workers = [
            WorkerProcess(broker.url, tmp / f"state-{i}", free_port(), tariffs=PLAN,
                          log=tmp / f"worker-{i}.log",
                          args=("--partitions", str(args.partitions))).start()
            for i in range(args.workers)
        ]  # fmt: skip
        try:
            for w in workers:
                w.wait_assigned()
            gc.collect()  # the load process's own collector pauses would count as latency
            gc.freeze()
            gc.disable()
            result = asyncio.run(run(args, broker.bootstrap, workers, broker.pid or 0))
        finally:
            for w in workers:
                w.stop()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0 if result["seen"] == result["records"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
