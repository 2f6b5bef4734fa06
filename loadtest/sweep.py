"""``ratewire loadtest sweep``: step the rate up until latency or lag breaks; the highest
rate that held is the sustainable one.

Each step is a full run (:mod:`loadtest.kafka_driver` or
:mod:`loadtest.http_driver`) at one rate for ``step_duration`` seconds,
against the same workers; its report is written to ``DIR/step-NN-RATE/``.
A step **holds** when its p99 (after its warm-up) is within ``p99_ms``, its
consumer lag within ``max_lag`` (if given), nothing went missing or failed,
the balances held (http: no violation, leak or mismatch) and the sender kept
at least 95 % of the target rate (kafka). The sweep
stops at the first step that does not hold (or at ``max``) and writes
``DIR/sweep.json``, ``DIR/sweep.md`` and ``DIR/sweep.png``.

Kafka steps continue the scenario's stream (each starts where the last
ended) under their own run id, so no step's records look like another's
resends; accounts are provisioned once, before the first step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from loadtest import report as reports
from loadtest.live import Live
from loadtest.report import Report, table

HOLD_SHARE = 95.0  # % of the target rate the sender must reach for a kafka step to hold


class Step(msgspec.Struct, kw_only=True):
    rate: float
    held: bool
    why: list[str]  # what broke, empty when the step held
    achieved: float  # rated + rejected (kafka) or answered (http) per second after warm-up
    sent: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    lag_max: float
    missing: int
    errors: int
    report: str  # the step's report folder, relative to the sweep's


class Sweep(msgspec.Struct, kw_only=True):
    target: str  # kafka | http
    config: dict[str, object]
    steps: list[Step]
    sustainable: float  # the highest rate that held (0: none did)


@dataclass(frozen=True, slots=True)
class Limits:
    p99_ms: float
    max_lag: float | None = None


def rates(start: float, step: float, top: float) -> list[float]:
    """``start``, ``start + step``, … up to ``top`` included."""
    if start <= 0 or step <= 0 or top < start:
        from loadtest.exceptions import LoadTestError

        msg = f"sweep: need 0 < start ({start:g}) <= max ({top:g}) and step ({step:g}) > 0"
        raise LoadTestError(msg)
    out, rate = [], start
    while rate <= top + 1e-9:
        out.append(rate)
        rate += step
    return out


def judge(r: Report, limits: Limits) -> Step:
    """One step's numbers and whether it held."""
    main = r.latency_ms.get(r.main_latency, {})
    why = []
    p99 = main.get("p99", 0.0)
    if not main.get("count"):
        why.append("no latency measured")
    if p99 > limits.p99_ms:
        why.append(f"p99 {p99:,.1f} ms > {limits.p99_ms:g} ms")
    lag = r.lag.get("max", 0.0)
    if r.kind == "kafka" and limits.max_lag is not None and lag > limits.max_lag:
        why.append(f"lag {lag:,.0f} > {limits.max_lag:,.0f} records")
    missing = r.counts.get("missing", 0)
    if missing:
        why.append(f"{missing:,} records missing")
    errors = r.counts.get("errors", 0) + r.counts.get("unanswered", 0)
    if errors:
        why.append(f"{errors:,} errors")
    books = sum(r.counts.get(k, 0) for k in ("violations", "leaks", "mismatches"))
    if books:
        why.append(f"{books:,} balance violations, leaks or mismatches")
    target = r.throughput.get("target", 0.0)
    sent = r.throughput.get("sent", 0.0)
    if r.kind == "kafka" and target and sent < HOLD_SHARE / 100 * target:
        why.append(f"sent {sent:,.0f}/s < {HOLD_SHARE:g} % of target")
    return Step(
        rate=target,
        held=not why,
        why=why,
        achieved=r.throughput.get("outputs", r.throughput.get("done", 0.0)),
        sent=sent,
        p50_ms=main.get("p50", 0.0),
        p99_ms=p99,
        p999_ms=main.get("p99.9", 0.0),
        max_ms=main.get("max", 0.0),
        lag_max=lag,
        missing=missing,
        errors=errors,
        report="",
    )


async def sweep(
    target: str,
    levels: list[float],
    step: Callable[[int, float], Awaitable[Report]],
    limits: Limits,
    directory: Path,
    *,
    live: Live,
    config: dict[str, object],
) -> Sweep:
    """Run ``step(k, rate)`` for each level until one does not hold; write the reports."""
    steps: list[Step] = []
    for k, rate in enumerate(levels, start=1):
        live.say(f"step {k}/{len(levels)}: {rate:,.0f}/s")
        r = await step(k, rate)
        folder = f"step-{k:02d}-{rate:.0f}"
        reports.write(r, directory / folder, plots=False)
        judged = judge(r, limits)
        judged.report = folder
        steps.append(judged)
        verdict = "held" if judged.held else "broke: " + "; ".join(judged.why)
        live.say(
            f"step {k}: {rate:,.0f}/s → {judged.achieved:,.0f}/s, p99"
            f" {judged.p99_ms:,.1f} ms: {verdict}"
        )
        if not judged.held:
            break
    held = [s.rate for s in steps if s.held]
    result = Sweep(target=target, config=config, steps=steps, sustainable=max(held, default=0.0))
    write(result, directory)
    return result


def write(result: Sweep, directory: Path) -> list[Path]:
    from loadtest.plots import sweep_plot

    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "sweep.json", directory / "sweep.md", directory / "sweep.png"]
    paths[0].write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
    sweep_plot(result, paths[2])
    paths[1].write_text(markdown(result))
    return paths


def markdown(result: Sweep) -> str:
    unit = "records/s" if result.target == "kafka" else "requests/s"
    best = (
        f"**{result.sustainable:,.0f} {unit}**"
        if result.sustainable
        else "**none**: the first step already broke a limit"
    )
    rows = [
        [
            f"{s.rate:,.0f}",
            f"{s.sent:,.0f}",
            f"{s.achieved:,.0f}",
            f"{s.p50_ms:,.1f}",
            f"{s.p99_ms:,.1f}",
            f"{s.p999_ms:,.1f}",
            f"{s.max_ms:,.1f}",
            f"{s.lag_max:,.0f}" if result.target == "kafka" else "—",
            "held" if s.held else "**broke**: " + "; ".join(s.why),
            f"[report]({s.report}/report.md)",
        ]
        for s in result.steps
    ]
    header = [
        "target /s",
        "sent /s",
        "rated + rejected /s" if result.target == "kafka" else "answered /s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "lag max",
        "verdict",
        "",
    ]
    limits = [f"p99 ≤ {result.config.get('p99_ms')} ms"]
    if result.config.get("max_lag") is not None:
        limits.append(f"consumer lag ≤ {result.config['max_lag']:,} records")
    seconds = result.config.get("step_duration")
    rule = (
        "no record went missing and the sender kept 95 % of the target rate"
        if result.target == "kafka"
        else "every request was answered without a 5xx and the balances held"
    )
    return (
        f"# Sweep ({result.target})\n\nHighest sustainable rate: {best}.\n\n"
        f"Each step ran {seconds} s; a step holds when {', '.join(limits)} and {rule}."
        " Latency counts from each item's intended send time.\n\n"
        f"{table(header, rows, 'rrrrrrrrll')}\n![sweep](sweep.png)\n"
    )
