"""``ratewire ingest --broker``: mediation here, rating in a worker, on a real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from balances.model import Account, Balance
from engine.broker import EmbeddedBroker, ensure_topics
from engine.cli import EXIT_OK, main
from engine.rejects import read_rejects
from engine.topics import all_topics
from engine.worker_process import wait_accounts
from tests.integration.streaming import PARTITIONS, Stream, amounts
from tests.unit.test_ingest import ASTERISK, TENANT

pytestmark = pytest.mark.integration
EUR = 1_000_000_000


def test_asterisk_file_sent_to_the_broker_is_rated_by_the_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap, all_topics(PARTITIONS))
        stream = Stream(broker, tmp_path)
        worker = stream.worker("a")
        try:
            worker.wait_assigned()
            acme = Account(id="acme", tenant=TENANT, currency="EUR",
                           created=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
            stream.provision_accounts([acme], [[Balance(id="credit", unit="EUR", amount=EUR)]])
            wait_accounts([worker], 1)
            master = tmp_path / "Master.csv"
            master.write_text(ASTERISK)
            code = main(["ingest", "--format", "asterisk", str(master), "--tenant", TENANT,
                         "--timezone", "Europe/Berlin", "--broker", broker.url,
                         "--rejects", str(tmp_path / "rejects.jsonl"), "--json"])  # fmt: skip
            answer = json.loads(capsys.readouterr().out)
            assert code == EXIT_OK
            file = answer["files"][0]
            # every line accounted for here: 3 parsed and sent, 2 skipped, 1 rejected
            assert (file["lines"], file["parsed"], file["sent"], file["rated"]) == (6, 3, 3, 0)
            assert file["skipped_by_rule"] == {"blank": 1, "no_answer": 1}
            assert file["rejected_by_reason"] == {"VALIDATION_ERROR": 1}
            assert answer["balanced"] is True
            assert [r.reason for r in read_rejects(tmp_path / "rejects.jsonl")] == [
                "VALIDATION_ERROR"
            ]
            # ... and the worker rated the three as `ratewire ingest` would have here
            got = stream.collect(3)
            assert {c: r.cost for c, r in got.rated.items()} == {"u1": "0.12", "u2": "0.315"}
            assert got.rejected == {"UNAUTHORIZED_DESTINATION": 1}
            assert amounts(worker, "acme") == {"main": 0, "credit": EUR - 435_000_000}
        finally:
            worker.stop()


def test_ingest_to_an_unreachable_broker_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    master = tmp_path / "Master.csv"
    master.write_text(ASTERISK)
    code = main(["ingest", "--format", "asterisk", str(master), "--tenant", TENANT,
                 "--broker", "kafka://127.0.0.1:9", "--rejects", str(tmp_path / "r.jsonl"),
                 "--json"])  # fmt: skip
    answer = msgspec.json.decode(capsys.readouterr().out)
    assert code == 2
    assert answer["error"] == "INVALID_ARGUMENT"
    assert "127.0.0.1:9" in answer["message"]
