"""One worker partition, without Kafka: messages in, outcome and ledger changes out.

Partition 1 of 3 holds the sample scenario's accounts that hash to it; SMS to
a German number cost 0.09 EUR (90,000,000 nanos) under the sample plan.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest

import tariffs
from balances.ledger import Ledger
from balances.model import MAIN, Account, Balance, Mode
from balances.store import MemoryStore, Store
from balances.units import load_units
from engine import partition as partition_module
from engine.account_commands import Grant, Renew, TopUp, command_message, create_messages
from engine.columns import StrColumn
from engine.msgpack_columns import RecordArray, decode_record_array
from engine.partition import (
    ACCOUNT_COMMAND_FAILED,
    DUPLICATE,
    KEPT_RAW_BYTES,
    MESSAGE_TOO_LARGE,
    Message,
    Outcome,
    Partition,
)
from engine.partitioning import partitions_of
from engine.records import DataRecord, Record, SmsRecord, VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR
from engine.topics import ACCOUNTS, CDRS
from engine.wire import columns_to_columnar, encode_record, encode_records, records_to_columns
from loadtest.accounts import EUR, scenario_accounts
from loadtest.generator import TENANT, Scenario
from tariffs.loader import load_tariff
from tariffs.rated import MAX_CALL_SECONDS
from tariffs.rating import Rater

P, PARTITIONS = 1, 3
SMS_PRICE = 90_000_000  # 0.09 EUR in nanos
UNITS = load_units()
RATER = Rater(load_tariff(Path(tariffs.__file__).parent / "samples" / "mobile.toml"))
SCENARIO = Scenario(records=1, accounts=30)
BOOK, OPENING = scenario_accounts(SCENARIO)
NOON = SCENARIO.day.replace(hour=12)  # a Monday: peak


def home(ids: list[str]) -> list[int]:
    where: list[int] = partitions_of(StrColumn.from_strings(ids), PARTITIONS).tolist()
    return where


WHERE = home([a.id for a in BOOK])
MINE = [i for i, p in enumerate(WHERE) if p == P]
A, B = BOOK[MINE[0]].id, BOOK[MINE[1]].id
ELSEWHERE = next(i for i, p in enumerate(WHERE) if p != P)
OTHER, OTHER_HOME = BOOK[ELSEWHERE].id, WHERE[ELSEWHERE]
GHOSTS = [f"ghost-{i}" for i in range(40)]
GHOST = next(g for g, p in zip(GHOSTS, home(GHOSTS), strict=True) if p == P)  # never created


def partition(store: Store | None = None, **options: int) -> Partition:
    """Partition P over ``store``; a new store gets this partition's scenario accounts."""
    ledger = Ledger(store or MemoryStore(), UNITS)
    if not ledger.state.accounts:
        ledger.create_accounts([BOOK[i] for i in MINE], [OPENING[i] for i in MINE])
    return Partition(P, PARTITIONS, ledger, RATER, **options)


def sms(cdr_id: str, account: str = A, subscriber: str = "") -> SmsRecord:
    return SmsRecord(cdr_id=cdr_id, tenant=TENANT, account=account, subscriber=subscriber,
                     destination="4930123456", start=NOON, usage=1)  # fmt: skip


def records(offset: int, batch: list[Record]) -> Message:
    return Message(CDRS, offset, encode_records(batch, "msgpack"))


def columnar(offset: int, batch: list[Record]) -> Message:
    return Message(CDRS, offset, columns_to_columnar(records_to_columns(batch)), columnar=True)


def amounts(part: Partition, account: str = A) -> dict[str, int]:
    return {b.id: b.amount for b in part.ledger.balances(account)}


def credit(part: Partition, account: str = A) -> int:
    return amounts(part, account)["credit"]


def rated_ids(out: Outcome) -> list[str]:
    lines = b"".join(out.rated_lines).splitlines()
    return [msgspec.json.decode(line)["cdr_id"] for line in lines]


def balanced(out: Outcome) -> bool:
    return out.records == out.rated + len(out.rejects) + out.forwarded


# -- input positions ---------------------------------------------------------------------


def test_messages_below_the_input_position_are_skipped_across_a_reopen() -> None:
    part = partition()
    first = part.process([records(0, [sms("c0")]), records(1, [sms("c1")])])
    assert (first.messages, first.replayed, first.records, first.rated) == (2, 0, 2, 2)
    assert part.offsets == {CDRS: 2}
    again = part.process([records(i, [sms(f"c{i}")]) for i in range(3)])
    assert (again.messages, again.replayed, again.records, again.rated) == (3, 2, 1, 1)
    assert rated_ids(again) == ["c2"]
    assert credit(part) == 5 * EUR - 3 * SMS_PRICE

    batch = part.stage()
    assert dict(batch.operations())[b"in/cdrs"] == b"3"
    part.commit(batch)
    assert part.ledger.store.get(b"in/cdrs") == b"3"

    reopened = partition(part.ledger.store)
    assert reopened.offsets == {CDRS: 3}
    assert credit(reopened) == 5 * EUR - 3 * SMS_PRICE
    replay = reopened.process([records(1, [sms("c1")]), records(2, [sms("c2")])])
    assert (replay.messages, replay.replayed, replay.records, replay.rated) == (2, 2, 0, 0)
    assert (replay.rated_lines, replay.rejects) == ([], [])
    assert credit(reopened) == 5 * EUR - 3 * SMS_PRICE


def test_each_topic_keeps_its_own_position() -> None:
    part = partition()
    top_up = command_message(TopUp(account=A, balance="credit", amount=EUR, op_id="t"), PARTITIONS)
    part.process([records(5, [sms("c5")]), Message(ACCOUNTS, 0, top_up[2])])
    assert part.offsets == {CDRS: 6, ACCOUNTS: 1}
    part.commit(part.stage())
    assert dict(part.ledger.store.scan(b"in/")) == {b"in/cdrs": b"6", b"in/accounts": b"1"}
    reopened = partition(part.ledger.store)
    assert reopened.offsets == {CDRS: 6, ACCOUNTS: 1}
    out = reopened.process([Message(ACCOUNTS, 0, top_up[2]), records(5, [sms("c5")])])
    assert out.replayed == 2
    assert credit(reopened) == 5 * EUR + EUR - SMS_PRICE


def test_positions_staged_but_not_committed_are_not_durable() -> None:
    part = partition()
    part.commit(part.stage())
    part.process([records(0, [sms("c0")])])
    part.stage()  # shipping failed: never committed
    reopened = partition(part.ledger.store)
    assert reopened.offsets == {}
    out = reopened.process([records(0, [sms("c0")])])
    assert (out.replayed, out.rated) == (0, 1)


# -- counts and rejects ------------------------------------------------------------------


def test_every_record_read_is_rated_rejected_or_forwarded() -> None:
    part = partition()
    good = records(0, [sms("g1"), sms("g2", account=B)])
    truncated = records(1, [sms("t1"), sms("t2")])
    truncated = Message(CDRS, 1, truncated.value[:-7])
    no_account = records(2, [sms("n1", account="", subscriber="262019876543")])
    unknown = records(3, [sms("u1", account=GHOST)])
    duplicate = records(4, [sms("g1")])
    forwarded = records(5, [sms("f1", account=OTHER)])
    out = part.process([good, truncated, no_account, unknown, duplicate, forwarded])
    assert (out.messages, out.records, out.rated, out.forwarded) == (6, 7, 2, 1)
    assert balanced(out)
    assert [(r.source, r.reason) for r in out.rejects] == [
        (f"cdrs[{P}]@1", DECODE_ERROR),
        (f"cdrs[{P}]@2#0", VALIDATION_ERROR),
        (f"cdrs[{P}]@3#0", "UNKNOWN_ACCOUNT"),
        (f"cdrs[{P}]@4#0", DUPLICATE),
    ]
    assert out.rejects[0].raw == truncated.value
    assert out.rejects[1].message.startswith("record has no account")
    assert rated_ids(out) == ["g1", "g2"]
    assert out.charged == 2 * SMS_PRICE
    assert (credit(part, A), credit(part, B)) == (5 * EUR - SMS_PRICE, 5 * EUR - SMS_PRICE)


def test_a_cdr_id_applied_in_an_earlier_batch_is_a_duplicate() -> None:
    part = partition()
    part.process([records(0, [sms("d1")])])
    out = part.process([records(1, [sms("d2"), sms("d1")])])
    assert (out.records, out.rated) == (2, 1)
    assert [(r.source, r.reason) for r in out.rejects] == [(f"cdrs[{P}]@1#1", DUPLICATE)]
    assert credit(part) == 5 * EUR - 2 * SMS_PRICE


def test_records_of_another_partitions_account_are_forwarded_not_rated() -> None:
    part = partition()
    theirs = sms("o1", account=OTHER)
    out = part.process([records(7, [sms("m1"), theirs, sms("u1", account=GHOST)])])
    assert (out.records, out.rated, out.forwarded) == (3, 1, 1)
    assert balanced(out)
    assert out.forwards == [(OTHER_HOME, OTHER.encode(), encode_record(theirs, "msgpack"))]
    assert msgspec.msgpack.decode(out.forwards[0][2], type=Record) == theirs
    assert rated_ids(out) == ["m1"]
    # the rows kept keep their index in the message
    assert [(r.source, r.reason) for r in out.rejects] == [(f"cdrs[{P}]@7#2", "UNKNOWN_ACCOUNT")]
    assert not part.knows(OTHER)


def test_a_columnar_batch_with_another_partitions_records_is_rejected_whole() -> None:
    part = partition()
    mixed = columnar(3, [sms("c1"), sms("c2", account=OTHER)])
    clean = columnar(4, [sms("c3"), sms("c4", account=B)])
    out = part.process([mixed, clean])
    assert (out.records, out.rated, out.forwarded, out.forwards) == (3, 2, 0, [])
    assert balanced(out)
    assert len(out.rejects) == 1
    reject = out.rejects[0]
    assert (reject.source, reject.reason, reject.raw) == (
        f"cdrs[{P}]@3",
        VALIDATION_ERROR,
        mixed.value,
    )
    assert reject.message.startswith("columnar batch: 1 of 2 records belong to other partitions")
    assert rated_ids(out) == ["c3", "c4"]
    assert credit(part) == 5 * EUR - SMS_PRICE


def test_a_columnar_message_that_is_not_a_batch_is_a_decode_error() -> None:
    part = partition()
    out = part.process([Message(CDRS, 2, b"\x93\x01\x02", columnar=True)])
    assert (out.records, out.rated) == (1, 0)
    assert [(r.source, r.reason, r.raw) for r in out.rejects] == [
        (f"cdrs[{P}]@2", DECODE_ERROR, b"\x93\x01\x02")
    ]


@pytest.mark.parametrize("as_columnar", [False, True], ids=["records", "columnar"])
def test_a_message_over_the_limit_is_rejected_with_its_head_kept(as_columnar: bool) -> None:
    many: list[Record] = [sms(f"big-{i:05d}") for i in range(2_000)]
    message = columnar(9, many) if as_columnar else records(9, many)
    size = len(message.value)
    assert size > KEPT_RAW_BYTES
    over = partition(max_message_bytes=size - 1).process([message])
    assert (over.records, over.rated, over.forwarded) == (1, 0, 0)
    assert balanced(over)
    (reject,) = over.rejects
    assert (reject.source, reject.reason) == (f"cdrs[{P}]@9", MESSAGE_TOO_LARGE)
    assert reject.raw == message.value[:KEPT_RAW_BYTES]
    assert len(reject.raw) == 65_536
    assert f"message of {size:,} bytes is over the limit of {size - 1:,}" in reject.message
    at_limit = partition(max_message_bytes=size)
    fits = at_limit.process([message])
    assert (fits.records, fits.rated, fits.rejects) == (2_000, 2_000, [])
    assert fits.charged == 2_000 * SMS_PRICE


def test_a_message_over_the_limit_does_not_hold_up_the_others() -> None:
    big = records(3, [sms(f"big-{i:05d}") for i in range(2_000)])
    part = partition(max_message_bytes=len(big.value) - 1)
    out = part.process([records(2, [sms("s2")]), big, records(4, [sms("s4")])])
    assert (out.records, out.rated) == (3, 2)
    assert [(r.source, r.reason) for r in out.rejects] == [(f"cdrs[{P}]@3", MESSAGE_TOO_LARGE)]
    assert rated_ids(out) == ["s2", "s4"]
    assert credit(part) == 5 * EUR - 2 * SMS_PRICE


def test_rating_rejects_name_topic_partition_offset_and_index() -> None:
    part = partition()
    long_call = VoiceRecord(cdr_id="v1", tenant=TENANT, account=A, destination="4930123",
                            start=NOON, usage=MAX_CALL_SECONDS + 1)  # fmt: skip
    out = part.process([
        records(11, [sms("r1"), sms("r2"), sms("r3", account=GHOST)]),
        records(12, [sms("r4"), long_call]),
        columnar(13, [sms("r5"), sms("r6", account=GHOST), sms("r1")]),
    ])  # fmt: skip
    assert Counter(r.reason for r in out.rejects) == Counter(
        {"UNKNOWN_ACCOUNT": 2, DUPLICATE: 1, "USAGE_OUT_OF_RANGE": 1}
    )
    assert sorted((r.source, r.reason) for r in out.rejects) == [
        (f"cdrs[{P}]@11#2", "UNKNOWN_ACCOUNT"),
        (f"cdrs[{P}]@12#1", "USAGE_OUT_OF_RANGE"),
        (f"cdrs[{P}]@13#1", "UNKNOWN_ACCOUNT"),
        (f"cdrs[{P}]@13#2", DUPLICATE),
    ]
    assert (out.records, out.rated) == (8, 4)
    assert balanced(out)


def test_a_rating_reject_after_a_bad_record_names_its_own_index() -> None:
    """Index is the record's place in the message, counting the records that failed to decode."""
    part = partition()
    bad = {"type": "sms", "cdr_id": "bad", "account": A}  # no tenant, no start: undecodable
    value = msgspec.msgpack.encode([bad, sms("ok"), sms("lost", account=GHOST)])
    out = part.process([Message(CDRS, 21, value)])
    assert (out.records, out.rated) == (3, 1)
    assert [(r.source, r.index, r.reason) for r in out.rejects] == [
        (f"cdrs[{P}]@21", 0, VALIDATION_ERROR),
        (f"cdrs[{P}]@21#2", None, "UNKNOWN_ACCOUNT"),
    ]


def test_compiled_and_msgspec_decoding_give_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MessagePack arrays the compiled decoder takes, mixed with messages it declines
    (a bad record, JSON, another partition's record): the outcome equals msgspec's."""
    bad = {"type": "sms", "cdr_id": "bad", "account": A}  # no tenant, no start
    batch = [
        records(30, [sms("f1"), sms("f2", account=B), sms("f3", account=GHOST)]),
        Message(CDRS, 31, msgspec.msgpack.encode([bad, sms("s1")])),
        Message(CDRS, 32, encode_records([sms("j1", account=B)], "json")),
        records(33, [sms("f4"), sms("f1")]),  # f1 again: a duplicate within the batch
        records(34, [sms("o1"), sms("o2", account=OTHER)]),
        records(35, [sms("f5", account=B)]),
    ]
    taken: list[int] = []

    def spy(raw: bytes) -> RecordArray | None:
        decoded = decode_record_array(raw)
        taken.append(0 if decoded is None else len(decoded.columns))
        return decoded

    monkeypatch.setattr(partition_module, "decode_record_array", spy)
    fast_part = partition()
    fast = fast_part.process(batch)
    assert taken == [3, 0, 2, 2, 1]  # JSON is not offered; o1/o2 decode but are forwarded
    monkeypatch.setattr(partition_module, "decode_record_array", lambda raw: None)
    slow_part = partition()
    slow = slow_part.process(batch)
    assert rated_ids(fast) == rated_ids(slow) == ["f1", "f2", "s1", "j1", "f4", "o1", "f5"]
    assert fast.rated_lines == slow.rated_lines
    assert [(r.source, r.reason, r.raw, r.index) for r in fast.rejects] == [
        (r.source, r.reason, r.raw, r.index) for r in slow.rejects
    ]
    assert {r.reason for r in fast.rejects} == {VALIDATION_ERROR, "UNKNOWN_ACCOUNT", DUPLICATE}
    assert next(r for r in fast.rejects if r.reason == "UNKNOWN_ACCOUNT").raw == (
        msgspec.json.encode(sms("f3", account=GHOST))
    )
    assert (fast.records, fast.rated, fast.forwarded) == (slow.records, slow.rated, 1)
    assert fast.forwards == slow.forwards
    assert amounts(fast_part) == amounts(slow_part)
    assert amounts(fast_part, B) == amounts(slow_part, B)
    assert balanced(fast)


# -- order -------------------------------------------------------------------------------


def test_records_and_columnar_messages_debit_in_arrival_order() -> None:
    """0.20 EUR of credit: an SMS (0.09), a mobile call at peak (0.22), another SMS."""
    names = [f"prepaid-{i}" for i in range(40)]
    account = next(n for n, p in zip(names, home(names), strict=True) if p == P)

    def fresh() -> Partition:
        ledger = Ledger(MemoryStore(), UNITS)
        ledger.create_account(
            Account(id=account, tenant=TENANT, currency="EUR", created=SCENARIO.day,
                    mode=Mode.PREPAID),
            [Balance(id="credit", unit="EUR", amount=20 * EUR // 100)],
        )  # fmt: skip
        return Partition(P, PARTITIONS, ledger, RATER)

    call = VoiceRecord(cdr_id="b", tenant=TENANT, account=account, destination="4915112345",
                       start=NOON, usage=60)  # fmt: skip
    batch = [
        records(0, [sms("a", account=account)]),
        columnar(1, [call]),
        records(2, [sms("c", account=account)]),
    ]
    together, alone = fresh(), fresh()
    out = together.process(batch)
    singles = [alone.process([m]) for m in batch]
    assert rated_ids(out) == ["a", "b", "c"] == [i for o in singles for i in rated_ids(o)]
    debits = [(e.ref, e.delta) for e in together.ledger.journal(account) if e.reason != "opening"]
    assert debits == [("a", -9 * EUR // 100), ("b", -11 * EUR // 100)]
    assert debits == [
        (e.ref, e.delta) for e in alone.ledger.journal(account) if e.reason != "opening"
    ]
    assert together.ledger.balances(account) == alone.ledger.balances(account)
    assert sum(b.amount for b in together.ledger.balances(account)) == 0


# -- account commands --------------------------------------------------------------------


def test_account_commands_create_once_and_top_up_once() -> None:
    part = Partition(P, PARTITIONS, Ledger(MemoryStore(), UNITS), RATER)
    created = [value for p, _, value in create_messages(BOOK, OPENING, PARTITIONS) if p == P]
    assert len(created) == 1
    out = part.process([Message(ACCOUNTS, 0, created[0])])
    assert (out.accounts.created, out.accounts.existing, out.rejects) == (len(MINE), 0, [])
    assert (part.knows(A), part.knows(OTHER)) == (True, False)
    again = part.process([Message(ACCOUNTS, 1, created[0])])
    assert (again.accounts.created, again.accounts.existing) == (0, len(MINE))

    home_of, key, value = command_message(TopUp(account=A, balance=MAIN, amount=3 * EUR,
                                              op_id="topup-1"), PARTITIONS)  # fmt: skip
    assert (home_of, key) == (P, A.encode())
    part.process([Message(ACCOUNTS, 2, value)])
    resent = part.process([Message(ACCOUNTS, 3, value)])
    assert resent.rejects == []
    assert amounts(part) == {"free-minutes": 1800, "data": 1_000_000_000, "credit": 5 * EUR,
                       MAIN: 3 * EUR}  # fmt: skip
    topups = [e for e in part.ledger.journal(A) if e.reason == "topup"]
    assert [(e.ref, e.delta) for e in topups] == [("topup-1", 3 * EUR)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"type": "topup", "account": ', DECODE_ERROR),
        (b"", DECODE_ERROR),
        (b'{"type": "topup", "account": "x", "balance": "main", "amount": 5}', VALIDATION_ERROR),
        (b'{"type": "delete_everything"}', VALIDATION_ERROR),
        (b'{"type": "topup", "account": "nobody", "balance": "main", "amount": 5, "op_id": "o"}',
         ACCOUNT_COMMAND_FAILED),
    ],
)  # fmt: skip
def test_a_malformed_account_command_is_a_reject(value: bytes, reason: str) -> None:
    part = partition()
    before = amounts(part)
    out = part.process([Message(ACCOUNTS, 5, value), records(8, [sms("after")])])
    assert [(r.source, r.reason, r.raw) for r in out.rejects] == [
        (f"accounts[{P}]@5", reason, value)
    ]
    assert out.rejects[0].message.startswith("account command: ")
    assert (out.accounts.created, out.accounts.topups, out.rated) == (0, 0, 1)
    assert amounts(part) == {**before, "credit": before["credit"] - SMS_PRICE}
    assert part.offsets == {ACCOUNTS: 6, CDRS: 9}


# -- volume tiers across a restart -------------------------------------------------------


def test_volume_tier_counters_survive_a_reopen(tmp_path: Path) -> None:
    """The month's data usage is state: a reopened partition prices the next tier alike."""
    plan = (Path(tariffs.__file__).parent / "samples" / "mobile.toml").read_text()
    lowered = tmp_path / "tiers.toml"  # data tiers from 5 MB and 50 MB instead of 1 and 10 GB
    lowered.write_text(plan.replace('from = "1GB"', 'from = "5MB"')
                       .replace('from = "10GB"', 'from = "50MB"'))  # fmt: skip
    rater = Rater(load_tariff(lowered))

    def session(cdr_id: str) -> DataRecord:
        return DataRecord(cdr_id=cdr_id, tenant=TENANT, account=A, category="data",
                          start=NOON, usage=4_000_000)  # fmt: skip

    def costs(out: Outcome) -> list[int]:
        lines = b"".join(out.rated_lines).splitlines()
        return [msgspec.json.decode(line)["cost_nanos"] for line in lines]

    def opened(store: Store) -> Partition:
        ledger = Ledger(store, UNITS)
        if not ledger.state.accounts:
            ledger.create_accounts([BOOK[i] for i in MINE], [OPENING[i] for i in MINE])
        return Partition(P, PARTITIONS, ledger, rater)

    straight = opened(MemoryStore())
    first = costs(straight.process([records(0, [session("d1")])]))
    second = costs(straight.process([records(1, [session("d2")])]))
    assert second != first  # the second 4 MB crosses into the 5 MB tier

    store = MemoryStore()
    part = opened(store)
    assert costs(part.process([records(0, [session("d1")])])) == first
    part.commit(part.stage())
    reopened = opened(store)  # a restart, or the partition on another worker
    assert costs(reopened.process([records(1, [session("d2")])])) == second


def test_renewals_answer_with_their_outcome_and_grants_apply_once() -> None:
    part = partition()
    prepaid = next(BOOK[i].id for i in MINE if BOOK[i].mode is Mode.PREPAID)

    def command(offset: int, c: Renew | Grant | TopUp) -> Message:
        return Message(ACCOUNTS, offset, command_message(c, PARTITIONS)[2])

    renew = Renew(account=prepaid, amount=10 * EUR, op_id="renew:1", subscription="s1",
                  day="2026-12-01")  # fmt: skip
    minutes = Balance(id="s1:voice_seconds:2026-12", unit="voice_seconds", amount=30_000)
    first = part.process([command(0, renew), command(1, Grant(account=prepaid, balance=minutes,
                                                               op_id="grant:1"))])  # fmt: skip
    assert (first.accounts.renewed, first.accounts.refused, first.accounts.granted) == (0, 1, 1)
    (refused,) = first.accounts.outcomes
    assert (refused.op_id, refused.ok, refused.subscription, refused.day) == (
        "renew:1", False, "s1", "2026-12-01")  # fmt: skip
    assert refused.reason == "renewal refused: main balance 0 cannot cover the fee 10"
    top_up = TopUp(account=prepaid, balance=MAIN, amount=12 * EUR, op_id="t1")
    grant = Grant(account=prepaid, balance=minutes, op_id="grant:1")
    again = part.process([command(2, top_up), command(3, renew), command(4, renew),
                          command(5, grant)])  # fmt: skip
    assert (again.accounts.renewed, again.accounts.refused, again.accounts.granted) == (2, 0, 0)
    assert [o.ok for o in again.accounts.outcomes] == [True, True]  # the resend answers too
    held = {b.id: b.amount for b in part.ledger.balances(prepaid)}
    assert held[MAIN] == 2 * EUR  # debited once
    assert held["s1:voice_seconds:2026-12"] == 30_000
