"""Prometheus metrics for one worker, in text exposition format 0.0.4.

A small self-contained stand-in for ``prometheus_client`` without its global
registry: every :class:`Registry` (and so every :class:`WorkerMetrics`) is its
own object, passed explicitly to whatever updates or serves it. Numbers are
written as ``prometheus_client`` writes them (``repr`` of the float, ``+Inf``),
so scrapes and dashboards see the same text either way.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from bisect import bisect_left
from collections.abc import Sequence
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "ratewire_"

BATCH_RECORDS_BUCKETS: Final = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
# Roughly ×2.5 steps from a millisecond to ten seconds.
BATCH_SECONDS_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
HTTP_SECONDS_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        if not _METRIC_NAME.fullmatch(name):
            msg = f"metric name {name!r} is not a valid Prometheus name"
            raise ValueError(msg)
        for label in labels:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__") or label == "le":
                msg = f"metric {name}: label name {label!r} is not allowed"
                raise ValueError(msg)
        self.name, self.help, self.labels = name, help, labels

    def _key(self, given: dict[str, str | int]) -> tuple[str, ...]:
        if given.keys() != set(self.labels):
            msg = f"metric {self.name}: labels {sorted(given)} given, {list(self.labels)} expected"
            raise ValueError(msg)
        return tuple(str(given[label]) for label in self.labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class _Labelled(_Metric):
    """Values per label set; an unlabelled metric shows 0 before its first update."""

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def value(self, **labels: str | int) -> float:
        """The current value for one label set (0 if never set)."""
        return self._values.get(self._key(labels), 0.0)

    def remove(self, **labels: str | int) -> None:
        """Forget one label set, e.g. the lag of a partition this worker gave up."""
        self._values.pop(self._key(labels), None)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labels, key)} {_number(value)}"
            for key, value in sorted(self._values.items())
        ]


class Counter(_Labelled):
    """A count that only goes up."""

    kind = "counter"

    def inc(self, amount: float = 1, **labels: str | int) -> None:
        if not amount >= 0:
            msg = f"counter {self.name}: cannot add {amount}, counters only go up"
            raise ValueError(msg)
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Labelled):
    """A value that is set, such as a lag or a number of partitions."""

    kind = "gauge"

    def set(self, value: float, **labels: str | int) -> None:
        self._values[self._key(labels)] = float(value)


class Histogram(_Metric):
    """Observations counted into ``le`` buckets (upper bounds, inclusive), plus
    ``+Inf``, their sum and their count; one such series per label set."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, buckets: Sequence[float], labels: tuple[str, ...] = ()
    ) -> None:
        super().__init__(name, help, labels)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        ordered = all(a < b for a, b in itertools.pairwise(bounds))
        if not bounds or not ordered or any(math.isnan(b) for b in bounds):
            msg = f"histogram {name}: buckets must be increasing numbers, got {list(buckets)}"
            raise ValueError(msg)
        self.bounds = np.array(bounds, dtype=np.float64)
        self._bounds_list = [float(b) for b in bounds]
        self._series: dict[tuple[str, ...], _Series] = {} if labels else {(): self._new()}

    def _new(self) -> _Series:
        return _Series(np.zeros(len(self._bounds_list) + 1, dtype=np.int64))

    def _at(self, labels: dict[str, str | int]) -> _Series:
        """The series of ``labels``, started if it is new."""
        key = self._key(labels) if labels or self.labels else ()
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._new()
        return series

    def series(self, **labels: str | int) -> _Series:
        """One label set's counts (empty if it was never observed)."""
        return self._series.get(self._key(labels)) or self._new()

    @property
    def sum(self) -> float:
        return self.series().sum

    @property
    def count(self) -> int:
        return self.series().count

    def observe(self, value: float, **labels: str | int) -> None:
        """One value (per request): no numpy, a few microseconds less than observe_many."""
        if value != value:  # NaN
            msg = f"histogram {self.name}: cannot observe NaN"
            raise ValueError(msg)
        series = self._at(labels)
        series.counts[bisect_left(self._bounds_list, value)] += 1
        series.sum += value
        series.count += 1

    def observe_many(self, values: npt.ArrayLike, **labels: str | int) -> None:
        """Observe every value at once, e.g. the latencies of a batch's records."""
        array = np.asarray(values, dtype=np.float64).ravel()
        if np.isnan(array).any():
            msg = f"histogram {self.name}: cannot observe NaN"
            raise ValueError(msg)
        series = self._at(labels)
        # side="left": a value equal to a bound belongs to that bound's bucket (le).
        index = np.searchsorted(self.bounds, array, side="left")
        series.counts += np.bincount(index, minlength=len(series.counts))
        series.sum += float(array.sum())
        series.count += len(array)

    def samples(self) -> list[str]:
        bounds = [*(_number(b) for b in self.bounds), "+Inf"]
        lines = []
        for key, series in sorted(self._series.items()):
            names, values = self.labels, key
            cumulative = np.cumsum(series.counts)
            lines += [
                f"{self.name}_bucket{_labels((*names, 'le'), (*values, le))} {_number(float(n))}"
                for le, n in zip(bounds, cumulative, strict=True)
            ]
            lines.append(f"{self.name}_sum{_labels(names, values)} {_number(series.sum)}")
            lines.append(
                f"{self.name}_count{_labels(names, values)} {_number(float(series.count))}"
            )
        return lines


@dataclasses.dataclass(slots=True)
class _Series:
    """One label set's per-bucket (not cumulative) counts (the last one is past the
    highest bound, up to +Inf), their sum and their count."""

    counts: npt.NDArray[np.int64]
    sum: float = 0.0
    count: int = 0


M = TypeVar("M", bound=_Metric)


class Registry:
    """The metrics one worker exposes, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: M) -> M:
        if metric.name in self._metrics:
            msg = f"metric {metric.name} is already registered"
            raise ValueError(msg)
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines += metric.header()
            lines += metric.samples()
        return "\n".join(lines) + "\n" if lines else ""


class WorkerMetrics:
    """Every metric a streaming worker exposes, all named ``ratewire_…``."""

    def __init__(self) -> None:
        self.registry = Registry()
        counter, gauge, histogram = self._counter, self._gauge, self._histogram
        self.records_in_total = counter("records_in_total", "Records read.")
        self.records_rated_total = counter("records_rated_total", "Records rated.")
        self.records_rejected_total = counter(
            "records_rejected_total", "Records rejected, by reason.", ("reason",)
        )
        self.records_duplicate_total = counter(
            "records_duplicate_total", "Records skipped as already rated."
        )
        self.records_repartitioned_total = counter(
            "records_repartitioned_total", "Records sent on to their account's partition."
        )
        self.messages_in_total = counter("messages_in_total", "Kafka messages read.")
        self.batches_total = counter("batches_total", "Batches processed.")
        self.batch_failures_total = counter("batch_failures_total", "Batches that failed whole.")
        self.alerts_total = counter("alerts_total", "Alerts raised, by kind.", ("kind",))
        self.batch_records = histogram("batch_records", "Records per batch.", BATCH_RECORDS_BUCKETS)
        self.batch_seconds = histogram(
            "batch_seconds", "Seconds to process a batch.", BATCH_SECONDS_BUCKETS
        )
        self.consumer_lag = gauge(
            "consumer_lag", "Messages behind the end of a partition.", ("topic", "partition")
        )
        self.partitions_owned = gauge("partitions_owned", "Input partitions this worker owns.")
        self.stream_buffer_full_total = counter(
            "stream_buffer_full_total",
            "Times a partition's stream buffer filled and Faust stopped fetching it.",
        )
        self.http_requests_total = counter(
            "http_requests_total", "HTTP requests served.", ("route", "status")
        )
        self.http_request_seconds = histogram(
            "http_request_seconds", "Seconds to serve an HTTP request, by route.",
            HTTP_SECONDS_BUCKETS, ("route",),
        )  # fmt: skip

    def _counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
        return self.registry.register(Counter(PREFIX + name, help, labels))

    def _gauge(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Gauge:
        return self.registry.register(Gauge(PREFIX + name, help, labels))

    def _histogram(
        self, name: str, help: str, buckets: Sequence[float], labels: tuple[str, ...] = ()
    ) -> Histogram:
        return self.registry.register(Histogram(PREFIX + name, help, buckets, labels))

    def render(self) -> str:
        return self.registry.render()
