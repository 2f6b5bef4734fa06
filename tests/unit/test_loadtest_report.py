"""Load test reports: numbers in, the same numbers out (JSON, Markdown, compare, live view).

Also the pieces that produce a report's numbers without a broker: matching
rated lines and rejects to what was sent (:mod:`loadtest.tally`), the
per-second series, and the command line's durations.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
from pathlib import Path

import msgspec
import numpy as np
import pytest

from engine import cli_loadtest
from engine.cli_loadtest import parse_duration
from engine.columns import StrColumn
from engine.exceptions import UsageInputError
from loadtest import report as reports
from loadtest.compare import compare_files, regressions, render, rows
from loadtest.exceptions import LoadTestError
from loadtest.generator import Scenario, generate_traffic
from loadtest.histogram import Intervals, Latency
from loadtest.live import Live, Snapshot
from loadtest.live import render as live_line
from loadtest.report import Check, Report, Series, Timeline, markdown, series_of, warm_seconds
from loadtest.schedule import SendLog
from loadtest.sweep import Limits, judge, rates
from loadtest.tally import IdIndex, Tally, plan_traffic, prefixed, rated_ids


def _hist(values_us: list[int]) -> Latency:
    h = Latency()
    h.record_many(values_us)
    return h


def make_report(scale: int = 1, done: float = 1000.0, rejected: int = 40) -> Report:
    """A fixed kafka report: latencies 1 … 1,000 µs (times ``scale``), exact below 2,048 µs."""
    rated = _hist([v * scale for v in range(1, 1001)])
    return Report(
        kind="kafka",
        started="2026-11-25T12:00:00+00:00",
        config={"rate": 1000.0, "shape": "batch", "format": "msgpack", "workers": 1},
        seconds={"planned": 10.0},
        warmup=2.0,
        counts={
            "planned": 10_000,
            "sent": 10_000,
            "rated": 9_960,
            "rejected": rejected,
            "missing": 0,
            "duplicates_sent": 20,
            "duplicates_caught": 20,
        },
        rejects={"DUPLICATE": 20, "UNAUTHORIZED_DESTINATION": rejected - 20},
        expected_rejects={"DUPLICATE": 20, "UNAUTHORIZED_DESTINATION": 20},
        throughput={"target": 1000.0, "sent": 1000.0, "done": done},
        latency_ms={"rated": rated.summary()},
        histograms={"rated": rated.encode()},
        behind_ms={"p50": 0.1, "p99": 0.5, "max": 1.0},
        lag={"max": 1200.0 * scale},
        series=Series(
            second=[0, 1],
            target=[1000, 1000],
            sent=[1000, 1000],
            done=[990, 1000],
            rejected=[4, 4],
            p50_ms=[0.5, 0.5],
            p99_ms=[0.99, 0.99],
            max_ms=[1.0, 1.0],
            lag=[0, 1200],
            behind_ms=[0.2, 0.3],
        ),
        checks=[Check("records missing", 0, 0), Check("p99 latency, ms", 0.99 * scale, 1.5)],
    )


# -- the report ------------------------------------------------------------------------------
def test_summary_numbers_are_the_histograms() -> None:
    r = make_report()
    assert r.latency_ms["rated"] == {"count": 1000, "mean": 0.5, "p50": 0.5, "p90": 0.9,
                                     "p99": 0.99, "p99.9": 0.999, "max": 1.0}  # fmt: skip
    assert r.passed


def test_markdown_shows_the_verdict_summary_and_tables() -> None:
    text = markdown(make_report())
    assert text.startswith("# Load test: Kafka stream — PASS\n")
    assert "| target rate | 1,000 /s |" in text
    assert "| rated | 1,000 /s (9,960 records) |" in text
    assert "| duplicates sent / caught | 20 / 20 |" in text
    assert "| latency p50 / p99 / max | 0.50 / 0.99 / 1.00 ms |" in text
    assert "| rated | 1,000 | 0.50 | 0.50 | 0.90 | 0.99 | 1.00 | 1.00 |" in text
    assert "| p99 latency, ms | 0.99 | <= 1.50 | pass |" in text
    assert "| UNAUTHORIZED_DESTINATION | 20 | 20 |" in text
    failing = markdown(make_report(scale=2))
    assert failing.startswith("# Load test: Kafka stream — FAIL\n")
    assert "| p99 latency, ms | 1.98 | <= 1.50 | **FAIL** |" in failing


def test_brief_names_each_failed_check() -> None:
    text = reports.brief(make_report(scale=2))
    assert text.splitlines()[0] == "FAIL  kafka 1,000 records/s for 10 s (batch msgpack)"
    assert "  FAIL p99 latency, ms: 1.98 (limit <= 1.5)" in text


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    written = reports.write(make_report(), tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["lag.png", "latency.png", "percentiles.png", "report.json", "report.md",
                     "throughput.png"]  # fmt: skip
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = reports.load(tmp_path)
    assert back.counts == make_report().counts
    assert back.plots == ["throughput.png", "latency.png", "percentiles.png", "lag.png"]
    assert "![latency](latency.png)" in (tmp_path / "report.md").read_text()
    assert Latency.decode(back.histograms["rated"]).value_at(99) == 990


def test_load_names_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(LoadTestError, match=r"is not a load test report\.json"):
        reports.load(bad)
    with pytest.raises(LoadTestError, match="cannot read report"):
        reports.load(tmp_path / "missing.json")


# -- compare -----------------------------------------------------------------------------------
def test_compare_recomputes_percentiles_and_marks_regressions(tmp_path: Path) -> None:
    a, b = make_report(), make_report(scale=2, done=850.0, rejected=60)
    by_name = {row.name: row for row in rows(a, b)}
    assert (by_name["latency p50 ms"].a, by_name["latency p50 ms"].b) == (0.5, 1.0)
    assert by_name["latency p99 ms"].ratio == pytest.approx(2.0)
    assert by_name["rated /s"].ratio == pytest.approx(0.85)
    assert by_name["rejected %"].a == pytest.approx(0.4)
    assert by_name["rejected %"].b == pytest.approx(0.6)
    assert regressions(a, b) == [
        "rated /s", "latency p50 ms", "latency p90 ms", "latency p99 ms", "latency p99.9 ms",
        "latency max ms", "rejected %", "lag max (records)",
    ]  # fmt: skip
    assert regressions(b, a) == []  # the other way round, everything improved
    lines = render(a, b, ("before", "after")).splitlines()
    assert lines[0] == "metric                before  after   b/a"
    assert lines[3] == "rated /s               1,000    850  0.85  REGRESSION"
    assert lines[6] == "latency p99 ms          0.99   1.98  2.00  REGRESSION"
    assert lines[9] == "sender behind p99 ms    0.50   0.50  1.00"
    assert lines[-1].startswith("8 regression(s) beyond 10%: rated /s, latency p50 ms")
    ra, rb = tmp_path / "a", tmp_path / "b"
    reports.write(a, ra, plots=False)
    reports.write(b, rb, plots=False)
    table, found = compare_files(ra / "report.json", rb, markdown=True)
    assert table.splitlines()[0] == "| metric | a | b | b/a |  |"
    assert "| latency p99 ms | 0.99 | 1.98 | 2.00 | REGRESSION |" in table
    assert len(found) == 8


def test_compare_refuses_reports_of_different_kinds() -> None:
    http = msgspec.structs.replace(make_report(), kind="http")
    with pytest.raises(LoadTestError, match="cannot compare a kafka report"):
        render(make_report(), http, ("a", "b"))


def test_a_count_that_must_stay_zero_regresses_on_any_rise() -> None:
    a = make_report()
    b = msgspec.structs.replace(make_report(), counts={**a.counts, "missing": 1})
    assert "missing" in regressions(a, b)


# -- series, timeline --------------------------------------------------------------------------
def test_series_from_the_send_log_and_the_timeline() -> None:
    log = SendLog(start=100.0, due=100.0 + np.array([0.0, 0.5, 1.0, 1.5]),
                  sent=100.0 + np.array([0.001, 0.6, 1.0, 2.2]))  # fmt: skip
    latency = Intervals()
    latency.record_many([0, 0, 1], [100, 300, 200])  # µs: exact below 2,048
    timeline = Timeline()
    timeline.count("done", [0, 1, 1])
    timeline.count_many("rejected", np.array([2, 2]))
    timeline.set("lag", 0, 7)
    s = series_of(log, latency, timeline, 2.0, weights=np.array([10, 10, 10, 10]))
    assert s.second == [0, 1, 2]
    assert s.target == [20.0, 20.0, 0.0]
    assert s.sent == [20.0, 10.0, 10.0]  # the last item went out 0.7 s late
    assert s.done == [1.0, 2.0, 0.0]
    assert s.rejected == [0.0, 0.0, 2.0]
    assert s.lag == [7.0, 7.0, 7.0]  # sampled values carry on
    assert s.p99_ms == [0.3, 0.2, 0.0]
    assert s.behind_ms == [100.0, 0.0, 700.0]  # worst per second in which it was sent


# -- matching outputs --------------------------------------------------------------------------
def test_rated_ids_cut_from_the_lines_without_decoding() -> None:
    value = (b'{"cdr_id":"r1-7","cost":"0.1"}\n{"cdr_id":"r1-10","x":1}\n'
             b'{"tenant":"t","cdr_id":"odd"}\n{"cdr_id":"last"}')  # fmt: skip
    ids, slow = rated_ids(value)
    assert ids.to_list() == ["r1-7", "r1-10", "last"]
    assert slow == [b'{"tenant":"t","cdr_id":"odd"}']
    empty, none = rated_ids(b"")
    assert (len(empty), none) == (0, [])
    long = "x" * 100  # longer than the window searched for its closing quote
    ids, _ = rated_ids(b'{"cdr_id":"' + long.encode() + b'","a":"b"}\n{"cdr_id":"s"}\n')
    assert ids.to_list() == [long, "s"]


@pytest.mark.parametrize("first", [0, 7, 10**12])
def test_id_index_finds_first_rows_by_number_as_the_hash_table_does(first: int) -> None:
    numbers = [first + n for n in (0, 1, 2, 1, 5, 3, 4, 2)]  # resends of 1 and 2
    planned = StrColumn.from_strings([f"ab12-2026-{n:09d}" for n in numbers])
    index = IdIndex(planned)
    outputs = [f"ab12-2026-{first + n:09d}" for n in (2, 1, 5, 0, 4, 3)] + [
        f"zz99-2026-{first + 1:09d}",  # another run
        f"ab12-2026-{first + 6:09d}",  # a number this run did not send
        f"ab12-2026-{first:09d}x", "ab12-2026-", "ab12-2026", "",  # not of the shape
        f"ab12-2026-{first + 10**18:019d}",  # too many digits for the array
        f"ab12-2026-0{first + 5:09d}",  # a planned number with one more zero in front
    ]  # fmt: skip
    rows = index.rows(StrColumn.from_strings(outputs)).tolist()
    assert rows == [2, 1, 4, 0, 6, 5, -1, -1, -1, -1, -1, -1, -1, -1]
    assert index._table is None  # took the array path


def test_id_index_of_ids_without_a_shared_numbered_shape_uses_the_table() -> None:
    planned = StrColumn.from_strings(["a-1", "b-2", "x", "a-1", "a-3"])
    index = IdIndex(planned)
    assert index._table is not None
    got = index.rows(StrColumn.from_strings(["a-3", "x", "a-1", "b-2", "a-2", ""]))
    assert got.tolist() == [4, 2, 0, 1, -1, -1]


def test_tally_counts_each_rated_row_once_and_notes_repeats_and_strangers() -> None:
    scenario = Scenario(records=20, accounts=5)
    traffic = generate_traffic(scenario, 20)
    planned = plan_traffic(traffic, rate=0, shape="batch", fmt="msgpack", partitions=2,
                           size=5, run_id="r1")  # fmt: skip
    tally = Tally(planned, start=0.0)
    ids = [f"r1-{i}" for i in traffic.columns.cdr_id.to_list()]

    def lines(*names: str) -> bytes:
        return b"".join(b'{"cdr_id":"' + n.encode() + b'","x":1}\n' for n in names)

    tally.on_rated(lines(ids[0], ids[1], ids[0], "r9-2026-000000001"), now=1.0)
    assert (tally.rated, tally.accounted, tally.foreign, tally.rated_again) == (2, 2, 1, 0)
    tally.on_rated(lines(ids[1], *ids[2:]), now=2.0)
    assert (tally.rated, tally.accounted, tally.rated_again) == (20, 20, 1)
    assert tally.complete


def test_id_index_of_one_number_written_two_ways_uses_the_table() -> None:
    index = IdIndex(StrColumn.from_strings(["r-7", "r-07", "r-8"]))
    assert index._table is not None
    assert index.rows(StrColumn.from_strings(["r-07", "r-7", "r-007", "r-8"])).tolist() == [
        1, 0, -1, 2,
    ]  # fmt: skip


def test_prefixed_puts_the_run_id_in_front_of_every_id() -> None:
    column = StrColumn.from_strings(["7-1", "", "7-123"])
    assert prefixed(column, "ab-").to_list() == ["ab-7-1", "ab-", "ab-7-123"]
    assert prefixed(column, "") is column


# -- sweep ---------------------------------------------------------------------------------------
def test_sweep_levels_and_judging_a_step() -> None:
    assert rates(10_000, 10_000, 35_000) == [10_000, 20_000, 30_000]
    with pytest.raises(LoadTestError, match="sweep: need"):
        rates(0, 1, 10)
    held = judge(make_report(), Limits(p99_ms=1.5, max_lag=5000))
    assert (held.held, held.p99_ms, held.achieved) == (True, 0.99, 1000.0)
    broke = judge(make_report(scale=2), Limits(p99_ms=1.5, max_lag=2000))
    assert broke.why == ["p99 2.0 ms > 1.5 ms", "lag 2,400 > 2,000 records"]


# -- the live view ---------------------------------------------------------------------------
SNAP = Snapshot(
    elapsed=12,
    duration=60,
    target=50_000,
    sent=49_990,
    done=49_800,
    p50_ms=3.1,
    p99_ms=12.0,
    done_total=580_200,
    rejected_total=1204,
    lag=4100,
    progress=0.198,
)


def test_live_line() -> None:
    assert live_line(SNAP) == (
        "[  12s/60s]  target 50.0k/s sent 50.0k/s  rated 49.8k/s (580.2k in all)  "
        "p50 3.10 p99 12.0 ms  rejected 1,204  lag 4,100   19.8%"
    )


def test_live_on_a_terminal_rewrites_one_line_else_prints_every_five_seconds() -> None:
    out = io.StringIO()
    live = Live(out, tty=True)
    live.update(SNAP)
    live.update(SNAP)
    live.close()
    assert out.getvalue().count("\r\x1b[2K") == 2
    assert out.getvalue().endswith("\n")
    plain = io.StringIO()
    live = Live(plain, tty=False)
    for second in range(1, 12):
        live.update(dataclasses.replace(SNAP, elapsed=second))
    assert len(plain.getvalue().splitlines()) == 3  # seconds 1, 6 and 11
    quiet = io.StringIO()
    Live(quiet, quiet=True, tty=True).update(SNAP)
    assert quiet.getvalue() == ""


# -- durations -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("2m", 120), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("90", 90),
     ("1.5s", 1.5), (" 20S ", 20)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5", "5 s", "s", "1m-2s"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(UsageInputError, match=r"60s, 2m|negative"):
        parse_duration(text)


# -- the command line (the parts that need no broker) ----------------------------------------
def _loadtest(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ratewire")
    cli_loadtest.add_parser(parser.add_subparsers(dest="command", required=True))
    return cli_loadtest.main(parser.parse_args(["loadtest", *argv]))


def test_compare_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports.write(make_report(), tmp_path / "a", plots=False)
    reports.write(make_report(scale=2), tmp_path / "b", plots=False)
    a, b = str(tmp_path / "a"), str(tmp_path / "b" / "report.json")
    assert _loadtest("compare", a, b) == 0
    assert "latency p99 ms" in capsys.readouterr().out
    assert _loadtest("compare", a, b, "--fail-on-regression") == 1
    assert _loadtest("compare", a, a, "--fail-on-regression", "--markdown") == 0
    assert capsys.readouterr().out.rstrip().endswith("no regressions beyond 10%")


def test_generate_command_writes_the_scenario_s_traffic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "smoke.jsonl"
    assert _loadtest("generate", "--scenario", "smoke", "--records", "2000", "--out", str(out)) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote 2,000 records to {out} (jsonl): ")
    assert len(out.read_bytes().splitlines()) == 2000
    with pytest.raises(UsageInputError, match="no such sample"):
        _loadtest("generate", "--scenario", "nosuch", "--records", "1", "--out", str(out))


def test_run_arguments_are_checked_before_anything_starts() -> None:
    with pytest.raises(UsageInputError, match="--warmup 5s must be shorter than the run"):
        _loadtest("kafka", "--duration", "5s", "--warmup", "5s")
    with pytest.raises(UsageInputError, match="--release-share is a share"):
        _loadtest("http", "--release-share", "2")


@pytest.mark.parametrize(
    ("warmup", "duration", "warm"),
    [(5.0, 60.0, 5), (0.5, 2.0, 1), (1.5, 60.0, 2), (0.0, 1.0, 0),
     (0.5, 1.0, 0), (60.0, 60.0, 0), (59.5, 60.0, 0)],
)  # fmt: skip
def test_warm_up_seconds_never_leave_nothing_to_measure(
    warmup: float, duration: float, warm: int
) -> None:
    # `loadtest http --duration 1 --warmup 0.5` rounded the warm-up up to the whole run
    # and divided the sent count by a window of 0 seconds
    assert warm_seconds(warmup, duration) == warm
