"""Arguments several ``ratewire`` commands share."""

from __future__ import annotations

import argparse
from pathlib import Path


def tariff_args(parser: argparse.ArgumentParser) -> None:
    """``--tariffs`` (required) and what an imported CGRateS plan does not say."""
    parser.add_argument(
        "--tariffs",
        required=True,
        type=Path,
        help="native plan file (.toml) or CGRateS tariff-plan CSV folder",
    )
    parser.add_argument("--currency", help="currency of an imported CGRateS plan (default EUR)")
    parser.add_argument("--timezone", help="time zone of an imported CGRateS plan (default UTC)")


def whole_number(text: str) -> int:
    """An argument that counts something: a whole number, at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value
