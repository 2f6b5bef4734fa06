"""The compiled MessagePack path agrees with msgspec + ``records_to_columns``, its slow twin.

For every message :func:`decode_record_array` accepts, every column (string
data and offsets, kind, start, usage, with their dtypes) equals what the slow
path builds, and each record's byte range decodes on its own to the slow
path's record. It must accept every plain array of valid records the slow
path accepts (with a non-empty account), so the equality tests cannot pass by
declining; and it must decline (``None``) every message that is unusual,
malformed or bad, which the slow path then decides.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import msgpack_kernels as k
from engine.columns import KIND_NAMES, Columns, gather
from engine.msgpack_columns import MIN_RECORD_BYTES, RecordArray, decode_record_array
from engine.records import (
    MAX_USAGE,
    RECORD_TYPES,
    DataRecord,
    EventRecord,
    Record,
    SmsRecord,
    VoiceRecord,
)
from engine.wire import decode_message_with_rejects, encode_records, records_to_columns
from loadtest.generator import Scenario, columns_to_records, generate_columns

from ..benchmarks.test_bench_decode import make_records
from ..conftest import SeededRandom

STRINGS = ("cdr_id", "tenant", "account", "category", "subject", "destination")
NUMBERS = ("kind", "start_us", "usage")
START = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
BASE: dict[str, Any] = {
    "type": "voice", "cdr_id": "c-1", "tenant": "acme", "account": "ACC-1",
    "start": START, "usage": 60,
}  # fmt: skip


# --- helpers ---------------------------------------------------------------------------


def slow(raw: bytes) -> tuple[list[Record], Columns]:
    decoded = decode_message_with_rejects(raw, "msgpack", source="t")
    assert not decoded.rejects, decoded.rejects[0].message
    return decoded.records, records_to_columns(decoded.records)


def assert_columns_equal(fast: Columns, expected: Columns) -> None:
    assert len(fast) == len(expected)
    for name in STRINGS:
        got, want = getattr(fast, name), getattr(expected, name)
        assert got.data.dtype == want.data.dtype, name
        assert got.offsets.dtype == want.offsets.dtype, name
        np.testing.assert_array_equal(got.data, want.data, err_msg=name)
        np.testing.assert_array_equal(got.offsets, want.offsets, err_msg=name)
    for name in NUMBERS:
        got, want = getattr(fast, name), getattr(expected, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


def assert_bounds(raw: bytes, fast: RecordArray, records: list[Record]) -> None:
    bounds = fast.bounds.tolist()
    assert len(bounds) == len(records) + 1
    assert bounds[-1] == len(raw)
    for i, record in enumerate(records):
        assert msgspec.msgpack.decode(raw[bounds[i] : bounds[i + 1]], type=Record) == record


def check(raw: bytes) -> RecordArray | None:
    """The fast path's answer, asserted equal to the slow path's when it gives one."""
    fast = decode_record_array(raw)
    if fast is not None:
        records, expected = slow(raw)
        assert_columns_equal(fast.columns, expected)
        assert_bounds(raw, fast, records)
    return fast


def accepted(raw: bytes) -> RecordArray:
    fast = check(raw)
    assert fast is not None, "the fast path declined a plain message"
    return fast


def declined(raw: bytes, *, slow_rejects: bool) -> None:
    """The fast path declines; the slow path, the caller's fallback, decides without error."""
    assert decode_record_array(raw) is None
    decoded = decode_message_with_rejects(raw, "msgpack", source="t")
    assert bool(decoded.rejects) == slow_rejects


def message(*records: dict[str, Any]) -> bytes:
    """Records given as dicts (keys in order; ``msgspec.Raw`` values go in verbatim)."""
    return msgspec.msgpack.encode(list(records))


def record(**changes: Any) -> dict[str, Any]:
    """BASE with ``changes``; a value of None removes the key."""
    fields = {**BASE, **changes}
    return {key: value for key, value in fields.items() if value is not None}


def raw_map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A map with exactly these (key, value) pairs, duplicates included."""
    head = (
        bytes([0x80 | len(pairs)]) if len(pairs) < 16 else b"\xde" + struct.pack(">H", len(pairs))
    )
    return head + b"".join(msgspec.msgpack.encode(a) + msgspec.msgpack.encode(b) for a, b in pairs)


def array_of(*maps: bytes) -> bytes:
    return bytes([0x90 | len(maps)]) + b"".join(maps)


def text(value: bytes) -> msgspec.Raw:
    """``value`` as a str 8 on the wire, whatever its bytes."""
    return msgspec.Raw(b"\xd9" + bytes([len(value)]) + value)


def timestamp(op: bytes, payload: bytes) -> msgspec.Raw:
    """An extension of type -1 in the container ``op`` (with its length field)."""
    return msgspec.Raw(op + b"\xff" + payload)


# --- generated traffic ------------------------------------------------------------------


def with_optional_fields(records: list[Record]) -> list[Record]:
    """Every third record gets the optional fields, every fifth an explicit subject."""
    varied: list[Record] = []
    for i, r in enumerate(records):
        if i % 3 == 0:
            r = msgspec.structs.replace(
                r, origin=f"4479{i:07d}", cell=f"23415-{i % 97:05d}", roaming=i % 2 == 0,
                apn="internet", reseller="mvno-1", subscriber=f"2341500{i:08d}",
            )  # fmt: skip
        if i % 5 == 0:
            r = msgspec.structs.replace(r, subject=f"SUBJ-{i % 11}")
        varied.append(r)
    return varied


@pytest.mark.parametrize("seed", [1, 2026, 90_210])
@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_generated_traffic(seed: int, batch: int) -> None:
    scenario = Scenario(records=3_000 if batch == 1000 else 300, accounts=200, seed=seed)
    records = with_optional_fields(columns_to_records(generate_columns(scenario)))
    kinds: set[int] = set()
    for i in range(0, len(records), batch):
        fast = accepted(encode_records(records[i : i + batch], "msgpack"))
        kinds.update(fast.columns.kind.tolist())
        # the default categories (call, sms, data) are omitted on the wire and filled in
        assert fast.columns.category.to_list() == [r.category for r in records[i : i + batch]]
    assert kinds == set(range(len(KIND_NAMES)))


def test_bench_shaped_records_and_big_arrays() -> None:
    records = make_records(70_000)  # array 32 header; every kind, optional fields
    fast = accepted(encode_records(records, "msgpack"))
    assert len(fast.columns) == 70_000
    assert fast.bounds[0] == 5
    assert accepted(encode_records(records[:20], "msgpack")).bounds[0] == 3  # array 16


def test_defaults_and_explicit_empty_values() -> None:
    fast = accepted(
        message(
            record(subject=""),  # empty subject: the account
            record(type="sms", destination=""),
            record(type="data", category="roaming-data", subject="S"),
            record(type="event", category="vod", usage=0),
        )
    )
    assert fast.columns.subject.to_list() == ["ACC-1", "ACC-1", "S", "ACC-1"]
    assert fast.columns.category.to_list() == ["call", "sms", "roaming-data", "vod"]
    assert fast.columns.kind.tolist() == [0, 1, 2, 3]


def test_keys_in_any_order_unknown_keys_and_other_encodings() -> None:
    nested = {"a": [1, -2, 3.5, None, True, b"\x00\xff", {"b": [[[]]]}], "t": START}
    accepted(
        message(
            dict(reversed(list(record(origin="x").items()))),  # the tag last
            record(kind=7, extra=nested, **{"": 1, "\xff": "x"}),  # unknown keys are skipped
            record(usage=msgspec.Raw(b"\xd3" + struct.pack(">q", 2**40))),  # int 64, positive
            record(usage=msgspec.Raw(b"\xd0\x05")),  # int 8, positive
            record(usage=msgspec.Raw(b"\xcf" + struct.pack(">Q", MAX_USAGE))),
            record(cdr_id=msgspec.Raw(b"\xda\x00\x03abc")),  # str 16
            record(type=msgspec.Raw(b"\xd9\x03sms")),  # the tag as a str 8
            record(origin=msgspec.Raw(b"\xdb\x00\x00\x00\x01o")),  # str 32
            record(**{f"x{i}": i for i in range(12)}),  # 18 keys: a map 16
        )
    )
    unknown_bytes = raw_map([*record().items(), (msgspec.Raw(b"\xa2\xff\xfe"), "not UTF-8 key")])
    accepted(array_of(unknown_bytes))  # msgspec does not decode a key it does not know
    accepted(message(record(zz=msgspec.Raw(b"\xa2\xff\xfe"))))  # nor an unknown value
    accepted(message(record(zz=msgspec.Raw(b"\xdf\x00\x00\x00\x00"))))  # an empty map 32


@pytest.mark.parametrize(
    ("op", "payload", "expected"),
    [
        (b"\xd6", struct.pack(">I", 1_700_000_000), 1_700_000_000_000_000),
        (b"\xd7", struct.pack(">Q", (1500 << 34) | 100), 100_000_002),  # halves round up
        (b"\xd7", struct.pack(">Q", (1499 << 34) | 100), 100_000_001),
        (b"\xd7", struct.pack(">Q", (999_999_500 << 34) | 100), 101_000_000),  # carries
        (b"\xd7", struct.pack(">Q", (2**34 - 1)), (2**34 - 1) * 10**6),  # year 2514
        (b"\xc7\x0c", struct.pack(">Iq", 2_500, -1), -999_997),
        (b"\xc7\x0c", struct.pack(">Iq", 0, -62_135_596_800), -62_135_596_800 * 10**6),
        (b"\xc7\x04", struct.pack(">I", 100), 100_000_000),
        (b"\xc8\x00\x08", struct.pack(">Q", (5_000 << 34) | 7), 7_000_005),
        (b"\xc9\x00\x00\x00\x0c", struct.pack(">Iq", 999_999_999, 253_402_300_797), None),
    ],
)
def test_every_timestamp_container(op: bytes, payload: bytes, expected: int | None) -> None:
    fast = accepted(message(record(start=timestamp(op, payload))))
    if expected is None:  # the last second but two of year 9999
        expected = 253_402_300_798 * 10**6
    assert fast.columns.start_us.tolist() == [expected]


# --- declines ---------------------------------------------------------------------------

BAD_TEXT = b"ab\xc3("  # an invalid continuation byte
DECLINES: dict[str, tuple[bytes, bool]] = {
    # name: (message, whether the slow path rejects a record or the message)
    "single map": (msgspec.msgpack.encode(record()), False),
    "empty array": (b"\x90", False),  # no records, no rejects
    "empty message": (b"", True),
    "array of arrays": (b"\x91\x90", True),
    "trailing byte": (message(record()) + b"\x00", True),
    "trailing garbage": (message(record()) + b"\xc1\xc1", True),
    "huge count, little data": (b"\xdd\xff\xff\xff\xff" + message(record())[1:], True),
    "count beyond the records": (b"\xdc\x00\x02" + message(record())[1:], True),
    "fewer records than counted": (b"\x92" + message(record(origin="x" * 99))[1:], True),
    "usage as string": (message(record(usage="60")), True),
    "usage negative": (message(record(usage=-1)), True),
    "usage float": (message(record(usage=60.0)), True),
    "usage nil": (message(record(usage=msgspec.Raw(b"\xc0"))), True),
    "usage above int64": (message(record(usage=msgspec.Raw(b"\xcf" + b"\xff" * 8))), True),
    "usage negative int 8": (message(record(usage=msgspec.Raw(b"\xd0\xff"))), True),
    "start as int": (message(record(start=1_700_000_000)), True),
    "start as string": (message(record(start="2026-01-02T03:04:05Z")), False),
    "start naive string": (message(record(start="2026-01-02T03:04:05")), True),
    "start nanoseconds too big": (
        message(record(start=timestamp(b"\xd7", struct.pack(">Q", (10**9 << 34) | 1)))),
        True,
    ),
    "start fixext 16": (message(record(start=timestamp(b"\xd8", bytes(16)))), True),
    "start other ext type": (message(record(start=msgspec.Raw(b"\xd6\x05" + bytes(4)))), True),
    "start after year 9999": (
        message(record(start=timestamp(b"\xc7\x0c", struct.pack(">Iq", 0, 253_402_300_801)))),
        True,
    ),
    "start near the top": (
        message(record(start=timestamp(b"\xc7\x0c", struct.pack(">Iq", 0, 253_402_300_799)))),
        False,
    ),
    "start before year 1": (
        message(record(start=timestamp(b"\xc7\x0c", struct.pack(">Iq", 0, -62_135_596_801)))),
        True,
    ),
    "missing cdr_id": (message(record(cdr_id=None)), True),
    "empty cdr_id": (message(record(cdr_id="")), True),
    "missing type": (message(record(type=None)), True),
    "unknown type tag": (message(record(type="fax")), True),
    "type not a string": (message(record(type=3)), True),
    "event without category": (message(record(type="event")), True),
    "empty category": (message(record(category="")), True),
    "missing tenant": (message(record(tenant=None)), True),
    "missing start": (message(record(start=None)), True),
    "missing usage": (message(record(usage=None)), True),
    "empty account with subscriber": (message(record(account="", subscriber="2341")), False),
    "missing account with subscriber": (message(record(account=None, subscriber="2341")), False),
    "empty account": (message(record(account="")), True),
    "non-UTF-8 cdr_id": (message(record(cdr_id=text(BAD_TEXT))), True),
    "non-UTF-8 origin": (message(record(origin=text(BAD_TEXT))), True),
    "UTF-8 surrogate": (message(record(destination=text(b"\xed\xa0\x80"))), True),
    "duplicate key": (array_of(raw_map([*record().items(), ("usage", 61)])), False),
    "duplicate tag": (array_of(raw_map([*record().items(), ("type", "voice")])), False),
    "int key": (array_of(raw_map([*record().items(), (7, "x")])), True),
    "bin key": (array_of(raw_map([*record().items(), (b"zz", "x")])), True),
    "roaming as int": (message(record(roaming=1)), True),
    "optional string nil": (message(record(origin=None, cell=msgspec.Raw(b"\xc0"))), True),
    "unknown value 0xc1": (message(record(zz=msgspec.Raw(b"\xc1"))), True),
    "unknown value too deep": (message(record(zz=msgspec.Raw(b"\x91" * 20 + b"\x00"))), False),
    "second record bad": (message(record(), record(usage=-5)), True),
}


@pytest.mark.parametrize("name", list(DECLINES))
def test_declines(name: str) -> None:
    raw, slow_rejects = DECLINES[name]
    declined(raw, slow_rejects=slow_rejects)


@pytest.mark.parametrize(
    ("nanos", "seconds"), [(0, 253_402_300_800), (999_999_500, 253_402_300_799)]
)
def test_declines_year_10000(nanos: int, seconds: int) -> None:
    # msgspec 0.22 raises a bare ValueError ("year 10000 is out of range") for these,
    # which decode_message_with_rejects does not catch; only the decline is checked here.
    raw = message(record(start=timestamp(b"\xc7\x0c", struct.pack(">Iq", nanos, seconds))))
    assert decode_record_array(raw) is None


def test_every_prefix_declines() -> None:
    raw = message(
        record(origin="x", roaming=True, zz={"a": [1, 2.5, b"b"]}),
        record(type="event", category="vod", start=START + timedelta(days=9_000)),
    )
    accepted(raw)
    for cut in range(len(raw)):
        assert decode_record_array(raw[:cut]) is None, cut
        decode_message_with_rejects(raw[:cut], "msgpack", source="t")  # decides, never raises


def test_kernel_knows_every_record_field() -> None:
    # A field the kernel did not know would be skipped unchecked, so a bad value
    # for it would pass the fast path while msgspec rejects the record.
    for cls in RECORD_TYPES:
        names = {f.name for f in msgspec.structs.fields(cls)} | {"type"}
        assert set(k.FIELD_NAMES) == names, cls.__name__


def test_min_record_bytes_is_the_smallest_record() -> None:
    smallest = message(
        {
            "type": "sms",
            "cdr_id": "c",
            "tenant": "",
            "account": "a",
            "start": datetime(2026, 1, 1, tzinfo=UTC),
            "usage": 1,
        }
    )
    assert len(smallest) - 1 == MIN_RECORD_BYTES
    accepted(smallest)


def test_random_corruption_never_gives_a_different_answer(rng: SeededRandom) -> None:
    records = with_optional_fields(
        columns_to_records(generate_columns(Scenario(records=40, accounts=10, seed=rng.seed_value)))
    )
    raw = bytearray(encode_records(records[:7], "msgpack"))
    for _ in range(3_000):
        broken = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            broken[rng.randrange(len(broken))] = rng.randrange(256)
        check(bytes(broken))


# --- hypothesis: random valid records --------------------------------------------------

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
STARTS = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=ZONES,
)
USAGES = st.one_of(st.integers(0, 2**7), st.integers(0, MAX_USAGE), st.sampled_from([MAX_USAGE]))
KINDS = st.sampled_from(RECORD_TYPES)


@st.composite
def records(draw: st.DrawFn, alphabet: st.SearchStrategy[str]) -> Record:
    """A valid record: every kind, optional fields present or not, any account."""

    def draw_text(min_size: int = 0) -> str:
        return draw(st.text(alphabet, min_size=min_size, max_size=24))

    cls = draw(KINDS)
    fields: dict[str, Any] = {
        "cdr_id": draw_text(1), "tenant": draw_text(), "start": draw(STARTS),
        "usage": draw(USAGES),
    }  # fmt: skip
    if cls is EventRecord or draw(st.booleans()):
        fields["category"] = draw_text(1)
    for name in ("subject", "origin", "destination", "cell", "apn", "reseller"):
        if draw(st.booleans()):
            fields[name] = draw_text()
    if draw(st.booleans()):
        fields["roaming"] = draw(st.booleans())
    fields["account"] = draw_text(draw(st.sampled_from([0, 1, 1, 1])))
    if not fields["account"] or draw(st.booleans()):
        fields["subscriber"] = draw_text(1)
    built = cls(**fields)
    assert isinstance(built, VoiceRecord | SmsRecord | DataRecord | EventRecord)
    return built


ASCII = st.characters(min_codepoint=0, max_codepoint=127)
ANY_TEXT = st.characters(codec="utf-8")
HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(st.lists(records(ANY_TEXT), min_size=1, max_size=12))
def test_random_records_match_the_slow_path(batch: list[Record]) -> None:
    fast = check(encode_records(batch, "msgpack"))
    # Declined exactly when some account is empty (to be resolved from the subscriber).
    assert (fast is None) == any(not r.account for r in batch)


@HYPOTHESIS
@given(st.lists(records(ASCII), min_size=1, max_size=12))
def test_random_ascii_records_are_accepted(batch: list[Record]) -> None:
    batch = [msgspec.structs.replace(r, account=r.account or "A") for r in batch]
    fast = accepted(encode_records(batch, "msgpack"))
    assert fast.columns.usage.tolist() == [r.usage for r in batch]


@HYPOTHESIS
@given(st.dictionaries(st.text(max_size=3), st.integers(-5, 5), max_size=4), st.randoms())
def test_keys_in_random_order_and_unknown_keys(extra: dict[str, int], random: Any) -> None:
    fields = record(origin="o", category="c", subject="s", roaming=False)
    fields.update({key: value for key, value in extra.items() if key not in k.FIELD_NAMES})
    items = list(fields.items())
    random.shuffle(items)
    fast = accepted(message(dict(items)))
    assert fast.columns.category.to_list() == ["c"]


# Bytes near UTF-8's edges: ASCII, continuation bytes, every lead byte class.
EDGE_BYTES = st.sampled_from(
    [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
     0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
)  # fmt: skip


@HYPOTHESIS
@given(
    st.one_of(
        st.binary(max_size=40),
        st.lists(EDGE_BYTES, max_size=40).map(bytes),
        st.text(ANY_TEXT, max_size=20).map(str.encode),
    ),
    st.sampled_from(["destination", "origin", "subject"]),
)
def test_string_bytes_accepted_exactly_when_utf8(value: bytes, field: str) -> None:
    try:
        value.decode()
    except UnicodeDecodeError:
        valid = False
    else:
        valid = True
    fast = check(message(record(**{field: text(value)})))
    assert (fast is not None) == valid


# --- the gather kernel against engine.columns.gather ----------------------------------


@HYPOTHESIS
@given(st.binary(min_size=1, max_size=200), st.data())
def test_gather_spans_matches_gather(data_bytes: bytes, draw: st.DataObject) -> None:
    data = np.frombuffer(data_bytes + bytes(k.PAD), dtype=np.uint8)
    n, columns = draw.draw(st.integers(0, 12)), draw.draw(st.integers(1, 4))
    spans = np.zeros((2, columns, n), dtype=np.int64)
    for c in range(columns):
        for i in range(n):
            start = draw.draw(st.integers(0, len(data_bytes)))
            spans[0, c, i] = start
            spans[1, c, i] = draw.draw(st.integers(0, len(data_bytes) - start))
    offsets = np.empty((columns, n + 1), dtype=np.int64)
    joined = np.empty(int(spans[1].sum()) + k.PAD, dtype=np.uint8)
    assert k.gather_spans(data, spans, offsets, joined) == spans[1].sum()
    base = 0
    for c in range(columns):
        expected = gather(data, spans[0, c], spans[1, c])
        np.testing.assert_array_equal(offsets[c], expected.offsets)
        np.testing.assert_array_equal(joined[base : base + offsets[c, -1]], expected.data)
        base += int(offsets[c, -1])
    if n:
        spans[:, 0, 0] = len(data), 1  # past the data's end: refused, nothing read
        assert k.gather_spans(data, spans, offsets, joined) == k.DECLINE
