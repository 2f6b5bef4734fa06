"""A real Kafka-protocol broker (Tansu, in memory) shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One broker for the session, on a free port; its log is under the session's tmp dir.

    Tests share it, so each uses its own topic names. Stopped (SIGTERM to its
    pid, SIGKILL after 5 s) at the end of the session.
    """
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running
