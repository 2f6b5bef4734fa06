"""``ratewire rate`` end to end on a million-record file (target ≥ 500 k records/s).

Measured for the columnar input (the format for producers that want top
speed) and for JSON lines; both write the full JSON-lines rated output with
breakdowns, and rejects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine.columns import Columns
from engine.rate_file import RateSummary, rate_file, write_frames
from engine.wire import columns_to_columnar, encode_jsonl
from loadtest.generator import columns_to_records
from tariffs.model import Tariff
from tariffs.rating import Rater

from .conftest import MILLION

FRAME_RECORDS = 100_000


def _slice(columns: Columns, lo: int, hi: int) -> Columns:
    index = np.arange(lo, min(hi, len(columns)))
    return Columns(
        kind=columns.kind[index],
        cdr_id=columns.cdr_id.take(index),
        tenant=columns.tenant.take(index),
        account=columns.account.take(index),
        category=columns.category.take(index),
        subject=columns.subject.take(index),
        destination=columns.destination.take(index),
        start_us=columns.start_us[index],
        usage=columns.usage[index],
    )


@pytest.fixture(scope="module")
def day_files(tmp_path_factory: pytest.TempPathFactory, day_columns: Columns) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("day")
    columnar = folder / "day.columnar"
    with columnar.open("wb") as out:
        frames = [
            columns_to_columnar(_slice(day_columns, lo, lo + FRAME_RECORDS))
            for lo in range(0, len(day_columns), FRAME_RECORDS)
        ]
        write_frames(out, frames)
    jsonl = folder / "day.jsonl"
    jsonl.write_bytes(encode_jsonl(columns_to_records(day_columns)))
    return {"columnar": columnar, "jsonl": jsonl}


@pytest.mark.parametrize("fmt", ["columnar", "jsonl"])
def test_rate_file(
    benchmark: BenchmarkFixture,
    sample_tariff: Tariff,
    day_files: dict[str, Path],
    tmp_path: Path,
    fmt: str,
) -> None:
    rater = Rater(sample_tariff)

    def run() -> RateSummary:
        return rate_file(
            rater, day_files[fmt], out=tmp_path / "rated.jsonl", rejects=tmp_path / "rejects.jsonl"
        )

    run()  # compile outside the measurement
    summary = benchmark.pedantic(run, rounds=3, iterations=1)
    assert summary.read == MILLION
    assert summary.rated + sum(summary.rejected.values()) == MILLION
    with (tmp_path / "rated.jsonl").open("rb") as rated:
        assert sum(1 for _ in rated) == summary.rated
