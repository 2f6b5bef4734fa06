"""FreeSWITCH mediation: mod_cdr_csv and mod_json_cdr fixtures, then the corpus."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.mediation.freeswitch import (
    parse_cdr_csv,
    parse_cdr_csv_bytes,
    parse_json_cdr,
    parse_json_cdr_bytes,
)
from engine.records import VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mediation"
CSV_FIXTURE = FIXTURES / "freeswitch_example.csv"
CORPUS = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "freeswitch"


def _row(uuid: str, bleg: str, account: str, billsec: str = "10") -> str:
    return (
        f'"A","2001","2003","default","2024-03-01 10:00:00","2024-03-01 10:00:01",'
        f'"2024-03-01 10:00:11","11","{billsec}","NORMAL_CLEARING","{uuid}","{bleg}",'
        f'"{account}","PCMA","PCMA"'
    )


def test_csv_fixture_every_line_has_its_outcome() -> None:
    parsed = parse_cdr_csv(CSV_FIXTURE, tenant="t1")
    assert parsed.records == [
        VoiceRecord(
            cdr_id="aaaaaaaa-0000-0000-0000-000000000001",
            tenant="t1",
            account="acme",
            subject="acme",
            category="call",
            origin="2001",
            destination="0033123456789",
            start=datetime(2024, 3, 1, 9, 0, 5, tzinfo=UTC),
            usage=60,
        ),
        VoiceRecord(
            cdr_id="aaaaaaaa-0000-0000-0000-000000000002",
            tenant="t1",
            account="2002",  # no accountcode: the caller number
            subject="2002",
            category="call",
            origin="2002",
            destination="2003",
            start=datetime(2024, 3, 1, 10, 0, 2, tzinfo=UTC),
            usage=30,
        ),
    ]
    assert parsed.skipped == {"b_leg": 1, "blank": 1, "unanswered": 2}
    name = str(CSV_FIXTURE)
    assert [(r.source, r.reason) for r in parsed.rejects] == [
        (f"{name}:7", VALIDATION_ERROR),  # 14 columns
        (f"{name}:8", DECODE_ERROR),  # unterminated quote
        (f"{name}:9", VALIDATION_ERROR),  # second 61
        (f"{name}:10", VALIDATION_ERROR),  # negative billsec
        (f"{name}:11", VALIDATION_ERROR),  # billsec > duration
        (f"{name}:12", VALIDATION_ERROR),  # billsec but no answer_stamp
        (f"{name}:13", VALIDATION_ERROR),  # no accountcode, no caller number
        (f"{name}:14", VALIDATION_ERROR),  # empty uuid
        (f"{name}:15", VALIDATION_ERROR),  # duration not a number
    ]
    messages = [r.message for r in parsed.rejects]
    assert "has 14 columns, expected 15" in messages[0]
    assert "unterminated quote" in messages[1]
    assert "field answer_stamp: '2024-03-01 11:06:61'" in messages[2]
    assert "field billsec: -10 is negative" in messages[3]
    assert "billsec: 12 is more than duration 11" in messages[4]
    assert "field answer_stamp: is empty" in messages[5]
    assert "field account:" in messages[6]
    assert "field uuid:" in messages[7]
    assert "field duration: 'eleven'" in messages[8]
    assert parsed.total == len(CSV_FIXTURE.read_bytes().splitlines()) == 15


def test_csv_b_leg_is_found_whatever_the_order() -> None:
    a_leg, b_leg = _row("A1", "B1", "acme"), _row("B1", "", "")
    for lines in ([a_leg, b_leg], [b_leg, a_leg]):
        parsed = parse_cdr_csv_bytes("\n".join(lines).encode(), name="m.csv", tenant="t")
        assert [r.cdr_id for r in parsed.records] == ["A1"]
        assert parsed.skipped == {"b_leg": 1}


def test_csv_b_leg_is_not_billed_when_its_a_leg_is_rejected() -> None:
    bad_a_leg = _row("A1", "B1", "acme", billsec="-1")
    data = f"{bad_a_leg}\n{_row('B1', '', '')}\n".encode()
    parsed = parse_cdr_csv_bytes(data, name="m.csv", tenant="t")
    assert parsed.records == []
    assert parsed.skipped == {"b_leg": 1}
    assert [r.source for r in parsed.rejects] == ["m.csv:1"]


def test_csv_timezone_and_empty_and_non_utf8() -> None:
    parsed = parse_cdr_csv_bytes(
        _row("A1", "", "acme").encode(), name="m.csv", tenant="t", timezone="America/New_York"
    )
    assert parsed.records[0].start == datetime(2024, 3, 1, 15, 0, 1, tzinfo=UTC)

    empty = parse_cdr_csv_bytes(b"", name="m.csv", tenant="t")
    assert [(r.source, r.reason) for r in empty.rejects] == [("m.csv:0", DECODE_ERROR)]

    latin = _row("A1", "", "caf\xe9").encode("latin-1")
    bad = parse_cdr_csv_bytes(latin, name="m.csv", tenant="t")
    assert [(r.source, r.reason) for r in bad.rejects] == [("m.csv:1", DECODE_ERROR)]


def test_json_answered() -> None:
    parsed = parse_json_cdr(FIXTURES / "freeswitch_answered.json", tenant="t1")
    assert parsed.records == [
        VoiceRecord(
            cdr_id="cccccccc-0000-0000-0000-000000000001",
            tenant="t1",
            account="acme",
            subject="acme",
            category="call",
            origin="2001",
            destination="0033123456789",
            start=datetime(2024, 3, 1, 9, 0, 5, tzinfo=UTC),
            usage=60,
        )
    ]
    assert parsed.skipped == {}
    assert parsed.rejects == []


@pytest.mark.parametrize(
    ("fixture", "rule"),
    [("freeswitch_b_leg.json", "b_leg"), ("freeswitch_no_answer.json", "unanswered")],
)
def test_json_skipped(fixture: str, rule: str) -> None:
    parsed = parse_json_cdr(FIXTURES / fixture, tenant="t")
    assert (parsed.records, parsed.skipped, parsed.rejects) == ([], {rule: 1}, [])


def test_json_answer_stamp_without_epoch_uses_the_timezone() -> None:
    parsed = parse_json_cdr(
        FIXTURES / "freeswitch_stamp_only.json", tenant="t", timezone="Europe/Paris"
    )
    (record,) = parsed.records
    assert record.start == datetime(2024, 7, 1, 10, 0, 0, tzinfo=UTC)
    assert (record.account, record.destination, record.usage) == ("2002", "2003", 7)


@pytest.mark.parametrize(
    ("data", "reason", "text"),
    [
        (b"", DECODE_ERROR, "empty"),
        (b'{"variables": {', DECODE_ERROR, "is not JSON"),
        (b'{"callflow": []}', VALIDATION_ERROR, "variables"),
        (b'{"variables": {"billsec": "5", "answer_epoch": "1"}}', VALIDATION_ERROR, "uuid"),
        (
            b'{"variables": {"uuid": "u", "billsec": "x", "answer_epoch": "1"}}',
            VALIDATION_ERROR,
            "variables.billsec",
        ),
        (
            b'{"variables": {"uuid": "u", "billsec": "5", "answer_epoch": "1"}}',
            VALIDATION_ERROR,
            "field account:",
        ),
    ],
)
def test_json_rejects(data: bytes, reason: str, text: str) -> None:
    parsed = parse_json_cdr_bytes(data, name="c.json", tenant="t")
    assert parsed.records == []
    (reject,) = parsed.rejects
    assert reject.reason == reason
    assert reject.source in {"c.json:0", "c.json:1"}
    assert text in reject.message


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_json_sample_gives_the_expected_record() -> None:
    parsed = parse_json_cdr(CORPUS / "mod_json_cdr_sample_68s.json", tenant="cgrates.org")
    assert parsed.records == [
        VoiceRecord(
            cdr_id="3da8bf84-c133-4959-9e24-e72875cb33a1",
            tenant="cgrates.org",
            account="1001",
            subject="1001",
            category="call",
            origin="1001",
            destination="1002",
            start=datetime.fromtimestamp(1515666347, UTC),
            usage=68,
        )
    ]
    assert parsed.total == 1


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_csv_bills_each_call_once() -> None:
    path = CORPUS / "mod_cdr_csv_example_template_Master.csv"
    parsed = parse_cdr_csv(path, tenant="t")
    assert parsed.total == len(path.read_bytes().splitlines())
    # Three bridged calls: each A leg (the one naming the other as bleg_uuid) billed once.
    assert [(r.account, r.destination, r.usage) for r in parsed.records] == [
        ("91342657", "*1003", 7),
        ("1001", "1002", 6),
        ("19083426", "3000", 9),
    ]
    assert parsed.skipped == {"b_leg": 3}
    assert parsed.rejects == []
