"""``ratewire loadtest``: drive the workers at a target rate and report what they did.

::

    ratewire loadtest kafka   --embedded | --broker kafka://H:P  --rate 50000 --duration 60s …
    ratewire loadtest http    --embedded | --url http://H:P      --rps 2000 --duration 60s …
    ratewire loadtest sweep   --target kafka|http --start 10000 --step 10000 --max 300000 …
    ratewire loadtest compare a/report.json b/report.json [--markdown]
    ratewire loadtest generate --scenario S --records N --out FILE --format jsonl

Runs write ``report.json``, ``report.md`` and PNG plots to ``--report-dir``
and print a summary. Exit codes: 0 every check passed, 1 a check failed (a
threshold, missing records, a balance violation; compare: a regression with
``--fail-on-regression``), 2 bad input or a run that could not be done.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from engine.exceptions import UsageInputError

T = TypeVar("T")
SAMPLES = Path(__file__).parents[1] / "loadtest" / "samples"
EXIT_OK, EXIT_FAILED = 0, 1
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """``"60s"``, ``"2m"``, ``"1m30s"``, ``"500ms"``, ``"1h"`` or plain seconds → seconds."""
    raw = text.strip().lower()
    try:
        seconds = float(raw)
    except ValueError:
        parts = _DURATION.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            msg = f"duration {text!r}: use seconds or units like 60s, 2m, 1m30s, 500ms, 1h"
            raise UsageInputError(msg) from None
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        seconds = sum(float(n) * scale[u] for n, u in parts)
    if not seconds >= 0:
        msg = f"duration {text!r} is negative"
        raise UsageInputError(msg)
    return seconds


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except UsageInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> float:
    try:
        value = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        value = -1.0
    if not value > 0:
        msg = f"{text!r} is not a number above 0"
        raise argparse.ArgumentTypeError(msg)
    return value


# -- arguments -------------------------------------------------------------------------------
def add_parser(commands: Any) -> None:
    p = commands.add_parser("loadtest", help="drive the workers at a target rate and report")
    sub = p.add_subparsers(dest="loadtest", required=True)

    kafka = sub.add_parser("kafka", help="usage records onto topic cdrs, open loop, end to end")
    kafka.add_argument("--rate", type=_positive, default=10_000.0, help="records/s (10000)")
    kafka.add_argument("--duration", type=_duration, default=60.0, help="60s, 2m, … (60s)")
    _cluster_args(kafka)
    _kafka_args(kafka)
    _output_args(kafka)
    kafka.add_argument("--p99-ms", type=_positive, help="fail when p99 latency is above")
    kafka.add_argument(
        "--max-lag", type=_positive, help="fail when consumer lag (records) is above"
    )

    http = sub.add_parser("http", help="authorize / commit / release over HTTP, open loop")
    http.add_argument("--rps", type=_positive, default=2000.0, help="requests/s (2000)")
    http.add_argument("--duration", type=_duration, default=60.0, help="60s, 2m, … (60s)")
    _cluster_args(http)
    _http_args(http)
    _output_args(http)
    http.add_argument("--p99-ms", type=_positive, help="fail when p99 latency is above")

    sweep = sub.add_parser("sweep", help="step the rate up until latency or lag breaks")
    sweep.add_argument("--target", choices=("kafka", "http"), default="kafka")
    sweep.add_argument("--start", type=_positive, default=10_000.0, help="first rate (10000)")
    sweep.add_argument("--step", type=_positive, default=10_000.0, help="rate added per step")
    sweep.add_argument("--max", type=_positive, default=300_000.0, help="last rate at most")
    sweep.add_argument("--step-duration", type=_duration, default=20.0, help="per step (20s)")
    sweep.add_argument("--p99-ms", type=_positive, default=250.0, help="p99 limit (250)")
    sweep.add_argument("--max-lag", type=_positive, help="consumer lag limit, records (kafka)")
    _cluster_args(sweep)
    _kafka_args(sweep)
    _http_args(sweep, with_broker=False)
    _output_args(sweep)

    compare = sub.add_parser("compare", help="two reports side by side, with ratios b/a")
    compare.add_argument("a", type=Path, help="report.json (or its folder)")
    compare.add_argument("b", type=Path, help="report.json (or its folder)")
    compare.add_argument("--markdown", action="store_true", help="a Markdown table")
    compare.add_argument("--tolerance", type=float, default=10.0, help="%% change marked (10)")
    compare.add_argument("--fail-on-regression", action="store_true", help="exit 1 on any")

    gen = sub.add_parser("generate", help="a scenario's traffic to a file for ratewire rate")
    gen.add_argument("--scenario", default="network", help="TOML file or sample name")
    gen.add_argument("--records", type=int, required=True, help="stream positions to write")
    gen.add_argument("--first", type=int, default=0, help="first stream position (0)")
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--format", choices=("jsonl", "json", "msgpack", "columnar"), default="jsonl")
    gen.add_argument("--size", type=int, default=1000, help="records per columnar frame")


def _cluster_args(p: argparse.ArgumentParser) -> None:
    where = p.add_argument_group("where")
    where.add_argument(
        "--embedded", action="store_true", help="start a broker and --workers workers here"
    )
    where.add_argument("--workers", type=int, default=1, help="with --embedded (1)")
    where.add_argument("--partitions", type=int, default=4, help="of each keyed topic (4)")
    where.add_argument("--keep", type=Path, help="with --embedded: keep logs and state here")
    where.add_argument("--group", default="ratewire", help="the workers' consumer group")


def _kafka_args(p: argparse.ArgumentParser) -> None:
    k = p.add_argument_group("kafka")
    k.add_argument(
        "--broker",
        default=os.environ.get("RATEWIRE_BROKER", "kafka://127.0.0.1:9092"),
        help="kafka://host:port ($RATEWIRE_BROKER)",
    )
    k.add_argument("--scenario", default="network", help="TOML file or sample name (network)")
    k.add_argument("--shape", choices=("single", "batch", "columnar"), default="batch")
    k.add_argument("--format", choices=("json", "msgpack"), default="msgpack")
    k.add_argument("--size", type=int, default=1000, help="records per batch message (1000)")
    k.add_argument("--drain", type=_duration, default=30.0, help="wait for outputs (30s)")
    k.add_argument("--run-id", default="", help="cdr_id prefix (default: random)")
    k.add_argument("--no-provision", action="store_true", help="the accounts exist already")


def _http_args(p: argparse.ArgumentParser, *, with_broker: bool = True) -> None:
    h = p.add_argument_group("http")
    h.add_argument("--url", default="http://127.0.0.1:6066", help="a worker's API")
    if with_broker:
        h.add_argument("--broker", help="kafka://host:port: provision the accounts through it")
        h.add_argument("--scenario", default="network", help="whose account plans to create")
    h.add_argument("--sessions", type=int, default=200, help="concurrent call sessions (200)")
    h.add_argument("--accounts", type=int, default=50, help="accounts they share (50)")
    h.add_argument("--usage", default="2m", help="asked per authorize (2m)")
    h.add_argument("--category", default="call")
    h.add_argument("--destination", default="4930123456")
    h.add_argument("--release-share", type=float, default=0.2, help="grants released (0.2)")
    h.add_argument("--connections", type=int, default=256, help="HTTP connections at most")
    h.add_argument("--api-token", default=os.environ.get("RATEWIRE_API_TOKEN", ""))


def _output_args(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("output")
    o.add_argument("--warmup", type=_duration, default=5.0, help="left out of summaries (5s)")
    o.add_argument("--report-dir", type=Path, help="default: loadtest-reports/KIND-TIME")
    o.add_argument("--quiet", action="store_true", help="no live view")
    o.add_argument("--no-plots", action="store_true", help="report.json and report.md only")
    o.add_argument("--json", action="store_true", help="print the summary as JSON")


# -- running ---------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    command: Callable[[argparse.Namespace], int] = {
        "kafka": _kafka,
        "http": _http,
        "sweep": _sweep,
        "compare": _compare,
        "generate": _generate,
    }[args.loadtest]
    return command(args)


def scenario_of(name: str) -> Any:
    """A scenario file, or the name of a sample in ``loadtest/samples``."""
    from loadtest.scenario import load_scenario

    path = Path(name)
    if not path.exists() and (SAMPLES / f"{name}.toml").exists():
        path = SAMPLES / f"{name}.toml"
    if not path.exists():
        samples = ", ".join(sorted(p.stem for p in SAMPLES.glob("*.toml"))) or "none"
        msg = f"scenario {name!r}: no such file, and no such sample (samples: {samples})"
        raise UsageInputError(msg)
    return load_scenario(path)


def _check(args: argparse.Namespace) -> None:
    """What argparse cannot check alone; one clear line each."""
    duration = args.duration if "duration" in args else args.step_duration
    flag = "--duration" if "duration" in args else "--step-duration"
    problems = [
        (not duration > 0, f"{flag} must be above 0"),
        (args.warmup >= duration,
         f"--warmup {args.warmup:g}s must be shorter than the run ({duration:g}s)"),
        (args.workers < 1 or args.partitions < 1, "--workers and --partitions must be at least 1"),
        ("size" in args and args.size < 1, "--size must be at least 1"),
        ("sessions" in args and (args.sessions < 1 or args.accounts < 1 or args.connections < 1),
         "--sessions, --accounts and --connections must be at least 1"),
        ("release_share" in args and not 0 <= args.release_share <= 1,
         "--release-share is a share: 0 to 1"),
    ]  # fmt: skip
    for failed, msg in problems:
        if failed:
            raise UsageInputError(msg)


def _report_dir(args: argparse.Namespace, kind: str) -> Path:
    if args.report_dir:
        return Path(args.report_dir)
    return Path("loadtest-reports") / f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def _run(make: Callable[[], Awaitable[T]], *, broker: str = "", url: str = "") -> T:
    """Run a coroutine on uvloop (collector off); an unreachable broker or worker API
    becomes one clear error naming it. aiokafka's own log lines stay quiet meanwhile
    (the live view owns stderr; failures surface as these errors)."""
    import logging

    from aiokafka.errors import KafkaConnectionError, KafkaError

    from loadtest.exceptions import LoadTestError
    from loadtest.schedule import run_measured

    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        return run_measured(make)
    except KafkaConnectionError as exc:
        msg = f"cannot reach the Kafka broker at {broker}: is it running? (or use --embedded)"
        raise LoadTestError(msg) from exc
    except KafkaError as exc:
        msg = f"the Kafka broker at {broker} failed the run: {exc}"
        raise LoadTestError(msg) from exc
    except OSError as exc:  # refused, reset, no such host (loadtest.http_client lets it through)
        msg = f"cannot reach the worker API at {url}: is a worker running? (or use --embedded)"
        raise LoadTestError(msg) from exc
    finally:
        kafka_log.setLevel(level)


def _live(args: argparse.Namespace, kind: str) -> Any:
    from loadtest.live import Live

    labels = (
        {} if kind == "kafka" else {"done": "answered", "rejected": "non-200", "lag": "in flight"}
    )
    return Live(quiet=args.quiet, labels=labels)


def _kafka_load(args: argparse.Namespace, rate: float, duration: float, **extra: Any) -> Any:
    from loadtest.kafka_driver import KafkaLoad

    return KafkaLoad(
        rate=rate,
        records=round(rate * duration),
        warmup=args.warmup,
        shape=args.shape,
        fmt=args.format,
        size=args.size,
        partitions=args.partitions,
        drain=args.drain,
        group=args.group,
        run_id=args.run_id,
        provision=not args.no_provision,
        p99_ms=args.p99_ms,
        max_lag=args.max_lag,
        **extra,
    )


def _http_load(args: argparse.Namespace, rps: float, duration: float) -> Any:
    from loadtest.http_driver import HttpLoad

    return HttpLoad(
        rps=rps,
        duration=duration,
        sessions=args.sessions,
        accounts=args.accounts,
        warmup=args.warmup,
        usage=args.usage,
        category=args.category,
        destination=args.destination,
        release_share=args.release_share,
        connections=args.connections,
        token=args.api_token,
        p99_ms=args.p99_ms,
    )


@contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """The embedded cluster when asked for (else None)."""
    if not args.embedded:
        yield None
        return
    from loadtest.cluster import Cluster

    if not args.quiet:
        sys.stderr.write(f"starting a broker and {args.workers} worker(s) …\n")
    with Cluster(args.workers, args.partitions, keep=args.keep) as cluster:
        yield cluster


def _kafka(args: argparse.Namespace) -> int:
    from engine.broker import bootstrap_of
    from loadtest import kafka_driver

    _check(args)
    scenario = scenario_of(args.scenario)
    load = _kafka_load(args, args.rate, args.duration)
    with _cluster(args) as cluster:
        bootstrap = cluster.bootstrap if cluster else bootstrap_of(args.broker)
        config = {
            "broker": bootstrap,
            "embedded": args.embedded,
            "scenario_file": args.scenario,
            "workers": args.workers if cluster else None,
        }
        report = _run(
            lambda: kafka_driver.run(
                bootstrap, scenario, load, live=_live(args, "kafka"), cluster=cluster, config=config
            ),
            broker=bootstrap,
        )
    return _finish(args, report, _report_dir(args, "kafka"))


def _http(args: argparse.Namespace) -> int:
    from engine.broker import bootstrap_of
    from loadtest import http_driver, kafka_driver

    _check(args)
    load = _http_load(args, args.rps, args.duration)
    with _cluster(args) as cluster:
        url = cluster.workers[0].url if cluster else args.url.rstrip("/")
        broker = cluster.bootstrap if cluster else args.broker and bootstrap_of(args.broker)
        if broker:
            scenario = replace(scenario_of(args.scenario), accounts=args.accounts)
            _run(
                lambda: kafka_driver.provision(
                    broker, scenario, partitions=args.partitions, group=args.group
                ),
                broker=broker,
            )
        config = {
            "url": url,
            "embedded": args.embedded,
            "workers": args.workers if cluster else None,
        }
        report = _run(
            lambda: http_driver.run(
                url, load, live=_live(args, "http"), cluster=cluster, config=config
            ),
            url=url,
        )
    return _finish(args, report, _report_dir(args, "http"))


def _sweep(args: argparse.Namespace) -> int:
    from engine.broker import bootstrap_of
    from loadtest import http_driver, kafka_driver
    from loadtest.sweep import Limits, rates, sweep

    _check(args)
    levels = rates(args.start, args.step, args.max)
    directory = _report_dir(args, f"sweep-{args.target}")
    live = _live(args, args.target)
    limits = Limits(args.p99_ms, args.max_lag)
    config = {
        "target": args.target,
        "start": args.start,
        "step": args.step,
        "max": args.max,
        "step_duration": args.step_duration,
        "p99_ms": args.p99_ms,
        "max_lag": args.max_lag,
        "embedded": args.embedded,
    }
    with _cluster(args) as cluster:
        bootstrap = cluster.bootstrap if cluster else bootstrap_of(args.broker)
        scenario = scenario_of(args.scenario)
        if args.target == "http":
            url = cluster.workers[0].url if cluster else args.url.rstrip("/")
            if cluster or not args.no_provision:
                accounts = replace(scenario, accounts=args.accounts)
                _run(
                    lambda: kafka_driver.provision(
                        bootstrap, accounts, partitions=args.partitions, group=args.group
                    ),
                    broker=bootstrap,
                )

            async def step(k: int, rate: float) -> Any:
                load = _http_load(args, rate, args.step_duration)
                return await http_driver.run(url, load, live=live, cluster=cluster)
        else:
            run_id = args.run_id or os.urandom(3).hex()
            done = [0]

            async def step(k: int, rate: float) -> Any:
                load = _kafka_load(args, rate, args.step_duration, first=done[0])
                load = replace(load, run_id=f"{run_id}s{k}", provision=k == 1 and load.provision)
                done[0] += load.records
                return await kafka_driver.run(bootstrap, scenario, load, live=live, cluster=cluster)

        result = _run(
            lambda: sweep(args.target, levels, step, limits, directory, live=live, config=config),
            broker=bootstrap,
            url=args.url,
        )
    unit = "records/s" if args.target == "kafka" else "requests/s"
    if args.json:
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
    else:
        for s in result.steps:
            verdict = "held" if s.held else "broke: " + "; ".join(s.why)
            sys.stdout.write(
                f"{s.rate:>12,.0f}/s  done {s.achieved:>12,.0f}/s  p50"
                f" {s.p50_ms:>9,.1f}  p99 {s.p99_ms:>9,.1f} ms  {verdict}\n"
            )
        sys.stdout.write(
            f"highest sustainable rate: {result.sustainable:,.0f} {unit}\n"
            f"report: {directory / 'sweep.md'}\n"
        )
    return EXIT_OK if result.sustainable else EXIT_FAILED


def _compare(args: argparse.Namespace) -> int:
    from loadtest.compare import compare_files

    text, regressed = compare_files(
        args.a, args.b, tolerance=args.tolerance / 100, markdown=args.markdown
    )
    sys.stdout.write(text)
    return EXIT_FAILED if regressed and args.fail_on_regression else EXIT_OK


def _generate(args: argparse.Namespace) -> int:
    from loadtest.generator import generate_traffic
    from loadtest.sinks import file_reasons, write_file

    if args.records < 0 or args.first < 0:
        msg = "--records and --first must be at least 0"
        raise UsageInputError(msg)
    traffic = generate_traffic(scenario_of(args.scenario), args.records, first=args.first)
    written = write_file(traffic, args.out, fmt=args.format, size=args.size)
    reasons = file_reasons(traffic, args.format)
    reasons.update({"DUPLICATE": traffic.duplicates, "UNAUTHORIZED_DESTINATION": traffic.unpriced})
    expected = ", ".join(f"{k} {n:,}" for k, n in sorted(reasons.items()) if n) or "none"
    sys.stdout.write(
        f"wrote {written:,} records to {args.out} ({args.format}): "
        f"{len(traffic.malformed):,} malformed, {traffic.duplicates:,} resends;"
        f" rejects to expect: {expected}\n"
    )
    return EXIT_OK


def _finish(args: argparse.Namespace, report: Any, directory: Path) -> int:
    from loadtest import report as reports

    reports.write(report, directory, plots=not args.no_plots)
    if args.json:
        brief = {
            "passed": report.passed,
            "report_dir": str(directory),
            "counts": report.counts,
            "throughput": report.throughput,
            "latency_ms": report.latency_ms,
            "lag": report.lag,
            "checks": report.checks,
        }
        sys.stdout.write(msgspec.json.encode(brief).decode() + "\n")
    else:
        sys.stdout.write(reports.brief(report) + f"report: {directory / 'report.md'}\n")
    return EXIT_OK if report.passed else EXIT_FAILED
