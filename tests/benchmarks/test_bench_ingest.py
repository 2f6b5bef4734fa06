"""``ratewire ingest --format asterisk`` on a million-line ``Master.csv`` (target ≥ 300 k lines/s).

Measured end to end on one core: read the file, mediate it to columns
(:mod:`engine.mediation.asterisk_fast`), rate the batch, write the rated JSON
lines and the rejects. The file mixes every disposition, German fixed and
mobile numbers (priced by ``tariffs/samples/mobile.toml``), quoted caller ids
with commas and doubled quotes, a few repeated uniqueids, blank and malformed
lines.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from engine.ingest import FileSummary, Ingestor, Mediation
from engine.rated_output import RatedWriter
from engine.rejects import RejectSink
from tariffs.model import Tariff
from tariffs.rating import Rater

from .conftest import MILLION

TENANT = "ratewire.demo"
MALFORMED = 1_000  # every 1000th line: short, unterminated quote or a bad time, in turn
BLANKS = 997  # every 997th line is blank
DISPOSITIONS = ("ANSWERED",) * 7 + ("NO ANSWER", "BUSY", "FAILED")


def _line(i: int, rng: random.Random) -> str:
    if i % BLANKS == 0:
        return ""
    disposition = DISPOSITIONS[i % len(DISPOSITIONS)]
    dst = f"49{rng.choice(('30', '89', '151', '160', '176'))}{rng.randrange(10**6, 10**7)}"
    second = i * 7 % 86_400 * 30  # spread over March 2026 (the sample plan starts in 2026)
    day, rest = divmod(second, 86_400)
    hour, rest = divmod(rest, 3600)
    minute, sec = divmod(rest, 60)
    answer = f"2026-03-{day % 30 + 1:02d} {hour:02d}:{minute:02d}:{sec:02d}"
    billsec = rng.randrange(0, 900) if disposition == "ANSWERED" else 0
    uniqueid = f"{1_772_323_200 + second}.{i % 5000 if i % 50_000 == 1 else i}"  # a few repeats
    line = (
        f'"acc{i % 100_000}","{2000 + i % 7000}","{dst}","from-internal",'
        f'"""Caller, {i % 97}"" <{2000 + i % 7000}>","SIP/a-{i:08x}","SIP/b-{i:08x}","Dial",'
        f'"SIP/{dst},30","{answer}","{answer}","{answer}",{billsec + 5},{billsec},'
        f'"{disposition}","DOCUMENTATION","{uniqueid}",""'
    )
    if i % MALFORMED == 1:
        return (line.rsplit(",", 2)[0], line.replace('"DOCUMENTATION"', '"DOCUMENTATION'),
                line.replace(answer, "2026-03-32 25:00:00"))[(i // MALFORMED) % 3]  # fmt: skip
    return line


@pytest.fixture(scope="module")
def master_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(6)
    path = tmp_path_factory.mktemp("asterisk") / "Master.csv"
    path.write_text("".join(_line(i, rng) + "\r\n" for i in range(MILLION)))
    return path


def test_ingest_asterisk(
    benchmark: BenchmarkFixture, sample_tariff: Tariff, master_csv: Path, tmp_path: Path
) -> None:
    rater = Rater(sample_tariff)
    mediation = Mediation("asterisk", TENANT, "Europe/Berlin")

    def run() -> FileSummary:
        with (
            RejectSink(tmp_path / "rejects.jsonl") as sink,
            RatedWriter(tmp_path / "rated.jsonl", rater.compiled) as writer,
        ):
            return Ingestor(rater, mediation, writer, sink).ingest(master_csv)

    run()  # compile outside the measurement
    (tmp_path / "rejects.jsonl").unlink()
    summary = benchmark.pedantic(run, rounds=3, iterations=1)  # type: ignore[no-untyped-call]
    skipped, rejected = sum(summary.skipped.values()), sum(summary.rejected.values())
    assert summary.lines == MILLION == summary.parsed + skipped + rejected
    assert summary.parsed == summary.rated + sum(summary.rating_rejected.values())
    assert summary.balanced()
    assert summary.skipped["blank"] == MILLION // BLANKS + 1
    assert 0 < rejected < 2 * MILLION // MALFORMED
    assert summary.rated > 0.6 * MILLION
    assert summary.charged["EUR"] > 0
    with (tmp_path / "rated.jsonl").open("rb") as rated:
        assert sum(1 for _ in rated) == summary.rated
    if benchmark.stats is not None:  # None when benchmarks are disabled (run once, in CI)
        benchmark.extra_info["lines_per_second"] = MILLION / benchmark.stats.stats.median
