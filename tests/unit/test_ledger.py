"""The ledger on both stores: operations, journal, replays, checkpoints and reopening."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tariffs
from balances.debit import Debitor
from balances.exceptions import BalanceError, OperationConflictError
from balances.kernels import FLAG_DUPLICATE
from balances.ledger import Ledger
from balances.model import Account, Balance, Mode
from balances.store import MemoryStore, RocksStore, Store
from balances.units import load_units
from engine.records import SmsRecord
from engine.wire import records_to_columns
from tariffs.loader import load_tariff
from tariffs.rating import Rater

T0 = datetime(2026, 11, 1, tzinfo=UTC)
EUR = 1_000_000_000


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "db")
    yield made
    made.close()


def reopen(ledger: Ledger, tmp_path: Path) -> Ledger:
    """The same state as a new process would load it (after a checkpoint)."""
    ledger.checkpoint()
    if isinstance(ledger.store, RocksStore):
        ledger.store.close()
        return Ledger(RocksStore(tmp_path / "db"), load_units())
    return Ledger(ledger.store, load_units())


def alice(ledger: Ledger) -> None:
    ledger.create_account(
        Account(id="alice", tenant="t", currency="EUR", created=T0),
        [Balance(id="promo", unit="EUR", amount=2 * EUR, weight=5,
                 valid_until=T0 + timedelta(days=30)),
         Balance(id="minutes", unit="voice_seconds", amount=600, weight=10)],
    )  # fmt: skip


def amounts(ledger: Ledger, account: str) -> dict[str, int]:
    return {b.id: b.amount for b in ledger.balances(account)}


def test_balances_are_the_sum_of_their_journal(store: Store, tmp_path: Path) -> None:
    ledger = Ledger(store, load_units())
    alice(ledger)
    ledger.topup("alice", "main", 5 * EUR, op_id="t1")
    ledger.adjust("alice", "main", -EUR // 2, op_id="a1")
    ledger.transfer("alice", "main", "minutes", EUR, rate=(60, EUR), op_id="x1")
    ledger.expire(T0 + timedelta(days=31))
    want = {"minutes": 660, "promo": 0, "main": 3_500_000_000}
    assert amounts(ledger, "alice") == want
    ledger = reopen(ledger, tmp_path)
    assert amounts(ledger, "alice") == want
    sums: dict[str, int] = {}
    for entry in ledger.journal("alice"):
        assert entry.after == entry.before + entry.delta
        sums[entry.balance] = sums.get(entry.balance, 0) + entry.delta
    assert sums == {"promo": 0, "minutes": 660, "main": 3_500_000_000}
    reasons = [e.reason for e in ledger.journal("alice")]
    assert reasons == ["opening", "opening", "topup", "adjustment", "transfer", "transfer",
                       "expiry"]  # fmt: skip


def test_operations_apply_once_per_op_id(store: Store, tmp_path: Path) -> None:
    ledger = Ledger(store, load_units())
    alice(ledger)
    first = ledger.topup("alice", "main", EUR, op_id="t1")
    again = ledger.topup("alice", "main", EUR, op_id="t1")
    assert first == again
    assert amounts(ledger, "alice")["main"] == EUR
    ledger = reopen(ledger, tmp_path)
    assert ledger.topup("alice", "main", EUR, op_id="t1") == first  # a retry after a restart
    assert amounts(ledger, "alice")["main"] == EUR


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda L: L.topup("bob", "main", EUR, op_id="x"), "unknown account 'bob'"),
        (lambda L: L.topup("alice", "nope", EUR, op_id="x"), "has no balance 'nope'"),
        (lambda L: L.topup("alice", "main", -5, op_id="x"), "top-up amount -5 must be positive"),
        (lambda L: L.topup("alice", "main", 5, op_id=""), "a topup operation needs an op_id"),
        (lambda L: L.transfer("alice", "promo", "main", 3 * EUR, op_id="x"),
         "transfer: 'promo' holds 2000000000 available, 3000000000 asked"),
        (lambda L: L.create_account(Account(id="alice", tenant="t", currency="EUR", created=T0)),
         "account 'alice' exists already"),
        (lambda L: L.create_account(Account(id="carol", tenant="t", currency="DOGE", created=T0)),
         "unknown unit 'DOGE'"),
        (lambda L: L.create_account(Account(id="dan", tenant="t", currency="EUR", created=T0),
                                    [Balance(id="m", unit="voice_seconds", amount=-1)]),
         "opening amount -1 is negative"),
    ],
)  # fmt: skip
def test_bad_operations_change_nothing(store: Store, call: object, message: str) -> None:
    ledger = Ledger(store, load_units())
    alice(ledger)
    ledger.checkpoint()
    before = (amounts(ledger, "alice"), list(ledger.journal()), len(ledger.state.accounts))
    with pytest.raises(BalanceError) as info:
        call(ledger)  # type: ignore[operator]
    assert message in str(info.value)
    assert (amounts(ledger, "alice"), list(ledger.journal()), len(ledger.state.accounts)) == before


def test_op_id_reused_for_another_operation_is_a_conflict(store: Store) -> None:
    ledger = Ledger(store, load_units())
    alice(ledger)
    ledger.transfer("alice", "promo", "main", EUR, op_id="x1")
    ledger.checkpoint()
    with pytest.raises(OperationConflictError) as info:
        ledger.topup("alice", "main", EUR, op_id="x1")
    assert "op_id 'x1' was used for transfer" in str(info.value)
    assert amounts(ledger, "alice")["main"] == EUR


def test_mode_change_survives_reopen(store: Store, tmp_path: Path) -> None:
    ledger = Ledger(store, load_units())
    alice(ledger)
    ledger.set_mode("alice", Mode.POSTPAID, 50 * EUR, at=T0)
    ledger = reopen(ledger, tmp_path)
    row = ledger.state.row_of("alice")
    assert int(ledger.state.acc.arrays["mode"][row]) == 1
    assert int(ledger.state.acc.arrays["limit"][row]) == 50 * EUR


def test_unsaved_work_is_lost_whole_on_restart(tmp_path: Path) -> None:
    ledger = Ledger(RocksStore(tmp_path / "db"), load_units())
    alice(ledger)
    ledger.checkpoint()
    ledger.topup("alice", "main", EUR, op_id="t1")  # not checkpointed
    ledger.store.close()
    again = Ledger(RocksStore(tmp_path / "db"), load_units())
    assert amounts(again, "alice")["main"] == 0
    assert [e.reason for e in again.journal("alice")] == ["opening", "opening"]
    again.store.close()


def test_renewal_debits_main_once_or_is_refused(store: Store, tmp_path: Path) -> None:
    ledger = Ledger(store, load_units())
    alice(ledger)  # prepaid, main 0
    ledger.create_account(Account(id="bob", tenant="t", currency="EUR", created=T0,
                                  mode=Mode.POSTPAID, credit_limit=20 * EUR))  # fmt: skip
    assert ledger.renew("alice", 10 * EUR, op_id="r1") is None  # main 0: refused
    assert amounts(ledger, "alice")["main"] == 0
    ledger.topup("alice", "main", 12 * EUR, op_id="t1")
    entry = ledger.renew("alice", 10 * EUR, op_id="r1")  # after a top-up the same op passes
    assert entry is not None
    assert (entry.delta, entry.after, entry.reason) == (-10 * EUR, 2 * EUR, "renewal")
    assert ledger.renew("alice", 10 * EUR, op_id="r1") == entry  # applied once
    assert ledger.renew("alice", 3 * EUR, op_id="r2") is None  # 2 EUR left: refused
    assert ledger.renew("bob", 15 * EUR, op_id="r3") is not None  # postpaid: into the limit
    assert ledger.renew("bob", 6 * EUR, op_id="r4") is None  # beyond the 20 EUR limit
    with pytest.raises(OperationConflictError):
        ledger.renew("alice", 9 * EUR, op_id="r1")
    ledger = reopen(ledger, tmp_path)
    assert amounts(ledger, "alice")["main"] == 2 * EUR
    assert amounts(ledger, "bob")["main"] == -15 * EUR
    assert ledger.renew("alice", 10 * EUR, op_id="r1") is not None  # still remembered
    assert amounts(ledger, "alice")["main"] == 2 * EUR


def test_id_chunks_older_than_two_generations_are_forgotten(store: Store, tmp_path: Path) -> None:
    """Each debit keeps its ids as one chunk; a checkpoint deletes the chunks beyond two
    generations of ``remember`` ids, and the ids still kept are recognised after a reopen."""
    rater = Rater(load_tariff(Path(tariffs.__file__).parent / "samples" / "mobile.toml"))
    ledger = Ledger(store, load_units(), remember=4)
    alice(ledger)
    ledger.adjust("alice", "main", 100 * EUR, op_id="open")

    def send(ids: list[str]) -> list[int]:
        at = T0 + timedelta(days=2)
        records = [SmsRecord(cdr_id=i, tenant="ratewire.demo", account="alice",
                             destination="4930123456", start=at, usage=1) for i in ids]  # fmt: skip
        columns = records_to_columns(records)
        debitor = Debitor(ledger.state, rater)
        flags: list[int] = ledger.debit(debitor, columns, rater.rate(columns)).flags.tolist()
        ledger.checkpoint()
        return flags

    for k in range(6):  # six chunks of two ids: 12 ids, two generations of 4 kept
        assert send([f"c{k}-0", f"c{k}-1"]) == [0, 0]
    chunks = [key for key, _ in store.scan(b"ids/")]
    assert len(chunks) == 4  # the first two chunks deleted: 8 ids in 4 chunks kept
    before = amounts(ledger, "alice")
    ledger = reopen(ledger, tmp_path)
    assert [key for key, _ in ledger.store.scan(b"ids/")] == chunks
    assert send(["c5-1"]) == [FLAG_DUPLICATE]  # kept: charged nothing
    assert amounts(ledger, "alice") == before
