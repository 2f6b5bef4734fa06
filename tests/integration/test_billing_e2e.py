"""A month of usage through the worker and the billing consumer, then the cycle closed.

Real broker, a rating worker and a billing consumer (child processes). The
month's generated traffic is rated and debited by the worker; the consumer
accumulates ``rated-cdrs``; prepaid fees are renewed by the worker on the
consumer's request; ``POST /billing/run`` drafts November. Every invoice is
checked against the slow reference (:mod:`tests.billing_reference`) fed with
what the worker rated, read back from the topic on its own.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from balances.model import MAIN
from balances.model import Mode as BalanceMode
from billing.catalog import SAMPLE_CATALOG
from billing.events import AddSubscriptionEvent, SetProfile, encode_events
from billing.model import (
    BillingProfile,
    InvoiceLine,
    LineKind,
    Mode,
    SubscriptionAction,
    SubscriptionEvent,
)
from engine.account_commands import TopUp
from engine.kafka_transport import FETCH_WAIT_MS
from engine.produce import produce, send_commands
from engine.topics import BILLING_EVENTS, RATED
from loadtest.accounts import scenario_accounts
from loadtest.generator import Scenario, columns_to_records, generate_traffic
from tests.billing_reference import RefCatalog, reference_charges
from tests.integration.streaming import Consumer, Stream

pytestmark = pytest.mark.integration
EUR = 1_000_000_000
MONTH = 30
PER_DAY = 200
ACCOUNTS = 36
BERLIN = ZoneInfo("Europe/Berlin")
MODES = {BalanceMode.PREPAID: Mode.PREPAID, BalanceMode.POSTPAID: Mode.POSTPAID,
         BalanceMode.HYBRID: Mode.HYBRID}  # fmt: skip


class Line(msgspec.Struct):
    cdr_id: str
    account: str
    category: str
    zone: str
    currency: str
    start_us: int
    charged: str | None = None

    def in_november(self) -> bool:
        """Billed on the 1st in Berlin: the cycle is November 1st to December 1st, local."""
        return datetime.fromtimestamp(self.start_us / 1e6, BERLIN).month == 11


async def _read_all(bootstrap: str, topic: str, idle: float = 2.0) -> dict[int, list[bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=FETCH_WAIT_MS)  # fmt: skip
    await consumer.start()
    out: dict[int, list[bytes]] = defaultdict(list)
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle:
            for tp, messages in (await consumer.getmany(timeout_ms=200)).items():
                out[tp.partition] += [m.value for m in messages]
                last = time.monotonic()
    finally:
        await consumer.stop()
    return out


def wait_for(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def usage_lines(rated: list[Line], prepaid: bool) -> list[InvoiceLine]:
    """The reference's usage lines: charged money by category and zone, rounded half-even."""
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rated:
        sums[(r.category, r.zone)] += Decimal(r.charged or "0")
    return [
        InvoiceLine(kind=LineKind.USAGE, description=f"{c} {z}", currency="EUR",
                    amount=int(v.quantize(Decimal("0.01"), ROUND_HALF_EVEN) * EUR),
                    category=c, zone=z, paid_from_balance=prepaid)
        for (c, z), v in sorted(sums.items())
    ]  # fmt: skip


def test_a_month_streamed_rated_renewed_and_invoiced(stream: Stream, tmp_path: Path) -> None:
    scenario = Scenario(records=PER_DAY, accounts=ACCOUNTS, seed=11,
                        day=Scenario().day.replace(day=1))  # fmt: skip
    traffic = generate_traffic(scenario, PER_DAY * MONTH)
    records = columns_to_records(traffic.columns)
    book, _ = scenario_accounts(scenario)
    profiles = [BillingProfile(account=a.id, mode=MODES[a.mode], region="DE",
                               timezone="Europe/Berlin") for a in book]  # fmt: skip
    plan = {Mode.PREPAID: "GO_PREPAID", Mode.POSTPAID: "MOBILE_M", Mode.HYBRID: "MOBILE_M"}
    subscribed = {
        p.account: SubscriptionEvent(event_id=f"{p.account}:sub", account=p.account,
                                     subscription=f"{p.account}:s1", day="2026-11-01",
                                     action=SubscriptionAction.SUBSCRIBE, product=plan[p.mode])
        for p in profiles
    }  # fmt: skip
    prepaid = [p.account for p in profiles if p.mode is Mode.PREPAID]
    rich = set(prepaid[::2])  # 30 EUR on main: November's 9.99 renews; the others' is refused

    worker = stream.worker()
    stream.provision(scenario)
    top_ups = [TopUp(account=a, balance=MAIN, amount=30 * EUR, op_id=f"t:{a}") for a in rich]
    asyncio.run(send_commands(stream.broker.bootstrap, top_ups))
    consumer = Consumer(stream.broker.url, tmp_path / "billing", tmp_path / "billing.log").start()
    try:
        events = [SetProfile(p) for p in profiles]
        events += [AddSubscriptionEvent(e) for e in subscribed.values()]
        asyncio.run(produce(stream.broker.bootstrap, [(0, b"", encode_events(events), [])],
                            topic=BILLING_EVENTS))  # fmt: skip
        wait_for("profiles", lambda: (consumer.health() or {"counts": {}})["counts"].get(
            "subscription:new", 0) == ACCOUNTS)  # fmt: skip

        # renew November (the run that closes October would): prepaid fees, all allowances
        status, sent = consumer.post("/billing/renew", {"cycle": "2026-10"})
        assert status == 200, sent
        assert sent["renewals_sent"] == len(prepaid)
        wait_for("renewal outcomes", lambda: (consumer.health() or {"counts": {}})["counts"].get(
            "renewal:new", 0) == len(prepaid))  # fmt: skip
        wait_for("allowances", lambda: (worker.health() or {"counts": {}})["counts"].get(
            "allowances_granted", 0) == sent["grants_sent"])  # fmt: skip

        stream.produce(records, shape="batch", fmt="msgpack")
        got = stream.collect(len(records))
        assert got.total == len(records)
        rated = asyncio.run(_read_all(stream.broker.bootstrap, RATED))
        consumer.wait_offsets({f"{RATED}[{p}]": len(v) for p, v in rated.items()}, timeout=60)

        status, renewed = consumer.post("/billing/renew", {"cycle": "2026-11"})  # December
        assert status == 200, renewed
        status, summary = consumer.post("/billing/run", {"cycle": "2026-11"})
        assert status == 200, summary
        assert (summary["accounts"], summary["drafted"]) == (
            ACCOUNTS,
            ACCOUNTS - summary["pending"],
        )
        wait_for("December renewal outcomes", lambda: (consumer.health() or {"counts": {}})[
            "counts"].get("renewal:new", 0) == len(prepaid) + renewed["renewals_sent"])  # fmt: skip
        status, rerun = consumer.post("/billing/run", {"cycle": "2026-11"})
        assert (rerun["drafted"] + rerun["already"], rerun["pending"]) == (ACCOUNTS, 0)

        by_account: dict[str, list[Line]] = defaultdict(list)
        seen: set[str] = set()
        for values in rated.values():
            for value in values:
                for line in msgspec.json.Decoder(Line).decode_lines(value):
                    if line.cdr_id not in seen:  # a chunk may be sent twice after a retry
                        seen.add(line.cdr_id)
                        if line.in_november():
                            by_account[line.account].append(line)
        assert len(seen) == len(got.rated)
        catalog = RefCatalog(SAMPLE_CATALOG.read_text())
        for p in profiles:
            status, invoice = consumer.get(f"/invoices/2026-11/{p.account}")
            assert status == 200, invoice
            events = [subscribed[p.account]]
            if p.mode is Mode.PREPAID and p.account not in rich:
                events.append(SubscriptionEvent(
                    event_id="refused", account=p.account, subscription=f"{p.account}:s1",
                    action=SubscriptionAction.SUSPEND, day="2026-11-01"))  # fmt: skip
            want = reference_charges(catalog, p, events, [], "2026-11",
                                     usage_lines(by_account[p.account], p.mode is Mode.PREPAID),
                                     {})  # fmt: skip
            got_total = Decimal(invoice["total"]) / EUR
            assert got_total == want.total, (p.account, invoice["lines"])
            assert Decimal(invoice.get("tax", 0)) / EUR == want.tax, p.account
            usage = sum(ln["amount"] for ln in invoice["lines"] if ln["kind"] == "usage")
            assert Decimal(usage) / EUR == sum(
                (ln.amount for ln in want.lines if ln.kind == "usage"), Decimal(0)
            )
        charged = sum(Decimal(ln.charged or "0") for lines in by_account.values() for ln in lines)
        assert charged > 0
    finally:
        consumer.signal(signal.SIGTERM)
