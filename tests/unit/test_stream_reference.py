"""The stream model (:mod:`tests.stream_reference`) agrees with the compiled path.

Integration tests check the worker against :func:`expected_outcome`; these
tests check that model first, in process: the same records rated and
debited batch by batch as a worker partition does it (``rate_batch`` on a
:class:`~balances.ledger.Ledger` over a memory store, with its own
:class:`~tariffs.rating.PeriodCounters`) must leave every balance at the
model's amount to the unit and reject the same records for the same reasons.

The traffic is a generated day with duplicates, an account that was never
created and a call too long to rate mixed in. The reference walks each 1 KB
of a data session, so the sessions are cut to a tenth of their generated
size to keep the tests quick; the plan is run as it is and with its data
tiers moved from 1 GB / 10 GB down to 5 MB / 50 MB, where the month's usage
before a record changes its price.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import msgspec
import numpy as np
import pytest

import tariffs
from balances.debit import Debitor
from balances.ledger import Ledger
from balances.model import MAIN, Account, Balance, Mode
from balances.store import MemoryStore
from balances.units import load_units
from engine.columns import StrColumn
from engine.partitioning import partitions_of
from engine.rate_file import Batch, StatefulRating, rate_batch
from engine.rated_output import RatedWriter
from engine.records import DataRecord, Record, VoiceRecord
from engine.wire import records_to_columns
from loadtest.accounts import scenario_accounts
from loadtest.generator import Scenario, columns_to_records, generate_columns
from tariffs.loader import load_tariff
from tariffs.model import Tariff
from tariffs.native import loads_native
from tariffs.rated import MAX_CALL_SECONDS
from tariffs.rating import PeriodCounters, Rater
from tests.stream_reference import DUPLICATE, UNKNOWN_ACCOUNT, Expected, expected_outcome

SAMPLE = Path(tariffs.__file__).parent / "samples" / "mobile.toml"
UNITS = load_units()
TRAFFIC = Scenario(records=3_000, accounts=50, seed=2026)
MISSING = "acc0000005"  # in the traffic, never created: its records are UNKNOWN_ACCOUNT
CUTS = (1_000, 2_300)  # three batches; duplicates fall inside one batch and across them
MB = 1_000_000


def plan(tiers: str) -> Tariff:
    if tiers == "sample":
        return load_tariff(SAMPLE)
    text = SAMPLE.read_text()
    assert text.count('from = "1GB"') == text.count('from = "10GB"') == 1
    text = text.replace('from = "1GB"', 'from = "5MB"').replace('from = "10GB"', 'from = "50MB"')
    return loads_native(text, source="mobile-small-tiers.toml")


def book() -> tuple[list[Account], list[list[Balance]]]:
    """The scenario's accounts but one; every second one has a 3 MB data bundle, not 1 GB."""
    accounts, balances = scenario_accounts(TRAFFIC)
    kept = [i for i, a in enumerate(accounts) if a.id != MISSING]
    small = [
        [msgspec.structs.replace(b, amount=3 * MB) if b.id == "data" and i % 2 else b for b in own]
        for i, own in enumerate(balances)
    ]
    return [accounts[i] for i in kept], [small[i] for i in kept]


def traffic() -> list[Record]:
    """The generated day, data cut to a tenth, with repeats and odd records mixed in."""
    records = [
        msgspec.structs.replace(r, usage=r.usage // 10) if isinstance(r, DataRecord) else r
        for r in columns_to_records(generate_columns(TRAFFIC))
    ]
    rng = np.random.default_rng(7)
    # resends: a copy (every other one with a different usage) somewhere after the original
    for k, i in enumerate(sorted(rng.choice(len(records) - 1, size=40, replace=False).tolist())):
        copy = records[i]
        if k % 2:
            copy = msgspec.structs.replace(copy, usage=copy.usage * 2 + 1)
        records.insert(int(rng.integers(i + 1, len(records) + 1)), copy)
    first = records[0]
    records.insert(1, first)  # resent at once: the same batch
    records += [
        # a cdr_id seen before under another account: DUPLICATE (one partition)
        msgspec.structs.replace(records[10], account="acc0000001"),
        # an account nobody created, with a cdr_id applied before
        msgspec.structs.replace(first, account="nobody"),
        VoiceRecord(cdr_id="too-long", tenant=first.tenant, account="acc0000001",
                    destination="4930123456", start=first.start, usage=MAX_CALL_SECONDS + 1),
    ]  # fmt: skip
    return records


def compiled_outcome(
    tariff: Tariff,
    accounts: Sequence[Account],
    balances: Sequence[Sequence[Balance]],
    records: Sequence[Record],
    *,
    cuts: Sequence[int] = (),
    partitions: int = 1,
) -> Expected:
    """What worker partitions do with ``records`` (batches cut at ``cuts``), in process.

    Each partition holds its accounts in its own ledger and period counters;
    each record goes to its account's partition, in order.
    """
    rater = Rater(tariff)
    home = partitions_of(StrColumn.from_strings([a.id for a in accounts]), partitions).tolist()
    ledgers, states, counters = [], [], []
    for p in range(partitions):
        ledger = Ledger(MemoryStore(), UNITS)
        mine = [i for i, q in enumerate(home) if q == p]
        ledger.create_accounts([accounts[i] for i in mine], [balances[i] for i in mine])
        ledgers.append(ledger)
        states.append(StatefulRating(ledger, Debitor(ledger.state, rater)))
        counters.append(PeriodCounters())
    out = Expected(paid={a.id: 0 for a in accounts})
    lines = io.BytesIO()
    writer = RatedWriter(lines, rater.compiled)
    for lo, hi in pairwise([0, *cuts, len(records)]):
        batch = records[lo:hi]
        where = partitions_of(StrColumn.from_strings([r.account for r in batch]), partitions)
        for p in range(partitions):
            routed = [r for r, q in zip(batch, where.tolist(), strict=True) if q == p]
            if not routed:
                continue
            columns = records_to_columns(routed)
            got = rate_batch(rater, Batch(columns, [], None, f"cdrs[{p}]#"), counters[p], writer,
                             states[p])  # fmt: skip
            ledgers[p].checkpoint()
            out.rejected.update(reject.reason for reject in got.rejects)
            out.rated += got.rated
            out.charged += got.charged
            assert got.debits is not None
            applied = np.flatnonzero((got.debits.flags & ~1) == 0)
            for account, paid in zip(columns.account.values_at(applied),
                                     got.debits.paid[applied].tolist(), strict=True):  # fmt: skip
                out.paid[account] += paid
    assert lines.getvalue().count(b"\n") == out.rated
    out.balances = {
        (a.id, view.id): view.amount
        for a, p in zip(accounts, home, strict=True)
        for view in ledgers[p].balances(a.id)
    }
    return out


def assert_same(compiled: Expected, expected: Expected) -> None:
    assert compiled.rejected == expected.rejected
    assert compiled.rated == expected.rated
    assert compiled.charged == expected.charged
    assert compiled.paid == expected.paid
    assert compiled.balances == expected.balances


@pytest.mark.parametrize("tiers", ["sample", "small-tiers"])
def test_the_model_matches_the_compiled_path(tiers: str) -> None:
    tariff, records = plan(tiers), traffic()
    accounts, balances = book()
    expected = expected_outcome(tariff, UNITS, accounts, balances, records)
    assert_same(compiled_outcome(tariff, accounts, balances, records, cuts=CUTS), expected)
    # the traffic takes every path of the model
    read = len(records)
    assert read == expected.rated + sum(expected.rejected.values())
    assert expected.rejected[DUPLICATE] >= 35
    assert expected.rejected[UNKNOWN_ACCOUNT] >= 20
    assert expected.rejected["UNAUTHORIZED_DESTINATION"] >= 40  # "999…": no plan
    assert expected.rejected["USAGE_OUT_OF_RANGE"] == 1
    assert len(expected.balances) == 4 * len(accounts)
    modes = {a.id: a.mode for a in accounts}
    main = {a: amount for (a, b), amount in expected.balances.items() if b == MAIN}
    assert any(main[a] < 0 for a in main if modes[a] is Mode.POSTPAID)  # debt
    spent = [a for a in main if modes[a] is Mode.PREPAID and expected.balances[a, "credit"] == 0]
    assert spent  # prepaid accounts that ran out of credit: insufficient credit
    assert all(main[a] == 0 for a in main if modes[a] is Mode.PREPAID)
    assert sum(expected.paid.values()) > 0


def one_account(number: int = 0) -> tuple[list[Account], list[list[Balance]]]:
    """Account ``number`` of the scenario with its main balance only."""
    accounts, _ = scenario_accounts(TRAFFIC)
    return [accounts[number]], [[]]


def data(cdr_id: str, usage: int, account: str = "acc0000000") -> DataRecord:
    start = TRAFFIC.day.replace(hour=12)
    return DataRecord(cdr_id=cdr_id, tenant="ratewire.demo", account=account, start=start,
                      usage=usage)  # fmt: skip


def test_a_duplicate_counts_in_its_period_usage() -> None:
    """The compiled rater counts a resent record's usage before the ledger refuses it."""
    tariff = plan("small-tiers")
    accounts, balances = one_account()  # postpaid: pays everything as debt
    resent = [data("d1", 4 * MB), data("d1", 4 * MB), data("d2", 2 * MB)]
    expected = expected_outcome(tariff, UNITS, accounts, balances, resent)
    assert_same(compiled_outcome(tariff, accounts, balances, resent, cuts=(2,)), expected)
    assert (expected.rated, expected.rejected) == (2, Counter({DUPLICATE: 1}))
    # d2 starts at 8 MB of the month (d1 twice), all of it in the second tier
    once = expected_outcome(tariff, UNITS, accounts, balances, [resent[0], resent[2]])
    assert expected.charged == 40_000_000 + 10_000_000
    assert once.charged == 40_000_000 + 10_000_000 + 5_000_000  # 1 MB of d2 in the first tier


def test_cdr_ids_are_remembered_per_partition() -> None:
    tariff = plan("sample")
    accounts, _ = scenario_accounts(TRAFFIC)
    ids = StrColumn.from_strings([a.id for a in accounts])
    where = partitions_of(ids, 2).tolist()
    pair = [accounts[where.index(0)], accounts[where.index(1)]]
    balances: list[list[Balance]] = [[], []]
    records = [data("x", MB, pair[0].id), data("x", MB, pair[1].id)]
    for partitions, rated in ((1, 1), (2, 2)):
        expected = expected_outcome(tariff, UNITS, pair, balances, records, partitions=partitions)
        got = compiled_outcome(tariff, pair, balances, records, partitions=partitions)
        assert_same(got, expected)
        assert expected.rated == rated
