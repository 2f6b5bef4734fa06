"""``make demo`` step 6: close November for the demo's accounts and send the invoices.

The accounts of step 5 get billing profiles (billed on the 1st, Berlin, German
VAT) and a plan from the sample catalog (postpaid and hybrid: Mobile M;
prepaid: Go prepaid), subscribed mid-October so November shows an advance
fee and its proration. The day step 5 debited is summed per account as the
invoicing consumer sums ``rated-cdrs``; then the mass run drafts November,
``accept`` numbers the invoices and ``send`` renders them into an outbox.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from balances.ledger import open_ledger
from balances.model import MAIN
from balances.model import Mode as BalanceMode
from billing import accounts
from billing.catalog import load_catalog
from billing.invoices import InvoiceStore
from billing.model import BillingProfile, Mode, OneTimeCharge, SubscriptionAction
from billing.model import SubscriptionEvent as Event
from billing.outbox import send
from billing.render import Renderer
from billing.run import run_on
from billing.storage import open_store
from billing.usage import ClosedCycles, ProfileCache, UsageBook
from loadtest.accounts import scenario_accounts
from loadtest.generator import Scenario
from tariffs.money import format_amount

MODES = {BalanceMode.PREPAID: Mode.PREPAID, BalanceMode.POSTPAID: Mode.POSTPAID,
         BalanceMode.HYBRID: Mode.HYBRID}  # fmt: skip
EUR = 1_000_000_000
PLANS = {Mode.PREPAID: "GO_PREPAID", Mode.POSTPAID: "MOBILE_M", Mode.HYBRID: "MOBILE_M"}
CHUNK_LINES = 20_000


def billing_step(out: Path, scenario: Scenario, say: Callable[[str], object]) -> None:
    store_path, outbox = out / "billing", out / "outbox"
    shutil.rmtree(store_path, ignore_errors=True)
    shutil.rmtree(outbox, ignore_errors=True)
    book, _ = scenario_accounts(scenario)
    profiles = [BillingProfile(account=a.id, mode=MODES[a.mode], region="DE",
                               timezone="Europe/Berlin", reseller="mvno-blue" if i % 10 == 9
                               else "") for i, a in enumerate(book)]  # fmt: skip
    say(f"6. billing: {len(profiles):,} accounts billed on the 1st (Berlin, VAT 19 %), on "
        "Mobile M (postpaid) or Go prepaid since 2026-10-15;\n"
        "   step 5's day summed per account as the billing consumer sums rated-cdrs\n")  # fmt: skip
    with open_store(store_path) as store:
        accounts.import_profiles(store, profiles)
        writer = accounts.EventWriter(store)
        for p in profiles:
            writer.subscription(Event(event_id=f"{p.account}:sub", account=p.account,
                                      subscription=f"{p.account}:s1", day="2026-10-15",
                                      action=SubscriptionAction.SUBSCRIBE,
                                      product=PLANS[p.mode]))  # fmt: skip
        for p in profiles[::50]:
            writer.charge(OneTimeCharge(charge_id=f"{p.account}:phone", account=p.account,
                                        fee="DEVICE_PHONE", day="2026-11-20"))  # fmt: skip
        store.write(writer.batch)
        usage = UsageBook(store)
        closed, known = ClosedCycles(store), ProfileCache(store)
        with (out / "rated-state.jsonl").open("rb") as rated:
            while lines := rated.readlines(CHUNK_LINES * 600):
                usage.apply(lines, known, closed)
        say("   ratewire billing run --balances out/demo/state --cycle 2026-10, then 2026-11 "
            "(prepaid fees paid from main balances)\n")  # fmt: skip
        catalog = load_catalog()
        ledger = open_ledger(out / "state")
        for p in [p for p in profiles if p.mode is Mode.PREPAID][::2]:  # half can pay
            ledger.topup(p.account, MAIN, 25 * EUR, op_id=f"demo:{p.account}")
        october = run_on(store, "2026-10", catalog=catalog, ledger=ledger)
        started = time.perf_counter()
        summary = run_on(store, "2026-11", catalog=catalog, ledger=ledger)
        took = time.perf_counter() - started
        ledger.close()
        paid = october.renewals + summary.renewals
        refused = october.renewals_refused + summary.renewals_refused
        totals = ", ".join(f"{format_amount(n)} {c}" for c, n in summary.totals.items())
        say(f"   {summary.drafted:,} November drafts in {took:.2f} s "
            f"({summary.drafted / took:,.0f} accounts/s), totalling {totals};\n"
            f"   prepaid renewals (half the prepaid accounts topped up 25 EUR): {paid:,} paid "
            f"from main, {refused:,} refused (the plan suspended from that period)\n")  # fmt: skip
        invoices = InvoiceStore(store)
        ids = sorted(i.invoice_id for i in invoices.iter("2026-11"))
        issued = invoices.issue(ids, "demo", "2026-12-01")
        started = time.perf_counter()
        sent = send(invoices, ids, outbox=outbox, renderer=Renderer(decimals=catalog.decimals),
                    actor="demo")  # fmt: skip
        took = time.perf_counter() - started
        ours = [i.number for i in issued if not i.issuer]
        theirs = [i.number for i in issued if i.issuer]
        say(f"   ratewire billing accept: {len(issued):,} issued, gap-free per issuer: "
            f"{ours[0]} … {ours[-1]}, {theirs[0]} … {theirs[-1]} (reseller mvno-blue)\n"
            f"   ratewire billing send: {sent.sent:,} invoices rendered to {outbox}/ "
            f"(HTML, text, JSON) in {took:.1f} s\n\n")  # fmt: skip
        first = invoices.require(f"2026-11/{book[0].id}")
        text = (outbox / "operator" / f"{first.number}.txt").read_text()
        say(f"   {first.number}.txt:\n" + "".join(f"   | {line}\n" for line in
                                               text.splitlines()))  # fmt: skip
