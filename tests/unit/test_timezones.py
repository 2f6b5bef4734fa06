"""The kernels' UTC-offset tables agree with zoneinfo, second by second at every change."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tariffs import kernels
from tariffs.timezones import offset_table

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "Pacific/Chatham", "America/Sao_Paulo"]  # fmt: skip
LO = int(datetime(1971, 1, 1, tzinfo=UTC).timestamp())
HI = int(datetime(2099, 12, 1, tzinfo=UTC).timestamp())


def zone_offset(zone: str, t: int) -> int:
    delta = datetime.fromtimestamp(t, tz=ZoneInfo(zone)).utcoffset()
    assert delta is not None
    return int(delta.total_seconds())


@pytest.mark.parametrize("zone", ZONES)
def test_every_transition_is_exact_to_the_second(zone: str) -> None:
    transitions, offsets = offset_table(zone)
    for k in range(1, len(transitions)):
        t = int(transitions[k])
        assert zone_offset(zone, t) == offsets[k]
        assert zone_offset(zone, t - 1) == offsets[k - 1]


@pytest.mark.parametrize("zone", ZONES)
@settings(deadline=None)  # the first call compiles the kernel
@given(st.integers(min_value=LO, max_value=HI), st.integers(min_value=0, max_value=300))
def test_kernel_lookup_matches_zoneinfo(zone: str, t: int, hint: int) -> None:
    transitions, offsets = offset_table(zone)
    offset, nxt, index = kernels.utc_offset(
        transitions, offsets, np.int64(t), hint % len(transitions)
    )
    assert offset == zone_offset(zone, t)
    assert transitions[index] <= t < nxt


@settings(deadline=None)
@given(st.integers(min_value=-50_000, max_value=80_000))
def test_civil_matches_the_calendar(days: int) -> None:
    date = datetime.fromtimestamp(days * 86_400, tz=UTC)
    assert kernels.civil(np.int64(days)) == (date.year, date.month, date.day, date.isoweekday())
