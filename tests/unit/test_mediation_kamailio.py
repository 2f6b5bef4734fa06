"""Kamailio/OpenSIPS mediation: our own small fixtures, every rule, then the corpus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.mediation.kamailio import (
    DB_EXPORT,
    FLATSTORE,
    AccLayout,
    AccParsed,
    DialogKeys,
    ceil_seconds,
    parse_acc,
    parse_dialog_cdrs,
    parse_time,
)
from engine.records import VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR

HERE = Path(__file__).parents[1] / "fixtures" / "mediation" / "kamailio"
CORPUS = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "kamailio_opensips"
T0 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # epoch 1700000000
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def call(cdr_id: str, account: str, destination: str, start: datetime, usage: int) -> VoiceRecord:
    return VoiceRecord(
        cdr_id=cdr_id,
        tenant="t",
        account=account,
        destination=destination,
        start=start,
        usage=usage,
    )


def where(parsed: AccParsed) -> list[tuple[str, str]]:
    return [(r.source.rsplit(":", 1)[1], r.reason) for r in parsed.rejects]


@pytest.fixture(scope="module")
def small() -> AccParsed:
    return parse_acc(HERE / "acc_small.txt", tenant="t")


def test_acc_pairs_invite_and_bye_into_records(small: AccParsed) -> None:
    assert small.records == [
        call("call-a@pbx", "2001", "2002", at(0), 30),  # ACK and re-INVITE do not count
        call("call-b@pbx", "2003", "2004", at(100), 65),  # BYE first in the file, tags swapped
        call("call-g@pbx", "2001", "2008", at(800.25), 11),  # 10.25 s rounds up
        call("call-h@pbx", "2001", "2009", at(900), 42),  # INVITE without time: the ACK's
    ]


def test_acc_counts_every_skip_rule(small: AccParsed) -> None:
    assert small.skipped == {
        "ack": 2,
        "missed": 1,
        "cancel": 1,
        "blank": 1,
        "other_method": 1,
        "reinvite": 1,
        "duplicate_bye": 1,
    }


def test_acc_rejects_malformed_lines_with_file_and_line(small: AccParsed) -> None:
    assert where(small) == [
        ("10", DECODE_ERROR),  # not acc at all
        ("11", VALIDATION_ERROR),  # sip code 2x0
        ("12", VALIDATION_ERROR),  # time "yesterday"
        ("21", VALIDATION_ERROR),  # BYE 10 s before its INVITE: both halves rejected
        ("22", VALIDATION_ERROR),
    ]
    assert small.rejects[0].raw == b"this line is not acc"
    assert small.rejects[0].source == f"{HERE / 'acc_small.txt'}:10"
    assert "sip_code: '2x0'" in small.rejects[1].message
    assert "10 s before the call started" in small.rejects[3].message


def test_acc_keeps_unpaired_halves_and_accounts_for_every_line(small: AccParsed) -> None:
    assert [(e.method, e.callid, e.source.rsplit(":", 1)[1]) for e in small.unpaired] == [
        ("INVITE", "call-e@pbx", "8"),
        ("BYE", "call-f@pbx", "15"),
    ]
    assert small.lines == 23
    assert small.consumed == 8
    assert small.unaccounted() == 0


def test_acc_carry_completes_calls_from_an_earlier_file(small: AccParsed) -> None:
    nxt = parse_acc(HERE / "acc_next.txt", tenant="t", carry=small.unpaired)
    assert nxt.records == [
        call("call-e@pbx", "2001", "2007", at(300), 120),  # carried INVITE, BYE here
        call("call-f@pbx", "2011", "2012", at(640), 60),  # carried BYE, INVITE here
    ]
    assert (nxt.skipped, nxt.rejects, nxt.unpaired) == ({}, [], [])
    assert (nxt.lines, nxt.carried_in, nxt.consumed, nxt.unaccounted()) == (2, 2, 4, 0)


def test_acc_db_export_reads_zoneless_times_in_the_given_zone() -> None:
    parsed = parse_acc(HERE / "acc_export.csv", tenant="t", layout=DB_EXPORT, timezone=STOCKHOLM)
    # 01:59:50 CET to 03:00:20 CEST is 30 s, not the 3630 s the wall clock says
    start = datetime(2026, 3, 29, 1, 59, 50, tzinfo=STOCKHOLM)
    assert parsed.records == [call("call-p@pbx", "4001", "4002", start, 30)]
    assert parsed.skipped == {"ack": 1, "cancel": 1}
    assert where(parsed) == [("5", DECODE_ERROR)]  # unterminated quote
    assert parsed.unaccounted() == 0


def test_acc_layout_is_an_argument(tmp_path: Path) -> None:
    path = tmp_path / "acc.log"
    path.write_text("INVITE;f;t;c1;200;OK;1700000000;9001;9002;x\nBYE;t;f;c1;200;OK;1700000001\n")
    layout = AccLayout(delimiter=";", account=0, subject=2, origin=0, destination=1)
    parsed = parse_acc(path, tenant="t", layout=layout)
    assert parsed.records == [
        VoiceRecord(
            cdr_id="c1",
            tenant="t",
            account="9001",
            subject="x",
            origin="9001",
            destination="9002",
            start=T0,
            usage=1,
        )
    ]


def test_acc_invite_without_any_time_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "acc.log"
    path.write_text("INVITE|f|t|c1|200|OK||*prepaid|1|2\nBYE|f|t|c1|200|OK|1700000001\n")
    parsed = parse_acc(path, tenant="t", layout=FLATSTORE)
    assert parsed.records == []
    assert where(parsed) == [("1", VALIDATION_ERROR), ("2", VALIDATION_ERROR)]
    assert parsed.unaccounted() == 0


def test_acc_record_without_account_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "acc.log"
    path.write_text("INVITE|f|t|c1|200|OK|1700000000\nBYE|f|t|c1|200|OK|1700000001\n")
    parsed = parse_acc(path, tenant="t")
    assert where(parsed) == [("1", VALIDATION_ERROR), ("2", VALIDATION_ERROR)]
    assert "field account" in parsed.rejects[0].message


def test_dialog_cdrs() -> None:
    parsed = parse_dialog_cdrs(HERE / "dialog_cdrs.log", tenant="t")
    assert parsed.records == [
        call("d1@pbx", "3001", "3002", at(0.123456), 12),  # 11.876545 s rounds up
        call("d2@pbx", "3001", "3003", at(100), 5),
        call("d3@pbx", "3004", "3005", datetime(2026, 6, 1, 10, 0, 0, 500000, tzinfo=UTC), 61),
        call("d4@pbx", "3001", "3006", at(200), 0),
    ]
    assert parsed.skipped == {"blank": 1}
    assert where(parsed) == [
        ("6", VALIDATION_ERROR),
        ("7", VALIDATION_ERROR),
        ("8", VALIDATION_ERROR),
    ]
    assert [r.message.split(":")[0] for r in parsed.rejects] == [
        "dialog CDR field duration",  # missing
        "dialog CDR field end_time",  # before start_time
        "dialog CDR field duration",  # "ten"
    ]
    assert (parsed.lines, parsed.unaccounted()) == (8, 0)


def test_dialog_keys_and_timezone_are_arguments(tmp_path: Path) -> None:
    path = tmp_path / "cdr.log"
    path.write_text(
        "start_time=2026-01-10 08:00:00;end_time=2026-01-10 08:00:03;duration=3.000001;"
        "ci=k1;caller=7001;callee=7002\n"
    )
    keys = DialogKeys(cdr_id="ci", account="caller", destination="callee")
    parsed = parse_dialog_cdrs(path, tenant="t", keys=keys, timezone=STOCKHOLM)
    start = datetime(2026, 1, 10, 8, 0, tzinfo=STOCKHOLM)
    assert parsed.records == [call("k1", "7001", "7002", start, 4)]


@pytest.mark.parametrize(
    ("micros", "seconds"),
    [(0, 0), (1, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2), (-1, 0), (-1_000_001, -1)],
)
def test_ceil_seconds(micros: int, seconds: int) -> None:
    assert ceil_seconds(timedelta(microseconds=micros)) == seconds


def test_parse_time_forms() -> None:
    assert parse_time("1700000000", STOCKHOLM) == T0
    assert parse_time("1700000000.5", UTC) == at(0.5)
    assert parse_time("2023-11-14T22:13:20+00:00", STOCKHOLM) == T0
    assert parse_time("2023-11-14 23:13:20", STOCKHOLM) == T0
    with pytest.raises(ValueError, match="neither epoch seconds nor a date-time"):
        parse_time("1.2.3", UTC)


# --- corpus tier: CGRateS ers/flatstore_it_test.go inputs --------------------------------

corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")


@corpus
def test_corpus_flatstore_matches_cgrates_counts() -> None:
    """CGRateS reads success, missed and two partial files: 8 CDRs, 5 with usage > 0.

    The two partial files (a lone BYE, then its INVITE and an INVITE that stays
    open) are our own acc_part1/2 with the same shape; missed calls are CDRs
    with usage 0 in CGRateS and skipped ``missed`` here.
    """
    success = parse_acc(CORPUS / "acc_flatstore_success.txt", tenant="cgrates.org")
    missed = parse_acc(CORPUS / "acc_flatstore_missed.txt", tenant="cgrates.org")
    part1 = parse_acc(HERE / "acc_part1.txt", tenant="cgrates.org")
    part2 = parse_acc(HERE / "acc_part2.txt", tenant="cgrates.org", carry=part1.unpaired)
    records = success.records + missed.records + part1.records + part2.records
    assert len(records) + missed.skipped["missed"] == 8
    assert sum(r.usage > 0 for r in records) == 5
    assert [(r.account, r.destination, r.usage) for r in success.records] == [
        ("1001", "1002", 2),
        ("1002", "1001", 4),
        ("1001", "1002", 4),
        ("1001", "1002", 2),
    ]
    assert missed.skipped == {"missed": 3}
    assert [e.callid for e in part2.unpaired] == ["call-open@pbx"]
    for parsed in (success, missed, part1, part2):
        assert parsed.rejects == []
        assert parsed.unaccounted() == 0


@corpus
def test_corpus_flatstore_with_ack_takes_start_from_the_ack() -> None:
    parsed = parse_acc(CORPUS / "acc_flatstore_with_ack.txt", tenant="cgrates.org")
    assert [r.usage for r in parsed.records] == [2, 4, 4, 2]  # CGRateS: 4 with usage > 0
    assert parsed.records[0].start == datetime.fromtimestamp(1436454408, UTC)
    assert parsed.skipped == {"ack": 4}
    assert (parsed.rejects, parsed.unpaired, parsed.lines, parsed.unaccounted()) == ([], [], 12, 0)


@corpus
def test_corpus_db_export() -> None:
    parsed = parse_acc(CORPUS / "acc_db_export_quoted.csv", tenant="cgrates.org", layout=DB_EXPORT)
    # CGRateS: 3 CDRs, 2 with usage > 0; the third is the CANCEL, skipped here
    assert [(r.account, r.destination, r.usage) for r in parsed.records] == [
        ("1001", "1002", 28),
        ("1003", "1004", 40),
    ]
    assert parsed.records[0].start == datetime(2021, 6, 1, 0, 0, 9, tzinfo=UTC)
    assert parsed.skipped == {"ack": 2, "cancel": 1}
    assert (parsed.rejects, parsed.unpaired, parsed.lines, parsed.unaccounted()) == ([], [], 7, 0)
