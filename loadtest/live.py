"""The live view while a load test runs, on stderr.

On a terminal: one line rewritten every second (elapsed / duration, target vs
achieved rate, p50 / p99 of the last second, rated or answered, rejects or
errors, lag, progress). Not on a terminal (CI logs, a pipe): one plain line
every ``PLAIN_EVERY`` seconds. ``quiet``: nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

PLAIN_EVERY = 5.0
CLEAR = "\r\x1b[2K"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a driver knows at one tick."""

    elapsed: float  # seconds since the first planned send
    duration: float  # seconds of sending planned
    target: float  # items per second planned (this second)
    sent: float  # items sent in the last second
    done: float  # items rated / answered in the last second
    p50_ms: float | None  # of the items that completed in the last second
    p99_ms: float | None
    done_total: int
    rejected_total: int
    lag: float | None  # consumer lag (records) or requests in flight
    progress: float  # 0..1: items accounted for / planned
    phase: str = "sending"  # sending | draining


def _count(n: float) -> str:
    if abs(n) >= 1e6:
        return f"{n / 1e6:.2f}M"
    if abs(n) >= 1e4:
        return f"{n / 1e3:.1f}k"
    return f"{n:,.0f}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}" if v >= 10 else f"{v:.2f}"


def render(
    s: Snapshot, *, done: str = "rated", rejected: str = "rejected", lag: str = "lag"
) -> str:
    """One line, for example::

        [  12s/60s]  target 50.0k/s sent 50.0k/s  rated 49.8k/s (580.2k in all)
        p50 3.10 p99 12.0 ms  rejected 1,204  lag 4,100   19.8%

    (on one line).
    """
    clock = f"[{s.elapsed:4.0f}s/{s.duration:.0f}s]"
    if s.phase != "sending":
        clock = f"[{s.elapsed:4.0f}s {s.phase}]"
    parts = [
        clock,
        f"target {_count(s.target)}/s sent {_count(s.sent)}/s",
        f"{done} {_count(s.done)}/s ({_count(s.done_total)} in all)",
        f"p50 {_ms(s.p50_ms)} p99 {_ms(s.p99_ms)} ms",
        f"{rejected} {_count(s.rejected_total)}",
    ]
    if s.lag is not None:
        parts.append(f"{lag} {_count(s.lag)}")
    parts.append(f"{100 * s.progress:5.1f}%")
    return "  ".join(parts)


class Live:
    """Writes :class:`Snapshot` lines to ``stream``; call :meth:`close` at the end."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        tty: bool | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty() if tty is None else tty
        self.labels = labels or {}
        self._last_plain = -PLAIN_EVERY
        self._open = False

    def update(self, s: Snapshot) -> None:
        if self.quiet:
            return
        line = render(s, **self.labels)
        if self.tty:
            self.stream.write(CLEAR + line)
            self._open = True
        elif s.elapsed - self._last_plain >= PLAIN_EVERY:
            self.stream.write(line + "\n")
            self._last_plain = s.elapsed
        self.stream.flush()

    def say(self, text: str) -> None:
        """A line of its own (a phase starting, a warning), above the live line."""
        if self.quiet:
            return
        if self._open:
            self.stream.write(CLEAR)
            self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._open and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
        self._open = False
