"""The ``ratewire`` command line: argument parsing and exit codes, nothing else.

Exit codes: 0 success, 1 a load test's check failed, 2 bad input (unusable
arguments, tariff or input file; an unratable ``cost`` query). Errors are one
clear line (or JSON with ``--json``), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgspec

from balances.ledger import open_ledger
from engine import (
    cli_accounts,
    cli_billing,
    cli_ingest,
    cli_loadtest,
    cli_sessions,
    cli_vouchers,
    cli_worker,
)
from engine.cli_common import tariff_args
from engine.exceptions import RatewireError
from tariffs.loader import load_tariff
from tariffs.rating import Rater

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratewire", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    cost = commands.add_parser("cost", help="price one usage query and explain it")
    tariff_args(cost)
    cost.add_argument("--tenant", help="default: the first tenant of the plan's profiles")
    cost.add_argument("--category", required=True, help="call, sms, data, video, …")
    cost.add_argument("--subject", required=True)
    cost.add_argument("--destination", default="", help="called number; may be empty for data")
    cost.add_argument("--start", required=True, help="ISO 8601 instant, e.g. 2026-11-02T09:00Z")
    cost.add_argument("--usage", required=True, help="45s, 10m45s, 1h, or a count like 2048")
    cost.add_argument("--json", action="store_true", help="print JSON")

    rate = commands.add_parser("rate", help="rate a file of usage records")
    tariff_args(rate)
    rate.add_argument("--in", dest="input", required=True, type=Path, help="records file")
    rate.add_argument("--out", required=True, type=Path, help="rated records (.jsonl)")
    rate.add_argument("--rejects", required=True, type=Path, help="rejected records (.jsonl)")
    rate.add_argument("--format", choices=("jsonl", "json", "msgpack", "columnar"), default=None,
                      help="input format (default: by file extension)")  # fmt: skip
    rate.add_argument("--state", type=Path, help="balances store (RocksDB folder) to debit")
    rate.add_argument("--units", type=Path, help="unit catalog (default: the sample units)")
    rate.add_argument("--loyalty", type=Path, help="loyalty rules: points earned with --state")
    rate.add_argument("--json", action="store_true", help="print the summary as JSON")
    cli_accounts.add_parser(commands)
    cli_vouchers.add_parser(commands)
    cli_sessions.add_parsers(commands)
    cli_ingest.add_parser(commands)
    cli_worker.add_parser(commands)
    cli_billing.add_parser(commands)
    cli_loadtest.add_parser(commands)
    return parser


def _print_json(data: Any) -> None:
    sys.stdout.write(msgspec.json.encode(data).decode() + "\n")


def _run_cost(args: argparse.Namespace) -> int:
    from engine.cost import cost

    tariff = load_tariff(args.tariffs, currency=args.currency, timezone=args.timezone)
    tenant = args.tenant or (tariff.profiles[0].tenant if tariff.profiles else "")
    answer = cost(
        Rater(tariff),
        tenant=tenant,
        category=args.category,
        subject=args.subject,
        destination=args.destination,
        start=args.start,
        usage=args.usage,
    )
    if args.json:
        _print_json(answer)
    elif "error" in answer:
        sys.stderr.write(f"{answer['error']}: {answer['message']}\n")
    else:
        sys.stdout.write(f"{answer['cost']} {answer['currency']}\n")
    return EXIT_BAD_INPUT if "error" in answer else EXIT_OK


def _run_rate(args: argparse.Namespace) -> int:
    from balances.debit import Debitor
    from balances.loyalty import load_loyalty
    from engine.rate_file import StatefulRating, rate_file

    tariff = load_tariff(args.tariffs, currency=args.currency, timezone=args.timezone)
    rater = Rater(tariff)
    with ExitStack() as stack:
        state = None
        if args.state:
            ledger = open_ledger(args.state, args.units)
            stack.callback(ledger.close)
            earn = load_loyalty(ledger.state.units, args.loyalty).earn if args.loyalty else {}
            state = StatefulRating(ledger, Debitor(ledger.state, rater, earn))
        summary = rate_file(
            rater,
            args.input,
            out=args.out,
            rejects=args.rejects,
            fmt=args.format,
            progress=sys.stderr.isatty() and not args.json,
            state=state,
        )
    if args.json:
        _print_json(summary.to_dict())
    else:
        sys.stdout.write(summary.render())
    return EXIT_OK


def _run_state_command(args: argparse.Namespace) -> int:
    """Commands on a state folder: accounts, vouchers, authorize, commit, release."""
    run = {"accounts": cli_accounts.run, "vouchers": cli_vouchers.run}.get(
        args.command, cli_sessions.run
    )
    answer = run(args)
    if args.json:
        _print_json(answer)
    else:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(answer)).decode() + "\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    runners = {
        "cost": _run_cost,
        "rate": _run_rate,
        "accounts": _run_state_command,
        "vouchers": _run_state_command,
        "authorize": _run_state_command,
        "commit": _run_state_command,
        "release": _run_state_command,
        "ingest": cli_ingest.main,
        "worker": cli_worker.main,
        "billing": cli_billing.main,
        "invoices": cli_billing.main,
        "loadtest": cli_loadtest.main,
    }
    try:
        return runners[args.command](args)
    except RatewireError as exc:
        if getattr(args, "json", False):
            _print_json({"error": exc.code, "message": str(exc)})
        else:
            sys.stderr.write(f"ratewire {args.command}: {exc}\n")
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
