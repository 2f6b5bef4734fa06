"""Latency histograms: bulk recording reads back exactly what hdrh itself would say."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from loadtest.histogram import DIGITS, HIGHEST_US, LOWEST_US, Intervals, Latency
from tests.conftest import SeededRandom

EDGES = [0, 1, 2047, 2048, 2049, 4095, 4096, 1_000_000, 999_999_999, HIGHEST_US]


def _reference(values: np.ndarray) -> HdrHistogram:
    ref = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
    for v in values.tolist():
        ref.record_value(v)
    return ref


def _values(rng: SeededRandom) -> np.ndarray:
    drawn = rng.numpy().lognormal(8, 2.5, size=20_000).astype(np.int64)
    return np.concatenate([np.minimum(drawn, HIGHEST_US), EDGES]).astype(np.int64)


def test_bulk_recording_matches_the_library_value_by_value(rng: SeededRandom) -> None:
    values = _values(rng)
    ref = _reference(values)
    mine = Latency()
    mine.record_many(values[:777])  # in two calls, as a reader records batch after batch
    mine.record_many(values[777:])
    assert np.array_equal(np.ctypeslib.as_array(ref.counts), np.ctypeslib.as_array(mine.hdr.counts))
    for p in (0, 0.1, 1, 25, 50, 90, 99, 99.9, 99.99, 100):
        assert mine.value_at(p) == ref.get_value_at_percentile(p), p
    assert mine.count == ref.get_total_count() == len(values)
    assert mine.max == ref.get_max_value()
    assert mine.min == ref.get_min_value()
    assert mine.mean == pytest.approx(ref.get_mean_value(), rel=1e-12)


def test_one_value_at_a_time_matches_the_library_too(rng: SeededRandom) -> None:
    values = _values(rng)[:3000]
    ref = _reference(values)
    mine = Latency()
    for v in values.tolist():
        mine.record(v)
    assert np.array_equal(np.ctypeslib.as_array(ref.counts), np.ctypeslib.as_array(mine.hdr.counts))
    assert (mine.count, mine.max, mine.min) == (
        len(values),
        ref.get_max_value(),
        ref.get_min_value(),
    )


def test_three_significant_digits() -> None:
    h = Latency()
    h.record_many([123_456] * 10)
    assert h.value_at(50) == pytest.approx(123_456, rel=1e-3)
    h = Latency()
    h.record_many([1, 2, 3, 2047])  # below 2,048 µs every microsecond is its own bucket
    assert [h.value_at(p) for p in (25, 50, 75, 100)] == [1, 2, 3, 2047]


def test_out_of_range_values_are_clamped_not_dropped() -> None:
    h = Latency()
    h.record_many([-5.0, 10 * HIGHEST_US])
    assert h.count == 2
    assert h.min == 0
    assert h.max >= HIGHEST_US


def test_summary_is_in_milliseconds() -> None:
    h = Latency()
    h.record_many(np.arange(1, 1001) * 1000)  # 1 ms … 1,000 ms, one each
    s = h.summary()
    assert s["count"] == 1000
    assert s["p50"] == pytest.approx(500, rel=1e-3)
    assert s["p90"] == pytest.approx(900, rel=1e-3)
    assert s["p99"] == pytest.approx(990, rel=1e-3)
    assert s["p99.9"] == pytest.approx(999, rel=1e-3)
    assert s["max"] == pytest.approx(1000, rel=1e-3)
    assert s["mean"] == pytest.approx(500.5, rel=1e-3)


def test_an_empty_histogram_reads_zero() -> None:
    h = Latency()
    assert (h.count, h.max, h.min, h.mean, h.value_at(99)) == (0, 0, 0, 0.0, 0)


def test_encode_decode_and_merge(rng: SeededRandom) -> None:
    values = _values(rng)
    a, b = Latency(), Latency()
    a.record_many(values[::2])
    b.record_many(values[1::2])
    text = a.encode()
    assert text.startswith("HISTF")
    back = Latency.decode(text)
    assert back.count == a.count
    assert back.value_at(99) == a.value_at(99)
    merged = back.merge(b)
    whole = Latency()
    whole.record_many(values)
    assert merged.count == len(values)
    for p in (50, 90, 99, 99.9, 100):
        assert merged.value_at(p) == whole.value_at(p)


def test_intervals_keep_each_second_apart_and_merge_a_range() -> None:
    iv = Intervals()
    iv.record_many([2, 0, 0, 1, 2, 2], [500, 100, 100, 300, 500, 700])  # exact below 2,048
    assert iv.seconds() == [0, 1, 2]
    assert [h.count for _, h in iv] == [2, 1, 3]
    assert iv.at(2).value_at(100) == 700
    assert iv.total(start=1).count == 4
    assert iv.total(start=1).value_at(0) == 300
    assert iv.total(stop=1).max == 100
    encoded = iv.encoded(4)
    assert [Latency.decode(e).count if e else 0 for e in encoded] == [2, 1, 3, 0]


def test_curve_reaches_as_many_nines_as_the_count_resolves() -> None:
    h = Latency()
    h.record_many(np.arange(1, 10_001))
    ps, values = h.curve()
    assert ps[0] == 0
    assert ps[-1] == pytest.approx(99.99)  # 10,000 values: four nines
    assert np.all(np.diff(values) >= 0)
