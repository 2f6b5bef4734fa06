"""Load a tariff plan from a path: a native ``.toml`` file or a CGRateS CSV folder."""

from __future__ import annotations

from pathlib import Path

from tariffs.cgrates import load_cgrates
from tariffs.exceptions import TariffError
from tariffs.model import Tariff
from tariffs.native import load_native

DEFAULT_CURRENCY = "EUR"
DEFAULT_TIMEZONE = "UTC"


def load_tariff(path: Path, *, currency: str | None = None, timezone: str | None = None) -> Tariff:
    """Load the tariff plan at ``path``.

    A ``.toml`` file is read in the native format (:mod:`tariffs.native`); it
    states its own currency and time zone, so ``currency`` and ``timezone``, if
    given, must agree with it. A folder is imported as a CGRateS tariff plan
    (:mod:`tariffs.cgrates`), whose CSV files state neither: they default to
    EUR and UTC.
    """
    if path.is_dir():
        return load_cgrates(
            path,
            currency=currency or DEFAULT_CURRENCY,
            timezone=timezone or DEFAULT_TIMEZONE,
        )
    if path.is_file() and path.suffix.lower() == ".toml":
        tariff = load_native(path)
        _check_agrees(path, "currency", tariff.currency, currency)
        _check_agrees(path, "timezone", tariff.timezone, timezone)
        return tariff
    if not path.exists():
        msg = f"{path}: no such file or folder; give a .toml tariff plan or a CGRateS folder"
    else:
        msg = f"{path}: not a tariff plan; give a .toml file or a folder of CGRateS CSV files"
    raise TariffError(msg)


def _check_agrees(path: Path, what: str, stated: str, asked: str | None) -> None:
    if asked is not None and asked != stated:
        msg = (
            f"{path.name}: the plan's {what} is {stated!r} but {asked!r} was asked for;"
            f" change tariff.{what} in the file or drop the option"
        )
        raise TariffError(msg)
