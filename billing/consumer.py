"""``ratewire billing consume``: the invoicing consumer, a small Faust app of its own.

One agent reads ``rated-cdrs`` (what the workers rated) and ``billing-events``
(profiles, subscription changes, one-time charges) in batches
(``take_events``). Per batch, under the store lock:

1. messages below the offsets the billing store holds are skipped (applied
   before a crash or a rebalance);
2. billing events are stored (:class:`billing.accounts.EventWriter`), records
   kept for accounts that just got a profile are adopted, and the events'
   offsets go in the same write;
3. rated chunks are added to the usage totals
   (:meth:`billing.usage.UsageBook.apply`), with their offsets, in one write.

Faust acknowledges a batch only after that, so a crash anywhere loses
nothing and, with the offsets and remembered ``cdr_id``s, counts nothing
twice. Unreadable events and lines go to topic ``billing-rejected`` with
their reason and ``topic[partition]@offset``. One process owns the billing
store (RocksDB); the HTTP API (:mod:`billing.consumer_api`) serves invoice
search and runs a cycle inside this process while the agent waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import faust

from balances.store import Store
from billing.accounts import EventWriter, check_event
from billing.events import (
    BillingEvent,
    BillingEventError,
    SetProfile,
    decode_events,
)
from billing.exceptions import BillingError
from billing.storage import open_store
from billing.tally import BadLine, Rated, decode_rated
from billing.usage import ClosedCycles, ProfileCache, UsageBook, load_offsets, offset_key
from engine import collector, kafka_transport
from engine.broker import bootstrap_of
from engine.faust_app import app_settings
from engine.topics import BILLING_EVENTS, RATED

log = logging.getLogger(__name__)
REJECTED = "billing-rejected"
RETRIES = 3
EXIT_BATCH_FAILED = 70


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    broker: str  # kafka://host:port
    billing: Path  # the billing store (RocksDB folder)
    partitions: int = 4  # of billing-events when it is created here
    app_id: str = "ratewire-billing"
    web_host: str = "127.0.0.1"
    web_port: int = 6070
    api_token: str = ""
    batch_events: int = 64  # messages per batch (a rated chunk holds up to ~2,000 records)
    batch_seconds: float = 0.05
    remember: int = 2_000_000  # cdr_ids per generation (x2) to catch resent chunks
    session_timeout: float = 6.0
    until_idle: float | None = None  # stop after this many seconds without messages
    catalog: Path | None = None  # for runs and currency decimals (default: the sample)

    @property
    def bootstrap(self) -> str:
        return bootstrap_of(self.broker)

    @property
    def faust_dir(self) -> Path:
        return self.billing.with_name(self.billing.name + ".faust")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def source(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Rejected:
    source: str
    reason: str  # BILLING_EVENT_INVALID, RATED_LINE_INVALID
    message: str
    raw: bytes


@dataclass
class Billing:
    """The billing store and the consumer's state on it: plain code, no Kafka.

    :meth:`process` is one batch; the agent, the tests and a replay tool call it alike.
    """

    store: Store
    remember: int = 2_000_000
    book: UsageBook = field(init=False)
    profiles: ProfileCache = field(init=False)
    closed: ClosedCycles = field(init=False)
    offsets: dict[tuple[str, int], int] = field(init=False)
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.reopen()

    def reopen(self) -> None:
        """Forget memory, read what is durable (after a failed write, or a run)."""
        self.book = UsageBook(self.store, remember=self.remember)
        self.profiles = ProfileCache(self.store)
        self.closed = ClosedCycles(self.store)
        self.offsets = load_offsets(self.store)

    def process(self, messages: Sequence[Message]) -> list[Rejected]:
        """:meth:`prepare` and :meth:`commit` one batch; returns its rejects."""
        batch = self.prepare(messages)
        self.commit(batch)
        return batch.rejects

    def prepare(self, messages: Sequence[Message]) -> Prepared:
        """Read a batch, write nothing: what :meth:`commit` applies, and the rejects.

        The agent ships the rejects before the commit, so a crash in between
        sends them again rather than never (messages below the stored offsets
        are skipped here: applied before).
        """
        out = Prepared()
        for m in messages:
            if m.offset < self.offsets.get((m.topic, m.partition), 0):
                self.counts["replayed_messages"] += 1
                continue
            if m.topic == BILLING_EVENTS:
                self._event(m, out)
            else:
                out.rated.append(m)
            after = out.event_offsets if m.topic == BILLING_EVENTS else out.rated_offsets
            after[(m.topic, m.partition)] = max(after.get((m.topic, m.partition), 0), m.offset + 1)
        out.records, bad = decode_rated([m.value for m in out.rated])
        out.bad = bad
        out.rejects += [Rejected(f"{out.rated[b.chunk].source}#{b.line}", "RATED_LINE_INVALID",
                                 b.message, b.raw) for b in bad]  # fmt: skip
        self.counts["rejected"] += len(out.rejects)
        return out

    def _event(self, m: Message, out: Prepared) -> None:
        try:
            events = decode_events(m.value, m.source)
            for event in events:  # a message applies whole or not at all
                check_event(event)
        except BillingEventError as exc:
            out.rejects.append(Rejected(m.source, exc.code, str(exc), m.value))
        except BillingError as exc:  # a readable event that cannot be used
            out.rejects.append(Rejected(m.source, exc.code, f"{m.source}: {exc}", m.value))
        else:
            out.events += events

    def commit(self, batch: Prepared) -> None:
        """Apply a prepared batch: events (with their offsets) in one write, then rated
        records (with theirs) in another."""
        if batch.event_offsets:
            self._events(batch)
        if batch.rated_offsets:
            self._rated(batch)

    def _events(self, batch: Prepared) -> None:
        writer = EventWriter(self.store)
        profiled: list[str] = []
        for event in batch.events:
            writer.apply(event)
            if isinstance(event, SetProfile):
                self.profiles.put(event.profile)
                profiled.append(event.profile.account)
        adopted = self.book.adopt(profiled, self.profiles, self.closed, writer.batch)
        for (topic, partition), offset in batch.event_offsets.items():
            writer.batch.put(offset_key(topic, partition), b"%d" % offset)
        self.store.write(writer.batch)
        self.offsets.update(batch.event_offsets)
        self.counts.update(writer.counts)
        self.counts["orphans_adopted"] += adopted.adopted

    def _rated(self, batch: Prepared) -> None:
        result = self.book.apply_records(batch.records, batch.bad, self.profiles, self.closed,
                                         offsets=batch.rated_offsets)  # fmt: skip
        self.offsets.update(batch.rated_offsets)
        self.counts.update(
            rated_messages=len(batch.rated), rated_records=result.records,
            applied=result.applied, duplicates=result.duplicates, late=result.late,
            orphans=result.orphans,
        )  # fmt: skip


@dataclass
class Prepared:
    """One batch, read: billing events and rated records to apply, offsets, rejects."""

    events: list[BillingEvent] = field(default_factory=list)
    event_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rated: list[Message] = field(default_factory=list)
    records: list[Rated] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    rated_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    rejects: list[Rejected] = field(default_factory=list)


class BillingApp(faust.App):
    """The Faust app, with the billing HTTP routes added when its web server starts."""

    runtime: Runtime | None = None

    def _new_transport(self) -> Any:
        return kafka_transport.Transport(self.conf.broker_consumer, self)

    def on_webserver_init(self, web: Any) -> None:
        if self.runtime is not None:
            from billing.consumer_api import add_routes

            add_routes(web.web_app.router, self.runtime)


@dataclass
class Runtime:
    """What the agent and the HTTP views share (one per consumer process)."""

    config: ConsumerConfig
    app: BillingApp
    billing: Billing
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # a batch, or a run, at a time
    last_message: float = field(default_factory=time.monotonic)
    assigned: list[str] = field(default_factory=list)

    async def handle(self, events: Sequence[faust.types.EventT[Any]]) -> None:
        """One batch: read, ship its rejects, apply (retried from durable state)."""
        messages = [Message(e.message.topic, e.message.partition, e.message.offset,
                            e.message.value or b"") for e in events]  # fmt: skip
        self.last_message = time.monotonic()
        for attempt in range(1, RETRIES + 1):
            try:
                async with self.lock:
                    with collector.paused():
                        prepared = self.billing.prepare(messages)
                    await self._reject(prepared.rejects)
                    with collector.paused():
                        self.billing.commit(prepared)
                return
            except Exception:
                log.exception("billing batch failed (attempt %d of %d)", attempt, RETRIES)
                self.billing.counts["batch_failures"] += 1
                self.billing.reopen()  # from what is durable
                if attempt == RETRIES:
                    await self._fail()
                await asyncio.sleep(0.2 * attempt)

    async def _reject(self, rejects: list[Rejected]) -> None:
        """To ``billing-rejected`` with reason, source and error; back once the broker has them."""
        for r in rejects:
            log.warning("rejected %s (%s): %s", r.source, r.reason, r.message)
        pending = [await self.app.producer.send(REJECTED, None, r.raw, None, None, [
            ("ratewire-reason", r.reason.encode()), ("ratewire-source", r.source.encode()),
            ("ratewire-error", r.message.encode()[:2000])]) for r in rejects]  # fmt: skip
        await asyncio.gather(*pending)

    async def _fail(self) -> NoReturn:
        """Exit without acknowledging the batch: a restart reads it again."""
        logging.shutdown()
        os._exit(EXIT_BATCH_FAILED)


def build_app(config: ConsumerConfig) -> Runtime:
    """The Faust app with its agent, idle timer and HTTP views, and the runtime they share."""
    app = BillingApp(
        config.app_id,
        **app_settings(
            broker=config.broker,
            datadir=config.faust_dir,
            web_host=config.web_host,
            web_port=config.web_port,
            partitions=config.partitions,
            session_timeout=config.session_timeout,
            batch_events=config.batch_events,
        ),
    )
    store = open_store(config.billing)
    runtime = Runtime(config, app, Billing(store, remember=config.remember))
    app.runtime = runtime
    source = app.topic(RATED, BILLING_EVENTS, key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="bill")
    async def bill(stream: Any) -> None:
        async for events in stream.take_events(config.batch_events, within=config.batch_seconds):
            await runtime.handle(events)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(sender: Any, assigned: set[faust.types.TP], **_: Any) -> None:
        runtime.assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)
        runtime.last_message = time.monotonic()
        log.info("billing consumer assigned %s", runtime.assigned)

    if config.until_idle is not None:
        idle = config.until_idle

        @app.timer(interval=min(idle / 4, 1.0))  # type: ignore[untyped-decorator]
        async def stop_when_idle() -> None:
            if runtime.assigned and time.monotonic() - runtime.last_message > idle:
                log.info("no messages for %.1f s: stopping (--until-idle)", idle)
                os.kill(os.getpid(), signal.SIGTERM)

    return runtime
