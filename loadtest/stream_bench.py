"""``python -m loadtest.stream_bench``: the worker's end-to-end speed, broker included.

The README's performance figures come from here; it is
:mod:`loadtest.kafka_driver` on an embedded cluster (:class:`~loadtest.cluster.Cluster`:
the Tansu broker and ``--workers`` workers) with the historical traffic
(``Scenario(records=…, accounts=…)``: no malformed messages, no resends),
printed as one JSON object:

* throughput (default): every message sent as fast as the producer takes
  it; ``records_per_second`` is every record rated or rejected over the time
  from the first send to the last output read;
* latency (``--rate R``): sent open loop at R records/s; ``latency_ms`` of the
  rated records from their message's *planned* send time (coordinated
  omission accounted for).

``ratewire loadtest kafka --embedded`` does the same with a scenario file, a
live view and a full report.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from loadtest.cluster import Cluster
from loadtest.kafka_driver import KafkaLoad, run
from loadtest.report import Report
from loadtest.scenario import Scenario
from loadtest.schedule import run_measured


def summary(r: Report) -> dict[str, Any]:
    """The report as the benchmark has always printed it."""
    c, cfg = r.counts, r.config
    out: dict[str, Any] = {
        "records": c["planned"], "messages": c["messages"], "shape": cfg["shape"],
        "size": cfg["size"], "workers": cfg["workers"], "seen": c["accounted"],
        "send_seconds": r.seconds["sending"], "seconds": r.seconds["end_to_end"],
        "records_per_second": round(r.throughput["end_to_end"]), "cpu_seconds": r.cpu_seconds,
    }  # fmt: skip
    if cfg["rate"]:
        latency = r.latency_ms["rated"]
        out["rate"] = cfg["rate"]
        out["latency_ms"] = {k: round(latency[k], 1) for k in ("p50", "p90", "p99", "p99.9")}
        out["latency_ms"]["max"] = round(latency["max"], 1)
    return out


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
    scenario = Scenario(records=args.records, accounts=args.accounts)
    load = KafkaLoad(
        rate=args.rate or 0.0, records=args.records, warmup=0.0, shape=args.shape,
        fmt=args.format, size=args.size, partitions=args.partitions, drain=args.timeout,
        provision_timeout=args.timeout,
    )  # fmt: skip
    with Cluster(args.workers, args.partitions, keep=args.keep) as cluster:
        report = run_measured(
            lambda: run(
                cluster.bootstrap, scenario, load, cluster=cluster, config={"workers": args.workers}
            )
        )
    result = summary(report)
    sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    return 0 if result["seen"] == result["records"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
