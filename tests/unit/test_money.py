"""Money helpers against Decimal: parsing, formatting and every rounding rule."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tariffs import kernels
from tariffs.compile import ROUNDING_CODES
from tariffs.exceptions import TariffError
from tariffs.model import Rounding
from tariffs.money import format_amount, parse_amount, round_nanos

DECIMAL_RULE = {
    Rounding.UP: ROUND_UP,
    Rounding.DOWN: ROUND_DOWN,
    Rounding.HALF_UP: ROUND_HALF_UP,
    Rounding.HALF_EVEN: ROUND_HALF_EVEN,
}


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("0.01", 10_000_000), ("1.2", 1_200_000_000), ("3", 3_000_000_000), ("0.000000001", 1),
     (" 7.5 ", 7_500_000_000), ("-0.25", -250_000_000), ("1e-3", 1_000_000)],
)  # fmt: skip
def test_parse_amount(text: str, nanos: int) -> None:
    assert parse_amount(text, "here") == nanos


@pytest.mark.parametrize(
    ("text", "message"),
    [("0.0000000001", "here: '0.0000000001' has more than 9 decimals"),
     ("abc", "here: 'abc' is not a decimal amount"),
     ("NaN", "here: 'NaN' is not a finite amount")],
)  # fmt: skip
def test_parse_amount_refuses(text: str, message: str) -> None:
    with pytest.raises(TariffError) as info:
        parse_amount(text, "here")
    assert str(info.value) == message


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_format_amount_is_the_exact_decimal(nanos: int) -> None:
    text = format_amount(nanos)
    assert Decimal(text) == Decimal(nanos) / 10**9
    assert not text.endswith(".")
    assert "." not in text or not text.endswith("0")


@settings(deadline=None)  # the first call compiles the kernel
@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=0, max_value=9),
    st.sampled_from(list(Rounding)),
)
def test_round_nanos_matches_decimal_and_the_kernel(
    nanos: int, decimals: int, rule: Rounding
) -> None:
    exact = Decimal(nanos) / 10**9
    expected = exact.quantize(Decimal(1).scaleb(-decimals), rounding=DECIMAL_RULE[rule])
    assert Decimal(round_nanos(nanos, decimals, rule)) / 10**9 == expected
    kernel = kernels.round_total(np.int64(nanos), decimals, ROUNDING_CODES[rule])
    assert kernel == round_nanos(nanos, decimals, rule)
