"""The report's PNG plots (matplotlib, Agg backend: no display needed).

* ``throughput.png``: target vs sent vs rated (or answered) per second, rejects;
* ``latency.png``: p50 / p99 / max per second, by intended send second;
* ``percentiles.png``: the latency percentile curve on HdrHistogram's
  ``1 / (1 - p)`` log axis (50 %, 90 %, 99 %, 99.9 % … evenly spaced);
* ``lag.png``: consumer lag (kafka) or requests in flight (http), and how far
  the sender was behind its plan.

Warm-up seconds are shaded; a threshold given on the command line is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from loadtest.histogram import Latency
from loadtest.report import Report

SIZE = (10.0, 4.6)
DPI = 110
COLORS = {
    "target": "#7f7f7f",
    "sent": "#1f77b4",
    "done": "#2ca02c",
    "rejected": "#d62728",
    "p50": "#1f77b4",
    "p99": "#ff7f0e",
    "max": "#d62728",
    "lag": "#9467bd",
    "behind": "#8c564b",
}
OP_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")


def draw(report: Report, directory: Path) -> list[Path]:
    """Write the four plots into ``directory``; returns their paths."""
    out = []
    for name, make in (
        ("throughput", throughput),
        ("latency", latency),
        ("percentiles", percentiles),
        ("lag", lag),
    ):
        fig = make(report)
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        out.append(path)
    return out


def _thousands(value: float, _: Any = None) -> str:
    if abs(value) >= 1e6:
        return f"{value / 1e6:g} M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g} k"
    return f"{value:g}"


def _subtitle(r: Report) -> str:
    c = r.config
    target = _thousands(r.throughput.get("target", 0))
    workers = f"{c['workers']} worker(s)" if c.get("workers") else "external workers"
    if r.kind == "kafka":
        return (
            f"{target} records/s target, {c.get('shape', '')} {c.get('format', '')}, {workers},"
            f" {c.get('partitions', '?')} partitions, started {r.started}"
        )
    return (
        f"{target} requests/s target, {c.get('sessions', '?')} sessions on"
        f" {c.get('accounts', '?')} accounts, {workers}, started {r.started}"
    )


def _figure(r: Report, title: str, rows: int = 1) -> tuple[Figure, list[Axes]]:
    height = SIZE[1] if rows == 1 else SIZE[1] * 0.75 * rows
    fig, axes = plt.subplots(
        rows, 1, figsize=(SIZE[0], height), sharex=True, squeeze=False, layout="constrained"
    )
    fig.suptitle(title, fontsize=13, x=0.01, ha="left")
    top = axes[0][0]
    top.set_title(_subtitle(r), loc="left", fontsize=9, color="#555555")
    return fig, [a for (a,) in axes]


def _x(r: Report) -> Any:
    """The middle of each second: a per-second value covers [s, s + 1)."""
    return np.array(r.series.second, dtype=np.float64) + 0.5


def _finish(
    axes: list[Axes], r: Report, xlabel: str = "seconds since start", legend: bool = True
) -> None:
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if r.series.second:
            ax.set_xlim(0, len(r.series.second))
        if r.warmup > 0 and r.series.second:
            ax.axvspan(0, r.warmup, color="#000000", alpha=0.07, lw=0)
    top = axes[0]
    if legend:
        handles, labels = [], []
        for ax in axes:
            h, lab = ax.get_legend_handles_labels()
            handles += h
            labels += lab
        if r.warmup > 0 and r.series.second:
            handles.append(Patch(color="#000000", alpha=0.07, lw=0))
            labels.append("warm-up (not in the summaries)")
        if handles:
            top.figure.legend(
                handles, labels, loc="outside lower center", ncol=6, frameon=False, fontsize=9
            )
    axes[-1].set_xlabel(xlabel)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#888888")


def throughput(r: Report) -> Figure:
    s = r.series
    unit = "records" if r.kind == "kafka" else "requests"
    fig, (ax,) = _figure(r, f"Throughput ({unit} per second)")
    x = _x(r)
    done = "rated" if r.kind == "kafka" else "answered"
    ax.plot(x, s.target, color=COLORS["target"], ls="--", lw=1.5, label="target")
    ax.plot(x, s.sent, color=COLORS["sent"], lw=1.5, label="sent")
    ax.plot(x, s.done, color=COLORS["done"], lw=2, label=done)
    if any(s.rejected):
        ax.plot(x, s.rejected, color=COLORS["rejected"], lw=1, label="rejected")
    if not len(x):
        _empty(ax, "no data")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_ylabel(f"{unit} / s")
    _finish([ax], r)
    return fig


def latency(r: Report) -> Figure:
    s = r.series
    fig, (ax,) = _figure(r, "Latency per second, from the intended send time (ms)")
    x = _x(r)

    # seconds without a measured item (nothing due, or nothing came back) are gaps
    def masked(values: list[float]) -> Any:
        return np.ma.masked_where(np.array(values) <= 0, values)

    ax.plot(x, masked(s.max_ms), color=COLORS["max"], lw=0.8, alpha=0.6, label="max")
    ax.plot(x, masked(s.p99_ms), color=COLORS["p99"], lw=2, label="p99")
    ax.plot(x, masked(s.p50_ms), color=COLORS["p50"], lw=2, label="p50")
    limit = r.config.get("p99_ms")
    if limit:
        ax.axhline(
            float(limit),
            color=COLORS["p99"],
            ls=":",
            lw=1.2,
            label=f"p99 limit {float(limit):g} ms",
        )
    positive = [v for v in s.max_ms + s.p50_ms if v > 0]
    if positive and max(positive) / min(positive) > 50:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    elif positive:
        ax.set_ylim(bottom=0)
    else:
        _empty(ax, "no latency measured")
    ax.set_ylabel("ms")
    _finish([ax], r, "intended send second")
    return fig


def percentiles(r: Report) -> Figure:
    fig, (ax,) = _figure(r, "Latency by percentile (HdrHistogram, after warm-up)")
    drawn = 0
    widest = 1
    for i, (name, encoded) in enumerate(r.histograms.items()):
        h = Latency.decode(encoded)
        if not h.count:
            continue
        ps, values = h.curve()
        x = 1 / (1 - ps / 100)
        ax.plot(
            x,
            values / 1000,
            lw=2,
            color=OP_COLORS[i % len(OP_COLORS)],
            label=f"{name} (max {h.max / 1000:,.1f} ms)",
        )
        widest = max(widest, round(float(np.log10(x[-1]))))
        drawn += 1
    ax.set_xscale("log")
    ticks = [10.0**k for k in range(widest + 1)]
    names = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
    ax.set_xticks(ticks, names[: len(ticks)])
    ax.minorticks_off()
    ax.set_xlim(1, ticks[-1])
    limit = r.config.get("p99_ms")
    if limit:
        ax.axhline(
            float(limit),
            color=COLORS["p99"],
            ls=":",
            lw=1.2,
            label=f"p99 limit {float(limit):g} ms",
        )
    if not drawn:
        _empty(ax, "no latency measured")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("ms")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", frameon=False, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlabel("percentile")
    return fig


def lag(r: Report) -> Figure:
    s = r.series
    if r.kind == "kafka":
        what, unit, line = "Consumer lag", "records past committed offsets", "lag"
    else:
        what, unit, line = "Requests in flight", "requests in flight", "in flight"
    fig, (top, bottom) = _figure(r, f"{what}, and the sender's delay behind its plan", rows=2)
    x = _x(r)
    top.plot(x, s.lag, color=COLORS["lag"], lw=2, drawstyle="steps-mid", label=line)
    top.fill_between(x, s.lag, step="mid", color=COLORS["lag"], alpha=0.15)
    top.set_ylabel(unit)
    top.yaxis.set_major_formatter(FuncFormatter(_thousands))
    top.set_ylim(bottom=0, top=max(max(s.lag, default=0) * 1.15, 1.0))
    limit = r.config.get("max_lag")
    if limit and r.kind == "kafka":
        top.axhline(
            float(limit),
            color=COLORS["lag"],
            ls=":",
            lw=1.2,
            label=f"limit {_thousands(float(limit))}",
        )
    bottom.plot(x, s.behind_ms, color=COLORS["behind"], lw=1.5, drawstyle="steps-mid")
    bottom.set_ylabel("ms")
    bottom.set_title(
        "how late the load generator sent, against its plan (max per second)",
        loc="left",
        fontsize=9,
        color="#555555",
    )
    bottom.set_ylim(bottom=0, top=max(max(s.behind_ms, default=0) * 1.15, 1.0))
    if not len(x):
        _empty(top, "no data")
    _finish([top, bottom], r)
    return fig


def sweep_plot(result: Any, path: Path) -> Path:
    """Achieved rate and p50 / p99 against the target rate of each step of a sweep."""
    steps = result.steps
    unit = "records/s" if result.target == "kafka" else "requests/s"
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(SIZE[0], SIZE[1] * 1.5), sharex=True, layout="constrained"
    )
    fig.suptitle(
        f"Sweep: the highest sustainable rate is {_thousands(result.sustainable)} {unit}"
        if result.sustainable
        else "Sweep: no step held",
        fontsize=13,
        x=0.01,
        ha="left",
    )
    x = [s.rate for s in steps]
    top.plot(x, x, color=COLORS["target"], ls="--", lw=1.5, label="target")
    top.plot(x, [s.sent for s in steps], color=COLORS["sent"], marker="o", lw=1.5, label="sent")
    top.plot(
        x,
        [s.achieved for s in steps],
        color=COLORS["done"],
        marker="o",
        lw=2,
        label="rated + rejected" if result.target == "kafka" else "answered",
    )
    top.set_ylabel(unit)
    top.set_ylim(bottom=0)
    top.yaxis.set_major_formatter(FuncFormatter(_thousands))
    top.legend(loc="upper left", frameon=False, fontsize=9)
    bottom.plot(x, [s.p50_ms for s in steps], color=COLORS["p50"], marker="o", lw=2, label="p50")
    bottom.plot(x, [s.p99_ms for s in steps], color=COLORS["p99"], marker="o", lw=2, label="p99")
    limit = result.config.get("p99_ms")
    if limit:
        bottom.axhline(
            float(limit),
            color=COLORS["p99"],
            ls=":",
            lw=1.2,
            label=f"p99 limit {float(limit):g} ms",
        )
    bottom.set_ylabel("ms")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper left", frameon=False, fontsize=9)
    for s in steps:
        if not s.held:
            for ax in (top, bottom):
                ax.axvspan(
                    s.rate - 0.25 * _gap(x),
                    s.rate + 0.25 * _gap(x),
                    color=COLORS["max"],
                    alpha=0.1,
                    lw=0,
                )
            bottom.annotate(
                "broke",
                (s.rate, s.p99_ms),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
                color=COLORS["max"],
            )
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    bottom.xaxis.set_major_formatter(FuncFormatter(_thousands))
    bottom.set_xlabel(f"target rate, {unit}")
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _gap(x: list[float]) -> float:
    return float(np.min(np.diff(x))) if len(x) > 1 else max(x[0] * 0.1, 1.0) if x else 1.0
