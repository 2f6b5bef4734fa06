"""The compiled JSON writer for rated records and its msgspec twin give the same bytes.

:meth:`RatedWriter.write` (the kernel in :mod:`engine.json_kernel`) must write
byte for byte what :meth:`RatedWriter.encode_slow` encodes, and every line must
decode back to a :class:`RatedRecord` holding the input's strings unchanged:
quotes, backslashes, control characters, non-ASCII, empty strings; long calls
with many spans, zero usage, unratable records mixed in, tariffs with long names
and non-ASCII prefixes, and balances shown with ``--state``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE, Columns, StrColumn
from engine.rated_output import Debits, JsonTables, RatedRecord, RatedWriter
from tariffs.loader import load_tariff
from tariffs.native import loads_native
from tariffs.rating import Rater

SAMPLE = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
TENANT = "ratewire.demo"
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # Monday 09:00 in Berlin
START_US = int(START.timestamp()) * 1_000_000
HOUR = 3600
CATEGORY = {KIND_VOICE: "call", KIND_SMS: "sms", KIND_DATA: "data", KIND_EVENT: "video"}
DECODE = msgspec.json.Decoder(RatedRecord)

TRICKY = [
    'say "hi"',
    "back\\slash\\",
    "new\nline\ttab",
    "\x01\x1f\x00 low controls",
    "\b\f\r short escapes",
    "\x7f del",
    "é",
    "日本",
    "🎉 emoji",
    "\u2028\u2029 separators",
    "",
    '\\"\\\\"',
    "</script>",
]


class Row(NamedTuple):
    kind: int
    cdr_id: str
    account: str
    destination: str
    usage: int
    start_us: int = START_US
    tenant: str = TENANT
    category: str = ""  # "": the kind's category in the sample plan


def columns(rows: Sequence[Row]) -> Columns:
    def strings(values: list[str]) -> StrColumn:
        return StrColumn.from_strings(values)

    return Columns(
        kind=np.array([r.kind for r in rows], dtype=np.uint8),
        cdr_id=strings([r.cdr_id for r in rows]),
        tenant=strings([r.tenant for r in rows]),
        account=strings([r.account for r in rows]),
        category=strings([r.category or CATEGORY[r.kind] for r in rows]),
        subject=strings([r.account for r in rows]),
        destination=strings([r.destination for r in rows]),
        start_us=np.array([r.start_us for r in rows], dtype=np.int64),
        usage=np.array([r.usage for r in rows], dtype=np.int64),
    )


@pytest.fixture(scope="module")
def rater() -> Rater:
    return Rater(load_tariff(SAMPLE))


def assert_twins(
    path: Path, rater: Rater, rows: Sequence[Row], debits: Debits | None = None
) -> list[RatedRecord]:
    """Kernel bytes == twin bytes; each line decodes to the record it was made from."""
    batch = columns(rows)
    rated = rater.rate(batch)
    with RatedWriter(path, rater.compiled) as writer:
        count = writer.write(batch, rated, debits)
    fast = path.read_bytes()
    assert fast.count(b"\n") == count
    with RatedWriter(path.with_suffix(".slow"), rater.compiled) as writer:
        slow = writer.encode_slow(batch, rated, debits)
    assert fast == slow
    kept = RatedWriter.rows(rated, debits).tolist()
    records = [DECODE.decode(line) for line in fast.splitlines()]
    assert len(records) == len(kept)
    for record, i in zip(records, kept, strict=True):
        row, rating = rows[i], rated.rating(i)
        assert (record.cdr_id, record.account, record.destination) == (
            row.cdr_id,
            row.account,
            row.destination,
        )
        assert (record.tenant, record.subject, record.usage) == (row.tenant, row.account, row.usage)
        assert record.start_us == row.start_us
        assert record.cost_nanos == rating.cost
        assert (record.plan, record.zone, record.prefix) == (
            rating.plan,
            rating.destination,
            rating.prefix,
        )
        assert [(s.offset, s.usage, s.billed) for s in record.spans] == [
            (s.offset, s.usage, s.billed) for s in rating.spans
        ]
    return records


def test_tricky_strings(tmp_path: Path, rater: Rater) -> None:
    rows = []
    for n, text in enumerate(TRICKY):
        rows += [
            Row(KIND_SMS, f"s{n}{text}", f"acc{text}", f"44{text}", 1),  # *any: international
            Row(KIND_SMS, text or "empty", text, text, 2),  # empty account and destination
            Row(KIND_VOICE, f"v{n}{text}", text, f"4915{text}", 61),  # DE_MOBILE by prefix
            Row(KIND_DATA, f"d\n{n}", f"{text}{text}", text, 1500 + n),
        ]
    records = assert_twins(tmp_path / "out.jsonl", rater, rows)
    assert len(records) == len(rows)
    assert {r.prefix for r in records} == {"", "4915"}


def test_unratable_records_are_left_out(tmp_path: Path, rater: Rater) -> None:
    rows = [
        Row(KIND_VOICE, "ok1", "a", "4930123456", 45),
        Row(KIND_VOICE, 'bad"1', "a", "9991234567", 45),  # UNAUTHORIZED_DESTINATION
        Row(KIND_SMS, "ok2", "a", "4930123456", 3),
        Row(KIND_EVENT, "bad\\2", "a", "", 1, category="fax"),  # RATING_PLAN_NOT_FOUND
        Row(KIND_VOICE, "bad3", "a", "1234", 45, tenant="nobody"),  # RATING_PLAN_NOT_FOUND
        Row(KIND_DATA, "ok3", "a", "", 2_000_000),
    ]
    records = assert_twins(tmp_path / "out.jsonl", rater, rows)
    assert [(r.cdr_id, r.cost) for r in records] == [
        ("ok1", "0.12"),
        ("ok2", "0.27"),
        ("ok3", "0.02"),
    ]


def test_zero_usage_has_no_spans(tmp_path: Path, rater: Rater) -> None:
    rows = [Row(kind, f"z{kind}", "a", "4930123456", 0) for kind in CATEGORY]
    records = assert_twins(tmp_path / "out.jsonl", rater, rows)
    assert [(r.cost, r.cost_nanos, r.connect_fee, r.spans) for r in records] == [
        ("0", 0, "0", [])
    ] * 4


def test_long_calls_with_many_spans(tmp_path: Path, rater: Rater) -> None:
    rows = [
        Row(KIND_VOICE, "4h", "a", "4915112345", 4 * HOUR, START_US + 8 * HOUR * 10**6),
        Row(KIND_VOICE, "week", "a", "4930123456", 7 * 24 * HOUR),
        Row(KIND_VOICE, "short", "a", "4930123456", 1),
        Row(KIND_VOICE, "fortnight", "b", "4915112345", 14 * 24 * HOUR + 17),
        Row(KIND_DATA, "30GB", "a", "", 30 * 10**9),  # all three volume tiers
    ]
    records = assert_twins(tmp_path / "out.jsonl", rater, rows)
    spans = {r.cdr_id: len(r.spans) for r in records}
    # 17:00-21:00 local: the peak minute block, peak per second, then evening off-peak
    assert spans["4h"] == 3
    assert spans["week"] > 15  # a day and a night every weekday, and the weekend
    assert spans["fortnight"] > spans["week"]
    assert spans["30GB"] == 3
    assert [s.amount for s in records[-1].spans] == ["10", "45", "40"]  # 1 GB, 9 GB, 20 GB


def test_batch_of_many_records(tmp_path: Path, rater: Rater) -> None:
    rows = [
        Row(KIND_VOICE if n % 3 else KIND_SMS, f"c{n}", f"a{n % 7}", f"49{n:08d}"[:10], n % 500)
        for n in range(3_000)
    ]
    assert len(assert_twins(tmp_path / "out.jsonl", rater, rows)) == 3_000


def small_tariff(name_length: int, prefixes: Sequence[str], currency: str = "EUR") -> Rater:
    """One plan whose every name is ``name_length`` characters long."""
    long = "X" * name_length
    zone = ", ".join(msgspec.json.encode(p).decode() for p in prefixes)
    return Rater(
        loads_native(f'''
[tariff]
name = "names"
currency = "{currency}"
timezone = "UTC"
[destinations]
Z{long} = [{zone}]
[timings.T{long}]
weekdays = []
[rates.R{long}]
steps = [{{ from = 0, price = "0.1", per = 1, increment = 1 }}]
[destination_rates.D{long}]
destination = "Z{long}"
rate = "R{long}"
[plans.P{long}]
bindings = [{{ destination_rate = "D{long}", timing = "T{long}", weight = 10 }}]
[[profiles]]
tenant = "{TENANT}"
category = "sms"
subject = "*any"
activation = "2020-01-01T00:00:00Z"
plan = "P{long}"
''')
    )


def test_long_tariff_names(tmp_path: Path) -> None:
    """Names of 3,000 characters: the output buffer is sized for them (it used to overflow)."""
    rater = small_tariff(3_000, ["49"], currency="E" * 2_000)
    rows = [Row(KIND_SMS, f"c{n}", "a", "4930", 1) for n in range(40)]
    records = assert_twins(tmp_path / "out.jsonl", rater, rows)
    assert {(r.plan, r.currency, r.spans[0].rate) for r in records} == {
        ("P" + "X" * 3_000, "E" * 2_000, "R" + "X" * 3_000)
    }


def test_non_ascii_prefixes(tmp_path: Path) -> None:
    """The prefix is cut from the destination by bytes; it must come out whole."""
    rater = small_tariff(3, ["é1", "日本", "+49"])
    rows = [
        Row(KIND_SMS, "a", "a", "é1234", 1),
        Row(KIND_SMS, "b", "a", "日本語", 1),
        Row(KIND_SMS, "c", "a", "+4930", 1),
        Row(KIND_SMS, "d", "a", "é2", 1),  # no prefix: rejected
    ]
    records = assert_twins(tmp_path / "out.jsonl", rater, rows)
    assert [(r.cdr_id, r.prefix) for r in records] == [("a", "é1"), ("b", "日本"), ("c", "+49")]


def test_balances_shown_with_state(tmp_path: Path, rater: Rater) -> None:
    """Hand-made debits: several balance rows per record, odd names, dropped records."""
    rows = [Row(KIND_SMS, f"c{n}", f"a{n}", "4930123456", n + 1) for n in range(5)]
    names = ['main "EUR"', "bundle\\sms", "日本\n", ""]
    record = [0, 0, 0, 1, 3, 3, 4]
    debits = Debits(
        paid=np.array([9, 0, 27, 36, 45], dtype=np.int64),
        covered=np.array([0, 2, 0, 0, 1], dtype=np.int64),
        flags=np.array([0, 1, 2, 4, 1], dtype=np.int64),  # 2 and 4 (unknown, duplicate): left out
        currency_scale=2,
        journal_record=np.array(record, dtype=np.int64),
        balance=[names[n % 4] for n in range(len(record))],
        unit=["EUR", "SMS", "EUR", "SMS", "EUR", "EUR", "SMS"],
        delta=np.array([-9, -1, 5, -2, -40, -5, -1], dtype=np.int64),
        after=np.array([91, 0, 105, 3, 0, -5, 2**62], dtype=np.int64),
    )
    records = assert_twins(tmp_path / "out.jsonl", rater, rows, debits)
    assert [(r.cdr_id, r.charged, r.covered, r.insufficient_credit) for r in records] == [
        ("c0", "0.09", 0, False),
        ("c1", "0", 2, True),
        ("c4", "0.45", 1, True),
    ]
    assert [len(r.balances or []) for r in records] == [3, 1, 1]
    assert records[0].balances is not None
    assert [b.balance for b in records[0].balances] == names[:3]


# -- random strings ------------------------------------------------------------------

any_text = st.text(max_size=12)


@st.composite
def random_row(draw: st.DrawFn) -> Row:
    """SMS and data rate whatever the destination; most random calls are unauthorized."""
    kind = draw(st.sampled_from([KIND_SMS, KIND_VOICE, KIND_DATA]))
    destination = draw(any_text)
    if kind == KIND_VOICE and draw(st.booleans()):
        destination = "4930" + destination
    usage = {KIND_SMS: st.integers(0, 5), KIND_VOICE: st.integers(0, 3 * HOUR)}
    return Row(
        kind,
        draw(any_text),
        draw(any_text),
        destination,
        draw(usage.get(kind, st.integers(0, 10**8))),
        draw(st.integers(START_US - 86_400 * 10**6, START_US + 86_400 * 10**6)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(random_row(), min_size=1, max_size=15))
def test_random_strings(
    rows: list[Row], rater: Rater, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.getbasetemp() / "random"
    folder.mkdir(exist_ok=True)
    assert_twins(folder / "out.jsonl", rater, rows)


def test_the_output_buffer_is_reused_only_once_no_view_of_it_is_alive(rater: Rater) -> None:
    # a fresh buffer of tens of MB per batch cost a page fault per 4 KB: the writer reuses
    # its last one, but never while the caller still holds the lines written into it
    tables = JsonTables(rater.compiled)
    first, second = (
        columns([Row(KIND_SMS, "c1", "a1", "4930123456", 1)]),
        columns([Row(KIND_SMS, "c2", "a2", "4930123457", 1)]),
    )
    rows = np.array([0], dtype=np.intp)
    held = tables.encode(first, rater.rate(first), rows)
    kept = bytes(held)
    again = tables.encode(second, rater.rate(second), rows)
    assert bytes(held) == kept  # written elsewhere: the first lines are intact
    assert b'"cdr_id":"c2"' in bytes(again)
    assert not np.shares_memory(np.frombuffer(held, np.uint8), np.frombuffer(again, np.uint8))
    address = np.frombuffer(again, np.uint8).ctypes.data
    del held, again
    third = tables.encode(first, rater.rate(first), rows)
    assert bytes(third) == kept
    assert np.frombuffer(third, np.uint8).ctypes.data == address  # no view alive: reused
