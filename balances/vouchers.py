"""Gift vouchers: batches of single-use codes worth an amount of a unit.

A code is 16 characters of Crockford's base-32 alphabet (digits and capitals
without I, L, O and U), typed in groups of four: ``7KQ2-M9XD-A4TN-83WR``.
Fifteen characters are random (``secrets``: 75 bits, so guessing a code is
hopeless) and the last is a Luhn mod-32 check character, so any one
mistyped character, and any two swapped neighbours but 0 and Z, is reported
as a typo before any lookup. Reading is forgiving: lower case, spaces and dashes are accepted, and
O reads as 0, I and L as 1. A batch may put a short prefix of its own in front
(``XMAS-7KQ2-…``); the check character covers it too.

Vouchers and batches are stored beside the balances through the ledger's
staged writes, so they become durable with the balances at the next
checkpoint:

- ``vch/<code>``: the :class:`Voucher` (code without dashes), with who
  redeemed it, when and under which ``op_id``;
- ``vbt/<batch id>``: the batch's terms and codes: issuing a batch id again
  gives back the same vouchers, never a second set.

Where a credit lands (shared with :mod:`balances.loyalty` and
:mod:`balances.referral`): the main balance when the unit is the account's
currency, else the first balance of that unit in paying order that has no
filter and is valid at the time of the credit, else a new balance. A money
unit other than the account's currency that the account holds no balance of
is refused: a debit would never spend it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from balances.exceptions import (
    BalanceError,
    UnitNotHeldError,
    UnknownAccountError,
    VoucherAlreadyRedeemedError,
    VoucherBatchConflictError,
    VoucherError,
    VoucherExpiredError,
    VoucherMistypedError,
    VoucherNotYetValidError,
    VoucherUnknownError,
)
from balances.ledger import JournalEntry, Ledger
from balances.model import MAIN, Account, Balance, Measure
from balances.state import ALWAYS, NEVER, micros
from engine.columns import StrColumn

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32: no I, L, O, U
RADIX = len(ALPHABET)
BODY = 16  # characters after the prefix; the last one is the check character
GROUP = 4  # characters per typed group
MAX_PREFIX = 8
MAX_BATCH = 1_000_000
INT64_MAX = 2**63 - 1

_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


class Voucher(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    code: str  # without dashes; :attr:`display` groups it
    serial: str  # <batch id>-000001, printed on the card
    batch_id: str
    unit: str
    amount: int  # in the unit's amounts (10**-decimals of it)
    valid_from: datetime
    valid_until: datetime
    redeemed_at: datetime | None = None
    redeemed_by: str = ""  # the account credited
    redeemed_op: str = ""

    @property
    def display(self) -> str:
        """The code as people type it: the prefix, then groups of four."""
        return display(self.code)


class _Batch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    batch_id: str
    count: int
    unit: str
    amount: int
    valid_from: datetime
    valid_until: datetime
    prefix: str
    codes: list[str]


_ENC = msgspec.msgpack.Encoder()
_VOUCHER = msgspec.msgpack.Decoder(Voucher)
_BATCH = msgspec.msgpack.Decoder(_Batch)
_TERMS = ("count", "unit", "amount", "valid_from", "valid_until", "prefix")


def _code_key(code: str) -> bytes:
    return b"vch/" + code.encode()


def _batch_key(batch_id: str) -> bytes:
    return b"vbt/" + batch_id.encode()


# -- codes -----------------------------------------------------------------------------
def _luhn(values: Sequence[int], factor: int) -> int:
    """Luhn mod N (N = RADIX): every other value from the right doubled, digits summed in base N."""
    total = 0
    for value in reversed(values):
        addend = factor * value
        total += addend // RADIX + addend % RADIX
        factor = 3 - factor
    return total


def check_character(payload: str) -> str:
    """The character that makes ``payload`` + it a valid code."""
    total = _luhn([_VALUE[c] for c in payload], 2)
    return ALPHABET[-total % RADIX]


def new_code(prefix: str = "") -> str:
    """A fresh random code (without dashes) starting with ``prefix``."""
    bits = secrets.randbits(5 * (BODY - 1))  # 5 bits a character: uniform over the alphabet
    payload = prefix + "".join(ALPHABET[(bits >> 5 * i) & (RADIX - 1)] for i in range(BODY - 1))
    return payload + check_character(payload)


def normalize(text: str) -> str:
    """The code ``text`` stands for, without dashes; a typo raises :class:`VoucherMistypedError`."""
    code = text.upper().translate(_READS_AS)
    wrong = [c for c in code if c not in _VALUE]
    if wrong:
        msg = (
            f"voucher code {text!r}: {wrong[0]!r} is not used in voucher codes (they use"
            f" {ALPHABET}); check the code and type it again"
        )
        raise VoucherMistypedError(msg)
    if not BODY <= len(code) <= BODY + MAX_PREFIX:
        msg = (
            f"voucher code {text!r} has {len(code)} characters, a code has {BODY}"
            f" (up to {BODY + MAX_PREFIX} with a prefix); check the code and type it again"
        )
        raise VoucherMistypedError(msg)
    if _luhn([_VALUE[c] for c in code], 1) % RADIX:
        msg = (
            f"voucher code {text!r}: the check character does not match, so a character is"
            " mistyped or two are swapped; check the code and type it again"
        )
        raise VoucherMistypedError(msg)
    return code


def display(code: str) -> str:
    """``code`` as people type it: its prefix (if any), then groups of four."""
    prefix, body = code[:-BODY], code[-BODY:]
    groups = [body[i : i + GROUP] for i in range(0, BODY, GROUP)]
    return "-".join(([prefix] if prefix else []) + groups)


# -- issuing ---------------------------------------------------------------------------
def issue_batch(
    ledger: Ledger,
    *,
    batch_id: str,
    count: int,
    unit: str,
    amount: int,
    valid_from: datetime,
    valid_until: datetime,
    prefix: str = "",
) -> list[Voucher]:
    """``count`` vouchers worth ``amount`` of ``unit``, staged for the next checkpoint.

    Issuing ``batch_id`` again with the same terms returns the vouchers issued the
    first time (as they are now: redeemed or not); other terms are refused.
    """
    _check_terms(ledger, batch_id, count, unit, amount, valid_from, valid_until, prefix)
    raw = ledger.get(_batch_key(batch_id))
    if raw is not None:
        batch = _BATCH.decode(raw)
        _same_terms(batch, count, unit, amount, valid_from, valid_until, prefix)
        stored = ledger.get_many([_code_key(code) for code in batch.codes])
        return [_VOUCHER.decode(value) for value in stored if value is not None]
    codes = _fresh_codes(ledger, prefix, count)
    width = max(6, len(str(count)))
    template = Voucher(
        code="", serial="", batch_id=batch_id, unit=unit, amount=amount,
        valid_from=valid_from, valid_until=valid_until,
    )  # fmt: skip
    vouchers = []
    for n, code in enumerate(codes, start=1):
        voucher = msgspec.structs.replace(template, code=code, serial=f"{batch_id}-{n:0{width}d}")
        ledger.put(_code_key(code), _ENC.encode(voucher))
        vouchers.append(voucher)
    batch = _Batch(
        batch_id=batch_id, count=count, unit=unit, amount=amount, valid_from=valid_from,
        valid_until=valid_until, prefix=prefix, codes=codes,
    )  # fmt: skip
    ledger.put(_batch_key(batch_id), _ENC.encode(batch))
    return vouchers


def _check_terms(
    ledger: Ledger,
    batch_id: str,
    count: int,
    unit: str,
    amount: int,
    valid_from: datetime,
    valid_until: datetime,
    prefix: str,
) -> None:
    problem = ""
    if not batch_id or any(c.isspace() for c in batch_id):
        problem = f"batch id {batch_id!r} must be non-empty and without spaces"
    elif not 1 <= count <= MAX_BATCH:
        problem = f"count {count} is not in 1..{MAX_BATCH}"
    elif not 0 < amount <= INT64_MAX:
        problem = f"amount {amount} is not in 1..{INT64_MAX}"
    elif len(prefix) > MAX_PREFIX or any(c not in _VALUE for c in prefix):
        problem = (
            f"prefix {prefix!r} must be at most {MAX_PREFIX} characters of {ALPHABET}"
            " (no I, L, O or U, which read as digits)"
        )
    elif micros(valid_until, NEVER) <= micros(valid_from, ALWAYS):  # also refuses naive times
        problem = f"valid_until {valid_until.isoformat()} is not after valid_from"
    if problem:
        msg = f"voucher batch {batch_id!r}: {problem}"
        raise VoucherError(msg)
    ledger.state.units.require(unit)


def _same_terms(batch: _Batch, *terms: object) -> None:
    for name, wanted in zip(_TERMS, terms, strict=True):
        issued = getattr(batch, name)
        if issued != wanted:
            msg = (
                f"voucher batch {batch.batch_id!r} was issued with {name} {issued!r}, not"
                f" {wanted!r}; issuing a batch id again gives back its vouchers, so issue"
                " new terms under a new batch id"
            )
            raise VoucherBatchConflictError(msg)


def _fresh_codes(ledger: Ledger, prefix: str, count: int) -> list[str]:
    """``count`` new codes, none issued before (a clash is unlikely, but cheap to rule out)."""
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        drawn = [new_code(prefix) for _ in range(count - len(codes))]
        stored = ledger.get_many([_code_key(code) for code in drawn])
        for code, taken in zip(drawn, stored, strict=True):
            if taken is None and code not in seen:
                seen.add(code)
                codes.append(code)
    return codes


# -- redeeming -------------------------------------------------------------------------
def find(ledger: Ledger, code: str) -> Voucher:
    """The voucher ``code`` (typed in any accepted form) stands for."""
    canonical = normalize(code)
    raw = ledger.get(_code_key(canonical))
    if raw is None:
        msg = f"voucher code {display(canonical)} was never issued; check the code"
        raise VoucherUnknownError(msg)
    return _VOUCHER.decode(raw)


def redeem(ledger: Ledger, code: str, account_id: str, *, at: datetime, op_id: str) -> JournalEntry:
    """Credit voucher ``code`` to the account, once; the same ``op_id`` again returns the
    first result, another ``op_id`` finds the voucher redeemed. Errors change nothing."""
    canonical = normalize(code)
    at_us = micros(at, 0)
    first = ledger.replayed(op_id, "voucher", [canonical, account_id])
    if first is not None:
        return first[0]
    account = require_account(ledger, account_id)
    voucher = find(ledger, canonical)
    _check_redeemable(voucher, at)
    new = Balance(
        id=f"voucher:{voucher.serial}", unit=voucher.unit, valid_from=voucher.valid_from,
        valid_until=voucher.valid_until,
    )  # fmt: skip
    credit = plan_credit(ledger, account, voucher.unit, voucher.amount, at_us=at_us, new=new)
    entry = apply_credit(ledger, credit, "voucher", op_id, at_us)
    redeemed = msgspec.structs.replace(
        voucher, redeemed_at=at, redeemed_by=account_id, redeemed_op=op_id
    )
    ledger.put(_code_key(canonical), _ENC.encode(redeemed))
    ledger.remember_op(op_id, "voucher", [canonical, account_id], [entry])
    return entry


def _check_redeemable(voucher: Voucher, at: datetime) -> None:
    name = f"voucher {voucher.display} ({voucher.serial})"
    if voucher.redeemed_at is not None:
        msg = (
            f"{name} was redeemed already, at {voucher.redeemed_at.isoformat()} by account"
            f" {voucher.redeemed_by!r}"
        )
        raise VoucherAlreadyRedeemedError(msg)
    if at < voucher.valid_from:
        msg = f"{name} is valid from {voucher.valid_from.isoformat()}, not at {at.isoformat()}"
        raise VoucherNotYetValidError(msg)
    if at >= voucher.valid_until:
        msg = f"{name} expired at {voucher.valid_until.isoformat()}, before {at.isoformat()}"
        raise VoucherExpiredError(msg)


# -- shared by vouchers, loyalty and referral --------------------------------------------
def require_account(ledger: Ledger, account_id: str) -> Account:
    """The account ``account_id``; :class:`UnknownAccountError` if the ledger has none."""
    row = account_row(ledger, account_id)
    if row < 0:
        msg = f"unknown account {account_id!r}; create it first"
        raise UnknownAccountError(msg)
    return ledger.state.accounts[row]


def account_row(ledger: Ledger, account_id: str) -> int:
    """The state row of account ``account_id``, -1 if the ledger has none."""
    return int(ledger.state.account_rows(StrColumn.from_strings([account_id]))[0])


@dataclass(frozen=True, slots=True)
class Credit:
    """An amount to credit and where it lands: ``balance`` of ``account``, added first if
    ``new`` (a balance with amount 0) is given."""

    account: str
    balance: str
    amount: int
    new: Balance | None = None


def plan_credit(
    ledger: Ledger, account: Account, unit: str, amount: int, *, at_us: int, new: Balance
) -> Credit:
    """Where ``amount`` of ``unit`` lands in ``account`` at ``at_us`` (see the module's
    docstring); ``new`` is the balance to add if none fits. Changes nothing.

    An account not created yet (a referee) counts as holding only its main balance.
    """
    state = ledger.state
    index = state.units.require(unit)
    row = account_row(ledger, account.id)
    rows = state.chain(row) if row >= 0 else []
    amounts, bal = state.bal.arrays["amount"], state.bal.arrays
    if unit == account.currency:
        held = int(amounts[state.balance_row(row, MAIN)]) if row >= 0 else 0
        return _fits(Credit(account.id, MAIN, amount), held)
    for b in rows:
        usable = bal["filter"][b] < 0 and bal["from"][b] <= at_us < bal["until"][b]
        if int(bal["unit"][b]) == index and usable:
            return _fits(Credit(account.id, state.balance_ids[b], amount), int(amounts[b]))
    if state.units.units[index].measure is Measure.MONEY:
        msg = (
            f"account {account.id!r} is in {account.currency} and holds no {unit} balance:"
            f" {unit} credited to it could never be spent"
        )
        raise UnitNotHeldError(msg)
    taken = {state.balance_ids[b] for b in rows}
    balance_id, n = new.id, 1
    while balance_id in taken:
        n += 1
        balance_id = f"{new.id}#{n}"
    return Credit(account.id, balance_id, amount, msgspec.structs.replace(new, id=balance_id))


def _fits(credit: Credit, held: int) -> Credit:
    if held + credit.amount > INT64_MAX:
        msg = (
            f"account {credit.account!r}: crediting {credit.amount} to balance"
            f" {credit.balance!r} (holding {held}) would overflow it"
        )
        raise BalanceError(msg)
    return credit


def apply_credit(ledger: Ledger, credit: Credit, reason: str, ref: str, at_us: int) -> JournalEntry:
    """Make a planned credit: add its new balance if any, then journal the amount."""
    if credit.new is not None:
        ledger.add_balance(credit.account, credit.new)
    row = ledger.state.balance_row(account_row(ledger, credit.account), credit.balance)
    return ledger.change(row, credit.amount, reason, ref, at_us=at_us)
