"""Fixtures shared by the balance tests: a ledger on each store, and a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from balances.ledger import Ledger
from balances.store import MemoryStore, RocksStore, Store
from balances.units import load_units

UNITS = load_units()


class Books:
    """Ledgers on one kind of store; :meth:`reopen` is a restarted worker: only what was
    checkpointed survives."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind, self.path = kind, path
        self.memory = MemoryStore()
        self.stores: list[Store] = [self.memory]

    def open(self) -> Ledger:
        store: Store = self.memory if self.kind == "memory" else RocksStore(self.path)
        self.stores.append(store)
        return Ledger(store, UNITS)

    def reopen(self, ledger: Ledger) -> Ledger:
        if self.kind == "rocks":
            ledger.store.close()
        return self.open()

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture(params=["memory", "rocks"])
def books(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Books]:
    made = Books(request.param, tmp_path / "db")
    yield made
    made.close()


def snapshot(ledger: Ledger) -> dict[str, Any]:
    """Everything an operation could change: accounts, balances, and the store after a
    checkpoint (journal, records, remembered operations)."""
    ledger.checkpoint()
    meta = ledger.store.get(b"meta")
    assert meta is not None
    return {
        "seq": msgspec.msgpack.decode(meta)["seq"],
        "rows": {k: v for k, v in ledger.store.scan(b"") if k != b"meta"},
        "accounts": list(ledger.state.accounts),
        "balances": {a.id: ledger.balances(a.id) for a in ledger.state.accounts},
    }


def amounts(ledger: Ledger, account_id: str) -> dict[str, int]:
    return {b.id: b.amount for b in ledger.balances(account_id)}
