"""``ratewire worker``: the Faust app that rates topic ``cdrs`` and debits balances.

The agent only wires stages (STYLE.md: thin agents). It takes many events at
once, groups them by partition, and for each partition, under its lock:
:meth:`~engine.partition.Partition.process` (decode, rate, debit: plain
code), sends rated records to ``rated-cdrs``, rejects to ``cdrs-rejected`` and
misrouted records back to ``cdrs``, waits for the broker, then checkpoints
the partition (changelog, then RocksDB). Faust acks the events only after
that, and a partition skips input positions it applied before, so a crash
or a rebalance anywhere in between neither loses a record nor charges one
twice. Kafka writes per batch: O(1), not per account or per record.

A batch that fails is tried again from durable state; if it keeps failing
the worker raises an alert and exits without acknowledging it (a restart
replays it), because Faust would otherwise commit past it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

import faust
import msgspec

from balances.units import UnitCatalog
from engine import kafka_transport
from engine.account_commands import outcome_message
from engine.alerts import DEFAULT_RULES, Alert, Alerter, AlertRule
from engine.api import Api
from engine.api_lane import LaneWeb
from engine.broker import bootstrap_of
from engine.changelog import MAX_BYTES
from engine.changelog_writer import ChangelogWriter
from engine.faust_app import app_settings
from engine.metrics import WorkerMetrics
from engine.partition import Message, Outcome, Partition
from engine.partitions import Partitions, PartitionsConfig
from engine.rejects import Reject
from engine.runs import runs_under
from engine.sessions import warm
from engine.topics import ACCOUNTS, ALERTS, BILLING_EVENTS, CDRS, CHANGELOG, RATED, REJECTED
from tariffs.rating import Rater

log = logging.getLogger(__name__)
FORMAT_HEADER = "ratewire-format"
MAX_CHUNK = 900_000  # bytes of rated JSON lines per message
SLICE_BYTES = 4 << 20  # input bytes per process / ship / checkpoint (~32 k msgpack records)
RETRIES = 3
EXIT_BATCH_FAILED = 70


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    broker: str  # kafka://host:port
    state: Path
    partitions: int = 4
    app_id: str = "ratewire"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    api_token: str = ""
    batch_events: int = 2_000
    batch_seconds: float = 0.02
    remember: int = 2_000_000
    max_message_bytes: int = 4 << 20
    changelog_message_bytes: int = MAX_BYTES
    alert_rules: tuple[AlertRule, ...] = DEFAULT_RULES
    session_timeout: float = 6.0  # seconds before a silent worker's partitions move

    @property
    def bootstrap(self) -> str:
        return bootstrap_of(self.broker)


@dataclass
class Runtime:
    """What the agent and the HTTP views share (one per worker process)."""

    config: WorkerConfig
    app: faust.App
    partitions: Partitions
    metrics: WorkerMetrics
    alerter: Alerter
    counts: Counter[str] = field(default_factory=Counter)  # totals since start
    assigned: list[int] = field(default_factory=list)  # partitions of cdrs assigned here

    async def send(
        self, topic: str, partition: int, key: bytes | None, value: bytes | memoryview,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any:  # fmt: skip
        return await _send(self.app, topic, partition, key, value, headers)

    async def handle(self, events: Sequence[faust.types.EventT[Any]]) -> None:
        """One batch: each partition of it processed (CPU one after another, I/O overlapping)."""
        started = time.perf_counter()
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for event in events:
            m = event.message
            headers = dict(m.headers or ())
            columnar = headers.get(FORMAT_HEADER) == b"columnar"
            by_partition[m.partition].append(Message(m.topic, m.offset, m.value or b"", columnar))
        # partitions one after another on the CPU, their sends and acks overlapping
        records = sum(await asyncio.gather(*(self._slices(n, m) for n, m in by_partition.items())))
        for number, messages in by_partition.items():
            self._lag(number, messages)
        self.metrics.batches_total.inc()
        self.metrics.batch_records.observe(records)
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _slices(self, number: int, messages: list[Message]) -> int:
        """A partition's messages in slices of at most ``SLICE_BYTES``; the records read.

        After a backlog a batch can hold 2,000 messages of 1,000 records: two
        million records in one call held the event loop ~10 s (the HTTP API
        and Faust's timers with it) and made state values of tens of MB. Each
        slice is processed, shipped and checkpointed on its own, still O(1)
        Kafka writes per slice; a crash between slices replays only what was
        not checkpointed (the partition skips input positions it applied).
        """
        records = 0
        for part in _slice(messages, SLICE_BYTES):
            records += (await self._partition(number, part)).records
        return records

    async def _partition(self, number: int, messages: list[Message]) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                part = await self.partitions.get(number)
                async with self.partitions.lock(number):
                    outcome = part.process(messages)
                    await self._ship(part, outcome)
                    [error] = await self.partitions.checkpoint([part])
                    if error is not None:
                        raise error
            except Exception as exc:
                self.partitions.drop(number)  # reopen from what is durable
                self.metrics.batch_failures_total.inc()
                log.exception("partition %d: batch failed (attempt %d of %d)", number, attempt,
                              RETRIES)  # fmt: skip
                if attempt >= RETRIES:
                    await self._fail(number, exc)
                await asyncio.sleep(0.2 * attempt)
                continue
            for alert in self._count(outcome):
                await self._alert(alert)
            return outcome

    async def _fail(self, number: int, exc: Exception) -> NoReturn:
        """Alert, then exit without acking the batch: a restart replays it."""
        alert = self.alerter.batch_failed(f"partition {number}: {exc!r}", [number])
        try:
            await self._alert(alert)
            await asyncio.wait_for(self.app.producer.flush(), timeout=5)
        finally:
            logging.shutdown()
            os._exit(EXIT_BATCH_FAILED)

    async def _ship(self, part: Partition, outcome: Outcome) -> None:
        """Rated records, rejects and forwards; returns once the broker has them all."""
        number = part.number
        pending = [await self.send(RATED, number, None, chunk)
                   for lines in outcome.rated_lines for chunk in _chunks(lines)]  # fmt: skip
        pending += [
            await self.send(REJECTED, number, None, r.raw, _reject_headers(r))
            for r in outcome.rejects
        ]
        pending += [await self.send(CDRS, p, key, value) for p, key, value in outcome.forwards]
        pending += [
            await self.send(BILLING_EVENTS, number, *outcome_message(o))
            for o in outcome.accounts.outcomes
        ]
        await asyncio.gather(*pending)

    def _count(self, outcome: Outcome) -> list[Alert]:
        """Metrics and totals of a batch; the alerts its rejects raise."""
        m = self.metrics
        m.messages_in_total.inc(outcome.messages)
        m.records_in_total.inc(outcome.records)
        m.records_rated_total.inc(outcome.rated)
        m.records_repartitioned_total.inc(outcome.forwarded)
        reasons = Counter(r.reason for r in outcome.rejects)
        for reason, n in reasons.items():
            m.records_rejected_total.inc(n, reason=reason)
        m.records_duplicate_total.inc(reasons.get("DUPLICATE", 0))
        self.counts.update(read=outcome.records, rated=outcome.rated,
                           forwarded=outcome.forwarded, replayed=outcome.replayed,
                           accounts_created=outcome.accounts.created,
                           accounts_existing=outcome.accounts.existing,
                           renewals=outcome.accounts.renewed,
                           renewals_refused=outcome.accounts.refused,
                           allowances_granted=outcome.accounts.granted)  # fmt: skip
        self.counts.update({f"rejected:{k}": v for k, v in reasons.items()})
        if not reasons:
            return []
        examples: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for r in outcome.rejects[-50:]:
            examples[r.reason].append((r.source, r.message))
        return self.alerter.observe(reasons, examples)

    async def _alert(self, alert: Alert) -> None:
        log.warning("ALERT %s %s: %s", alert.kind, alert.reason, alert.detail)
        self.metrics.alerts_total.inc(kind=alert.kind)
        await self.send(ALERTS, 0, alert.reason.encode(), msgspec.json.encode(alert))

    def _lag(self, number: int, messages: list[Message]) -> None:
        for topic in {m.topic for m in messages}:
            last = max(m.offset for m in messages if m.topic == topic)
            high = self.app.consumer.highwater(faust.types.TP(topic, number))
            if high is not None:
                self.metrics.consumer_lag.set(max(high - last - 1, 0), topic=topic,
                                              partition=number)  # fmt: skip


def _slice(messages: list[Message], limit: int) -> list[list[Message]]:
    """``messages`` in order, cut into runs of at most ``limit`` bytes (or one message)."""
    return runs_under(messages, lambda m: len(m.value), limit)


def _chunks(lines: bytes | memoryview) -> list[memoryview]:
    """JSON lines cut at line ends into messages of at most ``MAX_CHUNK`` bytes (or one line).

    ``lines`` is usually a view of the JSON writer's buffer (no copy); each cut
    looks back from its limit for the last line end in a small window, not
    through the whole buffer for every newline.
    """
    view = memoryview(lines)
    chunks, start = [], 0
    while start < len(view):
        if len(view) - start <= MAX_CHUNK:
            cut = len(view)
        else:
            cut = _last_line_end(view, start, start + MAX_CHUNK)
            if cut <= start:  # one line longer than a chunk: it goes alone
                cut = bytes(view[start + MAX_CHUNK :]).find(b"\n") + start + MAX_CHUNK + 1
                cut = cut if cut > start + MAX_CHUNK else len(view)
        chunks.append(view[start:cut])
        start = cut
    return chunks


def _last_line_end(view: memoryview, start: int, limit: int) -> int:
    """The position after the last newline in ``view[start:limit]`` (``start`` if none)."""
    window = 4096  # a rated line is ~0.6-2 KB: one small copy finds it
    while True:
        lo = max(start, limit - window)
        found = bytes(view[lo:limit]).rfind(b"\n")
        if found >= 0:
            return lo + found + 1
        if lo == start:
            return start
        window *= 8


def _reject_headers(r: Reject) -> list[tuple[str, bytes]]:
    return [
        ("ratewire-reason", r.reason.encode()),
        ("ratewire-source", r.source.encode()),
        ("ratewire-error", r.message.encode()[:2000]),
    ]


class WorkerApp(faust.App):
    """The Faust app, with ratewire's HTTP routes added when its web server starts."""

    api: Api | None = None
    changelog: ChangelogWriter | None = None

    def _new_transport(self) -> Any:
        return kafka_transport.Transport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        if self.api is not None:
            await self.api.close()
        await super().on_stop()  # waits for the streams' batches, which checkpoint
        if self.changelog is not None:
            await self.changelog.stop()

    def _new_web(self) -> Any:
        return LaneWeb(self)

    def on_webserver_init(self, web: Any) -> None:
        if self.api is not None:
            self.api.add_routes(web.web_app.router)


def build_app(config: WorkerConfig, rater: Rater, units: UnitCatalog) -> Runtime:
    """The Faust app with its agent and HTTP views, and the runtime they share."""
    kafka_transport.zstd_level(kafka_transport.ZSTD_LEVEL)
    warm(rater, units)
    app = WorkerApp(
        config.app_id,
        **app_settings(
            broker=config.broker,
            datadir=config.state / "faust",
            web_host=config.web_host,
            web_port=config.web_port,
            partitions=config.partitions,
            session_timeout=config.session_timeout,
            batch_events=config.batch_events,
            max_bytes=max(config.max_message_bytes * 4, 16 << 20),
            buffer=4096,
        ),
        producer_compression_type="zstd",
    )
    changelog = app.changelog = ChangelogWriter(config.bootstrap, CHANGELOG)
    runtime = Runtime(
        config=config, app=app, metrics=WorkerMetrics(),
        alerter=Alerter(config.alert_rules, worker=f"{config.web_host}:{config.web_port}"),
        partitions=Partitions(
            PartitionsConfig(config.bootstrap, config.state, config.partitions,
                             config.remember, config.max_message_bytes,
                             config.changelog_message_bytes),
            rater, units, changelog,
        ),
    )  # fmt: skip
    source = app.topic(
        CDRS, ACCOUNTS, key_serializer="raw", value_serializer="raw",
        partitions=config.partitions,
    )  # fmt: skip

    @app.agent(source, name="rate")
    async def rate(stream: Any) -> None:
        async for events in stream.take_events(config.batch_events, within=config.batch_seconds):
            await runtime.handle(events)

    @app.task  # type: ignore[untyped-decorator]
    async def connect_changelog() -> None:
        """Metadata and connections ready before the first checkpoint needs them."""
        try:
            await changelog.start()
        except Exception as exc:  # the first checkpoint tries again
            log.warning("changelog writer: cannot connect yet: %r", exc)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def revoked(sender: Any, revoked: set[faust.types.TP], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == CDRS:
                runtime.partitions.drop(tp.partition)
        runtime.assigned = []

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def assigned(sender: Any, assigned: set[faust.types.TP], **_: Any) -> None:
        runtime.assigned = sorted(tp.partition for tp in assigned if tp.topic == CDRS)
        log.info("partitions of %s assigned here: %s", CDRS, runtime.assigned)
        runtime.metrics.partitions_owned.set(len(runtime.assigned))

    app.api = Api(runtime)
    return runtime


async def _send(
    app: faust.App, topic: str, partition: int, key: bytes | None, value: bytes | memoryview,
    headers: list[tuple[str, bytes]] | None = None,
) -> Any:  # fmt: skip
    # a view of the JSON writer's buffer is fine: aiokafka copies the bytes as it appends
    # them to a batch, before this returns (Faust's annotation says bytes only)
    return await app.producer.send(topic, key, cast(bytes, value), partition, None, headers)
