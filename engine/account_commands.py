"""Commands on topic ``accounts``, keyed by account: create, top up, renew, grant.

Commands land in the same partition as the account's usage, so the worker
that owns the account applies them to the same ledger, in offset order.
All are safe to send again: an account that exists already is left as it
is (counted), a top-up or renewal with an ``op_id`` seen before changes
nothing, a granted balance that exists already is not granted again.

Billing sends :class:`Renew` (a prepaid recurring fee, debited from the main
balance only if it can cover it) and :class:`Grant` (a cycle's included
allowance as a balance). Each renewal answers with a :class:`RenewalOutcome`
on topic ``billing-events``, so billing learns whether it was paid or refused.

A provisioning client groups accounts by partition (see
:func:`engine.partitioning.partitions_of`) and sends one
:class:`CreateAccounts` per partition and chunk, so a million accounts are a
few hundred messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from balances.exceptions import BalanceError
from balances.ledger import Ledger
from balances.model import MAIN, Account, Balance
from engine.columns import StrColumn
from engine.partitioning import partitions_of
from tariffs.money import format_amount


class NewAccount(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    account: Account
    balances: list[Balance] = []


class CreateAccounts(
    msgspec.Struct, tag="create_accounts", frozen=True, forbid_unknown_fields=True
):
    accounts: list[NewAccount]


class TopUp(msgspec.Struct, tag="topup", frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: str
    balance: str
    amount: int  # amount units of the balance's unit
    op_id: str  # makes a resend safe


class Renew(msgspec.Struct, tag="renew", frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: str
    amount: int  # nanos of the account's currency
    op_id: str  # e.g. renew:<account>:<subscription>:<fee>:<cycle>
    subscription: str = ""
    day: str = ""  # first day of the renewed period (ISO, account-local)


class Grant(msgspec.Struct, tag="grant", frozen=True, forbid_unknown_fields=True, kw_only=True):
    account: str
    balance: Balance
    op_id: str


class RenewalOutcome(
    msgspec.Struct, tag="renewal", frozen=True, forbid_unknown_fields=True, kw_only=True
):
    """What a :class:`Renew` did: paid (``ok``) or refused with the balance it found."""

    op_id: str
    account: str
    subscription: str
    day: str
    amount: int
    ok: bool
    reason: str = ""


Command = CreateAccounts | TopUp | Renew | Grant
_DEC = msgspec.json.Decoder(Command)
_ENC = msgspec.json.Encoder()
CHUNK = 5_000  # accounts per message


@dataclass
class Applied:
    created: int = 0
    existing: int = 0
    topups: int = 0
    renewed: int = 0
    refused: int = 0
    granted: int = 0
    outcomes: list[RenewalOutcome] = field(default_factory=list)  # for topic billing-events


def decode_command(raw: bytes) -> Command:
    """One command (JSON); raises :class:`msgspec.ValidationError` / ``DecodeError``."""
    command: Command = _DEC.decode(raw)
    return command


def apply_command(ledger: Ledger, command: Command, applied: Applied) -> None:
    """Apply one command; raises :class:`BalanceError` for one that cannot apply."""
    if isinstance(command, TopUp):
        ledger.topup(command.account, command.balance, command.amount, op_id=command.op_id)
        applied.topups += 1
        return
    if isinstance(command, Renew):
        _renew(ledger, command, applied)
        return
    if isinstance(command, Grant):
        held = {b.id for b in ledger.balances(command.account)}
        if command.balance.id not in held:
            ledger.add_balance(command.account, command.balance, op_id=command.op_id)
            applied.granted += 1
        return
    ids = StrColumn.from_strings([n.account.id for n in command.accounts])
    new = np.flatnonzero(ledger.state.account_rows(ids) < 0).tolist()
    if len(set(ids.values_at(np.array(new, dtype=np.int64)))) != len(new):
        msg = "create_accounts: an account id appears twice in one command"
        raise BalanceError(msg)
    fresh = [command.accounts[i] for i in new]
    if fresh:
        ledger.create_accounts([n.account for n in fresh], [n.balances for n in fresh])
    applied.created += len(fresh)
    applied.existing += len(command.accounts) - len(fresh)


def _renew(ledger: Ledger, command: Renew, applied: Applied) -> None:
    entry = ledger.renew(command.account, command.amount, op_id=command.op_id)
    reason = ""
    if entry is None:
        main = next(b for b in ledger.balances(command.account) if b.id == MAIN)
        reason = (
            f"renewal refused: main balance {format_amount(main.amount - main.reserved)} "
            f"cannot cover the fee {format_amount(command.amount)}"
        )
        applied.refused += 1
    else:
        applied.renewed += 1
    applied.outcomes.append(
        RenewalOutcome(op_id=command.op_id, account=command.account,
                       subscription=command.subscription, day=command.day,
                       amount=command.amount, ok=entry is not None, reason=reason)
    )  # fmt: skip


def outcome_message(outcome: RenewalOutcome) -> tuple[bytes, bytes]:
    """``(key, value)`` of a renewal outcome on topic ``billing-events``."""
    return outcome.account.encode(), _ENC.encode(outcome)


def command_message(command: Command, partitions: int) -> tuple[int, bytes, bytes]:
    """``(partition, key, value)`` of one command for one account."""
    account = command.accounts[0].account.id if isinstance(command, CreateAccounts) else (
        command.account)  # fmt: skip
    part = int(partitions_of(StrColumn.from_strings([account]), partitions)[0])
    return part, account.encode(), _ENC.encode(command)


def create_messages(
    accounts: Sequence[Account], balances: Sequence[Sequence[Balance]], partitions: int
) -> list[tuple[int, bytes, bytes]]:
    """``(partition, key, value)`` messages creating ``accounts`` where their usage goes."""
    ids = StrColumn.from_strings([a.id for a in accounts])
    where = partitions_of(ids, partitions)
    messages = []
    for p in range(partitions):
        rows = np.flatnonzero(where == p).tolist()
        for lo in range(0, len(rows), CHUNK):
            chunk = [NewAccount(accounts[i], list(balances[i])) for i in rows[lo : lo + CHUNK]]
            key = chunk[0].account.id.encode()
            messages.append((p, key, _ENC.encode(CreateAccounts(chunk))))
    return messages
