"""Open-loop sending: every item at its planned time, however slow the answers are.

A closed-loop tester (send, wait for the answer, send the next) slows down
when the system does, so a stall shows up as "fewer requests" instead of as
latency: coordinated omission. Here item ``i`` is due at ``start + offset[i]``
(:func:`plan`: ``i / rate`` for single items; a message of several records is
due when its first record is) and is sent then, without waiting for any
reply. Latency is measured from that *intended* time, so the time an item
spent waiting because the system (or this sender) was slow is counted.

The sender itself can fall behind (a CPU-starved load process, a producer
whose buffer is full): :class:`SendLog` keeps, per item, when it was really
sent, and reports how far behind plan the sender was, so a report can say
whether the load was really applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from loadtest.precise_sleep import Sleep, sleeper

F64 = npt.NDArray[np.float64]
T = TypeVar("T")
YIELD_EVERY = 256  # items sent back to back (catching up) before letting other tasks run


def plan(sizes: npt.ArrayLike, rate: float) -> F64:
    """Seconds from the start at which each item is due: records before it / ``rate``.

    ``sizes`` is the number of records in each item (1 for single records and
    requests), so a batch of 1,000 is due when its first record would be.
    """
    if not rate > 0:
        msg = f"rate must be above 0, got {rate}"
        raise ValueError(msg)
    n = np.asarray(sizes, dtype=np.float64)
    return (np.cumsum(n) - n) / rate


@dataclass
class SendLog:
    """When each item was due and when it was really sent (``perf_counter`` seconds)."""

    start: float
    due: F64  # absolute
    sent: F64  # absolute; NaN for items not sent (stopped early)

    @property
    def count(self) -> int:
        """Items sent."""
        return int(np.count_nonzero(~np.isnan(self.sent)))

    def behind(self) -> F64:
        """Seconds each sent item left after its due time (≥ 0; ~0 when keeping up)."""
        sent = ~np.isnan(self.sent)
        return np.maximum(self.sent[sent] - self.due[sent], 0.0)

    def per_second(
        self, seconds: int, weights: npt.ArrayLike | None = None
    ) -> tuple[list[float], list[float]]:
        """Items due and items sent in each second 0 … ``seconds - 1`` from the start
        (weighted: records per item), late sends counted in the last second."""
        w = np.ones(len(self.due)) if weights is None else np.asarray(weights, dtype=np.float64)
        sent = ~np.isnan(self.sent)

        def count(when: F64, of: F64) -> list[float]:
            idx = np.clip(np.floor(when - self.start).astype(np.int64), 0, seconds - 1)
            counts: list[float] = np.bincount(idx, weights=of, minlength=seconds).tolist()
            return counts

        return count(self.due, w), count(self.sent[sent], w[sent])

    def achieved(self, first: float, stop: float, weights: npt.ArrayLike | None = None) -> float:
        """Items (weighted) per second the sender achieved for those due in [first, stop)
        seconds from the start: their count over the window, stretched by however much
        further behind plan the sender was at the window's end than at its start.

        A sender that keeps up scores the target rate even when big items (batches of
        a thousand records) land either side of a second's edge.
        """
        w = np.ones(len(self.due)) if weights is None else np.asarray(weights, dtype=np.float64)
        offset = self.due - self.start
        mine = (offset >= first) & (offset < stop) & ~np.isnan(self.sent)
        if not mine.any() or stop <= first:
            return 0.0
        late = (self.sent - self.due)[mine]
        stretch = max(float(late[-1] - late[0]), 0.0)
        return float(w[mine].sum()) / (stop - first + stretch)

    def behind_per_second(self, seconds: int) -> list[float]:
        """How far behind plan the sender was, worst per second of sending (ms)."""
        sent = ~np.isnan(self.sent)
        worst = np.zeros(seconds)
        idx = np.clip(np.floor(self.sent[sent] - self.start).astype(np.int64), 0, seconds - 1)
        np.maximum.at(worst, idx, np.maximum(self.sent[sent] - self.due[sent], 0) * 1000)
        return [round(b, 3) for b in worst.tolist()]

    def last_sent(self) -> float:
        """Seconds from the start to the last send (0 when nothing was sent)."""
        sent = self.sent[~np.isnan(self.sent)]
        return float(sent.max()) - self.start if len(sent) else 0.0

    def behind_summary(self) -> dict[str, float]:
        """How far behind plan the sender was: p50/p99/max in milliseconds."""
        late = self.behind()
        if not len(late):
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        p50, p99 = np.percentile(late, [50, 99]) * 1000
        return {
            "p50": round(float(p50), 3),
            "p99": round(float(p99), 3),
            "max": round(float(late.max()) * 1000, 3),
        }


class OpenLoop:
    """Calls ``send(i)`` for every item at ``start + offsets[i]``, in order.

    ``send`` may be a plain function or a coroutine function. A coroutine is
    awaited before the next item (it should only *enqueue* the item, e.g.
    ``producer.send`` or ``asyncio.create_task``); when it blocks, the sender
    falls behind and catches up by sending the late items back to back, each
    still measured from its own due time. ``clock`` and ``sleep`` are
    replaceable for tests. With ``precise``, the waits end on time to the tens
    of microseconds (:mod:`loadtest.precise_sleep`) instead of the event
    loop's millisecond, never early, at the cost of a wake-up per item: for
    latencies of a few milliseconds (the HTTP API), not for ones of tens (at
    10 k messages/s it cost the Kafka load process ~30 % more CPU).
    """

    def __init__(
        self,
        offsets: F64,
        send: Callable[[int], Awaitable[Any] | None],
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Sleep = asyncio.sleep,
        precise: bool = False,
    ) -> None:
        self.offsets = np.asarray(offsets, dtype=np.float64)
        self.send = send
        self.clock, self.sleep, self.precise = clock, sleep, precise
        self.log: SendLog | None = None
        self._stopped = False
        self._next = 0

    def stop(self) -> None:
        """Send nothing more (the current item finishes)."""
        self._stopped = True

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` ended the run early."""
        return self._stopped

    @property
    def sent(self) -> int:
        return self._next

    async def run(self, start: float | None = None) -> SendLog:
        """Send every item at its time; returns the log (also kept as ``self.log``)."""
        began = self.clock() if start is None else start
        due = began + self.offsets
        self.log = log = SendLog(began, due, np.full(len(due), np.nan))
        self._next = 0
        if not self.precise:
            await self._send(log, self.sleep)
        else:
            sleep, close = sleeper(asyncio.get_running_loop())
            try:
                await self._send(log, sleep)
            finally:
                close()
        return log

    async def _send(self, log: SendLog, sleep: Sleep) -> None:
        due, streak = log.due, 0
        for i in range(len(due)):
            if self._stopped:
                break
            wait = due[i] - self.clock()
            if wait > 0:
                await sleep(wait)
                streak = 0
            elif streak >= YIELD_EVERY:  # behind: catch up, but let replies be read
                await sleep(0)
                streak = 0
            log.sent[i] = self.clock()
            pending = self.send(i)
            if pending is not None:
                await pending
            streak += 1
            self._next = i + 1


@contextlib.contextmanager
def interruptible(sender: OpenLoop, say: Callable[[str], None]) -> Iterator[None]:
    """While sending: a first Ctrl-C stops ``sender`` (the run then drains and reports
    what was sent); a second one interrupts as usual. Call inside the running loop."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        say("interrupted: sending no more; draining, then the report (Ctrl-C again to quit)")
        sender.stop()
        loop.remove_signal_handler(signal.SIGINT)

    try:
        loop.add_signal_handler(signal.SIGINT, stop)
    except (RuntimeError, ValueError):  # not the main thread: no signal handling here
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def run_measured(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` on a fresh uvloop event loop with the collector off.

    The load process's own collector pauses would count as latency: objects
    alive now are frozen out of its sight, and it stays off until the run
    ends (it is switched back on, with the frozen objects released, after).
    """
    import gc

    import uvloop

    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(make())  # type: ignore[arg-type]
    finally:
        gc.enable()
        gc.unfreeze()
