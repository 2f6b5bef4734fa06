"""Faust's Kafka transport with a short fetch wait.

Faust 0.15 creates its consumer with ``fetch_max_wait_ms=1500``. On a Kafka
broker that only bounds how long an *idle* fetch waits, since new data ends
the wait. The Tansu broker (tests, demo) does not end it early when a fetch
names several partitions, so every record waited up to 1.5 s before the
worker saw it (measured: 1,465 ms per fetch over 4+ partitions, 2 ms over
one). A wait of ``FETCH_WAIT_MS`` costs an idle worker a few small fetches a
second on any broker and keeps latency in milliseconds on both.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_WAIT_MS = 20


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS  # read when the consumer starts
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """``kafka://`` with the short fetch wait (pass to the app's ``_new_transport``)."""

    Consumer = _Consumer
