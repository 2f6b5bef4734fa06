"""``ratewire loadtest compare a.json b.json``: two reports side by side, with ratios b / a.

Percentiles are recomputed from each report's HDR histogram (not copied from
its summary), so both sides are read the same way. A metric is marked a
regression when it moved the wrong way by more than ``tolerance`` (10 % by
default): latency, rejects, lag, errors up; throughput down. A count that
must stay zero (missing records, balance violations) regresses on any rise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loadtest.histogram import PERCENTILES, Latency, label
from loadtest.report import Report, load, table

TOLERANCE = 0.10
HIGHER, LOWER, INFO, ZERO = "higher", "lower", "info", "zero"  # which way is better


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    a: float | None
    b: float | None
    better: str  # HIGHER, LOWER, INFO, or ZERO (lower, and any rise from 0 counts)
    digits: int = 0

    @property
    def ratio(self) -> float | None:
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a

    def verdict(self, tolerance: float = TOLERANCE) -> str:
        """``"regression"``, ``"improvement"`` or ``""``."""
        if self.a is None or self.b is None or self.better == INFO:
            return ""
        worse_up = self.better in (LOWER, ZERO)
        if self.a == 0:
            if self.b == 0:
                return ""
            grew = self.better == ZERO or self.b > 0
            return ("regression" if worse_up else "improvement") if grew else ""
        ratio = self.b / self.a
        if ratio > 1 + tolerance:
            return "regression" if worse_up else "improvement"
        if ratio < 1 - tolerance:
            return "improvement" if worse_up else "regression"
        return ""


def _latency(r: Report) -> Latency | None:
    encoded = r.histograms.get(r.main_latency)
    return Latency.decode(encoded) if encoded else None


def _percentile(p: float) -> Callable[[Report], float | None]:
    def get(r: Report) -> float | None:
        h = _latency(r)
        return None if h is None else h.value_at(p) / 1000

    return get


def _max(r: Report) -> float | None:
    h = _latency(r)
    return None if h is None else h.max / 1000


def _share(r: Report) -> float | None:
    sent = r.counts.get("sent", 0)
    return 100 * r.counts.get("rejected", 0) / sent if sent else None


def _count(key: str) -> Callable[[Report], float | None]:
    return lambda r: r.counts.get(key)


def _per_op_p99(op: str) -> Callable[[Report], float | None]:
    def get(r: Report) -> float | None:
        encoded = r.histograms.get(op)
        return None if encoded is None else Latency.decode(encoded).value_at(99) / 1000

    return get


def rows(a: Report, b: Report) -> list[Row]:
    """The compared metrics, in print order."""
    done = "rated" if a.kind == "kafka" else "answered"
    getters: list[tuple[str, Callable[[Report], float | None], str, int]] = [
        ("target /s", lambda r: r.throughput.get("target"), INFO, 0),
        ("sent /s", lambda r: r.throughput.get("sent"), HIGHER, 0),
        (f"{done} /s", lambda r: r.throughput.get("done"), HIGHER, 0),
        *((f"latency {label(p)} ms", _percentile(p), LOWER, 2) for p in PERCENTILES),
        ("latency max ms", _max, LOWER, 2),
        ("sender behind p99 ms", lambda r: r.behind_ms.get("p99"), LOWER, 2),
    ]
    if a.kind == "kafka":
        getters += [
            ("rejected %", _share, LOWER, 3),
            ("duplicates caught", _count("duplicates_caught"), INFO, 0),
            ("missing", _count("missing"), ZERO, 0),
            ("lag max (records)", lambda r: r.lag.get("max"), LOWER, 0),
        ]
    else:
        ops = [op for op in a.histograms if op != "all" and op in b.histograms]
        getters += [(f"{op} p99 ms", _per_op_p99(op), LOWER, 2) for op in ops]
        getters += [
            ("errors", _count("errors"), ZERO, 0),
            ("balance violations", _count("violations"), ZERO, 0),
        ]
    return [Row(name, get(a), get(b), better, digits) for name, get, better, digits in getters]


def _fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _lines(a: Report, b: Report, tolerance: float) -> list[list[str]]:
    out = []
    for row in rows(a, b):
        ratio = row.ratio
        mark = row.verdict(tolerance)
        out.append(
            [
                row.name,
                _fmt(row.a, row.digits),
                _fmt(row.b, row.digits),
                "—" if ratio is None else f"{ratio:.2f}",
                {"regression": "REGRESSION", "improvement": "better"}.get(mark, ""),
            ]
        )
    return out


def regressions(a: Report, b: Report, tolerance: float = TOLERANCE) -> list[str]:
    return [r.name for r in rows(a, b) if r.verdict(tolerance) == "regression"]


def render(
    a: Report,
    b: Report,
    names: tuple[str, str],
    *,
    tolerance: float = TOLERANCE,
    markdown: bool = False,
) -> str:
    """The side-by-side table (plain text or Markdown) and a closing line."""
    if a.kind != b.kind:
        from loadtest.exceptions import LoadTestError

        msg = f"cannot compare a {a.kind} report ({names[0]}) with a {b.kind} one ({names[1]})"
        raise LoadTestError(msg)
    body = _lines(a, b, tolerance)
    header = ["metric", names[0], names[1], "b/a", ""]
    found = regressions(a, b, tolerance)
    tail = (
        f"{len(found)} regression(s) beyond {tolerance:.0%}: {', '.join(found)}"
        if found
        else f"no regressions beyond {tolerance:.0%}"
    )
    if markdown:
        return table(header, body, "lrrrl") + "\n" + tail + "\n"
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    text = []
    for line in [header, *body]:
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:4], widths[1:4], strict=True)
        ]
        text.append("  ".join([*cells, line[4]]).rstrip())
    return "\n".join(text) + "\n" + tail + "\n"


def compare_files(
    a: Path, b: Path, *, tolerance: float = TOLERANCE, markdown: bool = False
) -> tuple[str, list[str]]:
    """The rendered comparison of two report files and the names of regressed metrics."""
    ra, rb = load(a), load(b)
    names = (_name(a), _name(b))
    if names[0] == names[1]:
        names = ("a", "b")
    return render(ra, rb, names, tolerance=tolerance, markdown=markdown), regressions(
        ra, rb, tolerance
    )


def _name(path: Path) -> str:
    return path.parent.name if path.name == "report.json" else path.name
