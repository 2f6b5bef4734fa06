"""``ratewire loadtest http``: authorize / commit / release open loop, then check the books.

``sessions`` call sessions share ``accounts`` accounts (session ``s`` bills
account ``s mod accounts``, so several sessions spend one balance at once:
what reservations must keep from overspending). Request slots are due at
``start + i / rps``; slot ``i`` belongs to session ``i mod sessions``, which
at each of its slots either **authorizes** (``usage`` of ``category`` to
``destination``) when it holds nothing, or finishes what it holds: a
**commit** of between half and 110 % of the grant (usage past a grant is
allowed and paid from what is left) or, for ``release_share`` of them, a
**release**. With ``finish_share`` below 1, that share of the grants is
finished and the others are left to expire (each slot of such a session is
an authorize: ``finish_share=0`` is a pure authorize load). A session's
request waits for the answer to its previous one
(a commit needs the reservation id); that wait counts in its latency, which
runs from the slot's intended time (coordinated omission accounted for).

At the end, reservations still held (or left to expire) are released, then every account's
balances are read and checked:

* **violations**: a prepaid account's balance below zero, a postpaid or
  hybrid account's money below minus its credit limit, any usage bundle
  below zero;
* **leaks**: amounts still reserved once every reservation is finished;
* **mismatches**: accounts whose money (and bundle units) went down by
  other than the sum the commits answered they charged (checked only when
  every request was answered).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from balances.model import Measure, Mode
from balances.units import UnitCatalog, load_units
from loadtest.accounts import account_id
from loadtest.cluster import Cluster
from loadtest.exceptions import HttpClientError, LoadTestError
from loadtest.histogram import Intervals, Latency
from loadtest.http_client import HttpClient
from loadtest.live import Live, Snapshot
from loadtest.report import Check, Report, Timeline, environment, series_of, warm_seconds
from loadtest.schedule import OpenLoop, SendLog, interruptible, plan

OPERATIONS = ("authorize", "commit", "release")
ERROR = "error"  # status of a request that got no HTTP answer (connection, timeout)


@dataclass(frozen=True, slots=True)
class HttpLoad:
    rps: float  # requests per second, all operations together
    duration: float
    sessions: int = 200
    accounts: int = 50
    warmup: float = 5.0
    usage: str = "2m"  # asked per authorize
    category: str = "call"
    destination: str = "4930123456"
    release_share: float = 0.2  # of the grants finished: released instead of committed
    finish_share: float = 1.0  # of the grants: finished; the rest are left to expire
    connections: int = 256
    timeout: float = 10.0  # seconds for one request
    drain: float = 15.0  # seconds to wait for answers after the last slot
    token: str = ""
    seed: int = 7
    books: bool = True  # read every account's balances before and after, and check them
    p99_ms: float | None = None

    @property
    def requests(self) -> int:
        return round(self.rps * self.duration)


@dataclass
class _Session:
    account: str
    holding: str = ""  # reservation id
    granted: int = 0
    previous: asyncio.Task[None] | None = None


@dataclass
class _Books:
    """What the answers said each account was charged."""

    paid: Counter[str] = field(default_factory=Counter)  # account -> money paid (amount units)
    covered: Counter[str] = field(default_factory=Counter)  # account -> usage units by bundles


@dataclass
class _State:
    load: HttpLoad
    client: HttpClient
    sessions: list[_Session]
    start: float
    latency: dict[str, Intervals] = field(default_factory=lambda: defaultdict(Intervals))
    recent: Latency = field(default_factory=Latency)
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    outcomes: Counter[str] = field(default_factory=Counter)  # granted, denied:<reason>, …
    books: _Books = field(default_factory=_Books)
    timeline: Timeline = field(default_factory=Timeline)
    in_flight: int = 0
    answered: int = 0
    errors: int = 0
    first_error: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)  # grants left to expire


# -- requests ----------------------------------------------------------------------------------
async def _call(st: _State, op: str, path: str, body: dict[str, Any] | None, due: float) -> Any:
    """One POST; its latency from ``due`` (the slot's intended time) is recorded under ``op``."""
    st.in_flight += 1
    st.timeline.count("sent", int(time.perf_counter() - st.start))
    status, answer = ERROR, None
    try:
        code, raw = await st.client.request(
            "POST", path, None if body is None else msgspec.json.encode(body)
        )
        status = str(code)
        if code == 200:
            answer = msgspec.json.decode(raw)
    except (HttpClientError, OSError, TimeoutError) as exc:
        st.errors += 1
        st.first_error = st.first_error or f"{op}: {exc!r}"
    finally:
        st.in_flight -= 1
    now = time.perf_counter()
    us = (now - due) * 1e6
    st.latency[op].record(math.floor(due - st.start), us)
    st.recent.record(us)
    st.statuses[op][status] += 1
    st.answered += status != ERROR
    st.timeline.count("done" if status == "200" else "rejected", int(now - st.start))
    return answer


async def _step(
    st: _State,
    s: _Session,
    slot: int,
    due: float,
    rng: tuple[float, float, float],
    previous: asyncio.Task[None] | None,
) -> None:
    """Slot ``slot`` of session ``s``: authorize, or finish the reservation it holds.

    ``rng``: three uniform draws (release or commit, how much of the grant to
    commit, whether to keep a grant or leave it to expire).
    """
    if previous is not None:
        await asyncio.wait([previous])  # a commit needs the answer to the authorize before it
    load = st.load
    if not s.holding:
        body = {
            "category": load.category,
            "destination": load.destination,
            "usage": load.usage,
            "session": f"lt-{slot % load.sessions}",
        }
        grant = await _call(st, "authorize", f"/accounts/{s.account}/authorize", body, due)
        if grant is None:
            return
        if grant.get("reservation_id"):
            st.outcomes["granted"] += 1
            if rng[2] < load.finish_share:
                s.holding, s.granted = grant["reservation_id"], int(grant["granted"])
            else:
                st.abandoned.append(grant["reservation_id"])  # left to expire
        else:
            st.outcomes[f"denied: {grant.get('reason') or 'no reason'}"] += 1
        return
    rid, s.holding = s.holding, ""
    if rng[0] < load.release_share:
        await _call(st, "release", f"/reservations/{rid}/release", None, due)
        return
    used = max(1, round(s.granted * (0.5 + 0.6 * rng[1])))  # half the grant … 110 % of it
    charge = await _call(st, "commit", f"/reservations/{rid}/commit", {"usage": used}, due)
    if charge is not None:
        st.books.paid[s.account] += int(charge["paid"])
        st.books.covered[s.account] += int(charge["covered"])


# -- balances ------------------------------------------------------------------------------------
async def balances(client: HttpClient, accounts: list[str]) -> dict[str, Any]:
    """Each account's ``GET /accounts/{id}/balances`` answer."""

    async def one(account: str) -> tuple[str, Any]:
        path = f"/accounts/{account}/balances"
        try:
            status, raw = await client.request("GET", path)
        except OSError as exc:  # refused, reset, no such host: say which API and what to do
            msg = (
                f"cannot reach the worker API at {client.base} ({exc}): is a worker running?"
                " (or use --embedded)"
            )
            raise LoadTestError(msg) from exc
        body = msgspec.json.decode(raw)
        if status != 200:
            msg = (
                f"GET {client.base}{path} answered {status}: {body.get('message', body)};"
                " provision the accounts (--broker or --embedded) or pick --accounts the"
                " worker knows"
            )
            raise LoadTestError(msg)
        return account, body

    return dict(await asyncio.gather(*(one(a) for a in accounts)))


@dataclass(frozen=True, slots=True)
class BookCheck:
    violations: list[str]
    leaks: list[str]
    mismatches: list[str]


def check_books(
    before: dict[str, Any],
    after: dict[str, Any],
    books: _Books,
    units: UnitCatalog,
    *,
    compare: bool,
) -> BookCheck:
    """Violations, leaks and (with ``compare``) charge mismatches, one line per finding."""
    violations, leaks, mismatches = [], [], []
    for account, now in after.items():
        mode = now["mode"]
        limit = Decimal(now["credit_limit"])
        spent_money = Decimal(0)
        spent_units = 0
        for b in now["balances"]:
            unit = units[b["unit"]]
            money = unit.measure is Measure.MONEY
            amount, reserved = Decimal(b["amount"]), Decimal(b["reserved"])
            floor = -limit if money and mode != Mode.PREPAID.value else Decimal(0)
            if amount < floor:
                violations.append(f"{account} {b['id']}: {amount} {b['unit']} (floor {floor})")
            if reserved:
                leaks.append(f"{account} {b['id']}: {reserved} {b['unit']} still reserved")
            opening = next(x for x in before[account]["balances"] if x["id"] == b["id"])
            delta = Decimal(opening["amount"]) - amount
            if money:
                spent_money += delta.scaleb(unit.decimals)
            else:
                spent_units += int(delta)
        paid, covered = books.paid[account], books.covered[account]
        if compare and (spent_money != paid or spent_units != covered):
            mismatches.append(
                f"{account}: balances went down by {spent_money} (money) and"
                f" {spent_units} (units), commits charged {paid} and {covered}"
            )
    return BookCheck(violations, leaks, mismatches)


# -- the run -------------------------------------------------------------------------------------
async def run(
    base: str,
    load: HttpLoad,
    *,
    live: Live | None = None,
    cluster: Cluster | None = None,
    config: dict[str, Any] | None = None,
    driven: Callable[[], Awaitable[None]] | None = None,
) -> Report:
    """One run against the worker API at ``base`` (``http://host:port``).

    ``driven`` is awaited once the slots are answered, before held
    reservations are released (e.g. to read the worker's metrics of the run).
    """
    live = live or Live(quiet=True)
    started = datetime.now(UTC)
    headers = {"Authorization": f"Bearer {load.token}"} if load.token else {}
    accounts = [account_id(i) for i in range(load.accounts)]
    units = load_units()
    client = HttpClient(base, connections=load.connections, timeout=load.timeout, headers=headers)
    async with client:
        # the opening balances (also a warm-up: connections, the worker's first calls)
        before = await balances(client, accounts if load.books else accounts[:50])
        sessions = [_Session(accounts[s % load.accounts]) for s in range(load.sessions)]
        st = _State(load, client, sessions, time.perf_counter() + 0.5)
        offsets = plan(np.ones(load.requests), load.rps)
        draw = np.random.default_rng(load.seed).random((load.requests, 3)).tolist()
        sender = OpenLoop(offsets, partial_step(st, offsets, draw), precise=True)
        cpu_before = cluster.cpu() if cluster else {}
        live.say(
            f"{load.requests:,} requests at {load.rps:,.0f}/s: {load.sessions} sessions on"
            f" {load.accounts} accounts …"
        )
        log = await _drive(st, sender, live)
        cpu = {k: round(v - cpu_before[k], 2) for k, v in cluster.cpu().items()} if cluster else {}
        unanswered = sum(1 for t in st.tasks if not t.done())
        if driven is not None:
            await driven()
        await _release_held(st)
        after = await balances(client, accounts) if load.books else {}
    whole = st.errors == 0 and unanswered == 0
    books = check_books(before, after, st.books, units, compare=whole)
    return _report(st, log, books, unanswered, started, cpu, config or {})


def partial_step(st: _State, offsets: Any, draw: list[list[float]]) -> Any:
    """``send(i)``: start slot ``i``'s request as a task (the scheduler never waits for it)."""
    sessions = st.sessions

    def send(i: int) -> None:
        s = sessions[i % len(sessions)]
        u = draw[i]
        task = asyncio.create_task(
            _step(st, s, i, st.start + offsets[i], (u[0], u[1], u[2]), s.previous)
        )
        s.previous = task
        st.tasks.append(task)

    return send


async def _drive(st: _State, sender: OpenLoop, live: Live) -> SendLog:
    ticking = asyncio.create_task(_tick(st, sender, live))
    try:
        with interruptible(sender, live.say):
            log = await sender.run(st.start)
        pending = [t for t in st.tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=st.load.drain)
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
        live.close()
    return log


async def _release_held(st: _State) -> None:
    """Release what sessions still hold (untimed), so that nothing stays reserved."""
    for t in st.tasks:
        if not t.done():
            t.cancel()
    for outcome in await asyncio.gather(*st.tasks, return_exceptions=True):
        if isinstance(outcome, Exception):  # a bug, not an HTTP failure (those are counted)
            raise outcome
    held = [s.holding for s in st.sessions if s.holding] + st.abandoned
    for s in st.sessions:
        s.holding = ""

    async def release(rid: str) -> None:
        await st.client.request("POST", f"/reservations/{rid}/release")

    await asyncio.gather(*(release(rid) for rid in held), return_exceptions=True)


async def _tick(st: _State, sender: OpenLoop, live: Live) -> None:
    load, second = st.load, 0
    while True:
        second += 1
        await asyncio.sleep(max(st.start + second - time.perf_counter(), 0))
        st.timeline.set("lag", second - 1, st.in_flight)
        recent, st.recent = st.recent, Latency()
        rejected = sum(n for by in st.statuses.values() for code, n in by.items() if code != "200")
        live.update(
            Snapshot(
                elapsed=second,
                duration=load.duration,
                target=load.rps,
                sent=st.timeline.get("sent", second - 1),
                done=st.timeline.get("done", second - 1),
                p50_ms=recent.value_at(50) / 1000 if recent.count else None,
                p99_ms=recent.value_at(99) / 1000 if recent.count else None,
                done_total=st.answered,
                rejected_total=rejected,
                lag=st.in_flight,
                progress=st.answered / max(load.requests, 1),
                phase="sending" if sender.sent < load.requests else "draining",
            )
        )


# -- the report ----------------------------------------------------------------------------------
def _report(
    st: _State,
    log: SendLog,
    books: BookCheck,
    unanswered: int,
    started: datetime,
    cpu: dict[str, float],
    config: dict[str, Any],
) -> Report:
    load = st.load
    warm = warm_seconds(load.warmup, load.duration)
    every = Intervals()
    for iv in st.latency.values():
        every.merge(iv)
    series = series_of(log, every, st.timeline, load.duration, sent_on_wire=True)
    window = load.duration - warm
    measured = [s for s in series.second if warm <= s < math.ceil(load.duration)]
    hists = {op: st.latency[op].total(start=warm) for op in OPERATIONS if op in st.latency}
    everything = Latency()
    for h in hists.values():
        everything.merge(h)
    hists = {"all": everything, **hists}
    statuses = {op: dict(sorted(st.statuses[op].items())) for op in OPERATIONS if op in st.statuses}
    sent = sum(sum(by.values()) for by in st.statuses.values()) + unanswered
    counts = {
        "planned": load.requests,
        "sent": sent,
        "answered": st.answered,
        "errors": st.errors
        + sum(n for by in st.statuses.values() for code, n in by.items() if code.startswith("5")),
        "unanswered": unanswered,
        "granted": st.outcomes["granted"],
        "denied": sum(n for k, n in st.outcomes.items() if k.startswith("denied")),
        "violations": len(books.violations),
        "leaks": len(books.leaks),
        "mismatches": len(books.mismatches),
        "accounts": load.accounts,
        "sessions": load.sessions,
    }
    report = Report(
        kind="http",
        started=started.isoformat(timespec="seconds"),
        config={
            "target": "http",
            "rps": load.rps,
            "duration": load.duration,
            "warmup": load.warmup,
            "sessions": load.sessions,
            "accounts": load.accounts,
            "usage": load.usage,
            "category": load.category,
            "destination": load.destination,
            "release_share": load.release_share,
            "connections": load.connections,
            "p99_ms": load.p99_ms,
            **config,
        },
        environment=environment(),
        seconds={
            "planned": load.duration,
            "sending": round(log.last_sent(), 3),
        },
        warmup=float(warm),
        counts=counts,
        statuses=statuses,
        rejects={k: n for k, n in st.outcomes.most_common() if k.startswith("denied")},
        throughput={
            "target": load.rps,
            "sent": round(sum(series.sent[s] for s in measured) / window, 1),
            "done": round(sum(series.done[s] for s in measured) / window, 1),
        },
        latency_ms={op: h.summary() for op, h in hists.items()},
        histograms={op: h.encode() for op, h in hists.items()},
        intervals=every.encoded(len(series.second)),
        behind_ms=log.behind_summary(),
        lag={"max": max(series.lag, default=0.0)},
        cpu_seconds=cpu,
        series=series,
    )
    report.checks = [Check("errors (5xx, no answer)", counts["errors"] + unanswered, 0)]
    if load.books:
        report.checks += [
            Check("balance violations", counts["violations"], 0),
            Check("reserved amounts left", counts["leaks"], 0),
        ]
        if st.errors == 0 and unanswered == 0:
            report.checks.append(Check("charges not matching balances", counts["mismatches"], 0))
    if load.p99_ms is not None:
        report.checks.append(Check("p99 latency, ms", report.latency_ms["all"]["p99"], load.p99_ms))
    report.notes = [*books.violations[:10], *books.leaks[:10], *books.mismatches[:10]]
    if log.count < load.requests:
        report.notes.append(
            f"interrupted: {log.count:,} of the {load.requests:,} planned requests were sent;"
            " the figures are of those."
        )
    if st.first_error:
        report.notes.append(f"first error: {st.first_error}")
    if report.throughput["sent"] < 0.95 * load.rps:
        report.notes.append(
            f"requests went out at {report.throughput['sent']:,.0f}/s, not {load.rps:,.0f}/s:"
            " answers came slower than planned and each session waits for its previous answer"
            " (a commit needs its grant); that wait is counted in the latency."
        )
    if load.books and (st.errors or unanswered):
        report.notes.append(
            "not every request was answered, so charges were not compared with the balances"
        )
    return report
