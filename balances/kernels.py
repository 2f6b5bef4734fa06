"""Compiled debit kernel: apply a batch of rated records to columnar balances.

Pure ``@njit`` loops over arrays owned by :class:`balances.state.BalanceState`
(:mod:`balances.debit` is the wrapper). The slow, obviously-correct twin is
:func:`balances.reference.debit_reference`; tests assert they agree on every
balance, every journal entry and every per-record outcome.

Per record, in order (see :mod:`balances.debit` for the rules in prose):

1. usage bundles (item balances of the record's measure) cover billed usage
   from the start of the record, in the account's balance order;
2. the money due is the connect fee plus the uncovered part of each span,
   each rounded to nanos by its method, the total rounded and capped as the
   rating rounds it (nothing is due when bundles cover all of it);
3. money balances in the tariff's currency pay it in order; postpaid and
   hybrid accounts then let the main balance go into debt down to minus the
   credit limit; what is still unpaid is flagged ``insufficient credit``;
4. loyalty points are earned on the money paid, by category.

Every change appends a journal row (record, balance, delta, amount after,
reason). All amounts are ``int64``; conversions between nanos and a unit's
precision round up for what is due (the operator is never short-changed by
a sub-unit fraction) and down for points earned.
"""

from __future__ import annotations

from numba import njit

from tariffs.kernels import mul_divmod, round_total, span_amount

# account modes
PREPAID, POSTPAID, HYBRID = 0, 1, 2
# record flags
FLAG_INSUFFICIENT_CREDIT = 1
FLAG_UNKNOWN_ACCOUNT = 2
FLAG_DUPLICATE = 4
FLAG_NOT_RATED = 8
# journal reasons (balances.journal.REASONS names them)
USAGE_ITEMS, USAGE_MONEY, USAGE_DEBT, LOYALTY_EARNED = 1, 2, 3, 4
# unit measures (balances.model.Measure order)
MONEY, SECONDS, BYTES, COUNT, POINTS = 0, 1, 2, 3, 4
NANO_DECIMALS = 9


@njit(cache=True, inline="always")
def admits(f, cat, kind, zone, f_cat, f_kind, f_dest):  # type: ignore[no-untyped-def]
    """Whether filter ``f`` (-1: none) admits a record of category/kind/zone codes."""
    if f < 0:
        return True
    if f_cat[f] != 0 and (cat < 0 or (f_cat[f] >> cat) & 1 == 0):
        return False
    if f_kind[f] != 0 and (f_kind[f] >> kind) & 1 == 0:
        return False
    if f_dest[f, 0] == 0:  # column 0: the filter names no destinations
        return True
    return zone >= 0 and f_dest[f, zone + 1] != 0


@njit(cache=True, inline="always")
def usable(b, t, bal_from, bal_until):  # type: ignore[no-untyped-def]
    return bal_from[b] <= t < bal_until[b]


@njit(cache=True, inline="always")
def to_unit(nanos, decimals):  # type: ignore[no-untyped-def]
    """Nanos of a currency in the unit's precision, rounded up (what is due)."""
    if decimals >= NANO_DECIMALS:
        return nanos * 10 ** (decimals - NANO_DECIMALS)
    step = 10 ** (NANO_DECIMALS - decimals)
    return (nanos + step - 1) // step


@njit(cache=True)
def debit_kernel(  # type: ignore[no-untyped-def]
    account, skip, start_us, kind, measure, category, zone,
    span_start, sp_offset, sp_billed, sp_price, sp_unit, sp_method,
    connect, decimals, method, max_cost, cap,
    currency, currency_decimals, points_per_unit,
    acc_mode, acc_limit, acc_head, acc_main, acc_points, acc_count,
    bal_unit, bal_from, bal_until, bal_filter, bal_amount, bal_reserved, bal_next,
    unit_measure, f_cat, f_kind, f_dest,
    out_covered, out_due, out_paid, out_flags,
    j_record, j_balance, j_delta, j_after, j_reason,
):  # fmt: skip
    """Debit every record not skipped; returns the journal rows written.

    The caller sizes the journal for ``acc_count[account] + 2`` rows per record;
    should it still be short, the kernel stops before record ``i`` (nothing of
    it applied) and returns ``-1 - i``.
    """
    cursor = 0
    cap_rows = len(j_record)
    for i in range(len(account)):
        out_covered[i] = 0
        out_due[i] = 0
        out_paid[i] = 0
        if skip[i] != 0:
            out_flags[i] = skip[i]
            continue
        out_flags[i] = 0
        a = account[i]
        t = start_us[i]
        # at most one row per balance of the account, plus debt and points
        if cursor + acc_count[a] + 2 > cap_rows:
            return -1 - i
        # 1. bundles cover billed usage from the start of the record
        billed = 0
        for c in range(span_start[i], span_start[i + 1]):
            billed += sp_billed[c]
        covered = 0
        b = acc_head[a]
        while b >= 0 and covered < billed:
            if (
                unit_measure[bal_unit[b]] == measure[i]
                and usable(b, t, bal_from, bal_until)
                and admits(bal_filter[b], category[i], kind[i], zone[i], f_cat, f_kind, f_dest)
            ):
                available = bal_amount[b] - bal_reserved[b]
                take = min(available, billed - covered)
                if take > 0:
                    bal_amount[b] -= take
                    covered += take
                    j_record[cursor], j_balance[cursor], j_delta[cursor] = i, b, -take
                    j_after[cursor], j_reason[cursor] = bal_amount[b], USAGE_ITEMS
                    cursor += 1
            b = bal_next[b]
        out_covered[i] = covered
        # 2. money due for what the bundles did not cover
        due = 0
        if covered < billed:
            due = connect[i]
            for c in range(span_start[i], span_start[i + 1]):
                start = sp_offset[c] - sp_offset[span_start[i]]
                inside = min(sp_billed[c], max(0, covered - start))
                rest = sp_billed[c] - inside
                due += span_amount(rest, sp_price[c], sp_unit[c], sp_method[c])
            due = round_total(due, decimals[i], method[i])
            if cap[i] and due > max_cost[i]:
                due = max_cost[i]
        due_units = to_unit(due, currency_decimals)
        out_due[i] = due_units
        # 3. money balances pay in order, then the main balance's credit
        left = due_units
        b = acc_head[a]
        while b >= 0 and left > 0:
            if (
                bal_unit[b] == currency
                and usable(b, t, bal_from, bal_until)
                and admits(bal_filter[b], category[i], kind[i], zone[i], f_cat, f_kind, f_dest)
            ):
                take = min(bal_amount[b] - bal_reserved[b], left)
                if take > 0:
                    bal_amount[b] -= take
                    left -= take
                    j_record[cursor], j_balance[cursor], j_delta[cursor] = i, b, -take
                    j_after[cursor], j_reason[cursor] = bal_amount[b], USAGE_MONEY
                    cursor += 1
            b = bal_next[b]
        main = acc_main[a]
        # debt only in the tariff's currency: a USD account rated in EUR cannot owe EUR
        if left > 0 and acc_mode[a] != PREPAID and main >= 0 and bal_unit[main] == currency:
            room = bal_amount[main] - bal_reserved[main] + acc_limit[a]
            take = min(max(room, 0), left)
            if take > 0:
                bal_amount[main] -= take
                left -= take
                j_record[cursor], j_balance[cursor], j_delta[cursor] = i, main, -take
                j_after[cursor], j_reason[cursor] = bal_amount[main], USAGE_DEBT
                cursor += 1
        if left > 0:
            out_flags[i] |= FLAG_INSUFFICIENT_CREDIT
        paid = due_units - left
        out_paid[i] = paid
        # 4. loyalty points on the money paid (points per whole currency unit, rounded down)
        p = acc_points[a]
        cat = category[i]
        if paid > 0 and p >= 0 and cat >= 0 and points_per_unit[cat] > 0:
            one = 10**currency_decimals
            whole, part = paid // one, paid - paid // one * one
            # part * points may pass int64 (wei): mul_divmod keeps it exact
            earned = whole * points_per_unit[cat] + mul_divmod(part, points_per_unit[cat], one)[0]
            if earned > 0:
                bal_amount[p] += earned
                j_record[cursor], j_balance[cursor], j_delta[cursor] = i, p, earned
                j_after[cursor], j_reason[cursor] = bal_amount[p], LOYALTY_EARNED
                cursor += 1
    return cursor
