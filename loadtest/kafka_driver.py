"""``ratewire loadtest kafka``: usage records onto ``cdrs`` at a target rate, measured end to end.

One run:

1. **Traffic**: the scenario's first ``rate × duration`` positions (resends
   and malformed messages included), planned by
   :func:`loadtest.tally.plan_traffic`: encoded up front, in stream order,
   each message due when its first record is, every ``cdr_id`` prefixed with
   the run's id.
2. **Accounts**: the scenario's accounts go to topic ``accounts``; the run
   starts once the worker group has committed past those commands, so no
   record meets an account that is not there yet.
3. **Open loop**: :class:`~loadtest.schedule.OpenLoop` sends each message at
   its time, never waiting for replies; the producer's acknowledgements give
   each message's offset.
4. **Reading** ``rated-cdrs`` and ``cdrs-rejected`` from their end offsets
   at the start, matched to what was sent by :class:`~loadtest.tally.Tally`;
   latency counts from each message's *intended* send time.
5. **Lag**, once a second: records this run sent past the worker group's
   committed offsets on ``cdrs`` (workers commit about once a second).
6. **End**: when every record and malformed message is rated or rejected,
   or ``drain`` seconds after the last send; the rest is reported missing.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from engine.kafka_transport import FETCH_WAIT_MS
from engine.produce import MAX_REQUEST, Shape, producer
from engine.topics import ACCOUNTS, CDRS, RATED, REJECTED
from engine.wire import Format
from loadtest import kafka
from loadtest.cluster import Cluster
from loadtest.exceptions import LoadTestError
from loadtest.generator import generate_traffic
from loadtest.live import Live, Snapshot
from loadtest.report import Check, Report, environment, series_of, warm_seconds
from loadtest.scenario import Scenario
from loadtest.schedule import OpenLoop, SendLog, interruptible
from loadtest.tally import Planned, Tally, plan_traffic

GROUP = "ratewire"  # the worker's Faust app id: its consumer group


@dataclass(frozen=True, slots=True)
class KafkaLoad:
    """What to send and how to judge it."""

    rate: float  # records per second; 0: as fast as the producer can
    records: int
    warmup: float = 5.0
    shape: Shape = "batch"
    fmt: Format = "msgpack"
    size: int = 1000  # records per batch message
    partitions: int = 4
    drain: float = 30.0  # seconds to wait for the last outputs after the last send
    group: str = GROUP
    run_id: str = ""  # cdr_id prefix; "" for a random one
    first: int = 0  # the scenario's stream position to start at
    provision: bool = True
    provision_timeout: float = 120.0
    p99_ms: float | None = None
    max_lag: float | None = None

    @property
    def duration(self) -> float:
        return self.records / self.rate if self.rate else 0.0


# -- Kafka clients ---------------------------------------------------------------------------
def _consumer(bootstrap: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        fetch_max_bytes=MAX_REQUEST,
        max_partition_fetch_bytes=MAX_REQUEST,
        **options,
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()  # a metadata refresh of every topic (creates none)
    parts = consumer.partitions_for_topic(topic) or set()
    if not parts:
        msg = f"topic {topic!r} has no partitions on the broker: has a worker set it up?"
        raise LoadTestError(msg)
    return [TopicPartition(topic, p) for p in sorted(parts)]


class GroupLag:
    """The worker group's committed offsets on ``topic``, read by a consumer that never
    joins the group (OffsetFetch; the Tansu broker answers the admin client's version of
    it with a frame aiokafka cannot parse, the consumer's works on both)."""

    def __init__(self, bootstrap: str, group: str, topic: str = CDRS) -> None:
        self.consumer = _consumer(bootstrap, group_id=group)
        self.topic = topic
        self.parts: list[TopicPartition] = []

    async def start(self) -> None:
        await self.consumer.start()
        self.parts = await _partitions(self.consumer, self.topic)

    async def committed(self) -> dict[int, int]:
        return {tp.partition: await self.consumer.committed(tp) or 0 for tp in self.parts}

    async def behind(self) -> int:
        """Messages between the committed offsets and the end of each partition."""
        ends = await self.consumer.end_offsets(self.parts)
        done = await self.committed()
        return sum(max(ends[tp] - done[tp.partition], 0) for tp in self.parts)

    async def stop(self) -> None:
        await self.consumer.stop()


async def provision(
    bootstrap: str,
    scenario: Scenario,
    *,
    partitions: int,
    group: str = GROUP,
    timeout: float = 120.0,
    live: Live | None = None,
) -> int:
    """Create the scenario's accounts; return once the worker group has taken them in."""
    from loadtest.accounts import scenario_accounts

    accounts, balances = scenario_accounts(scenario)
    sent = await kafka.provision(bootstrap, accounts, balances, partitions)
    if live is not None:
        live.say(f"provisioning {len(accounts):,} accounts ({sent:,} commands) …")
    lag = GroupLag(bootstrap, group, ACCOUNTS)
    await lag.start()
    try:
        deadline = time.monotonic() + timeout
        while (behind := await lag.behind()) > 0:
            if time.monotonic() > deadline:
                msg = (
                    f"the worker group {group!r} still has {behind:,} account commands to"
                    f" take after {timeout:g} s: is a worker running against {bootstrap}?"
                )
                raise LoadTestError(msg)
            await asyncio.sleep(0.25)
    finally:
        await lag.stop()
    return len(accounts)


# -- the run -----------------------------------------------------------------------------------
@dataclass
class _Run:
    load: KafkaLoad
    planned: Planned
    tally: Tally
    sender: OpenLoop
    live: Live
    lag: GroupLag
    lag_max: float = 0.0
    draining: bool = False


async def run(
    bootstrap: str,
    scenario: Scenario,
    load: KafkaLoad,
    *,
    live: Live | None = None,
    cluster: Cluster | None = None,
    config: dict[str, Any] | None = None,
) -> Report:
    """One load test against the workers consuming ``cdrs`` on ``bootstrap``."""
    live = live or Live(quiet=True)
    run_id = load.run_id or secrets.token_hex(3)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    live.say(f"generating {load.records:,} records ({load.shape}, {load.fmt}) …")
    traffic = generate_traffic(scenario, load.records, first=load.first)
    planned = plan_traffic(
        traffic,
        rate=load.rate,
        shape=load.shape,
        fmt=load.fmt,
        partitions=load.partitions,
        size=load.size,
        run_id=run_id,
    )
    prepare_s = time.perf_counter() - clock
    if load.provision:
        await provision(
            bootstrap,
            scenario,
            partitions=load.partitions,
            group=load.group,
            timeout=load.provision_timeout,
            live=live,
        )
    reader, lag, out = _consumer(bootstrap, group_id=None), GroupLag(bootstrap, load.group), None
    try:
        await reader.start()
        parts = await _partitions(reader, RATED) + await _partitions(reader, REJECTED)
        reader.assign(parts)
        for tp, end in (await reader.end_offsets(parts)).items():
            reader.seek(tp, end)  # this run's outputs only
        await lag.start()
        out = producer(bootstrap)
        await out.start()
        start = time.perf_counter() + 0.5
        tally = Tally(planned, start)
        r = _Run(
            load, planned, tally, OpenLoop(planned.offsets, _sender(out, planned, tally)), live, lag
        )
        cpu_before = cluster.cpu() if cluster else {}
        live.say(f"sending {planned.planned:,} records at {_rate(load)} (run {run_id}) …")
        log = await _drive(r, reader, out)
        cpu = {k: round(v - cpu_before[k], 2) for k, v in cluster.cpu().items()} if cluster else {}
    finally:
        live.close()
        if out is not None:
            await out.stop()
        await reader.stop()
        await lag.stop()
    extra = {"run_id": run_id, **(config or {})}
    return _report(r, log, started, prepare_s, cpu, scenario, extra)


def _rate(load: KafkaLoad) -> str:
    return f"{load.rate:,.0f} records/s" if load.rate else "full speed"


def _sender(out: AIOKafkaProducer, planned: Planned, tally: Tally) -> Any:
    """``send(i)``: hand message ``i`` to the producer; its acknowledgement is noted later."""
    messages = planned.messages

    def delivered(i: int, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            tally.on_failed(asyncio.CancelledError())
        elif (exc := fut.exception()) is not None:
            tally.on_failed(exc)
        else:
            tally.on_delivered(i, fut.result().offset)

    async def send(i: int) -> None:
        part, key, value, headers = messages[i]
        tally.sent += 1
        try:
            fut = await out.send(
                CDRS, value, key=key or None, partition=part, headers=headers or None
            )
        except KafkaError as exc:
            tally.on_failed(exc)
            return
        fut.add_done_callback(partial(delivered, i))

    return send


async def _drive(r: _Run, reader: AIOKafkaConsumer, out: AIOKafkaProducer) -> SendLog:
    """Send on plan while reading and ticking; then drain until all is accounted for."""
    start = r.tally.start
    reading = asyncio.create_task(_read(r.tally, reader))
    ticking = asyncio.create_task(_tick(r))
    try:
        with interruptible(r.sender, r.live.say):
            log = await r.sender.run(start)
        r.tally.sending_ended(~np.isnan(log.sent))
        await out.flush()
        r.draining = True
        deadline = max(time.perf_counter(), start + r.load.duration) + r.load.drain
        while not r.tally.complete and not reading.done() and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
            r.tally.resolve()
    finally:
        reading.cancel()
        ticking.cancel()
        ended = await asyncio.gather(reading, ticking, return_exceptions=True)
    for outcome in ended:  # a reader or ticker that failed fails the run, loudly
        if isinstance(outcome, Exception):
            raise outcome
    r.tally.resolve()
    await _settle_lag(r)
    return log


async def _read(tally: Tally, reader: AIOKafkaConsumer) -> None:
    """Outputs as they arrive; each counts as read when its fetch returned (``now``)."""
    while True:
        batches = await reader.getmany(timeout_ms=100)
        now = time.perf_counter()
        for tp, messages in batches.items():
            for m in messages:
                if tp.topic == RATED:
                    tally.on_rated(m.value, now)
                    await asyncio.sleep(0)  # a message is ~1,000 records: let the sender run
                else:
                    headers = dict(m.headers)
                    tally.on_rejected(
                        headers.get("ratewire-reason", b"?").decode(),
                        headers.get("ratewire-source", b"").decode(),
                        now,
                    )


async def _sample_lag(r: _Run, second: int) -> float | None:
    try:
        committed = await asyncio.wait_for(r.lag.committed(), timeout=2.0)
    except (KafkaError, TimeoutError):
        return None
    value = r.tally.lag_records(committed)
    r.tally.timeline.set("lag", second, value)
    if second >= r.load.warmup:
        r.lag_max = max(r.lag_max, value)
    return value


async def _settle_lag(r: _Run, wait: float = 3.0) -> None:
    """The last lag sample, once the workers committed what they did (about once a second)."""
    deadline = time.perf_counter() + (wait if r.tally.complete else 0)
    while True:
        lag = await _sample_lag(r, int(time.perf_counter() - r.tally.start))
        if not lag or time.perf_counter() >= deadline:
            return
        await asyncio.sleep(0.25)


async def _tick(r: _Run) -> None:
    """Once a second: lag, matching the rejects read, the live line."""
    tally, load, start = r.tally, r.load, r.tally.start
    second = 0
    while True:
        second += 1
        await asyncio.sleep(max(start + second - time.perf_counter(), 0))
        tally.resolve()
        lag = await _sample_lag(r, second - 1)
        recent, tally.recent = tally.recent, type(tally.recent)()
        log = r.sender.log
        sent = 0.0
        if log is not None:
            window = (log.sent >= start + second - 1) & (log.sent < start + second)
            sent = float(r.planned.sizes[window].sum())
        r.live.update(
            Snapshot(
                elapsed=second,
                duration=load.duration,
                target=load.rate,
                sent=sent,
                done=tally.timeline.get("done", second - 1),
                p50_ms=recent.value_at(50) / 1000 if recent.count else None,
                p99_ms=recent.value_at(99) / 1000 if recent.count else None,
                done_total=tally.rated,
                rejected_total=tally.rejected,
                lag=lag,
                progress=tally.accounted / max(r.planned.planned, 1),
                phase="draining" if r.draining else "sending",
            )
        )


# -- the report --------------------------------------------------------------------------------
def _report(
    r: _Run,
    log: SendLog,
    started: datetime,
    prepare_s: float,
    cpu: dict[str, float],
    scenario: Scenario,
    extra: dict[str, Any],
) -> Report:
    tally, planned, load = r.tally, r.planned, r.load
    warm = warm_seconds(load.warmup, load.duration)
    series = series_of(log, tally.latency, tally.timeline, load.duration, weights=planned.sizes)
    sent = ~np.isnan(log.sent)
    last_sent = log.last_sent()
    # an interrupted run is measured over what it sent
    end = min(load.duration, math.ceil(last_sent)) if r.sender.stopped else load.duration
    window = end - warm
    measured = [s for s in series.second if warm <= s < math.ceil(end)]
    rated = tally.latency.total(start=warm)
    rejected = tally.reject_latency.total(start=warm)
    end_to_end = tally.last_output - log.start if tally.last_output else 0.0
    counts = {
        "planned": planned.planned,
        "sent": int(planned.sizes[sent].sum()),
        "messages": int(sent.sum()),
        "rated": tally.rated,
        "rejected": tally.rejected,
        "accounted": tally.accounted,
        "missing": tally.owed - tally.accounted,
        "malformed_sent": planned.malformed,
        "duplicates_sent": planned.resent_in(sent),
        "duplicates_caught": tally.rejects.get("DUPLICATE", 0),
        "rated_again": tally.rated_again,
        "foreign": tally.foreign,
        "send_errors": tally.send_errors,
    }
    throughput = {
        "target": load.rate,
        "sent": log.achieved(warm, end, planned.sizes) if window > 0 else 0.0,
        "done": sum(series.done[s] for s in measured) / window if window > 0 else 0.0,
        "outputs": (
            sum(series.done[s] + series.rejected[s] for s in measured) / window if window > 0 else 0
        ),
        "end_to_end": tally.accounted / end_to_end if end_to_end > 0 else 0.0,
    }
    report = Report(
        kind="kafka",
        started=started.isoformat(timespec="seconds"),
        config={
            "target": "kafka",
            "rate": load.rate,
            "records": load.records,
            "duration": load.duration,
            "warmup": load.warmup,
            "shape": load.shape,
            "format": load.fmt,
            "size": load.size,
            "partitions": load.partitions,
            "drain": load.drain,
            "group": load.group,
            "first": load.first,
            "p99_ms": load.p99_ms,
            "max_lag": load.max_lag,
            **extra,
        },
        scenario=scenario_summary(scenario),
        environment=environment(),
        seconds={
            "planned": load.duration,
            "prepare": round(prepare_s, 3),
            "sending": round(last_sent, 3),
            "end_to_end": round(end_to_end, 3),
        },
        warmup=float(warm),
        counts=counts,
        rejects=dict(tally.rejects.most_common()),
        expected_rejects={} if r.sender.stopped else planned.expected,
        throughput={k: round(v, 1) for k, v in throughput.items()},
        latency_ms={"rated": rated.summary(), "rejected": rejected.summary()},
        histograms={"rated": rated.encode(), "rejected": rejected.encode()},
        intervals=tally.latency.encoded(len(series.second)),
        behind_ms=log.behind_summary(),
        lag={"max": r.lag_max, "final": series.lag[-1]},
        cpu_seconds=cpu,
        series=series,
    )
    report.checks = _checks(report, load)
    report.notes = _notes(report, tally, r.sender.stopped)
    return report


def _checks(report: Report, load: KafkaLoad) -> list[Check]:
    c = report.counts
    checks = [Check("records missing", c["missing"], 0)]
    if load.rate:
        share = 100 * report.throughput["sent"] / load.rate
        checks.append(Check("sent, % of target rate", round(share, 1), 95.0, ">="))
    if load.p99_ms is not None:
        checks.append(Check("p99 latency, ms", report.latency_ms["rated"]["p99"], load.p99_ms))
    if load.max_lag is not None:
        checks.append(Check("consumer lag max, records", report.lag["max"], load.max_lag))
    return checks


def _notes(report: Report, tally: Tally, stopped: bool) -> list[str]:
    c, notes = report.counts, []
    if stopped:
        notes.append(
            f"interrupted: {c['sent']:,} of the {c['planned']:,} planned records were sent;"
            " the figures are of those."
        )
    if c["missing"]:
        notes.append(
            f"{c['missing']:,} records were neither rated nor rejected within the"
            " drain time: they are counted as missing, not as slow."
        )
    if c["send_errors"]:
        notes.append(f"{c['send_errors']:,} messages could not be sent: {tally.first_error}")
    if c["rated_again"]:
        notes.append(
            f"{c['rated_again']:,} rated records arrived twice (same cdr_id): a"
            " worker replayed a batch; each was counted once."
        )
    if c["foreign"]:
        notes.append(
            f"{c['foreign']:,} outputs matched nothing this run sent (another"
            " producer on the same topics?)."
        )
    if report.behind_ms.get("p99", 0) > 50:
        notes.append(
            f"the sender fell behind its plan (p99 {report.behind_ms['p99']:,.0f} ms):"
            " the load process was short of CPU or the producer's buffer was full;"
            " latency still counts from the plan."
        )
    return notes


def scenario_summary(scenario: Scenario) -> dict[str, Any]:
    """The scenario's settings for a report (JSON-ready: dates as text, tuples as lists)."""
    data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(scenario))
    return data
