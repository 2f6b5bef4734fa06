"""Alerts on rejects and failed batches, for the streaming worker.

The worker calls :meth:`Alerter.observe` once per batch with that batch's reject
counts per reason; each :class:`AlertRule` keeps a sliding window of those counts
and fires one :class:`Alert` when its windowed total reaches the rule's ``count``.
A rule that fired stays quiet until its window has passed since the alert, so a
flood of rejects gives at most one alert per rule per window, not a storm. By then
every count that made it fire has left the window, so no reject is counted twice.

Rules are written ``REASON:COUNT/SECONDS``: ``DECODE_ERROR:1/60`` alerts on the
first decode error in a minute, ``*:1000/60`` on a thousand rejects of any reason.
The module is pure: time comes from the ``clock`` the caller passes, and sending
an alert (log, webhook, topic) is the caller's business.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec

from engine.exceptions import UsageInputError

ANY_REASON: Final = "*"
REJECTS: Final = "REJECTS"
BATCH_FAILED: Final = "BATCH_FAILED"
MAX_EXAMPLES: Final = 3
RULE_FORM: Final = "REASON:COUNT/SECONDS"

# Any reason flooding in (a broken producer, a wrong topic) and any decode error
# at a sustained rate (bytes that are not JSON/MessagePack: a format or schema
# change upstream). Rare validation errors and unknown subscribers are routine
# and stay out of the defaults; add rules for them with ``parse_rule``.
DEFAULT_RULE_TEXTS: Final = ("*:1000/60", "DECODE_ERROR:100/60")

_RULE = re.compile(
    r"(?P<reason>\*|[A-Z][A-Z0-9_]*):(?P<count>[0-9]+)/(?P<seconds>[0-9]+(?:\.[0-9]+)?)"
)


class AlertRule(msgspec.Struct, frozen=True):
    """Alert when ``count`` or more rejects with ``reason`` (``"*"``: any reason)
    arrive within ``window_seconds``."""

    reason: str
    count: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.count <= 0:
            msg = f"alert rule for {self.reason}: count must be > 0, got {self.count}"
            raise ValueError(msg)
        if not (self.window_seconds > 0 and math.isfinite(self.window_seconds)):
            msg = (
                f"alert rule for {self.reason}: window must be a positive number of "
                f"seconds, got {self.window_seconds}"
            )
            raise ValueError(msg)


def parse_rule(text: str) -> AlertRule:
    """Parse ``REASON:COUNT/SECONDS``, e.g. ``*:100/60`` or ``VALIDATION_ERROR:50/10.5``."""
    match = _RULE.fullmatch(text.strip())
    if match is None:
        msg = (
            f"alert rule {text!r}: expected {RULE_FORM} with an upper-case reason code "
            f"or '*', e.g. '*:1000/60' or 'DECODE_ERROR:1/60'"
        )
        raise UsageInputError(msg)
    try:
        return AlertRule(
            reason=match["reason"],
            count=int(match["count"]),
            window_seconds=float(match["seconds"]),
        )
    except ValueError as exc:
        msg = f"alert rule {text!r}: {exc} (expected {RULE_FORM})"
        raise UsageInputError(msg) from exc


DEFAULT_RULES: Final = tuple(parse_rule(text) for text in DEFAULT_RULE_TEXTS)


class AlertExample(msgspec.Struct, kw_only=True, frozen=True):
    """One reject behind an alert: where it came from and what was wrong."""

    source: str  # ``topic[partition]@offset`` or ``file:line``
    message: str


class Alert(msgspec.Struct, kw_only=True, frozen=True):
    """Something an operator should look at; encodable with ``msgspec.json``."""

    kind: str  # REJECTS or BATCH_FAILED
    reason: str  # the rule's reason code, "*", or BATCH_FAILED
    count: int  # rejects in the window, or partitions of the failed batch
    window_seconds: float
    examples: list[AlertExample]  # up to MAX_EXAMPLES, oldest first
    worker: str
    at: str  # ISO-8601, UTC
    detail: str = ""


class _Window:
    """One rule's sliding window: (time, count) entries, their running total, the
    latest examples and when the rule last fired."""

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self.entries: deque[tuple[float, int]] = deque()
        self.total = 0
        self.examples: deque[tuple[float, AlertExample]] = deque(maxlen=MAX_EXAMPLES)
        self.fired_at: float | None = None

    def add(self, now: float, count: int, examples: Iterable[tuple[str, str]]) -> None:
        # Entries leave once they are window_seconds old; each is appended and
        # popped once, so the cost is per batch, not per reject.
        horizon = now - self.rule.window_seconds
        while self.entries and self.entries[0][0] <= horizon:
            self.total -= self.entries.popleft()[1]
        if count > 0:
            self.entries.append((now, count))
            self.total += count
        for source, message in examples:
            self.examples.append((now, AlertExample(source=source, message=message)))

    def due(self, now: float) -> bool:
        if self.total < self.rule.count:
            return False
        return self.fired_at is None or now - self.fired_at >= self.rule.window_seconds

    def recent_examples(self, now: float) -> list[AlertExample]:
        horizon = now - self.rule.window_seconds
        return [example for at, example in self.examples if at > horizon]


class Alerter:
    """Turns per-batch reject counts into alerts, one sliding window per rule."""

    def __init__(
        self,
        rules: Sequence[AlertRule],
        *,
        worker: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.worker = worker
        self._clock = clock
        self._windows = [_Window(rule) for rule in rules]

    def observe(
        self,
        counts: Mapping[str, int],
        examples: Mapping[str, Sequence[tuple[str, str]]],
    ) -> list[Alert]:
        """Record one batch's rejects (``counts`` per reason, a few ``(source,
        message)`` examples per reason); return the alerts that are due now."""
        now = self._clock()
        everything = sum(count for count in counts.values() if count > 0)
        alerts = []
        for window in self._windows:
            reason = window.rule.reason
            if reason == ANY_REASON:
                count = everything
                seen = [pair for pairs in examples.values() for pair in pairs[-MAX_EXAMPLES:]]
            else:
                count = max(counts.get(reason, 0), 0)
                seen = list(examples.get(reason, ())[-MAX_EXAMPLES:])
            window.add(now, count, seen)
            if window.due(now):
                window.fired_at = now
                alerts.append(self._rejects_alert(window, now))
        return alerts

    def batch_failed(self, error: str, partitions: Sequence[int]) -> Alert:
        """An alert for a batch that failed as a whole (never rate-limited)."""
        return Alert(
            kind=BATCH_FAILED,
            reason=BATCH_FAILED,
            count=len(partitions) or 1,
            window_seconds=0.0,
            examples=[],
            worker=self.worker,
            at=_iso_utc(self._clock()),
            detail=error,
        )

    def _rejects_alert(self, window: _Window, now: float) -> Alert:
        rule = window.rule
        what = "rejects" if rule.reason == ANY_REASON else f"{rule.reason} rejects"
        return Alert(
            kind=REJECTS,
            reason=rule.reason,
            count=window.total,
            window_seconds=rule.window_seconds,
            examples=window.recent_examples(now),
            worker=self.worker,
            at=_iso_utc(now),
            detail=(
                f"{window.total} {what} in the last {rule.window_seconds:g}s "
                f"(threshold {rule.count})"
            ),
        )


def _iso_utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")
