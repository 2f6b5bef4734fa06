"""A load test's results: ``report.json`` for machines, ``report.md`` for people, PNG plots.

:class:`Report` is what a driver (:mod:`loadtest.kafka_driver`,
:mod:`loadtest.http_driver`) returns: the run's configuration and scenario,
counts, latency percentiles with the HDR histograms they came from (so
:mod:`loadtest.compare` can recompute them), a per-second series and the
checks against the thresholds given. Latency is counted from each item's
*intended* send time (:mod:`loadtest.schedule`); summaries leave out the
warm-up seconds, the series keeps them (the plots shade them).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import numpy.typing as npt

from loadtest.histogram import PERCENTILES, Intervals, label

if TYPE_CHECKING:
    from loadtest.schedule import SendLog

VERSION = 1
# column order of every percentile table
LATENCY_KEYS = ("count", "mean", *(label(p) for p in PERCENTILES), "max")


class Series(msgspec.Struct, kw_only=True):
    """One value per second of the run (second 0 starts at the first planned send).

    ``done``: records rated (kafka) or requests answered (http) that second;
    latency columns are of the items *due* that second; ``lag``: the worker
    group's consumer lag in records (kafka) or requests in flight (http).
    """

    second: list[int] = msgspec.field(default_factory=list)
    target: list[float] = msgspec.field(default_factory=list)
    sent: list[float] = msgspec.field(default_factory=list)
    done: list[float] = msgspec.field(default_factory=list)
    rejected: list[float] = msgspec.field(default_factory=list)
    p50_ms: list[float] = msgspec.field(default_factory=list)
    p99_ms: list[float] = msgspec.field(default_factory=list)
    max_ms: list[float] = msgspec.field(default_factory=list)
    lag: list[float] = msgspec.field(default_factory=list)
    behind_ms: list[float] = msgspec.field(default_factory=list)


class Check(msgspec.Struct):
    """One pass/fail line of the verdict: ``value`` against ``limit`` (``op``: <= or >=)."""

    name: str
    value: float
    limit: float
    op: str = "<="

    @property
    def ok(self) -> bool:
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit


class Report(msgspec.Struct, kw_only=True):
    kind: str  # "kafka" | "http"
    version: int = VERSION
    started: str = ""  # ISO 8601, UTC
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    scenario: dict[str, Any] = msgspec.field(default_factory=dict)
    environment: dict[str, Any] = msgspec.field(default_factory=dict)
    seconds: dict[str, float] = msgspec.field(default_factory=dict)  # planned, sending, total
    warmup: float = 0.0
    counts: dict[str, int] = msgspec.field(default_factory=dict)
    rejects: dict[str, int] = msgspec.field(default_factory=dict)  # reason -> count
    expected_rejects: dict[str, int] = msgspec.field(default_factory=dict)  # made on purpose
    statuses: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)  # op -> status -> n
    throughput: dict[str, float] = msgspec.field(default_factory=dict)  # per second
    latency_ms: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    histograms: dict[str, str] = msgspec.field(default_factory=dict)  # HdrHistogram base64
    # the main latency's histogram of each second (by intended send second; "" for none)
    intervals: list[str] = msgspec.field(default_factory=list)
    behind_ms: dict[str, float] = msgspec.field(default_factory=dict)
    lag: dict[str, float] = msgspec.field(default_factory=dict)
    cpu_seconds: dict[str, float] = msgspec.field(default_factory=dict)
    series: Series = msgspec.field(default_factory=Series)
    checks: list[Check] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)
    plots: list[str] = msgspec.field(default_factory=list)  # file names next to report.md

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def main_latency(self) -> str:
        """The latency the summary leads with: rated records, or every HTTP request."""
        return "rated" if self.kind == "kafka" else "all"


def warm_seconds(warmup: float, duration: float) -> int:
    """Whole seconds left out of a run's summaries: the warm-up rounded up to the
    per-second series, or none when that would leave no second to measure."""
    warm = math.ceil(warmup)
    return warm if warm < duration else 0


def environment() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count() or 0,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# -- files ---------------------------------------------------------------------------------
def write(report: Report, directory: Path, *, plots: bool = True) -> list[Path]:
    """``report.json``, the PNG plots and ``report.md`` into ``directory``; returns them."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots:
        from loadtest.plots import draw  # matplotlib only when plots are wanted

        pngs = draw(report, directory)
        report.plots = [p.name for p in pngs]
        written += pngs
    json_path = directory / "report.json"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    md_path = directory / "report.md"
    md_path.write_text(markdown(report))
    return [json_path, md_path, *written]


def load(path: Path) -> Report:
    """A ``report.json`` (or the directory holding one)."""
    from loadtest.exceptions import LoadTestError

    file = path / "report.json" if path.is_dir() else path
    try:
        return msgspec.json.decode(file.read_bytes(), type=Report)
    except OSError as exc:
        msg = f"cannot read report {file}: {exc.strerror or exc}"
        raise LoadTestError(msg) from exc
    except msgspec.DecodeError as exc:
        msg = f"{file} is not a load test report.json: {exc}"
        raise LoadTestError(msg) from exc


# -- Markdown ------------------------------------------------------------------------------
def _n(value: float, digits: int = 0) -> str:
    """A number for a table: thousands separated, ``digits`` decimals."""
    return f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 100 else f"{value:,.2f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A Markdown table; ``align``: one of ``l``/``r`` per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def latency_table(latency: dict[str, dict[str, float]]) -> str:
    header = ["", "count", "mean", *(label(p) for p in PERCENTILES), "max"]
    rows = [
        [name, _n(s.get("count", 0)), *(_ms(s.get(k, 0.0)) for k in LATENCY_KEYS[1:])]
        for name, s in latency.items()
    ]
    return table(header, rows)


def _summary_rows(r: Report) -> list[list[str]]:
    c, t = r.counts, r.throughput
    main = r.latency_ms.get(r.main_latency, {})
    rows = [
        ["target rate", f"{_n(t.get('target', 0))} /s"],
        ["achieved send rate", f"{_n(t.get('sent', 0))} /s"],
    ]
    if r.kind == "kafka":
        rows += [
            ["rated", f"{_n(t.get('done', 0))} /s ({_n(c.get('rated', 0))} records)"],
            ["records sent", _n(c.get("sent", 0))],
            ["rejected", _n(c.get("rejected", 0))],
            [
                "duplicates sent / caught",
                f"{_n(c.get('duplicates_sent', 0))} / {_n(c.get('duplicates_caught', 0))}",
            ],
            ["missing (not rated nor rejected)", _n(c.get("missing", 0))],
            ["consumer lag, max", f"{_n(r.lag.get('max', 0))} records"],
        ]
    else:
        rows += [
            ["answered", f"{_n(t.get('done', 0))} /s ({_n(c.get('answered', 0))} requests)"],
            ["requests sent", _n(c.get("sent", 0))],
            ["errors (5xx, connection)", _n(c.get("errors", 0))],
            ["granted / denied", f"{_n(c.get('granted', 0))} / {_n(c.get('denied', 0))}"],
            ["balance violations", _n(c.get("violations", 0))],
        ]
    rows += [
        [
            "latency p50 / p99 / max",
            f"{_ms(main.get('p50', 0))} / {_ms(main.get('p99', 0))} / {_ms(main.get('max', 0))} ms",
        ],
        [
            "sender behind plan, p99 / max",
            f"{_ms(r.behind_ms.get('p99', 0))} / {_ms(r.behind_ms.get('max', 0))} ms",
        ],
    ]
    return rows


def _check_rows(r: Report) -> list[list[str]]:
    def num(v: float) -> str:
        return _n(v, 0 if float(v).is_integer() else 2)

    return [
        [c.name, num(c.value), f"{c.op} {num(c.limit)}", "pass" if c.ok else "**FAIL**"]
        for c in r.checks
    ]


def _short(value: Any) -> str:
    """A scenario value for the Markdown table: tables of shares as ``name share%``."""
    if isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
        named = []
        for v in value:
            name = v.get("name") or v.get("category") or v.get("mode") or "?"
            share = v.get("share")
            if share is None and "shares" in v:
                share = sum(v["shares"])
            named.append(f"{name} {100 * share:.0f}%" if share is not None else str(name))
        return ", ".join(named)
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "…"


def _rejects(r: Report) -> str:
    reasons = sorted(
        r.rejects.keys() | r.expected_rejects.keys(), key=lambda k: (-r.rejects.get(k, 0), k)
    )
    rows = [
        [reason, _n(r.rejects.get(reason, 0)), _n(r.expected_rejects.get(reason, 0))]
        for reason in reasons
    ]
    note = (
        "*expected*: what the scenario makes on purpose (resends, numbers no plan prices,"
        " malformed messages).\n\n"
        if r.expected_rejects
        else ""
    )
    return note + table(["reason", "records", "expected"], rows)


def markdown(r: Report) -> str:
    what = "Kafka stream" if r.kind == "kafka" else "HTTP authorize / commit / release"
    sections = [
        f"# Load test: {what} — {'PASS' if r.passed else 'FAIL'}",
        f"Started {r.started}; {_n(r.seconds.get('planned', 0), 1)} s planned at"
        f" {_n(r.throughput.get('target', 0))} /s; the first {_n(r.warmup, 1)} s are warm-up"
        " (left out of the summaries, shaded in the plots). Latency is counted from each"
        " item's *intended* send time (open loop: coordinated omission accounted for).",
        "## Summary",
        table(["", ""], _summary_rows(r)),
    ]
    if r.checks:
        sections += ["## Verdict", table(["check", "value", "limit", ""], _check_rows(r))]
    if r.notes:
        sections += ["## Notes", "".join(f"- {note}\n" for note in r.notes)]
    sections += ["## Latency (ms)", latency_table(r.latency_ms)]
    if r.plots:
        sections += ["## Plots", "\n".join(f"![{Path(p).stem}]({p})" for p in r.plots)]
    if r.rejects or r.expected_rejects:
        title = "Rejects by reason" if r.kind == "kafka" else "Authorizations denied"
        sections += [f"## {title}", _rejects(r)]
    if r.statuses:
        codes = sorted({code for by in r.statuses.values() for code in by})
        rows = [
            [op, *(_n(by.get(code, 0)) for code in codes), _n(sum(by.values()))]
            for op, by in r.statuses.items()
        ]
        sections += ["## HTTP statuses", table(["operation", *codes, "total"], rows)]
    if r.cpu_seconds:
        rows = [[name, _n(v, 2)] for name, v in r.cpu_seconds.items()]
        sections += ["## CPU seconds", table(["process", "seconds"], rows)]
    config = [[k, f"`{v}`"] for k, v in r.config.items() if v is not None]
    sections += ["## Configuration", table(["setting", "value"], config, "ll")]
    if r.scenario:
        rows = [[k, _short(v)] for k, v in r.scenario.items()]
        sections += ["## Scenario", table(["field", "value"], rows, "ll")]
    return "\n\n".join(part.rstrip("\n") for part in sections) + "\n"


# -- building the series -------------------------------------------------------------------
def series_of(
    log: SendLog,
    latency: Intervals,
    timeline: Timeline,
    duration: float,
    *,
    weights: Any = None,
    sent_on_wire: bool = False,
) -> Series:
    """The per-second series of a run: target and sent from the sender's log (weighted
    by records per item), or sent from ``timeline`` (``sent_on_wire``: requests that
    went out later than their slot); done, rejected and lag from ``timeline``."""
    seconds = max(math.ceil(duration), timeline.last_second() + 1, 1)
    seconds = max(seconds, math.floor(log.last_sent()) + 1)
    target, sent = log.per_second(seconds, weights)
    p50, p99, top = latency.columns(seconds)
    return Series(
        second=list(range(seconds)),
        target=target if duration else [0.0] * seconds,
        sent=timeline.column("sent", seconds) if sent_on_wire else sent,
        done=timeline.column("done", seconds),
        rejected=timeline.column("rejected", seconds),
        p50_ms=p50, p99_ms=p99, max_ms=top,
        lag=timeline.column("lag", seconds, fill="previous"),
        behind_ms=log.behind_per_second(seconds),
    )  # fmt: skip


class Timeline:
    """Per-second counters and samples a driver fills while it runs."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[int, float]] = {}

    def count(self, name: str, seconds: Iterable[int] | int, n: float = 1) -> None:
        """Add ``n`` to column ``name`` at each of ``seconds``."""
        column = self._counts.setdefault(name, {})
        for s in [seconds] if isinstance(seconds, int) else seconds:
            column[s] = column.get(s, 0.0) + n

    def count_many(self, name: str, seconds: npt.ArrayLike) -> None:
        """Add 1 per entry of an integer array of seconds (one call per batch)."""
        when = np.asarray(seconds, dtype=np.int64)
        if not len(when):
            return
        first = int(when.min())
        bins = np.bincount(when - first)
        column = self._counts.setdefault(name, {})
        for offset in np.flatnonzero(bins).tolist():
            s = first + offset
            column[s] = column.get(s, 0.0) + float(bins[offset])

    def set(self, name: str, second: int, value: float) -> None:
        """A sampled value (the last sample of a second wins)."""
        self._counts.setdefault(name, {})[second] = value

    def get(self, name: str, second: int, default: float = 0.0) -> float:
        return self._counts.get(name, {}).get(second, default)

    def last_second(self) -> int:
        return max((max(c) for c in self._counts.values() if c), default=-1)

    def column(self, name: str, seconds: int, *, fill: str = "zero") -> list[float]:
        """Values for seconds 0 … ``seconds - 1``; gaps are 0, or the previous value
        (``fill="previous"``, for sampled values such as lag)."""
        values = self._counts.get(name, {})
        out: list[float] = []
        previous = 0.0
        for s in range(seconds):
            if s in values:
                previous = values[s]
                out.append(values[s])
            else:
                out.append(previous if fill == "previous" else 0.0)
        return out


def brief(r: Report) -> str:
    """A few plain lines for the terminal: verdict, counts, latency, failed checks."""
    c, t = r.counts, r.throughput
    main = r.latency_ms.get(r.main_latency, {})
    cfg = r.config
    if r.kind == "kafka":
        head = (
            f"kafka {_n(t.get('target', 0))} records/s for {_n(r.seconds.get('planned', 0))} s"
            f" ({cfg.get('shape')} {cfg.get('format')})"
        )
        counts = (
            f"rated {_n(t.get('done', 0))}/s ({_n(c.get('rated', 0))})  rejected"
            f" {_n(c.get('rejected', 0))}  missing {_n(c.get('missing', 0))}  duplicates"
            f" caught {_n(c.get('duplicates_caught', 0))}/{_n(c.get('duplicates_sent', 0))}"
            f"  lag max {_n(r.lag.get('max', 0))} records"
        )
    else:
        head = (
            f"http {_n(t.get('target', 0))} requests/s for {_n(r.seconds.get('planned', 0))} s"
            f" ({cfg.get('sessions')} sessions on {cfg.get('accounts')} accounts)"
        )
        counts = (
            f"answered {_n(t.get('done', 0))}/s ({_n(c.get('answered', 0))})  errors"
            f" {_n(c.get('errors', 0))}  granted {_n(c.get('granted', 0))}  denied"
            f" {_n(c.get('denied', 0))}  balance violations {_n(c.get('violations', 0))}"
        )
    lines = [
        f"{'PASS' if r.passed else 'FAIL'}  {head}",
        f"  {counts}",
        "  latency ms  " + "  ".join(f"{k} {_ms(main.get(k, 0))}" for k in LATENCY_KEYS[2:]),
    ]
    lines += [
        f"  FAIL {c.name}: {c.value:,g} (limit {c.op} {c.limit:,g})" for c in r.checks if not c.ok
    ]
    lines += [f"  note: {note}" for note in r.notes]
    return "\n".join(lines) + "\n"
