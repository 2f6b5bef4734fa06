"""Exact money: decimal strings to integer nanos and back, and the rounding rules.

Amounts are integers in nanos (10**-9 of the currency unit, see
:data:`tariffs.model.NANOS`). These helpers are the only place where money
crosses between text and integers; none of them touches a float.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from tariffs.exceptions import TariffError
from tariffs.model import NANOS, Rounding

NANO_DECIMALS = 9


def parse_amount(text: str | int, where: str) -> int:
    """Parse a decimal amount (``"0.01"``, ``"1.2"``, ``3``) into nanos.

    ``where`` names the file/row/key for the error message.
    """
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        msg = f"{where}: {text!r} is not a decimal amount"
        raise TariffError(msg) from None
    if not value.is_finite():
        msg = f"{where}: {text!r} is not a finite amount"
        raise TariffError(msg)
    scaled = value * NANOS
    if scaled != scaled.to_integral_value():
        msg = f"{where}: {text!r} has more than {NANO_DECIMALS} decimals"
        raise TariffError(msg)
    return int(scaled)


def format_amount(nanos: int, decimals: int = NANO_DECIMALS) -> str:
    """Format nanos as a plain decimal string, trimming trailing zeros.

    >>> format_amount(1_400_000_000)
    '1.4'
    >>> format_amount(-5)
    '-0.000000005'
    """
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS)
    digits = f"{frac:09d}"[:decimals].rstrip("0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def format_units(value: int, scale: int) -> str:
    """``value`` × 10**-scale as a plain decimal string, trailing zeros trimmed.

    >>> format_units(93, 2)
    '0.93'
    """
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**scale)
    digits = f"{frac:0{scale}d}".rstrip("0") if scale else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def round_nanos(nanos: int, decimals: int, method: Rounding) -> int:
    """Round an amount in nanos to ``decimals`` places by ``method``.

    Works on non-negative and negative amounts alike (``UP``/``DOWN`` are away
    from / towards zero, as a billing analyst reads them).
    """
    if decimals >= NANO_DECIMALS:
        return nanos
    step: int = 10 ** (NANO_DECIMALS - decimals)
    sign = -1 if nanos < 0 else 1
    q, r = divmod(abs(nanos), step)
    if r:
        if method is Rounding.UP:
            q += 1
        elif method is Rounding.HALF_UP:
            q += int(2 * r >= step)
        elif method is Rounding.HALF_EVEN:
            q += int(2 * r > step or (2 * r == step and q % 2 == 1))
    return sign * q * step
