"""Faust's Kafka transport with a short fetch wait and a lean delivery loop.

Faust 0.15 creates its consumer with ``fetch_max_wait_ms=1500``. On a Kafka
broker that only bounds how long an *idle* fetch waits, since new data ends
the wait. The Tansu broker (tests, demo) does not end it early when a fetch
names several partitions, so every record waited up to 1.5 s before the
worker saw it (measured: 1,465 ms per fetch over 4+ partitions, 2 ms over
one). A wait of ``FETCH_WAIT_MS`` costs an idle worker a few small fetches a
second on any broker and keeps latency in milliseconds on both.

Faust hands each fetched message to the streams through
``Service.wait_first(callback(message), suspend_flow.wait())``: four tasks
and an ``asyncio.wait`` per message, so that a rebalance (``suspend_flow``)
can cancel a delivery blocked on a full stream buffer. With one record per
message that was the largest part of a worker's CPU. :class:`_Consumer`
delivers everything one fetch returned inside *one* ``wait_first``: a
rebalance still cancels the deliveries not yet made, and between messages
the loop stops as Faust's own ``getmany`` does when the flow stops or the
group generation changes.

aiokafka compresses zstd batches at level 3 and has no setting for it;
:func:`zstd_level` sets the level its batch builders use in this process.
On rated-record lines level 1 compresses as well (14.7× against 14.4×) in
0.69 instead of 0.94 µs per record, and decompresses in 0.39 instead of
0.60 µs for whoever reads ``rated-cdrs``. It also keeps one compression
context per thread: aiokafka's ``cramjam`` call sets up a new one for each
batch, ~11-15 µs, which was most of the cost of a changelog batch of a few
hundred bytes (~3 µs with the context kept); an API cycle sends one or two.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiokafka.record.default_records as py_records
import zstandard
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

FETCH_WAIT_MS = 20
BUFFER_POLL = 0.002  # s between looks at full stream buffers
ZSTD_LEVEL = 1


def zstd_level(level: int) -> None:
    """Compress zstd batches at ``level`` in this process (aiokafka's builders read the
    module global ``zstd_encode`` at each batch, in both its Cython and Python form)."""
    from aiokafka.record._crecords import default_records as c_records

    kept = threading.local()  # a context is not for two threads at once

    def encode(payload: Any) -> bytes:
        compressor = getattr(kept, "compressor", None)
        if compressor is None:
            compressor = kept.compressor = zstandard.ZstdCompressor(level=level)
        data: bytes = compressor.compress(payload)
        return data

    for module in (c_records, py_records):
        module.zstd_encode = encode


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS  # read when the consumer starts
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's loop, delivering each fetch's messages under one ``wait_first``."""
        should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (should_stop() or fetcher_should_stop()):
                while not self._room() and not (should_stop() or fetcher_should_stop()):
                    await asyncio.sleep(BUFFER_POLL)
                generation = self.app.consumer_generation_id
                fetched = [item async for item in self.getmany(timeout=1.0)]
                await self.sleep(0)
                if fetched and not self.should_stop:
                    await self.wait_first(self._deliver(fetched, generation),
                                          self.suspend_flow.wait())  # fmt: skip
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    def _room(self) -> bool:
        """Whether every stream buffer can take one more fetch below its high-pressure mark.

        Faust pauses a partition whose buffer passes the mark, and a fetch over
        paused partitions then waits its whole timeout (1 s) for data: delivering
        fetches whole must not get there, so it waits here for room instead.
        """
        fetch = self.app.conf.broker_max_poll_records or 0
        conductor: Any = self.app.topics
        for channel in conductor._topics:
            queue = channel._queue  # None until a stream iterates the channel
            if queue is not None and queue.qsize() + fetch > queue.pressure_high_size:
                return False
        return True

    async def _deliver(self, fetched: list[tuple[TP, Message]], generation: int) -> None:
        callback, read_offset = self.callback, self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        for n, (tp, message) in enumerate(fetched):
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return  # a rebalance began: the rest is fetched again from the commits
            if n and n % 100 == 0:
                await asyncio.sleep(0)  # a big fetch does not hold the loop
            offset, last = message.offset, read_offset[tp]
            if last is not None and offset < last:
                continue  # read before (Faust drops these too)
            if last and offset - last > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(message)
            read_offset[tp] = offset


class Transport(faust_aiokafka.Transport):
    """``kafka://`` with the short fetch wait (pass to the app's ``_new_transport``)."""

    Consumer = _Consumer
