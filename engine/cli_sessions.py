"""``ratewire authorize|commit|release``: real-time prepaid sessions on a state folder.

``authorize`` prices the request with the tariff, reserves what the balances
can pay and prints the grant (usage granted, reservation id, what is held);
``commit`` charges the actual usage and frees the rest; ``release`` frees
everything. Reservations are kept in the state folder between commands.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from balances.debit import Debitor
from balances.ledger import open_ledger
from balances.reservations import Reservations
from engine.cli_accounts import check_id
from engine.cli_common import tariff_args
from engine.cost import parse_start, parse_usage
from tariffs.loader import load_tariff
from tariffs.rating import Rater


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Carry out one session command; checkpoint only if it succeeded."""
    tariff = load_tariff(args.tariffs, currency=args.currency, timezone=args.timezone)
    rater = Rater(tariff)
    ledger = open_ledger(args.state, args.units)
    try:
        sessions = Reservations(ledger, Debitor(ledger.state, rater))
        if args.command == "authorize":
            usage, _ = parse_usage(args.usage)
            start = parse_start(args.start) if args.start else datetime.now(UTC)
            answer: Any = sessions.authorize(
                check_id("account", args.account), category=args.category,
                destination=args.destination, requested=usage, start=start,
                tenant=args.tenant or "", subject=args.subject or "", session=args.session or "",
            )  # fmt: skip
        elif args.command == "commit":
            usage, _ = parse_usage(args.usage)
            answer = sessions.commit(args.reservation, usage, op_id=args.op_id or "")
        else:
            answer = sessions.release(args.reservation)
        ledger.checkpoint()
        return dict(msgspec.to_builtins(answer))
    finally:
        ledger.store.close()


def add_parsers(commands: Any) -> None:
    authorize = commands.add_parser("authorize", help="reserve units for a session")
    commit = commands.add_parser("commit", help="charge a reservation's actual usage")
    release = commands.add_parser("release", help="free a reservation")
    for p in (authorize, commit, release):
        p.add_argument("--state", required=True, type=Path, help="state folder (RocksDB)")
        tariff_args(p)
        p.add_argument("--units", type=Path, help="unit catalog (default: the sample units)")
        p.add_argument("--json", action="store_true")
    authorize.add_argument("--account", required=True)
    authorize.add_argument("--category", required=True, help="call, sms, data, video, …")
    authorize.add_argument("--destination", default="")
    authorize.add_argument("--usage", required=True, help="requested: 5m, 300s, or a count")
    authorize.add_argument("--start", help="ISO 8601 instant (default: now)")
    authorize.add_argument("--tenant", help="default: the account's tenant")
    authorize.add_argument("--subject", help="default: the account")
    authorize.add_argument("--session", help="the switch's session id, kept with the grant")
    for p in (commit, release):
        p.add_argument("--reservation", required=True)
    commit.add_argument("--usage", required=True, help="actual usage: 3m20s, 200s, or a count")
    commit.add_argument("--op-id", help="makes a retry safe")
