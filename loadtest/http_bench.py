"""``python -m loadtest.http_bench``: authorize over HTTP, open loop, latency from the planned time.

Starts the embedded broker and a worker, provisions accounts, then sends
``POST /accounts/{id}/authorize`` at ``--rps`` for ``--seconds``: request
``i`` is due at ``start + i / rps`` and its latency counts from then, so a
slow answer delays nothing and hides nothing. Every ``--commit-share`` of the
grants is committed right away (a short call), the rest left to expire.
Prints one JSON object (p50/p90/p99/p99.9/max in ms, statuses, achieved rate).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import numpy as np
import uvloop

from engine.broker import EmbeddedBroker, ensure_topics, free_port
from engine.topics import all_topics
from engine.worker_process import WorkerProcess, wait_accounts
from loadtest import kafka
from loadtest.accounts import account_id, scenario_accounts
from loadtest.generator import Scenario

PLAN = Path(__file__).parents[1] / "tariffs" / "samples" / "mobile.toml"
ASK = {"category": "call", "destination": "4930123456", "usage": "2m"}


async def _one(
    session: aiohttp.ClientSession, url: str, due: float, commit: bool,
    latencies: list[float], statuses: Counter[int],
) -> None:  # fmt: skip
    async with session.post(f"{url}/authorize", json=ASK) as answer:
        body = await answer.read()
        statuses[answer.status] += 1
    latencies.append(time.perf_counter() - due)
    if commit and answer.status == 200:
        grant = msgspec.json.decode(body)
        if grant["reservation_id"]:
            base = url.rsplit("/accounts/", 1)[0]
            rid = grant["reservation_id"]
            async with session.post(f"{base}/reservations/{rid}/commit",
                                    json={"usage": "45s"}) as done:  # fmt: skip
                statuses[done.status] += 1


async def drive(base: str, accounts: int, rps: float, seconds: float, commit_share: float) -> Any:
    n = int(rps * seconds)
    rng = np.random.default_rng(7)
    who = rng.integers(0, accounts, size=n).tolist()
    commits = (rng.random(n) < commit_share).tolist()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        # warm up: connections and the worker's first compiled calls
        await asyncio.gather(*(_one(session, f"{base}/accounts/{account_id(i)}",
                                    time.perf_counter(), False, [], Counter())
                               for i in range(50)))  # fmt: skip
        start = time.perf_counter() + 0.2
        tasks = []
        for i in range(n):
            due = start + i / rps
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            url = f"{base}/accounts/{account_id(who[i])}"
            tasks.append(asyncio.create_task(_one(session, url, due, commits[i], latencies,
                                                  statuses)))  # fmt: skip
        await asyncio.gather(*tasks)
        took = time.perf_counter() - start
        async with session.get(f"{base}/metrics") as answer:
            server = _server_buckets(await answer.text())
    ms = np.array(latencies) * 1000
    return {
        "requests": n, "rps_target": rps, "rps": round(n / took), "statuses": dict(statuses),
        "latency_ms": {q: round(float(np.percentile(ms, p)), 2)
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))}
        | {"max": round(float(ms.max()), 2)},
        "server_share_within_ms": server,
    }  # fmt: skip


def _server_buckets(metrics: str) -> dict[str, float]:
    """The worker's own view: share of requests it served within each bucket bound (ms)."""
    counts = {}
    for line in metrics.splitlines():
        if line.startswith("ratewire_http_request_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            counts[bound] = float(line.rsplit(" ", 1)[1])
    total = counts.pop("+Inf", 0.0) or 1.0
    return {f"{float(b) * 1000:g}": round(n / total, 4) for b, n in counts.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rps", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--commit-share", type=float, default=0.5)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ratewire-http-"))
    try:
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            ensure_topics(broker.bootstrap, all_topics(args.partitions))
            worker = WorkerProcess(broker.url, tmp / "state", free_port(), tariffs=PLAN,
                                   log=tmp / "worker.log",
                                   args=("--partitions", str(args.partitions))).start()  # fmt: skip
            try:
                worker.wait_assigned()
                scenario = Scenario(records=0, accounts=args.accounts)
                accounts, balances = scenario_accounts(scenario)
                asyncio.run(kafka.provision(broker.bootstrap, accounts, balances, args.partitions))
                wait_accounts([worker], args.accounts, timeout=300)
                # the load process's own collector pauses would count as latency: off
                gc.collect()
                gc.freeze()
                gc.disable()
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    result = runner.run(drive(worker.url, args.accounts, args.rps, args.seconds,
                                              args.commit_share))  # fmt: skip
            finally:
                worker.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
