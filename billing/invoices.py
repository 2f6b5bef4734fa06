"""Invoices in the billing store: drafts, issue with gap-free numbers, cancel, payments.

Keys (all owned here; each change writes the invoice, its index rows and its
counters in one :class:`~balances.store.WriteBatch`, so a crash leaves all or none):

  inv/<invoice_id>                      the :class:`~billing.model.Invoice` (msgpack)
  idx/cycle/…, idx/account/…            search summaries (:mod:`billing.search`)
  idx/last/<account>                    [cycle, id] of the account's latest live invoice
  num/<issuer>/<year>                   the issuer's last number of that year (ASCII)
  pay/<invoice_id>\\0<ref>               one recorded payment (msgpack :class:`Payment`)

Rules:
- ``put_drafts`` replaces drafts (history ``regenerated``; an identical draft is
  left alone) and *skips* invoices already issued, paid or cancelled: issued
  invoices are immutable, and a re-run of a cycle must not fail on them. It
  returns how many drafts it wrote.
- ``issue`` numbers drafts ``<PREFIX>-<year>-<seq:06d>``, one gap-free sequence
  per issuer and year of the issue day (operator ``""`` → ``RW``; a reseller its
  own prefix). Counter and invoices go in the same batch, in chunks; invoices
  not drafts are skipped, so issuing again is a no-op.
- ``cancel`` voids an issued (or paid) invoice with a credit note ``<id>/credit``:
  negated lines and totals, its own number from the same issuer sequence,
  ``credit_note_for`` set. Drafts are not cancelled (nothing was issued: a
  re-run replaces them); cancelling again returns the same credit note.
- ``record_payment`` is idempotent by ``ref``; ``paid`` reaching ``amount_due``
  makes the invoice ``paid``. Every change appends to ``history`` (clock, actor).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, timedelta
from types import MappingProxyType

import msgspec
from msgspec.structs import replace

from balances.store import Store, WriteBatch
from billing import search
from billing.cycles import local_day
from billing.exceptions import BillingError, InvoiceStateError, UnknownInvoiceError
from billing.model import Invoice, InvoiceEvent, InvoiceStatus, LineKind
from billing.search import Pointer
from tariffs.money import format_amount

OPERATOR_PREFIX = "RW"
CHUNK = 1_000
NO_EXTRA: Mapping[bytes, bytes | None] = MappingProxyType({})
DRAFT, ISSUED, PAID, CANCELLED = (InvoiceStatus.DRAFT, InvoiceStatus.ISSUED,
                                  InvoiceStatus.PAID, InvoiceStatus.CANCELLED)  # fmt: skip


class Payment(msgspec.Struct, frozen=True):
    ref: str
    amount: int  # nanos
    at_us: int
    actor: str


class BilledLine(msgspec.Struct, kw_only=True, gc=False):
    """The fields of an invoice line a run reads back from the previous invoice."""

    kind: LineKind
    amount: int
    subscription: str = ""
    period_start: str = ""
    paid_from_balance: bool = False
    fee: str = ""


class Previous(msgspec.Struct, kw_only=True, gc=False):
    """What a run needs of an account's previous invoice (what it billed in advance and
    what is carried over), decoded from the stored invoice without the rest of it."""

    invoice_id: str
    cycle: str
    period_end: str
    status: InvoiceStatus = InvoiceStatus.DRAFT
    amount_due: int = 0
    paid: int = 0
    credit_note_for: str = ""
    lines: list[BilledLine] = msgspec.field(default_factory=list)


_ENC = msgspec.msgpack.Encoder()
_INVOICE = msgspec.msgpack.Decoder(Invoice)
_PREVIOUS = msgspec.msgpack.Decoder(Previous)
_PAYMENT = msgspec.msgpack.Decoder(Payment)


def now_us() -> int:
    return time.time_ns() // 1000


def invoice_key(invoice_id: str) -> bytes:
    return b"inv/" + invoice_id.encode()


def number_key(issuer: str, year: int) -> bytes:
    return f"num/{issuer}/{year}".encode()


def payment_key(invoice_id: str, ref: str) -> bytes:
    return b"pay/" + invoice_id.encode() + b"\0" + ref.encode()


def credit_note_id(invoice_id: str) -> str:
    return f"{invoice_id}/credit"


def as_day(day: date | str) -> date:
    if isinstance(day, date):
        return day
    try:
        return date.fromisoformat(day)
    except ValueError:
        msg = f"day {day!r} is not an ISO date such as 2026-12-01"
        raise BillingError(msg) from None


def derived_prefix(issuer: str) -> str:
    """A reseller's number prefix when none is configured: ``mvno-blue`` → ``MVNOBLUE``."""
    return re.sub(r"[^A-Za-z0-9]", "", issuer).upper()[:12] or OPERATOR_PREFIX


class InvoiceStore:
    """The invoices of one billing store; ``clock`` gives UTC microseconds for history."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], int] = now_us,
        prefixes: Mapping[str, str] | None = None,
        chunk: int = CHUNK,
    ) -> None:
        self.store = store
        self._clock = clock
        self._prefixes = {"": OPERATOR_PREFIX, **(prefixes or {})}
        self._chunk = chunk

    # -- reading ---------------------------------------------------------------------------

    def get(self, invoice_id: str) -> Invoice | None:
        raw = self.store.get(invoice_key(invoice_id))
        return None if raw is None else _INVOICE.decode(raw)

    def get_many(self, ids: Sequence[str]) -> list[Invoice | None]:
        raws = self.store.get_many([invoice_key(i) for i in ids])
        return [None if raw is None else _INVOICE.decode(raw) for raw in raws]

    def require(self, invoice_id: str) -> Invoice:
        inv = self.get(invoice_id)
        if inv is None:
            msg = (
                f"invoice {invoice_id!r} is not in the billing store (ids look like"
                " 2026-11/<account>; find one with `ratewire invoices search`)"
            )
            raise UnknownInvoiceError(msg)
        return inv

    def payments(self, invoice_id: str) -> list[Payment]:
        prefix = b"pay/" + invoice_id.encode() + b"\0"
        return sorted((_PAYMENT.decode(v) for _, v in self.store.scan(prefix)),
                      key=lambda p: (p.at_us, p.ref))  # fmt: skip

    def iter(self, cycle: str | None = None) -> Iterator[Invoice]:
        """Every invoice (of ``cycle``), in cycle and invoice-id order."""
        prefix = search.CYCLE_INDEX if cycle is None else search.cycle_prefix(cycle)
        chunk: list[str] = []
        for _, raw in self.store.scan(prefix):
            chunk.append(search.decode_summary(raw).invoice_id)
            if len(chunk) == self._chunk:
                yield from (inv for inv in self.get_many(chunk) if inv is not None)
                chunk = []
        yield from (inv for inv in self.get_many(chunk) if inv is not None)

    def ids(
        self, cycle: str, *, reseller: str | None = None, accounts: Sequence[str] | None = None
    ) -> list[str]:
        """Invoice ids of ``cycle`` (credit notes included), by reseller and/or accounts."""
        wanted = set(accounts) if accounts else None
        return [
            s.invoice_id for s in search.summaries(self.store, cycle)
            if (reseller is None or s.reseller == reseller)
            and (wanted is None or s.account in wanted)
        ]  # fmt: skip

    def search(self, filters: search.Filters, *, today: str | None = None) -> list[search.Summary]:
        return search.search(self.store, filters, today=today or self.today())

    def last_invoices(
        self, accounts: Sequence[str], *, before: str | None = None
    ) -> list[Invoice | None]:
        """Each account's latest invoice by cycle (drafts included; cancelled invoices and
        credit notes not), or ``None``; with ``before``, only cycles before it."""
        ids = self._last_ids(accounts, before)
        found = iter(self.get_many([i for i in ids if i is not None]))
        return [None if i is None else next(found) for i in ids]

    def previous(
        self, accounts: Sequence[str], *, before: str, pointers: Sequence[Pointer] | None = None
    ) -> list[Previous | None]:
        """:meth:`last_invoices` before ``before`` as a run reads them: :class:`Previous`,
        about a third of the decoding of whole invoices. ``pointers``: the accounts'
        :func:`search.pointers` if the caller has read them."""
        ids = self._last_ids(accounts, before, pointers)
        raws = iter(self.store.get_many([invoice_key(i) for i in ids if i is not None]))
        out: list[Previous | None] = []
        for i in ids:
            raw = None if i is None else next(raws)
            out.append(None if raw is None else _PREVIOUS.decode(raw))
        return out

    def _last_ids(
        self, accounts: Sequence[str], before: str | None, pointers: Sequence[Pointer] | None = None
    ) -> list[str | None]:
        ids: list[str | None] = []
        if pointers is None:
            pointers = search.pointers(self.store, accounts)
        for account, pointer in zip(accounts, pointers, strict=True):
            if pointer is not None and before is not None and pointer[0] >= before:
                pointer = search.latest(self.store, account, before=before)
            ids.append(None if pointer is None else pointer[1])
        return ids

    def last_invoice(self, account: str, *, before: str | None = None) -> Invoice | None:
        return self.last_invoices([account], before=before)[0]

    def today(self) -> str:
        return local_day(self._clock(), "UTC").isoformat()

    # -- writing ---------------------------------------------------------------------------

    @staticmethod
    def _stage(batch: WriteBatch, inv: Invoice, old: Invoice | None) -> None:
        """Put ``inv`` and its index rows into ``batch`` (replacing ``old``'s)."""
        batch.put(invoice_key(inv.invoice_id), _ENC.encode(inv))
        search.stage_rows(batch, inv, old)

    def put_drafts(
        self,
        invoices: Sequence[Invoice],
        actor: str,
        extra: Mapping[bytes, bytes | None] = NO_EXTRA,
    ) -> int:
        """Write draft invoices and the caller's ``extra`` keys (``None`` deletes) in one
        batch; returns the drafts written (issued ones and unchanged drafts are skipped)."""
        batch = WriteBatch()
        written = self.stage_drafts(invoices, actor, batch)
        for key, value in extra.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.store.write(batch)
        return written

    def stage_drafts(
        self, invoices: Sequence[Invoice], actor: str, batch: WriteBatch,
        pointers: Mapping[str, Pointer] | None = None,
    ) -> int:  # fmt: skip
        """:meth:`put_drafts` into the caller's ``batch``, which the caller writes.

        ``pointers``: the accounts' :func:`search.pointers` as they are in the store,
        if the caller has read them.
        """
        ids = [inv.invoice_id for inv in invoices]
        if len(set(ids)) != len(ids):
            msg = "put_drafts: the same invoice id twice in one batch"
            raise InvoiceStateError(msg)
        for inv in invoices:
            if inv.status is not DRAFT or inv.number:
                got = inv.status.value
                msg = f"invoice {inv.invoice_id}: only drafts (no number) are put, got {got}"
                raise InvoiceStateError(msg)
        at = self._clock()
        written = []
        for inv, old in zip(invoices, self.get_many(ids), strict=True):
            if old is not None and old.status is not DRAFT:
                continue  # issued, paid or cancelled: immutable
            if old is not None and replace(old, history=[]) == replace(inv, history=[]):
                continue
            if old is None:
                event, history = InvoiceEvent(at, actor, "generated"), inv.history
            else:
                event, history = InvoiceEvent(at, actor, "regenerated"), old.history
            new = replace(inv, history=[*history, event])
            self._stage(batch, new, old)
            written.append(new)
        search.point_last(self.store, batch, written, pointers)
        return len(written)

    def _number(self, issuer: str, day: date, counters: dict[bytes, int]) -> str:
        key = number_key(issuer, day.year)
        if key not in counters:
            raw = self.store.get(key)
            counters[key] = 0 if raw is None else int(raw)
        counters[key] += 1
        prefix = self._prefixes.get(issuer) or derived_prefix(issuer)
        return f"{prefix}-{day.year}-{counters[key]:06d}"

    @staticmethod
    def _put_counters(batch: WriteBatch, counters: Mapping[bytes, int]) -> None:
        for key, seq in counters.items():
            batch.put(key, b"%d" % seq)

    def issue(self, ids: Sequence[str], actor: str, day: date | str) -> list[Invoice]:
        """Issue the drafts among ``ids`` on ``day`` (in the given order); returns those
        issued now. Unknown ids raise before their chunk is written."""
        when = as_day(day)
        unique = list(dict.fromkeys(ids))
        issued: list[Invoice] = []
        for lo in range(0, len(unique), self._chunk):
            issued += self._issue_chunk(unique[lo : lo + self._chunk], actor, when)
        return issued

    def _issue_chunk(self, ids: Sequence[str], actor: str, day: date) -> list[Invoice]:
        invoices = self.get_many(ids)
        missing = [i for i, inv in zip(ids, invoices, strict=True) if inv is None]
        if missing:
            self.require(missing[0])
        at, batch, counters, out = self._clock(), WriteBatch(), dict[bytes, int](), []
        for inv in invoices:
            if inv is None or inv.status is not DRAFT:
                continue
            number = self._number(inv.issuer, day, counters)
            due = day + timedelta(days=inv.payment_terms_days)
            event = InvoiceEvent(at, actor, "issued", number)
            new = replace(
                inv, status=ISSUED, number=number, issued_day=day.isoformat(),
                due_day=due.isoformat(), history=[*inv.history, event],
            )  # fmt: skip
            self._stage(batch, new, inv)
            out.append(new)
        self._put_counters(batch, counters)
        self.store.write(batch)
        return out

    def cancel(
        self, invoice_id: str, actor: str, reason: str, *, day: date | str | None = None
    ) -> Invoice:
        """Void an issued invoice; returns its credit note (the existing one if cancelled)."""
        inv = self.require(invoice_id)
        if inv.credit_note_for:
            msg = (
                f"{invoice_id} is a credit note (for {inv.credit_note_for}); it cannot be cancelled"
            )
            raise InvoiceStateError(msg)
        if inv.status is CANCELLED:
            return self.require(credit_note_id(invoice_id))
        if inv.status is DRAFT:
            msg = (
                f"invoice {invoice_id} is a draft: only issued invoices are cancelled (a draft"
                " has no number; re-run the cycle to replace it, or leave it unaccepted)"
            )
            raise InvoiceStateError(msg)
        if not reason.strip():
            msg = f"cancelling {invoice_id} needs a reason (it goes on the credit note)"
            raise InvoiceStateError(msg)
        when = as_day(day) if day is not None else as_day(self.today())
        at, counters = self._clock(), dict[bytes, int]()
        number = self._number(inv.issuer, when, counters)
        credit = Invoice(
            invoice_id=credit_note_id(invoice_id), account=inv.account, cycle=inv.cycle,
            issuer=inv.issuer, currency=inv.currency, period_start=inv.period_start,
            period_end=inv.period_end, status=ISSUED, number=number, issued_day=when.isoformat(),
            due_day=when.isoformat(), payment_terms_days=0,
            lines=[replace(line, amount=-line.amount) for line in inv.lines],
            subtotal=-inv.subtotal, tax=-inv.tax, total=-inv.total,
            paid_from_balance=-inv.paid_from_balance,
            amount_due=-(inv.total - inv.paid_from_balance), reseller=inv.reseller,
            segment=inv.segment, language=inv.language, brand=inv.brand,
            credit_note_for=invoice_id,
            history=[InvoiceEvent(at, actor, "issued", f"cancels {inv.number}: {reason}")],
        )  # fmt: skip
        event = InvoiceEvent(at, actor, "cancelled", f"{reason} (credit note {number})")
        cancelled = replace(inv, status=CANCELLED, history=[*inv.history, event])
        batch = WriteBatch()
        self._stage(batch, credit, None)
        self._stage(batch, cancelled, inv)
        self._put_counters(batch, counters)
        search.repoint(self.store, batch, cancelled)
        self.store.write(batch)
        return credit

    def record_payment(self, invoice_id: str, amount: int, actor: str, ref: str) -> Invoice:
        """Record ``amount`` nanos received for an issued invoice, once per ``ref``."""
        if amount <= 0:
            msg = f"payment for {invoice_id}: amount must be positive, got {format_amount(amount)}"
            raise BillingError(msg)
        if not ref:
            msg = f"payment for {invoice_id}: give a reference (it makes a retry safe)"
            raise BillingError(msg)
        inv = self.require(invoice_id)
        key = payment_key(invoice_id, ref)
        seen = self.store.get(key)
        if seen is not None:
            earlier = _PAYMENT.decode(seen)
            if earlier.amount != amount:
                msg = (
                    f"payment ref {ref!r} on {invoice_id} was recorded for"
                    f" {format_amount(earlier.amount)}, not {format_amount(amount)}; a"
                    " different payment needs its own ref"
                )
                raise InvoiceStateError(msg)
            return inv
        if inv.credit_note_for or inv.status not in (ISSUED, PAID):
            kind = "a credit note" if inv.credit_note_for else inv.status.value
            msg = f"invoice {invoice_id} is {kind}: payments are recorded on issued invoices only"
            raise InvoiceStateError(msg)
        at, paid = self._clock(), inv.paid + amount
        events = [
            InvoiceEvent(at, actor, "payment", f"{format_amount(amount)} {inv.currency} ref {ref}")
        ]
        status = inv.status
        if status is ISSUED and paid >= inv.amount_due:
            status = PAID
            events.append(InvoiceEvent(at, actor, "paid", f"{format_amount(paid)} {inv.currency}"))
        new = replace(inv, status=status, paid=paid, history=[*inv.history, *events])
        batch = WriteBatch()
        self._stage(batch, new, inv)
        batch.put(key, _ENC.encode(Payment(ref, amount, at, actor)))
        self.store.write(batch)
        return new

    def mark_sent(self, invoice_id: str, actor: str, where: str) -> Invoice:
        return self.mark_sent_many([(invoice_id, where)], actor)[0]

    def mark_sent_many(self, sent: Sequence[tuple[str, str]], actor: str) -> list[Invoice]:
        """History ``sent`` (``resent`` after the first time) with where it went, one batch."""
        invoices = [self.require(i) for i, _ in sent]
        at, batch, out = self._clock(), WriteBatch(), []
        for inv, (_, where) in zip(invoices, sent, strict=True):
            check_sendable(inv)
            action = "resent" if was_sent(inv) else "sent"
            new = replace(inv, history=[*inv.history, InvoiceEvent(at, actor, action, where)])
            self._stage(batch, new, inv)
            out.append(new)
        self.store.write(batch)
        return out

    def set_dunning(self, invoice_id: str, level: str, actor: str) -> Invoice:
        """Put an issued invoice at dunning ``level`` (``""`` ends dunning)."""
        inv = self.require(invoice_id)
        if inv.status is not ISSUED or inv.credit_note_for:
            kind = "a credit note" if inv.credit_note_for else inv.status.value
            msg = f"invoice {invoice_id} is {kind}: only unpaid issued invoices are dunned"
            raise InvoiceStateError(msg)
        event = InvoiceEvent(self._clock(), actor, "dunning", level or "ended")
        new = replace(inv, dunning=level, history=[*inv.history, event])
        batch = WriteBatch()
        self._stage(batch, new, inv)
        self.store.write(batch)
        return new

    def reindex(self) -> int:
        """Rebuild every ``idx/`` row from the invoices (after a summary format change);
        safe to run again if it is interrupted. Returns the invoices indexed."""
        bodies = (_INVOICE.decode(raw) for _, raw in self.store.scan(b"inv/"))
        return search.rebuild(self.store, bodies, self._chunk)


def was_sent(inv: Invoice) -> bool:
    return any(event.action in ("sent", "resent") for event in inv.history)


def check_sendable(inv: Invoice) -> None:
    if inv.status not in (ISSUED, PAID):
        msg = (
            f"invoice {inv.invoice_id} is {inv.status.value}: only issued invoices and credit"
            " notes are sent (accept drafts first with `ratewire billing accept`)"
        )
        raise InvoiceStateError(msg)


__all__ = [
    "BilledLine",
    "InvoiceStore",
    "Payment",
    "Previous",
    "credit_note_id",
    "invoice_key",
    "now_us",
]
