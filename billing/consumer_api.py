"""The billing consumer's HTTP API, on its Faust web server.

    GET  /invoices?status=&cycle=&account=&reseller=&min=&max=&from=&to=&dunning=&currency=
                   &today=&limit=          search (as ``ratewire invoices search --json``)
    GET  /invoices/{id}                    one invoice: lines, history, payments, links
    GET  /billing/usage/{account}?cycle=   an account's usage totals for a cycle
    POST /billing/run {"cycle": "2026-11", "accounts": [...], "reseller": …, "segment": …,
                       "bill_day": …, "actor": …}   draft a cycle's invoices now
    POST /billing/renew {"cycle": "2026-11", …}   ask the workers to renew prepaid fees and
                                           grant allowances for the cycle after ``cycle``
    GET  /health                           assignment, counters, offsets

The consumer holds the billing store, so a run happens here: in a thread,
while the agent waits for the store lock (usage is never added to a cycle
while it is being closed). Errors are ``{"error": CODE, "message": …}`` with
a 4xx status. With an API token configured, every route but ``/health``
wants ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from billing.accounts import AccountGroup
from billing.cycles import parse_cycle
from billing.exceptions import BillingError, UnknownInvoiceError
from billing.invoices import InvoiceStore
from billing.search import STATUSES, Filters, as_row
from billing.usage import load_totals
from engine.api import ApiError, check_token

if TYPE_CHECKING:
    from billing.consumer import Runtime

Handler = Callable[[web.Request], Awaitable[Any]]


class RunBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cycle: str
    accounts: list[str] | None = None
    reseller: str | None = None
    segment: str | None = None
    bill_day: int | None = None
    actor: str = "http:billing-run"


def _bad(message: str) -> ApiError:
    return ApiError(400, "INVALID_REQUEST", message)


def _nanos(text: str, name: str) -> int:
    try:
        value = Decimal(text).scaleb(9)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value != value.to_integral_value():
        msg = f"{name}={text!r}: expected an amount such as 12.34 (at most 9 decimals)"
        raise _bad(msg)
    return int(value)


def _day(text: str | None, name: str) -> str | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        msg = f"{name}={text!r}: expected a date such as 2026-12-01"
        raise _bad(msg) from None


def filters_of(query: Mapping[str, str]) -> Filters:
    """Search filters from query parameters (the names of ``ratewire invoices search``)."""
    known = {"status", "cycle", "account", "reseller", "min", "max", "from", "to", "dunning",
             "currency", "today", "limit"}  # fmt: skip
    unknown = sorted(set(query) - known)
    if unknown:
        msg = f"unknown query parameter(s) {', '.join(unknown)}; use {', '.join(sorted(known))}"
        raise _bad(msg)
    status = query.get("status")
    if status is not None and status not in STATUSES:
        msg = f"status={status!r}: use one of {', '.join(STATUSES)}"
        raise _bad(msg)
    if "cycle" in query:
        parse_cycle(query["cycle"])
    dunning = query.get("dunning")
    return Filters(
        min_total=_nanos(query["min"], "min") if "min" in query else None,
        max_total=_nanos(query["max"], "max") if "max" in query else None,
        from_day=_day(query.get("from"), "from"), to_day=_day(query.get("to"), "to"),
        status=status, reseller=query.get("reseller"), cycle=query.get("cycle"),
        dunning=None if dunning is None else ("" if dunning == "none" else dunning),
        account=query.get("account"), currency=query.get("currency"),
    )  # fmt: skip


def _body(raw: bytes, type_: type[RunBody]) -> RunBody:
    try:
        return msgspec.json.decode(raw or b"{}", type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = f"request body: {exc}"
        raise _bad(msg) from None


class BillingApi:
    """Handlers bound to one consumer's runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    @property
    def invoices(self) -> InvoiceStore:
        return InvoiceStore(self.rt.billing.store)

    @cached_property
    def catalog(self) -> Any:
        from billing.catalog import SAMPLE_CATALOG, load_catalog

        return load_catalog(self.rt.config.catalog or SAMPLE_CATALOG)

    @cached_property
    def decimals(self) -> Mapping[str, int]:
        from engine.cli_billing import CatalogDecimals

        return CatalogDecimals(self.catalog)

    # -- routes --------------------------------------------------------------------------
    async def search(self, request: web.Request) -> Any:
        filters = filters_of(request.query)
        invoices = self.invoices
        today = _day(request.query.get("today"), "today") or invoices.today()
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            msg = "limit: expected a whole number (0 for all)"
            raise _bad(msg) from None
        found = invoices.search(filters, today=today)
        shown = found if limit <= 0 else found[:limit]
        return {"count": len(found), "shown": len(shown),
                "invoices": [as_row(s, self.decimals, today) for s in shown]}  # fmt: skip

    async def show(self, request: web.Request) -> Any:
        invoices = self.invoices
        inv = invoices.require(request.match_info["invoice_id"])
        answer: dict[str, Any] = msgspec.to_builtins(inv)
        answer["status"] = inv.status.value  # a default, left out of the encoding otherwise
        answer["payments"] = msgspec.to_builtins(invoices.payments(inv.invoice_id))
        answer["links"] = {
            "account_invoices": f"/invoices?account={inv.account}",
            "account_usage": f"/billing/usage/{inv.account}?cycle={inv.cycle}",
            "credit_note_for": f"/invoices/{inv.credit_note_for}" if inv.credit_note_for else "",
        }
        return answer

    async def usage(self, request: web.Request) -> Any:
        account, cycle = request.match_info["account"], request.query.get("cycle", "")
        parse_cycle(cycle)
        totals = load_totals(self.rt.billing.store, account, cycle)
        if totals is None:
            msg = f"no usage for account {account!r} in cycle {cycle}"
            raise ApiError(404, "USAGE_UNKNOWN", msg)
        return {"account": account, "cycle": cycle, "mode": totals.mode.value,
                "records": totals.records, "usage": msgspec.to_builtins(totals.usage),
                "late": msgspec.to_builtins(totals.late),
                "balances": msgspec.to_builtins(totals.balances)}  # fmt: skip

    async def run(self, request: web.Request) -> Any:
        body = _body(await request.read(), RunBody)
        parse_cycle(body.cycle)
        from billing.run import run_on  # the mass run, loaded when first used

        group = AccountGroup(frozenset(body.accounts) if body.accounts else None, body.reseller,
                             body.segment, body.bill_day)  # fmt: skip
        billing = self.rt.billing
        async with self.rt.lock:  # the agent waits: no usage enters a cycle being closed
            try:
                summary = await asyncio.to_thread(
                    run_on, billing.store, body.cycle, group=group, catalog=self.catalog,
                    actor=body.actor, processes=os.cpu_count() or 1,
                )  # fmt: skip
            finally:
                billing.closed.forget()  # marks moved
        answer: dict[str, Any] = summary.as_dict()
        return answer

    async def renew(self, request: web.Request) -> Any:
        """Send the renewals and grants of the cycle after ``cycle`` to the workers."""
        body = _body(await request.read(), RunBody)
        parse_cycle(body.cycle)
        from billing.run import renewal_commands
        from engine.account_commands import Renew
        from engine.produce import send_commands

        group = AccountGroup(frozenset(body.accounts) if body.accounts else None, body.reseller,
                             body.segment, body.bill_day)  # fmt: skip
        async with self.rt.lock:
            asked = await asyncio.to_thread(renewal_commands, self.rt.billing.store, body.cycle,
                                            group=group, catalog=self.catalog)  # fmt: skip
        await send_commands(self.rt.config.bootstrap, asked)
        renews = sum(isinstance(c, Renew) for c in asked)
        return {"renewals_sent": renews, "grants_sent": len(asked) - renews}

    async def health(self, request: web.Request) -> Any:
        billing = self.rt.billing
        return {"assigned": self.rt.assigned, "counts": dict(billing.counts),
                "offsets": {f"{t}[{p}]": o for (t, p), o in sorted(billing.offsets.items())},
                "remembered_ids": billing.book.seen.stats(),
                "accounts_waiting_for_profile": len(billing.book.orphan_accounts)}  # fmt: skip

    # -- plumbing ------------------------------------------------------------------------
    def route(self, handler: Handler, *, open_: bool = False) -> Handler:
        async def serve(request: web.Request) -> web.Response:
            try:
                if not open_:
                    self._authorized(request)
                return _json(200, await handler(request))
            except ApiError as exc:
                return _json(exc.status, {"error": exc.code, "message": str(exc)})
            except UnknownInvoiceError as exc:
                return _json(404, {"error": exc.code, "message": str(exc)})
            except BillingError as exc:
                return _json(400, {"error": exc.code, "message": str(exc)})

        return serve

    def _authorized(self, request: web.Request) -> None:
        check_token(request.headers.get("Authorization", ""), self.rt.config.api_token)


def _json(status: int, body: Any) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type="application/json")  # fmt: skip


def add_routes(router: web.UrlDispatcher, runtime: Runtime) -> None:
    api = BillingApi(runtime)
    router.add_get("/invoices", api.route(api.search))
    router.add_get("/invoices/{invoice_id:.+}", api.route(api.show))
    router.add_get("/billing/usage/{account}", api.route(api.usage))
    router.add_post("/billing/run", api.route(api.run))
    router.add_post("/billing/renew", api.route(api.renew))
    router.add_get("/health", api.route(api.health, open_=True))
