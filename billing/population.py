"""A seeded billing population for one cycle: what a mass run meets in production.

:func:`build` writes ``N`` accounts into a billing store through the same
paths production uses: profiles by :func:`~billing.accounts.import_profiles`,
subscription events and one-time charges by
:class:`~billing.accounts.EventWriter`, usage as rated JSON lines (the
worker's :class:`~engine.rated_output.RatedRecord` format) through
:meth:`billing.usage.UsageBook.apply` in consumer-sized batches (64 messages
of 1,000 lines), and prepaid renewal outcomes as the consumer records them
(the keys :meth:`~billing.accounts.EventWriter.renewal` writes). The same
:class:`Spec` builds the same population.

With ``history`` (the default) the store is built in the order a month
passes: the previous cycle's subscriptions and usage, its mass run and its
accept (so every established account has an issued previous invoice, which
the run of ``cycle`` reads), then this cycle's events, charges and usage,
late usage for the closed previous cycle included. New customers of the
cycle get their profile only then, so they have no previous invoice.

Shares (of the accounts; see :data:`MODES` and the other tables): modes
prepaid 30 %, postpaid 55 %, hybrid 15 %; issuers: the operator 85 %, reseller
``mvno-blue`` 10 % and ``sn-telecom`` (XOF, Senegal) 5 %; business 20 % of the
non-prepaid EUR accounts; bill days 1–28; in the cycle, 5 % subscribe, 5 %
change plan, 3 % end, 4 % suspend (half of them resume), 3 % are suspended
since the previous cycle; 20 % have an add-on; 4 % a one-time charge; ~2 %
late usage; 3 % of prepaid renewals refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from balances.store import Store
from billing.accounts import REFUSED, RENEWAL, EventWriter, import_profiles
from billing.catalog import Catalog
from billing.charges import Renewal, midnight_us, renewals
from billing.cycles import next_cycle, parse_cycle
from billing.invoices import InvoiceStore
from billing.model import (
    BillingProfile,
    Mode,
    OneTimeCharge,
    SubscriptionAction,
    SubscriptionEvent,
)
from billing.run import run_on
from billing.usage import ClosedCycles, UsageBook
from engine.rated_output import BalanceUse, RatedRecord, RatedSpan
from tariffs.money import format_amount

CHUNK = 20_000  # accounts per store write while building
LINES_PER_MESSAGE = 1_000  # rated lines per message, as a worker sends them
MESSAGES_PER_BATCH = 64  # messages per consumer batch (billing.consumer's batch_events)
ACTOR = "population"

MODES = ((Mode.PREPAID, 0.30), (Mode.POSTPAID, 0.55), (Mode.HYBRID, 0.15))
RESELLERS = (("", 0.85), ("mvno-blue", 0.10), ("sn-telecom", 0.05))  # the last bills in XOF
ZONES = (  # EUR accounts: (time zone, tax region, local language, share)
    ("Europe/Berlin", "DE", "de", 0.50), ("Europe/Paris", "FR", "fr", 0.15),
    ("Europe/Vienna", "AT", "de", 0.10), ("Europe/Luxembourg", "LU", "fr", 0.05),
    ("Europe/Zurich", "CH", "de", 0.10), ("America/Chicago", "US-TX", "en", 0.10),
)  # fmt: skip
XOF_ZONE = ("Africa/Dakar", "SN", "fr")
STEADY, STARTS, CHANGES, ENDS, SUSPENDS, SUSPENDED = range(6)  # what the cycle brings
SCENARIOS = (0.80, 0.05, 0.05, 0.03, 0.04, 0.03)
ADD_ONS = ((None, 0.80), ("ROAMING_YEAR", 0.15), ("VIDEO_DAY_PASS", 0.05))
ONE_TIME = ((None, 0.96), ("DEVICE_PHONE", 0.01), ("SIM_SWAP", 0.02), ("DEPOSIT", 0.01))
BUSINESS_SHARE, LATE_SHARE, REFUSED_SHARE, QUIET_SHARE = 0.20, 0.02, 0.03, 0.05
# category → (share, ((zone, destination prefix, share, price nanos per minute/message/MB) …))
USAGE = {
    "call": (0.45, (("GERMANY", "4930", 0.40, 90_000_000), ("DE_MOBILE", "4917", 0.35,
                    120_000_000), ("EUROPE", "3314", 0.15, 250_000_000),
                    ("WORLD", "1212", 0.05, 900_000_000), ("DE_FREEPHONE", "49800", 0.05, 0))),
    "sms": (0.20, (("DE_MOBILE", "4917", 0.60, 90_000_000), ("GERMANY", "4930", 0.20,
                   90_000_000), ("EUROPE", "3314", 0.20, 190_000_000))),
    "data": (0.30, (("GERMANY", "49", 0.90, 5_000_000), ("EUROPE", "33", 0.10, 10_000_000))),
    "video": (0.05, (("GERMANY", "49", 1.0, 500_000_000),)),
}  # fmt: skip
XOF_PER_EUR = 656


@dataclass(frozen=True, slots=True)
class Spec:
    accounts: int
    cycle: str = "2026-11"
    seed: int = 7
    records: float = 5.0  # mean rated records per account and cycle
    history: bool = True  # build, run and accept the previous cycle first


@dataclass(slots=True)
class BuildReport:
    accounts: int = 0
    profiles: int = 0
    subscription_events: int = 0
    one_time_charges: int = 0
    records: int = 0  # rated lines applied (both cycles)
    late: int = 0
    renewal_outcomes: int = 0
    refused: int = 0
    previous_drafted: int = 0
    previous_issued: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        return out


def account_id(i: int) -> str:
    return f"acc{i + 1:07d}"


def _pick(rng: np.random.Generator, shares: tuple[tuple[Any, float], ...], n: int) -> Any:
    return rng.choice(len(shares), size=n, p=[s for _, s in shares])


class Plan:
    """Every account's draws, made once from the seed (numpy arrays, one entry per account)."""

    def __init__(self, spec: Spec) -> None:
        n = spec.accounts
        rng = np.random.default_rng(spec.seed)
        self.spec = spec
        self.mode = _pick(rng, MODES, n)
        self.reseller = _pick(rng, RESELLERS, n)
        xof = self.reseller == 2
        self.zone = np.where(xof, -1, rng.choice(len(ZONES), size=n, p=[z[3] for z in ZONES]))
        self.local_language = rng.random(n) < 0.7
        self.business = (rng.random(n) < BUSINESS_SHARE) & (self.mode != 0) & ~xof
        self.bill_day = rng.integers(1, 29, size=n)
        self.scenario = rng.choice(len(SCENARIOS), size=n, p=SCENARIOS)
        self.large = rng.random(n) < 0.4  # MOBILE_L rather than MOBILE_M
        self.add_on = np.where(xof, 0, _pick(rng, ADD_ONS, n))
        self.one_time = _pick(rng, ONE_TIME, n)
        self.since = rng.integers(1, 700, size=n)  # days before the previous cycle
        self.add_on_since = rng.integers(1, 400, size=n)
        self.day = rng.integers(1, 28, size=n)  # day of the cycle something happens
        resume = rng.integers(1, 14, size=n)
        self.resume = np.where((rng.random(n) < 0.5) & (self.day + resume < 28), resume, 0)
        self.charge_day = rng.integers(0, 28, size=n)
        quiet = rng.random(n) < QUIET_SHARE
        self.records = np.where(quiet, 0, rng.poisson(spec.records, size=n))
        self.records_before = np.where(quiet, 0, rng.poisson(spec.records, size=n))
        self.late = (rng.random(n) < LATE_SHARE) * rng.integers(1, 3, size=n)
        self.refused = rng.random(n) < REFUSED_SHARE
        new = self.scenario == STARTS
        self.records_before[new] = 0
        self.late[new] = 0


class Population:
    """Builds a :class:`Spec` into a store (see the module doc)."""

    def __init__(self, spec: Spec, catalog: Catalog) -> None:
        self.spec, self.catalog, self.plan = spec, catalog, Plan(spec)
        self.cycle = spec.cycle
        self.previous = next_cycle(spec.cycle, -1)
        self.covering = {  # product → category → (allowance id, unit)
            p.id: {c: (a.id, a.unit) for a in p.allowances for c in a.categories}
            for p in catalog.products.values()
        }
        self._texts: dict[int, str] = {}
        self._next = {c: next_cycle(c) for c in (self.previous, self.cycle)}
        self._firsts: dict[tuple[str, int], int] = {}
        self._span = RatedSpan("DR", "*any", "RT", 0, 0, 60, 60, 1, "0.01", 1, "0.00")

    def _text(self, nanos: int) -> str:
        text = self._texts.get(nanos)
        if text is None:
            text = self._texts[nanos] = format_amount(nanos)
        return text

    # -- per account ------------------------------------------------------------------
    def profile(self, i: int) -> BillingProfile:
        p, reseller = self.plan, RESELLERS[int(self.plan.reseller[i])][0]
        if p.zone[i] < 0:
            tz, region, language, currency = *XOF_ZONE, "XOF"
        else:
            tz, region, language, _ = ZONES[int(p.zone[i])]
            currency = "EUR"
        return BillingProfile(
            account=account_id(i), currency=currency, mode=MODES[int(p.mode[i])][0],
            bill_day=int(p.bill_day[i]), timezone=tz, region=region, reseller=reseller,
            segment="business" if p.business[i] else "consumer",
            language=language if p.local_language[i] else "en",
            payment_terms_days=30 if p.business[i] else 14,
        )  # fmt: skip

    def product(self, i: int) -> str:
        p = self.plan
        if p.zone[i] < 0:
            return "SN_JAMONO"
        if p.mode[i] == 0:
            return "GO_PREPAID"
        if p.business[i]:
            return "BUSINESS_PRO"
        return "MOBILE_L" if p.large[i] else "MOBILE_M"

    def first_day(self, cycle: str, i: int) -> int:
        key = (cycle, int(self.plan.bill_day[i]))
        found = self._firsts.get(key)
        if found is None:
            year, month = parse_cycle(cycle)
            found = self._firsts[key] = date(year, month, key[1]).toordinal()
        return found

    def events(self, i: int, during: bool) -> list[SubscriptionEvent]:
        """The account's events before ``cycle`` (``during=False``) or within it."""
        p, account, product = self.plan, account_id(i), self.product(i)
        before, first = self.first_day(self.previous, i), self.first_day(self.cycle, i)
        scenario, k = int(p.scenario[i]), int(p.day[i])
        out: list[tuple[str, str, SubscriptionAction, int, str]] = []
        if not during:
            if scenario != STARTS:
                out.append(
                    ("s1", "sub", SubscriptionAction.SUBSCRIBE, before - p.since[i], product)
                )
            if p.add_on[i]:
                add_on = ADD_ONS[int(p.add_on[i])][0] or ""
                out.append(("s2", "sub", SubscriptionAction.SUBSCRIBE,
                            before - p.add_on_since[i], add_on))  # fmt: skip
            if scenario == SUSPENDED:
                out.append(("s1", "susp", SubscriptionAction.SUSPEND, before + k, ""))
        elif scenario == STARTS:
            out.append(("s1", "sub", SubscriptionAction.SUBSCRIBE, first + k, product))
        elif scenario == CHANGES and product in ("MOBILE_M", "MOBILE_L"):
            other = "MOBILE_M" if product == "MOBILE_L" else "MOBILE_L"
            out.append(("s1", "chg", SubscriptionAction.CHANGE, first + k, other))
        elif scenario == ENDS:
            out.append(("s1", "end", SubscriptionAction.END, first + k, ""))
        elif scenario == SUSPENDS:
            out.append(("s1", "susp", SubscriptionAction.SUSPEND, first + k, ""))
            if p.resume[i]:
                out.append(("s1", "res", SubscriptionAction.RESUME, first + k + p.resume[i], ""))
        return [
            SubscriptionEvent(
                event_id=f"{sub}:{what}:{day}",
                account=account,
                subscription=sub,
                action=action,
                day=date.fromordinal(int(day)).isoformat(),
                product=prod,
            )
            for sub, what, action, day, prod in out
        ]

    def charge(self, i: int) -> OneTimeCharge | None:
        p = self.plan
        fee = ONE_TIME[int(p.one_time[i])][0]
        if fee is None:
            return None
        fee = "ACTIVATION_XOF" if p.zone[i] < 0 else fee
        day = date.fromordinal(self.first_day(self.cycle, i) + int(p.charge_day[i]))
        return OneTimeCharge(charge_id=f"otc:{self.cycle}:{fee}", account=account_id(i), fee=fee,
                             day=day.isoformat())  # fmt: skip

    # -- usage ------------------------------------------------------------------------
    def window(self, cycle: str, i: int) -> tuple[int, int]:
        """First day and end (ordinals) of the account's usage in ``cycle``: the days
        its main subscription is in use, so a new customer calls only once subscribed."""
        first = self.first_day(cycle, i)
        end = self.first_day(self._next[cycle], i)
        if cycle == self.cycle:
            scenario, k = int(self.plan.scenario[i]), int(self.plan.day[i])
            if scenario == STARTS:
                return first + k, end
            if scenario == ENDS:
                return first, first + k
        return first, end

    def rated(self, profiles: Mapping[int, BillingProfile], cycle: str,
              counts: npt.NDArray[np.int64], rng: np.random.Generator,
              tag: str = "") -> list[RatedRecord]:  # fmt: skip
        """Rated records dated in ``cycle``: ``counts[k]`` for the k-th of ``profiles``."""
        total = int(counts.sum())
        if not total:
            return []
        owners = list(profiles)
        windows = np.array([self.window(cycle, n) if c else (0, 1)
                            for n, c in zip(owners, counts.tolist(), strict=True)])  # fmt: skip
        first = np.repeat(windows[:, 0], counts)
        days = first + (rng.random(total) * np.repeat(windows[:, 1] - windows[:, 0], counts))
        categories = list(USAGE)
        draws = zip(
            np.repeat(np.arange(len(owners)), counts).tolist(),
            np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts),
            rng.choice(len(categories), size=total, p=[USAGE[c][0] for c in categories]).tolist(),
            days.astype(np.int64).tolist(), rng.integers(3_600, 79_200, total).tolist(),
            rng.random((total, 3)).tolist(), strict=True,
        )  # fmt: skip
        products = [self.product(n) if c else "" for n, c in zip(owners, counts.tolist(),
                                                                 strict=True)]  # fmt: skip
        out = []
        for k, r, kind, day, second, random in draws:
            profile = profiles[owners[k]]
            start_us = midnight_us(day, profile.timezone) + second * 1_000_000
            out.append(self._record(profile, products[k], cycle, f"{cycle}{tag}:{r}",
                                    categories[kind], random, start_us))  # fmt: skip
        return out

    def _record(self, profile: BillingProfile, product: str, cycle: str, ident: str,
                category: str, draws: tuple[float, float, float],
                start_us: int) -> RatedRecord:  # fmt: skip
        pick, size, cover = draws
        zones = USAGE[category][1]
        zone, prefix, price = zones[-1][0], zones[-1][1], zones[-1][3]
        for z, pre, share, cost in zones:
            if pick < share:
                zone, prefix, price = z, pre, cost
                break
            pick -= share
        if category == "call":
            usage = 5 + int(size * 1_800)
            cost = usage * price // 60
        elif category == "data":
            usage = 100_000 + int(size * 500_000_000)
            cost = usage // 1_000_000 * price
        else:
            usage = 1 + int(size * 3)
            cost = usage * price
        currency = profile.currency
        if currency == "XOF":
            cost = cost * XOF_PER_EUR // 10**9 * 10**9
        cost -= cost % 100_000  # rated amounts to 0.0001
        covering = self.covering[product].get(category)
        mode, balances = profile.mode, None
        charged, covered = cost, 0
        if covering is not None and cover < 0.6:  # the plan's allowance pays it
            charged, covered = 0, usage
            allowance, unit = covering
            balances = [BalanceUse(f"s1/{allowance}/{cycle}", unit, -usage, int(size * 10**6))]
        elif mode is not Mode.POSTPAID and cost:
            balances = [BalanceUse("main", currency, -cost, int(size * 10**10))]
        account = profile.account
        return RatedRecord(
            f"{account}:{ident}", "ratewire.demo", account, category, account,
            f"{prefix}{int(size * 10**7):07d}", start_us, usage, self._text(cost), cost,
            currency, "RP_" + currency, zone, prefix, "0", 0, [self._span],
            charged=self._text(charged), covered=covered, insufficient_credit=False,
            balances=balances,
        )  # fmt: skip


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, size):
        yield lo, min(lo + size, n)


_LINES = msgspec.json.Encoder()


def _messages(records: list[RatedRecord]) -> list[bytes]:
    return [_LINES.encode_lines(records[lo : lo + LINES_PER_MESSAGE])
            for lo in range(0, len(records), LINES_PER_MESSAGE)]  # fmt: skip


def build(
    store: Store, spec: Spec, catalog: Catalog, *, progress: Callable[[str], None] | None = None
) -> BuildReport:
    """Write the population of ``spec`` into ``store`` (empty); returns what it wrote."""
    pop, report = Population(spec, catalog), BuildReport(accounts=spec.accounts)
    say = progress or (lambda _: None)
    book = UsageBook(store)
    started = time.perf_counter()
    if spec.history:
        _phase(pop, store, book, report, during=False)
        report.seconds["previous_inputs"] = time.perf_counter() - started
        say(f"previous cycle inputs written ({report.seconds['previous_inputs']:.1f} s)")
        mark = time.perf_counter()
        report.previous_drafted = run_on(store, pop.previous, catalog=catalog, actor=ACTOR).drafted
        report.seconds["previous_run"] = time.perf_counter() - mark
        mark = time.perf_counter()
        invoices = InvoiceStore(store)
        year, month = parse_cycle(spec.cycle)
        issue_day = date(year, month, 28)  # after the previous cycle of every bill day
        report.previous_issued = len(invoices.issue(invoices.ids(pop.previous), ACTOR, issue_day))
        report.seconds["previous_accept"] = time.perf_counter() - mark
        say(f"previous cycle run and accepted ({report.previous_issued} invoices)")
    mark = time.perf_counter()
    _phase(pop, store, book, report, during=True)
    report.seconds["cycle_inputs"] = time.perf_counter() - mark
    report.seconds["total"] = time.perf_counter() - started
    return report


def _answer(writer: EventWriter, renewal: Renewal, ok: bool) -> None:
    """A worker's answer to a renewal, as :meth:`EventWriter.renewal` stores it (the key, and
    a suspension when refused), written without reading the key first: every answer here
    is new, and with the store options of today a lookup of a missing ``rnw/`` key costs
    about a millisecond: it lands in the table block of the consumer's next ``seen/``
    value, a multi-MB list of ids that the block cache cannot hold."""
    writer.batch.put(RENEWAL + renewal.op_id.encode(), b"ok" if ok else b"refused")
    if not ok:
        writer.subscription(SubscriptionEvent(
            event_id=f"{REFUSED}{renewal.op_id}", account=renewal.account,
            subscription=renewal.subscription, action=SubscriptionAction.SUSPEND,
            day=renewal.period_start, reason="renewal refused: insufficient balance",
        ))  # fmt: skip


def _phase(
    pop: Population, store: Store, book: UsageBook, report: BuildReport, *, during: bool
) -> None:
    """One pass over the accounts: before the cycle (profiles, events, the previous cycle's
    usage, renewals for the cycle) or during it (new profiles, events, charges, usage, late
    usage, renewals for the next cycle)."""
    spec, plan = pop.spec, pop.plan
    history = spec.history
    closed = ClosedCycles(store)
    renew_for = next_cycle(spec.cycle) if during else spec.cycle
    for number, (lo, hi) in enumerate(_chunks(spec.accounts, CHUNK)):
        rng = np.random.default_rng((spec.seed, int(during), number))
        new = [n for n in range(lo, hi)
               if (plan.scenario[n] == STARTS) == during or not history]  # fmt: skip
        profiles = {n: pop.profile(n) for n in range(lo, hi)}
        report.profiles += import_profiles(store, [profiles[n] for n in new]).written
        writer = EventWriter(store)
        events = {n: pop.events(n, during=False) + pop.events(n, during=True)
                  if not history else pop.events(n, during) for n in range(lo, hi)}  # fmt: skip
        for own in events.values():
            for event in own:
                writer.subscription(event)
        if during or not history:
            for n in range(lo, hi):
                charge = pop.charge(n)
                if charge is not None:
                    writer.charge(charge)
        report.subscription_events += writer.counts["subscription:new"]
        report.one_time_charges += writer.counts["one_time:new"]
        for n, profile in profiles.items():
            if profile.mode is Mode.PREPAID and (during or n in new):
                known = pop.events(n, during=False) + (pop.events(n, True) if during else [])
                for r in renewals(pop.catalog, profile, known, renew_for):
                    if during and history and r.cycle != renew_for and n not in new:
                        continue  # answered before the previous cycle's run
                    ok = not (during and plan.refused[n] and r.cycle == renew_for)
                    _answer(writer, r, ok)
                    report.renewal_outcomes += 1
                    report.refused += not ok
        store.write(writer.batch)
        cycle = spec.cycle if during or not history else pop.previous
        counts = plan.records[lo:hi] if cycle == spec.cycle else plan.records_before[lo:hi]
        records = pop.rated(profiles, cycle, counts, rng)
        if during and history:
            late = pop.rated(profiles, pop.previous, plan.late[lo:hi], rng, ":late")
            report.late += len(late)
            records += late
        known_profiles = {p.account: p for p in profiles.values()}  # profiles are Cycled
        messages = _messages(records)
        for at in range(0, len(messages), MESSAGES_PER_BATCH):
            batch = messages[at : at + MESSAGES_PER_BATCH]
            report.records += book.apply(batch, known_profiles, closed).applied
