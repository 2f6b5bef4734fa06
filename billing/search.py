"""Finding invoices: the secondary indexes and the search over them.

Every invoice has two index rows, written by :mod:`billing.invoices` in the
same batch as the invoice itself, each holding its :class:`Summary` (the few
fields a search filters on, ~150 bytes):

  idx/cycle/<cycle>/<invoice_id>        every invoice exactly once, by cycle
  idx/account/<account>/<invoice_id>    the same summary, by account

and each account one pointer, ``idx/last/<account>`` → ``[cycle, id]`` of its
latest live invoice (not cancelled, not a credit note), so a mass run finds
every account's previous invoice with one multi-get.

A search reads the account index when an account is given, else the cycle's
index when a cycle is given, else the whole cycle index (every invoice, without
decoding a single invoice body). Results come sorted by cycle, then invoice id.

Statuses: ``draft``, ``issued`` (every issued invoice, overdue ones included),
``cancelled``, ``paid``, and the derived ``overdue``: issued, something still
open (paid < amount due) and due day before ``today``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from balances.store import Store, WriteBatch
from billing.exceptions import BillingError
from billing.model import Invoice
from tariffs.model import Rounding
from tariffs.money import format_amount, round_nanos

STATUSES = ("draft", "issued", "cancelled", "paid", "overdue")
CYCLE_INDEX = b"idx/cycle/"
ACCOUNT_INDEX = b"idx/account/"
LAST_INDEX = b"idx/last/"  # account → [cycle, id] of its latest live invoice


class Summary(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What the indexes hold of one invoice; enough to filter and list it."""

    invoice_id: str
    account: str
    cycle: str
    reseller: str  # the invoice's reseller, else its issuer ("" = the operator)
    status: str  # InvoiceStatus value
    number: str
    currency: str
    total: int
    amount_due: int
    paid: int
    issued_day: str
    due_day: str
    dunning: str
    credit_note_for: str

    def open_amount(self) -> int:
        """What is still to be paid (0 for credit notes and settled invoices)."""
        return max(self.amount_due - self.paid, 0) if not self.credit_note_for else 0

    def overdue(self, today: str) -> bool:
        return self.status == "issued" and "" < self.due_day < today and self.open_amount() > 0

    def effective_status(self, today: str) -> str:
        return "overdue" if self.overdue(today) else self.status


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Summary)
_POINTER = msgspec.msgpack.Decoder(tuple[str, str])


def summary_of(inv: Invoice) -> Summary:
    return Summary(
        inv.invoice_id, inv.account, inv.cycle, inv.reseller or inv.issuer, inv.status.value,
        inv.number, inv.currency, inv.total, inv.amount_due, inv.paid, inv.issued_day,
        inv.due_day, inv.dunning, inv.credit_note_for,
    )  # fmt: skip


def live(inv: Invoice | Summary) -> bool:
    """Can be an account's latest invoice: not cancelled and not a credit note."""
    status = inv.status if isinstance(inv, Summary) else inv.status.value
    return status != "cancelled" and not inv.credit_note_for


def encode_summary(summary: Summary) -> bytes:
    return _ENCODER.encode(summary)


def decode_summary(raw: bytes) -> Summary:
    return _DECODER.decode(raw)


def cycle_prefix(cycle: str) -> bytes:
    return CYCLE_INDEX + cycle.encode() + b"/"


def account_prefix(account: str) -> bytes:
    return ACCOUNT_INDEX + account.encode() + b"/"


def index_keys(inv: Invoice | Summary) -> tuple[bytes, bytes]:
    """The invoice's two index rows: by cycle, by account."""
    ident = inv.invoice_id.encode()
    return cycle_prefix(inv.cycle) + ident, account_prefix(inv.account) + ident


def stage_rows(batch: WriteBatch, inv: Invoice, old: Invoice | None) -> None:
    """Put ``inv``'s index rows into ``batch``; delete ``old``'s that no longer apply."""
    summary = encode_summary(summary_of(inv))
    keys = index_keys(inv)
    for key in keys:
        batch.put(key, summary)
    if old is not None:
        for key in set(index_keys(old)) - set(keys):
            batch.delete(key)


def last_key(account: str) -> bytes:
    return LAST_INDEX + account.encode()


Pointer = tuple[str, str] | None  # an account's latest live invoice: (cycle, id)


def pointers(store: Store, accounts: Sequence[str]) -> list[Pointer]:
    """Each account's latest live invoice as (cycle, id), from ``idx/last/``, in one read."""
    return [pointer_of(raw) for raw in store.get_many([last_key(a) for a in accounts])]


def pointer_of(raw: bytes | None) -> Pointer:
    """An ``idx/last/`` value as a :data:`Pointer`."""
    return None if raw is None else _POINTER.decode(raw)


def point_last(
    store: Store, batch: WriteBatch, invoices: Sequence[Invoice],
    known: Mapping[str, Pointer] | None = None,
) -> None:  # fmt: skip
    """Move each account's ``idx/last`` pointer to the newest of ``invoices`` if newer.

    ``known``: pointers the caller read (:func:`pointers`), current as the store is.
    """
    mine = [inv for inv in invoices if live(inv)]
    names = [inv.account for inv in mine]
    if known is not None and all(name in known for name in names):
        current = {name: known[name] for name in names}
    else:
        current = dict(zip(names, pointers(store, names), strict=True))
    for inv in mine:
        pointer = (inv.cycle, inv.invoice_id)
        held = current[inv.account]
        if held is None or held <= pointer:
            current[inv.account] = pointer
            batch.put(last_key(inv.account), _ENCODER.encode(pointer))


def latest(
    store: Store, account: str, *, before: str | None = None, exclude: str = ""
) -> tuple[str, str] | None:
    """(cycle, id) of the account's latest live invoice (of a cycle before ``before``)."""
    best: tuple[str, str] | None = None
    for _, raw in store.scan(account_prefix(account)):
        s = decode_summary(raw)
        if live(s) and s.invoice_id != exclude and (before is None or s.cycle < before):
            best = max(best or (s.cycle, s.invoice_id), (s.cycle, s.invoice_id))
    return best


def repoint(store: Store, batch: WriteBatch, cancelled: Invoice) -> None:
    """After ``cancelled`` stops being live: point its account at the latest live one."""
    (held,) = pointers(store, [cancelled.account])
    if held is None or held[1] != cancelled.invoice_id:
        return
    pointer = latest(store, cancelled.account, exclude=cancelled.invoice_id)
    if pointer is None:
        batch.delete(last_key(cancelled.account))
    else:
        batch.put(last_key(cancelled.account), _ENCODER.encode(pointer))


def rebuild(store: Store, invoices: Iterable[Invoice], chunk: int) -> int:
    """Delete every ``idx/`` row, then index ``invoices`` again; returns how many."""
    stale = [key for key, _ in store.scan(b"idx/")]
    for lo in range(0, len(stale), chunk):
        batch = WriteBatch()
        for key in stale[lo : lo + chunk]:
            batch.delete(key)
        store.write(batch)
    batch, last, count = WriteBatch(), dict[str, tuple[str, str]](), 0
    for inv in invoices:
        stage_rows(batch, inv, None)
        if live(inv):
            last[inv.account] = max(last.get(inv.account, ("", "")), (inv.cycle, inv.invoice_id))
        count += 1
        if len(batch) >= 2 * chunk:
            store.write(batch)
            batch = WriteBatch()
    for account, pointer in last.items():
        batch.put(last_key(account), _ENCODER.encode(pointer))
    store.write(batch)
    return count


@dataclass(frozen=True, slots=True)
class Filters:
    """What to look for; every given criterion must hold (``None`` = any).

    Amounts are nanos of the invoice's currency, compared with ``total``
    (inclusive). Days are ISO dates compared with ``issued_day`` (inclusive),
    so a day range leaves drafts out. ``dunning=""`` finds invoices in no dunning.
    """

    min_total: int | None = None
    max_total: int | None = None
    from_day: str | None = None
    to_day: str | None = None
    status: str | None = None
    reseller: str | None = None
    cycle: str | None = None
    dunning: str | None = None
    account: str | None = None
    currency: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            msg = f"status {self.status!r}: use one of {', '.join(STATUSES)}"
            raise BillingError(msg)

    def matches(self, s: Summary, today: str) -> bool:
        return self.predicate(today)(s)

    def predicate(self, today: str) -> Callable[[Summary], bool]:
        """One test of a summary against every given criterion (built once per search)."""
        tests: list[Callable[[Summary], bool]] = []
        lo, hi, first, last = self.min_total, self.max_total, self.from_day, self.to_day
        if lo is not None:
            tests.append(lambda s: s.total >= lo)
        if hi is not None:
            tests.append(lambda s: s.total <= hi)
        if first is not None:
            tests.append(lambda s: s.issued_day >= first)  # "" (a draft) sorts first: out
        if last is not None:
            tests.append(lambda s: s.issued_day != "" and s.issued_day <= last)
        if self.status == "overdue":
            tests.append(lambda s: s.overdue(today))
        for name in ("status", "reseller", "cycle", "dunning", "account", "currency"):
            wanted = getattr(self, name)
            if wanted is not None and not (name == "status" and wanted == "overdue"):
                tests.append(_equals(name, wanted))
        if not tests:
            return lambda s: True
        if len(tests) == 1:
            return tests[0]
        return lambda s: all(test(s) for test in tests)


def _equals(field: str, wanted: str) -> Callable[[Summary], bool]:
    get = operator.attrgetter(field)
    return lambda s: bool(get(s) == wanted)


def _rows(store: Store, filters: Filters) -> Iterator[bytes]:
    if filters.account is not None:
        prefix = account_prefix(filters.account)
    elif filters.cycle is not None:
        prefix = cycle_prefix(filters.cycle)
    else:
        prefix = CYCLE_INDEX
    return (value for _, value in store.scan(prefix))


def search(store: Store, filters: Filters, *, today: str) -> list[Summary]:
    """Every invoice matching ``filters`` (``today`` decides overdue), by cycle and id."""
    decode = _DECODER.decode
    found = list(filter(filters.predicate(today), map(decode, _rows(store, filters))))
    if filters.account is not None:  # the account index is in invoice-id order
        found.sort(key=lambda s: (s.cycle, s.invoice_id))
    return found


def summaries(store: Store, cycle: str) -> Iterator[Summary]:
    """Every invoice of ``cycle`` (drafts, issued, credit notes …), in invoice-id order."""
    return (_DECODER.decode(value) for _, value in store.scan(cycle_prefix(cycle)))


def money(nanos: int, currency: str, decimals: Mapping[str, int]) -> str:
    """``1234560000000`` EUR → ``"1234.56"``: the currency's minor decimals, always shown."""
    places = decimals.get(currency, 2)
    text = format_amount(round_nanos(nanos, places, Rounding.HALF_EVEN), places)
    if places == 0:
        return text
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(places, '0')}"


def as_row(s: Summary, decimals: Mapping[str, int], today: str) -> dict[str, Any]:
    """One search result as JSON-ready text (what the CLI and the HTTP API show)."""
    return {
        "invoice_id": s.invoice_id, "number": s.number, "account": s.account,
        "cycle": s.cycle, "reseller": s.reseller, "status": s.effective_status(today),
        "currency": s.currency, "total": money(s.total, s.currency, decimals),
        "amount_due": money(s.amount_due, s.currency, decimals),
        "paid": money(s.paid, s.currency, decimals), "issued_day": s.issued_day,
        "due_day": s.due_day, "dunning": s.dunning, "credit_note_for": s.credit_note_for,
    }  # fmt: skip


def ids_of(rows: Iterable[Summary]) -> list[str]:
    return [s.invoice_id for s in rows]
