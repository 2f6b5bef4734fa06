"""The invoicing consumer on a real broker: exact totals, resent chunks, a SIGKILL mid-stream.

Billing events and rated chunks (JSON lines, as the workers write them, on
the partition of their account) go to a Tansu broker of this module's own;
a ``ratewire billing consume`` process accumulates them. Totals are checked
against sums made here straight from the records (``cycle_of`` by each
account's bill day and zone), record by record.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from balances.store import RocksStore
from billing.consumer import REJECTED
from billing.cycles import cycle_of
from billing.events import SetProfile, encode_events
from billing.model import BillingProfile, Mode
from billing.usage import load_offsets, read_totals
from engine.broker import EmbeddedBroker, ensure_topics
from engine.kafka_transport import FETCH_WAIT_MS
from engine.partitioning import partition_of
from engine.produce import produce
from engine.rated_output import BalanceUse, RatedRecord, RatedSpan
from engine.topics import BILLING_EVENTS, RATED
from tariffs.money import format_amount
from tests.integration.streaming import Consumer

pytestmark = pytest.mark.integration
PARTITIONS = 4
START_US = 1_793_577_600_000_000  # 2026-11-02T00:00Z
ACCOUNTS = [f"acc-{i:03d}" for i in range(24)]
LATE_PROFILE = "acc-023"  # its profile comes after its usage
Key = tuple[str, str, str, str, str]  # account, cycle, category, zone, currency


def profile(i: int) -> BillingProfile:
    zones = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")
    return BillingProfile(account=ACCOUNTS[i], bill_day=1 + (i * 5) % 28, timezone=zones[i % 4],
                          mode=(Mode.POSTPAID, Mode.PREPAID, Mode.HYBRID)[i % 3])  # fmt: skip


def records(n: int, prefix: str) -> list[RatedRecord]:
    span = RatedSpan("DR", "*any", "RT", 0, 0, 60, 60, 1, "0.01", 1, "0.60")
    out = []
    for i in range(n):
        cost = 1_000_000 * (i % 997) + i % 7  # nanos, not rounded
        out.append(RatedRecord(
            f"{prefix}{i}", "t", ACCOUNTS[(i * 7) % len(ACCOUNTS)], ("call", "sms", "data")[i % 3],
            "s", "4930", START_US + i * 200_000_000, 1 + i % 300, "x", cost, "EUR", "RP",
            ("DE", "FR", "*any")[i % 3], "49", "0", 0, [span], charged=format_amount(cost),
            covered=i % 2, balances=[BalanceUse("main", "EUR", -cost, 0)],
        ))  # fmt: skip
    return out


def expected_sums(rated: list[RatedRecord]) -> dict[Key, list[int]]:
    """Records, usage, cost, charged per key, straight from the records."""
    profiles = {p.account: p for p in map(profile, range(len(ACCOUNTS)))}
    out: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rated:
        p = profiles[r.account]
        cycle = cycle_of(r.start_us, p.bill_day, p.timezone)
        row = out[(r.account, cycle, r.category, r.zone, r.currency)]
        for k, v in enumerate((1, r.usage, r.cost_nanos, r.cost_nanos)):
            row[k] += v
    return dict(out)


def chunks(rated: list[RatedRecord], size: int) -> list[tuple[int, bytes]]:
    """(partition, JSON lines) as the worker sends them: per partition of the account."""
    by_part: dict[int, list[RatedRecord]] = defaultdict(list)
    for r in rated:
        by_part[partition_of(r.account.encode(), PARTITIONS)].append(r)
    enc = msgspec.json.Encoder()
    return [(part, enc.encode_lines(rs[lo : lo + size]))
            for part, rs in sorted(by_part.items()) for lo in range(0, len(rs), size)]  # fmt: skip


async def _read_rejects(bootstrap: str, n: int) -> list[dict[str, bytes]]:
    consumer = AIOKafkaConsumer(
        REJECTED, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )  # fmt: skip
    await consumer.start()
    found: list[dict[str, bytes]] = []
    try:
        deadline = time.monotonic() + 10
        while len(found) < n and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found += [{**dict(m.headers), "value": m.value} for m in batch]
    finally:
        await consumer.stop()
    return found


def send(bootstrap: str, topic: str, messages: list[tuple[int, bytes]]) -> None:
    asyncio.run(produce(bootstrap, [(p, b"", v, []) for p, v in messages], topic=topic))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker of this module's own: the consumer's topic names are fixed."""
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("billing") / "tansu.log") as running:
        ensure_topics(running.bootstrap, {RATED: PARTITIONS, BILLING_EVENTS: PARTITIONS,
                                          REJECTED: 1})  # fmt: skip
        yield running


@pytest.fixture
def started() -> Iterator[list[Consumer]]:
    """Consumers a test starts; any still running at teardown are killed by their pid."""
    running: list[Consumer] = []
    yield running
    for consumer in running:
        consumer.signal(signal.SIGKILL)


def ends(messages: list[tuple[int, bytes]], topic: str = RATED) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for part, _ in messages:
        out[f"{topic}[{part}]"] += 1
    return dict(out)


def stored(billing: Path, keys: list[Key]) -> dict[Key, list[int]]:
    """The totals the store holds for ``keys``' accounts and cycles."""
    out: dict[Key, list[int]] = {}
    with RocksStore(billing) as store:
        for account, cycle in sorted({(k[0], k[1]) for k in keys}):
            totals = read_totals(store, [account], cycle)[0]
            assert totals is not None, (account, cycle)
            for r in totals.usage:
                out[(account, cycle, r.category, r.zone, r.currency)] = [
                    r.records, r.usage, r.cost, r.charged]  # fmt: skip
    return out


def test_exact_totals_through_resend_kill_and_restart(
    broker: EmbeddedBroker, tmp_path: Path, started: list[Consumer]
) -> None:
    billing = tmp_path / "billing"
    bootstrap = broker.bootstrap
    early = [profile(i) for i in range(len(ACCOUNTS)) if ACCOUNTS[i] != LATE_PROFILE]
    events = [(0, encode_events([SetProfile(p) for p in early])),
              (1, b'{"type": "profile", "profile": {"account": "x", "bill_day": 31}}')]  # fmt: skip
    send(bootstrap, BILLING_EVENTS, events)
    rated = records(24_000, "r")
    first, rest = chunks(rated[:3_000], 250), chunks(rated[3_000:], 100)
    send(bootstrap, RATED, first)

    one = Consumer(broker.url, billing, tmp_path / "consumer-1.log").start()
    started.append(one)
    health = one.wait_offsets({**ends(first), f"{BILLING_EVENTS}[0]": 1, f"{BILLING_EVENTS}[1]": 1})
    waiting = sum(1 for r in rated[:3_000] if r.account == LATE_PROFILE)
    # the consumer may read a rated message before the profiles (two topics, no order
    # between them): its records wait as orphans and are adopted when the profiles come
    counts = health["counts"]
    adopted = counts.get("orphans_adopted", 0)
    assert counts["applied"] + adopted == 3_000 - waiting
    assert counts["orphans"] - adopted == waiting
    assert health["counts"]["rejected"] == 1
    assert health["accounts_waiting_for_profile"] == 1
    [reject] = asyncio.run(_read_rejects(bootstrap, 1))
    assert reject["ratewire-reason"] == b"PROFILE_INVALID"
    assert reject["ratewire-source"] == f"{BILLING_EVENTS}[1]@0".encode()
    assert reject["value"] == events[1][1]
    status, body = one.get(f"/billing/usage/{ACCOUNTS[0]}?cycle=2026-11")
    assert status == 200
    assert body["records"] > 0

    # the worker resends two chunks after a crash: counted as duplicates, not added
    send(bootstrap, RATED, first[:2])
    resent = first[0][1].count(b"\n") + first[1][1].count(b"\n")
    health = one.wait_offsets({k: v + (2 if k == f"{RATED}[{first[0][0]}]" else 0)
                               for k, v in ends(first).items()})  # fmt: skip
    assert health["counts"]["duplicates"] == resent

    # SIGKILL while the second half streams in, then a restart on the same store
    send(bootstrap, RATED, rest)
    deadline = time.monotonic() + 20
    while (one.health() or {}).get("counts", {}).get("applied", 0) + adopted <= 3_000 - waiting:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert one.signal(signal.SIGKILL) == -signal.SIGKILL
    two = Consumer(broker.url, billing, tmp_path / "consumer-2.log").start()
    started.append(two)
    totals = ends(first)
    for key, n in ends(rest).items():
        totals[key] = totals.get(key, 0) + n
    totals[f"{RATED}[{first[0][0]}]"] += 2
    two.wait_offsets(totals)
    send(bootstrap, BILLING_EVENTS, [(2, encode_events([SetProfile(profile(23))]))])
    health = two.wait_offsets({f"{BILLING_EVENTS}[2]": 1})
    assert health["accounts_waiting_for_profile"] == 0
    assert two.get("/invoices?cycle=2026-11") == (200, {"count": 0, "shown": 0, "invoices": []})
    assert two.get("/invoices/2026-11/acc-000")[0] == 404
    assert two.get("/invoices?status=lost")[0] == 400

    # a run closes 2026-11 for acc-000 inside the consumer; usage of it arriving later is
    # late usage of 2026-12, and never changes the closed cycle
    status, summary = two.post("/billing/run", {"cycle": "2026-11", "accounts": ["acc-000"]})
    assert (status, summary["drafted"]) == (200, 1)
    status, invoice = two.get("/invoices/2026-11/acc-000")
    assert status == 200
    assert invoice["status"] == "draft"
    late = RatedRecord("late-1", "t", "acc-000", "sms", "s", "4930", START_US, 1, "x",
                       50_000_000, "EUR", "RP", "FR", "49", "0", 0, [], charged="0.05")  # fmt: skip
    send(bootstrap, RATED, [(partition_of(b"acc-000", PARTITIONS), msgspec.json.encode(late))])
    totals[f"{RATED}[{partition_of(b'acc-000', PARTITIONS)}]"] += 1
    two.wait_offsets(totals)
    status, december = two.get("/billing/usage/acc-000?cycle=2026-12")
    assert status == 200
    assert december["late"] == [["sms", "FR", "EUR", 1, 1, 50_000_000, 50_000_000, 0, "2026-11"]]
    assert two.signal(signal.SIGTERM) == 0

    expected = expected_sums(rated)
    assert stored(billing, list(expected)) == expected
    with RocksStore(billing) as store:
        offsets = load_offsets(store)
    assert {f"{t}[{p}]": n for (t, p), n in offsets.items() if t == RATED} == totals

    # a restart that finds nothing new stops by itself (--until-idle)
    three = Consumer(broker.url, billing, tmp_path / "consumer-3.log", "--until-idle", "1")
    started.append(three)
    assert three.start().wait() == 0
    assert stored(billing, list(expected)) == expected
