"""A real Kafka-protocol broker (Tansu, in memory) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.broker import EmbeddedBroker, ensure_topics
from engine.topics import all_topics
from tests.integration.streaming import PARTITIONS, Stream


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One broker for the session, on a free port; its log is under the session's tmp dir.

    Tests share it, so each uses its own topic names. Stopped (SIGTERM to its
    pid, SIGKILL after 5 s) at the end of the session.
    """
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[Stream]:
    """A broker of the test's own with every ratewire topic, and the workers the test
    starts (stopped at teardown): for tests whose topic and group names are fixed."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as own:
        ensure_topics(own.bootstrap, all_topics(PARTITIONS))
        s = Stream(own, tmp_path)
        try:
            yield s
        finally:
            for w in s.workers:
                w.stop()
