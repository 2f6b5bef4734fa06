"""Day maths, rounding and subscription timelines against the slow reference, and bill
cycles across time zones around midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.catalog import Period, RecurringFee, Timing
from billing.charges import midnight_us
from billing.cycles import cycle_bounds, cycle_of, local_day
from billing.exceptions import ProfileError
from billing.model import SubscriptionAction, SubscriptionEvent
from billing.proration import (
    active,
    index_of_day,
    prorate,
    round_ratio,
    share,
    span,
    span_of_index,
)
from billing.subscriptions import OPEN, fold
from tests.billing_reference import (
    RefSubscription,
    cycle_dates,
    days_of,
    fee_share,
)
from tests.billing_reference import (
    cycle_of as ref_cycle_of,
)

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None)
ZONES = [
    "Pacific/Kiritimati",  # UTC+14: its midnight is 10:00 the day before in UTC
    "Pacific/Pago_Pago",  # UTC-11
    "America/Los_Angeles",
    "Europe/Berlin",
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 / -02:30
    "Australia/Lord_Howe",  # half-hour daylight saving
    "UTC",
]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
days = st.dates(date(2023, 1, 1), date(2030, 12, 31))


# --- rounding and fee shares -----------------------------------------------------------


@SETTINGS
@given(
    st.integers(-(10**15), 10**15),
    st.integers(1, 400),
    st.sampled_from([1, 10**7, 10**9, 5 * 10**6]),
)
def test_round_ratio_is_decimal_half_even(num: int, den: int, step: int) -> None:
    exact = Decimal(num) / Decimal(den) / Decimal(step)
    want = int(exact.quantize(Decimal(1), ROUND_HALF_EVEN)) * step
    assert round_ratio(num, den, step) == want


def test_round_ratio_halves_go_to_even() -> None:
    cent = 10**7
    assert round_ratio(1_485 * 10**6, 1, cent) == 148 * cent  # 1.485 → 1.48
    assert round_ratio(495 * 10**6, 1, cent) == 50 * cent  # 0.495 → 0.50
    assert round_ratio(-1_485 * 10**6, 1, cent) == -148 * cent
    assert round_ratio(5 * 10**8, 1, 10**9) == 0  # 0.5 XOF → 0
    assert round_ratio(15 * 10**8, 1, 10**9) == 2 * 10**9  # 1.5 XOF → 2


def fee(amount: str, period: Period) -> RecurringFee:
    nanos = int(Decimal(amount) * 10**9)
    return RecurringFee("F", "P", "fee", nanos, period, Timing.ARREARS, f"{amount} EUR")


@SETTINGS
@given(
    st.sampled_from(["30.00", "0.495", "49.00", "1500", "0.01", "7.77"]),
    st.sampled_from(list(Period)),
    st.integers(0, 366),
    st.sampled_from([28, 29, 30, 31, 365, 366]),
)
def test_prorate_matches_the_reference(amount: str, period: Period, used: int, total: int) -> None:
    spec = {"amount": amount, "period": period.value}
    want = fee_share(spec, used, total).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    assert Decimal(prorate(fee(amount, period), used, total, 10**7)) / 10**9 == want


def test_share_says_how() -> None:
    assert share(fee("30.00", Period.MONTHLY), 12, 30) == "12/30 days of 30.00 EUR"
    assert share(fee("5.00", Period.WEEKLY), 10, 30) == "10/7 weeks of 5.00 EUR"
    assert share(fee("0.99", Period.DAILY), 3, 30) == "3 days × 0.99 EUR"
    assert share(fee("49.00", Period.YEARLY), 200, 366) == "200/366 days of 49.00 EUR"


# --- cycles as day ordinals -----------------------------------------------------------


@SETTINGS
@given(days, st.integers(1, 28))
def test_cycle_of_a_day_matches_the_reference(day: date, bill_day: int) -> None:
    cycle = ref_cycle_of(day, bill_day)
    first, end = cycle_dates(cycle, bill_day)
    got = span_of_index(index_of_day(day.toordinal(), bill_day), bill_day)
    assert (got.name, got.first, got.end) == (cycle, first.toordinal(), end.toordinal())
    assert got.days == len(days_of(first, end))
    assert span(cycle, bill_day) == got


@pytest.mark.parametrize(
    ("cycle", "bill_day", "length"),
    [("2024-02", 1, 29), ("2028-02", 1, 29), ("2026-02", 1, 28), ("2026-01", 31 - 3, 31),
     ("2024-01", 15, 31), ("2024-02", 15, 29), ("2026-04", 1, 30), ("2026-12", 28, 31)],
)  # fmt: skip
def test_cycle_lengths(cycle: str, bill_day: int, length: int) -> None:
    assert span(cycle, bill_day).days == length


# --- time zones around midnight -------------------------------------------------------


def instant_us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


@settings(SETTINGS, max_examples=150)
@given(
    days,
    st.sampled_from([time(0, 0), time(0, 0, 0, 1), time(23, 59, 59, 999_999), time(12, 0)]),
    st.sampled_from(ZONES),
    st.integers(1, 28),
)
def test_cycle_of_an_instant_is_the_cycle_of_its_local_day(
    day: date, clock: time, zone: str, bill_day: int
) -> None:
    local = datetime.combine(day, clock, tzinfo=ZoneInfo(zone))
    assert cycle_of(instant_us(local), bill_day, zone) == ref_cycle_of(day, bill_day)


@SETTINGS
@given(days, st.sampled_from(ZONES), st.integers(1, 28))
def test_cycle_bounds_are_local_midnights(day: date, zone: str, bill_day: int) -> None:
    cycle = ref_cycle_of(day, bill_day)
    first, end = cycle_dates(cycle, bill_day)
    bounds = cycle_bounds(cycle, bill_day, zone)
    assert (bounds.first_day, bounds.end_day, bounds.days) == (first, end, (end - first).days)
    for edge, day_on in ((bounds.start_us, first), (bounds.end_us, end)):
        assert local_day(edge, zone) == day_on
        assert local_day(edge - 1, zone) == day_on - timedelta(days=1)
    assert midnight_us(first.toordinal(), zone) == bounds.start_us
    assert midnight_us(day.toordinal(), zone) == instant_us(
        datetime.combine(day, time(0), tzinfo=ZoneInfo(zone))
    )


def test_kiritimati_midnight_is_the_day_before_in_utc() -> None:
    bounds = cycle_bounds("2026-11", 1, "Pacific/Kiritimati")
    assert EPOCH + timedelta(microseconds=bounds.start_us) == datetime(2026, 10, 31, 10, tzinfo=UTC)
    assert cycle_of(bounds.start_us, 1, "Pacific/Kiritimati") == "2026-11"
    assert cycle_of(bounds.start_us, 1, "UTC") == "2026-10"
    assert cycle_of(bounds.start_us - 1, 1, "Pacific/Kiritimati") == "2026-10"


# --- subscription timelines -----------------------------------------------------------


def ev(n: int, action: str, day: date, product: str = "", sub: str = "s") -> SubscriptionEvent:
    return SubscriptionEvent(
        event_id=f"{sub}-{n}",
        account="acc",
        subscription=sub,
        action=SubscriptionAction(action),
        day=day.isoformat(),
        product=product,
    )


@st.composite
def histories(draw: st.DrawFn) -> list[SubscriptionEvent]:
    day = draw(days)
    product = draw(st.sampled_from("ABC"))
    events = [ev(0, "subscribe", day, product)]
    suspended = False
    for n in range(1, draw(st.integers(0, 6)) + 1):
        day += timedelta(days=draw(st.integers(0, 20)))
        action = draw(st.sampled_from(["change", "resume" if suspended else "suspend", "end"]))
        if action == "change":
            product = draw(st.sampled_from([p for p in "ABC" if p != product]))
        suspended = {"suspend": True, "resume": False}.get(action, suspended)
        events.append(ev(n, action, day, product if action == "change" else ""))
        if action == "end":
            break
    return events


@SETTINGS
@given(histories(), st.randoms(use_true_random=False))
def test_timelines_match_the_day_by_day_replay(
    events: list[SubscriptionEvent], rnd: object
) -> None:
    shuffled = [*events, events[-1], events[0]]  # in any order, some twice
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    (timeline,) = fold(shuffled, "acc", {"A", "B", "C"})
    assert fold(events) == [timeline]
    reference = RefSubscription("s", events)
    first = reference.start - timedelta(days=3)
    stop = reference.last_day + timedelta(days=10)
    for day in days_of(first, stop):
        want = reference.on(day)
        got = [
            (s.product, s.suspended)
            for s in timeline.segments
            if s.start <= day.toordinal() < s.end
        ]
        assert got == ([want] if want[0] else [])
    assert timeline.start == reference.start.toordinal()
    assert timeline.end == (reference.end.toordinal() if reference.end else OPEN)
    assert list(timeline.products()) == reference.products()
    lo, hi = first.toordinal() + 5, first.toordinal() + 40
    for product in "ABC":
        counted, first_day, end = active(timeline.segments, product, lo, hi)
        used = [d for d in days_of(date.fromordinal(lo), date.fromordinal(hi))
                if reference.active(d, product)]  # fmt: skip
        assert counted == len(used)
        if used:
            assert (first_day, end) == (used[0].toordinal(), used[-1].toordinal() + 1)


def test_same_day_events_apply_subscribe_first_and_end_last() -> None:
    d = date(2026, 11, 10)
    events = [ev(3, "end", d), ev(2, "change", d, "B"), ev(1, "subscribe", d, "A")]
    (timeline,) = fold(events)
    assert timeline.segments == ()
    assert (timeline.start, timeline.end) == (d.toordinal(), d.toordinal())
    events = [ev(2, "resume", d), ev(1, "suspend", d), ev(0, "subscribe", date(2026, 11, 1), "A")]
    (timeline,) = fold(events)  # suspended and resumed the same day: no gap
    assert [(s.product, s.first_day, s.end_day) for s in timeline.segments] == [
        ("A", date(2026, 11, 1), None)
    ]


BAD_HISTORIES = {
    "change before subscribe": (
        [ev(0, "subscribe", date(2026, 11, 10), "A"), ev(1, "change", date(2026, 11, 2), "B")],
        "'s-1' (change on 2026-11-02) of subscription 's': the subscription has not started",
    ),
    "resume an active one": (
        [ev(0, "subscribe", date(2026, 11, 1), "A"), ev(1, "resume", date(2026, 11, 2))],
        "'s-1' (resume on 2026-11-02) of subscription 's': the subscription is not suspended",
    ),
    "suspend twice": (
        [ev(0, "subscribe", date(2026, 11, 1), "A"), ev(1, "suspend", date(2026, 11, 2)),
         ev(2, "suspend", date(2026, 11, 3))],
        "'s-2' (suspend on 2026-11-03) of subscription 's': the subscription is already suspended",
    ),
    "after the end": (
        [ev(0, "subscribe", date(2026, 11, 1), "A"), ev(1, "end", date(2026, 11, 2)),
         ev(2, "change", date(2026, 11, 3), "B")],
        "'s-2' (change on 2026-11-03) of subscription 's': the subscription has already ended",
    ),
    "subscribe twice": (
        [ev(0, "subscribe", date(2026, 11, 1), "A"), ev(1, "subscribe", date(2026, 11, 2), "B")],
        "'s-1' (subscribe on 2026-11-02) of subscription 's': the subscription has already started",
    ),
    "change to the same product": (
        [ev(0, "subscribe", date(2026, 11, 1), "A"), ev(1, "change", date(2026, 11, 2), "A")],
        "the subscription is already on 'A'",
    ),
    "unknown product": (
        [ev(0, "subscribe", date(2026, 11, 1), "Z")],
        "'s-0' (subscribe on 2026-11-01) of subscription 's': product 'Z' is not in the catalog",
    ),
    "no product": ([ev(0, "subscribe", date(2026, 11, 1))], "'s-0'"),
    "same id, other content": (
        [ev(0, "subscribe", date(2026, 11, 1), "A"), ev(0, "subscribe", date(2026, 11, 1), "B")],
        "'s-0' (subscribe on 2026-11-01): the same event id was given with other content",
    ),
    "other account": (
        [SubscriptionEvent(event_id="x", account="other", subscription="s",
                           action=SubscriptionAction.SUBSCRIBE, day="2026-11-01", product="A")],
        "'x' (subscribe on 2026-11-01): belongs to account 'other', not 'acc'",
    ),
    "bad day": (
        [SubscriptionEvent(event_id="x", account="acc", subscription="s",
                           action=SubscriptionAction.SUBSCRIBE, day="2026-11-31", product="A")],
        "'x' (subscribe on 2026-11-31): '2026-11-31' is not an ISO date",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("events", "message"), BAD_HISTORIES.values(), ids=BAD_HISTORIES.keys())
def test_invalid_histories_name_the_event(events: list[SubscriptionEvent], message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        fold(events, "acc", {"A", "B", "C"})
    assert message in str(caught.value)
