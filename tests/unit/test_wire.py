"""Wire formats: round trips, bad input with exact messages, rows → columns, rejects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE, Columns, StrColumn
from engine.exceptions import DecodeError
from engine.records import DataRecord, EventRecord, Record, SmsRecord, VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR, Reject, RejectSink, read_rejects
from engine.wire import (
    ColumnarBatch,
    Decoded,
    Format,
    StrBuffers,
    columnar_to_columns,
    columns_to_columnar,
    decode_columnar,
    decode_jsonl,
    decode_message,
    decode_message_with_rejects,
    encode_jsonl,
    encode_record,
    encode_records,
    read_jsonl,
    records_to_columns,
)

from ..conftest import SeededRandom

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
FORMATS: list[Format] = ["json", "msgpack"]
SOURCE = "cdrs[0]@9"

GOOD: list[Record] = [
    VoiceRecord(
        cdr_id="v1",
        tenant="acme",
        account="A1",
        origin="4930123",
        destination="4420777",
        start=START,
        usage=61,
        cell="23415-1",
        roaming=True,
        reseller="r1",
    ),
    SmsRecord(cdr_id="s1", tenant="acme", account="A2", subject="S2", start=START, usage=2),
    DataRecord(cdr_id="d1", tenant="acme", account="A1", apn="internet", start=START, usage=10**12),
    EventRecord(
        cdr_id="e1",
        tenant="acme",
        account="",
        subscriber="262011234567890",
        category="vod",
        start=datetime(2025, 3, 1, 13, 30, 15, 250_000, tzinfo=timezone(timedelta(hours=1))),
        usage=1,
    ),
]


# --- messages: round trips -------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("record", GOOD, ids=lambda r: r.cdr_id)
def test_one_record_message_round_trips(fmt: Format, record: Record) -> None:
    assert decode_message(encode_record(record, fmt), fmt) == [record]


@pytest.mark.parametrize("fmt", FORMATS)
def test_array_message_round_trips(fmt: Format) -> None:
    raw = encode_records(GOOD, fmt)
    assert decode_message(raw, fmt) == GOOD
    assert decode_message_with_rejects(raw, fmt, source=SOURCE) == Decoded(GOOD, [])


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_array_is_no_records(fmt: Format) -> None:
    assert decode_message(encode_records([], fmt), fmt) == []


def test_json_whitespace_around_a_batch_is_fine() -> None:
    raw = b" \n\t" + encode_records(GOOD[:2], "json") + b"\n"
    assert decode_message(raw, "json") == GOOD[:2]


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="wire format 'xml' is unknown; use 'json' or 'msgpack'"):
        decode_message(b"[]", "xml")  # type: ignore[arg-type]


# --- messages: what cannot be split into records ----------------------------------

TRUNCATED_MSGPACK = encode_records(GOOD, "msgpack")[:-5]
WHOLE_MESSAGE_CASES = [
    ("json", b"", DECODE_ERROR, "message is empty"),
    ("json", b" \n ", DECODE_ERROR, "message is empty"),
    (
        "json",
        b'[{"type":"voice"',
        DECODE_ERROR,
        "message is not valid JSON: Input data was truncated",
    ),
    ("json", b"[1 2]", DECODE_ERROR, "message is not valid JSON: expected ',' or ']' (byte 3)"),
    (
        "json",
        b"{]",
        DECODE_ERROR,
        "message is not valid JSON: object keys must be strings (byte 1)",
    ),
    (
        "json",
        b"42",
        VALIDATION_ERROR,
        "message: expected a record (an object) or an array of records, got `int`",
    ),
    (
        "json",
        b'"voice"',
        VALIDATION_ERROR,
        "message: expected a record (an object) or an array of records, got `str`",
    ),
    ("msgpack", b"", DECODE_ERROR, "message is empty"),
    (
        "msgpack",
        TRUNCATED_MSGPACK,
        DECODE_ERROR,
        "message is not valid MessagePack: Input data was truncated",
    ),
    (
        "msgpack",
        b"\xc1",
        DECODE_ERROR,
        "message is not valid MessagePack: invalid opcode '\\xc1' (byte 0)",
    ),
    (
        "msgpack",
        msgspec.msgpack.encode(7),
        VALIDATION_ERROR,
        "message: expected a record (an object) or an array of records, got `int`",
    ),
    (
        "msgpack",
        msgspec.msgpack.encode(None),
        VALIDATION_ERROR,
        "message: expected a record (an object) or an array of records, got `None`",
    ),
]


@pytest.mark.parametrize(("fmt", "raw", "reason", "message"), WHOLE_MESSAGE_CASES)
def test_a_message_that_is_not_records_is_one_reject(
    fmt: Format, raw: bytes, reason: str, message: str
) -> None:
    assert decode_message_with_rejects(raw, fmt, source=SOURCE) == Decoded(
        [], [Reject(source=SOURCE, reason=reason, message=message, raw=raw)]
    )
    with pytest.raises(DecodeError) as info:
        decode_message(raw, fmt, source=SOURCE)
    assert str(info.value) == f"{SOURCE}: {message}"


# --- messages: bad records among good ones ------------------------------------------


def element(**changes: Any) -> dict[str, Any]:
    """A valid voice record as a plain dict, with ``changes`` applied (None deletes)."""
    fields: dict[str, Any] = {
        "type": "voice",
        "cdr_id": "ok",
        "tenant": "acme",
        "account": "A1",
        "start": "2025-03-01T12:00:00Z",
        "usage": 30,
    }
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not None}


BAD_ELEMENTS: list[tuple[Any, str]] = [
    (element(usage=-3), "field usage: Expected `int` >= 0, got -3"),
    (element(usage="3"), "field usage: Expected `int`, got `str`"),
    (
        element(start="2025-03-01T12:00:00"),
        'field start: Expected `datetime` with a timezone component, got "2025-03-01T12:00:00"',
    ),
    (element(start="yesterday"), 'field start: Invalid RFC3339 encoded datetime, got "yesterday"'),
    (element(cdr_id=None), "field cdr_id: is required but missing"),
    (element(cdr_id=""), 'field cdr_id: Expected `str` of length >= 1, got ""'),
    (
        element(type="fax"),
        "field type: Invalid value 'fax'; expected one of 'voice', 'sms', 'data', 'event'",
    ),
    (element(type=None), "field type: is required but missing"),
    (
        element(account=""),
        "field account: is empty and no subscriber is given to resolve it from",
    ),
    (element(type="event"), "field category: is required but missing"),
    (element(roaming="yes"), "field roaming: Expected `bool`, got `str`"),
    (5, ": expected a record (an object), got `int`"),
    ([element()], ": expected a record (an object), got `array`"),
]


def encode_builtins(value: Any, fmt: Format) -> bytes:
    return msgspec.json.encode(value) if fmt == "json" else msgspec.msgpack.encode(value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_bad_record_is_rejected_and_the_good_ones_kept(fmt: Format) -> None:
    elements = [element(cdr_id="first")]
    elements += [bad for bad, _ in BAD_ELEMENTS]
    elements += [element(cdr_id="last", account="", subscriber="4470")]
    raw = encode_builtins(elements, fmt)

    records, rejects = decode_message_with_rejects(raw, fmt, source=SOURCE)

    assert [(r.cdr_id, r.account, r.subscriber) for r in records] == [
        ("first", "A1", ""),
        ("last", "", "4470"),
    ]
    expected = [
        Reject(
            source=SOURCE,
            reason=VALIDATION_ERROR,
            message=f"record {index}{'' if text.startswith(':') else ' '}{text}",
            raw=encode_builtins(bad, fmt),
            index=index,
        )
        for index, (bad, text) in enumerate(BAD_ELEMENTS, start=1)
    ]
    assert rejects == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_strict_decode_names_the_first_bad_record_and_counts_the_rest(fmt: Format) -> None:
    raw = encode_builtins([element(), element(usage=-1), element(cdr_id=""), element()], fmt)
    with pytest.raises(DecodeError) as info:
        decode_message(raw, fmt, source=SOURCE)
    assert str(info.value) == (
        f"{SOURCE}: record 1 field usage: Expected `int` >= 0, got -1 (and 1 more bad records)"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_bad_record_message_names_record_0(fmt: Format) -> None:
    raw = encode_builtins(element(usage=-7), fmt)
    assert decode_message_with_rejects(raw, fmt, source=SOURCE) == Decoded(
        [],
        [
            Reject(
                source=SOURCE,
                reason=VALIDATION_ERROR,
                message="record 0 field usage: Expected `int` >= 0, got -7",
                raw=raw,
                index=0,
            )
        ],
    )


def test_a_start_past_year_9999_is_one_bad_record_not_a_crash() -> None:
    """msgspec raises a bare ValueError for such a timestamp; it must not escape."""
    past = msgspec.msgpack.Ext(-1, (0).to_bytes(4, "big") + (253402300800).to_bytes(8, "big"))
    raw = msgspec.msgpack.encode([element(cdr_id="a"), element(start=past), element(cdr_id="c")])
    decoded = decode_message_with_rejects(raw, "msgpack", source=SOURCE)
    assert [r.cdr_id for r in decoded.records] == ["a", "c"]
    assert [(r.reason, r.index, r.message) for r in decoded.rejects] == [
        (DECODE_ERROR, 1, "record 1: year 10000 is out of range")
    ]


def test_values_nested_too_deep_reject_the_message_not_crash_the_worker() -> None:
    raw = msgspec.msgpack.encode([element(cdr_id="a"), element(extra="X")])
    raw = raw.replace(msgspec.msgpack.encode("X"), b"\x91" * 3000 + b"\x01")
    decoded = decode_message_with_rejects(raw, "msgpack", source=SOURCE)
    assert decoded.records == []
    assert [(r.reason, r.raw) for r in decoded.rejects] == [(DECODE_ERROR, raw)]
    assert "recursion" in decoded.rejects[0].message


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_mix_keeps_order_and_rejects_exactly_the_bad(fmt: Format, rng: SeededRandom) -> None:
    bad_at = sorted(rng.sample(range(300), rng.randint(1, 60)))
    elements = [element(cdr_id=f"c{i}", usage=-i - 1 if i in bad_at else i) for i in range(300)]
    records, rejects = decode_message_with_rejects(
        encode_builtins(elements, fmt), fmt, source=SOURCE
    )
    assert [r.cdr_id for r in records] == [f"c{i}" for i in range(300) if i not in bad_at]
    assert [r.index for r in rejects] == bad_at
    assert len(records) + len(rejects) == 300


# --- JSON lines -----------------------------------------------------------------------


def jsonl(*lines: Any) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else msgspec.json.encode(line)) + b"\n" for line in lines
    )


def test_jsonl_round_trips() -> None:
    assert decode_jsonl(encode_jsonl(GOOD), source="day.jsonl") == Decoded(GOOD, [])


def test_jsonl_skips_blank_lines_and_takes_crlf() -> None:
    raw = encode_jsonl(GOOD[:2]).replace(b"\n", b"\r\n") + b"\n  \n\t\n" + encode_jsonl(GOOD[2:])
    assert decode_jsonl(raw, source="day.jsonl") == Decoded(GOOD, [])


def test_jsonl_rejects_name_file_and_line() -> None:
    raw = jsonl(
        element(cdr_id="a"),
        b"",
        element(cdr_id="b", usage=-3),
        b"   ",
        b'{"type":"voice",',
        [element()],
        element(cdr_id="c"),
    ).replace(b"\n", b"\r\n", 1)
    records, rejects = decode_jsonl(raw, source="day.jsonl", first_line=101)
    assert [r.cdr_id for r in records] == ["a", "c"]
    assert rejects == [
        Reject(
            source="day.jsonl:103",
            reason=VALIDATION_ERROR,
            message="day.jsonl:103 field usage: Expected `int` >= 0, got -3",
            raw=msgspec.json.encode(element(cdr_id="b", usage=-3)),
        ),
        Reject(
            source="day.jsonl:105",
            reason=DECODE_ERROR,
            message="day.jsonl:105: Input data was truncated",
            raw=b'{"type":"voice",',
        ),
        Reject(
            source="day.jsonl:106",
            reason=VALIDATION_ERROR,
            message="day.jsonl:106: expected a record (an object), got `array`",
            raw=msgspec.json.encode([element()]),
        ),
    ]


def test_read_jsonl_numbers_lines_across_chunks(tmp_path: Path) -> None:
    lines = [element(cdr_id=f"c{i}", usage=-1 if i % 7 == 3 else i) for i in range(50)]
    path = tmp_path / "cdrs.jsonl"
    path.write_bytes(jsonl(*lines).rstrip(b"\n"))  # no newline after the last line
    chunks = list(read_jsonl(path, chunk_bytes=300))
    assert len(chunks) > 5
    records = [r for chunk in chunks for r in chunk.records]
    rejects = [r for chunk in chunks for r in chunk.rejects]
    assert [r.cdr_id for r in records] == [f"c{i}" for i in range(50) if i % 7 != 3]
    assert [r.source for r in rejects] == [f"{path}:{i + 1}" for i in range(50) if i % 7 == 3]


# --- rows → columns -------------------------------------------------------------------


def reference_columns(records: list[Record]) -> dict[str, list[Any]]:
    """What the columns must hold, field by field, computed the slow and obvious way."""
    return {
        "kind": [r.kind for r in records],
        "cdr_id": [r.cdr_id for r in records],
        "tenant": [r.tenant for r in records],
        "account": [r.account for r in records],
        "category": [r.category for r in records],
        "subject": [r.subject or r.account for r in records],
        "destination": [r.destination for r in records],
        "start_us": [(r.start - EPOCH) // ONE_US for r in records],
        "usage": [r.usage for r in records],
    }


def as_lists(columns: Columns) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name in reference_columns([]):
        value = getattr(columns, name)
        out[name] = value.to_list() if isinstance(value, StrColumn) else value.tolist()
    return out


def resolved(records: list[Record]) -> list[Record]:
    return [msgspec.structs.replace(r, account=r.account or "X") for r in records]


def test_records_to_columns_holds_every_field() -> None:
    records = resolved(GOOD)
    columns = records_to_columns(records)
    assert as_lists(columns) == {
        "kind": [KIND_VOICE, KIND_SMS, KIND_DATA, KIND_EVENT],
        "cdr_id": ["v1", "s1", "d1", "e1"],
        "tenant": ["acme"] * 4,
        "account": ["A1", "A2", "A1", "X"],
        "category": ["call", "sms", "data", "vod"],
        "subject": ["A1", "S2", "A1", "X"],
        "destination": ["4420777", "", "", ""],
        "start_us": [1_740_830_400_000_000] * 3 + [1_740_832_215_250_000],
        "usage": [61, 2, 10**12, 1],
    }
    assert columns.kind.dtype == np.uint8
    assert columns.start_us.dtype == columns.usage.dtype == columns.cdr_id.offsets.dtype == np.int64


def test_records_to_columns_of_nothing() -> None:
    assert as_lists(records_to_columns([])) == reference_columns([])


@pytest.mark.parametrize(
    "start",
    [
        datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-3))),
        datetime(2041, 5, 11, 23, 59, 59, 999_999, tzinfo=UTC),  # just past the float-exact range
        datetime(2199, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(minutes=330))),
    ],
)
def test_start_us_is_exact_far_from_now(start: datetime) -> None:
    record = VoiceRecord(cdr_id="c", tenant="t", account="A", start=start, usage=1)
    columns = records_to_columns([record, msgspec.structs.replace(record, start=START)])
    assert columns.start_us.tolist() == [(start - EPOCH) // ONE_US, 1_740_830_400_000_000]


def test_strings_with_nul_and_non_ascii_keep_their_bytes() -> None:
    names = ["Zürich-☎", "a\x00b", "", "𝄞"]
    records = [
        VoiceRecord(cdr_id=f"c{i}", tenant="t", account="A", destination=name, start=START, usage=1)
        for i, name in enumerate(names)
    ]
    column = records_to_columns(records).destination
    assert column.to_list() == names
    assert column.offsets.tolist() == [0, 11, 14, 14, 18]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            VoiceRecord(cdr_id="c", tenant="t", subscriber="4470", start=START, usage=1),
            "record 1 field account: is empty; resolve it from the subscriber first",
        ),
        (
            VoiceRecord(cdr_id="", tenant="t", account="A", start=START, usage=1),
            "record 1 field cdr_id: is empty",
        ),
        (
            VoiceRecord(cdr_id="c", tenant="t", account="A", start=START, usage=-5),
            "record 1 field usage: Expected `int` in 0..9223372036854775807, got -5",
        ),
        (
            VoiceRecord(cdr_id="c", tenant="t", account="A", start=START, usage=2**63),
            f"record 1 field usage: Expected `int` in 0..{2**63 - 1}, got {2**63}",
        ),
        (
            VoiceRecord(cdr_id="c", tenant="t", account="A", start=datetime(2025, 1, 1), usage=1),  # noqa: DTZ001
            "record 1 field start: Expected `datetime` with a timezone component",
        ),
        (
            VoiceRecord(cdr_id="c", tenant="\ud800", account="A", start=START, usage=1),
            "record 1 field tenant: is not valid Unicode (surrogates not allowed)",
        ),
    ],
)
def test_records_to_columns_refuses_what_columns_cannot_hold(record: Record, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        records_to_columns([GOOD[0], record])
    assert str(info.value) == message


# --- columnar batches -------------------------------------------------------------------


def test_columnar_round_trips() -> None:
    columns = records_to_columns(resolved(GOOD))
    raw = columns_to_columnar(columns)
    assert as_lists(decode_columnar(raw)) == as_lists(columns)
    assert decode_columnar(columns_to_columnar(records_to_columns([]))).kind.tolist() == []


def buffers(*values: str) -> StrBuffers:
    column = StrColumn.from_strings(list(values))
    return StrBuffers(column.data.tobytes(), column.offsets.astype("<i4").tobytes())


def int64s(*values: int) -> bytes:
    return np.array(values, dtype="<i8").tobytes()


def batch(**changes: Any) -> ColumnarBatch:
    """A valid three-record batch with ``changes`` applied."""
    valid = ColumnarBatch(
        kind=bytes([KIND_VOICE, KIND_SMS, KIND_EVENT]),
        cdr_id=buffers("c1", "c2", "c3"),
        tenant=buffers("acme", "acme", "acme"),
        account=buffers("A1", "A2", "A3"),
        category=buffers("", "", "vod"),
        subject=buffers("", "S2", ""),
        destination=buffers("4420", "4421", ""),
        start_us=int64s(1, 2, 3),
        usage=int64s(60, 1, 0),
    )
    return msgspec.structs.replace(valid, **changes)


def test_columnar_fills_empty_subject_and_category() -> None:
    columns = columnar_to_columns(batch())
    assert columns.subject.to_list() == ["A1", "S2", "A3"]
    assert columns.category.to_list() == ["call", "sms", "vod"]
    assert columns.usage.tolist() == [60, 1, 0]
    assert columns.start_us.tolist() == [1, 2, 3]


def raw_offsets(*offsets: int) -> bytes:
    return np.array(offsets, dtype="<i4").tobytes()


COLUMNAR_ERRORS = [
    ({"kind": bytes([0, 7, 3])}, "columnar batch record 1 field kind: is not a kind (0..3), got 7"),
    (
        {"usage": int64s(5, 4, -1)},
        "columnar batch record 2 field usage: Expected `int` >= 0, got -1",
    ),
    (
        {"start_us": int64s(1, 2)},
        "columnar batch field start_us: holds 16 bytes, expected 24 (n = 3)",
    ),
    (
        {"cdr_id": buffers("c1", "c2")},
        "columnar batch field cdr_id: holds 3 offsets, expected n + 1 = 4",
    ),
    ({"account": buffers("A1", "", "A3")}, "columnar batch record 1 field account: is empty"),
    ({"cdr_id": buffers("", "c2", "c3")}, "columnar batch record 0 field cdr_id: is empty"),
    (
        {"tenant": StrBuffers(b"acmeacme", raw_offsets(0, 4, 8, 9))},
        "columnar batch field tenant: offsets run from 0 to 9, expected 0 to 8 (the data's length)",
    ),
    (
        {"destination": StrBuffers(b"44204421", raw_offsets(0, 6, 4, 8))},
        "columnar batch record 1 field destination: "
        "offsets go backwards (a negative length), got -2",
    ),
    (
        {"subject": StrBuffers(b"ab\xff", raw_offsets(0, 1, 2, 3))},
        "columnar batch record 2 field subject: is not valid UTF-8 (invalid start byte)",
    ),
    (
        {"destination": StrBuffers("é☎".encode(), raw_offsets(0, 1, 2, 5))},
        "columnar batch record 1 field destination: starts inside a UTF-8 character",
    ),
    (
        {"category": buffers("", "", "")},
        "columnar batch record 2 field category: is empty; an event must name its category",
    ),
]


@pytest.mark.parametrize(("changes", "message"), COLUMNAR_ERRORS)
def test_columnar_validation_names_record_and_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_columnar(msgspec.msgpack.encode(batch(**changes)))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (encode_records(GOOD, "msgpack"), "columnar batch: Expected `object`, got `array`"),
        (
            encode_record(GOOD[0], "msgpack"),
            "columnar batch field cdr_id: Expected `array`, got `str`",
        ),
        (
            msgspec.msgpack.encode({"kind": b""}),
            "columnar batch field cdr_id: is required but missing",
        ),
        (
            msgspec.msgpack.encode(
                {**msgspec.to_builtins(batch()), "format": "ratewire.columns.v2"}
            ),
            "columnar batch field format: Invalid value 'ratewire.columns.v2'",
        ),
        (msgspec.msgpack.encode(batch())[:-4], "columnar batch: Input data was truncated"),
    ],
)
def test_a_message_that_is_not_a_columnar_batch(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_columnar(raw)
    assert str(info.value) == message


# --- properties --------------------------------------------------------------------------

texts = st.text(max_size=10)
names = st.text(min_size=1, max_size=10)
offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
starts = st.datetimes(
    min_value=datetime(1900, 1, 2),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=offsets,
)
common = {
    "cdr_id": names,
    "tenant": texts,
    "account": names,
    "subject": texts,
    "origin": texts,
    "destination": texts,
    "start": starts,
    "usage": st.integers(0, 2**63 - 1),
    "cell": texts,
    "roaming": st.booleans(),
    "category": names,
}
records_strategy = st.lists(
    st.one_of(
        st.builds(VoiceRecord, **common),
        st.builds(SmsRecord, **common),
        st.builds(DataRecord, **common),
        st.builds(EventRecord, **common),
    ),
    max_size=30,
)


@given(records_strategy)
@settings(max_examples=300, deadline=None)
def test_records_to_columns_agrees_with_the_reference(records: list[Record]) -> None:
    columns = records_to_columns(records)
    assert as_lists(columns) == reference_columns(records)
    assert as_lists(decode_columnar(columns_to_columnar(columns))) == reference_columns(records)


@given(records_strategy)
@settings(max_examples=100, deadline=None)
def test_every_format_round_trips(records: list[Record]) -> None:
    for fmt in FORMATS:
        assert decode_message(encode_records(records, fmt), fmt) == records
    assert decode_jsonl(encode_jsonl(records), source="f").records == records


# --- rejects sink ------------------------------------------------------------------------


def test_reject_sink_appends_json_lines_and_counts_per_reason(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    first = Reject(source="a:1", reason=DECODE_ERROR, message="m1", raw=b"\xff\x00")
    second = Reject(source="b[0]@3", reason=VALIDATION_ERROR, message="m2", raw=b"{}", index=4)
    with RejectSink(path) as sink:
        assert sink.write([first, second, second]) == 3
        assert sink.write([]) == 0
        assert sink.counts == {DECODE_ERROR: 1, VALIDATION_ERROR: 2}
        assert sink.total == 3
    with RejectSink(path) as sink:
        sink.write([first])
        assert sink.counts == {DECODE_ERROR: 1}
    assert list(read_rejects(path)) == [first, second, second, first]
    assert path.read_bytes().splitlines()[0] == (
        b'{"source":"a:1","reason":"DECODE_ERROR","message":"m1","raw":"/wA="}'
    )
