"""``ratewire vouchers issue|redeem``: gift vouchers in a state folder.

``issue`` prints the batch (codes as people type them, serials, value,
validity); issuing the same batch id again prints the same vouchers.
``redeem`` credits one to an account, once. Bad input exits 2 and changes
nothing: the ledger is checkpointed only after a command succeeded.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from balances import vouchers
from balances.ledger import Ledger, open_ledger
from engine.cli_accounts import check_id, parse_quantity
from engine.exceptions import UsageInputError


def _instant(text: str, flag: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        msg = f"{flag} {text!r}: expected an ISO 8601 instant such as 2026-12-31T23:59:59Z"
        raise UsageInputError(msg) from None
    if at.tzinfo is None:
        msg = f"{flag} {text!r}: give a time zone offset (e.g. Z)"
        raise UsageInputError(msg)
    return at


def _voucher(v: vouchers.Voucher) -> dict[str, Any]:
    return {
        "code": v.display, "serial": v.serial, "unit": v.unit, "amount": v.amount,
        "valid_from": v.valid_from.isoformat(), "valid_until": v.valid_until.isoformat(),
        "redeemed_at": v.redeemed_at.isoformat() if v.redeemed_at else None,
        "redeemed_by": v.redeemed_by or None,
    }  # fmt: skip


def _dispatch(ledger: Ledger, args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "issue":
        if args.count <= 0:
            msg = f"--count {args.count}: must be positive"
            raise UsageInputError(msg)
        issued = vouchers.issue_batch(
            ledger,
            batch_id=check_id("batch id", args.batch),
            count=args.count,
            unit=args.unit,
            amount=parse_quantity(ledger, args.unit, args.amount),
            valid_from=_instant(args.valid_from, "--from"),
            valid_until=_instant(args.valid_until, "--until"),
            prefix=args.prefix,
        )
        return {"batch": args.batch, "vouchers": [_voucher(v) for v in issued]}
    entry = vouchers.redeem(
        ledger,
        args.code,
        check_id("account", args.account),
        at=datetime.now(UTC),
        op_id=check_id("op id", args.op_id),
    )
    return {"account": entry.account, "balance": entry.balance, "delta": entry.delta,
            "after": entry.after, "ref": entry.ref}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    ledger = open_ledger(args.state, args.units)
    try:
        answer = _dispatch(ledger, args)
        ledger.checkpoint()
        return answer
    finally:
        ledger.store.close()


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("vouchers", help="issue and redeem gift vouchers")
    actions = parser.add_subparsers(dest="action", required=True)
    issue = actions.add_parser("issue", help="issue a batch of vouchers")
    redeem = actions.add_parser("redeem", help="credit a voucher to an account")
    for p in (issue, redeem):
        p.add_argument("--state", required=True, type=Path, help="state folder (RocksDB)")
        p.add_argument("--units", type=Path, help="unit catalog (default: the sample units)")
        p.add_argument("--json", action="store_true")
    issue.add_argument("--batch", required=True, help="batch id (re-issuing it is safe)")
    issue.add_argument("--count", required=True, type=int)
    issue.add_argument("--unit", required=True, help="EUR, voice_seconds, data_bytes, …")
    issue.add_argument("--amount", required=True, help="money as 10.50; items as a count")
    issue.add_argument("--from", dest="valid_from", required=True, help="ISO 8601 instant")
    issue.add_argument("--until", dest="valid_until", required=True, help="ISO 8601 instant")
    issue.add_argument("--prefix", default="", help="up to 8 characters before the code")
    redeem.add_argument("--code", required=True)
    redeem.add_argument("--account", required=True)
    redeem.add_argument("--op-id", required=True, help="makes a retry safe")
