"""What a stream of usage records must do to a ledger, worked out with the slow references.

The worker (:mod:`engine.partition`) rates a batch with the compiled rater,
debits it with :meth:`balances.ledger.Ledger.debit` and writes what it
applied. :func:`expected_outcome` gives the same answer one record at a
time from :func:`tariffs.reference.rate_reference` and
:func:`balances.reference.debit_reference`, and from the worker's rules
written out here (``engine.rate_file.rate_batch``, ``unratable``,
``unapplied``, ``RatedWriter.rows``):

- Rating: ``period_usage`` is the usage before the record of the records of
  its (account, category, calendar month in the tariff's zone) whose rate in
  force at their start is tiered, whatever became of them later: the
  compiled rater counts a record when its start binding is found (guide
  passed, the call is not too long, a timing is in force at its start), so
  a record that fails later in the call, or is then refused as
  ``UNKNOWN_ACCOUNT`` or ``DUPLICATE``, still counts. A record that is not
  tiered at its start is rated with ``period_usage`` 0. A
  :class:`~tariffs.exceptions.RatingError` rejects the record with its code.
- Then an unknown account rejects it (``UNKNOWN_ACCOUNT``); a ``cdr_id``
  applied before, by a record that rated and named a known account (with
  or without enough credit), rejects it as ``DUPLICATE``. Neither changes
  anything. Every other record is debited and written (rated), short of
  credit or not.

The worker remembers ``cdr_id``\\ s per partition: a ``cdr_id`` repeated
under an account of another partition is applied again (``partitions``
says how many there are). It forgets ids after ``2 × remember`` of them per
partition; the model remembers every one.

Records are taken in the order given. The worker keeps each account's
records in order and nothing here depends on the order between accounts,
so any order that keeps each account's records in theirs is as good.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from balances.model import MAIN, Account, Balance
from balances.reference import RefAccount, RefBalance, RefRecord, debit_reference
from balances.state import MAIN_WEIGHT
from balances.units import UnitCatalog
from engine.columns import KIND_NAMES, StrColumn
from engine.partitioning import partitions_of
from engine.records import Record, VoiceRecord
from tariffs.exceptions import RatingError
from tariffs.model import Basis, Tariff
from tariffs.rated import MAX_CALL_SECONDS, Rating
from tariffs.reference import rate_reference

UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
DUPLICATE = "DUPLICATE"


@dataclass
class Expected:
    """The outcome of a stream of records, as the worker must produce it."""

    rated: int = 0  # records rated and applied (written to rated-cdrs)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count
    # (account id, balance id) -> amount after everything, every balance incl. "main"
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    charged: int = 0  # nanos: the rated cost of the rated records
    paid: dict[str, int] = field(default_factory=dict)  # account -> paid, currency amount units


def ref_accounts(
    accounts: Sequence[Account], balances: Sequence[Sequence[Balance]]
) -> dict[str, RefAccount]:
    """The reference's accounts as :meth:`Ledger.create_accounts` opens them.

    Each gets its main balance (the account's currency, amount 0, created
    first) and then its own balances with their opening amounts, in order.
    """
    book = {}
    for account, own in zip(accounts, balances, strict=True):
        main = RefBalance(MAIN, account.currency, 0, weight=MAIN_WEIGHT, created=0)
        others = [
            RefBalance(
                b.id, b.unit, b.amount, weight=b.weight, valid_from=b.valid_from,
                valid_until=b.valid_until, filter=b.filter, created=k,
            )
            for k, b in enumerate(own, start=1)
        ]  # fmt: skip
        book[account.id] = RefAccount(account.mode, account.credit_limit, [main, *others])
    return book


def _rate(
    tariff: Tariff, record: Record, *, usage: int, time_based: bool, period_usage: int
) -> Rating | str:
    """The reference's Rating of ``record`` (with ``usage``), or its error code."""
    try:
        return rate_reference(
            tariff,
            tenant=record.tenant,
            category=record.category,
            subject=record.subject or record.account,
            destination=record.destination,
            start=record.start,
            usage=usage,
            time_based=time_based,
            period_usage=period_usage,
        )
    except RatingError as exc:
        return exc.code


def tiered_at_start(tariff: Tariff, record: Record) -> bool:
    """Whether the compiled rater counts ``record`` in its period's usage.

    It does when the rate of the binding in force at the record's start is
    tiered; a call too long to rate is refused before that binding is looked
    up. One unit rated as not time based is priced at the start binding only.
    """
    if isinstance(record, VoiceRecord) and record.usage > MAX_CALL_SECONDS:
        return False
    probe = _rate(tariff, record, usage=1, time_based=False, period_usage=0)
    return isinstance(probe, Rating) and tariff.rates[probe.spans[0].rate].basis is not Basis.RECORD


def expected_outcome(
    tariff: Tariff,
    units: UnitCatalog,
    accounts: Sequence[Account],
    balances: Sequence[Sequence[Balance]],
    records: Sequence[Record],
    *,
    partitions: int = 1,
) -> Expected:
    """Rate and debit ``records`` in order with the references, from the accounts' opening.

    ``balances[i]`` are the opening balances of ``accounts[i]`` (without the
    main balance, which opens at 0); ``partitions`` is the worker's count,
    for the ``cdr_id``\\ s each partition remembers.
    """
    book = ref_accounts(accounts, balances)
    names = sorted({r.account for r in records})
    partition = dict(zip(names, partitions_of(StrColumn.from_strings(names), partitions).tolist(),
                         strict=True))  # fmt: skip
    zone = ZoneInfo(tariff.timezone)
    used: dict[tuple[str, str, int, int], int] = {}
    applied: set[tuple[int, str]] = set()  # (partition, cdr_id)
    out = Expected(paid={a.id: 0 for a in accounts})
    for record in records:
        period_usage = 0
        if tiered_at_start(tariff, record):
            local = record.start.astimezone(zone)
            key = (record.account, record.category, local.year, local.month)
            period_usage = used.get(key, 0)
            used[key] = period_usage + record.usage
        rating = _rate(
            tariff, record, usage=record.usage, time_based=isinstance(record, VoiceRecord),
            period_usage=period_usage,
        )  # fmt: skip
        if isinstance(rating, str):
            out.rejected[rating] += 1
            continue
        if record.account not in book:
            out.rejected[UNKNOWN_ACCOUNT] += 1
            continue
        seen = (partition[record.account], record.cdr_id)
        if seen in applied:
            out.rejected[DUPLICATE] += 1
            continue
        applied.add(seen)
        ref = RefRecord(record.account, KIND_NAMES[record.kind], record.category, record.start,
                        rating)  # fmt: skip
        [outcome], _ = debit_reference(
            {record.account: book[record.account]}, [ref], tariff=tariff, units=units
        )
        out.rated += 1
        out.charged += rating.cost
        out.paid[record.account] += outcome.paid
    out.balances = {(a, b.id): b.amount for a, acc in book.items() for b in acc.balances}
    return out
