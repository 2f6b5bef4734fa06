"""The partitions a worker owns: opened from RocksDB plus the changelog, shipped per batch.

:class:`Partitions` opens a partition the first time the worker needs it
(replaying the changelog from where the local store stopped, so a partition
that moved here or a worker restarted on an old folder catches up), and
:meth:`Partitions.checkpoint` makes partitions' changes durable: changelog
first (all of them in one write, :class:`~engine.changelog_writer.ChangelogWriter`),
local store second. A partition whose changes could not be shipped is
dropped from memory and opened again from what is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from balances.ledger import Ledger
from balances.store import RocksStore, StoreOptions
from balances.units import UnitCatalog
from engine.changelog import MAX_BYTES, NEXT_KEY, Replay, encode_changes, next_offset
from engine.changelog_writer import ChangelogWriter
from engine.kafka_transport import FETCH_WAIT_MS
from engine.partition import Partition
from engine.topics import CHANGELOG
from tariffs.rating import Rater

log = logging.getLogger(__name__)
FETCH_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class PartitionsConfig:
    bootstrap: str  # host:port[,host:port]
    state: Path  # one RocksDB folder per partition below it
    partitions: int
    remember: int = 2_000_000  # cdr_ids remembered per partition and generation
    max_message_bytes: int = 4 << 20
    changelog_message_bytes: int = MAX_BYTES  # under the broker's message.max.bytes


class Partitions:
    """Open partitions of one worker, each with a lock that serialises its changes."""

    def __init__(
        self, config: PartitionsConfig, rater: Rater, units: UnitCatalog, writer: ChangelogWriter
    ) -> None:
        self.config, self._rater, self._units, self._writer = config, rater, units, writer
        self._open: dict[int, Partition] = {}
        self._shipped: dict[int, int] = {}  # partition -> ledger seq of its last checkpoint
        self._locks: dict[int, asyncio.Lock] = {}
        self._opening: dict[int, asyncio.Lock] = {}

    def __contains__(self, number: int) -> bool:
        return number in self._open

    def owned(self) -> list[int]:
        return sorted(self._open)

    def lock(self, number: int) -> asyncio.Lock:
        return self._locks.setdefault(number, asyncio.Lock())

    async def get(self, number: int) -> Partition:
        """The partition, opened (and caught up from the changelog) if it is not yet."""
        found = self._open.get(number)
        if found is not None:
            return found
        # the agent and an HTTP request may both open it: one opens, the other waits
        async with self._opening.setdefault(number, asyncio.Lock()):
            found = self._open.get(number)
            return found if found is not None else await self._load(number)

    async def _load(self, number: int) -> Partition:
        folder = self.config.state / f"partition-{number:04d}"
        # no fsync per write: the changelog, acknowledged by the broker first, is what
        # makes a batch durable; a store that lost its last writes replays them from there
        store = RocksStore(folder, StoreOptions(sync=False))
        try:
            replay = Replay(store)
            await _replay_changelog(self.config.bootstrap, number, store, replay.apply)
            ledger = Ledger(store, self._units, remember=self.config.remember)
            part = Partition(number, self.config.partitions, ledger, self._rater,
                             max_message_bytes=self.config.max_message_bytes)  # fmt: skip
        except BaseException:
            store.close()
            raise
        if replay.applied or replay.skipped:
            log.info("partition %d: replayed %d changelog batches (%d stale skipped)",
                     number, replay.applied, replay.skipped)  # fmt: skip
        self._open[number] = part
        self._shipped[number] = ledger.seq
        return part

    def drop(self, number: int) -> None:
        """Forget a partition's memory (revoked, or its changes could not be shipped)."""
        part = self._open.pop(number, None)
        if part is not None:
            part.ledger.store.close()  # no checkpoint: what was not shipped is not durable

    def drop_all(self) -> None:
        for number in list(self._open):
            self.drop(number)

    async def checkpoint(self, parts: Sequence[Partition]) -> list[Exception | None]:
        """Ship each part's changes to the changelog, then write them to its store; each
        part's error, if it failed (then it is dropped, to be reopened from what is durable).

        The caller holds the parts' locks and has sent their batches' outputs.
        All parts' messages go in one changelog write.
        """
        errors: list[Exception | None] = [None] * len(parts)

        def failed(i: int, exc: Exception) -> None:
            self.drop(parts[i].number)
            errors[i] = exc

        staged = {}
        for i, part in enumerate(parts):
            try:
                batch = part.stage()
                messages = encode_changes(batch, self._shipped[part.number], part.ledger.seq,
                                          self.config.changelog_message_bytes)  # fmt: skip
            except Exception as exc:
                failed(i, exc)
                continue
            staged[i] = (batch, messages)
        try:
            written = await self._writer.write({parts[i].number: m for i, (_, m) in staged.items()})
        except Exception as exc:
            written = {parts[i].number: exc for i in staged}
        except BaseException:  # cancelled: whether the messages got in is not known
            for i in staged:
                self.drop(parts[i].number)
            raise
        for i, (batch, _) in staged.items():
            part = parts[i]
            try:
                offset = written[part.number]
                if isinstance(offset, Exception):
                    raise offset
                batch.put(NEXT_KEY, b"%d" % offset)
                part.commit(batch)
            except Exception as exc:
                failed(i, exc)
                continue
            self._shipped[part.number] = part.ledger.seq
        return errors


async def _replay_changelog(
    bootstrap: str, number: int, store: RocksStore, apply: Callable[[int, bytes], None]
) -> None:
    """Feed ``apply`` the changelog partition from where ``store`` stopped to its end."""
    tp = TopicPartition(CHANGELOG, number)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        max_partition_fetch_bytes=FETCH_BYTES, fetch_max_bytes=FETCH_BYTES,
        fetch_max_wait_ms=FETCH_WAIT_MS,
    )  # fmt: skip
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        position = next_offset(store)
        if position >= end:
            return
        consumer.seek(tp, position)
        while position < end:
            fetched = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
            for message in fetched.get(tp, []):
                apply(message.offset, message.value)
                position = message.offset + 1
    finally:
        await consumer.stop()
