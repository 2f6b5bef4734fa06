"""Compiled hash table of usage per (account, category, month) for volume tiers.

Pure ``@njit`` code over arrays that :class:`tariffs.rating.PeriodCounters`
owns: open addressing with linear probing, keys compared byte for byte
(``account NUL category`` in an arena, plus the month), so a hash collision
can never merge two accounts. Its slow twin is
``PeriodCounters.prior_slow`` (a Python dict), and tests assert they agree.

Layout: ``slots[k] = (hash, month, arena offset, key length, usage)`` with
``key length == -1`` for an empty slot; ``state = (items, arena fill)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

HASH, MONTH, OFFSET, LENGTH, USED = 0, 1, 2, 3, 4
EMPTY = -1
FNV_OFFSET = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)

OK = -1  # accumulate() finished every row


@njit(cache=True, inline="always")
def _hash(a_data, a, b, c_data, c, d, month):  # type: ignore[no-untyped-def]
    h = FNV_OFFSET
    for j in range(a, b):
        h = (h ^ np.uint64(a_data[j])) * FNV_PRIME
    h = h * FNV_PRIME  # the NUL between account and category
    for j in range(c, d):
        h = (h ^ np.uint64(c_data[j])) * FNV_PRIME
    return (h ^ np.uint64(month)) * FNV_PRIME


@njit(cache=True, inline="always")
def _same(arena, off, a_data, a, b, c_data, c, d):  # type: ignore[no-untyped-def]
    for j in range(b - a):
        if arena[off + j] != a_data[a + j]:
            return False
    if arena[off + b - a] != 0:
        return False
    base = off + b - a + 1
    for j in range(d - c):
        if arena[base + j] != c_data[c + j]:
            return False
    return True


@njit(cache=True)
def accumulate(  # type: ignore[no-untyped-def]
    rows,
    a_data,
    a_off,
    c_data,
    c_off,
    month,
    usage,
    slots,
    arena,
    state,
    out_prior,
):
    """For each row in order: its usage so far this month, then add its own.

    Stops before a row that would fill the table past half or overflow the
    arena and returns that row's position (the caller grows and calls again
    from there); returns ``OK`` when every row is done.
    """
    mask = len(slots) - 1
    for k in range(len(rows)):
        i = rows[k]
        a, b, c, d = a_off[i], a_off[i + 1], c_off[i], c_off[i + 1]
        h = _hash(a_data, a, b, c_data, c, d, month[i])
        key_len = (b - a) + 1 + (d - c)
        s = np.int64(h & np.uint64(mask))
        while slots[s, LENGTH] != EMPTY:
            if (
                slots[s, HASH] == np.int64(h)
                and slots[s, MONTH] == month[i]
                and slots[s, LENGTH] == key_len
                and _same(arena, slots[s, OFFSET], a_data, a, b, c_data, c, d)
            ):
                break
            s = (s + 1) & mask
        if slots[s, LENGTH] == EMPTY:
            if 2 * (state[0] + 1) > len(slots) or state[1] + key_len > len(arena):
                return k
            off = state[1]
            for j in range(b - a):
                arena[off + j] = a_data[a + j]
            arena[off + b - a] = 0
            for j in range(d - c):
                arena[off + b - a + 1 + j] = c_data[c + j]
            slots[s, HASH] = np.int64(h)
            slots[s, MONTH] = month[i]
            slots[s, OFFSET] = off
            slots[s, LENGTH] = key_len
            slots[s, USED] = 0
            state[0] += 1
            state[1] += key_len
        out_prior[i] = slots[s, USED]
        slots[s, USED] += usage[i]
    return OK


@njit(cache=True)
def rehash(old, new):  # type: ignore[no-untyped-def]
    """Move every occupied slot of ``old`` into the (empty, larger) ``new``."""
    mask = len(new) - 1
    for s in range(len(old)):
        if old[s, LENGTH] == EMPTY:
            continue
        t = np.int64(np.uint64(old[s, HASH]) & np.uint64(mask))
        while new[t, LENGTH] != EMPTY:
            t = (t + 1) & mask
        for f in range(5):
            new[t, f] = old[s, f]
