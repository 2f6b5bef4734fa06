"""Shared, deterministic inputs for the benchmarks (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.columns import Columns
from loadtest.generator import Scenario, generate_columns
from tariffs.loader import load_tariff
from tariffs.model import Tariff

SAMPLE_PLAN = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
MILLION = 1_000_000


@pytest.fixture(scope="session")
def sample_tariff() -> Tariff:
    return load_tariff(SAMPLE_PLAN)


@pytest.fixture(scope="session")
def day_columns() -> Columns:
    """A million mixed records (voice, SMS, data, video) of one day, seeded."""
    return generate_columns(Scenario(records=MILLION, accounts=100_000))
