"""UTC-offset tables for the kernels: a time zone as sorted transition instants.

A kernel turns a UTC instant into local wall time with one binary search in
``(transitions, offsets)``: ``offsets[i]`` is in force from
``transitions[i]`` (inclusive) to ``transitions[i + 1]``. The table is built
from :mod:`zoneinfo`, so it agrees with the reference rater by construction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

FIRST_YEAR = 1970
LAST_YEAR = 2100
_DAY = 86_400
_HOUR = 3_600


def _offset(zone: ZoneInfo, t: int) -> int:
    local = datetime.fromtimestamp(t, tz=zone)
    delta = local.utcoffset()
    assert delta is not None  # a ZoneInfo always has an offset
    return int(delta.total_seconds())


def _find_change(zone: ZoneInfo, lo: int, hi: int) -> int:
    """First second in ``(lo, hi]`` whose offset differs from ``lo``'s."""
    before = _offset(zone, lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, mid) == before:
            lo = mid
        else:
            hi = mid
    return hi


@lru_cache(maxsize=64)
def offset_table(name: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Transitions (UTC seconds) and offsets (seconds) for ``name``.

    Scanned day by day between 1970 and 2100 and refined to the second; no
    zone in the tz database changes its offset twice within a day in that span.
    """
    zone = ZoneInfo(name)
    start = int(datetime(FIRST_YEAR, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(LAST_YEAR, 12, 31, tzinfo=UTC).timestamp())
    step = int(timedelta(days=1).total_seconds())
    transitions = [-(2**62)]
    offsets = [_offset(zone, start)]
    prev_t, prev_off = start, offsets[0]
    for t in range(start + step, end, step):
        off = _offset(zone, t)
        if off != prev_off:
            change = _find_change(zone, prev_t, t)
            transitions.append(change)
            offsets.append(off)
            prev_off = off
        prev_t = t
    return np.array(transitions, dtype=np.int64), np.array(offsets, dtype=np.int64)
