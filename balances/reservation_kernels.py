"""Compiled part of real-time authorization: grant what the balances can pay, and hold it.

Pure ``@njit`` code over arrays that :class:`balances.reservations.Reservations`
passes (its wrapper); it mirrors the debit kernel (:mod:`balances.kernels`)
step for step. The slow twin is "debit the usage from a copy of the balances
with :class:`~balances.debit.Debitor` and see that nothing is left unpaid"
(``tests/unit/test_reservations.py``).
"""

from __future__ import annotations

from numba import njit

from balances import kernels as bk
from balances.kernels import admits, to_unit, usable
from tariffs.kernels import round_total, span_amount

# -- kernels -------------------------------------------------------------------------
# Per-record and per-span inputs are 2-D int64 tables (one array argument each: passing
# many arrays to a function that is not inlined costs more than the work it does):
REC_ACCOUNT, REC_SKIP, REC_REQUESTED, REC_START, REC_MEASURE, REC_CATEGORY, REC_KIND, REC_ZONE = (
    range(8)
)
SP_OFFSET, SP_BILLED, SP_PRICE, SP_UNIT, SP_METHOD, SP_INCREMENT = range(6)
M_CONNECT, M_DECIMALS, M_METHOD, M_MAX_COST, M_CAP = range(5)
# State columns come as tuples: acc = (mode, limit, head, main); bal = (unit, from, until,
# filter, amount, reserved, next); filt = (f_cat, f_kind, f_dest) as Debitor compiles them.


@njit(cache=True, inline="always")
def _admitted(b, r, rec, bal, filt):  # type: ignore[no-untyped-def]
    """Whether balance ``b`` is valid at record ``r``'s start and its filter admits ``r``."""
    return usable(b, rec[r, REC_START], bal[1], bal[2]) and admits(
        bal[3][b], rec[r, REC_CATEGORY], rec[r, REC_KIND], rec[r, REC_ZONE], filt[0], filt[1],
        filt[2],
    )  # fmt: skip


@njit(cache=True, inline="always")
def _rooms(r, whole, rec, acc, bal, filt, unit_measure, currency):  # type: ignore[no-untyped-def]
    """What record ``r`` can use: bundle units (counted up to ``whole``, its billed usage)
    and money (money balances, then for postpaid and hybrid the main balance's credit)."""
    mode, limit, head, main = acc
    unit, amount, reserved, nxt = bal[0], bal[4], bal[5], bal[6]
    a = rec[r, REC_ACCOUNT]
    m = main[a]
    bundle, money = 0, 0
    main_left = amount[m] - reserved[m] if m >= 0 else 0
    b = head[a]
    while b >= 0:
        available = amount[b] - reserved[b]
        if available > 0 and _admitted(b, r, rec, bal, filt):
            if unit_measure[unit[b]] == rec[r, REC_MEASURE]:
                bundle += min(available, max(whole - bundle, 0))
            elif unit[b] == currency:
                money += available
                if b == m:
                    main_left = 0  # the money step spends it: the debt step starts at zero
        b = nxt[b]
    if mode[a] != bk.PREPAID and m >= 0:  # the debit's debt step, after the money step
        money += max(main_left + limit[a], 0)
    return bundle, money


@njit(cache=True, inline="always")
def _price(r, x, bundle, span_start, sp, money, currency_decimals):  # type: ignore[no-untyped-def]
    """Debit kernel step 2: what record ``r`` owes for billed usage ``x`` (a prefix of its
    spans ending on an increment boundary) with ``bundle`` units available, in the
    currency's amount units."""
    covered = min(x, bundle)
    if covered >= x:
        return 0  # bundles cover it all: no connect fee either
    due = money[r, M_CONNECT]
    base = sp[span_start[r], SP_OFFSET]
    for c in range(span_start[r], span_start[r + 1]):
        start = sp[c, SP_OFFSET] - base
        if start >= x:
            break
        billed = min(sp[c, SP_BILLED], x - start)  # the span as rating usage x cuts it
        rest = billed - min(billed, max(0, covered - start))
        due += span_amount(rest, sp[c, SP_PRICE], sp[c, SP_UNIT], sp[c, SP_METHOD])
    due = round_total(due, money[r, M_DECIMALS], money[r, M_METHOD])
    if money[r, M_CAP] and due > money[r, M_MAX_COST]:
        due = money[r, M_MAX_COST]
    return to_unit(due, currency_decimals)


@njit(cache=True)
def _payable(r, budget, bundle, span_start, sp, money, currency_decimals):  # type: ignore[no-untyped-def]
    """The largest billed usage of record ``r`` whose price is at most ``budget``.

    The price only grows with usage and is constant inside an increment, so the
    answer is a span's end or an increment boundary inside the first span that is
    not wholly payable: a binary search over that span's increments.
    """
    base = sp[span_start[r], SP_OFFSET]
    for c in range(span_start[r], span_start[r + 1]):
        start, inc = sp[c, SP_OFFSET] - base, sp[c, SP_INCREMENT]
        lo, hi = 0, sp[c, SP_BILLED] // inc  # lo increments payable, hi maybe not
        if _price(r, start + hi * inc, bundle, span_start, sp, money, currency_decimals) <= budget:
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _price(r, start + mid * inc, bundle, span_start, sp, money,
                      currency_decimals) <= budget:  # fmt: skip
                lo = mid
            else:
                hi = mid
        return start + lo * inc
    return sp[span_start[r + 1] - 1, SP_OFFSET] - base + sp[span_start[r + 1] - 1, SP_BILLED]


@njit(cache=True, inline="always")
def _hold(r, x, due, k, rec, acc, bal, filt, unit_measure, currency, res_row, res_amount):  # type: ignore[no-untyped-def]
    """Debit kernel steps 1 and 3 into ``reserved``: hold billed usage ``x`` and money
    ``due`` for record ``r`` from the balances, in the order the debit would take them
    from; rows go from ``k`` on (one per balance). Returns the next free row."""
    mode, limit, head, main = acc
    unit, amount, reserved, nxt = bal[0], bal[4], bal[5], bal[6]
    a = rec[r, REC_ACCOUNT]
    first = k
    covered, left = 0, due
    b = head[a]
    while b >= 0 and (covered < x or left > 0):
        take = 0
        if _admitted(b, r, rec, bal, filt):
            if unit_measure[unit[b]] == rec[r, REC_MEASURE]:
                take = min(amount[b] - reserved[b], x - covered)
                covered += max(take, 0)
            elif unit[b] == currency:
                take = min(amount[b] - reserved[b], left)
                left -= max(take, 0)
        if take > 0:
            reserved[b] += take
            res_row[k], res_amount[k] = b, take
            k += 1
        b = nxt[b]
    m = main[a]
    if left > 0 and mode[a] != bk.PREPAID and m >= 0:
        take = min(max(amount[m] - reserved[m] + limit[a], 0), left)
        if take > 0:
            reserved[m] += take
            j = first
            while j < k and res_row[j] != m:  # one row per balance: add to the money step's
                j += 1
            if j == k:
                res_row[k], res_amount[k] = m, 0
                k += 1
            res_amount[j] += take
    return k


@njit(cache=True)
def authorize_kernel(  # type: ignore[no-untyped-def]
    rec, span_start, sp, money, acc, bal, filt, unit_measure, currency, currency_decimals,
    out_granted, out_short, res_ptr, res_row, res_amount,
):  # fmt: skip
    """Grant and hold each record not skipped, in order (a hold counts for the next ones).

    Record ``r`` is rated for its whole request; its holds go to rows
    ``res_ptr[r]:res_ptr[r + 1]`` (the caller sizes them for ``acc_count + 1`` per
    record). ``out_short`` is 1 where less than requested was granted for lack of money.
    """
    k = 0
    res_ptr[0] = 0
    for r in range(len(rec)):
        out_granted[r] = 0
        out_short[r] = 0
        if rec[r, REC_SKIP] == 0:
            whole = 0
            for c in range(span_start[r], span_start[r + 1]):
                whole += sp[c, SP_BILLED]
            bundle, budget = _rooms(r, whole, rec, acc, bal, filt, unit_measure, currency)
            x, granted = whole, rec[r, REC_REQUESTED]
            due = _price(r, x, bundle, span_start, sp, money, currency_decimals)
            if due > budget:
                x = _payable(r, budget, bundle, span_start, sp, money, currency_decimals)
                granted = min(x, granted)  # x < whole: below the request
                due = _price(r, x, bundle, span_start, sp, money, currency_decimals)
                out_short[r] = 1
            if granted > 0:
                k = _hold(r, x, due, k, rec, acc, bal, filt, unit_measure, currency, res_row,
                          res_amount)  # fmt: skip
            out_granted[r] = granted
        res_ptr[r + 1] = k


@njit(cache=True)
def quote_kernel(  # type: ignore[no-untyped-def]
    rec, span_start, sp, money, acc, bal, filt, unit_measure, currency, currency_decimals,
    out_price, out_budget,
):  # fmt: skip
    """Each record's price for all its billed usage, and the money it could pay (no holds)."""
    for r in range(len(rec)):
        whole = 0
        for c in range(span_start[r], span_start[r + 1]):
            whole += sp[c, SP_BILLED]
        bundle, out_budget[r] = _rooms(r, whole, rec, acc, bal, filt, unit_measure, currency)
        out_price[r] = _price(r, whole, bundle, span_start, sp, money, currency_decimals)


# -- the Python side -----------------------------------------------------------------
