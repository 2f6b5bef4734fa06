"""The streaming worker on a real broker: nothing lost, nothing charged twice, exact balances.

Every test starts its own Tansu broker and real ``ratewire worker``
processes, feeds generated traffic, and checks what the worker wrote
(``rated-cdrs``, ``cdrs-rejected``) and the balances its API shows against
:func:`tests.stream_reference.expected_outcome`, which rates and debits the
same records with the slow reference implementations.
"""

from __future__ import annotations

import urllib.request
from collections import Counter

import msgspec
import pytest

from engine.changelog import PIECE, ChangeSet
from engine.partitioning import partition_of
from engine.topics import ALERTS, CHANGELOG
from engine.wire import encode_record, encode_records
from engine.worker_process import WorkerProcess, wait_accounts
from loadtest.accounts import account_id, scenario_accounts
from loadtest.generator import Scenario
from loadtest.kafka import messages_of
from tariffs.loader import load_tariff
from tests.integration.streaming import (
    PARTITIONS,
    PLAN,
    UNITS,
    Stream,
    all_amounts,
    http,
    read_topic,
    traffic,
)  # fmt: skip
from tests.stream_reference import Expected, expected_outcome

pytestmark = pytest.mark.integration
TARIFF = load_tariff(PLAN)


def expect(scenario: Scenario, records: list) -> Expected:  # type: ignore[type-arg]
    accounts, balances = scenario_accounts(scenario)
    return expected_outcome(TARIFF, UNITS, accounts, balances, records)


def ids(scenario: Scenario) -> list[str]:
    return [account_id(i) for i in range(scenario.accounts)]


def started(stream: Stream, scenario: Scenario, *names: str) -> list[WorkerProcess]:
    workers = [stream.worker(name) for name in names or ("a",)]
    for w in workers:
        w.wait_assigned()
    stream.provision(scenario)
    wait_accounts(workers, scenario.accounts)
    return workers


def assert_outcome(got_rated: int, got_rejected: dict[str, int], want: Expected) -> None:
    assert got_rated == want.rated
    assert dict(got_rejected) == dict(want.rejected)


def test_end_to_end_counts_and_balances_equal_the_reference(stream: Stream) -> None:
    scenario, records = traffic(20_000, 300)
    [worker] = started(stream, scenario)
    stream.produce(records, shape="batch", size=1000)
    got = stream.collect(len(records))
    want = expect(scenario, records)
    assert want.rated > 18_000  # the traffic has both kinds
    assert want.rejected
    assert got.total == len(records)  # nothing lost
    assert got.rated_lines == want.rated  # nothing written twice
    assert_outcome(len(got.rated), got.rejected, want)
    assert all_amounts(worker, ids(scenario)) == want.balances


def test_single_record_messages_and_columnar_batches_rate_alike(stream: Stream) -> None:
    scenario, records = traffic(3_000, 50, seed=7)
    [worker] = started(stream, scenario)
    stream.produce(records[:1_000], shape="single", fmt="json")
    stream.produce(records[1_000:2_000], shape="columnar", size=250)
    stream.produce(records[2_000:], shape="batch", size=100, fmt="json")
    got = stream.collect(len(records))
    want = expect(scenario, records)
    assert_outcome(len(got.rated), got.rejected, want)
    assert all_amounts(worker, ids(scenario)) == want.balances


def test_a_flood_of_one_record_messages_is_rated_without_pausing_fetches(
    stream: Stream,
) -> None:
    """30,000 messages at once: more than the stream buffer holds (8,000).

    The consumer delivers whole fetches; it must wait for room in the buffer
    instead of letting Faust pause the partitions (a paused fetch stalls for a
    second, which once halved the one-record-per-message throughput).
    """
    scenario, records = traffic(30_000, 500, seed=13)
    [worker] = started(stream, scenario)
    stream.produce(records, shape="single")
    got = stream.collect(len(records))
    want = expect(scenario, records)
    assert got.total == len(records)
    assert_outcome(len(got.rated), got.rejected, want)
    assert all_amounts(worker, ids(scenario)) == want.balances
    with urllib.request.urlopen(f"{worker.url}/metrics") as answer:
        text = answer.read().decode()
    assert "ratewire_stream_buffer_full_total 0.0" in text.splitlines()
    assert f"ratewire_records_in_total {len(records)}.0" in text.splitlines()


def test_replayed_input_changes_nothing_and_counts_duplicates(stream: Stream) -> None:
    scenario, records = traffic(6_000, 100, seed=11)
    [worker] = started(stream, scenario)
    stream.produce(records, shape="batch", size=500)
    first = stream.collect(len(records))
    want = expect(scenario, records)
    assert_outcome(len(first.rated), first.rejected, want)
    before = all_amounts(worker, ids(scenario))
    assert before == want.balances

    stream.produce(records, shape="batch", size=500)  # the same file, sent again
    again = stream.collect(2 * len(records))
    assert again.total == 2 * len(records)
    assert len(again.rated) == want.rated  # no record rated twice
    duplicates = again.rejected.pop("DUPLICATE")
    assert duplicates == want.rated  # every record applied the first time is caught
    assert again.rejected == {k: 2 * v for k, v in want.rejected.items()}
    assert all_amounts(worker, ids(scenario)) == before


def test_sigkill_mid_stream_loses_nothing_and_charges_nothing_twice(stream: Stream) -> None:
    scenario, records = traffic(60_000, 400, seed=5)
    [worker] = started(stream, scenario)
    stream.produce(records, shape="batch", size=200)
    partial = stream.collect(len(records) // 4, timeout=60)
    assert len(partial.rated) < len(records)  # killed mid-stream, not after
    worker.kill()
    restarted = stream.worker("a")  # the same state folder
    got = stream.collect(len(records))
    want = expect(scenario, records)
    assert got.total == len(records)
    assert_outcome(len(got.rated), got.rejected, want)
    assert all_amounts(restarted, ids(scenario)) == want.balances


def test_a_second_worker_takes_over_partitions_with_their_state(stream: Stream) -> None:
    scenario, records = traffic(40_000, 400, seed=3)
    a, b = started(stream, scenario, "a", "b")
    assert sorted(a.wait_assigned() + b.wait_assigned()) == list(range(PARTITIONS))
    half = len(records) // 2
    stream.produce(records[:half], shape="batch", size=200)
    stream.collect(half // 2, timeout=60)
    b.kill()  # b's partitions, and their state, move to a
    stream.produce(records[half:], shape="batch", size=200)
    got = stream.collect(len(records))
    want = expect(scenario, records)
    assert got.total == len(records)
    assert_outcome(len(got.rated), got.rejected, want)
    assert all_amounts(a, ids(scenario)) == want.balances
    assert sorted(a.wait_assigned()) == list(range(PARTITIONS))


def test_a_backlog_is_taken_in_slices_and_its_changelog_rebuilds_the_state(
    stream: Stream,
) -> None:
    """100,000 records waiting before the worker starts: one batch takes them all.

    It is worked in slices; with changelog messages of at most 64 KB, a
    slice's journal and applied ids travel in pieces. A second worker on an
    empty folder rebuilds every partition from the changelog alone: the same
    balances, and a resend of the whole input is caught as duplicates.
    """
    scenario, records = traffic(100_000, 400, seed=17)
    [a] = started(stream, scenario)
    a.stop()
    stream.produce(records, shape="batch", size=1000)
    small = ("--changelog-message-bytes", "65536")
    a = stream.worker("a", *small)  # the same state folder: the backlog is its first batch
    got = stream.collect(len(records), timeout=180)
    assert got.total == len(records)
    assert got.rated_lines == len(got.rated)  # nothing written twice
    balances = all_amounts(a, ids(scenario))
    a.stop()

    changes = [msgspec.msgpack.decode(v, type=ChangeSet) for v in
               read_topic(stream.broker.bootstrap, CHANGELOG, 1_000_000, timeout=5)]  # fmt: skip
    assert any(k.startswith(PIECE) for c in changes for k, _ in c.ops)  # pieces were sent

    b = stream.worker("b")  # an empty folder: every partition replayed from the changelog
    b.wait_assigned()
    assert all_amounts(b, ids(scenario)) == balances
    stream.produce(records, shape="batch", size=1000)
    again = stream.collect(2 * len(records), timeout=180)
    assert len(again.rated) == len(got.rated)  # no record rated twice
    assert again.rejected.pop("DUPLICATE") == len(got.rated)
    assert again.rejected == {k: 2 * v for k, v in got.rejected.items()}
    assert all_amounts(b, ids(scenario)) == balances


def test_malformed_messages_are_rejected_with_their_reason_and_the_worker_goes_on(
    stream: Stream,
) -> None:
    scenario, records = traffic(400, 20, seed=9)
    worker = stream.worker("a", "--alert", "DECODE_ERROR:1/60", "--alert", "*:1000/60")
    worker.wait_assigned()
    stream.provision(scenario)
    wait_accounts([worker], scenario.accounts)
    good = records[:200]
    sample = msgspec.json.decode(encode_record(good[0], "json"))
    key, part = good[0].account.encode(), _partition_of(good[0].account)
    wrong_type = msgspec.json.encode({**sample, "cdr_id": "wrong-type", "usage": "ten"})
    negative = msgspec.json.encode({**sample, "cdr_id": "negative", "usage": -5})
    unknown = msgspec.json.encode({**sample, "cdr_id": "unknown", "account": "nobody"})
    bad = [
        (part, key, encode_records(good[:3], "msgpack")[:-9], []),  # truncated MessagePack
        (part, key, wrong_type, []),
        (part, key, negative, []),
        (_partition_of("nobody"), b"nobody", unknown, []),
        (part, key, b"\x92" + b"\xc4" * (10 << 20), []),  # a 10 MB message
    ]
    stream.produce_raw(bad)
    stream.produce(good, shape="batch", size=50)
    got = stream.collect(len(good) + 5)
    want = expect(scenario, good)
    assert len(got.rated) == want.rated
    assert got.rejected == want.rejected + Counter(
        DECODE_ERROR=1, VALIDATION_ERROR=2, UNKNOWN_ACCOUNT=1, MESSAGE_TOO_LARGE=1
    )
    health = worker.health()
    assert health is not None
    assert health["counts"]["read"] == len(good) + 5
    assert all_amounts(worker, ids(scenario)) == want.balances
    # the decode error raised an alert naming the reason, the count and an example
    [raw] = read_topic(stream.broker.bootstrap, ALERTS, 1)
    alert = msgspec.json.decode(raw)
    assert (alert["kind"], alert["reason"], alert["count"]) == ("REJECTS", "DECODE_ERROR", 1)
    assert alert["examples"][0]["source"] == f"cdrs[{part}]@0"
    assert read_topic(stream.broker.bootstrap, ALERTS, 2, timeout=2) == [raw]  # just the one


def test_records_on_the_wrong_partition_are_forwarded_to_their_accounts(stream: Stream) -> None:
    scenario, records = traffic(4_000, 60, seed=13)
    [worker] = started(stream, scenario)
    # a producer that does not key by account: every message to the next partition
    misrouted = [
        ((part + 1) % PARTITIONS, b"", value, headers)
        for part, _, value, headers in messages_of(records, PARTITIONS, size=100)
    ]
    stream.produce_raw(misrouted)
    got = stream.collect(len(records))
    want = expect(scenario, records)
    assert_outcome(len(got.rated), got.rejected, want)
    assert all_amounts(worker, ids(scenario)) == want.balances
    health = worker.health()
    assert health is not None
    assert health["counts"]["forwarded"] == len(records)  # each once, none twice


def _partition_of(account: str) -> int:
    return partition_of(account.encode(), PARTITIONS)


def test_balance_api_answers_like_the_cli_and_refuses_bad_requests(stream: Stream) -> None:
    scenario, _ = traffic(10, 8)
    a, b = started(stream, scenario, "a", "b")
    acc = account_id(1)
    status, body = http("GET", f"{a.url}/accounts/{acc}/balances")
    assert status == 200
    assert (body["account"], body["mode"]) == (acc, "prepaid")
    assert {x["id"]: x["amount"] for x in body["balances"]} == {
        "main": "0", "free-minutes": "1800", "data": "1000000000", "credit": "5",
    }  # fmt: skip
    # any worker answers for any account (the request is forwarded to the owner)
    assert http("GET", f"{b.url}/accounts/{acc}/balances") == (status, body)
    assert http("GET", f"{a.url}/accounts/nobody/balances")[0] == 404
    # authorize 10 minutes of a national call, commit 3m20s: the free minutes pay
    ask = {"category": "call", "destination": "4930123456", "usage": "10m",
           "start": "2026-11-02T10:00:00Z"}  # fmt: skip
    status, grant = http("POST", f"{b.url}/accounts/{acc}/authorize", ask)
    assert (status, grant["granted"]) == (200, 600)
    assert grant["reserved"] == {"free-minutes": 600}
    status, charge = http("POST", f"{a.url}/reservations/{grant['reservation_id']}/commit",
                          {"usage": "3m20s"})  # fmt: skip
    assert status == 200, charge
    status, body = http("GET", f"{a.url}/accounts/{acc}/balances")
    free = next(x for x in body["balances"] if x["id"] == "free-minutes")
    assert (free["amount"], free["reserved"]) == ("1600", "0")
    # bad requests: 4xx naming what was wrong, nothing changed
    status, err = http("POST", f"{a.url}/accounts/{acc}/authorize", {"category": "call"})
    assert (status, err["error"]) == (400, "INVALID_REQUEST")
    assert "usage" in err["message"]
    committed = f"{a.url}/reservations/{grant['reservation_id']}"
    assert http("POST", f"{committed}/commit", {"usage": "1m"}) == (200, charge)  # a retry
    status, err = http("POST", f"{committed}/release")
    assert (status, err["error"]) == (409, "RESERVATION_FINISHED")
    assert http("POST", f"{a.url}/reservations/nonsense/release")[0] == 404
    assert http("GET", f"{a.url}/accounts/{acc}/balances")[1] == body


def test_api_token_guards_every_route_but_metrics(stream: Stream) -> None:
    scenario, _ = traffic(10, 4)
    worker = stream.worker("a", "--api-token", "s3cret")
    worker.wait_assigned()
    stream.provision(scenario)
    wait_accounts([worker], scenario.accounts)
    url = f"{worker.url}/accounts/{account_id(0)}/balances"
    status, err = http("GET", url)
    assert (status, err["error"]) == (401, "UNAUTHORIZED")
    assert http("GET", url, token="wrong")[0] == 401
    assert http("GET", url, token="s3cret")[0] == 200
    # the API's routes are answered by the lane, the rest by Faust's aiohttp server
    asked = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
    with urllib.request.urlopen(asked) as answer:
        assert "Server" not in answer.headers
    with urllib.request.urlopen(f"{worker.url}/metrics") as answer:
        text = answer.read().decode()
        assert "aiohttp" in answer.headers["Server"]
    assert 'ratewire_http_requests_total{route="balances",status="401"} 2.0' in text
