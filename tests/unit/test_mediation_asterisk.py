"""Asterisk cdr_csv mediation: our own fixture line by line, then the testsuite corpus."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.exceptions import UsageInputError
from engine.mediation.asterisk import parse_master_csv, parse_master_csv_bytes
from engine.records import VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mediation" / "asterisk_master.csv"
CORPUS = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "asterisk"

LINE = (
    '"acme","2001","100","ctx","""A"" <2001>","SIP/a","SIP/b","Dial","SIP/b",'
    '"2024-03-31 01:59:00","2024-03-31 01:59:30","2024-03-31 03:00:30",90,60,'
    '"ANSWERED","BILLING","1711850340.1",""'
)


def test_fixture_every_line_has_its_outcome() -> None:
    parsed = parse_master_csv(FIXTURE, tenant="t1")

    def rec(cdr_id: str, account: str, dst: str, start: datetime, usage: int) -> VoiceRecord:
        return VoiceRecord(
            cdr_id=cdr_id,
            tenant="t1",
            account=account,
            subject=account,
            category="call",
            origin="2002" if account == "2002" else "2001",
            destination=dst,
            start=start,
            usage=usage,
        )

    utc = UTC
    assert parsed.records == [
        rec("1709283600.1", "acme", "0033123456789", datetime(2024, 3, 1, 9, 0, 5, tzinfo=utc), 60),
        rec("1709287200.3", "2002", "2003", datetime(2024, 3, 1, 10, 0, 2, tzinfo=utc), 30),
        rec("1709283600.1#2", "acme", "2003", datetime(2024, 3, 1, 9, 1, 6, tzinfo=utc), 10),
    ]
    assert parsed.skipped == {"no_answer": 1, "busy": 1, "blank": 1, "failed": 1, "congestion": 1}
    name = str(FIXTURE)
    assert [(r.source, r.reason) for r in parsed.rejects] == [
        (f"{name}:9", VALIDATION_ERROR),  # 17 columns
        (f"{name}:10", DECODE_ERROR),  # unterminated quote
        (f"{name}:11", VALIDATION_ERROR),  # hour 25
        (f"{name}:12", VALIDATION_ERROR),  # negative billsec
        (f"{name}:13", VALIDATION_ERROR),  # billsec > duration
        (f"{name}:14", VALIDATION_ERROR),  # unknown disposition
        (f"{name}:15", VALIDATION_ERROR),  # no accountcode, no src
        (f"{name}:16", VALIDATION_ERROR),  # empty uniqueid
        (f"{name}:17", VALIDATION_ERROR),  # ISO 'T' time
    ]
    messages = [r.message for r in parsed.rejects]
    assert "has 17 columns, expected 18" in messages[0]
    assert "unterminated quote" in messages[1]
    assert "field answer:" in messages[2]
    assert "field billsec: -10 is negative" in messages[3]
    assert "billsec: 12 is more than duration 11" in messages[4]
    assert "'HUNG UP'" in messages[5]
    assert "field account:" in messages[6]
    assert "field uniqueid:" in messages[7]
    assert "field answer: '2024-03-01T11:12:01'" in messages[8]
    assert parsed.rejects[1].raw.endswith(b'"1709291100.11","')
    assert parsed.total == len(FIXTURE.read_bytes().splitlines()) == 17


def test_timezone_reads_wall_clock_time_in_that_zone() -> None:
    parsed = parse_master_csv_bytes(
        LINE.encode(), name="m.csv", tenant="t", timezone="Europe/Paris"
    )
    (record,) = parsed.records
    assert record.start == datetime(2024, 3, 31, 0, 59, 30, tzinfo=UTC)
    assert record.start.tzinfo is UTC  # normalised to UTC
    assert record.usage == 60
    assert record.origin == "2001"


def test_crlf_and_trailing_newline_count_as_line_ends() -> None:
    parsed = parse_master_csv_bytes(
        (LINE + "\r\n" + LINE + "\r\n").encode(), name="m.csv", tenant="t"
    )
    assert [r.cdr_id for r in parsed.records] == ["1711850340.1", "1711850340.1#2"]
    assert parsed.total == 2


def test_non_utf8_line_is_rejected_and_the_rest_parsed() -> None:
    data = LINE.encode() + b"\n" + LINE.replace("acme", "caf\xe9").encode("latin-1") + b"\n"
    parsed = parse_master_csv_bytes(data, name="m.csv", tenant="t")
    assert len(parsed.records) == 1
    (reject,) = parsed.rejects
    assert (reject.source, reject.reason) == ("m.csv:2", DECODE_ERROR)
    assert "is not UTF-8" in reject.message


def test_empty_file_is_one_reject() -> None:
    parsed = parse_master_csv_bytes(b"", name="m.csv", tenant="t")
    assert parsed.records == []
    assert parsed.skipped == {}
    (reject,) = parsed.rejects
    assert (reject.source, reject.reason) == ("m.csv:0", DECODE_ERROR)
    assert "empty" in reject.message


def test_bad_timezone_and_missing_file_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageInputError, match="not an IANA zone"):
        parse_master_csv_bytes(LINE.encode(), name="m.csv", tenant="t", timezone="Mars/Base")
    with pytest.raises(UsageInputError, match="cannot read CDR file"):
        parse_master_csv(tmp_path / "absent.csv", tenant="t")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize(
    "name",
    ["testsuite_Master.csv", "testsuite_Master2.csv", "testsuite_good.csv", "testsuite_buggy.csv"],
)
def test_corpus_every_line_accounted_for(name: str) -> None:
    path = CORPUS / name
    parsed = parse_master_csv(path, tenant="t")
    assert parsed.total == len(path.read_bytes().splitlines())


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_outcomes() -> None:
    buggy = parse_master_csv(CORPUS / "testsuite_buggy.csv", tenant="t")
    assert [(r.source.rsplit(":", 1)[1], r.reason) for r in buggy.rejects] == [("1", DECODE_ERROR)]
    assert "unterminated quote" in buggy.rejects[0].message

    good = parse_master_csv(CORPUS / "testsuite_good.csv", tenant="t")
    assert [(r.cdr_id, r.account, r.destination, r.usage) for r in good.records] == [
        ("1231977075.0", "test", "100", 5)
    ]
    assert good.skipped == {"failed": 1, "no_answer": 1, "busy": 1}
    assert [r.source.rsplit(":", 1)[1] for r in good.rejects] == ["2"]  # billsec 7 > duration 5

    # Console calls with neither accountcode nor src name no account to bill.
    master = parse_master_csv(CORPUS / "testsuite_Master.csv", tenant="t")
    assert master.records == []
    assert all("field account:" in r.message for r in master.rejects)
