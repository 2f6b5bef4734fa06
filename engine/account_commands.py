"""Provisioning on topic ``accounts``: create accounts and top them up, keyed by account.

Commands land in the same partition as the account's usage, so the worker
that owns the account applies them to the same ledger, in offset order.
Both are safe to send again: an account that exists already is left as it
is (counted), a top-up with an ``op_id`` seen before changes nothing.

A provisioning client groups accounts by partition (see
:func:`engine.partitioning.partitions_of`) and sends one
:class:`CreateAccounts` per partition and chunk, so a million accounts are a
few hundred messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from balances.exceptions import BalanceError
from balances.ledger import Ledger
from balances.model import Account, Balance
from engine.columns import StrColumn
from engine.partitioning import partitions_of


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


Command = CreateAccounts | TopUp
_DEC = msgspec.json.Decoder(Command)
_ENC = msgspec.json.Encoder()
CHUNK = 5_000  # accounts per message


@dataclass
class Applied:
    created: int = 0
    existing: int = 0
    topups: int = 0


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


def topup_message(top_up: TopUp, partitions: int) -> tuple[int, bytes, bytes]:
    """``(partition, key, value)`` of a top-up command."""
    part = int(partitions_of(StrColumn.from_strings([top_up.account]), partitions)[0])
    return part, top_up.account.encode(), _ENC.encode(top_up)
