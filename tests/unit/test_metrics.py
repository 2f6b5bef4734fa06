"""Prometheus text exposition: exact rendered text, escaping, vectorised histograms."""

from __future__ import annotations

import numpy as np
import pytest

from engine.metrics import Counter, Gauge, Histogram, Registry, WorkerMetrics
from loadtest.http_bench import server_buckets


def test_small_registry_renders_exactly() -> None:
    registry = Registry()
    rejected = registry.register(
        Counter("ratewire_records_rejected_total", "Records rejected, by reason.", ("reason",))
    )
    lag = registry.register(Gauge("ratewire_consumer_lag", "Lag.", ("topic", "partition")))
    owned = registry.register(Gauge("ratewire_partitions_owned", "Partitions."))
    seconds = registry.register(Histogram("ratewire_batch_seconds", "Batch time.", [0.5, 1, 2.5]))
    rejected.inc(reason="VALIDATION_ERROR")
    rejected.inc(3, reason="DECODE_ERROR")
    rejected.inc(2, reason="VALIDATION_ERROR")
    lag.set(12, topic="usage", partition=3)
    lag.set(0, topic="usage", partition=4)
    owned.set(2)
    for value in (0.25, 0.5, 1.0, 2.0, 8.0):
        seconds.observe(value)
    assert registry.render() == (
        "# HELP ratewire_records_rejected_total Records rejected, by reason.\n"
        "# TYPE ratewire_records_rejected_total counter\n"
        'ratewire_records_rejected_total{reason="DECODE_ERROR"} 3.0\n'
        'ratewire_records_rejected_total{reason="VALIDATION_ERROR"} 3.0\n'
        "# HELP ratewire_consumer_lag Lag.\n"
        "# TYPE ratewire_consumer_lag gauge\n"
        'ratewire_consumer_lag{topic="usage",partition="3"} 12.0\n'
        'ratewire_consumer_lag{topic="usage",partition="4"} 0.0\n'
        "# HELP ratewire_partitions_owned Partitions.\n"
        "# TYPE ratewire_partitions_owned gauge\n"
        "ratewire_partitions_owned 2.0\n"
        "# HELP ratewire_batch_seconds Batch time.\n"
        "# TYPE ratewire_batch_seconds histogram\n"
        'ratewire_batch_seconds_bucket{le="0.5"} 2.0\n'
        'ratewire_batch_seconds_bucket{le="1.0"} 3.0\n'
        'ratewire_batch_seconds_bucket{le="2.5"} 4.0\n'
        'ratewire_batch_seconds_bucket{le="+Inf"} 5.0\n'
        "ratewire_batch_seconds_sum 11.75\n"
        "ratewire_batch_seconds_count 5.0\n"
    )


def test_unlabelled_metrics_show_zero_and_labelled_ones_nothing_before_updates() -> None:
    registry = Registry()
    registry.register(Counter("a_total", "A."))
    registry.register(Counter("b_total", "B.", ("kind",)))
    registry.register(Histogram("c", "C.", [1]))
    assert registry.render() == (
        "# HELP a_total A.\n# TYPE a_total counter\na_total 0.0\n"
        "# HELP b_total B.\n# TYPE b_total counter\n"
        '# HELP c C.\n# TYPE c histogram\nc_bucket{le="1.0"} 0.0\nc_bucket{le="+Inf"} 0.0\n'
        "c_sum 0.0\nc_count 0.0\n"
    )
    assert Registry().render() == ""


def test_a_labelled_histogram_keeps_one_series_per_label_set() -> None:
    h = Histogram("h", "H.", [0.001, 0.01], ("route",))
    assert h.samples() == []  # nothing before the first observation
    h.observe(0.0005, route="authorize")
    h.observe(0.005, route="commit")
    h.observe_many(np.array([0.02, 0.0001]), route="authorize")
    assert h.samples() == [
        'h_bucket{route="authorize",le="0.001"} 2.0',
        'h_bucket{route="authorize",le="0.01"} 2.0',
        'h_bucket{route="authorize",le="+Inf"} 3.0',
        'h_sum{route="authorize"} 0.0206',
        'h_count{route="authorize"} 3.0',
        'h_bucket{route="commit",le="0.001"} 0.0',
        'h_bucket{route="commit",le="0.01"} 1.0',
        'h_bucket{route="commit",le="+Inf"} 1.0',
        'h_sum{route="commit"} 0.005',
        'h_count{route="commit"} 1.0',
    ]
    assert h.series(route="commit").count == 1
    assert h.series(route="release").count == 0
    with pytest.raises(ValueError, match=r"labels \[\] given, \['route'\] expected"):
        h.observe(0.1)
    with pytest.raises(ValueError, match=r"labels \['path'\] given"):
        h.observe(0.1, path="/x")


def test_http_bench_adds_up_the_routes_buckets() -> None:
    h = WorkerMetrics().http_request_seconds
    for seconds, route in ((0.0004, "authorize"), (0.004, "authorize"), (0.02, "commit")):
        h.observe(seconds, route=route)
    shares = server_buckets("\n".join(h.samples()))
    assert shares["0.5"] == round(1 / 3, 4)
    assert shares["5"] == round(2 / 3, 4)
    assert shares["25"] == 1.0


def test_observe_many_equals_observe_one_by_one() -> None:
    # Binary fractions, so the sum is exact in any order of addition.
    values = np.array([2**-11, 0.25, 0.25, 1.0, 3.0, 64.0, -1.0, 10.0, 2**-7, 2**-4])
    one = Histogram("h", "H.", [0.001, 0.01, 0.1, 1, 10])
    many = Histogram("h", "H.", [0.001, 0.01, 0.1, 1, 10])
    for value in values:
        one.observe(float(value))
    many.observe_many(values)
    many.observe_many(np.array([]))
    assert many.samples() == one.samples()
    assert many.samples() == [
        'h_bucket{le="0.001"} 2.0',
        'h_bucket{le="0.01"} 3.0',
        'h_bucket{le="0.1"} 4.0',
        'h_bucket{le="1.0"} 7.0',
        'h_bucket{le="10.0"} 9.0',
        'h_bucket{le="+Inf"} 10.0',
        "h_sum 77.57080078125",
        "h_count 10.0",
    ]


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    requests = registry.register(Counter("r_total", 'Say "hi"\\bye\nnow.', ("route",)))
    requests.inc(route='a\\b"c"\nd')
    assert registry.render() == (
        '# HELP r_total Say "hi"\\\\bye\\nnow.\n'
        "# TYPE r_total counter\n"
        'r_total{route="a\\\\b\\"c\\"\\nd"} 1.0\n'
    )


def test_gauge_remove_forgets_a_label_set() -> None:
    lag = Gauge("lag", "Lag.", ("partition",))
    lag.set(5, partition=1)
    lag.set(7, partition=2)
    lag.remove(partition=1)
    assert lag.samples() == ['lag{partition="2"} 7.0']
    assert (lag.value(partition=2), lag.value(partition=1)) == (7.0, 0.0)


def test_misuse_is_refused() -> None:
    counter = Counter("x_total", "X.", ("kind",))
    with pytest.raises(ValueError, match=r"labels \['reason'\] given, \['kind'\] expected"):
        counter.inc(reason="DECODE_ERROR")
    with pytest.raises(ValueError, match="cannot add -1, counters only go up"):
        counter.inc(-1, kind="a")
    with pytest.raises(ValueError, match="buckets must be increasing numbers"):
        Histogram("h", "H.", [1, 1])
    with pytest.raises(ValueError, match="cannot observe NaN"):
        Histogram("h", "H.", [1]).observe(float("nan"))
    with pytest.raises(ValueError, match="not a valid Prometheus name"):
        Counter("bad-name", "X.")
    registry = Registry()
    registry.register(Counter("x_total", "X."))
    with pytest.raises(ValueError, match="x_total is already registered"):
        registry.register(Gauge("x_total", "X."))


def test_worker_metrics() -> None:
    metrics = WorkerMetrics()
    metrics.records_in_total.inc(10)
    metrics.records_rejected_total.inc(2, reason="DECODE_ERROR")
    metrics.alerts_total.inc(kind="REJECTS")
    metrics.batch_records.observe_many(np.array([10.0, 250.0]))
    metrics.consumer_lag.set(42, topic="usage", partition=0)
    metrics.http_requests_total.inc(route="/metrics", status=200)
    metrics.http_request_seconds.observe(0.002, route="authorize")
    text = metrics.render()
    for line in (
        "ratewire_records_in_total 10.0",
        "ratewire_records_rated_total 0.0",
        'ratewire_records_rejected_total{reason="DECODE_ERROR"} 2.0',
        'ratewire_alerts_total{kind="REJECTS"} 1.0',
        'ratewire_batch_records_bucket{le="10.0"} 1.0',
        'ratewire_batch_records_bucket{le="1000.0"} 2.0',
        "ratewire_batch_records_sum 260.0",
        'ratewire_consumer_lag{topic="usage",partition="0"} 42.0',
        'ratewire_http_requests_total{route="/metrics",status="200"} 1.0',
        'ratewire_batch_seconds_bucket{le="+Inf"} 0.0',
        'ratewire_http_request_seconds_bucket{route="authorize",le="0.001"} 0.0',
        'ratewire_http_request_seconds_bucket{route="authorize",le="0.0025"} 1.0',
        'ratewire_http_request_seconds_count{route="authorize"} 1.0',
        "ratewire_stream_buffer_full_total 0.0",
    ):
        assert line in text.splitlines()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == [
        "ratewire_records_in_total",
        "ratewire_records_rated_total",
        "ratewire_records_rejected_total",
        "ratewire_records_duplicate_total",
        "ratewire_records_repartitioned_total",
        "ratewire_messages_in_total",
        "ratewire_batches_total",
        "ratewire_batch_failures_total",
        "ratewire_alerts_total",
        "ratewire_batch_records",
        "ratewire_batch_seconds",
        "ratewire_consumer_lag",
        "ratewire_partitions_owned",
        "ratewire_stream_buffer_full_total",
        "ratewire_http_requests_total",
        "ratewire_http_request_seconds",
    ]
