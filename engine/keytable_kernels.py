"""Compiled open-addressing table from byte-string keys to dense item numbers.

Pure ``@njit`` code over arrays that :class:`engine.keytable.KeyTable` owns.
A key is ``a NUL b`` (two string columns' values, ``b`` may be empty) plus an
integer tag; keys are kept in an arena and compared byte for byte, so a hash
collision can never merge two keys. Its slow twin is the Python ``dict`` in
``KeyTable``'s tests.

Layout: ``slots[k] = (hash, tag, arena offset, key length, item, length of a)``
with key length ``EMPTY`` for a free slot (the length of ``a`` keeps
``("x\\0", "")`` and ``("x", "\\0")`` apart); ``state = (items, arena fill)``. Items are
numbered 0, 1, 2, … in insertion order and never move, so callers keep their
values in plain arrays indexed by item.
"""

from __future__ import annotations

import numpy as np
from numba import njit

HASH, TAG, OFFSET, LENGTH, ITEM, SPLIT = 0, 1, 2, 3, 4, 5
FIELDS = 6
EMPTY = -1
DONE = -1  # lookup() finished every row
FNV_OFFSET = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)


@njit(cache=True, inline="always")
def _hash(a_data, a, b, c_data, c, d, tag):  # type: ignore[no-untyped-def]
    """FNV-1a over ``a NUL b`` and the tag."""
    h = FNV_OFFSET
    for j in range(a, b):
        h = (h ^ np.uint64(a_data[j])) * FNV_PRIME
    h = h * FNV_PRIME
    for j in range(c, d):
        h = (h ^ np.uint64(c_data[j])) * FNV_PRIME
    return (h ^ np.uint64(tag)) * FNV_PRIME


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
def lookup(  # type: ignore[no-untyped-def]
    rows,
    a_data,
    a_off,
    c_data,
    c_off,
    tags,
    insert,
    slots,
    arena,
    state,
    out_item,
):
    """``out_item[row]`` = the item of each row's key (inserted if ``insert``, else -1).

    Stops before a row whose insertion would fill the table past half or
    overflow the arena and returns that row's position in ``rows`` (the
    caller grows the arrays and calls again from there); returns ``DONE``
    when every row is done.
    """
    mask = len(slots) - 1
    for k in range(len(rows)):
        i = rows[k]
        a, b, c, d = a_off[i], a_off[i + 1], c_off[i], c_off[i + 1]
        tag = tags[i]
        h = _hash(a_data, a, b, c_data, c, d, tag)
        key_len = (b - a) + 1 + (d - c)
        s = np.int64(h & np.uint64(mask))
        while slots[s, LENGTH] != EMPTY:
            if (
                slots[s, HASH] == np.int64(h)
                and slots[s, TAG] == tag
                and slots[s, LENGTH] == key_len
                and slots[s, SPLIT] == b - a
                and _same(arena, slots[s, OFFSET], a_data, a, b, c_data, c, d)
            ):
                break
            s = (s + 1) & mask
        if slots[s, LENGTH] == EMPTY:
            if not insert:
                out_item[i] = -1
                continue
            if 2 * (state[0] + 1) > len(slots) or state[1] + key_len > len(arena):
                return k
            off = state[1]
            for j in range(b - a):
                arena[off + j] = a_data[a + j]
            arena[off + b - a] = 0
            for j in range(d - c):
                arena[off + b - a + 1 + j] = c_data[c + j]
            slots[s, HASH] = np.int64(h)
            slots[s, TAG] = tag
            slots[s, OFFSET] = off
            slots[s, LENGTH] = key_len
            slots[s, ITEM] = state[0]
            slots[s, SPLIT] = b - a
            state[0] += 1
            state[1] += key_len
        out_item[i] = slots[s, ITEM]
    return DONE


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
        for f in range(FIELDS):
            new[t, f] = old[s, f]
