"""A partition's batch cut into slices of at most SLICE_BYTES: in order, none lost, none empty."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.partition import Message
from engine.worker import _slice


def messages(sizes: list[int]) -> list[Message]:
    return [Message("cdrs", offset, b"x" * size) for offset, size in enumerate(sizes)]


def test_a_batch_under_the_limit_is_one_slice() -> None:
    batch = messages([10, 20, 30])
    assert _slice(batch, 60) == [batch]


def test_slices_are_cut_before_the_message_that_would_pass_the_limit() -> None:
    batch = messages([40, 30, 30, 100, 5, 5])
    runs = _slice(batch, 70)
    assert [[m.offset for m in run] for run in runs] == [[0, 1], [2], [3], [4, 5]]


@given(st.lists(st.integers(0, 300), max_size=60), st.integers(1, 400))
def test_slices_keep_every_message_in_order_and_stay_under_the_limit(
    sizes: list[int], limit: int
) -> None:
    batch = messages(sizes)
    runs = _slice(batch, limit)
    assert [m for run in runs for m in run] == batch
    for run in runs:
        assert sum(len(m.value) for m in run) <= limit or len(run) == 1
    if batch:
        assert all(runs)
