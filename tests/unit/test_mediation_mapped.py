"""Declarative column mapping: our own fixtures line by line, then the CGRateS ERs inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.exceptions import UsageInputError
from engine.mediation.common import LineError
from engine.mediation.mapped import (
    decode_mapping,
    load_mapping,
    parse_mapped,
    parse_mapped_bytes,
    read_time,
    read_usage,
)
from engine.records import DataRecord, EventRecord, SmsRecord, VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mediation" / "mapped"
CORPUS = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "cgrates" / "cdr_inputs"
T0 = datetime(2024, 3, 31, 10, 0, tzinfo=UTC)
BASE = '[source]\nformat = "csv"\n[fields]\ncdr_id = "0"\naccount = "1"\nstart = "2"\nusage = "3"\n'


def test_own_csv_every_line_has_its_outcome() -> None:
    path = FIXTURES / "own.csv"
    parsed = parse_mapped(path, load_mapping(FIXTURES / "own.toml"), tenant="t1")

    def rec(cdr_id: str, start: datetime, usage: int) -> VoiceRecord:
        return VoiceRecord(
            cdr_id=cdr_id,
            tenant="t1",
            account="1001",
            origin="+4930111",
            destination="+4940222",
            start=start,
            usage=usage,
        )

    assert parsed.records == [
        # 01:59:30 CET is 00:59:30 UTC; 61.5 s rounds up to 62
        rec("c1", datetime(2024, 3, 31, 0, 59, 30, tzinfo=UTC), 62),
        # 03:00 CEST (just after the spring-forward gap) is 01:00 UTC
        rec("c2", datetime(2024, 3, 31, 1, 0, tzinfo=UTC), 1),
        # a Go duration is read whatever the unit
        rec("c12", datetime(2024, 3, 31, 8, 0, tzinfo=UTC), 70),
    ]
    assert parsed.skipped == {"unanswered": 1, "blank": 1, "comment": 1}
    assert [(r.source, r.reason) for r in parsed.rejects] == [
        (f"{path}:6", VALIDATION_ERROR),
        (f"{path}:7", VALIDATION_ERROR),
        (f"{path}:8", VALIDATION_ERROR),
        (f"{path}:9", DECODE_ERROR),
        (f"{path}:10", VALIDATION_ERROR),
        (f"{path}:11", VALIDATION_ERROR),
        (f"{path}:13", DECODE_ERROR),
        (f"{path}:14", VALIDATION_ERROR),
    ]
    messages = [r.message.removeprefix(f"{r.source}: ") for r in parsed.rejects]
    assert messages == [
        "field usage: '-5' is negative",
        "field start: '31/03/2024 10:00' is not a time in format '%Y-%m-%d %H:%M:%S'",
        "field answered: column 6 is missing",
        "is not valid CSV (unexpected end of data; an unterminated quote?)",
        "field usage: 'abc' is not a number or a duration such as 1m10s",
        "Expected `str` of length >= 1 - at `$.cdr_id`",
        "is not UTF-8 (byte 6); re-export the CDRs as UTF-8",
        "field account: is empty and no subscriber is given to resolve it from",
    ]
    assert parsed.rejects[0].raw == b"c6,1001,+4930111,+4940222,2024-03-31 10:00:00,-5,ANSWERED"
    assert parsed.total == len(path.read_bytes().splitlines()) == 14


def test_generic_json_lines_give_every_kind() -> None:
    path = FIXTURES / "generic.jsonl"
    parsed = parse_mapped(path, load_mapping(FIXTURES / "generic_json.toml"), tenant="t1")
    assert parsed.records == [
        VoiceRecord(
            cdr_id="g1",
            tenant="t1",
            account="a1",
            origin="+4930111",
            destination="+4940222",
            start=T0,
            usage=60,
        ),
        SmsRecord(cdr_id="g2", tenant="t1", account="a1", start=T0, usage=2),
        DataRecord(
            cdr_id="g3",
            tenant="t1",
            account="a1",
            start=T0.replace(microsecond=500000),
            usage=1048576,
            roaming=True,
        ),
        EventRecord(cdr_id="g4", tenant="t1", account="a1", category="download", start=T0, usage=1),
    ]
    assert parsed.skipped == {"unanswered": 1, "blank": 1}
    assert [(int(r.source.rsplit(":", 1)[1]), r.reason) for r in parsed.rejects] == [
        (7, VALIDATION_ERROR),
        (8, VALIDATION_ERROR),
        (9, DECODE_ERROR),
        (10, VALIDATION_ERROR),
        (11, VALIDATION_ERROR),
        (12, VALIDATION_ERROR),
        (13, VALIDATION_ERROR),
    ]
    messages = [r.message.removeprefix(f"{r.source}: ") for r in parsed.rejects]
    assert messages == [
        "field kind: 'fax' is not in the mapping's map",
        "is a JSON list, not an object",
        "is not valid JSON (Input data was truncated)",
        "field usage: key 'amount' is missing",
        "Object missing required field `category`",
        "field start: 'yesterday' is not a time in format 'epoch'",
        "field usage: '-3' is negative",
    ]
    assert parsed.total == len(path.read_bytes().splitlines()) == 13


def test_json_document_objects_carry_the_line_they_start_on() -> None:
    path = FIXTURES / "document.json"
    parsed = parse_mapped(path, load_mapping(FIXTURES / "document.toml"), tenant="t1")
    assert parsed.records == [
        VoiceRecord(cdr_id="d1", tenant="t1", account="a1", start=T0, usage=30),
        # a naive ISO time is Berlin wall-clock time (CEST, +2)
        VoiceRecord(cdr_id="d2", tenant="t1", account="a2", start=T0, usage=5),
    ]
    assert [(r.source, r.message.removeprefix(f"{r.source}: ")) for r in parsed.rejects] == [
        (f"{path}:5", "is a JSON str, not an object"),
        (f"{path}:6", "field usage: '5.5' is not whole; set fields.usage.round to up or down"),
    ]
    assert parsed.rejects[0].raw == b'"not an object"'
    assert parsed.total == 4


DOC = (FIXTURES / "document.toml").read_text()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b'[{"id": "a", "acct": "x", "at": "2024-03-31T10:00:00Z", "secs": 1},\n{"id": ',
            [(2, DECODE_ERROR, "is not valid JSON (Expecting value: line 2 column 8 (char 75)")],
        ),
        (
            b'[{"id": "a", "acct": "x", "at": "2024-03-31T10:00:00Z", "secs": 1}\n{}]',
            [(2, DECODE_ERROR, "expected ',' or ']' after an array element; the rest is")],
        ),
        (
            b'[{"id": "a", "acct": "x", "at": "2024-03-31T10:00:00Z", "secs": 1},\n',
            [(2, DECODE_ERROR, "the JSON array is not closed with ]")],
        ),
        (b"\xff[]", [(1, DECODE_ERROR, "is not UTF-8 (byte 0)")]),
    ],
)
def test_json_document_errors(data: bytes, expected: list[tuple[int, str, str]]) -> None:
    parsed = parse_mapped_bytes(data, decode_mapping(DOC), name="d.json", tenant="t1")
    found = [
        (int(r.source.split(":")[1]), r.reason, r.message.removeprefix(f"{r.source}: "))
        for r in parsed.rejects
    ]
    assert [(n, reason) for n, reason, _ in found] == [(n, r) for n, r, _ in expected]
    for (_, _, message), (_, _, start) in zip(found, expected, strict=True):
        assert message.startswith(start)
    assert len(parsed.records) == (1 if data.startswith(b"[{") else 0)


def test_json_objects_back_to_back_are_one_unit_each() -> None:
    data = (
        b'{"id": "a", "acct": "x", "at": "2024-03-31T10:00:00Z", "secs": 1}\n'
        b'{"id": "b", "acct": "x", "at": "2024-03-31T10:00:00Z", "secs": 2}\n'
    )
    parsed = parse_mapped_bytes(data, decode_mapping(DOC), name="d.json", tenant="t1")
    assert [(r.cdr_id, r.usage) for r in parsed.records] == [("a", 1), ("b", 2)]


HEADER_MAPPING = (
    '[source]\nformat = "csv"\nheader = true\nheader_prefix = "#"\n'
    '[fields]\ncdr_id = "id"\naccount = "acct"\nstart = {column = "at", format = "epoch"}\n'
    'usage = "secs"\n'
)


def test_csv_header_names_columns_in_any_order() -> None:
    data = b"#secs,at,id,acct\n30,1711879200,h1,a1\n5,1711879200\n"
    parsed = parse_mapped_bytes(data, decode_mapping(HEADER_MAPPING), name="h.csv", tenant="t")
    assert parsed.records == [
        VoiceRecord(cdr_id="h1", tenant="t", account="a1", start=T0, usage=30)
    ]
    assert parsed.skipped == {"header": 1}
    assert [(r.source, r.message) for r in parsed.rejects] == [
        ("h.csv:3", "h.csv:3: field cdr_id: column id is missing")
    ]


@pytest.mark.parametrize(
    ("data", "first"),
    [
        (
            b"#secs,at,id\n30,1711879200,h1\n",
            "header has no column 'acct'; fix the mapping or file",
        ),
        (b"secs,at,id,acct\n30,1711879200,h1,a1\n", "header line does not start with '#'"),
    ],
)
def test_csv_unusable_header_rejects_every_line(data: bytes, first: str) -> None:
    parsed = parse_mapped_bytes(data, decode_mapping(HEADER_MAPPING), name="h.csv", tenant="t")
    assert parsed.records == []
    assert [r.message for r in parsed.rejects] == [
        f"h.csv:1: {first}",
        f"h.csv:2: no usable header ({first})",
    ]


def test_empty_file_is_one_reject_at_line_zero() -> None:
    parsed = parse_mapped_bytes(b"", decode_mapping(BASE), name="e.csv", tenant="t")
    assert [(r.source, r.reason) for r in parsed.rejects] == [("e.csv:0", DECODE_ERROR)]
    assert parsed.total == 1


def test_map_pattern_and_default_apply_in_order() -> None:
    mapping = decode_mapping(
        BASE + 'destination = {column = "4", default = "0301", pattern = "0([1-9][0-9]+)",'
        ' to = "+49\\\\1"}\nsubject = {column = "5", map = {"gold" = "premium"}}\n'
    )
    data = b"x,a,2024-03-31T10:00:00Z,5,,gold\ny,a,2024-03-31T10:00:00Z,5,+4930,gold\n"
    parsed = parse_mapped_bytes(data, mapping, name="m.csv", tenant="t")
    assert [(r.destination, r.subject) for r in parsed.records] == [
        ("+49301", "premium"),
        ("+4930", "premium"),
    ]


@pytest.mark.parametrize(
    ("value", "unit", "rounding", "kind", "expected"),
    [
        ("1m10s", "s", "exact", "voice", 70),
        ("1h0m0.5s", "s", "up", "voice", 3601),
        ("1.5", "s", "up", "voice", 2),
        ("1.5", "s", "down", "voice", 1),
        ("120000000000", "ns", "exact", "voice", 120),
        ("250", "us", "up", "voice", 1),
        ("2h", "ms", "exact", "voice", 7200),
        ("1048576", "1", "exact", "data", 1048576),
        ("0", "s", "exact", "voice", 0),
    ],
)
def test_read_usage(value: str, unit: str, rounding: str, kind: str, expected: int) -> None:
    assert read_usage(value, unit, rounding, kind) == expected


@pytest.mark.parametrize(
    ("value", "unit", "rounding", "kind", "message"),
    [
        ("1500", "ms", "exact", "voice", "field usage: '1500' is not whole; set fields.usage"),
        ("-1m", "s", "exact", "voice", "field usage: '-1m' is negative"),
        ("NaN", "s", "exact", "voice", "field usage: 'NaN' is not a number"),
        ("1.5", "1", "exact", "sms", "field usage: '1.5' is not whole"),
        ("10", "s", "exact", "data", "field usage: unit 's' is a time, but the record is data"),
        ("ten", "1", "exact", "sms", "field usage: 'ten' is not a number or a duration"),
    ],
)
def test_read_usage_errors(value: str, unit: str, rounding: str, kind: str, message: str) -> None:
    with pytest.raises(LineError) as info:
        read_usage(value, unit, rounding, kind)
    assert info.value.reason == VALIDATION_ERROR
    assert info.value.message.startswith(message)


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("1711879200", "epoch", T0),
        ("1711879200250", "epoch_ms", T0.replace(microsecond=250000)),
        ("2024-03-31T10:00:00Z", "iso", T0),
        ("2024-03-31T12:00:00", "iso", T0),
        ("2024-03-31 12:00:00 +0200 CEST", "%Y-%m-%d %H:%M:%S %z CEST", T0),
        ("31.03.2024 12:00", "%d.%m.%Y %H:%M", T0),
    ],
)
def test_read_time(value: str, fmt: str, expected: datetime) -> None:
    assert read_time(value, fmt, BERLIN) == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('caller = "4"\n', "fields.caller: is not a record field; use one of cdr_id,"),
        ('category = {column = "4", value = "call"}\n', "fields.category: give exactly one"),
        ('category = {default = "x"}\n', "fields.category: give exactly one of column and value"),
        ('origin = "src"\n', "fields.origin.column: 'src' is not a column index from 0"),
        ('origin = {column = "4", pattern = "(", to = ""}\n', "fields.origin.pattern: is not a"),
        ('origin = {column = "4", pattern = "0"}\n', "fields.origin: pattern and to go together"),
        ('origin = {column = "4", format = "iso"}\n', "fields.origin.format: only fields.start"),
        ('origin = {column = "4", unit = "s"}\n', "fields.origin.unit: only fields.usage takes"),
        ('kind = {value = "fax"}\n', "fields.kind: 'fax' is not voice, sms, data or event"),
        ('kind = {column = "4", map = {a = "fax"}}\n', "fields.kind: 'fax' is not voice, sms"),
        ("origin = 4\n", "fields.origin: Expected `str | object`, got `int`"),
        ('origin = {colum = "4"}\n', "fields.origin: Object contains unknown field `colum`"),
        ('[answered]\ncolumn = "5"\nvalues = []\n', "answered.values: is empty; list the"),
        ('[answered]\nvalues = ["x"]\n', "answered: Object missing required field `column`"),
    ],
)
def test_mapping_errors_name_the_key(extra: str, message: str) -> None:
    with pytest.raises(UsageInputError) as info:
        decode_mapping(BASE + extra, name="m.toml")
    assert str(info.value).startswith(f"mediation mapping m.toml: {message}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE.replace("start = ", "#"), "fields.start: is required"),
        (BASE.replace("cdr_id = ", "#"), "fields.cdr_id: is required"),
        (BASE.replace("account = ", "#"), "fields.account: is required (or fields.subscriber)"),
        (BASE.replace('usage = "3"', 'usage = {column = "3", unit = "min"}'), "fields.usage.unit"),
        (BASE.replace('start = "2"', 'start = {column = "2", format = "y"}'), "fields.start.fo"),
        (
            BASE + 'kind = {value = "data"}\nusage = {column = "3", unit = "s"}\n',
            "is not valid TOML",
        ),
        (
            BASE.replace(
                'usage = "3"', 'usage = {column = "3", unit = "s"}\nkind = {value = "data"}'
            ),
            "fields.usage.unit: 's' is a time, but kind is 'data'",
        ),
        (BASE.replace('"csv"', '"xml"'), "source.format: Invalid enum value 'xml'"),
        (BASE.replace('"csv"', '"csv"\ndelimiter = ";;"'), "source.delimiter: ';;' is not one"),
        (BASE.replace('"csv"', '"csv"\ndelim = ";"'), "source: Object contains unknown field"),
        (BASE.replace('"csv"', '"csv"\ntimezone = "Mars/Base"'), "source.timezone: mediation:"),
        (BASE.replace('"csv"', '"json"').replace('"1"', '"a..b"'), "fields.account.column: 'a..b'"),
    ],
)
def test_mapping_errors_whole_file(text: str, message: str) -> None:
    with pytest.raises(UsageInputError) as info:
        decode_mapping(text, name="m.toml")
    assert str(info.value).startswith(f"mediation mapping m.toml: {message}")


def test_unreadable_mapping_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UsageInputError, match=r"cannot read '.*missing\.toml'"):
        load_mapping(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["cgrates_ers", "cgrates_ers_semicolon", "cgrates_ers_header"])
def test_shipped_cgrates_mappings_are_valid(name: str) -> None:
    assert load_mapping(FIXTURES / f"{name}.toml").source.format == "csv"


needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")


def voice(cdr_id: str, subject: str, dst: str, start: datetime, usage: int) -> VoiceRecord:
    return VoiceRecord(
        cdr_id=cdr_id,
        tenant="cgrates.org",
        account="1001",
        subject=subject,
        category="call",
        destination=dst,
        start=start,
        usage=usage,
    )


@needs_corpus
def test_corpus_cgrates_ers_csv_default_template() -> None:
    path = CORPUS / "cgrates_cdrc_csv_fileContent1.csv"
    mapping = load_mapping(FIXTURES / "cgrates_ers.toml")
    parsed = parse_mapped(path, mapping, tenant="cgrates.org")
    first, second = (datetime(2013, 11, 7, h, 42, 26, tzinfo=UTC) for h in (8, 9))
    assert parsed.records == [  # start is the AnswerTime column, usage "10s" and "20s"
        voice("dsafdsaf", "1001", "+4986517174963", first, 10),
        voice("dsafdsag", "1001", "+4986517174964", second, 20),
    ]
    assert parsed.skipped == {}
    assert parsed.rejects == []
    assert parsed.total == len(path.read_bytes().splitlines()) == 2


@needs_corpus
def test_corpus_cgrates_ers_csv_semicolon() -> None:
    path = CORPUS / "cgrates_cdrc_csv_semicolon_fileContent2.csv"
    mapping = load_mapping(FIXTURES / "cgrates_ers_semicolon.toml")
    parsed = parse_mapped(path, mapping, tenant="cgrates.org")
    at = datetime(2013, 2, 3, 19, 54, tzinfo=UTC)
    assert parsed.records == [
        voice("accid21", "1001", "+4986517174963", at, 62),  # 0865… rewritten to +49865…
        voice("accid22", "1001", "+4986517174963", at, 123),
        voice("accid23", "1001", "+4986517174963", at, 26),
    ]
    assert parsed.skipped == {"comment": 1}  # the "#accid1" line
    assert parsed.rejects == []
    assert parsed.total == len(path.read_bytes().splitlines()) == 4


@needs_corpus
def test_corpus_cgrates_ers_csv_header() -> None:
    path = CORPUS / "cgrates_cdrc_csv_header_fileContent3.csv"
    mapping = load_mapping(FIXTURES / "cgrates_ers_header.toml")
    parsed = parse_mapped(path, mapping, tenant="cgrates.org")
    answer = datetime(2018, 1, 7, 17, 0, 10, tzinfo=UTC)
    # Usage "5m" is 300 s; the header line starts with CGRateS' header define char ":".
    assert parsed.records == [voice("SessionFromCsv", "ANY2CNT", "1002", answer, 300)]
    assert parsed.skipped == {"header": 1}
    assert parsed.rejects == []
    assert parsed.total == len(path.read_bytes().splitlines()) == 2


@needs_corpus
def test_corpus_cgrates_ers_json() -> None:
    path = CORPUS / "cgrates_json_cdr.json"
    mapping = load_mapping(FIXTURES / "cgrates_ers_json.toml")
    parsed = parse_mapped(path, mapping, tenant="cgrates.org")
    # One pretty-printed object: one unit, accounted at the line it starts on.
    assert parsed.records == [
        VoiceRecord(
            cdr_id="testJsonCDR",
            tenant="cgrates.org",
            account="voiceAccount",
            category="call",
            destination="+4986517174963",
            start=datetime(2018, 8, 24, 16, 0, 26, tzinfo=UTC),
            usage=120,  # 120000000000 ns
        )
    ]
    assert parsed.skipped == {}
    assert parsed.rejects == []
    assert parsed.total == 1
