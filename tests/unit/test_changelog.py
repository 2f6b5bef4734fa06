"""The changelog: a ledger's checkpoints as messages, replayed into another store.

A writer here checkpoints the way :meth:`engine.partitions.Partitions.checkpoint`
does (stage, encode with the seq of the previous checkpoint as ``prev``, append
to the log, commit with ``chg/next``); the log is a list whose index is the
offset. A replica is a :class:`~engine.changelog.Replay` over a second store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest

from balances.ledger import Ledger, stored_seq
from balances.model import MAIN
from balances.store import MemoryStore, Store, WriteBatch
from balances.units import load_units
from engine.changelog import (
    MAX_BYTES,
    NEXT_KEY,
    PIECE,
    ChangelogError,
    ChangeSet,
    Replay,
    encode_changes,
    next_offset,
)
from loadtest.accounts import EUR, scenario_accounts
from loadtest.generator import Scenario

UNITS = load_units()
ACCOUNTS, BALANCES = scenario_accounts(Scenario(records=1, accounts=4))
A0, A1, A2 = (a.id for a in ACCOUNTS[:3])


@dataclass
class Writer:
    """A worker's partition: checkpoints its ledger to ``log`` first, then to its store."""

    ledger: Ledger
    log: list[bytes]
    shipped: int = -1  # ledger seq at the last checkpoint

    def __post_init__(self) -> None:
        if self.shipped < 0:
            self.shipped = self.ledger.seq

    def checkpoint(self, max_bytes: int = MAX_BYTES) -> list[int]:
        """The offsets the checkpoint's messages got."""
        batch = self.ledger.stage()
        messages = encode_changes(batch, self.shipped, self.ledger.seq, max_bytes)
        first = len(self.log)
        self.log += messages
        batch.put(NEXT_KEY, b"%d" % len(self.log))
        self.ledger.commit(batch)
        self.shipped = self.ledger.seq
        return list(range(first, len(self.log)))


@dataclass
class Replica:
    store: Store = field(default_factory=MemoryStore)

    def feed(self, log: list[bytes], offsets: range | list[int]) -> Replay:
        replay = Replay(self.store)
        for offset in offsets:
            replay.apply(offset, log[offset])
        return replay

    def rows(self) -> dict[bytes, bytes]:
        return dict(self.store.scan(b""))


def _joined(ops: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """``ops`` with the pieces of a value cut for the changelog joined again."""
    out, pieces = [], b""
    for key, value in ops:
        if key.startswith(PIECE):
            pieces += value or b""
        else:
            out.append((key, pieces + value if value is not None else None))
            pieces = b""
    return out


def new_writer(log: list[bytes]) -> Writer:
    writer = Writer(Ledger(MemoryStore(), UNITS), log)  # shipped: the seq it opened at
    writer.ledger.create_accounts(ACCOUNTS, BALANCES)
    return writer


def without_next(store: Store) -> dict[bytes, bytes]:
    return {k: v for k, v in store.scan(b"") if k != NEXT_KEY}


def amounts(ledger: Ledger, account: str) -> dict[str, int]:
    return {b.id: b.amount for b in ledger.balances(account)}


def three_checkpoints(log: list[bytes]) -> Writer:
    """Accounts and records; a top-up and a delete; a transfer: offsets 0, 1, 2."""
    writer = new_writer(log)
    writer.ledger.put(b"rec/1", b"one")
    writer.ledger.put(b"rec/2", b"two")
    assert writer.checkpoint() == [0]
    writer.ledger.topup(A1, "credit", 3 * EUR, op_id="t1")
    writer.ledger.delete(b"rec/1")
    assert writer.checkpoint() == [1]
    writer.ledger.transfer(A2, "credit", MAIN, EUR, op_id="x1")
    assert writer.checkpoint() == [2]
    return writer


def test_a_replayed_changelog_rebuilds_the_ledger() -> None:
    log: list[bytes] = []
    writer = three_checkpoints(log)
    replica = Replica()
    replay = replica.feed(log, range(len(log)))
    assert (replay.applied, replay.skipped, replay.seq) == (3, 0, writer.ledger.seq)
    assert next_offset(replica.store) == 3
    assert stored_seq(replica.store) == writer.ledger.seq
    # byte for byte the writer's store, chg/next included
    assert replica.rows() == dict(writer.ledger.store.scan(b""))
    copy = Ledger(replica.store, UNITS)
    for account in ACCOUNTS:
        assert copy.balances(account.id) == writer.ledger.balances(account.id)
    assert amounts(copy, A1)["credit"] == 8 * EUR
    assert (amounts(copy, A2)["credit"], amounts(copy, A2)[MAIN]) == (4 * EUR, EUR)
    journal = list(copy.journal())
    assert journal == list(writer.ledger.journal())
    assert len(journal) == 3 * len(ACCOUNTS) + 1 + 2  # openings, top-up, transfer's two legs
    assert (copy.get(b"rec/1"), copy.get(b"rec/2")) == (None, b"two")  # the delete replayed
    assert copy.done("t1") is not None
    assert copy.done("t1") == writer.ledger.done("t1")


@pytest.mark.parametrize("stopped_at", [0, 1, 2, 3])
def test_a_restarted_replay_resumes_from_next_offset(stopped_at: int) -> None:
    log: list[bytes] = []
    writer = three_checkpoints(log)
    replica = Replica()
    replica.feed(log, range(stopped_at))
    assert next_offset(replica.store) == stopped_at
    resumed = replica.feed(log, range(next_offset(replica.store), len(log)))
    assert (resumed.applied, resumed.skipped) == (3 - stopped_at, 0)
    assert replica.rows() == dict(writer.ledger.store.scan(b""))


def test_a_large_batch_is_split_and_applies_only_whole() -> None:
    ledger = Ledger(MemoryStore(), UNITS)
    ledger.create_accounts(ACCOUNTS, BALANCES)
    for i in range(40):
        ledger.put(b"rec/%03d" % i, bytes([i]) * 100)
    batch = ledger.stage()
    ops = list(batch.operations())
    messages = encode_changes(batch, 0, ledger.seq, max_bytes=1_000)
    assert len(messages) >= 5
    parts = [msgspec.msgpack.decode(m, type=ChangeSet) for m in messages]
    assert [(p.prev, p.seq, p.part, p.parts) for p in parts] == [
        (0, ledger.seq, i, len(messages)) for i in range(len(messages))
    ]
    assert _joined([op for p in parts for op in p.ops]) == ops  # every operation once, in order
    for p in parts:
        assert sum(len(k) + len(v or b"") + 16 for k, v in p.ops) <= 1_000

    replica = Replica()
    replay = Replay(replica.store)
    for i, raw in enumerate(messages[:-1]):
        replay.apply(10 + i, raw)
        assert replica.rows() == {}
        assert (replay.applied, replay.seq) == (0, 0)
    last = 10 + len(messages) - 1
    replay.apply(last, messages[-1])
    assert (replay.applied, replay.skipped, replay.seq) == (1, 0, ledger.seq)
    assert next_offset(replica.store) == last + 1
    ledger.commit(batch)
    assert replica.rows() == {**dict(ledger.store.scan(b"")), NEXT_KEY: b"%d" % (last + 1)}
    assert Ledger(replica.store, UNITS).balances(A0) == ledger.balances(A0)


def test_a_stale_writers_group_is_skipped_and_counted() -> None:
    log: list[bytes] = []
    old = new_writer(log)
    assert old.checkpoint() == [0]
    # the partition moves: a new owner catches up from the log and goes on
    moved = Replica()
    moved.feed(log, [0])
    new = Writer(Ledger(moved.store, UNITS), log)
    new.ledger.topup(A0, "credit", EUR, op_id="new-1")
    assert new.checkpoint() == [1]
    # the old owner, still working, ships a checkpoint chained to what it last shipped
    old.ledger.topup(A0, "credit", 2 * EUR, op_id="old-1")
    old.ledger.topup(A0, "credit", 4 * EUR, op_id="old-2")
    assert old.checkpoint() == [2]
    new.ledger.topup(A0, "credit", 8 * EUR, op_id="new-2")
    new.ledger.topup(A0, "credit", 16 * EUR, op_id="new-3")
    assert new.checkpoint() == [3]
    g1, stale, g3 = (msgspec.msgpack.decode(log[i], type=ChangeSet) for i in (1, 2, 3))
    assert stale.prev == g1.prev
    assert g1.seq < stale.seq < g3.seq  # it would be newer than g1

    replica = Replica()
    replay = replica.feed(log, range(4))
    assert (replay.applied, replay.skipped, replay.seq) == (3, 1, new.ledger.seq)
    assert next_offset(replica.store) == 4
    assert replica.rows() == dict(new.ledger.store.scan(b""))
    copy = Ledger(replica.store, UNITS)
    assert amounts(copy, A0)["credit"] == (5 + 1 + 8 + 16) * EUR
    assert copy.done("old-1") is None
    assert copy.done("old-2") is None

    # read again from the start: every group is at or below the store's seq now
    before = replica.rows()
    again = replica.feed(log, range(4))
    assert (again.applied, again.skipped, again.seq) == (0, 0, new.ledger.seq)
    assert replica.rows() == before


def test_the_stale_group_stops_counting_once_the_store_is_past_it() -> None:
    log: list[bytes] = []
    old = new_writer(log)
    old.checkpoint()
    moved = Replica()
    moved.feed(log, [0])
    new = Writer(Ledger(moved.store, UNITS), log)
    new.ledger.topup(A0, "credit", EUR, op_id="new-1")
    new.checkpoint()  # @1
    old.ledger.topup(A0, "credit", 2 * EUR, op_id="old-1")
    old.ledger.topup(A0, "credit", 4 * EUR, op_id="old-2")
    old.checkpoint()  # @2, stale
    replica = Replica()
    assert replica.feed(log, range(3)).skipped == 1
    assert replica.feed(log, [2]).skipped == 1  # still newer than the store: counted again
    new.ledger.topup(A0, "credit", 8 * EUR, op_id="new-2")
    new.ledger.topup(A0, "credit", 16 * EUR, op_id="new-3")
    new.checkpoint()  # @3
    assert replica.feed(log, [3]).applied == 1
    later = replica.feed(log, [2])
    assert (later.applied, later.skipped) == (0, 0)
    assert amounts(Ledger(replica.store, UNITS), A0)["credit"] == (5 + 1 + 8 + 16) * EUR


def split_log(log: list[bytes]) -> tuple[Writer, list[int]]:
    """A one-part checkpoint at 0, then a checkpoint of several parts."""
    writer = new_writer(log)
    assert writer.checkpoint() == [0]
    for i in range(30):
        writer.ledger.put(b"rec/%03d" % i, b"x" * 100)
    offsets = writer.checkpoint(max_bytes=1_000)
    assert len(offsets) >= 3
    return writer, offsets


def test_parts_of_a_group_begun_before_reading_started_are_ignored() -> None:
    log: list[bytes] = []
    writer, offsets = split_log(log)
    replica = Replica()
    replica.feed(log, [0])
    before = replica.rows()
    replay = replica.feed(log, offsets[1:])  # reading starts after the group's first part
    assert (replay.applied, replay.skipped) == (0, 0)
    assert replica.rows() == before
    # the same group sent again, whole, is applied
    log += [log[i] for i in offsets]
    resent = range(len(log) - len(offsets), len(log))
    replay = replica.feed(log, resent)
    assert (replay.applied, replay.skipped) == (1, 0)
    assert next_offset(replica.store) == len(log)
    assert without_next(replica.store) == without_next(writer.ledger.store)


def test_a_group_interrupted_and_sent_again_applies_once() -> None:
    log: list[bytes] = []
    writer, offsets = split_log(log)
    cut = log[offsets[0] : offsets[1] + 1]  # the first two parts, then the send failed
    log[offsets[0] : offsets[0]] = cut
    replica = Replica()
    replay = replica.feed(log, range(len(log)))
    assert (replay.applied, replay.skipped) == (2, 0)
    assert next_offset(replica.store) == len(log)
    assert Ledger(replica.store, UNITS).get(b"rec/029") == b"x" * 100
    assert replay.seq == writer.ledger.seq


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",  # a byte MessagePack never uses
        msgspec.msgpack.encode({"prev": 0, "seq": 1}),  # MessagePack, not a change set
        msgspec.msgpack.encode([0, 1, 0, 1, [[b"k", 5]]]),  # a value that is not bytes
    ],
)
def test_undecodable_messages_raise_naming_their_offset(raw: bytes) -> None:
    replica = Replica()
    replay = Replay(replica.store)
    with pytest.raises(ChangelogError, match=r"^changelog message @42 cannot be read \(") as err:
        replay.apply(42, raw)
    assert err.value.code == "CHANGELOG_ERROR"
    assert (replay.applied, replay.skipped, replica.rows()) == (0, 0, {})


def test_a_value_larger_than_a_message_travels_in_pieces_and_is_joined_again() -> None:
    # the cdr_ids of a batch of millions of records are one value of ~17 MB: one message
    # over the producer's limit made the batch fail on every attempt
    big = bytes(range(256)) * 40 + b"end"  # 10,243 bytes
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.put(b"ids/0001", big)
    batch.delete(b"old")
    batch.put(b"z", big[:900])  # fits a message alone: not cut
    messages = encode_changes(batch, 3, 4, max_bytes=1_000)
    parts = [msgspec.msgpack.decode(m, type=ChangeSet) for m in messages]
    for p in parts:
        assert sum(len(k) + len(v or b"") + 16 for k, v in p.ops) <= 1_000
    ops = [op for p in parts for op in p.ops]
    pieces = [v for k, v in ops if k == PIECE + b"ids/0001"]
    room = 1_000 - len(PIECE + b"ids/0001") - 16
    assert [len(v or b"") for v in pieces] == [room] * 10
    assert [k for k, _ in ops if not k.startswith(PIECE)] == [b"a", b"ids/0001", b"old", b"z"]

    replica = Replica(MemoryStore())
    replay = Replay(replica.store, seq=3)
    for offset, raw in enumerate(messages):
        replay.apply(offset, raw)
    assert (replay.applied, replay.seq) == (1, 4)
    assert replica.rows() == {b"a": b"1", b"ids/0001": big, b"z": big[:900],
                              NEXT_KEY: b"%d" % len(messages)}  # fmt: skip


def test_encode_changes_of_a_batch_that_fits_is_one_message() -> None:
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.delete(b"b")
    (raw,) = encode_changes(batch, 7, 9)
    assert msgspec.msgpack.decode(raw, type=ChangeSet) == ChangeSet(
        7, 9, 0, 1, [(b"a", b"1"), (b"b", None)]
    )
