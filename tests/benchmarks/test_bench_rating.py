"""Guide + rate on a million mixed records, one core (target ≥ 5 M records/s)."""

from __future__ import annotations

import numpy as np
from pytest_benchmark.fixture import BenchmarkFixture

from engine.columns import Columns
from tariffs.model import Tariff
from tariffs.rating import PeriodCounters, RatedBatch, Rater

from .conftest import MILLION


def test_guide_and_rate(
    benchmark: BenchmarkFixture, sample_tariff: Tariff, day_columns: Columns
) -> None:
    rater = Rater(sample_tariff)
    rater.rate(day_columns)  # compile outside the measurement

    def run() -> RatedBatch:
        return rater.rate(day_columns, PeriodCounters())

    rated = benchmark.pedantic(run, rounds=5, iterations=1)
    assert len(rated) == MILLION
    # the generator sends ~4 % of calls and SMS to a prefix no plan prices
    unpriced = int(np.count_nonzero(rated.error))
    assert 0 < unpriced < MILLION // 20
    assert int(rated.cost[rated.error == 0].min()) >= 0
