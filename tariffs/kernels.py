"""Compiled guide and rating kernels: pure ``@njit`` loops over batch columns.

Nothing here does I/O, logging or argument checks; :mod:`tariffs.rating` is
the thin wrapper that validates, allocates the ``out`` arrays and names
results. The slow, obviously-correct twin is
:func:`tariffs.reference.rate_reference`; tests assert the two agree on every
field of :class:`tariffs.rated.Rating`.

Numeric choices: all money is ``int64`` nanos and all time ``int64`` seconds
or microseconds; no float touches an amount (binding weights are the only
floats, and they are only compared). ``fastmath`` stays off.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tariffs.compile import (
    BINDING_DRATE,
    BINDING_TIMING,
    DRATE_DECIMALS,
    DRATE_MAX_COST,
    DRATE_RATE,
    DRATE_ROUNDING,
    DRATE_STRATEGY,
    RATE_BASIS,
    RATE_CONNECT,
    RATE_STEP_HI,
    RATE_STEP_LO,
    STEP_GROUP_START,
    STEP_INCREMENT,
    STEP_PRICE,
    STEP_UNIT,
    TIMING_MONTH_DAYS,
    TIMING_MONTHS,
    TIMING_START,
    TIMING_WEEKDAYS,
    TIMING_YEARS,
    YEAR_BASE,
)

OK = 0
ERR_PLAN_NOT_FOUND = 1
ERR_UNAUTHORIZED_DESTINATION = 2
ERR_NO_TIMING = 3
ERR_USAGE_OUT_OF_RANGE = 4

BASIS_RECORD = 0
BASIS_GRADUATED = 1
BASIS_VOLUME = 2

DAY = 86_400
US = 1_000_000
FAR = 2**62
MAX_FALLBACKS = 64
DAY_SLOTS = 8  # days remembered per binding group in the day cache (a power of two)
MUL_EXACT = 3_037_000_499  # floor(sqrt(2**63 - 1)): two factors below it multiply in int64


# -- strings ------------------------------------------------------------------------
@njit(cache=True, inline="always")
def walk(symbol, children, node, data, a, b):  # type: ignore[no-untyped-def]
    """Follow bytes ``data[a:b]`` from ``node``; -1 once a byte has no edge."""
    for j in range(a, b):
        col = symbol[data[j]]
        if col < 0:
            return -1
        node = children[node, col]
        if node < 0:
            return -1
    return node


@njit(cache=True, inline="always")
def match_prefix(symbol, children, depth, node_group, plan, data, a, b):  # type: ignore[no-untyped-def]
    """Longest prefix of ``data[a:b]`` bound in ``plan``: (group, prefix length)."""
    best = node_group[0, plan]
    length = 0
    node = 0
    for j in range(a, b):
        col = symbol[data[j]]
        if col < 0:
            break
        node = children[node, col]
        if node < 0:
            break
        g = node_group[node, plan]
        if g >= 0:
            best = g
            length = depth[node]
    return best, length


# -- calendar -----------------------------------------------------------------------
@njit(cache=True, inline="always")
def utc_offset(transitions, offsets, t, hint):  # type: ignore[no-untyped-def]
    """(offset at UTC second ``t``, next transition or FAR, index) — ``hint`` is tried first.

    Records of a batch are close in time, so the previous record's index almost
    always holds and the binary search is skipped.
    """
    n = len(transitions)
    lo = hint
    if not (transitions[lo] <= t and (lo + 1 == n or t < transitions[lo + 1])):
        lo, hi = 0, n
        while hi - lo > 1:  # transitions[lo] <= t < transitions[hi]
            mid = (lo + hi) // 2
            if transitions[mid] <= t:
                lo = mid
            else:
                hi = mid
    nxt = transitions[lo + 1] if lo + 1 < n else FAR
    return offsets[lo], nxt, lo


@njit(cache=True, inline="always")
def civil(days):  # type: ignore[no-untyped-def]
    """Days since 1970-01-01 -> (year, month, day, ISO weekday); H. Hinnant's algorithm."""
    weekday = (days + 3) % 7 + 1  # 1970-01-01 was a Thursday (4)
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day, weekday


@njit(cache=True, inline="always")
def day_match(timings, ti, year, month, day, weekday):  # type: ignore[no-untyped-def]
    """Whether timing ``ti``'s year, month, month-day and weekday filters admit the date."""
    row = timings[ti]
    if row[TIMING_MONTHS] != 0 and (row[TIMING_MONTHS] >> month) & 1 == 0:
        return False
    if row[TIMING_MONTH_DAYS] != 0 and (row[TIMING_MONTH_DAYS] >> day) & 1 == 0:
        return False
    if row[TIMING_WEEKDAYS] != 0 and (row[TIMING_WEEKDAYS] >> weekday) & 1 == 0:
        return False
    words = (
        row[TIMING_YEARS] | row[TIMING_YEARS + 1] | row[TIMING_YEARS + 2] | row[TIMING_YEARS + 3]
    )
    if words == 0:
        return True
    y = year - YEAR_BASE
    return 0 <= y < 256 and (row[TIMING_YEARS + y // 64] >> (y % 64)) & 1 == 1


@njit(cache=True)
def _cut_day(g, days, slot, group_bindings, group_binding, bindings, b_weight, timings, day_cache):  # type: ignore[no-untyped-def]
    """Cut local day ``days`` into segments, each with the binding of group ``g`` in force.

    At a time of day the in-force binding is the matching one with the highest
    weight, then the latest start, then the first in plan order; it can only
    change at a matching timing's start, so those starts cut the day. Layout of
    ``day_cache[g, slot]``: day, segment count, then (start, binding) pairs.
    """
    year, month, day, weekday = civil(days)
    lo, hi = group_bindings[g], group_bindings[g + 1]
    ok = np.zeros(hi - lo, dtype=np.bool_)
    starts = np.zeros(hi - lo + 1, dtype=np.int64)  # starts[0] = 0: midnight always cuts
    n_starts = 1
    for j in range(lo, hi):
        ti = bindings[group_binding[j], BINDING_TIMING]
        ok[j - lo] = day_match(timings, ti, year, month, day, weekday)
        if ok[j - lo]:
            starts[n_starts] = timings[ti, TIMING_START]
            n_starts += 1
    row = day_cache[g, slot]
    n = 0
    for s in np.unique(starts[:n_starts]):
        best, best_weight, best_start = -1, 0.0, -1
        for j in range(lo, hi):
            b = group_binding[j]
            ts = timings[bindings[b, BINDING_TIMING], TIMING_START]
            if not ok[j - lo] or ts > s:
                continue
            w = b_weight[b]
            if best < 0 or w > best_weight or (w == best_weight and ts > best_start):
                best, best_weight, best_start = b, w, ts
        if n == 0 or row[2 + 2 * n - 1] != best:  # merge equal neighbours
            row[2 + 2 * n] = s
            row[2 + 2 * n + 1] = best
            n += 1
    row[0] = days
    row[1] = n


@njit(cache=True, inline="always")
def segment(g, local, group_bindings, group_binding, bindings, b_weight, timings, day_cache):  # type: ignore[no-untyped-def]
    """(binding of group ``g`` in force at local second ``local`` or -1, local end of that).

    ``day_cache`` keeps each group's cut of the last days seen (slot = day mod 8),
    so the timing rules are evaluated once per group and day, not per record.
    """
    days = local // DAY
    tod = local - days * DAY
    slot = days & (DAY_SLOTS - 1)
    row = day_cache[g, slot]
    if row[0] != days:
        _cut_day(
            g, days, slot, group_bindings, group_binding, bindings, b_weight, timings, day_cache
        )
    n = row[1]
    k = 0
    while k + 1 < n and row[2 + 2 * (k + 1)] <= tod:
        k += 1
    end = row[2 + 2 * (k + 1)] if k + 1 < n else DAY
    return row[2 + 2 * k + 1], days * DAY + end


# -- guide --------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _activation(key, start_us, key_act, act_time_us):  # type: ignore[no-untyped-def]
    """The key's activation in force at ``start_us`` (latest not after it), or -1.

    Activations of a key are sorted by time, stable in the order they were listed.
    """
    found = -1
    for a in range(key_act[key], key_act[key + 1]):
        if act_time_us[a] <= start_us and (found < 0 or act_time_us[a] > act_time_us[found]):
            found = a  # the first listed of equal activations
    return found


@njit(cache=True, inline="always")
def _same_bytes(data, a, b, c, d):  # type: ignore[no-untyped-def]
    if b - a != d - c:
        return False
    for j in range(b - a):
        if data[a + j] != data[c + j]:
            return False
    return True


@njit(cache=True)
def guide_kernel(  # type: ignore[no-untyped-def]
    tenant,
    tenant_off,
    category,
    category_off,
    subject,
    subject_off,
    dest,
    dest_off,
    start_us,
    k_symbol,
    k_children,
    node_key,
    node_any_key,
    key_act,
    act_time_us,
    act_plan,
    act_fallback,
    fallback_key,
    p_symbol,
    p_children,
    p_depth,
    node_group,
    out_group,
    out_plan,
    out_prefix_len,
    out_error,
):
    """For each record: the binding group and plan that price it, or an error code.

    The profile key is walked as ``tenant NUL category NUL subject``; a run of
    records with the same tenant reuses the tenant's node (one compare instead
    of a walk), which is the common case of a batch.
    """
    stack = np.empty(MAX_FALLBACKS, dtype=np.int32)
    seen = np.empty(MAX_FALLBACKS, dtype=np.int32)
    sep = k_symbol[0]
    tenant_node, last = -1, -1
    for i in range(len(start_us)):
        out_group[i] = -1
        out_plan[i] = -1
        out_prefix_len[i] = 0
        out_error[i] = ERR_PLAN_NOT_FOUND
        if last < 0 or not _same_bytes(
            tenant, tenant_off[last], tenant_off[last + 1], tenant_off[i], tenant_off[i + 1]
        ):
            tenant_node = walk(k_symbol, k_children, 0, tenant, tenant_off[i], tenant_off[i + 1])
            if tenant_node >= 0 and sep >= 0:
                tenant_node = k_children[tenant_node, sep]
            last = i
        if tenant_node < 0:
            continue
        node = walk(
            k_symbol, k_children, tenant_node, category, category_off[i], category_off[i + 1]
        )
        if node >= 0:
            node = k_children[node, sep]
        if node < 0:
            continue
        t = start_us[i]
        own = walk(k_symbol, k_children, node, subject, subject_off[i], subject_off[i + 1])
        key = node_key[own] if own >= 0 else -1
        act = _activation(key, t, key_act, act_time_us) if key >= 0 else -1
        if act < 0:  # no profile of its own in force: the tenant/category's *any
            key = node_any_key[node]
            act = _activation(key, t, key_act, act_time_us) if key >= 0 else -1
        if act < 0:
            continue
        out_error[i] = ERR_UNAUTHORIZED_DESTINATION
        # depth-first over the subject and its fallback subjects, each at most once
        depth, n_seen = 0, 0
        while True:
            plan = act_plan[act]
            group, length = match_prefix(
                p_symbol, p_children, p_depth, node_group, plan, dest, dest_off[i], dest_off[i + 1]
            )
            if group >= 0:
                out_group[i] = group
                out_plan[i] = plan
                out_prefix_len[i] = length
                out_error[i] = OK
                break
            if n_seen < MAX_FALLBACKS:
                seen[n_seen] = key
                n_seen += 1
            for f in range(act_fallback[act + 1] - 1, act_fallback[act] - 1, -1):
                if fallback_key[f] >= 0 and depth < MAX_FALLBACKS:
                    stack[depth] = fallback_key[f]
                    depth += 1
            act = -1
            while depth > 0 and act < 0:
                depth -= 1
                key = stack[depth]
                visited = False
                for v in range(n_seen):
                    visited = visited or seen[v] == key
                if not visited:
                    act = _activation(key, t, key_act, act_time_us)
            if act < 0:
                break


# -- rate ---------------------------------------------------------------------------
@njit(cache=True, inline="always")
def round_quotient(q, r, den, method):  # type: ignore[no-untyped-def]
    """``q + r / den`` for ``0 <= r < den``, rounded by method (0 up, 1 down, 2 half-up,
    3 half-even: to the even one of ``q`` and ``q + 1``). ``r`` is compared with ``den - r``,
    not ``2 * r`` with ``den``, so ``den`` may use all of int64."""
    if r == 0 or method == 1:
        return q
    if method == 0:
        return q + 1
    if method == 2:
        return q + 1 if r >= den - r else q
    if r > den - r or (r == den - r and q % 2 == 1):
        return q + 1
    return q


@njit(cache=True, inline="always")
def div_round(num, den, method):  # type: ignore[no-untyped-def]
    """``num / den`` for ``num >= 0``, rounded by method (0 up, 1 down, 2 half-up, 3 half-even)."""
    q = num // den
    return round_quotient(q, num - q * den, den, method)


@njit(cache=True, inline="always")
def mul_divmod(a, b, m):  # type: ignore[no-untyped-def]
    """``divmod(a * b, m)`` for ``0 <= a, b < m < 2**62`` although ``a * b`` may pass int64."""
    if m <= MUL_EXACT:
        return (a * b) // m, (a * b) % m
    q, r = 0, 0  # binary long multiplication, keeping a * (bits of b so far) = q * m + r
    for bit in range(62, -1, -1):
        q, r = 2 * q, 2 * r  # r < m < 2**62: no overflow
        if r >= m:
            q, r = q + 1, r - m
        if (b >> bit) & 1:
            r += a
            if r >= m:
                q, r = q + 1, r - m
    return q, r


@njit(cache=True, inline="always")
def span_amount(billed, price, unit, method):  # type: ignore[no-untyped-def]
    """``billed * price / unit`` rounded to whole nanos by method, exactly.

    ``billed * price`` can pass int64 (a price per GB times a session's bytes),
    so with ``billed = q * unit + r`` and ``price = p * unit + s`` it is taken as
    ``(q * price + r * p) * unit + r * s``: whole nanos, plus ``r * s / unit``
    with both factors below ``unit``. Half-even then sees the parity of the
    whole quotient, not of a part of it.
    """
    q, r = billed // unit, billed % unit
    p, s = price // unit, price % unit
    whole, rest = mul_divmod(r, s, unit)
    return round_quotient(q * price + r * p + whole, rest, unit, method)


@njit(cache=True, inline="always")
def round_total(nanos, decimals, method):  # type: ignore[no-untyped-def]
    """Round an amount in nanos to ``decimals`` places (mirrors tariffs.money.round_nanos)."""
    if decimals >= 9:
        return nanos
    step = 10 ** (9 - decimals)
    if nanos < 0:
        return -div_round(-nanos, step, method) * step
    return div_round(nanos, step, method) * step


@njit(cache=True)
def start_kernel(  # type: ignore[no-untyped-def]
    start_us,
    group,
    error,
    group_bindings,
    group_binding,
    bindings,
    b_weight,
    timings,
    day_cache,
    tz_transitions,
    tz_offsets,
    out_first,
    out_first_end,
    out_period,
):
    """The binding in force at each record's start, until when, and the month.

    ``out_first_end`` is the elapsed second at which that binding may stop
    being in force (a timing start, midnight, an offset change), so the rate
    kernel need not look it up again; the month (``year * 12 + month - 1``,
    in the tariff's time zone) is the period volume tiers count in.
    """
    hint = 0
    for i in range(len(start_us)):
        out_first[i] = -1
        out_first_end[i] = 0
        out_period[i] = 0
        if error[i] != OK:
            continue
        t0 = start_us[i] // US  # whole seconds: timings have one-second resolution
        off, nxt, hint = utc_offset(tz_transitions, tz_offsets, t0, hint)
        year, month, _, _ = civil((t0 + off) // DAY)
        out_period[i] = year * 12 + month - 1
        first, change = segment(
            group[i],
            t0 + off,
            group_bindings,
            group_binding,
            bindings,
            b_weight,
            timings,
            day_cache,
        )
        if first < 0:
            error[i] = ERR_NO_TIMING
        out_first[i] = first
        out_first_end[i] = min(change - off, nxt) - t0


@njit(cache=True)
def rate_kernel(  # type: ignore[no-untyped-def]
    time_based,
    start_us,
    usage,
    period_usage,
    group,
    first_binding,
    first_end,
    error,
    group_bindings,
    group_binding,
    bindings,
    b_weight,
    timings,
    day_cache,
    drates,
    rates,
    steps,
    tz_transitions,
    tz_offsets,
    out_cost,
    out_subtotal,
    out_connect,
    out_flags,
    out_nspans,
    sp_binding,
    sp_step,
    sp_offset,
    sp_usage,
    sp_billed,
    sp_amount,
):
    """Price every guided record; spans go to the ``sp_*`` arrays in record order.

    Returns the number of spans written, or ``-1 - i`` if the span arrays ran
    out of room at record ``i`` (the wrapper grows them and calls again).
    """
    cursor = 0
    cap = len(sp_binding)
    hint = 0
    for i in range(len(start_us)):
        out_cost[i] = 0
        out_subtotal[i] = 0
        out_connect[i] = 0
        out_flags[i] = 0
        out_nspans[i] = 0
        total = usage[i]
        if error[i] != OK or total == 0:
            continue
        g = group[i]
        first = first_binding[i]
        t0 = start_us[i] // US
        drate0 = bindings[first, BINDING_DRATE]
        out_connect[i] = rates[drates[drate0, DRATE_RATE], RATE_CONNECT]
        e = 0
        last_b, last_s = -1, -1
        while e < total:
            b = first
            limit = total
            if time_based[i] and e == 0:
                limit = min(limit, first_end[i])
            elif time_based[i]:
                t = t0 + e
                off, nxt, hint = utc_offset(tz_transitions, tz_offsets, t, hint)
                b, change = segment(
                    g,
                    t + off,
                    group_bindings,
                    group_binding,
                    bindings,
                    b_weight,
                    timings,
                    day_cache,
                )
                if b < 0:
                    error[i] = ERR_NO_TIMING
                    break
                limit = min(limit, min(change - off, nxt) - t0)
            rate = drates[bindings[b, BINDING_DRATE], DRATE_RATE]
            basis = rates[rate, RATE_BASIS]
            lo, hi = rates[rate, RATE_STEP_LO], rates[rate, RATE_STEP_HI]
            base = period_usage[i] if basis != BASIS_RECORD else 0
            pos = base + e if basis != BASIS_VOLUME else base + total - 1
            s = lo
            while s + 1 < hi and steps[s + 1, STEP_GROUP_START] <= pos:
                s += 1
            if basis != BASIS_VOLUME and s + 1 < hi:
                limit = min(limit, steps[s + 1, STEP_GROUP_START] - base)
            inc = steps[s, STEP_INCREMENT]
            billed = (limit - e + inc - 1) // inc * inc
            if b != last_b or s != last_s:
                if cursor == cap:
                    return -1 - i
                sp_binding[cursor] = b
                sp_step[cursor] = s
                sp_offset[cursor] = e
                sp_billed[cursor] = 0
                cursor += 1
                out_nspans[i] += 1
                last_b, last_s = b, s
            sp_billed[cursor - 1] += billed
            e += billed
        if error[i] != OK:
            cursor -= out_nspans[i]
            out_nspans[i] = 0
            out_connect[i] = 0
            continue
        subtotal = out_connect[i]
        for c in range(cursor - out_nspans[i], cursor):
            s = sp_step[c]
            billed = sp_billed[c]
            unit, price = steps[s, STEP_UNIT], steps[s, STEP_PRICE]
            sp_usage[c] = min(billed, total - sp_offset[c])
            method = drates[bindings[sp_binding[c], BINDING_DRATE], DRATE_ROUNDING]
            sp_amount[c] = span_amount(billed, price, unit, method)
            subtotal += sp_amount[c]
        out_subtotal[i] = subtotal
        d = drates[drate0]
        cost = round_total(subtotal, d[DRATE_DECIMALS], d[DRATE_ROUNDING])
        if d[DRATE_STRATEGY] != 0 and cost > d[DRATE_MAX_COST]:
            if d[DRATE_STRATEGY] == 1:
                cost = d[DRATE_MAX_COST]
            out_flags[i] |= d[DRATE_STRATEGY]  # 1 capped, 2 disconnect (tariffs.rated FLAG_*)
        out_cost[i] = cost
    return cursor


@njit(cache=True)
def period_prior(rows, items, usage, used, out_prior):  # type: ignore[no-untyped-def]
    """In record order: each row's usage so far in its period, then add its own."""
    for i in rows:
        out_prior[i] = used[items[i]]
        used[items[i]] += usage[i]
