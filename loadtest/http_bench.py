"""``python -m loadtest.http_bench``: authorize over HTTP, open loop, latency from the planned time.

:mod:`loadtest.http_driver` on an embedded cluster (broker and one worker),
one session per account: request ``i`` is due at ``start + i / rps`` and its
latency counts from then, so a slow answer delays nothing and hides nothing.
``--commit-share`` of the grants are committed at their session's next slot,
the rest left to expire (``0``: every request is an authorize). Prints one
JSON object (p50/p90/p99/p99.9/max in ms, statuses, achieved rate, and the
worker's own view: the share of requests it served within each bucket, from
its metrics read before the driver releases what the run left held).

``ratewire loadtest http --embedded`` drives sessions that commit and release
too, checks the balances afterwards and writes a full report.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.request
from collections import Counter
from dataclasses import replace
from typing import Any

import msgspec

from loadtest.cluster import Cluster
from loadtest.http_driver import HttpLoad, run
from loadtest.kafka_driver import provision
from loadtest.report import Report
from loadtest.scenario import Scenario
from loadtest.schedule import run_measured


def server_buckets(metrics: str) -> dict[str, float]:
    """The worker's own view: share of requests it served within each bucket bound (ms),
    all routes together."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("ratewire_http_request_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            counts[bound] = counts.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    total = counts.pop("+Inf", 0.0) or 1.0
    return {f"{float(b) * 1000:g}": round(n / total, 4) for b, n in counts.items()}


def _read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def summary(r: Report, server: dict[str, float]) -> dict[str, Any]:
    """The report as the benchmark has always printed it."""
    statuses: Counter[str] = Counter()
    for by in r.statuses.values():
        statuses.update(by)
    latency = r.latency_ms["all"]
    sending = r.seconds.get("sending", 0.0) or 1.0
    return {
        "requests": r.counts["planned"], "rps_target": r.config["rps"],
        "rps": round(r.counts["sent"] / sending), "statuses": dict(statuses),
        "latency_ms": {k: round(latency[k], 2) for k in ("p50", "p90", "p99", "p99.9", "max")},
        "server_share_within_ms": server,
        "sender_behind_ms": r.behind_ms,  # the load's own lateness, counted in the latency
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rps", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--commit-share", type=float, default=0.5)
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args(argv)
    load = HttpLoad(
        rps=args.rps, duration=args.seconds, sessions=args.accounts, accounts=args.accounts,
        warmup=0.0, finish_share=args.commit_share, release_share=0.0, books=False,
    )  # fmt: skip
    with Cluster(1, args.partitions) as cluster:
        scenario = replace(Scenario(records=0), accounts=args.accounts)
        asyncio.run(provision(cluster.bootstrap, scenario, partitions=args.partitions,
                              timeout=300))  # fmt: skip
        url = cluster.workers[0].url
        metrics: list[str] = []

        async def driven() -> None:  # before the driver releases what the run left held
            metrics.append(await asyncio.to_thread(_read, f"{url}/metrics"))

        report = run_measured(lambda: run(url, load, driven=driven))
        server = server_buckets(metrics[0])
    sys.stdout.write(msgspec.json.encode(summary(report, server)).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
