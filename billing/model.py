"""The billing records every module shares: profiles, subscription events, invoices.

Amounts are integers in nanos of their currency (10**-9, the precision rating
uses); an invoice line is rounded to the currency's minor unit at one named
point (its ``rule`` says how), and totals are sums of rounded lines, so a
printed invoice always adds up. Dates are local calendar days (ISO text) of
the account's time zone; instants are UTC microseconds.
"""

from __future__ import annotations

import enum

import msgspec


class Mode(enum.Enum):
    PREPAID = "prepaid"
    POSTPAID = "postpaid"
    HYBRID = "hybrid"


class BillingProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How one account is billed."""

    account: str
    currency: str = "EUR"
    mode: Mode = Mode.POSTPAID
    bill_day: int = 1  # 1..28
    timezone: str = "UTC"
    region: str = ""  # tax region, looked up in the catalog's tax rates
    reseller: str = ""  # the invoice issuer; "" is the operator itself
    segment: str = ""  # e.g. "consumer", "business"
    language: str = "en"
    brand: str = ""  # template brand; "" uses the reseller's, then the default
    payment_terms_days: int = 14


class SubscriptionAction(enum.Enum):
    SUBSCRIBE = "subscribe"  # starts a product on ``day``
    CHANGE = "change"  # moves the subscription to ``product`` from ``day``
    SUSPEND = "suspend"  # no recurring fee from ``day`` until resumed
    RESUME = "resume"
    END = "end"  # last day of use is the day before ``day``


class SubscriptionEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One change to one subscription, effective from the start of local day ``day``."""

    event_id: str  # idempotency key: the same id twice is applied once
    account: str
    subscription: str
    action: SubscriptionAction
    day: str  # ISO date, local to the account
    product: str = ""  # for subscribe and change
    reason: str = ""  # e.g. "renewal refused: insufficient balance"


class OneTimeCharge(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A one-time fee (activation, device, a single service) or an ad-hoc credit."""

    charge_id: str  # idempotency key
    account: str
    fee: str  # the catalog's one-time fee id
    day: str  # ISO date, local to the account
    quantity: int = 1
    amount: int | None = None  # nanos; overrides the catalog price when given
    description: str = ""


class LineKind(enum.Enum):
    USAGE = "usage"
    LATE_USAGE = "late_usage"  # rated for an earlier, already closed cycle
    RECURRING = "recurring"
    PRORATION = "proration"  # credit of unused days / charge of remaining days
    ONE_TIME = "one_time"
    DISCOUNT = "discount"
    COMMITMENT = "commitment"  # top-up to a minimum spend
    TAX = "tax"


class InvoiceLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    kind: LineKind
    description: str
    amount: int  # nanos, already rounded to the currency's minor unit
    currency: str
    quantity: int = 0  # records, days, units
    unit: str = ""  # "records", "days", "seconds", "bytes", …
    usage: int = 0  # usage units (seconds, bytes, messages) for usage lines
    category: str = ""
    zone: str = ""
    product: str = ""
    subscription: str = ""
    period_start: str = ""  # ISO dates of what the line pays for
    period_end: str = ""  # exclusive
    rule: str = ""  # e.g. "12/30 days of 30.00, rounded half-even to 0.01"
    late_from: str = ""  # for late usage: the cycle it was rated for
    taxable: bool = True
    paid_from_balance: bool = False  # prepaid usage/renewals: shown, not due
    fee: str = ""  # the catalog fee id of a recurring, proration or one-time line


class BalanceConsumed(msgspec.Struct, frozen=True):
    balance: str
    unit: str
    amount: int  # units of the balance consumed in the cycle


class InvoiceStatus(enum.Enum):
    DRAFT = "draft"
    ISSUED = "issued"
    CANCELLED = "cancelled"
    PAID = "paid"
    # "overdue" is derived: issued, unpaid, due date passed


class InvoiceEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    at_us: int
    actor: str
    action: str  # "generated", "issued", "cancelled", "sent", "paid", "regenerated"
    detail: str = ""


class Invoice(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One account's invoice for one cycle (or a credit note cancelling one)."""

    invoice_id: str  # "<cycle>/<account>"; a credit note: "<cycle>/<account>/credit"
    account: str
    cycle: str
    issuer: str  # the reseller, or "" for the operator
    currency: str
    period_start: str
    period_end: str  # exclusive
    status: InvoiceStatus = InvoiceStatus.DRAFT
    number: str = ""  # gap-free per issuer, given at issue
    issued_day: str = ""
    due_day: str = ""
    payment_terms_days: int = 14  # due_day = issued_day + this, set at issue
    lines: list[InvoiceLine] = msgspec.field(default_factory=list)
    subtotal: int = 0  # nanos, before tax
    tax: int = 0
    total: int = 0  # subtotal + tax
    paid_from_balance: int = 0  # part of total already paid by prepaid balances
    previous_balance: int = 0  # unpaid amount carried from earlier invoices
    payments: int = 0  # payments received since the previous invoice
    amount_due: int = 0  # previous_balance - payments + total - paid_from_balance
    paid: int = 0  # nanos received against this invoice (recorded payments)
    balances_consumed: list[BalanceConsumed] = msgspec.field(default_factory=list)
    reseller: str = ""
    segment: str = ""
    language: str = "en"
    brand: str = ""
    credit_note_for: str = ""  # set on a credit note: the invoice id it cancels
    dunning: str = ""  # dunning level name; "" when none
    history: list[InvoiceEvent] = msgspec.field(default_factory=list)
