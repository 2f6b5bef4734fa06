"""Referrals: an account created with a referrer credits both of them a reward, once.

:func:`create_with_referrer` creates the account (``Account.referrer`` names
an existing account) and credits the :class:`Reward`'s two sides, the
referrer's first, journaled as ``referral`` at the account's ``created``
time; each lands where :mod:`balances.vouchers` says a credit lands (a new
balance is ``referral:<referee id>``). It is refused, with nothing changed,
for a self-referral, an unknown referrer, a loop (the referrer was referred,
directly or through others, by the new account) and a referee rewarded
before. The referral is kept as ``rfr/<referee id>`` beside the balances,
durable at the next checkpoint.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from balances.exceptions import (
    AccountExistsError,
    ReferralAlreadyRewardedError,
    ReferralError,
    ReferralLoopError,
    SelfReferralError,
    UnknownReferrerError,
)
from balances.ledger import JournalEntry, Ledger
from balances.model import Account, Balance
from balances.state import micros
from balances.vouchers import account_row, apply_credit, plan_credit


class Grant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    unit: str
    amount: int  # in the unit's amounts (10**-decimals of it); 0 grants nothing

    def __post_init__(self) -> None:
        if self.amount < 0:
            msg = f"a referral grant of {self.amount} {self.unit} is negative"
            raise ValueError(msg)


class Reward(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a referral gives each side (the units may differ: points for one, credit for
    the other)."""

    referrer: Grant
    referee: Grant


class Referral(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    referee: str
    referrer: str
    at: datetime  # the referee's creation
    op_id: str


_ENC = msgspec.msgpack.Encoder()
_REFERRAL = msgspec.msgpack.Decoder(Referral)


def _key(referee: str) -> bytes:
    return b"rfr/" + referee.encode()


def referral_of(ledger: Ledger, referee: str) -> Referral | None:
    """The rewarded referral of account ``referee``, if there was one."""
    raw = ledger.get(_key(referee))
    return None if raw is None else _REFERRAL.decode(raw)


def create_with_referrer(
    ledger: Ledger, account: Account, *, reward: Reward, op_id: str
) -> list[JournalEntry]:
    """Create ``account`` and credit ``reward`` to it and its referrer, once per ``op_id``.

    Returns the journal entries (referrer's, then referee's; a side granted 0
    has none). Errors change nothing; the same ``op_id`` again returns the first result.
    """
    at_us = micros(account.created, 0)
    key: list[str | int] = [account.id, account.referrer]
    for grant in (reward.referrer, reward.referee):
        key += [grant.unit, grant.amount]
    first = ledger.replayed(op_id, "referral", key)
    if first is not None:
        return first
    referrer = _check(ledger, account)
    ledger.state.units.money(account.currency)  # what create_account checks, before any change
    credits = []
    for side, grant in ((referrer, reward.referrer), (account, reward.referee)):
        if grant.amount:
            new = Balance(id=f"referral:{account.id}", unit=grant.unit)
            credits.append(
                plan_credit(ledger, side, grant.unit, grant.amount, at_us=at_us, new=new)
            )
    # Nothing below can fail: the checks above are create_account's and the plans'.
    ledger.create_account(account)
    entries = [apply_credit(ledger, c, "referral", op_id, at_us) for c in credits]
    referral = Referral(referee=account.id, referrer=referrer.id, at=account.created, op_id=op_id)
    ledger.put(_key(account.id), _ENC.encode(referral))
    ledger.remember_op(op_id, "referral", key, entries)
    return entries


def _check(ledger: Ledger, account: Account) -> Account:
    """The referrer, if ``account`` may be created with it; else the reason it may not."""
    new, name = account.id, account.referrer
    if not name:
        msg = f"account {new!r} names no referrer; create it with Ledger.create_account"
        raise ReferralError(msg)
    if name == new:
        msg = f"account {new!r} names itself as its referrer"
        raise SelfReferralError(msg)
    state = ledger.state
    row = account_row(ledger, name)
    if row < 0:
        msg = f"account {new!r} names referrer {name!r}, which is not an account"
        raise UnknownReferrerError(msg)
    chain = [name]
    while chain[-1] and chain[-1] != new and chain.count(chain[-1]) == 1:
        up = account_row(ledger, chain[-1])
        chain.append(state.accounts[up].referrer if up >= 0 else "")
    if chain[-1] == new:
        via = f" through {', '.join(map(repr, chain[1:-1]))}" if len(chain) > 2 else ""
        msg = (
            f"referral loop: {name!r} was referred{via} by {new!r} ({' ← '.join(chain)}),"
            f" so {new!r} cannot be referred by {name!r}"
        )
        raise ReferralLoopError(msg)
    before = referral_of(ledger, new)
    if before is not None:
        msg = (
            f"account {new!r} was referred by {before.referrer!r} at {before.at.isoformat()}"
            f" and that referral was rewarded (op_id {before.op_id!r}); a referee is"
            " rewarded once"
        )
        raise ReferralAlreadyRewardedError(msg)
    if account_row(ledger, new) >= 0:
        msg = f"account {new!r} exists already; a referral creates a new account"
        raise AccountExistsError(msg)
    return state.accounts[row]
