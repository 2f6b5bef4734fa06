"""Compiled MessagePack kernels: an array of usage records (maps) straight to column spans.

Pure ``@njit`` loops over the message's bytes that write into arrays the
caller supplies (:mod:`engine.msgpack_columns` is the wrapper: it reads the
array header, sizes the arrays and builds the :class:`~engine.columns.Columns`).

* :func:`decode_records` writes, per record, its byte range, the (start,
  length) of each string column, the kind, the start in UTC epoch
  microseconds and the usage. Its slow, obviously-correct twin is msgspec:
  :func:`engine.wire.decode_message_with_rejects` followed by
  :func:`engine.wire.records_to_columns`; the tests assert both give the same
  columns for every message the kernel accepts.
* :func:`gather_spans` copies those spans into string columns; its twin is
  :func:`engine.columns.gather`.

:func:`decode_records` only decides what it is sure of and answers
``DECLINE`` for anything else, so the caller falls back to the slow twin
(which then names the bad record). It accepts what msgspec 0.22 accepts for
:data:`engine.records.Record`, as its ``_core.c`` reads it
(``mpack_decode_struct_union``, ``mpack_decode_struct_map``, ``mpack_skip``,
``mpack_decode_datetime``), and declines:

* a duplicate known key (msgspec keeps the last value; not worth replicating);
* an unknown key's value nested deeper than ``MAX_SKIP_DEPTH`` containers
  (msgspec's skip recurses and may raise ``RecursionError``);
* an empty ``account`` (the slow path resolves it from the subscriber) and
  every value msgspec would reject: a wrong type (including nil), an empty
  ``cdr_id`` or ``category``, an event without a category, invalid UTF-8 in a
  string field, a negative or too large usage, a malformed timestamp;
* a ``start`` that is not a timestamp extension (msgspec also parses RFC 3339
  strings; those are left to it) or whose seconds lie outside
  ``[TIMESTAMP_MIN_SECONDS, TIMESTAMP_MAX_SECONDS]``;
* a read past the end of the message: every value's extent is checked
  against ``end`` before it is used, since truncated or hostile messages
  reach this code.

Speed: short loops whose trip count depends on the data (compare a key byte
by byte, check a value for non-ASCII bytes byte by byte) cost a mispredicted
branch each, which measured more than all the rest of the parsing. Keys and
short values are therefore read as two 8-byte words, masked to their length
and compared or tested at once. Such a read may take in up to ``PAD`` bytes
past the value (masked off, so they never change a result), hence the
caller's buffer holds ``PAD`` readable bytes after the message, and the
kernels check that it does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.columns import I64, KIND_EVENT, KIND_NAMES

DECLINE = -1
PAD = 16  # readable bytes the caller leaves after the message and after ``out_data``

# Field numbers. The string columns come first, so a field's number is its row in
# ``out_spans[0]`` (starts) and ``out_spans[1]`` (lengths); the other string fields
# are checked (their values must decode) but not kept.
CDR_ID, TENANT, ACCOUNT, SUBJECT, CATEGORY, DESTINATION = range(6)
N_SPANS = 6
ORIGIN, CELL, APN, RESELLER, SUBSCRIBER = range(6, 11)
TYPE, START, USAGE, ROAMING = range(11, 15)
FIELD_NAMES = (
    "cdr_id", "tenant", "account", "subject", "category", "destination",
    "origin", "cell", "apn", "reseller", "subscriber",
    "type", "start", "usage", "roaming",
)  # fmt: skip
REQUIRED = (1 << TYPE) | (1 << CDR_ID) | (1 << TENANT) | (1 << START) | (1 << USAGE)
UNKNOWN = -1
MAX_NAME = PAD - 1  # keys and tags this long or shorter fit the two-word comparison

# msgspec's datetime range (MS_EPOCH_SECS_MIN .. MS_EPOCH_SECS_MAX in _core.c), two
# seconds short at the top, where rounded nanoseconds could carry into year 10000.
TIMESTAMP_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
TIMESTAMP_MAX_SECONDS = 253_402_300_798  # 9999-12-31T23:59:58Z
# Containers nested inside one skipped value; msgspec's skip recurses through
# Py_EnterRecursiveCall, so very deep values can fail there with RecursionError.
MAX_SKIP_DEPTH = 16

# MASKS[m]: the low m bytes of a little-endian word (m clamped to 0..8).
MASKS = np.array([0] + [(1 << (8 * m)) - 1 for m in range(1, 8)] + [-1], dtype=np.int64)
HIGH_BITS = np.frombuffer(b"\x80" * 8, dtype="<i8")[0]  # the top bit of each byte


def _table(names: tuple[str, ...]) -> tuple[I64, I64]:
    """Names as (index, words): ``index[length, first byte]`` is the only entry that
    could match (or UNKNOWN) and ``words[k]`` is entry ``k``'s bytes, zero-padded to
    two little-endian words, as :func:`_masked` reads a key."""
    index = np.full((MAX_NAME + 1, 256), UNKNOWN, dtype=np.int64)
    words = np.zeros((len(names), 2), dtype=np.int64)
    for k, name in enumerate(names):
        raw = name.encode()
        if len(raw) > MAX_NAME or index[len(raw), raw[0]] != UNKNOWN:
            msg = f"name {name!r} is too long or shares its length and first byte with another"
            raise ValueError(msg)
        index[len(raw), raw[0]] = k
        words[k] = np.frombuffer(raw.ljust(2 * 8, b"\x00"), dtype="<i8")
    return index, words


# Constant tables (numba freezes global arrays into the compiled code). A tag's
# index in KIND_NAMES is its KIND_* value, as msgspec maps a tag to its class.
KEY_INDEX, KEY_WORDS = _table(FIELD_NAMES)
TAG_INDEX, TAG_WORDS = _table(KIND_NAMES)


@njit(cache=True, inline="always")
def _uint(data, pos, width):  # type: ignore[no-untyped-def]
    """``width`` (<= 7, or 8 when the caller checked the top bit) big-endian bytes, unsigned.

    Plain ``int64`` multiply-add: no ``uint64`` (numba turns ``uint64 op int64``
    into float64) and no carry into the sign bit.
    """
    value = 0
    for j in range(pos, pos + width):
        value = value * 256 + int(data[j])
    return value


@njit(cache=True, inline="always")
def _int(data, pos, width):  # type: ignore[no-untyped-def]
    """``width`` big-endian bytes, two's complement: the top byte carries the sign."""
    top = np.int64(data[pos])
    value = top - 256 if top >= 128 else top
    for j in range(pos + 1, pos + width):
        value = value * 256 + np.int64(data[j])
    return value


@njit(cache=True, inline="always")
def _word(data, pos):  # type: ignore[no-untyped-def]
    """The 8 bytes at ``pos`` as a little-endian word (bit pattern in an int64)."""
    word = np.int64(0)
    for j in range(8):  # a fixed trip count: unrolled, no branch
        word |= np.int64(data[pos + j]) << (8 * j)
    return word


@njit(cache=True, inline="always")
def _masked(data, a, n):  # type: ignore[no-untyped-def]
    """The ``n <= 16`` bytes at ``a`` as two words, the bytes past ``n`` zeroed."""
    low = _word(data, a) & MASKS[min(n, 8)]
    high = _word(data, a + 8) & MASKS[max(n - 8, 0)]
    return low, high


@njit(cache=True, inline="always")
def _lookup(data, a, n, index, words):  # type: ignore[no-untyped-def]
    """The entry of a :func:`_table` that ``data[a:a+n]`` equals, or UNKNOWN."""
    if n == 0 or n > MAX_NAME:
        return UNKNOWN
    k = index[n, data[a]]
    if k == UNKNOWN:
        return UNKNOWN
    low, high = _masked(data, a, n)
    if low != words[k, 0] or high != words[k, 1]:
        return UNKNOWN
    return k


@njit(cache=True, inline="always")
def _ascii(data, a, n):  # type: ignore[no-untyped-def]
    """No byte of ``data[a:a+n]`` has its top bit set: a word at a time."""
    if n <= 16:
        low, high = _masked(data, a, n)
        return ((low | high) & HIGH_BITS) == 0
    bits = _word(data, a + n - 8)  # the last 8 bytes; the loop covers the rest
    for p in range(a, a + n - 8, 8):
        bits |= _word(data, p)
    return (bits & HIGH_BITS) == 0


@njit(cache=True)
def _utf8(data, a, b):  # type: ignore[no-untyped-def]
    """``data[a:b]`` is UTF-8 as Python's strict decoder (and so msgspec) accepts it.

    Well-formed sequences of Unicode table 3-7: no overlong forms, no
    surrogates (ED A0..BF), nothing above U+10FFFF. Called only for values
    that are not ASCII (not inlined: it is rare and long).
    """
    j = a
    while j < b:
        c = data[j]
        if c < 0x80:
            j += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF
        elif c == 0xED:
            need, lo, hi = 2, 0x80, 0x9F
        elif 0xE1 <= c <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif c == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F
        else:
            return False  # a continuation byte first, C0/C1 (overlong) or F5..FF
        if j + need >= b:
            return False  # the sequence runs past the value's end
        second = data[j + 1]
        if second < lo or second > hi:
            return False
        for k in range(j + 2, j + 1 + need):
            if data[k] < 0x80 or data[k] > 0xBF:
                return False
        j += 1 + need
    return True


@njit(cache=True, inline="always")
def _str_header(data, pos, end):  # type: ignore[no-untyped-def]
    """A str (fixstr, str 8/16/32) header: (first byte of the value, its length), or DECLINE.

    The value is checked to end by ``end``.
    """
    if pos >= end:
        return DECLINE, 0
    op = data[pos]
    if 0xA0 <= op <= 0xBF:
        head, size = 1, np.int64(op & 0x1F)
    elif op == 0xD9 and pos + 2 <= end:
        head, size = 2, _uint(data, pos + 1, 1)
    elif op == 0xDA and pos + 3 <= end:
        head, size = 3, _uint(data, pos + 1, 2)
    elif op == 0xDB and pos + 5 <= end:
        head, size = 5, _uint(data, pos + 1, 4)
    else:
        return DECLINE, 0
    if pos + head + size > end:
        return DECLINE, 0
    return pos + head, size


@njit(cache=True, inline="always")
def _string(data, pos, end):  # type: ignore[no-untyped-def]
    """A str value that decodes (UTF-8): (first byte, length), or DECLINE."""
    a, n = _str_header(data, pos, end)
    if a < 0:
        return DECLINE, 0
    if not _ascii(data, a, n) and not _utf8(data, a, a + n):
        return DECLINE, 0
    return a, n


@njit(cache=True, inline="always")
def _map_header(data, pos, end):  # type: ignore[no-untyped-def]
    """A map (fixmap, map 16/32) header: (position after it, pair count), or DECLINE."""
    if pos >= end:
        return DECLINE, 0
    op = data[pos]
    if 0x80 <= op <= 0x8F:
        return pos + 1, np.int64(op & 0x0F)
    if op == 0xDE and pos + 3 <= end:
        return pos + 3, _uint(data, pos + 1, 2)
    if op == 0xDF and pos + 5 <= end:
        return pos + 5, _uint(data, pos + 1, 4)
    return DECLINE, 0


@njit(cache=True, inline="always")
def _usage(data, pos, end):  # type: ignore[no-untyped-def]
    """An int field with ``0 <= value <= 2**63 - 1``: (position after it, value), or DECLINE.

    msgspec accepts any integer encoding (unsigned or signed, any width) whose
    value passes the bounds; a float, nil or string is a validation error.
    """
    if pos >= end:
        return DECLINE, 0
    op = data[pos]
    if op <= 0x7F:
        return pos + 1, np.int64(op)
    if 0xCC <= op <= 0xCF:  # uint 8/16/32/64
        width = 1 << (op - 0xCC)
        if pos + 1 + width > end or (width == 8 and data[pos + 1] >= 0x80):
            return DECLINE, 0  # truncated, or above 2**63 - 1
        return pos + 1 + width, _uint(data, pos + 1, width)
    if 0xD0 <= op <= 0xD3:  # int 8/16/32/64: fine when not negative
        width = 1 << (op - 0xD0)
        if pos + 1 + width > end or data[pos + 1] >= 0x80:
            return DECLINE, 0
        return pos + 1 + width, _uint(data, pos + 1, width)
    return DECLINE, 0


@njit(cache=True, inline="always")
def _timestamp(data, pos, end):  # type: ignore[no-untyped-def]
    """A timestamp extension (type -1) as UTC epoch microseconds: (position after, us).

    msgspec reads extension type -1 in any container (fixext 4/8, ext 8/16/32)
    with 4 (uint32 seconds), 8 (30-bit nanoseconds, 34-bit seconds) or 12
    (uint32 nanoseconds, int64 seconds) bytes of payload, refuses nanoseconds
    above 999,999,999, and rounds nanoseconds to the nearest microsecond,
    halves up (``DIV_ROUND_CLOSEST``), carrying into the seconds: hence
    ``(nanos + 500) // 1000`` added to whole seconds in microseconds.
    """
    if pos + 2 > end:
        return DECLINE, 0
    op = data[pos]
    if op == 0xD6:
        size, head = 4, 2
    elif op == 0xD7:
        size, head = 8, 2
    elif op == 0xC7 and pos + 3 <= end:
        size, head = _uint(data, pos + 1, 1), 3
    elif op == 0xC8 and pos + 4 <= end:
        size, head = _uint(data, pos + 1, 2), 4
    elif op == 0xC9 and pos + 6 <= end:
        size, head = _uint(data, pos + 1, 4), 6
    else:
        return DECLINE, 0  # not an extension (a string, an int), or fixext 1/2/16
    p = pos + head  # the payload; its type byte is the last header byte
    if data[p - 1] != 0xFF or p + size > end:
        return DECLINE, 0
    if size == 4:
        seconds, nanos = _uint(data, p, 4), 0
    elif size == 8:
        high = _uint(data, p, 4)
        seconds, nanos = (high & 3) * 2**32 + _uint(data, p + 4, 4), high >> 2
    elif size == 12:
        seconds, nanos = _int(data, p + 4, 8), _uint(data, p, 4)
    else:
        return DECLINE, 0
    if nanos > 999_999_999 or seconds < TIMESTAMP_MIN_SECONDS:
        return DECLINE, 0
    if seconds > TIMESTAMP_MAX_SECONDS:
        return DECLINE, 0
    return p + size, seconds * 1_000_000 + (nanos + 500) // 1000


@njit(cache=True)
def _skip(data, pos, end, stack):  # type: ignore[no-untyped-def]
    """Step over one value of any type, as msgspec skips an unknown field; or DECLINE.

    Iterative: ``stack[d]`` counts the values still to skip at depth ``d``, so a
    hostile nesting costs no recursion. Every value takes at least one byte,
    so the loop ends within ``end - pos`` steps whatever the counts claim.
    Not inlined: unknown fields are rare.
    """
    depth = 0
    stack[0] = 1
    while True:
        if stack[depth] == 0:
            if depth == 0:
                return pos
            depth -= 1
            continue
        stack[depth] -= 1
        if pos >= end:
            return DECLINE
        op = data[pos]
        head, size, children = 1, 0, 0  # header bytes, payload bytes, nested values
        if op <= 0x7F or op >= 0xE0 or op == 0xC0 or op == 0xC2 or op == 0xC3:
            pass  # fixint, nil, false, true
        elif op >= 0xA0 and op <= 0xBF:
            size = int(op & 0x1F)
        elif op >= 0x90 and op <= 0x9F:
            children = int(op & 0x0F)
        elif op >= 0x80 and op <= 0x8F:
            children = 2 * int(op & 0x0F)
        elif op == 0xCC or op == 0xD0:
            size = 1
        elif op == 0xCD or op == 0xD1:
            size = 2
        elif op == 0xCE or op == 0xD2 or op == 0xCA:
            size = 4
        elif op == 0xCF or op == 0xD3 or op == 0xCB:
            size = 8
        elif op >= 0xD4 and op <= 0xD8:  # fixext 1/2/4/8/16: a type byte, then the payload
            head, size = 2, 1 << int(op - 0xD4)
        else:
            # A length field follows the op: (header bytes, the length's width).
            if op == 0xC4 or op == 0xD9:  # bin 8, str 8
                head, width = 2, 1
            elif op == 0xC5 or op == 0xDA or op == 0xDC or op == 0xDE:  # bin/str/array/map 16
                head, width = 3, 2
            elif op == 0xC6 or op == 0xDB or op == 0xDD or op == 0xDF:  # bin/str/array/map 32
                head, width = 5, 4
            elif op == 0xC7:  # ext 8: length, then a type byte
                head, width = 3, 1
            elif op == 0xC8:  # ext 16
                head, width = 4, 2
            elif op == 0xC9:  # ext 32
                head, width = 6, 4
            else:
                return DECLINE  # 0xC1: never used, msgspec calls it malformed
            if pos + head > end:
                return DECLINE
            length = _uint(data, pos + 1, width)
            if op == 0xDC or op == 0xDD:
                children = length
            elif op == 0xDE or op == 0xDF:
                children = 2 * length
            else:
                size = length
        pos += head + size
        if pos > end:
            return DECLINE
        if children > 0:
            depth += 1
            if depth == len(stack):
                return DECLINE
            stack[depth] = children


@njit(cache=True)
def _record(  # type: ignore[no-untyped-def]
    data, pos, end, i, defaults, out_spans, out_kind, out_start_us, out_usage, stack
):
    """Decode the map at ``pos`` as record ``i``; the position after it, or DECLINE.

    Not inlined into the caller's loop at numba's IR level: measured, that
    made the whole kernel about 40% slower than this call per record.
    """
    pos, pairs = _map_header(data, pos, end)
    if pos < 0:
        return DECLINE
    seen = 0
    kind = UNKNOWN
    for _ in range(pairs):
        # msgspec reads a key as raw str bytes (no UTF-8 check) and looks it up.
        a, n = _str_header(data, pos, end)
        if a < 0:
            return DECLINE  # not a str key: a validation error in msgspec
        pos = a + n
        field = _lookup(data, a, n, KEY_INDEX, KEY_WORDS)
        if field == UNKNOWN:
            pos = _skip(data, pos, end, stack)
            if pos < 0:
                return DECLINE
            continue
        if seen & (1 << field):
            return DECLINE  # duplicate key: msgspec keeps the last, we do not replicate that
        seen |= 1 << field
        if field < TYPE:  # a string field
            a, n = _string(data, pos, end)
            if a < 0:
                return DECLINE
            pos = a + n
            if field < N_SPANS:
                out_spans[0, field, i] = a
                out_spans[1, field, i] = n
        elif field == TYPE:
            a, n = _str_header(data, pos, end)
            if a < 0:
                return DECLINE
            pos = a + n
            kind = _lookup(data, a, n, TAG_INDEX, TAG_WORDS)
            if kind == UNKNOWN:
                return DECLINE
        elif field == START:
            pos, us = _timestamp(data, pos, end)
            if pos < 0:
                return DECLINE
            out_start_us[i] = us
        elif field == USAGE:
            pos, usage = _usage(data, pos, end)
            if pos < 0:
                return DECLINE
            out_usage[i] = usage
        else:  # ROAMING: false or true only
            if pos >= end or (data[pos] != 0xC2 and data[pos] != 0xC3):
                return DECLINE
            pos += 1
    if (seen & REQUIRED) != REQUIRED:
        return DECLINE
    # records_to_columns needs a non-empty cdr_id and account; an empty account with a
    # subscriber is for the slow path to resolve.
    if not seen & (1 << ACCOUNT) or out_spans[1, ACCOUNT, i] == 0:
        return DECLINE
    if out_spans[1, CDR_ID, i] == 0:
        return DECLINE
    if seen & (1 << CATEGORY):
        if out_spans[1, CATEGORY, i] == 0:
            return DECLINE  # NonEmptyStr
    elif kind == KIND_EVENT:
        return DECLINE  # an event must name its category
    else:
        out_spans[0, CATEGORY, i] = defaults[kind, 0]
        out_spans[1, CATEGORY, i] = defaults[kind, 1]
    if not seen & (1 << DESTINATION):
        out_spans[0, DESTINATION, i] = 0
        out_spans[1, DESTINATION, i] = 0
    if not seen & (1 << SUBJECT) or out_spans[1, SUBJECT, i] == 0:
        out_spans[0, SUBJECT, i] = out_spans[0, ACCOUNT, i]  # subject defaults to the account
        out_spans[1, SUBJECT, i] = out_spans[1, ACCOUNT, i]
    out_kind[i] = kind
    return pos


@njit(cache=True)
def decode_records(  # type: ignore[no-untyped-def]
    data, end, first, defaults, out_bounds, out_spans, out_kind, out_start_us, out_usage
):
    """Decode ``n = len(out_kind)`` record maps from ``data[first:end]``; ``n`` or DECLINE.

    ``data[:end]`` is the whole message (its array header, which gave ``n``,
    ends at ``first``) and the records must end exactly at ``end``; ``data``
    holds at least ``PAD`` more bytes (the word reads may look at them).
    ``defaults[kind]`` is the (start, length) in ``data`` of the kind's
    default category. Writes, for record ``i``: ``out_bounds[i]`` (its first
    byte; ``out_bounds[n]`` is the end), ``out_spans[0 | 1, field, i]`` (start
    and length of each string column ``CDR_ID .. DESTINATION`` in ``data``,
    defaults applied), ``out_kind[i]``, ``out_start_us[i]`` and
    ``out_usage[i]``. After DECLINE the outputs are partly written and
    meaningless.
    """
    n = len(out_kind)
    if end + PAD > len(data) or first < 0 or len(out_bounds) != n + 1:
        return DECLINE
    stack = np.empty(MAX_SKIP_DEPTH, dtype=np.int64)  # once per message, shared by every skip
    pos = first
    for i in range(n):
        out_bounds[i] = pos
        pos = _record(data, pos, end, i, defaults, out_spans, out_kind, out_start_us, out_usage,
                      stack)  # fmt: skip
        if pos < 0:
            return DECLINE
    out_bounds[n] = pos
    if pos != end:
        return DECLINE  # trailing bytes: msgspec refuses them
    return n


@njit(cache=True)
def gather_spans(data, spans, out_offsets, out_data):  # type: ignore[no-untyped-def]
    """Copy the spans of every column into ``out_data``, column after column; bytes written.

    Mirrors :func:`engine.columns.gather` once per column: ``spans[0, c, i]``
    and ``spans[1, c, i]`` are the start and length of value ``i`` of column
    ``c`` in ``data``; ``out_offsets[c]`` gets that column's ``n + 1`` offsets,
    from 0 within the column's part of ``out_data``, which must hold
    ``spans[1].sum() + PAD`` bytes. Returns DECLINE if a span is not inside
    ``data``.

    A value of at most ``PAD`` bytes is copied as exactly ``PAD`` bytes (the
    next value overwrites the excess), a fixed-size copy that compiles to one
    vector move with no loop branch; the indices are unsigned so numba adds
    no negative-index fix-up, which would block that. Longer values take the
    plain loop. Measured on 1,000-record messages: ~4x faster than numpy's
    gather (repeat, arange, fancy index) and ~2x faster than a byte loop.
    """
    w = 0
    size, room = len(data), len(out_data)
    for c in range(spans.shape[1]):
        base = w
        out_offsets[c, 0] = 0
        for i in range(spans.shape[2]):
            a, m = spans[0, c, i], spans[1, c, i]
            if a < 0 or m < 0 or a + m > size or w + m + PAD > room:
                return DECLINE
            src, dst = np.uint64(a), np.uint64(w)
            if m <= PAD and a + PAD <= size:
                for j in range(PAD):
                    out_data[dst + np.uint64(j)] = data[src + np.uint64(j)]
            else:
                for j in range(m):
                    out_data[dst + np.uint64(j)] = data[src + np.uint64(j)]
            w += m
            out_offsets[c, i + 1] = w - base
    return w
