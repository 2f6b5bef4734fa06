"""Rated JSON lines cut into messages: at line ends, at most MAX_CHUNK bytes, none lost."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.worker import MAX_CHUNK, _chunks

# line lengths (without the newline) near the limit and well below it
LENGTHS = st.one_of(
    st.integers(0, 2 * MAX_CHUNK),
    st.integers(0, 2_000),
    st.sampled_from([MAX_CHUNK - 2, MAX_CHUNK - 1, MAX_CHUNK, MAX_CHUNK // 2 - 1, MAX_CHUNK // 2]),
)


def lines_of(lengths: list[int]) -> bytes:
    return b"".join(bytes([97 + i % 26]) * n + b"\n" for i, n in enumerate(lengths))


def cut(lines: bytes) -> list[bytes]:
    return [bytes(chunk) for chunk in _chunks(lines)]


def check(lines: bytes, chunks: list[bytes]) -> None:
    assert b"".join(chunks) == lines
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        assert len(chunk) <= MAX_CHUNK or chunk.count(b"\n") == 1  # a long line alone
    for chunk, after in pairwise(chunks):
        # greedy: the next line would not have fitted
        next_line = after[: after.index(b"\n") + 1]
        assert len(chunk) + len(next_line) > MAX_CHUNK


@settings(max_examples=150, deadline=None)
@given(st.lists(LENGTHS, max_size=8))
def test_chunks_cut_at_line_ends_within_the_limit(lengths: list[int]) -> None:
    lines = lines_of(lengths)
    chunks = cut(lines)
    check(lines, chunks)
    assert len(chunks) <= len(lengths)


def test_no_lines_no_chunks() -> None:
    assert cut(b"") == []


def test_lines_that_fit_are_one_chunk() -> None:
    lines = lines_of([MAX_CHUNK - 1])
    assert len(lines) == MAX_CHUNK
    assert cut(lines) == [lines]


def test_one_byte_over_the_limit_makes_two_chunks() -> None:
    lines = lines_of([MAX_CHUNK // 2 - 1, MAX_CHUNK // 2 - 1, 0])
    assert len(lines) == MAX_CHUNK + 1
    first, second = lines.split(b"\n", 2)[:2]
    assert cut(lines) == [first + b"\n" + second + b"\n", b"\n"]


def test_a_line_longer_than_a_chunk_stands_alone() -> None:
    lines = lines_of([10, MAX_CHUNK + 5, 20, 30])
    chunks = cut(lines)
    assert [len(c) for c in chunks] == [11, MAX_CHUNK + 6, 21 + 31]
    check(lines, chunks)


def test_chunks_are_views_of_the_lines_not_copies() -> None:
    # the lines are the JSON writer's buffer: cutting them must not copy megabytes
    lines = bytearray(lines_of([700] * 3_000))
    chunks = _chunks(memoryview(lines))
    assert len(chunks) == 3
    assert all(chunk.obj is lines for chunk in chunks)
    assert b"".join(chunks) == lines
