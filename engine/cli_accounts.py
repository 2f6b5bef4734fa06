"""``ratewire accounts …``: create, show, top up, adjust accounts and change their mode.

Amounts are typed as people read them: money as decimals of the currency
(``10.50``), items as whole units of what they count (seconds, bytes,
messages). Every command prints JSON with ``--json``; bad input exits 2 and
changes nothing (the ledger is only checkpointed after a command succeeded).
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from balances.exceptions import BalanceError
from balances.ledger import Ledger, open_ledger
from balances.model import Account, Balance, Filter, Measure, Mode
from balances.referral import Grant, Reward, create_with_referrer
from engine.exceptions import UsageInputError
from tariffs.money import format_units

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}$")


def check_id(kind: str, value: str) -> str:
    if not ID.match(value):
        msg = (
            f"{kind} {value!r}: use 1 to 64 letters, digits and . _ : @ + - "
            "(starting with a letter or digit)"
        )
        raise UsageInputError(msg)
    return value


def parse_quantity(ledger: Ledger, unit: str, text: str, *, signed: bool = False) -> int:
    """``text`` in ``unit``'s display form → integer amount units."""
    spec = ledger.state.units[unit]
    try:
        value = Decimal(text)
    except InvalidOperation:
        msg = f"amount {text!r} is not a number"
        raise UsageInputError(msg) from None
    if not value.is_finite() or (value <= 0 and not signed) or (signed and value == 0):
        msg = f"amount {text!r} must be {'non-zero' if signed else 'positive'}"
        raise UsageInputError(msg)
    scale = spec.decimals if spec.measure is Measure.MONEY else 0
    units = value.scaleb(scale)
    if units != units.to_integral_value():
        msg = f"amount {text!r} has more precision than {unit} holds ({scale} decimals)"
        raise UsageInputError(msg)
    return int(units)


def parse_balance(ledger: Ledger, spec: str) -> Balance:
    """``id=free,unit=voice_seconds,amount=1800,weight=10,until=2026-12-01T00:00Z,…``."""
    fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    if "id" not in fields or "unit" not in fields:
        msg = f"--balance {spec!r}: give at least id=… and unit=…"
        raise UsageInputError(msg)
    ledger.state.units.require(fields["unit"])

    def when(key: str) -> datetime | None:
        return datetime.fromisoformat(fields[key]) if key in fields else None

    def names(key: str) -> tuple[str, ...]:
        return tuple(x for x in fields.get(key, "").split(";") if x)

    amount = fields.get("amount")
    return Balance(
        id=check_id("balance id", fields["id"]),
        unit=fields["unit"],
        amount=parse_quantity(ledger, fields["unit"], amount) if amount else 0,
        weight=int(fields.get("weight", "0")),
        valid_from=when("from"),
        valid_until=when("until"),
        filter=Filter(names("categories"), names("destinations"), names("services")),
    )


def show(ledger: Ledger, account_id: str) -> dict[str, Any]:
    state = ledger.state
    account = state.accounts[state.row_of(account_id)]
    row = state.row_of(account_id)
    mode = {0: "prepaid", 1: "postpaid", 2: "hybrid"}[int(state.acc.arrays["mode"][row])]
    balances = []
    for view in ledger.balances(account_id):
        unit = state.units[view.unit]
        scale = unit.decimals if unit.measure is Measure.MONEY else 0
        balances.append({
            "id": view.id, "unit": view.unit, "amount": format_units(view.amount, scale),
            "reserved": format_units(view.reserved, scale), "weight": view.weight,
        })  # fmt: skip
    return {"account": account.id, "tenant": account.tenant, "currency": account.currency,
            "mode": mode, "credit_limit": format_units(int(state.acc.arrays["limit"][row]), 9),
            "balances": balances}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Carry out one ``accounts`` command; checkpoint only if it succeeded."""
    ledger = open_ledger(args.state, args.units)
    try:
        answer = _dispatch(ledger, args)
        ledger.checkpoint()
        return answer
    finally:
        ledger.store.close()


def _dispatch(ledger: Ledger, args: argparse.Namespace) -> dict[str, Any]:
    account_id = check_id("account", args.account)
    if args.action == "create":
        limit = parse_quantity(ledger, args.currency, args.credit_limit) if args.credit_limit else 0
        account = Account(
            id=account_id, tenant=args.tenant, currency=args.currency, mode=Mode(args.mode),
            credit_limit=limit, created=datetime.now(UTC), referrer=args.referrer or "",
        )  # fmt: skip
        ledger.state.units.money(args.currency)
        balances = [parse_balance(ledger, spec) for spec in args.balance or []]
        if not args.referrer:
            ledger.create_account(account, balances)
            return show(ledger, account_id)
        if not args.referral_reward:
            msg = "--referrer needs --referral-reward UNIT:AMOUNT (what each side gets, once)"
            raise UsageInputError(msg)
        unit, _, amount = args.referral_reward.partition(":")
        ledger.state.units.require(unit)
        grant = Grant(unit=unit, amount=parse_quantity(ledger, unit, amount))
        check_id("referrer", args.referrer)
        create_with_referrer(ledger, account, reward=Reward(referrer=grant, referee=grant),
                             op_id=f"referral:{account_id}")  # fmt: skip
        for spec in balances:
            ledger.add_balance(account_id, spec)
        return show(ledger, account_id)
    if args.action == "show":
        return show(ledger, account_id)
    if args.action == "set-mode":
        currency = ledger.state.accounts[ledger.state.row_of(account_id)].currency
        limit = parse_quantity(ledger, currency, args.credit_limit) if args.credit_limit else 0
        ledger.set_mode(account_id, Mode(args.mode), limit, at=datetime.now(UTC))
        return show(ledger, account_id)
    row = ledger.state.row_of(account_id)
    balance = args.balance_id
    unit = ledger.state.units.units[int(ledger.state.bal.arrays["unit"][
        ledger.state.balance_row(row, balance)])].name  # fmt: skip
    op_id = check_id("op id", args.op_id)
    if args.action == "topup":
        entry = ledger.topup(account_id, balance, parse_quantity(ledger, unit, args.amount),
                             op_id=op_id)  # fmt: skip
    else:
        delta = parse_quantity(ledger, unit, args.amount, signed=True)
        entry = ledger.adjust(account_id, balance, delta, op_id=op_id)
    return {"entry": {"balance": entry.balance, "delta": entry.delta, "before": entry.before,
                      "after": entry.after, "reason": entry.reason, "ref": entry.ref},
            "account": show(ledger, account_id)}  # fmt: skip


def add_parser(commands: Any) -> None:
    accounts = commands.add_parser("accounts", help="create, show, top up, adjust accounts")
    actions = accounts.add_subparsers(dest="action", required=True)
    actions_help = (
        ("create", "create an account"),
        ("show", "show balances"),
        ("topup", "credit a balance"),
        ("adjust", "correct a balance"),
        ("set-mode", "change prepaid/postpaid/hybrid and the credit limit"),
    )
    for name, helptext in actions_help:
        p = actions.add_parser(name, help=helptext)
        p.add_argument("--state", required=True, type=Path, help="state folder (RocksDB)")
        p.add_argument("--units", type=Path, help="unit catalog (default: the sample units)")
        p.add_argument("--account", required=True)
        p.add_argument("--json", action="store_true")
        if name == "create":
            p.add_argument("--tenant", required=True)
            p.add_argument("--currency", default="EUR")
            p.add_argument("--mode", choices=[m.value for m in Mode], default="prepaid")
            p.add_argument("--credit-limit", default="", help="postpaid/hybrid, in the currency")
            p.add_argument("--referrer", default="", help="an existing account that referred it")
            p.add_argument("--referral-reward", default="",
                           help="UNIT:AMOUNT credited once to both, e.g. EUR:5")  # fmt: skip
            p.add_argument(
                "--balance",
                action="append",
                help="id=…,unit=…,amount=…,weight=…,until=…,destinations=A;B",
            )
        if name == "set-mode":
            p.add_argument("--mode", choices=[m.value for m in Mode], required=True)
            p.add_argument("--credit-limit", default="", help="postpaid/hybrid, in the currency")
        if name in ("topup", "adjust"):
            p.add_argument("--balance", dest="balance_id", default="main")
            p.add_argument("--amount", required=True, help="money as 10.50; items as a count")
            p.add_argument("--op-id", required=True, help="makes a retry safe")


__all__ = ["BalanceError", "add_parser", "run"]
