"""Unit catalogs: the units balances can be held in, read from a TOML file.

```toml
[units.EUR]
kind = "money"; measure = "money"; decimals = 9; display = "EUR"
[units.voice_seconds]
kind = "item"; measure = "seconds"; display = "minutes"; display_factor = 60
```
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from balances.exceptions import BalanceError
from balances.model import Measure, Unit, UnitKind

SAMPLE_UNITS = Path(__file__).parent / "samples" / "units.toml"
MAX_DECIMALS = 18


class _UnitFile(msgspec.Struct, forbid_unknown_fields=True):
    units: dict[str, dict[str, object]]


class UnitCatalog:
    """Units by name, each with a stable index (its position in the file)."""

    def __init__(self, units: list[Unit]) -> None:
        self.units = tuple(units)
        self.index = {u.name: i for i, u in enumerate(units)}

    def __getitem__(self, name: str) -> Unit:
        return self.units[self.require(name)]

    def require(self, name: str) -> int:
        """The index of unit ``name``; a clear error for an unknown one."""
        found = self.index.get(name)
        if found is None:
            known = ", ".join(sorted(self.index))
            msg = f"unknown unit {name!r} (known: {known})"
            raise BalanceError(msg)
        return found

    def money(self, name: str) -> int:
        """The index of money or crypto unit ``name`` (a currency an account can hold)."""
        index = self.require(name)
        if self.units[index].measure is not Measure.MONEY:
            msg = f"unit {name!r} is not money: it counts {self.units[index].measure.value}"
            raise BalanceError(msg)
        return index


def load_units(path: Path = SAMPLE_UNITS) -> UnitCatalog:
    """Read a unit catalog; every problem names the file and the unit."""
    try:
        raw = msgspec.toml.decode(path.read_bytes(), type=_UnitFile)
    except (OSError, msgspec.DecodeError) as exc:
        msg = f"{path}: cannot read the unit catalog: {exc}"
        raise BalanceError(msg) from exc
    units = []
    for name, fields in raw.units.items():
        try:
            unit = msgspec.convert({"name": name, **fields}, Unit)
        except msgspec.ValidationError as exc:
            msg = f"{path}: units.{name}: {exc}"
            raise BalanceError(msg) from exc
        if not 0 <= unit.decimals <= MAX_DECIMALS:
            msg = f"{path}: units.{name}.decimals: {unit.decimals} is not in 0..{MAX_DECIMALS}"
            raise BalanceError(msg)
        if unit.kind is UnitKind.ITEM and unit.measure is Measure.MONEY:
            msg = f"{path}: units.{name}: an item unit cannot measure money"
            raise BalanceError(msg)
        if unit.display_factor <= 0:
            msg = f"{path}: units.{name}.display_factor: must be positive"
            raise BalanceError(msg)
        units.append(unit)
    return UnitCatalog(units)
