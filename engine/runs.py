"""Cutting a sequence into runs that fit a byte limit, in order.

Used for input messages taken in one batch (the worker works them in
slices) and for a checkpoint's state changes (the changelog messages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def runs_under(items: Iterable[T], size: Callable[[T], int], limit: int) -> list[list[T]]:
    """``items`` in order, cut into runs whose sizes add up to at most ``limit``; an item
    larger than the limit makes a run of its own. No items: one empty run."""
    runs: list[list[T]] = [[]]
    total = 0
    for item in items:
        weight = size(item)
        if runs[-1] and total + weight > limit:
            runs.append([])
            total = 0
        runs[-1].append(item)
        total += weight
    return runs
