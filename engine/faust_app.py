"""What every ratewire Faust app shares: settings for quick joins and big batches, a quiet monitor.

Used by the rating worker (:mod:`engine.worker`) and the billing consumer
(:mod:`billing.consumer`). Groups join within a few seconds (a first join
waits half the session timeout), offsets are committed once a second, and
the consumer fetches large batches with the short fetch wait of
:mod:`engine.kafka_transport`.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from faust.sensors import Monitor


class QuietMonitor(Monitor):
    """Faust's monitor without its per-event statistics.

    They cost about a tenth of a one-record-per-message stream's CPU here;
    the apps keep their own metrics per batch.
    """

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


def app_settings(
    *, broker: str, datadir: Path, web_host: str, web_port: int, partitions: int,
    session_timeout: float, batch_events: int, max_bytes: int = 16 << 20, buffer: int = 256,
) -> dict[str, Any]:  # fmt: skip
    """Keyword arguments of ``faust.App`` (add the app's own, e.g. compression)."""
    return {
        "broker": broker,
        "store": "memory://",
        "autodiscover": False,
        "datadir": str(datadir),
        "web_enabled": True,
        "web_bind": web_host,
        "web_host": web_host,
        "web_port": web_port,
        "canonical_url": f"http://{web_host}:{web_port}",
        "topic_partitions": partitions,
        "topic_replication_factor": 1,
        "topic_allow_declare": True,
        "broker_session_timeout": session_timeout,
        "broker_heartbeat_interval": 1.0,
        "broker_rebalance_timeout": 2.0,
        "broker_commit_every": 10_000,
        "broker_commit_interval": 1.0,
        "broker_max_poll_records": batch_events,
        "consumer_auto_offset_reset": "earliest",
        "consumer_max_fetch_size": max_bytes,
        "producer_max_request_size": max_bytes,
        "producer_linger": 0.0,
        "stream_buffer_maxsize": max(batch_events * 4, buffer),
        "logging_config": None,
        "Monitor": QuietMonitor,
    }


def serve(app: Any, log_level: str) -> None:
    """Run ``app`` as a worker until it stops (SIGTERM/SIGINT), logging at ``log_level``.

    Imports (Faust, numba, numpy) leave millions of long-lived objects that every
    full collection walks again: tens to hundreds of ms with the event loop
    stopped, which was the whole of the API's latency tail. They are frozen out
    of the collector's sight, and the young generation is collected less often
    (batches and requests allocate a lot, briefly).
    """
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    worker = app.Worker(loglevel=log_level, quiet=True, redirect_stdouts=False)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    worker.execute_from_commandline()
