"""``ratewire billing …`` and ``ratewire invoices …``: close cycles, issue, send, search.

    billing run     --billing DIR --cycle C [--reseller R] [--segment S] [--bill-day D]
                    [--account A …] [--catalog F] [--balances DIR]
    billing accept  --billing DIR (--cycle C [--reseller R] [--account A …] | --invoice ID …)
    billing cancel  --billing DIR --invoice ID --reason TEXT
    billing send    --billing DIR (--cycle C … | --invoice ID …) --outbox DIR [--broker kafka://…]
    billing pay     --billing DIR --invoice ID --amount 12.34 --ref R
    invoices search --billing DIR [--min --max --from --to --status --reseller --cycle
                                   --dunning --account --currency] [--json]
    invoices show   ID --billing DIR [--format json|text|html]

Every command is safe to repeat: accepting, cancelling, paying (same ``--ref``)
and sending (without ``--resend``) again change nothing. Money is typed as
people read it (``12.34``), in the invoice's currency. Bad input exits 2 with
one line (or JSON with ``--json``) and changes nothing.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import msgspec

from billing.cycles import parse_cycle
from billing.exceptions import UnknownInvoiceError
from billing.invoices import InvoiceStore, as_day
from billing.model import InvoiceStatus
from billing.render import DEFAULT_DECIMALS, Renderer
from billing.search import STATUSES, Filters, as_row, money
from billing.storage import open_store
from engine import cli_billing_consume
from engine.cli_accounts import check_id
from engine.cli_common import whole_number
from engine.exceptions import RatewireError, UsageInputError

SEARCH_LIMIT = 100


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextmanager
def _invoices(path: Path) -> Iterator[InvoiceStore]:
    if not path.is_dir():
        msg = f"--billing {path}: no billing store there (`ratewire billing run` creates it)"
        raise UsageInputError(msg)
    with open_store(path) as store:
        yield InvoiceStore(store)


class CatalogDecimals(Mapping[str, int]):
    """A catalog's minor decimals per currency (``Catalog.minor_decimals``), else the table's."""

    def __init__(self, catalog: Any) -> None:
        self._catalog = catalog

    def __getitem__(self, currency: str) -> int:
        try:
            return int(self._catalog.minor_decimals(currency))
        except RatewireError:
            return DEFAULT_DECIMALS[currency]

    def __iter__(self) -> Iterator[str]:
        return iter(DEFAULT_DECIMALS)

    def __len__(self) -> int:
        return len(DEFAULT_DECIMALS)


def _decimals(catalog: Path | None) -> Mapping[str, int]:
    if catalog is None:
        return DEFAULT_DECIMALS
    catalogs = importlib.import_module("billing.catalog")  # billing maths, only when asked for
    return CatalogDecimals(catalogs.load_catalog(catalog))


def _nanos(text: str, flag: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    scaled = value.scaleb(9) if value.is_finite() else value
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        msg = f"{flag} {text!r}: expected an amount such as 12.34 (at most 9 decimals)"
        raise UsageInputError(msg)
    return int(scaled)


def parse_payment(text: str, currency: str, decimals: Mapping[str, int]) -> int:
    """``--amount`` as typed → nanos: positive, at most the currency's minor decimals."""
    places = decimals.get(currency, 2)
    nanos = _nanos(text, "--amount")
    if nanos <= 0 or nanos % 10 ** (9 - places):
        msg = f"--amount {text!r}: give a positive {currency} amount with at most {places} decimals"
        raise UsageInputError(msg)
    return nanos


def _day(text: str | None, flag: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        msg = f"{flag} {text!r}: expected a date such as 2026-12-01"
        raise UsageInputError(msg) from None


def _selection(invoices: InvoiceStore, args: argparse.Namespace) -> list[str]:
    if args.invoice:
        if args.reseller or args.account:
            msg = "--reseller and --account select within a --cycle; with --invoice give ids only"
            raise UsageInputError(msg)
        return list(dict.fromkeys(args.invoice))
    parse_cycle(args.cycle)
    accounts = [check_id("account", a) for a in args.account or []]
    ids = invoices.ids(args.cycle, reseller=args.reseller, accounts=accounts or None)
    if not ids:
        msg = (
            f"no invoices for cycle {args.cycle}"
            + (f", reseller {args.reseller!r}" if args.reseller else "")
            + (" and those accounts" if accounts else "")
            + f" (make drafts with `ratewire billing run --cycle {args.cycle}`)"
        )
        raise UnknownInvoiceError(msg)
    return ids


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from billing.run import run_cycle  # the lead's mass run; imported only when used

    summary = run_cycle(
        args.billing, args.cycle, accounts=args.account or None, reseller=args.reseller,
        segment=args.segment, bill_day=args.bill_day, catalog_path=args.catalog,
        actor=args.actor, balances=args.balances, processes=args.processes,
    )  # fmt: skip
    answer: dict[str, Any] = summary.as_dict()
    return answer


def _renew(args: argparse.Namespace) -> dict[str, Any]:
    from billing.accounts import AccountGroup
    from billing.run import renew_cycle

    group = AccountGroup(frozenset(args.account) if args.account else None, args.reseller)
    answer: dict[str, Any] = renew_cycle(args.billing, args.cycle, args.broker,
                                         catalog_path=args.catalog, group=group)  # fmt: skip
    return answer


def _accept(args: argparse.Namespace) -> dict[str, Any]:
    with _invoices(args.billing) as invoices:
        day = as_day(_day(args.day, "--day") or invoices.today())
        ids = _selection(invoices, args)
        issued = invoices.issue(ids, args.actor, day)
        numbers = [inv.number for inv in issued]
    return {"issued": len(issued), "unchanged": len(ids) - len(issued), "numbers": numbers,
            "day": day.isoformat()}  # fmt: skip


def _cancel(args: argparse.Namespace) -> dict[str, Any]:
    with _invoices(args.billing) as invoices:
        credit = invoices.cancel(args.invoice, args.actor, args.reason, day=_day(args.day, "--day"))
        original = invoices.require(args.invoice)
    return {"cancelled": original.invoice_id, "number": original.number,
            "credit_note": credit.invoice_id, "credit_number": credit.number,
            "credited": money(-credit.amount_due, credit.currency, DEFAULT_DECIMALS),
            "currency": credit.currency}  # fmt: skip


def _send(args: argparse.Namespace) -> dict[str, Any]:
    from billing.outbox import KafkaNotifier, send

    renderer = Renderer(args.templates, decimals=_decimals(args.catalog))
    with _invoices(args.billing) as invoices, ExitStack() as stack:
        ids = _selection(invoices, args)
        if not args.invoice:  # a cycle: what can be sent of it
            sendable = (InvoiceStatus.ISSUED, InvoiceStatus.PAID)
            ids = [i for i in ids if invoices.require(i).status in sendable]
        notify = stack.enter_context(KafkaNotifier(args.broker)) if args.broker else None
        summary = send(invoices, ids, outbox=args.outbox, renderer=renderer, actor=args.actor,
                       resend=args.resend, notify=notify)  # fmt: skip
    return {**summary.as_dict(), "outbox": str(args.outbox)}


def _pay(args: argparse.Namespace) -> dict[str, Any]:
    decimals = _decimals(args.catalog)
    with _invoices(args.billing) as invoices:
        inv = invoices.require(args.invoice)
        amount = parse_payment(args.amount, inv.currency, decimals)
        inv = invoices.record_payment(args.invoice, amount, args.actor, args.ref)
    return {"invoice": inv.invoice_id, "number": inv.number, "status": inv.status.value,
            "paid": money(inv.paid, inv.currency, decimals),
            "amount_due": money(inv.amount_due, inv.currency, decimals),
            "currency": inv.currency}  # fmt: skip


def _search(args: argparse.Namespace) -> dict[str, Any]:
    decimals = _decimals(args.catalog)
    if args.cycle:
        parse_cycle(args.cycle)
    filters = Filters(
        min_total=None if args.min is None else _nanos(args.min, "--min"),
        max_total=None if args.max is None else _nanos(args.max, "--max"),
        from_day=_day(args.from_day, "--from"), to_day=_day(args.to_day, "--to"),
        status=args.status, reseller=args.reseller, cycle=args.cycle,
        dunning=None if args.dunning is None else ("" if args.dunning == "none" else args.dunning),
        account=args.account, currency=args.currency,
    )  # fmt: skip
    with _invoices(args.billing) as invoices:
        today = _day(args.today, "--today") or invoices.today()
        found = invoices.search(filters, today=today)
    shown = found if args.limit <= 0 else found[: args.limit]
    return {"count": len(found), "shown": len(shown),
            "invoices": [as_row(s, decimals, today) for s in shown]}  # fmt: skip


def _show(args: argparse.Namespace) -> dict[str, Any] | str:
    with _invoices(args.billing) as invoices:
        inv = invoices.require(args.id)
        original = invoices.get(inv.credit_note_for) if inv.credit_note_for else None
        payments = invoices.payments(inv.invoice_id)
    if args.format in ("text", "html"):
        renderer = Renderer(args.templates, decimals=_decimals(args.catalog))
        return renderer.render(inv, "txt" if args.format == "text" else "html", original=original)
    answer: dict[str, Any] = msgspec.to_builtins(inv)
    answer["payments"] = msgspec.to_builtins(payments)
    answer["links"] = {
        "account": f"ratewire accounts show --account {inv.account} --state <balances>",
        "account_invoices": f"ratewire invoices search --account {inv.account}",
        "credit_note_for": inv.credit_note_for,
    }
    return answer


def _print(answer: dict[str, Any] | str, args: argparse.Namespace) -> None:
    if isinstance(answer, str):
        sys.stdout.write(answer)
    elif args.json or getattr(args, "format", "") == "json":
        sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
    else:
        sys.stdout.write(_text(answer, args))


def _text(answer: dict[str, Any], args: argparse.Namespace) -> str:
    if args.command == "invoices":  # search
        rows = [f"{r['number'] or '-':<20} {r['invoice_id']:<32} {r['status']:<9}"
                f" {r['total']:>12} {r['currency']} due {r['due_day'] or '-'}"
                for r in answer["invoices"]]  # fmt: skip
        more = f" (first {answer['shown']} shown; --limit 0 for all)" if answer["shown"] < answer[
            "count"] else ""  # fmt: skip
        return "".join(row + "\n" for row in rows) + f"{answer['count']} invoices{more}\n"
    return msgspec.json.format(msgspec.json.encode(answer)).decode() + "\n"


def main(args: argparse.Namespace) -> int:
    """Run one ``billing`` or ``invoices`` command; errors go up to ``engine.cli.main``."""
    if args.action == "consume":
        return cli_billing_consume.main(args)
    handlers = {"run": _run, "renew": _renew, "accept": _accept, "cancel": _cancel,
                "send": _send, "pay": _pay, "search": _search, "show": _show}  # fmt: skip
    _print(handlers[args.action](args), args)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--billing", required=True, type=Path, help="billing store (RocksDB folder)")
    p.add_argument("--actor", default=_actor(), help="who does it, for the history")
    p.add_argument("--json", action="store_true", help="print JSON")


def _select(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cycle", help="every invoice of a cycle, e.g. 2026-11")
    which.add_argument("--invoice", action="append", help="an invoice id (repeatable)")
    p.add_argument("--reseller", help="with --cycle: only this reseller's invoices")
    p.add_argument("--account", action="append", help="with --cycle: only these accounts")


def add_parser(commands: Any) -> None:
    billing = commands.add_parser("billing", help="close cycles; accept, cancel, send, pay")
    actions = billing.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="draft one invoice per account for a cycle")
    _common(run)
    run.add_argument("--cycle", required=True, help="e.g. 2026-11")
    run.add_argument("--account", action="append", help="only these accounts (repeatable)")
    run.add_argument("--reseller", help="only this reseller's accounts")
    run.add_argument("--segment", help="only this segment, e.g. business")
    run.add_argument("--bill-day", type=int, help="only accounts billed on this day (1-28)")
    run.add_argument("--catalog", type=Path, help="product catalog (default: the sample)")
    run.add_argument("--balances", type=Path, help="balances state folder: prepaid renewals")
    run.add_argument(
        "--processes", type=whole_number, default=os.cpu_count() or 1,
        help="draft large runs in this many processes (default: one per core)",
    )  # fmt: skip
    renew = actions.add_parser("renew", help="ask the workers to renew prepaid fees and grant "
                               "allowances for the cycle after --cycle")  # fmt: skip
    _common(renew)
    renew.add_argument("--cycle", required=True, help="the cycle being closed, e.g. 2026-11")
    renew.add_argument("--broker", required=True, help="kafka://host:port of the workers")
    renew.add_argument("--catalog", type=Path, help="product catalog (default: the sample)")
    renew.add_argument("--reseller", help="only this reseller's accounts")
    renew.add_argument("--account", action="append", help="only these accounts (repeatable)")
    cli_billing_consume.add_consume_parser(actions)
    accept = actions.add_parser("accept", help="issue drafts: gap-free numbers, immutable")
    _common(accept)
    _select(accept)
    accept.add_argument("--day", help="issue day (default today), e.g. 2026-12-01")
    cancel = actions.add_parser("cancel", help="void an issued invoice with a credit note")
    _common(cancel)
    cancel.add_argument("--invoice", required=True)
    cancel.add_argument("--reason", required=True, help="printed on the credit note")
    cancel.add_argument("--day", help="credit note day (default today)")
    send = actions.add_parser("send", help="render issued invoices into an outbox")
    _common(send)
    _select(send)
    send.add_argument("--outbox", required=True, type=Path, help="folder a mailer picks up")
    send.add_argument("--templates", type=Path, help="the billing team's templates folder")
    send.add_argument("--broker", help="kafka://host:port: also announce on topic notifications")
    send.add_argument("--resend", action="store_true", help="send already sent ones again")
    send.add_argument("--catalog", type=Path, help="catalog for currency decimals")
    pay = actions.add_parser("pay", help="record a payment (once per --ref)")
    _common(pay)
    pay.add_argument("--invoice", required=True)
    pay.add_argument("--amount", required=True, help="in the invoice's currency, e.g. 12.34")
    pay.add_argument("--ref", required=True, help="bank reference: makes a retry safe")
    pay.add_argument("--catalog", type=Path, help="catalog for currency decimals")

    invoices = commands.add_parser("invoices", help="search and show invoices")
    found = invoices.add_subparsers(dest="action", required=True)
    search = found.add_parser("search", help="find invoices by amount, date, status, …")
    _common(search)
    search.add_argument("--min", help="smallest total, e.g. 10.00")
    search.add_argument("--max", help="largest total")
    search.add_argument("--from", dest="from_day", help="issued on or after, e.g. 2026-12-01")
    search.add_argument("--to", dest="to_day", help="issued on or before")
    search.add_argument("--status", choices=STATUSES)
    search.add_argument("--reseller", help='a reseller id ("" is the operator)')
    search.add_argument("--cycle", help="e.g. 2026-11")
    search.add_argument("--dunning", help="a dunning level, or none")
    search.add_argument("--account")
    search.add_argument("--currency")
    search.add_argument("--today", help="the day overdue is judged on (default today, UTC)")
    search.add_argument("--limit", type=int, default=SEARCH_LIMIT, help="0 for all")
    search.add_argument("--catalog", type=Path, help="catalog for currency decimals")
    show = found.add_parser("show", help="one invoice: lines, history, links")
    show.add_argument("id", help="invoice id, e.g. 2026-11/acc-1")
    _common(show)
    show.add_argument("--format", choices=("json", "text", "html"), default="json")
    show.add_argument("--templates", type=Path, help="the billing team's templates folder")
    show.add_argument("--catalog", type=Path, help="catalog for currency decimals")
