"""Traffic onto the wire: every file format through ``ratewire rate``, every message shape
and format as the worker would read it, and rating in process, each with exact counts.

What the scenario intends to fail is all that fails: calls to numbers no plan
prices (``UNAUTHORIZED_DESTINATION``), malformed messages (each with its
reason), and, when a ledger remembers what it charged, the resends
(``DUPLICATE``).
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from engine.cli import EXIT_OK, main
from engine.columns import I64, StrColumn
from engine.partitioning import partitions_of
from engine.records import Record
from engine.wire import Format, decode_columnar, decode_message_with_rejects
from loadtest.accounts import scenario_accounts
from loadtest.generator import Traffic, generate_traffic
from loadtest.scenario import MALFORMED_KINDS, Scenario, load_scenario
from loadtest.sinks import FileFormat, encode_traffic, file_reasons, rate_in_process, write_file
from tariffs.rated import UNAUTHORIZED_DESTINATION

ROOT = Path(__file__).parents[2]
PLAN = ROOT / "tariffs" / "samples" / "mobile.toml"
SAMPLES = ROOT / "loadtest" / "samples"


@pytest.fixture(scope="module")
def smoke() -> Scenario:
    return load_scenario(SAMPLES / "smoke.toml")


@pytest.fixture(scope="module")
def traffic(smoke: Scenario) -> Traffic:
    t = generate_traffic(smoke)
    assert t.duplicates > 300
    assert len(t.malformed) > 150
    assert t.unpriced > 100
    return t


def rate_cli(path: Path, fmt: str, workdir: Path) -> dict[str, Any]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["rate", "--tariffs", str(PLAN), "--in", str(path), "--format", fmt,
                     "--out", str(workdir / "rated.jsonl"), "--rejects",
                     str(workdir / "rejects.jsonl"), "--json"])  # fmt: skip
    assert code == EXIT_OK
    summary: dict[str, Any] = msgspec.json.decode(stdout.getvalue())
    return summary


@pytest.mark.parametrize("fmt", ["jsonl", "json", "msgpack", "columnar"])
def test_every_file_format_rates_with_exact_counts(
    traffic: Traffic, tmp_path: Path, fmt: FileFormat
) -> None:
    path = tmp_path / f"traffic.{fmt}"
    written = write_file(traffic, path, fmt=fmt, size=700)
    assert written == traffic.messages == traffic.size
    s = rate_cli(path, fmt, tmp_path)
    assert s["read"] == written
    assert s["rated"] + s["rejected"] == s["read"]
    expected = file_reasons(traffic, fmt) + Counter({UNAUTHORIZED_DESTINATION: traffic.unpriced})
    assert s["rejected_by_reason"] == dict(expected)
    assert s["rated"] == len(traffic.columns) - traffic.unpriced  # resends rate again: no state
    assert sum(file_reasons(traffic, fmt).values()) == len(traffic.malformed)


def test_files_are_the_same_bytes_for_the_same_seed(smoke: Scenario, tmp_path: Path) -> None:
    for fmt in ("jsonl", "msgpack", "columnar"):
        a, b, c = (tmp_path / f"{name}.{fmt}" for name in "abc")
        write_file(generate_traffic(smoke, 3_000), a, fmt=fmt)
        write_file(generate_traffic(smoke, 3_000), b, fmt=fmt)
        other = replace(smoke, seed=smoke.seed + 1)
        write_file(generate_traffic(other, 3_000), c, fmt=fmt)
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()


# --- Kafka messages -------------------------------------------------------------------


def read_message(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[list[str], list[str]]:
    """(cdr_ids, reject reasons) of one message, decoded as the worker decodes it."""
    if dict(headers).get("ratewire-format") == b"columnar":
        return decode_columnar(value).cdr_id.to_list(), []
    fmt: Format = "json" if value[:1] in b"{[ \t\r\n" else "msgpack"
    got = decode_message_with_rejects(value, fmt, source="cdrs")
    records: list[Record] = got.records
    return [r.cdr_id for r in records], [r.reason for r in got.rejects]


@pytest.mark.parametrize("shape", ["single", "batch", "columnar"])
@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_messages_in_every_shape_and_format(smoke: Scenario, shape: Any, fmt: Format) -> None:
    t = generate_traffic(smoke, 6_000, first=9_000)
    partitions = 3
    members: list[I64] = []
    messages = encode_traffic(t, shape=shape, fmt=fmt, partitions=partitions, size=250,
                              members=members)  # fmt: skip
    assert len(members) == len(messages)
    cdr_ids = t.columns.cdr_id.to_list()
    home = partitions_of(t.columns.account, partitions)
    sent: list[str] = []
    reasons: Counter[str] = Counter()
    last_row = [-1] * partitions
    for (part, key, value, headers), rows in zip(messages, members, strict=True):
        assert part == int(partitions_of(StrColumn.from_strings([key.decode()]), partitions)[0])
        ids, rejected = read_message(value, headers)
        if rows[0] < 0:  # a malformed message: t.malformed[-1 - k]
            k = -1 - int(rows[0])
            assert (value, rejected) == (t.malformed[k], [MALFORMED_KINDS[t.malformed_kinds[k]]])
            assert key.decode() == t.malformed_accounts[k]
            reasons.update(rejected)
            continue
        assert not rejected
        assert ids == [cdr_ids[r] for r in rows.tolist()]
        assert (home[rows] == part).all()
        assert rows[0] > last_row[part]  # each partition's records in stream order
        last_row[part] = int(rows[-1])
        sent += ids
    assert Counter(sent) == Counter(cdr_ids)  # every record once, resends included
    assert reasons == t.malformed_reasons()
    if shape == "single":  # one record per message: the stream's order exactly
        stream = [-1 - int(r[0]) if r[0] < 0 else None for r in members]
        assert [k for k in stream if k is not None] == list(range(len(t.malformed)))


# --- in process -------------------------------------------------------------------------


def test_rate_in_process_with_balances_catches_every_resend(
    smoke: Scenario, traffic: Traffic
) -> None:
    got = rate_in_process(traffic, PLAN, accounts=scenario_accounts(smoke), batch=4_000)
    expected = traffic.malformed_reasons() + Counter(
        {UNAUTHORIZED_DESTINATION: traffic.unpriced, "DUPLICATE": traffic.duplicates}
    )
    assert got.rejected == expected
    assert traffic.duplicates == traffic.duplicates_in_slice  # a slice from 0: all caught
    assert got.read == traffic.messages
    assert got.rated == sum(traffic.intended.values()) - traffic.unpriced
    assert got.insufficient_credit == 0  # the opening balances carry the day
    assert got.paid > 0


def test_rate_in_process_without_state_rates_resends_again(traffic: Traffic) -> None:
    got = rate_in_process(traffic, PLAN)
    assert got.rejected == traffic.malformed_reasons() + Counter(
        {UNAUTHORIZED_DESTINATION: traffic.unpriced}
    )
    assert got.rated == len(traffic.columns) - traffic.unpriced
    assert got.charged["EUR"] > 0


def test_the_network_sample_rates_cleanly() -> None:
    network = load_scenario(SAMPLES / "network.toml")
    t = generate_traffic(network, 20_000, first=700_000)  # a slice of the morning
    accounts, balances = scenario_accounts(network)
    used = set(t.columns.account.to_list())
    keep = [i for i, a in enumerate(accounts) if a.id in used]
    book = ([accounts[i] for i in keep], [balances[i] for i in keep])
    got = rate_in_process(t, PLAN, accounts=book)
    # a resend of a record from before the slice is news to a ledger that starts here
    assert 0 < t.duplicates_in_slice < t.duplicates
    expected = t.malformed_reasons() + Counter(
        {UNAUTHORIZED_DESTINATION: t.unpriced, "DUPLICATE": t.duplicates_in_slice}
    )
    assert got.rejected == expected
    assert t.unpriced > 0
    assert got.insufficient_credit == 0
    assert got.rated + sum(got.rejected.values()) == got.read == 20_000
    assert np.isin(t.columns.category.to_list(), ["call", "sms", "data", "video"]).all()
