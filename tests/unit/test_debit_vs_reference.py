"""The debit kernel agrees with its reference on random accounts, balances and records.

Accounts of every mode with random credit limits hold balances of the sample
units (bundles, money in the tariff's currency and another, points) with
random amounts, reservations, weights (often equal), validity windows around
the records and filters drawn from the sample plan's categories, zones and
services. Records of every kind, on the plan's prefixes and categories (and
some that cannot be rated, or name no known account), start over four days
that hold a weekend, nights and peaks, and are debited in one to three
batches. :func:`tests.unit.test_debit.debit` asserts the compiled path and
:func:`~balances.reference.debit_reference` agree on every outcome, every
journal row and every final amount; this file adds that each balance is its
opening amount plus its journal.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import event as note
from hypothesis import given, settings
from hypothesis import strategies as st

from balances.model import Filter, Mode
from balances.state import MAIN_WEIGHT
from engine.columns import KIND_NAMES
from engine.records import Record
from tests.unit.test_debit import (
    EUR,
    FIXED,
    MOBILE,
    PREMIUM,
    Holder,
    Opening,
    data,
    debit,
    event,
    holder,
    opening,
    sms,
    voice,
)

START = datetime(2026, 11, 1, 23, tzinfo=UTC)  # Monday 00:00 in Berlin
QUARTERS = 6 * 24 * 4  # Monday to Saturday, in quarter hours: validity ends and starts meet
ACCOUNTS = ("a1", "a2", "a3")
CATEGORIES = ("call", "sms", "data", "video", "fax")
ZONES = ("GERMANY", "DE_MOBILE", "DE_PREMIUM", "DE_FREEPHONE", "EUROPE", "WORLD")
VOICE_NUMBERS = (FIXED, FIXED, MOBILE, MOBILE, PREMIUM, "49800123", "3312345", "15551234", "999")
SMS_NUMBERS = (FIXED, MOBILE, "3312345", "3312345", "999")
EVENTS = ("video", "video", "video", "fax")
# the most each unit holds, and a fair share of that for one record
HOLDS = {"voice_seconds": 7200, "sms": 30, "data_bytes": 2 * 10**9, "video_plays": 5,
         "points": 100, "EUR": 30 * EUR, "USD": 30 * EUR}  # fmt: skip
# bundles and money more often than the rest
UNITS = ("voice_seconds",) * 4 + ("data_bytes",) * 2 + ("EUR",) * 2 + (
    "sms", "video_plays", "points", "USD")  # fmt: skip

instants = st.integers(0, QUARTERS).map(lambda q: START + timedelta(minutes=15 * q))
filters = st.builds(
    Filter,
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True).map(tuple),
    destinations=st.lists(st.sampled_from(ZONES), max_size=2, unique=True).map(tuple),
    services=st.lists(st.sampled_from(KIND_NAMES), max_size=2, unique=True).map(tuple),
)


@st.composite
def openings(draw: st.DrawFn, balance_id: str, moments: st.SearchStrategy[datetime]) -> Opening:
    unit = draw(st.sampled_from(UNITS))
    amount = draw(st.integers(0, draw(st.sampled_from([HOLDS[unit] // 10, HOLDS[unit]]))))
    reserved = draw(st.sampled_from([0, 0, 0, 0, amount, amount // 2]))
    window = sorted([draw(moments), draw(moments)])
    if window[0] == window[1]:
        window[1] += timedelta(minutes=15)
    valid_from = draw(st.sampled_from([None, window[0]]))
    valid_until = draw(st.sampled_from([None, window[1]]))
    only = draw(st.sampled_from([Filter(), Filter(), draw(filters)]))
    # equal weights, so that expiry and age decide; some below the main balance's
    weight = draw(st.sampled_from([0, 0, 1, 1, MAIN_WEIGHT, MAIN_WEIGHT - 1]))
    return opening(balance_id, unit, amount, reserved=reserved, weight=weight,
                   valid_from=valid_from, valid_until=valid_until, only=only)  # fmt: skip


@st.composite
def holders(draw: st.DrawFn, name: str, moments: st.SearchStrategy[datetime]) -> Holder:
    count = draw(st.integers(0, 8))
    balances = [draw(openings(f"b{k}", moments)) for k in range(count)]
    if draw(st.booleans()):  # points earned need a points balance: often have one
        balances.insert(draw(st.integers(0, count)), opening("pts", "points", 0))
    mode = draw(st.sampled_from(list(Mode)))
    limit = draw(st.sampled_from([0, EUR, 10 * EUR, draw(st.integers(0, 20 * EUR))]))
    main = draw(st.integers(-2 * EUR, 10 * EUR))
    reserved = draw(st.sampled_from([0, 0, max(main, 0) // 2, draw(st.integers(0, EUR))]))
    return holder(name, *balances, mode=mode, limit=limit, main=main, main_reserved=reserved)


@st.composite
def records(draw: st.DrawFn, names: list[str]) -> Record:
    who = draw(st.sampled_from([*names, *names, *names, "ghost"]))
    start = draw(instants)
    kind = draw(st.sampled_from(["voice", "voice", "voice", "sms", "data", "event"]))
    if kind == "voice":
        number = draw(st.sampled_from(VOICE_NUMBERS))
        usage = draw(st.integers(0, draw(st.sampled_from([900, 3 * 3600]))))
        return voice(who, number, usage, start)
    if kind == "sms":
        return sms(who, draw(st.sampled_from(SMS_NUMBERS)), draw(st.integers(0, 12)), start)
    if kind == "data":
        return data(who, draw(st.integers(0, 3 * 10**9)), start)
    return event(who, draw(st.sampled_from(EVENTS)), draw(st.integers(0, 3)), start)


@st.composite
def workloads(draw: st.DrawFn) -> tuple[list[Holder], list[Record], list[int], list[int]]:
    names = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=3, unique=True))
    batch = draw(st.lists(records(names), min_size=5, max_size=30))
    # validity windows often start or end just when a record starts
    moments = st.one_of(instants, st.sampled_from([r.start for r in batch]))
    accounts = [draw(holders(name, moments)) for name in names]
    skip = draw(st.lists(st.sampled_from([0] * 9 + [4]), min_size=len(batch),
                         max_size=len(batch)))  # fmt: skip
    cuts = sorted(draw(st.sets(st.integers(1, len(batch) - 1), max_size=2)))
    return accounts, batch, skip, cuts


@settings(deadline=None, max_examples=500)
@given(
    workloads(),
    st.sampled_from([{}, {"call": 10}, {"call": 7, "sms": 50, "video": 100, "data": 3}]),
    st.booleans(),
)
def test_kernel_agrees_with_reference(
    workload: tuple[list[Holder], list[Record], list[int], list[int]],
    earn: dict[str, int],
    bulk: bool,
) -> None:
    """Accounts made one balance at a time or all at once (``bulk``) debit alike."""
    accounts, batch, skip, cuts = workload
    # debit() asserts outcomes, journal and final amounts equal to the reference's
    d = debit(accounts, batch, earn=earn, skip=skip, cuts=cuts, bulk=bulk)
    for o in d.outcomes:
        note(f"flags {o.flags}")
        note(f"bundles {'and money ' if o.due else ''}pay" if o.covered else "no bundle pays")
    for reason in sorted({row.reason for row in d.journal}):
        note(f"journal reason {reason}")
    running = Counter(d.book.opening)
    for row in d.journal:
        running[row.balance] += row.delta
        assert row.after == running[row.balance]
    assert d.book.amounts() == dict(running)
