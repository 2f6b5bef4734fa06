"""Mass invoice runs: one draft invoice per account for a cycle, safe to re-run.

``run_on`` walks the billing profiles of a group (all accounts, a reseller, a
segment, a bill day or a list of accounts) in account order, in chunks. For
each chunk it reads what every account needs in bulk (profile, subscription
events, one-time charges, usage totals, the previous invoice), prices it
(:func:`billing.charges.account_charges`) and writes the chunk's drafts, the
accounts' cycle-closed marks and the run's progress marks in one write. A
run that dies half way is simply run again: accounts with a progress mark
are skipped, so no invoice is made twice and none is missing. A large run
can price spans of accounts in parallel processes (:mod:`billing.processes`);
the chunks and their writes are the same.

Prepaid accounts pay recurring fees from their balances at renewal, when
the run of cycle C renews them for the next cycle. Two ways:

* with the balances ledger at hand (``ledger=``, the ``--state`` folder of
  a single-process deployment) the run debits each renewal itself, once per
  op id; one the balances cannot cover is refused and the subscription is
  suspended from the renewed period's first day (a subscription event);
* with streaming workers, :func:`renewal_commands` gives the
  :class:`~engine.account_commands.Renew` and ``Grant`` commands that
  ``ratewire billing renew`` sends to topic ``accounts``; each worker answers
  on ``billing-events`` and the billing consumer records the outcome
  (:meth:`billing.accounts.EventWriter.renewal`). The run drafts a prepaid account only once all
  its renewals have an outcome; the others wait for a re-run (``pending``).

Included allowances of the next cycle become balances the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from balances.ledger import Ledger, open_ledger
from balances.model import Balance, Filter
from balances.store import Cursor, RocksStore, Store, WriteBatch
from billing import accounts, search, usage
from billing.accounts import (
    ALL,
    REFUSED,
    RENEWAL,
    WHOLE,
    AccountGroup,
    BillingInputs,
    Span,
)
from billing.catalog import SAMPLE_CATALOG, Catalog, load_catalog
from billing.charges import (
    Grant,
    Renewal,
    account_charges,
    advance_billed_of,
    allowance_grants,
    renewal_ids,
    renewals,
)
from billing.cycles import cycle_bounds, next_cycle, parse_cycle
from billing.invoices import InvoiceStore, Previous
from billing.model import (
    Invoice,
    InvoiceStatus,
    Mode,
    SubscriptionAction,
    SubscriptionEvent,
)
from billing.search import Pointer
from billing.storage import open_store
from billing.subscriptions import Timeline, fold
from engine import account_commands as commands
from engine import collector

CHUNK = 2_000
PARALLEL_MIN = 20_000  # accounts: a smaller run is not worth starting processes for
_RUN = b"run/"


@dataclass(slots=True)
class RunSummary:
    cycle: str
    accounts: int = 0  # in the group
    drafted: int = 0  # drafts written by this run
    already: int = 0  # drafted by an earlier (interrupted) run of the same cycle
    pending: int = 0  # prepaid accounts whose renewals have no outcome yet: run again
    renewals: int = 0
    renewals_refused: int = 0
    allowances: int = 0
    totals: dict[str, int] = field(default_factory=dict)  # currency → total of this run's drafts
    seconds: float = 0.0

    def add(self, other: RunSummary) -> None:
        """Count ``other`` (the same cycle's run of another span) in."""
        for name in ("accounts", "drafted", "already", "pending", "renewals",
                     "renewals_refused", "allowances"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for currency, total in other.totals.items():
            self.totals[currency] = self.totals.get(currency, 0) + total

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "accounts": self.accounts,
            "drafted": self.drafted,
            "already": self.already,
            "pending": self.pending,
            "renewals": self.renewals,
            "renewals_refused": self.renewals_refused,
            "allowances": self.allowances,
            "totals": dict(sorted(self.totals.items())),
            "seconds": round(self.seconds, 3),
        }


def _progress_key(cycle: str, account: str) -> bytes:
    return _RUN + cycle.encode() + b"/" + account.encode()


def _chunks(items: Iterable[BillingInputs], size: int) -> Iterator[list[BillingInputs]]:
    chunk: list[BillingInputs] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _refusal(renewal: Renewal, why: str) -> SubscriptionEvent:
    """The suspension a refused renewal causes, from the first day it would have paid for."""
    return SubscriptionEvent(
        event_id=f"{REFUSED}{renewal.op_id}",
        account=renewal.account,
        subscription=renewal.subscription,
        action=SubscriptionAction.SUSPEND,
        day=renewal.period_start,
        reason=why,
    )


def _balance(grant: Grant) -> Balance:
    return Balance(id=grant.balance_id, unit=grant.unit, amount=grant.amount,
                   weight=grant.weight, valid_from=grant.valid_from,
                   valid_until=grant.valid_until,
                   filter=Filter(categories=tuple(grant.categories)))  # fmt: skip


class LedgerRenewer:
    """Renewals and allowance grants against a balances ledger, applied as the workers
    apply them (:func:`engine.account_commands.apply_command`), once per op id."""

    def __init__(self, ledger: Ledger, catalog: Catalog) -> None:
        self.ledger, self.catalog = ledger, catalog

    def renew(self, item: BillingInputs, cycle: str, summary: RunSummary) -> BillingInputs:
        """``item`` after debiting its renewals for ``cycle`` (refusals suspend)."""
        refused: list[SubscriptionEvent] = []
        applied = commands.Applied()
        for renewal in renewals(self.catalog, item.profile, item.events, cycle):
            if any(e.subscription == renewal.subscription for e in refused):
                continue  # suspended by an earlier period's refusal: nothing more to pay
            if self.ledger.done(renewal.op_id) is not None:
                continue  # paid by an earlier run (the catch-up of a period)
            commands.apply_command(self.ledger, _renew_command(renewal), applied)
            outcome = applied.outcomes[-1]
            if not outcome.ok:
                refused.append(_refusal(renewal, outcome.reason))
        summary.renewals += applied.renewed
        summary.renewals_refused += applied.refused
        for grant in allowance_grants(self.catalog, item.profile, item.events, cycle):
            commands.apply_command(self.ledger, _grant_command(grant), applied)
        summary.allowances += applied.granted
        return _with_events(item, refused)


def _renew_command(r: Renewal) -> commands.Renew:
    return commands.Renew(account=r.account, amount=r.amount, op_id=r.op_id,
                          subscription=r.subscription, day=r.period_start)  # fmt: skip


def _grant_command(g: Grant) -> commands.Grant:
    return commands.Grant(account=g.account, balance=_balance(g), op_id=g.op_id)


def _with_events(item: BillingInputs, events: list[SubscriptionEvent]) -> BillingInputs:
    return item if not events else BillingInputs(item.profile, [*item.events, *events],
                                                 item.one_time)  # fmt: skip


def _effective(item: BillingInputs) -> BillingInputs:
    """``item`` without refusal suspensions of a subscription a refusal already suspended.

    Renewals of two periods can both be refused (a catch-up and the next
    cycle); the first suspends, the second changes nothing until a resume.
    """
    if not any(e.event_id.startswith(REFUSED) for e in item.events):
        return item
    kept, suspended = [], set()
    for e in sorted(item.events, key=lambda e: (e.day, e.event_id)):
        if e.action is SubscriptionAction.RESUME:
            suspended.discard(e.subscription)
        elif e.event_id.startswith(REFUSED):
            if e.subscription in suspended:
                continue
            suspended.add(e.subscription)
        kept.append(e)
    return BillingInputs(item.profile, kept, item.one_time)


def run_on(
    store: Store,
    cycle: str,
    *,
    group: AccountGroup = ALL,
    catalog: Catalog,
    actor: str = "billing-run",
    ledger: Ledger | None = None,
    chunk: int = CHUNK,
    after_chunk: Callable[[int], None] | None = None,
    processes: int = 1,
) -> RunSummary:
    """Draft the invoices of ``cycle`` for ``group`` in ``store`` (see the module doc).

    ``processes`` > 1 splits a large group of a :class:`RocksStore` into that
    many spans of accounts drafted in parallel (:mod:`billing.processes`);
    this process still makes every write. A run with a ``ledger`` stays in
    one process (the ledger is this process's).
    """
    parse_cycle(cycle)
    started = time.perf_counter()
    summary = RunSummary(cycle)
    job = DraftJob(cycle, group, catalog, actor, chunk)
    with collector.paused():
        split = processes > 1 and ledger is None and isinstance(store, RocksStore)
        spans = accounts.split_group(store, group, processes, PARALLEL_MIN) if split else [WHOLE]
        if isinstance(store, RocksStore) and len(spans) > 1:
            from billing.processes import run_spans  # spawns the span processes

            run_spans(store, spans, job, summary, after_chunk)
        else:
            for number, batch in chunk_writes(store, job, summary, ledger=ledger):
                store.write(batch)
                if after_chunk is not None:
                    after_chunk(number)
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass(frozen=True, slots=True)
class DraftJob:
    """What a run drafts: the same in every process of a split run."""

    cycle: str
    group: AccountGroup
    catalog: Catalog
    actor: str
    chunk: int = CHUNK


def chunk_writes(
    store: Store, job: DraftJob, summary: RunSummary, *, span: Span = WHOLE,
    ledger: Ledger | None = None,
) -> Iterator[tuple[int, WriteBatch]]:  # fmt: skip
    """Per chunk of the job's accounts in ``span``: its number and ONE batch holding its
    drafts, the accounts' cycle-closed marks and the run's progress marks.

    The caller writes each batch before asking for the next (with a ``ledger``,
    the renewals' suspensions are written here, and the ledger checkpointed
    before the batch is handed out: a re-run finds renewals done, never twice).
    """
    cycle, catalog = job.cycle, job.catalog
    invoices = InvoiceStore(store)
    renewer = LedgerRenewer(ledger, catalog) if ledger is not None else None
    upcoming = next_cycle(cycle)
    inputs = map(_effective, accounts.iter_billing_inputs(store, job.group, span))
    # what a chunk needs of one account each, read by scans walking with the accounts
    # (a first run finds no progress mark: a missing key costs a multi-get as much as
    # a hit, more when it sorts next to a large value, e.g. the consumer's seen/ lists)
    drafted = Cursor(store, _RUN + cycle.encode() + b"/", span[0])
    closed = Cursor(store, usage.CLOSED, span[0])
    latest = Cursor(store, search.LAST_INDEX, span[0])
    for number, items in enumerate(_chunks(inputs, job.chunk)):
        summary.accounts += len(items)
        todo = [i for i in items if drafted.get(i.profile.account.encode()) is None]
        summary.already += len(items) - len(todo)
        if renewer is not None:
            todo = [renewer.renew(i, upcoming, summary) for i in todo]
            suspensions = [e for i in todo for e in i.events if e.event_id.startswith(REFUSED)]
            if suspensions:
                accounts.put_subscription_events(store, suspensions)
        folded = [_Folded(i, fold(i.events, i.profile.account, catalog.products)) for i in todo]
        if renewer is None:
            folded = _settled(store, catalog, folded, upcoming, summary)
        if not folded:
            continue
        names = [f.item.profile.account for f in folded]
        keys = [name.encode() for name in names]
        pointers = [search.pointer_of(latest.get(key)) for key in keys]
        drafts = _drafts(invoices, catalog, store, folded, cycle, pointers)
        batch = WriteBatch()
        usage.close_cycle(store, names, cycle, batch, [closed.get(key) for key in keys])
        for draft in drafts:
            batch.put(_progress_key(cycle, draft.account), b"1")
            summary.totals[draft.currency] = summary.totals.get(draft.currency, 0) + draft.total
        if ledger is not None:
            ledger.checkpoint()
        invoices.stage_drafts(drafts, job.actor, batch, dict(zip(names, pointers, strict=True)))
        summary.drafted += len(drafts)
        yield number, batch


class _Folded(NamedTuple):
    item: BillingInputs
    timelines: list[Timeline]  # fold(item.events): read by renewals and pricing


def _settled(
    store: Store, catalog: Catalog, items: list[_Folded], upcoming: str, summary: RunSummary
) -> list[_Folded]:
    """The items whose renewals all have an outcome (refusals already stored as suspensions).

    A refused renewal suspended its subscription, so :func:`renewals` no longer
    lists it: refusals are counted from the suspensions of this cycle and the next.
    """
    counted = (next_cycle(upcoming, -1), upcoming)
    wanted = [[RENEWAL + op.encode() for op in renewal_ids(catalog, f.item.profile, f.timelines,
                                                           upcoming)]
              if f.item.profile.mode is Mode.PREPAID else [] for f in items]  # fmt: skip
    keys = [key for own in wanted for key in own]
    known = dict(zip(keys, store.get_many(keys), strict=True)) if keys else {}
    ready = []
    for folded, own in zip(items, wanted, strict=True):
        item = folded.item
        outcomes = [known[key] for key in own]
        if any(o is None for o in outcomes):
            summary.pending += 1
            continue
        summary.renewals += outcomes.count(b"ok")
        summary.renewals_refused += sum(
            e.event_id.startswith(REFUSED) and e.event_id.rsplit(":", 1)[-1] in counted
            for e in item.events
        )
        ready.append(folded)
    return ready


def renewal_commands(
    store: Store, cycle: str, *, group: AccountGroup = ALL, catalog: Catalog
) -> list[commands.Renew | commands.Grant]:
    """What renewing ``group`` for the cycle after ``cycle`` asks of the workers.

    Renewals without an outcome yet (sending them again is safe: a worker
    applies an op id once and answers again) and every allowance grant (a
    worker grants a balance id once).
    """
    upcoming = next_cycle(cycle)
    out: list[commands.Renew | commands.Grant] = []
    for item in map(_effective, accounts.iter_billing_inputs(store, group)):
        own = renewals(catalog, item.profile, item.events, upcoming)
        known = store.get_many([RENEWAL + r.op_id.encode() for r in own]) if own else []
        out += [_renew_command(r) for r, outcome in zip(own, known, strict=True)
                if outcome is None]  # fmt: skip
        grants = allowance_grants(catalog, item.profile, item.events, upcoming)
        out += [_grant_command(g) for g in grants]
    return out


def renew_cycle(
    store_path: Path, cycle: str, broker: str, *, catalog_path: Path | None = None,
    group: AccountGroup = ALL,
) -> dict[str, int]:  # fmt: skip
    """``ratewire billing renew``: send :func:`renewal_commands` to topic ``accounts``."""
    import asyncio

    from engine.broker import bootstrap_of
    from engine.produce import send_commands

    catalog = load_catalog(catalog_path or SAMPLE_CATALOG)
    with open_store(store_path) as store:
        asked = renewal_commands(store, cycle, group=group, catalog=catalog)
    asyncio.run(send_commands(bootstrap_of(broker), asked))
    renews = sum(isinstance(c, commands.Renew) for c in asked)
    return {"renewals_sent": renews, "grants_sent": len(asked) - renews}


def _drafts(
    invoices: InvoiceStore, catalog: Catalog, store: Store, items: list[_Folded],
    cycle: str, pointers: Sequence[Pointer],
) -> list[Invoice]:  # fmt: skip
    names = [f.item.profile.account for f in items]
    totals = usage.read_totals(store, names, cycle)
    previous = invoices.previous(names, before=cycle, pointers=pointers)
    drafts = []
    for (item, timelines), own, last in zip(items, totals, previous, strict=True):
        profile = item.profile
        lines = usage.usage_lines(own, catalog.decimals, profile.mode) if own is not None else []
        charges = account_charges(catalog, profile, item.events, item.one_time, cycle, lines,
                                  advance_billed_of(last, cycle), timelines)  # fmt: skip
        bounds = cycle_bounds(cycle, profile.bill_day, profile.timezone)
        carried, paid = _carried(last)
        drafts.append(
            Invoice(
                invoice_id=f"{cycle}/{profile.account}",
                account=profile.account,
                cycle=cycle,
                issuer=profile.reseller,
                currency=profile.currency,
                period_start=bounds.first_day.isoformat(),
                period_end=bounds.end_day.isoformat(),
                status=InvoiceStatus.DRAFT,
                lines=charges.lines,
                subtotal=charges.subtotal,
                tax=charges.tax,
                total=charges.total,
                paid_from_balance=charges.paid_from_balance,
                previous_balance=carried,
                payments=paid,
                amount_due=carried - paid + charges.total - charges.paid_from_balance,
                balances_consumed=usage.balances_consumed(own) if own is not None else [],
                reseller=profile.reseller,
                segment=profile.segment,
                language=profile.language,
                brand=profile.brand or profile.reseller,
                payment_terms_days=profile.payment_terms_days,
            )
        )
    return drafts


def _carried(last: Previous | None) -> tuple[int, int]:
    """``(previous balance, payments)`` from the latest earlier invoice once it is issued.

    A draft carries nothing: it may still change, and its own total is asked
    for when it is issued.
    """
    if last is None or last.status not in (InvoiceStatus.ISSUED, InvoiceStatus.PAID):
        return 0, 0
    return last.amount_due, last.paid


def run_cycle(
    store_path: Path,
    cycle: str,
    *,
    accounts: Sequence[str] | None = None,
    reseller: str | None = None,
    segment: str | None = None,
    bill_day: int | None = None,
    catalog_path: Path | None = None,
    actor: str = "billing-run",
    balances: Path | None = None,
    processes: int = 1,
) -> RunSummary:
    """``ratewire billing run``: :func:`run_on` over the billing store at ``store_path``."""
    catalog = load_catalog(catalog_path or SAMPLE_CATALOG)
    group = AccountGroup(frozenset(accounts) if accounts else None, reseller, segment, bill_day)
    ledger = open_ledger(balances) if balances is not None else None
    try:
        with open_store(store_path) as store:
            return run_on(store, cycle, group=group, catalog=catalog, actor=actor, ledger=ledger,
                          processes=processes)  # fmt: skip
    finally:
        if ledger is not None:
            ledger.close()
