"""Latency histograms: HdrHistogram (microseconds, 3 significant digits), fed in bulk.

A :class:`Latency` wraps an ``hdrh`` histogram: the counts and their
serialised form (a base64 "HISTFAA…" string, readable by every HdrHistogram
implementation) are the library's; recording and reading are done here with
numpy over the same counts array, since the library's Python loops cost about
1.4 µs per recorded value and walk all ~23,000 buckets per percentile.
Values and percentiles are exactly the library's (its "highest equivalent
value" convention: a value reads back as the top of its bucket), which the
unit tests check against ``record_value`` / ``get_value_at_percentile``.

:class:`Intervals` keeps one histogram per second of a run (the time series)
and merges the seconds that count into one summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

LOWEST_US: Final = 1
HIGHEST_US: Final = 3_600_000_000  # an hour: anything slower is clamped to it
DIGITS: Final = 3
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
I64 = npt.NDArray[np.int64]


def label(p: float) -> str:
    """``99.9`` → ``"p99.9"``, ``50.0`` → ``"p50"``."""
    return f"p{p:g}"


@cache
def _layout(sub_half_mag: int, unit_mag: int, counts_len: int) -> tuple[I64, I64]:
    """Lowest and highest value of every bucket index (the library's arithmetic, vectorised)."""
    index = np.arange(counts_len, dtype=np.int64)
    half = 1 << sub_half_mag
    bucket = (index >> sub_half_mag) - 1
    sub = (index & (half - 1)) + half
    first = bucket < 0
    sub[first] -= half
    bucket[first] = 0
    lowest = sub << (bucket + unit_mag)
    highest = lowest + (np.int64(1) << (bucket + unit_mag)) - 1
    return lowest, highest


class Latency:
    """One HDR histogram of latencies in microseconds."""

    def __init__(self, hdr: HdrHistogram | None = None) -> None:
        self.hdr = hdr if hdr is not None else HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
        h = self.hdr
        # the library keeps its counts in a ctypes array: a numpy view writes them in place
        self._counts: npt.NDArray[np.uint64] = np.ctypeslib.as_array(h.counts)
        self._lowest, self._highest = _layout(
            h.sub_bucket_half_count_magnitude, h.unit_magnitude, h.counts_len
        )

    # -- recording -----------------------------------------------------------------------
    def record(self, us: float) -> None:
        """One value (µs), without numpy: for callers that have one value at a time."""
        v = int(min(max(us, 0), HIGHEST_US))
        h = self.hdr
        bucket = (
            (v | h.sub_bucket_mask).bit_length()
            - h.unit_magnitude
            - (h.sub_bucket_half_count_magnitude + 1)
        )
        sub = v >> (bucket + h.unit_magnitude)
        index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub - h.sub_bucket_half_count
        h.counts[index] += 1
        h.total_count += 1
        h.min_value = min(h.min_value, v)
        h.max_value = max(h.max_value, v)

    def record_many(self, us: npt.ArrayLike) -> None:
        """Record every value (µs; negative ones as 0, over an hour as an hour)."""
        values = np.clip(np.asarray(us, dtype=np.float64).ravel(), 0, HIGHEST_US)
        if not len(values):
            return
        v = values.astype(np.int64)
        index = self._index(v)
        self._counts += np.bincount(index, minlength=len(self._counts)).astype(np.uint64)
        h = self.hdr
        h.total_count += len(v)
        h.min_value = min(h.min_value, int(v.min()))
        h.max_value = max(h.max_value, int(v.max()))

    def _index(self, v: I64) -> I64:
        h = self.hdr
        # bit length of (v | mask): frexp's exponent, exact for integers below 2**53
        bits = np.frexp((v | h.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
        bucket = bits - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
        sub = v >> (bucket + h.unit_magnitude)
        index: I64 = (
            ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub - h.sub_bucket_half_count
        )
        return index

    def merge(self, other: Latency) -> Latency:
        """Add ``other``'s counts into this one; returns self."""
        self.hdr.add(other.hdr)
        return self

    # -- reading -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.hdr.total_count)

    def value_at(self, percentile: float) -> int:
        """The value at ``percentile`` (0–100) as HdrHistogram reports it (0 when empty)."""
        return int(self.values_at([percentile])[0])

    def values_at(self, percentiles: Iterable[float]) -> I64:
        ps = np.asarray(list(percentiles), dtype=np.float64)
        total = self.count
        if not total:
            return np.zeros(len(ps), dtype=np.int64)
        cumulative = np.cumsum(self._counts)
        target = np.maximum((np.minimum(ps, 100.0) * total / 100 + 0.5).astype(np.int64), 1)
        at = np.searchsorted(cumulative, target.astype(np.uint64), side="left")
        return np.where(ps > 0, self._highest[at], self._lowest[at])

    @property
    def max(self) -> int:
        return int(self._highest[self._last()]) if self.count else 0

    @property
    def min(self) -> int:
        return int(self._lowest[int(np.flatnonzero(self._counts)[0])]) if self.count else 0

    @property
    def mean(self) -> float:
        if not self.count:
            return 0.0
        middle = (self._lowest + self._highest + 1) // 2  # the library's "median equivalent"
        return float(np.dot(self._counts.astype(np.float64), middle)) / self.count

    def _last(self) -> int:
        return int(np.flatnonzero(self._counts)[-1])

    def summary(self, percentiles: Iterable[float] = PERCENTILES) -> dict[str, float]:
        """``count``, ``mean`` and each percentile and ``max``, in milliseconds."""
        ps = list(percentiles)
        out: dict[str, float] = {"count": self.count, "mean": round(self.mean / 1000, 3)}
        for p, v in zip(ps, self.values_at(ps).tolist(), strict=True):
            out[label(p)] = v / 1000
        out["max"] = self.max / 1000
        return out

    def curve(self, nines: int = 6) -> tuple[npt.NDArray[np.float64], I64]:
        """Percentiles up to ``1 - 10**-nines`` and their values, for an HDR percentile plot.

        Points are spaced evenly on the ``1 / (1 - p)`` log axis (forty per decade)
        and stop at the last percentile the count can resolve.
        """
        resolvable = min(nines, int(np.floor(np.log10(max(self.count, 1)))))
        exponents = np.linspace(0, max(resolvable, 1), 40 * max(resolvable, 1) + 1)
        ps = 100 * (1 - 10.0**-exponents)
        return ps, self.values_at(ps)

    # -- serialising ---------------------------------------------------------------------
    def encode(self) -> str:
        """The histogram as HdrHistogram's compressed base64 form (a V2 "histoblob")."""
        raw: Any = self.hdr.encode()
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    @classmethod
    def decode(cls, text: str) -> Latency:
        return cls(HdrHistogram.decode(text.encode()))


class Intervals:
    """One :class:`Latency` per second of a run, keyed by second number (0, 1, …)."""

    def __init__(self) -> None:
        self._by_second: dict[int, Latency] = {}

    def record_many(self, seconds: npt.ArrayLike, us: npt.ArrayLike) -> None:
        """Record ``us[i]`` into second ``seconds[i]`` (whole seconds from the run's start)."""
        when = np.asarray(seconds, dtype=np.int64).ravel()
        values = np.asarray(us, dtype=np.float64).ravel()
        if not len(when):
            return
        order = np.argsort(when, kind="stable")
        when, values = when[order], values[order]
        cuts = np.flatnonzero(np.diff(when)) + 1
        for part_s, part_v in zip(np.split(when, cuts), np.split(values, cuts), strict=True):
            self.at(int(part_s[0])).record_many(part_v)

    def at(self, second: int) -> Latency:
        """The histogram of ``second`` (an empty one is made on first use)."""
        found = self._by_second.get(second)
        if found is None:
            found = self._by_second[second] = Latency()
        return found

    def record(self, second: int, us: float) -> None:
        """One value into ``second``."""
        self.at(second).record(us)

    def get(self, second: int) -> Latency | None:
        return self._by_second.get(second)

    def seconds(self) -> list[int]:
        return sorted(self._by_second)

    def __iter__(self) -> Iterator[tuple[int, Latency]]:
        return ((s, self._by_second[s]) for s in self.seconds())

    def merge(self, other: Intervals) -> Intervals:
        """Add ``other``'s seconds into these; returns self."""
        for s, h in other:
            self.at(s).merge(h)
        return self

    def columns(self, seconds: int) -> tuple[list[float], list[float], list[float]]:
        """p50, p99 and max (ms) of seconds 0 … ``seconds - 1`` (0 where none was recorded)."""
        p50, p99, top = [], [], []
        for s in range(seconds):
            h = self._by_second.get(s)
            values = h.values_at([50, 99]).tolist() if h is not None else [0, 0]
            p50.append(values[0] / 1000)
            p99.append(values[1] / 1000)
            top.append(h.max / 1000 if h is not None else 0.0)
        return p50, p99, top

    def encoded(self, seconds: int) -> list[str]:
        """Each second's histogram, encoded ("" for a second without values)."""
        return [h.encode() if (h := self._by_second.get(s)) else "" for s in range(seconds)]

    def total(self, start: int = 0, stop: int | None = None) -> Latency:
        """Seconds ``start`` ≤ s < ``stop`` merged into one histogram."""
        out = Latency()
        for s, h in self:
            if s >= start and (stop is None or s < stop):
                out.merge(h)
        return out
