"""The columnar Asterisk path agrees with the line-by-line parser, its slow twin.

Every field of every record (the slow records packed by ``records_to_columns``),
the skips per rule (in the same order) and every reject (source, reason,
message, raw bytes) must be equal: on our fixture, on the shared corpus, and on
random ``Master.csv`` contents full of quotes, doubled quotes, commas, every
disposition, blank and malformed lines, CRLF and DST edges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.columns import Columns
from engine.mediation.asterisk import parse_master_csv_bytes
from engine.mediation.asterisk_fast import _utc_us, parse_master_csv_columns_bytes
from engine.wire import records_to_columns

FIXTURE = Path(__file__).parents[1] / "fixtures" / "mediation" / "asterisk_master.csv"
CORPUS = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "asterisk"
ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")
STRINGS = ("cdr_id", "tenant", "account", "category", "subject", "destination")


def assert_same(data: bytes, timezone: str = "UTC") -> None:
    slow = parse_master_csv_bytes(data, name="M.csv", tenant="t1", timezone=timezone)
    fast = parse_master_csv_columns_bytes(data, name="M.csv", tenant="t1", timezone=timezone)
    assert fast.lines == slow.total
    assert list(fast.skipped.items()) == list(slow.skipped.items())
    assert fast.rejects == slow.rejects
    assert_columns_equal(fast.columns, records_to_columns(slow.records))


def assert_columns_equal(fast: Columns, slow: Columns) -> None:
    assert len(fast) == len(slow)
    for name in STRINGS:
        assert getattr(fast, name).to_list() == getattr(slow, name).to_list(), name
    for name in ("kind", "start_us", "usage"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)


def test_fixture_and_empty_file() -> None:
    for zone in ZONES:
        assert_same(FIXTURE.read_bytes(), zone)
    assert_same(b"")
    assert_same(b"\n\r\n  \r\t\n")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize(
    "name",
    ["testsuite_Master.csv", "testsuite_Master2.csv", "testsuite_good.csv", "testsuite_buggy.csv"],
)
def test_corpus(name: str) -> None:
    assert_same((CORPUS / name).read_bytes(), "Europe/Berlin")


# --- random Master.csv ---------------------------------------------------------------------

TEXT = st.text(alphabet='ab 1,"<>é\t', max_size=6)
NUMBER = st.one_of(
    st.integers(0, 400).map(str),
    st.sampled_from(["", " 7", "+5", "-3", "1_0", "007", "x", "99999999999999999999", "٣"]),
)
DURATION = st.integers(400, 1000).map(str)
DISPOSITION = st.sampled_from(
    ["ANSWERED"] * 6 + ["NO ANSWER", "BUSY", "FAILED", "CONGESTION", "HUNG UP", "answered", ""]
)


@st.composite
def times(draw: st.DrawFn) -> str:
    """Wall times, many near DST changes, and some the slow parser reads leniently or not at all."""
    base = draw(st.sampled_from([datetime(2024, 3, 31, 2), datetime(2024, 10, 27, 2),  # noqa: DTZ001
                                 datetime(2024, 11, 3, 1), datetime(2024, 4, 7, 2),  # noqa: DTZ001
                                 datetime(2024, 2, 28, 23)]))  # noqa: DTZ001  # fmt: skip
    when = base + timedelta(seconds=draw(st.integers(-5400, 5400)))
    text = when.strftime("%Y-%m-%d %H:%M:%S")
    return draw(st.sampled_from([text] * 8 + [text.replace(" ", "T"), text[:-1], "",
                                 "2024-02-30 10:00:00", "2024-13-01 10:00:00",
                                 "1960-01-01 10:00:00", "2024-01-01 24:00:00",
                                 "2024-W01-1 10:00:00", "2024-01-01 10:00:60"]))  # fmt: skip


def field(value: str, quoted: bool) -> str:
    return '"' + value.replace('"', '""') + '"' if quoted or '"' in value or "," in value else value


@st.composite
def lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["good"] * 8 + ["blank", "short", "long", "unterminated",
                                                 "after_quote", "stray_quote"]))  # fmt: skip
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t ", "\x0b"]))
    values = [
        draw(st.sampled_from(["acme", "", "b,c", 'x"y'])),  # accountcode
        draw(st.sampled_from(["2001", "", "49 30"])),  # src
        draw(st.sampled_from(["4930123456", "4917612345678", "", "100"])),  # dst
        "ctx",
        draw(TEXT),  # clid
        "SIP/a-0001",
        "SIP/b",
        "Dial",
        draw(TEXT),
        draw(times()),  # start
        draw(times()),  # answer
        "2024-03-01 10:00:00",
        draw(st.one_of(DURATION, DURATION, NUMBER)),  # duration, mostly ≥ billsec
        draw(NUMBER),  # billsec
        draw(DISPOSITION),
        "DOCUMENTATION",
        draw(st.sampled_from(["1709283600.1", "1709283600.2", "u3", "", "a,b", 'q"q'])),
        draw(TEXT),
    ]
    quoted = draw(st.lists(st.booleans(), min_size=18, max_size=18))
    cells = [field(v, q) for v, q in zip(values, quoted, strict=True)]
    if kind == "short":
        cells = cells[: draw(st.integers(1, 17))]
    elif kind == "long":
        cells.append("extra")
    elif kind == "unterminated":
        cells[4] = '"open'
    elif kind == "after_quote":
        cells[4] = '"a"b'
    elif kind == "stray_quote":
        cells[4] = 'a"b'
    return ",".join(cells)


@st.composite
def master_csv(draw: st.DrawFn) -> bytes:
    body = draw(st.lists(lines(), max_size=25))
    ends = draw(st.lists(st.sampled_from(["\n", "\n", "\r\n", "\r"]), min_size=len(body),
                         max_size=len(body)))  # fmt: skip
    data = "".join(line + end for line, end in zip(body, ends, strict=True)).encode()
    if draw(st.booleans()) and data:
        data = data.rstrip(b"\r\n")  # no final line end
    if draw(st.integers(0, 9)) == 0 and data:
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut] + draw(st.sampled_from([b"\xff", b"\x00", b"\xc3"])) + data[cut:]
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=master_csv(), timezone=st.sampled_from(ZONES))
def test_random_files_agree(data: bytes, timezone: str) -> None:
    assert_same(data, timezone)


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    local=st.integers(
        int(datetime(1971, 1, 1, tzinfo=UTC).timestamp()),
        int(datetime(2099, 12, 31, tzinfo=UTC).timestamp()),
    ),
    near=st.sampled_from([0, 1, 2, 3]),
)
def test_local_to_utc_agrees_with_zoneinfo(zone: str, local: int, near: int) -> None:
    if near:  # land near a March/October/November change in a random year
        year = datetime.fromtimestamp(local, UTC).year
        month = (3, 10, 11)[near - 1]
        local = int(datetime(year, month, 1, tzinfo=UTC).timestamp()) + local % (31 * 86400)
    wall = datetime.fromtimestamp(local, UTC).replace(tzinfo=ZoneInfo(zone))
    expected = int(wall.astimezone(UTC).timestamp()) * 1_000_000
    assert _utc_us(np.array([local], np.int64), zone)[0] == expected
