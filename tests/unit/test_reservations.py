"""Real-time authorize / commit / release, worked out by hand on the sample plan, and properties.

Prices used below (``tariffs/samples/mobile.toml``, EUR): on a weekday from
08:00 to 19:00 Berlin time a national fixed call costs 0.03 to connect and
0.09 a minute, the first minute billed whole and then per second (so 0.12
for anything up to a minute, then 0.0015 a second), the total rounded up to
4 decimals; a German mobile 0.03 and 0.19; 0800 numbers are free.

The slow twin of a grant: the largest usage ``u <= requested`` that
:class:`~balances.debit.Debitor` can debit from the balances as they stand
(``amount - reserved``) without leaving anything unpaid, and what that debit
takes from each balance. Tests assert the grant and its holds equal it,
after any interleaving of authorizations, commits, releases and expiries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import tariffs
from balances.debit import Debitor
from balances.exceptions import (
    OperationConflictError,
    ReservationError,
    ReservationFinishedError,
    UnknownReservationError,
)
from balances.kernels import FLAG_INSUFFICIENT_CREDIT, LOYALTY_EARNED
from balances.ledger import REASON_CODES, Ledger
from balances.model import MAIN, Account, Balance, Filter, Mode
from balances.reservations import (
    EXPIRED,
    INSUFFICIENT_CREDIT,
    RELEASED,
    UNKNOWN_ACCOUNT,
    AuthorizeRequest,
    Charge,
    CommitRequest,
    Grant,
    Reservations,
    authorize_together,
)
from balances.store import MemoryStore, RocksStore, Store
from balances.units import load_units
from engine.cost import one_record
from tariffs.loader import load_tariff
from tariffs.model import (
    ANY,
    Basis,
    Binding,
    DestinationRate,
    Rate,
    RateStep,
    RatingPlan,
    RatingProfile,
    Tariff,
)
from tariffs.money import parse_amount
from tariffs.rating import Rater

SAMPLE_PLAN = Path(tariffs.__file__).parent / "samples" / "mobile.toml"
UNITS = load_units()
EUR = 10**9  # nanos: EUR amounts have 9 decimals
CENT = EUR // 100
MILLI = EUR // 1000
T = datetime(2026, 11, 2, 10, tzinfo=UTC)  # a Monday, 11:00 in Berlin: peak
TENANT = "ratewire.demo"
FIXED, MOBILE, FREEPHONE = "4930123456", "4916012345", "49800123"
GERMANY = Filter(destinations=("GERMANY",))
START = 1000.0  # the fake clock's first reading
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@cache
def sample_rater() -> Rater:
    return Rater(load_tariff(SAMPLE_PLAN))


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    """A ledger on a store, its debitor and reservations, and the fake clock they read."""

    store: Store
    rater: Rater
    clock: Clock = field(default_factory=Clock)
    ttl: float = 300
    ledger: Ledger = field(init=False)
    debitor: Debitor = field(init=False)
    res: Reservations = field(init=False)

    def __post_init__(self) -> None:
        self.reopen()

    def reopen(self) -> None:
        """Open the ledger and reservations from the store (what a restart does)."""
        self.ledger = Ledger(self.store, UNITS)
        self.debitor = Debitor(self.ledger.state, self.rater)
        self.res = Reservations(self.ledger, self.debitor, ttl_seconds=self.ttl, clock=self.clock)

    def held(self, account: str) -> dict[str, tuple[int, int]]:
        """Each balance of ``account``: (amount, reserved)."""
        return {v.id: (v.amount, v.reserved) for v in self.ledger.balances(account)}

    def reserved(self) -> list[int]:
        state = self.ledger.state
        values: list[int] = state.bal.arrays["reserved"][: state.bal.size].tolist()
        return values


def world(
    *accounts: tuple[Account, int, Sequence[tuple[Balance, int]]],
    store: Store | None = None,
    rater: Rater | None = None,
) -> World:
    """A world holding ``(account, main amount, [(balance, amount), ...])`` set-ups."""
    w = World(store or MemoryStore(), rater or sample_rater())
    for account, main, balances in accounts:
        w.ledger.create_account(account, [b for b, _ in balances])
        for b, amount in [(Balance(id=MAIN, unit="EUR"), main), *balances]:
            if amount:
                w.ledger.adjust(account.id, b.id, amount, op_id=f"open:{account.id}:{b.id}")
    return w


def account(
    name: str, main: int, *balances: tuple[Balance, int], mode: Mode = Mode.PREPAID,
    limit: int = 0,
) -> tuple[Account, int, Sequence[tuple[Balance, int]]]:  # fmt: skip
    holder = Account(id=name, tenant=TENANT, currency="EUR", mode=mode, credit_limit=limit,
                     created=T - timedelta(days=365))  # fmt: skip
    return holder, main, balances


def free_minutes(seconds: int, until: datetime | None = None) -> tuple[Balance, int]:
    """A bundle of ``seconds`` of national calls (valid ``until``, if given)."""
    bundle = Balance(id="free-min", unit="voice_seconds", weight=10, filter=GERMANY,
                     valid_until=until)  # fmt: skip
    return bundle, seconds


def call(w: World, who: str, seconds: int, destination: str = FIXED) -> Grant:
    return w.res.authorize(who, category="call", destination=destination, requested=seconds,
                           start=T)  # fmt: skip


# -- by hand -------------------------------------------------------------------------
def test_forty_minutes_against_thirty_free_minutes_and_money() -> None:
    w = world(account("alice", EUR, free_minutes(1800)))
    grant = call(w, "alice", 2400)
    # 1800 s from the bundle; 600 s of the per-second step at 0.0015 plus the 0.03 connect fee
    assert (grant.granted, grant.reason) == (2400, "")
    assert grant.reserved == {"free-min": 1800, MAIN: 93 * CENT}
    assert grant.expires_at == START + 300
    assert w.held("alice") == {"free-min": (1800, 1800), MAIN: (EUR, 93 * CENT)}
    # a second session finds the minutes held: 0.07 left does not buy the first minute (0.12)
    second = call(w, "alice", 60)
    assert (second.granted, second.reason, second.reserved) == (0, INSUFFICIENT_CREDIT, {})
    # 2000 s used: 1800 from the bundle, 200 s at 0.0015 + 0.03
    charge = w.res.commit(grant.reservation_id, 2000)
    assert (charge.covered, charge.due, charge.paid, charge.reason) == (
        1800,
        33 * CENT,
        33 * CENT,
        "",
    )
    assert w.held("alice") == {"free-min": (0, 0), MAIN: (67 * CENT, 0)}
    usage = [
        (e.balance, e.delta, e.ref)
        for e in w.ledger.journal("alice")
        if e.reason.startswith("usage")
    ]
    assert usage == [
        ("free-min", -1800, grant.reservation_id),
        (MAIN, -33 * CENT, grant.reservation_id),
    ]


def test_commit_beyond_the_grant_takes_what_is_left_and_flags_the_rest() -> None:
    w = world(account("alice", EUR, free_minutes(1800)))
    grant = call(w, "alice", 2400)
    # 2500 s: 1800 free, 700 s at 0.0015 + 0.03 = 1.08 due; the euro is all there is
    charge = w.res.commit(grant.reservation_id, 2500)
    assert (charge.covered, charge.due, charge.paid) == (1800, 108 * CENT, EUR)
    assert charge.reason == INSUFFICIENT_CREDIT
    assert w.held("alice") == {"free-min": (0, 0), MAIN: (0, 0)}


def test_partial_grant_in_whole_increments() -> None:
    w = world(account("bob", 50 * CENT))
    grant = call(w, "bob", 600)  # 0.93 asked, 0.50 held
    # 0.12 for the first minute, then 253 whole seconds at 0.0015 = 0.3795 (254 would pass 0.50)
    assert (grant.granted, grant.reason) == (313, INSUFFICIENT_CREDIT)
    assert grant.reserved == {MAIN: 4995 * MILLI // 10}
    charge = w.res.commit(grant.reservation_id, 100)  # less than granted: 0.12 + 40 s
    assert (charge.due, charge.paid, charge.reason) == (18 * CENT, 18 * CENT, "")
    assert w.held("bob") == {MAIN: (32 * CENT, 0)}


def test_first_increment_is_granted_whole_or_not_at_all() -> None:
    w = world(account("bob", 12 * CENT), account("carol", 11 * CENT))
    assert call(w, "bob", 45).granted == 45  # 45 s cost the whole first minute: 0.12
    assert w.held("bob") == {MAIN: (12 * CENT, 12 * CENT)}
    refused = call(w, "carol", 600)
    assert (refused.granted, refused.reason, refused.reservation_id) == (0, INSUFFICIENT_CREDIT, "")
    assert w.held("carol") == {MAIN: (11 * CENT, 0)}
    assert len(w.res) == 1


def test_zero_grants_name_their_reason() -> None:
    w = world(account("dave", EUR))
    assert call(w, "nobody", 60).reason == UNKNOWN_ACCOUNT
    assert call(w, "dave", 60, destination="999").reason == "UNAUTHORIZED_DESTINATION"
    fax = w.res.authorize("dave", category="fax", destination=FIXED, requested=1, start=T)
    assert fax.reason == "RATING_PLAN_NOT_FOUND"
    assert {fax.granted, fax.reservation_id} == {0, ""}
    assert w.held("dave") == {MAIN: (EUR, 0)}
    with pytest.raises(ReservationError, match="not positive"):
        call(w, "dave", 0)


def test_an_account_created_after_a_refusal_is_granted() -> None:
    """Account rows are remembered once found; a name not found is looked up again."""
    w = world(account("dave", EUR))
    assert call(w, "frank", 60).reason == UNKNOWN_ACCOUNT
    assert call(w, "dave", 60).granted == 60
    frank, main, _ = account("frank", EUR)
    w.ledger.create_account(frank)
    w.ledger.adjust("frank", MAIN, main, op_id="open:frank")
    grant = call(w, "frank", 60)
    assert (grant.granted, grant.reason) == (60, "")
    assert w.held("frank")[MAIN][1] > 0


def test_free_calls_are_granted_with_nothing_held() -> None:
    w = world(account("erin", 0))
    grant = call(w, "erin", 3600, destination=FREEPHONE)
    assert (grant.granted, grant.reserved, grant.reason) == (3600, {}, "")
    assert w.res.commit(grant.reservation_id, 3600).paid == 0


def test_parallel_sessions_never_spend_more_than_the_account_holds() -> None:
    w = world(account("dave", EUR))
    a = call(w, "dave", 120)  # 0.12 + 60 s = 0.21
    b = call(w, "dave", 600)  # 0.79 left: 0.12 + 446 s = 0.789
    c = call(w, "dave", 60)  # 0.001 left
    assert (a.granted, b.granted, c.granted) == (120, 506, 0)
    assert w.held("dave") == {MAIN: (EUR, 999 * MILLI)}
    # a runs far over: 1000 s would cost 1.53, only its own 0.21 and the free 0.001 are there
    over = w.res.commit(a.reservation_id, 1000)
    assert (over.due, over.paid, over.reason) == (153 * CENT, 211 * MILLI, INSUFFICIENT_CREDIT)
    # b's reservation was not touched: it is paid in full
    assert w.res.commit(b.reservation_id, 506).paid == 789 * MILLI
    assert w.held("dave") == {MAIN: (0, 0)}


def test_postpaid_reserves_down_to_the_credit_limit() -> None:
    w = world(account("erin", 0, mode=Mode.POSTPAID, limit=EUR))
    grant = call(w, "erin", 600)
    assert (grant.granted, grant.reserved) == (600, {MAIN: 93 * CENT})  # of the 1.00 limit
    assert w.held("erin") == {MAIN: (0, 93 * CENT)}
    assert call(w, "erin", 60).granted == 0  # 0.07 of credit left
    w.res.commit(grant.reservation_id, 600)
    assert w.held("erin") == {MAIN: (-93 * CENT, 0)}


def test_hybrid_takes_bundles_then_money_then_credit_on_one_main_row() -> None:
    w = world(account("fran", 20 * CENT, free_minutes(60), mode=Mode.HYBRID, limit=50 * CENT))
    grant = call(w, "fran", 600)
    # the bundle covers the first minute (and the connect fee stays): 0.03 + 0.0015 a second;
    # 0.70 to pay with: 446 s past the first minute cost 0.699
    assert (grant.granted, grant.reason) == (506, INSUFFICIENT_CREDIT)
    assert grant.reserved == {"free-min": 60, MAIN: 699 * MILLI}
    assert w.res.get(grant.reservation_id).rows.count(w.ledger.state.balance_row(0, MAIN)) == 1
    w.res.commit(grant.reservation_id, 506)
    assert w.held("fran") == {"free-min": (0, 0), MAIN: (-499 * MILLI, 0)}


def test_release_frees_everything_and_finished_reservations_say_so() -> None:
    w = world(account("alice", EUR, free_minutes(1800)))
    grant = call(w, "alice", 2400)
    released = w.res.release(grant.reservation_id)
    assert released.freed == {"free-min": 1800, MAIN: 93 * CENT}
    assert released.status == RELEASED
    assert w.held("alice") == {"free-min": (1800, 0), MAIN: (EUR, 0)}
    with pytest.raises(ReservationFinishedError, match="was released"):
        w.res.commit(grant.reservation_id, 10)
    with pytest.raises(ReservationFinishedError, match="was released"):
        w.res.release(grant.reservation_id)
    with pytest.raises(UnknownReservationError, match="'nope' is unknown"):
        w.res.release("nope")
    with pytest.raises(UnknownReservationError):
        w.res.commit("nope", 1)
    assert not [e for e in w.ledger.journal("alice") if e.reason.startswith("usage")]


def test_expiry_on_a_fake_clock() -> None:
    w = world(account("alice", EUR))
    grant = call(w, "alice", 120)
    w.clock.now = START + 299.5
    assert w.res.expire() == []
    w.clock.now = START + 300
    (expired,) = w.res.expire()
    assert (expired.reservation_id, expired.status) == (grant.reservation_id, EXPIRED)
    assert w.held("alice") == {MAIN: (EUR, 0)}
    with pytest.raises(ReservationFinishedError, match="rate its usage as a CDR"):
        w.res.commit(grant.reservation_id, 120)
    # finished reservations are kept keep_seconds (60), then forgotten, in the store too
    w.clock.now = START + 360
    assert w.res.expire() == []
    with pytest.raises(UnknownReservationError):
        w.res.commit(grant.reservation_id, 120)
    assert w.ledger.get(b"res/" + grant.reservation_id.encode()) is None


def test_a_reservation_past_its_ttl_is_dead_even_before_expire_runs() -> None:
    w = world(account("alice", 21 * CENT))
    first = call(w, "alice", 120)
    w.clock.now = START + 301
    with pytest.raises(ReservationFinishedError, match="expired"):
        w.res.commit(first.reservation_id, 120)
    late = call(w, "alice", 120)  # authorizing releases expired reservations first
    assert late.granted == 120
    assert w.held("alice") == {MAIN: (21 * CENT, 21 * CENT)}


def test_committing_twice_returns_the_first_charge_and_changes_nothing() -> None:
    w = world(account("alice", EUR))
    grant = call(w, "alice", 120)
    first = w.res.commit(grant.reservation_id, 100, op_id="cdr-7")
    journal = list(w.ledger.journal())
    assert w.res.commit(grant.reservation_id, 100) == first
    assert w.res.commit(grant.reservation_id, 5000) == first  # whatever the retry says
    assert list(w.ledger.journal()) == journal
    # after the reservation is forgotten, its op_id still answers
    w.clock.now = START + 1000
    w.res.expire()
    assert w.res.commit(grant.reservation_id, 100, op_id="cdr-7") == first
    with pytest.raises(UnknownReservationError):
        w.res.commit(grant.reservation_id, 100)


def test_commit_many_answers_each_request_in_its_place() -> None:
    w = world(account("dave", EUR), account("bob", EUR))
    a, b = call(w, "dave", 120), call(w, "bob", 120)
    w.res.release(b.reservation_id)
    answers = w.res.commit_many([
        CommitRequest(a.reservation_id, 60), CommitRequest("nope", 1),
        CommitRequest(b.reservation_id, 60), CommitRequest(a.reservation_id, 99),
        CommitRequest(a.reservation_id, -1),
    ])  # fmt: skip
    assert isinstance(answers[0], Charge)
    assert answers[0].paid == 12 * CENT
    assert isinstance(answers[1], UnknownReservationError)
    assert isinstance(answers[2], ReservationFinishedError)
    assert answers[3] == answers[0] == answers[4]  # the same reservation: the first answer


def test_batches_serve_one_account_in_order_as_single_requests_would() -> None:
    def setup() -> World:
        return world(account("dave", EUR, free_minutes(90)), account("bob", 30 * CENT))

    asks = [("dave", 120), ("bob", 60), ("dave", 600), ("dave", 60), ("bob", 200), ("x", 5)]
    one, many = setup(), setup()
    singles = [call(one, who, s) for who, s in asks]
    batch = many.res.authorize_many([
        AuthorizeRequest(account=who, category="call", destination=FIXED, requested=s, start=T)
        for who, s in asks
    ])  # fmt: skip
    assert (
        [(g.granted, g.reserved, g.reason) for g in batch]
        == [(g.granted, g.reserved, g.reason) for g in singles]
        == [
            (120, {"free-min": 90, MAIN: 75 * MILLI}, ""),  # 0.03 + 30 s past the bundle
            (60, {MAIN: 120 * MILLI}, ""),
            (596, {MAIN: 924 * MILLI}, INSUFFICIENT_CREDIT),  # 0.925 left: 0.12 + 536 s
            (0, {}, INSUFFICIENT_CREDIT),
            (100, {MAIN: 180 * MILLI}, INSUFFICIENT_CREDIT),  # 0.18 left: 0.12 + 40 s
            (0, {}, UNKNOWN_ACCOUNT),
        ]
    )
    assert one.reserved() == many.reserved()
    # dave's first commit overruns: in a batch it must not eat his second reservation
    uses = [(0, 900), (2, 500), (1, 60)]
    expected = [
        (90, 1245 * MILLI, 76 * MILLI, INSUFFICIENT_CREDIT),  # 0.03 + 810 s; 0.076 not held
        (0, 780 * MILLI, 780 * MILLI, ""),  # 0.12 + 440 s, from its own reservation
        (0, 120 * MILLI, 120 * MILLI, ""),
    ]
    charges = [one.res.commit(singles[i].reservation_id, u) for i, u in uses]
    assert [(c.covered, c.due, c.paid, c.reason) for c in charges] == expected
    out = many.res.commit_many([CommitRequest(batch[i].reservation_id, u) for i, u in uses])
    assert [(c.covered, c.due, c.paid, c.reason) for c in out if isinstance(c, Charge)] == expected
    for w in (one, many):
        assert w.held("dave") == {"free-min": (0, 0), MAIN: (144 * MILLI, 0)}
        assert w.held("bob") == {MAIN: (180 * MILLI, 180 * MILLI)}  # its 100 s still held


# -- persistence -----------------------------------------------------------------------
@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "db")


def test_reservations_survive_a_checkpoint_and_reopen(store: Store, tmp_path: Path) -> None:
    w = world(account("alice", EUR, free_minutes(1800)), account("bob", EUR), store=store)
    kept = call(w, "alice", 2400)
    done = call(w, "bob", 120)
    charge = w.res.commit(done.reservation_id, 100)
    w.ledger.checkpoint()
    lost = call(w, "bob", 60)  # after the checkpoint: a crash loses it
    assert lost.granted == 60
    before = w.held("alice")
    if isinstance(store, RocksStore):
        store.close()
        w.store = RocksStore(tmp_path / "db")
    w.reopen()
    assert w.held("alice") == before == {"free-min": (1800, 1800), MAIN: (EUR, 93 * CENT)}
    assert w.held("bob") == {MAIN: (EUR - 12 * CENT - 6 * CENT, 0)}
    assert len(w.res) == 1
    assert w.res.commit(done.reservation_id, 100) == charge  # the retry after the restart
    with pytest.raises(UnknownReservationError):
        w.res.release(lost.reservation_id)
    assert w.res.commit(kept.reservation_id, 2400).paid == 93 * CENT
    w.ledger.checkpoint()
    w.reopen()
    assert w.reserved() == [0] * len(w.reserved())
    w.store.close()


def test_one_reservations_per_ledger() -> None:
    w = world(account("alice", EUR))
    call(w, "alice", 60)
    with pytest.raises(ReservationError, match="one per ledger"):
        Reservations(w.ledger, w.debitor)
    with pytest.raises(ReservationError, match="another balance state"):
        Reservations(w.ledger, Debitor(Ledger(MemoryStore(), UNITS).state, sample_rater()))


def test_errors_have_stable_codes() -> None:
    assert ReservationError.code == "RESERVATION_ERROR"
    assert UnknownReservationError.code == "RESERVATION_UNKNOWN"
    assert ReservationFinishedError.code == "RESERVATION_FINISHED"


# -- the slow twin -------------------------------------------------------------------
def taken(
    w: World, who: str, category: str, destination: str, usage: int, start: datetime
) -> dict[str, int] | None:
    """What debiting ``usage`` now would take from each balance of ``who``, or None if it
    would leave something unpaid (or cannot be rated). The balances are left as they were."""
    if usage == 0:
        return {}
    state = w.ledger.state
    batch = one_record(tenant=TENANT, category=category, subject=who, destination=destination,
                       start=start, usage=usage, time_based=False)  # fmt: skip
    rated = w.rater.rate(batch)
    if rated.error[0] != 0:
        return None
    amount = state.bal.arrays["amount"]
    saved = amount.copy()
    result = w.debitor.debit(batch, rated)
    amount[:] = saved
    if result.flags[0] & FLAG_INSUFFICIENT_CREDIT:
        return None
    out: dict[str, int] = defaultdict(int)
    journal = zip(result.journal.balance.tolist(), result.journal.delta.tolist(),
                  result.journal.reason.tolist(), strict=True)  # fmt: skip
    for row, delta, reason in journal:
        if reason != LOYALTY_EARNED:
            out[state.balance_ids[row]] -= delta
    return dict(out)


def twin(
    w: World, who: str, category: str, destination: str, requested: int, start: datetime
) -> tuple[int, dict[str, int]]:
    """The grant by the debit rules: the largest payable usage up to ``requested`` (the
    price grows with usage, so a binary search finds it) and what paying for it takes."""
    lo, hi, holds = 0, requested + 1, {}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        got = taken(w, who, category, destination, mid, start)
        if got is None:
            hi = mid
        else:
            lo, holds = mid, got
    assert lo == requested or taken(w, who, category, destination, lo + 1, start) is None
    return lo, holds


def hold(w: World, holds: dict[str, int], who: str, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) ``holds`` on ``who``'s balances' ``reserved``."""
    state = w.ledger.state
    account_row = state.row_of(who)
    for balance, amount in holds.items():
        state.bal.arrays["reserved"][state.balance_row(account_row, balance)] += sign * amount


EVENING = datetime(2026, 11, 2, 17, 55, tzinfo=UTC)  # 18:55 in Berlin: off-peak at 19:00
LATER = T + timedelta(hours=3)  # after the postpaid account's bundle ends
REQUESTS = (  # category, destination, start, largest usage asked
    ("call", FIXED, T, 7200),
    ("call", MOBILE, T, 3600),
    ("call", FIXED, EVENING, 3600),
    ("call", "49900123", T, 3600),  # premium: 0.49 + 1.99 a minute, capped at 30
    ("call", "33123", T, 1800),  # Europe: 30 s blocks
    ("call", "1555", T, 1800),  # world: 0.10 + 0.89 a whole minute
    ("call", FREEPHONE, T, 600),
    ("call", "999", T, 60),  # no zone: refused
    ("sms", FIXED, T, 12),
    ("data", "", T, 3 * 10**9),  # 1 GB at 0.01 a MB, then 0.005, per KB
    ("video", "", T, 3),
    ("call", FIXED, LATER, 3600),
)
NAMES = ("pre", "promo", "post", "hyb")


def sample_accounts(draw: st.DrawFn) -> list[tuple[Account, int, Sequence[tuple[Balance, int]]]]:
    eur = st.integers(0, 3 * EUR)
    limit_post, limit_hyb = draw(st.integers(0, 5 * EUR)), draw(st.integers(0, 2 * EUR))
    sms = Balance(id="sms", unit="sms", weight=5, filter=Filter(services=("sms",)))
    data = Balance(id="data", unit="data_bytes", weight=5)
    promo = Balance(id="promo", unit="EUR", weight=5, filter=Filter(categories=("call",)))
    mobile = Balance(id="mob-min", unit="voice_seconds", weight=20,
                     filter=Filter(destinations=("DE_MOBILE",)))  # fmt: skip
    hyb_promo = Balance(id="promo", unit="EUR", weight=1, filter=GERMANY)
    return [
        account("pre", draw(eur), free_minutes(draw(st.integers(0, 1800))),
                (sms, draw(st.integers(0, 20))), (data, draw(st.integers(0, 2 * 10**9)))),
        account("promo", draw(eur), (promo, draw(st.integers(0, EUR))),
                (mobile, draw(st.integers(0, 600)))),
        account("post", -draw(st.integers(0, limit_post)),
                free_minutes(draw(st.integers(0, 1800)), until=T + timedelta(hours=1)),
                mode=Mode.POSTPAID, limit=limit_post),
        account("hyb", draw(st.integers(0, EUR)), (hyb_promo, draw(st.integers(0, EUR))),
                mode=Mode.HYBRID, limit=limit_hyb),
    ]  # fmt: skip


USAGE_ITEMS, USAGE_MONEY, USAGE_DEBT = (
    REASON_CODES[r] for r in ("usage_items", "usage_money", "usage_debt")
)


class ReservationMachine(RuleBasedStateMachine):
    """Interleaved authorizations, commits, releases, expiries, top-ups and restarts.

    Every grant and every charge is compared with the slow twin; after every step the
    balances are checked against what their account's mode allows.
    """

    @initialize(data=st.data())
    def open_accounts(self, data: st.DataObject) -> None:
        self.w = world(*data.draw(st.composite(sample_accounts)()))
        self.open: set[str] = set()
        self.granted: dict[str, tuple[int, float]] = {}  # id -> granted, expires_at
        self.charges: dict[str, Charge] = {}
        self.money_in = {  # the opening amounts of EUR balances
            name: sum(e.delta for e in self.w.ledger.journal(name) if e.balance in (MAIN, "promo"))
            for name in NAMES
        }
        self.topups = 0

    def _ask(self, data: st.DataObject) -> AuthorizeRequest:
        category, destination, start, most = data.draw(st.sampled_from(REQUESTS))
        return AuthorizeRequest(account=data.draw(st.sampled_from(NAMES)), category=category,
                                destination=destination, start=start,
                                requested=data.draw(st.integers(1, most)))  # fmt: skip

    def _sweep(self) -> None:
        """What authorizing does first: reservations past their ttl are released."""
        self.open = {rid for rid in self.open if self.granted[rid][1] > self.w.clock.now}

    @rule(data=st.data(), size=st.integers(1, 4))
    def authorize(self, data: st.DataObject, size: int) -> None:
        asks = [self._ask(data) for _ in range(size)]
        self.w.res.expire()
        self._sweep()
        expected = []
        for q in asks:  # each request sees the holds of the ones before it
            got = twin(self.w, q.account, q.category, q.destination, q.requested, q.start)
            hold(self.w, got[1], q.account, 1)
            expected.append(got)
        for q, (_, holds) in zip(asks, expected, strict=True):
            hold(self.w, holds, q.account, -1)
        grants = (self.w.res.authorize_many(asks) if size > 1 or data.draw(st.booleans())
                  else [call_like(self.w, asks[0])])  # fmt: skip
        assert [(g.granted, g.reserved) for g in grants] == expected
        for g, q in zip(grants, asks, strict=True):
            event(
                f"grant: {'whole' if g.granted == q.requested else 'part' if g.granted else 'none'}"
            )
            assert g.granted <= q.requested
            assert (g.reason == "") == (g.granted == q.requested)
        for g in grants:
            if g.reservation_id:
                self.open.add(g.reservation_id)
                self.granted[g.reservation_id] = g.granted, g.expires_at

    @precondition(lambda self: bool(self.granted))
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        ids = st.sampled_from(list(self.granted))
        rids = data.draw(st.lists(ids, min_size=1, max_size=3, unique=True))
        self._sweep()
        actual = {}
        for rid in rids:
            granted = self.granted[rid][0]
            actual[rid] = data.draw(st.sampled_from([0, granted // 2, granted, granted + 1,
                                                     2 * granted + 30]))  # fmt: skip
        expected = self._commit_twin([rid for rid in rids if rid in self.open], actual)
        answers = self.w.res.commit_many([CommitRequest(rid, actual[rid]) for rid in rids])
        for rid, answer in zip(rids, answers, strict=True):
            if rid in self.open:
                assert isinstance(answer, Charge)
                assert (answer.covered, answer.due, answer.paid, answer.reason) == expected[rid]
                event(f"commit: {answer.reason or 'paid'}")
                self.charges[rid] = answer
                self.open.discard(rid)
            elif rid in self.charges:  # a retry: the first charge, unless forgotten since
                assert answer == self.charges[rid] or isinstance(answer, UnknownReservationError)
            else:  # released or expired (and maybe forgotten since)
                assert isinstance(answer, ReservationFinishedError | UnknownReservationError)

    def _commit_twin(
        self, rids: list[str], actual: dict[str, int]
    ) -> dict[str, tuple[int, int, int, str]]:
        """Free each reservation then debit its usage, in order; the balances are restored."""
        arrays = self.w.ledger.state.bal.arrays
        saved = arrays["amount"].copy(), arrays["reserved"].copy()
        out = {}
        for rid in rids:
            res = self.w.res.get(rid)
            np.subtract.at(arrays["reserved"], list(res.rows), list(res.amounts))
            start = EPOCH + timedelta(microseconds=res.start_us)
            batch = one_record(tenant=TENANT, category=res.category, subject=res.account,
                               destination=res.destination, start=start, usage=actual[rid],
                               time_based=False)  # fmt: skip
            result = self.w.debitor.debit(batch, self.w.rater.rate(batch))
            flagged = result.flags[0] & FLAG_INSUFFICIENT_CREDIT
            out[rid] = (int(result.covered[0]), int(result.due[0]), int(result.paid[0]),
                        INSUFFICIENT_CREDIT if flagged else "")  # fmt: skip
        arrays["amount"][:] = saved[0]
        arrays["reserved"][:] = saved[1]
        return out

    @precondition(lambda self: bool(self.granted))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(list(self.granted)))
        self._sweep()
        if rid in self.open:
            assert self.w.res.release(rid).status == RELEASED
            self.open.discard(rid)
        else:
            with pytest.raises((ReservationFinishedError, UnknownReservationError)):
                self.w.res.release(rid)

    @rule(seconds=st.sampled_from([1, 60, 299, 300, 400]))
    def time_passes(self, seconds: int) -> None:
        self.w.clock.now += seconds
        expired = {r.reservation_id for r in self.w.res.expire()}
        before = set(self.open)
        self._sweep()
        assert expired == before - self.open

    @rule(who=st.sampled_from(NAMES), amount=st.integers(1, EUR))
    def top_up(self, who: str, amount: int) -> None:
        self.topups += 1
        self.w.ledger.topup(who, MAIN, amount, op_id=f"topup-{self.topups}")
        self.money_in[who] += amount

    @rule()
    def restart(self) -> None:
        self.w.ledger.checkpoint()
        arrays = self.w.ledger.state.bal.arrays
        before = arrays["amount"].copy(), arrays["reserved"].copy()
        self.w.reopen()
        arrays = self.w.ledger.state.bal.arrays
        size = self.w.ledger.state.bal.size
        assert arrays["amount"][:size].tolist() == before[0][:size].tolist()
        assert arrays["reserved"][:size].tolist() == before[1][:size].tolist()

    @invariant()
    def balances_stay_within_what_the_mode_allows(self) -> None:
        state = self.w.ledger.state
        arrays = state.bal.arrays
        for name in NAMES:
            a = state.row_of(name)
            holder = state.accounts[a]
            floor = 0 if holder.mode is Mode.PREPAID else -holder.credit_limit
            for row in state.chain(a):
                amount, reserved = int(arrays["amount"][row]), int(arrays["reserved"][row])
                lowest = floor if state.balance_ids[row] == MAIN else 0
                assert reserved >= 0
                assert amount - reserved >= lowest, (name, state.balance_ids[row])
                assert amount >= lowest

    @invariant()
    def reserved_is_what_open_reservations_hold(self) -> None:
        held = np.zeros(self.w.ledger.state.bal.size, dtype=np.int64)
        for rid in self.open:
            res = self.w.res.get(rid)
            np.add.at(held, list(res.rows), list(res.amounts))
        assert self.w.reserved() == held.tolist()

    @invariant()
    def charges_are_the_journal(self) -> None:
        items = money = 0
        paid: dict[str, int] = defaultdict(int)
        for e in self.w.ledger.journal():
            code = REASON_CODES[e.reason]
            if code == USAGE_ITEMS:
                items -= e.delta
            elif code in (USAGE_MONEY, USAGE_DEBT):
                money -= e.delta
                paid[e.account] -= e.delta
        assert items == sum(c.covered for c in self.charges.values())
        assert money == sum(c.paid for c in self.charges.values())
        for name in NAMES:  # every account's money: what came in less what was paid
            held = sum(v.amount for v in self.w.ledger.balances(name) if v.unit == "EUR")
            assert held == self.money_in[name] - paid[name]


def call_like(w: World, q: AuthorizeRequest) -> Grant:
    return w.res.authorize(q.account, category=q.category, destination=q.destination,
                           requested=q.requested, start=q.start)  # fmt: skip


ReservationMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
TestReservationMachine = ReservationMachine.TestCase


def test_an_op_id_of_another_operation_is_a_conflict() -> None:
    w = world(account("alice", EUR))
    w.ledger.topup("alice", MAIN, CENT, op_id="op-1")
    grant = call(w, "alice", 60)
    with pytest.raises(OperationConflictError, match="another operation"):
        w.res.commit(grant.reservation_id, 60, op_id="op-1")
    assert w.held("alice") == {MAIN: (EUR + CENT, 12 * CENT)}  # nothing charged, still held


# -- rates of basis "volume": prices searched by rating candidates --------------------
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_ledgers_priced_together_grant_what_each_would_alone(data: st.DataObject) -> None:
    """A worker's API cycle rates every partition's authorizations in one call: each ledger
    must get exactly the grants and holds its own ``authorize_many`` would give it."""
    vic = account("vic", data.draw(st.integers(0, 5 * CENT)),
                  (Balance(id="data", unit="data_bytes", weight=5),
                   data.draw(st.integers(0, 1_500_000))))  # fmt: skip
    setups = [sample_accounts(data.draw), [vic], sample_accounts(data.draw)]
    # the second ledger has a tariff of its own: it is rated apart from the others
    raters = [sample_rater(), Rater(volume_tariff("0.01", "0.02")), sample_rater()]
    people = [(*NAMES, "nobody"), ("vic", "nobody"), (*NAMES, "nobody")]
    kinds: list[Sequence[tuple[str, str, datetime, int]]] = [
        REQUESTS, [("data", "", T, 3_000_000)], REQUESTS
    ]  # fmt: skip
    asks = [
        data.draw(st.lists(st.tuples(st.sampled_from(people[k]), st.sampled_from(kinds[k]),
                                     st.floats(0.01, 1.0)), max_size=5))
        for k in range(3)
    ]  # fmt: skip

    def requests(k: int) -> list[AuthorizeRequest]:
        return [
            AuthorizeRequest(account=who, category=cat, destination=dest, start=start,
                             requested=max(1, int(most * share)))
            for who, (cat, dest, start, most), share in asks[k]
        ]  # fmt: skip

    alone = [world(*setups[k], rater=raters[k]) for k in range(3)]
    together = [world(*setups[k], rater=raters[k]) for k in range(3)]
    expected = [alone[k].res.authorize_many(requests(k)) for k in range(3)]
    got = authorize_together([(together[k].res, requests(k)) for k in range(3)])
    for k in range(3):
        assert [(g.granted, g.reserved, g.reason, g.expires_at) for g in got[k]] == [
            (g.granted, g.reserved, g.reason, g.expires_at) for g in expected[k]
        ]
        assert together[k].reserved() == alone[k].reserved()
        assert len(together[k].res) == len(alone[k].res)


def test_a_request_for_no_usage_reserves_nothing_in_any_ledger() -> None:
    ws = [world(account("alice", EUR)), world(account("bob", EUR))]
    ok = AuthorizeRequest(account="alice", category="call", destination=FIXED, requested=60,
                          start=T)  # fmt: skip
    bad = AuthorizeRequest(account="bob", category="call", destination=FIXED, requested=0,
                           start=T)  # fmt: skip
    with pytest.raises(ReservationError, match="'bob': requested usage 0 is not positive"):
        authorize_together([(ws[0].res, [ok]), (ws[1].res, [bad])])
    assert [w.reserved() for w in ws] == [[0], [0]]
    assert [len(w.res) for w in ws] == [0, 0]


def volume_tariff(first: str, then: str) -> Tariff:
    """Data at ``first`` EUR a MB for a record under 1 MB, ``then`` for the whole record at
    or above it (basis volume: the tier the record reaches prices all of it), per KB."""
    mb = 1_000_000

    def step(price: str, start: int) -> RateStep:
        return RateStep(group_start=start, price=parse_amount(price, "test"), rate_unit=mb,
                        increment=1000)  # fmt: skip

    rate = Rate(id="RT", steps=(step(first, 0), step(then, mb)), basis=Basis.VOLUME)
    return Tariff(
        name="volume", currency="EUR", timezone="UTC", destinations={}, timings={},
        rates={"RT": rate},
        destination_rates={"DR": DestinationRate(id="DR", destination=ANY, rate="RT")},
        plans={"P": RatingPlan(id="P", bindings=(Binding(destination_rate="DR"),))},
        profiles=(RatingProfile(tenant=TENANT, category="data", subject=ANY,
                                activation=datetime(2020, 1, 1, tzinfo=UTC), plan="P"),),
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    main=st.integers(0, 5 * CENT),
    bundle=st.integers(0, 1_500_000),
    asks=st.lists(st.integers(1, 3_000_000), min_size=1, max_size=3),
)
def test_volume_rates_are_granted_by_the_debit_rules(
    main: int, bundle: int, asks: list[int]
) -> None:
    rater = Rater(volume_tariff("0.01", "0.02"))  # dearer past 1 MB: the price grows with usage
    data = Balance(id="data", unit="data_bytes", weight=5)
    w = world(account("vic", main, (data, bundle)), rater=rater)
    for requested in asks:
        expected = twin(w, "vic", "data", "", requested, T)
        grant = w.res.authorize("vic", category="data", destination="", requested=requested,
                                start=T)  # fmt: skip
        assert (grant.granted, grant.reserved) == expected


def test_a_volume_rate_whose_price_falls_grants_what_is_payable() -> None:
    w = world(account("vic", 15 * CENT // 10), rater=Rater(volume_tariff("0.02", "0.01")))
    # 0.015 pays 750 KB at the first tier's price, or all of a 1.5 MB record at the second's
    grant = w.res.authorize("vic", category="data", destination="", requested=1_500_000, start=T)
    assert (grant.granted, grant.reserved) == (1_500_000, {MAIN: 15 * MILLI})
    charge = w.res.commit(grant.reservation_id, 1_000_000)  # a smaller tier: dearer, unpaid
    assert (charge.due, charge.paid, charge.reason) == (20 * MILLI, 15 * MILLI, INSUFFICIENT_CREDIT)
