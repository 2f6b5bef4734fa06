"""``ratewire rate``: every record in is rated or rejected, and the money adds up.

Generated traffic is written in each input format and rated through the CLI;
the rated amounts are checked record by record against the reference rater
(:func:`tariffs.reference.rate_reference`), with the monthly volume usage the
reference needs computed here from the rules, not by the engine's counters.

The plan is the sample plan with its data tiers moved from 1 GB / 10 GB down
to 5 MB / 50 MB, so that a few thousand records cross both tiers and a wrong
period usage would change the amounts.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pytest

from engine import rate_file as rate_file_module
from engine.cli import EXIT_BAD_INPUT, EXIT_OK, main
from engine.columns import Columns, StrColumn
from engine.rated_output import RatedRecord
from engine.records import DataRecord, EventRecord, Record, SmsRecord, VoiceRecord
from engine.rejects import Reject, read_rejects
from engine.wire import (
    Format,
    columns_to_columnar,
    encode_jsonl,
    encode_record,
    encode_records,
)
from loadtest.generator import TENANT, Scenario, columns_to_records, generate_columns
from tariffs.exceptions import RatingError
from tariffs.loader import load_tariff
from tariffs.model import Basis, Tariff
from tariffs.reference import rate_reference

SAMPLE = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
NANOS = Decimal(10**9)
# 1,000 records: the reference walks every 1 KB increment of a data session
# (several MB each) and every second of a call: about 8 s for these.
TRAFFIC = Scenario(records=1_000, accounts=200, seed=4711)
FRAMES = (0, 300, 750, TRAFFIC.records)  # columnar: three frames of unequal size
SMALL_CHUNK = 16 * 1024  # JSON lines read in many chunks: batches and line numbers carry over
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin: peak


@dataclass(frozen=True)
class Run:
    """One ``ratewire rate --json`` run: exit code, summary and both output files."""

    code: int
    summary: dict[str, Any]
    out: bytes
    rejects: list[Reject]

    @property
    def rated(self) -> list[RatedRecord]:
        decoder = msgspec.json.Decoder(RatedRecord)
        return [decoder.decode(line) for line in self.out.splitlines()]

    def charged(self) -> Decimal:
        return Decimal(self.summary["charged"].get("EUR", "0"))


def rate(tariff: Path, source: Path, workdir: Path, *extra: str) -> Run:
    """Run the CLI on ``source``; outputs go to ``workdir``."""
    out, rejects = workdir / "rated.jsonl", workdir / "rejects.jsonl"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(
            [
                *("rate", "--tariffs", str(tariff), "--in", str(source), "--out", str(out)),
                *("--rejects", str(rejects), "--json", *extra),
            ]
        )
    assert stderr.getvalue() == ""  # no traceback, no progress bar
    summary = msgspec.json.decode(stdout.getvalue())
    written = out.read_bytes() if out.exists() else b""
    rejected = list(read_rejects(rejects)) if rejects.exists() else []
    return Run(code, summary, written, rejected)


# -- the plan, the traffic and the reference's answer ---------------------------------


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = SAMPLE.read_text()
    assert text.count('from = "1GB"') == 1
    assert text.count('from = "10GB"') == 1
    text = text.replace('from = "1GB"', 'from = "5MB"').replace('from = "10GB"', 'from = "50MB"')
    path = tmp_path_factory.mktemp("plan") / "mobile-small-tiers.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def traffic() -> Columns:
    return generate_columns(TRAFFIC)


@pytest.fixture(scope="module")
def records(traffic: Columns) -> list[Record]:
    return columns_to_records(traffic)


@dataclass(frozen=True)
class Expected:
    costs: dict[str, int]  # cdr_id -> nanos, rated records
    errors: dict[str, str]  # cdr_id -> error code, rejected records
    tier_crossings: int  # records the reference priced on more than one volume tier


def reference_outcomes(tariff: Tariff, records: list[Record]) -> Expected:
    """Rate each record with the reference, in file order, tracking monthly volume.

    The volume a record's tier depends on is the usage of the records before it
    (in file order) of the same account and category in the same calendar month
    of the plan's time zone, counting only records that rated at a tiered rate.
    """
    zone = ZoneInfo(tariff.timezone)
    used: dict[tuple[str, str, int, int], int] = {}
    costs: dict[str, int] = {}
    errors: dict[str, str] = {}
    crossings = 0
    for r in records:
        local = r.start.astimezone(zone)
        period = (r.account, r.category, local.year, local.month)
        try:
            rating = rate_reference(
                tariff,
                tenant=r.tenant,
                category=r.category,
                subject=r.subject or r.account,
                destination=r.destination,
                start=r.start,
                usage=r.usage,
                time_based=isinstance(r, VoiceRecord),
                period_usage=used.get(period, 0),
            )
        except RatingError as exc:
            errors[r.cdr_id] = exc.code
            continue
        costs[r.cdr_id] = rating.cost
        if rating.spans and tariff.rates[rating.spans[0].rate].basis is not Basis.RECORD:
            used[period] = used.get(period, 0) + r.usage
            crossings += len({s.step for s in rating.spans}) > 1
    return Expected(costs, errors, crossings)


@pytest.fixture(scope="module")
def expected(plan: Path, records: list[Record]) -> Expected:
    return reference_outcomes(load_tariff(plan), records)


# -- the input files ------------------------------------------------------------------


def take(columns: Columns, start: int, stop: int) -> Columns:
    rows = np.arange(start, stop)

    def strings(column: StrColumn) -> StrColumn:
        return column.take(rows)

    return Columns(
        kind=columns.kind[start:stop],
        cdr_id=strings(columns.cdr_id),
        tenant=strings(columns.tenant),
        account=strings(columns.account),
        category=strings(columns.category),
        subject=strings(columns.subject),
        destination=strings(columns.destination),
        start_us=columns.start_us[start:stop],
        usage=columns.usage[start:stop],
    )


def columnar_frames(columns: Columns) -> list[bytes]:
    return [columns_to_columnar(take(columns, a, b)) for a, b in pairwise(FRAMES)]


def frame_file(payloads: list[bytes]) -> bytes:
    buffer = io.BytesIO()
    rate_file_module.write_frames(buffer, payloads)
    return buffer.getvalue()


FORMATS = ("jsonl", "jsonl-chunked", "json", "msgpack", "columnar")
MESSAGE_FORMATS: dict[str, Format] = {"json": "json", "msgpack": "msgpack"}


def write_input(fmt: str, folder: Path, records: list[Record], columns: Columns) -> Path:
    if fmt.startswith("jsonl"):
        path = folder / "traffic.jsonl"
        path.write_bytes(encode_jsonl(records))
    elif fmt in MESSAGE_FORMATS:
        path = folder / f"traffic.{fmt}"
        path.write_bytes(encode_records(records, MESSAGE_FORMATS[fmt]))
    else:
        path = folder / "traffic.columnar"
        path.write_bytes(frame_file(columnar_frames(columns)))
    return path


def positions(fmt: str, path: Path, columns: Columns) -> Iterator[str]:
    """Where each record of the input file is, as its rejects must name it."""
    if fmt.startswith("jsonl"):
        yield from (f"{path}:{line}" for line in range(1, len(columns) + 1))
    elif fmt in ("json", "msgpack"):
        yield from (f"{path}#{index}" for index in range(len(columns)))
    else:
        offset = 0
        for (a, b), payload in zip(pairwise(FRAMES), columnar_frames(columns), strict=True):
            yield from (f"{path}@{offset}#{row}" for row in range(b - a))
            offset += 4 + len(payload)


@pytest.fixture(scope="module")
def runs(
    plan: Path,
    records: list[Record],
    traffic: Columns,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Run]]:
    """Each format written and rated once; the tests below read the results."""
    out = {}
    for fmt in FORMATS:
        folder = tmp_path_factory.mktemp(fmt)
        source = write_input(fmt, folder, records, traffic)
        with pytest.MonkeyPatch.context() as patch:
            if fmt == "jsonl-chunked":
                patch.setattr(rate_file_module, "CHUNK_BYTES", SMALL_CHUNK)
            out[fmt] = (source, rate(plan, source, folder))
    return out


# -- generated traffic, every format --------------------------------------------------


def test_the_reference_crosses_volume_tiers(expected: Expected) -> None:
    """The traffic is one that period usage matters for (else the check below is weak)."""
    assert expected.tier_crossings >= 3
    assert len(expected.errors) > 10  # calls to "999…": no plan prices them


@pytest.mark.parametrize("fmt", FORMATS)
def test_counts_add_up(fmt: str, runs: dict[str, tuple[Path, Run]], expected: Expected) -> None:
    _, run = runs[fmt]
    s = run.summary
    assert run.code == EXIT_OK
    assert s["read"] == TRAFFIC.records
    assert s["rated"] == len(expected.costs)
    assert s["rejected"] == len(expected.errors)
    assert s["read"] == s["rated"] + s["rejected"]
    assert s["rejected_by_reason"] == {"UNAUTHORIZED_DESTINATION": len(expected.errors)}
    assert run.out.count(b"\n") == s["rated"]
    assert len(run.rejects) == s["rejected"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_amounts_match_the_reference(
    fmt: str, runs: dict[str, tuple[Path, Run]], expected: Expected
) -> None:
    _, run = runs[fmt]
    rated = run.rated
    assert {r.cdr_id: r.cost_nanos for r in rated} == expected.costs
    assert all(Decimal(r.cost) * NANOS == r.cost_nanos for r in rated)
    total = sum(expected.costs.values())
    assert sum(r.cost_nanos for r in rated) == total
    assert run.charged() * NANOS == total


@pytest.mark.parametrize("fmt", FORMATS)
def test_rejects_name_reason_and_position(
    fmt: str, runs: dict[str, tuple[Path, Run]], expected: Expected, traffic: Columns
) -> None:
    source, run = runs[fmt]
    where = dict(zip(traffic.cdr_id.to_list(), positions(fmt, source, traffic), strict=True))
    destination = dict(zip(traffic.cdr_id.to_list(), traffic.destination.to_list(), strict=True))
    seen = {}
    for reject in run.rejects:
        cdr_id = msgspec.json.decode(reject.raw)["cdr_id"]
        seen[cdr_id] = reject.reason
        assert reject.source == where[cdr_id]
        assert f"→ {destination[cdr_id]} (cdr_id {cdr_id}," in reject.message
        assert destination[cdr_id].startswith("999")
    assert seen == expected.errors


def test_every_format_gives_the_same_output(runs: dict[str, tuple[Path, Run]]) -> None:
    outputs = {fmt: run.out for fmt, (_, run) in runs.items()}
    reference = outputs.pop("jsonl")
    assert reference.count(b"\n") > 900
    chunked, _ = runs["jsonl-chunked"]
    assert chunked.stat().st_size > 10 * SMALL_CHUNK  # so it was rated in many batches
    for fmt, out in outputs.items():
        assert out == reference, fmt
    reasons = {fmt: [r.reason for r in run.rejects] for fmt, (_, run) in runs.items()}
    assert len({tuple(r) for r in reasons.values()}) == 1


def test_running_twice_rewrites_the_outputs(
    plan: Path, runs: dict[str, tuple[Path, Run]], tmp_path: Path
) -> None:
    source, first = runs["jsonl"]
    (tmp_path / "rated.jsonl").write_bytes(b"stale rated line\n")
    (tmp_path / "rejects.jsonl").write_bytes(b"stale reject\n")

    def timeless(summary: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in summary.items() if k not in ("seconds", "records_per_second")}

    for _ in range(2):
        run = rate(plan, source, tmp_path)
        assert run.out == first.out
        assert run.rejects == first.rejects
        assert timeless(run.summary) == timeless(first.summary)


# -- bad lines in a JSON-lines file ---------------------------------------------------


def voice(cdr_id: str, destination: str, usage: int) -> VoiceRecord:
    return VoiceRecord(
        cdr_id=cdr_id, tenant=TENANT, account="acc1", destination=destination, start=START,
        usage=usage,
    )  # fmt: skip


GOOD_HEAD = b'{"type":"voice","tenant":"ratewire.demo","account":"acc1",'
MIXED: list[tuple[bytes, str | None, str]] = [
    # (line, reject reason or None for a good line, what the reject's message says)
    (encode_record(voice("g1", "4930123456", 45), "json"), None, "0.12"),  # as in test_cost
    (GOOD_HEAD + b'"cdr_id":"t1","start":"2026-11-02T08:00:00Z","us', "DECODE_ERROR",
     "Input data was truncated"),
    (encode_record(SmsRecord(cdr_id="g2", tenant=TENANT, account="acc1",
                             destination="4915112345", start=START, usage=3), "json"),
     None, "0.27"),
    (GOOD_HEAD + b'"cdr_id":"w1","start":"2026-11-02T08:00:00Z","usage":"sixty"}',
     "VALIDATION_ERROR", "field usage: Expected `int`, got `str`"),
    (GOOD_HEAD + b'"cdr_id":"n1","start":"2026-11-02T08:00:00Z","usage":-5}',
     "VALIDATION_ERROR", "field usage: Expected `int` >= 0, got -5"),
    (GOOD_HEAD + b'"cdr_id":"z1","start":"2026-11-02T09:00:00","usage":5}',
     "VALIDATION_ERROR", "field start: Expected `datetime` with a timezone component"),
    (GOOD_HEAD + b'"start":"2026-11-02T08:00:00Z","usage":5}',
     "VALIDATION_ERROR", "field cdr_id: is required but missing"),
    (b"\x00\x9f\x92\x96\xff\xfe binary\x07garbage\r", "DECODE_ERROR", "JSON is malformed"),
    (GOOD_HEAD + b'"cdr_id":"\xff\xfeid","start":"2026-11-02T08:00:00Z","usage":5}',
     "DECODE_ERROR", "a string is not valid UTF-8 (invalid start byte)"),
    (b"", None, ""),  # a blank line: skipped, not a record
    (b'{"type":"fax","cdr_id":"x1","tenant":"ratewire.demo","account":"acc1",'
     b'"start":"2026-11-02T08:00:00Z","usage":5}',
     "VALIDATION_ERROR", "field type: Invalid value 'fax'"),
    (encode_record(voice("g3", "9991234567", 60), "json"), "UNAUTHORIZED_DESTINATION",
     "ratewire.demo/call/acc1 → 9991234567 (cdr_id g3,"),
    (b"  \t", None, ""),  # whitespace only: skipped too
    (encode_record(DataRecord(cdr_id="g4", tenant=TENANT, account="acc1", start=START,
                              usage=1500), "json"), None, "0.0001"),
    (encode_record(EventRecord(cdr_id="g5", tenant=TENANT, account="acc1", category="video",
                               start=START, usage=1), "json"), None, "0.49"),
]  # fmt: skip


@pytest.mark.parametrize("chunk", [rate_file_module.CHUNK_BYTES, 16], ids=["one-chunk", "16-byte"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_bad_lines_are_rejected_where_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, final_newline: bool
) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b"\n".join(line for line, _, _ in MIXED) + b"\n" * final_newline)
    monkeypatch.setattr(rate_file_module, "CHUNK_BYTES", chunk)
    run = rate(SAMPLE, source, tmp_path)

    bad = [(n, reason, says) for n, (_, reason, says) in enumerate(MIXED, 1) if reason]
    good = [says for line, reason, says in MIXED if line.strip() and not reason]
    assert run.code == EXIT_OK
    assert run.summary["read"] == len(bad) + len(good) == 13
    assert run.summary["rated"] == len(good) == 4
    assert run.summary["rejected"] == len(bad) == 9
    assert run.summary["rejected_by_reason"] == {
        "DECODE_ERROR": 3, "UNAUTHORIZED_DESTINATION": 1, "VALIDATION_ERROR": 5,
    }  # fmt: skip
    assert [(r.source, r.reason) for r in run.rejects] == [
        (f"{source}:{n}", reason) for n, reason, _ in bad
    ]
    for reject, (n, _, says) in zip(run.rejects, bad, strict=True):
        assert says in reject.message, (n, reject.message)
        if reject.reason != "UNAUTHORIZED_DESTINATION":
            assert reject.raw == MIXED[n - 1][0]  # the line itself, to fix and replay
    assert [r.cost for r in run.rated] == good
    assert [r.cdr_id for r in run.rated] == ["g1", "g2", "g4", "g5"]
    assert run.charged() == Decimal("0.12") + Decimal("0.27") + Decimal("0.0001") + Decimal("0.49")


def test_blank_lines_do_not_shift_positions(tmp_path: Path) -> None:
    """All lines decode (the fast path), so the position of the unratable one is worked out."""
    lines = [
        b"",
        encode_record(voice("a", "4930123456", 60), "json"),
        b"   ",
        b"",
        encode_record(voice("b", "9990000000", 60), "json"),
        encode_record(voice("c", "4930123456", 60), "json"),
    ]
    source = tmp_path / "blanks.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    run = rate(SAMPLE, source, tmp_path)
    assert (run.summary["read"], run.summary["rated"], run.summary["rejected"]) == (3, 2, 1)
    assert [(r.source, r.reason) for r in run.rejects] == [
        (f"{source}:5", "UNAUTHORIZED_DESTINATION")
    ]


# -- whole-file problems --------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".columnar"])
def test_empty_file_rates_nothing(tmp_path: Path, suffix: str) -> None:
    source = tmp_path / f"empty{suffix}"
    source.write_bytes(b"")
    run = rate(SAMPLE, source, tmp_path)
    assert run.code == EXIT_OK
    assert (run.summary["read"], run.summary["rated"], run.summary["rejected"]) == (0, 0, 0)
    assert run.summary["charged"] == {}
    assert (run.out, run.rejects) == (b"", [])
    assert (tmp_path / "rated.jsonl").exists()


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_empty_message_is_one_reject(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / f"empty.{fmt}"
    source.write_bytes(b"")
    run = rate(SAMPLE, source, tmp_path)
    assert run.code == EXIT_OK
    assert (run.summary["read"], run.summary["rated"], run.summary["rejected"]) == (1, 0, 1)
    [reject] = run.rejects
    assert (reject.source, reject.index, reject.reason, reject.message, reject.raw) == (
        str(source),
        None,  # the whole message
        "DECODE_ERROR",
        "message is empty",
        b"",
    )


def rate_error(tmp_path: Path, source: Path, *extra: str) -> dict[str, Any]:
    run = rate(SAMPLE, source, tmp_path, *extra)
    assert run.code == EXIT_BAD_INPUT
    return run.summary  # with --json, the error


def test_missing_input_file(tmp_path: Path) -> None:
    source = tmp_path / "nowhere.jsonl"
    error = rate_error(tmp_path, source)
    assert error == {"error": "INVALID_ARGUMENT", "message": f"--in {source}: no such file"}
    assert not (tmp_path / "rated.jsonl").exists()
    assert not (tmp_path / "rejects.jsonl").exists()


def test_unknown_extension_needs_format(tmp_path: Path) -> None:
    source = tmp_path / "cdrs.txt"
    source.write_bytes(encode_jsonl([voice("a", "4930123456", 45)]))
    error = rate_error(tmp_path, source)
    assert error == {
        "error": "INVALID_ARGUMENT",
        "message": f"--in {source}: cannot tell the format from '.txt'; give --format",
    }
    assert not (tmp_path / "rated.jsonl").exists()
    run = rate(SAMPLE, source, tmp_path, "--format", "jsonl")
    assert (run.code, run.summary["rated"], run.charged()) == (EXIT_OK, 1, Decimal("0.12"))


def test_missing_tariff(tmp_path: Path) -> None:
    source = tmp_path / "cdrs.jsonl"
    source.write_bytes(encode_jsonl([voice("a", "4930123456", 45)]))
    run = rate(tmp_path / "no-plan.toml", source, tmp_path)
    assert run.code == EXIT_BAD_INPUT
    assert run.summary["error"] == "TARIFF_ERROR"
    assert not (tmp_path / "rated.jsonl").exists()


def test_truncated_columnar_payload(plan: Path, tmp_path: Path, traffic: Columns) -> None:
    """A file cut inside its last frame: that tail is one reject, the whole frames are rated."""
    frames = columnar_frames(traffic)
    whole = frame_file(frames)
    source = tmp_path / "cut.columnar"
    source.write_bytes(whole[:-10])  # the last frame's payload is cut short
    last = 4 + len(frames[0]) + 4 + len(frames[1])
    run = rate(plan, source, tmp_path)
    assert run.code == EXIT_OK
    tail = [r for r in run.rejects if r.reason == "DECODE_ERROR"]
    assert [(r.source, r.raw) for r in tail] == [(f"{source}@{last}", whole[last:-10])]
    size = len(frames[2])
    assert tail[0].message == f"columnar file: frame of {size} bytes is truncated after {size - 10}"
    assert run.summary["read"] == FRAMES[2] + 1
    assert run.summary["read"] == run.summary["rated"] + run.summary["rejected"]


def test_truncated_columnar_header(plan: Path, tmp_path: Path, traffic: Columns) -> None:
    whole = frame_file(columnar_frames(traffic))
    source = tmp_path / "cut.columnar"
    source.write_bytes(whole + b"\x10\x00")  # the file ends inside a frame header
    run = rate(plan, source, tmp_path)
    assert run.code == EXIT_OK
    tail = [r for r in run.rejects if r.reason == "DECODE_ERROR"]
    assert [(r.source, r.raw, r.message) for r in tail] == [
        (
            f"{source}@{len(whole)}",
            b"\x10\x00",
            "columnar file: truncated frame header (2 of 4 bytes)",
        )
    ]
    assert run.summary["read"] == len(traffic) + 1


def test_corrupt_columnar_frame_is_one_reject(
    plan: Path, tmp_path: Path, traffic: Columns, expected: Expected
) -> None:
    """A frame whose payload is not a columnar batch: rejected whole; the others rated."""
    frames = columnar_frames(traffic)
    garbage = b"\xc1" * 100  # 0xc1 is never valid MessagePack
    source = tmp_path / "corrupt.columnar"
    source.write_bytes(frame_file([frames[0], garbage, frames[2]]))
    run = rate(plan, source, tmp_path)
    kept = set(traffic.cdr_id.to_list()[: FRAMES[1]] + traffic.cdr_id.to_list()[FRAMES[2] :])
    assert run.code == EXIT_OK
    assert run.summary["read"] == len(kept) + 1
    assert run.summary["read"] == run.summary["rated"] + run.summary["rejected"]
    corrupt = [r for r in run.rejects if r.reason == "DECODE_ERROR"]
    assert [(r.source, r.raw) for r in corrupt] == [(f"{source}@{4 + len(frames[0])}", garbage)]
    assert corrupt[0].message.startswith("columnar batch: ")
    unratable = {msgspec.json.decode(r.raw)["cdr_id"] for r in run.rejects if r not in corrupt}
    assert unratable == expected.errors.keys() & kept
    assert {r.cdr_id for r in run.rated} == kept - unratable
    # the first frame is rated as in the whole file (later ones miss the lost frame's
    # data volume, which moves their tiers)
    before = set(traffic.cdr_id.to_list()[: FRAMES[1]])
    assert {r.cdr_id: r.cost_nanos for r in run.rated if r.cdr_id in before} == {
        c: n for c, n in expected.costs.items() if c in before
    }
