"""Compiled kernels for Asterisk ``Master.csv``: lines, CSV fields, outcomes.

Pure ``@njit`` loops over the file's bytes that write into arrays the caller
(:mod:`engine.mediation.asterisk_fast`) supplies. Their slow twin is the line
by line parser :func:`engine.mediation.asterisk.parse_master_csv_bytes`
(``bytes.splitlines``, ``csv`` with ``strict=True``, ``int``,
``datetime.fromisoformat``); the tests assert the two agree on every field.

The kernels only decide the lines they are sure of: a blank line, or a line of
printable ASCII with exactly 18 well-formed CSV fields whose disposition is
known and, for ``ANSWERED``, whose numbers are plain digits and whose times are
strict ``YYYY-MM-DD HH:MM:SS`` between 1971 and 2099. Every other line
(non-ASCII or NUL bytes, bad CSV, a wrong column count, anything the slow
parser would reject, or accept only through a lenient reading such as
``int(" 7")``) is marked ``SLOW`` and handed to the slow twin by the wrapper,
so rejects keep their exact messages and rare shapes need no second
implementation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Line outcomes (``out_status``); a disposition ``k`` of the caller's table is ``FIRST_RULE + k``.
SLOW = 0
BLANK = 1
FIRST_RULE = 2

N_COLUMNS = 18
ACCOUNTCODE, SRC, DST, START, ANSWER, DURATION, BILLSEC, DISPOSITION, UNIQUEID = (
    0, 1, 2, 9, 10, 12, 13, 14, 16,
)  # fmt: skip
# What a record needs, per line: account, destination and uniqueid bounds in ``out_text``.
ACC_S, ACC_E, DST_S, DST_E, UID_S, UID_E = 0, 1, 2, 3, 4, 5
BOUNDS = 6

# csv's field size limit is 131072 characters; a longer line might exceed it.
MAX_LINE = 131_072
# Years whose local times the UTC-offset tables (1970..2100) cover with a day to spare.
FIRST_YEAR, LAST_YEAR = 1971, 2099
INVALID_TIME = -(2**62)

QUOTE, COMMA, SPACE = 34, 44, 32
FNV_OFFSET = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)


@njit(cache=True)
def split_lines(data, out_start, out_end):  # type: ignore[no-untyped-def]
    """Bounds of every physical line as ``bytes.splitlines`` finds them; returns their count.

    A line ends at ``\\n``, ``\\r`` or ``\\r\\n``; a final line end opens no
    empty line. Returns -1 when ``out_*`` are full before the end: one more
    than the ``\\n`` bytes is room enough unless a line ends in a lone ``\\r``.
    """
    n = 0
    pos = 0
    size = len(data)
    while pos < size:
        if n == len(out_start):
            return -1
        end = pos
        while end < size and data[end] != 10 and data[end] != 13:
            end += 1
        out_start[n] = pos
        out_end[n] = end
        n += 1
        if end < size and data[end] == 13 and end + 1 < size and data[end + 1] == 10:
            pos = end + 2
        else:
            pos = end + 1
    return n


@njit(cache=True, inline="always")
def _blank(data, a, b):  # type: ignore[no-untyped-def]
    """Only ASCII whitespace, as ``bytes.strip`` sees it (space, \\t..\\r)."""
    for j in range(a, b):
        c = data[j]
        if c != SPACE and not 9 <= c <= 13:
            return False
    return True


@njit(cache=True, inline="always")
def _tokenize(data, a, b, keep, out_text, w, fields):  # type: ignore[no-untyped-def]
    """``csv`` (excel dialect, ``strict=True``) on one line, unquoted into ``out_text`` at ``w``.

    Mirrors the states of CPython's ``_csv.c``, one field at a time (a tight
    loop per field beats a per-byte state switch): a quote opens a quoted field
    only at a field's start (elsewhere it is a plain byte), ``""`` inside
    quotes is one quote, and after a closing quote only a comma or the line end
    may follow. ``fields[k] = (start, end)`` in ``out_text``; only the fields with
    ``keep[k] == 1`` are written (the others come out empty): the write is
    unconditional but the position advances by ``keep[k]``, which saves a
    branch per byte and leaves most of ``out_text`` untouched (fewer page
    faults). Returns the new write position, or -1 when the line is not
    exactly 18 clean ASCII fields.
    """
    j = a
    nf = 0
    while True:
        if nf == N_COLUMNS:
            return -1  # a 19th field
        fs = w
        step = keep[nf]
        if j < b and data[j] == QUOTE:
            j += 1
            while True:  # quoted: to the closing quote, "" is one quote
                if j >= b:
                    return -1  # unterminated quote
                c = data[j]
                if c == QUOTE:
                    if j + 1 < b and data[j + 1] == QUOTE:
                        out_text[w] = c
                        w += step
                        j += 2
                        continue
                    j += 1
                    break
                if c == 0 or c >= 128:
                    return -1  # NUL or non-ASCII: UTF-8 checks and csv corner cases stay slow
                out_text[w] = c
                w += step
                j += 1
            if j < b and data[j] != COMMA:
                return -1  # strict: "',' expected after '\"'"
        else:
            while j < b:  # unquoted: to the next comma, a quote is a plain byte
                c = data[j]
                if c == COMMA:
                    break
                if c == 0 or c >= 128:
                    return -1
                out_text[w] = c
                w += step
                j += 1
        fields[nf, 0] = fs
        fields[nf, 1] = w
        nf += 1
        if j >= b:
            break
        j += 1  # the comma
    if nf != N_COLUMNS:
        return -1  # too few fields
    return w


@njit(cache=True, inline="always")
def _same(text, a, b, words, wa, wb):  # type: ignore[no-untyped-def]
    if b - a != wb - wa:
        return False
    for j in range(b - a):
        if text[a + j] != words[wa + j]:
            return False
    return True


@njit(cache=True, inline="always")
def _digits(text, a, b):  # type: ignore[no-untyped-def]
    """A plain decimal (1 to 18 ASCII digits, so it fits int64), else -1."""
    if b <= a or b - a > 18:
        return -1
    value = 0
    for j in range(a, b):
        d = text[j] - 48
        if not 0 <= d <= 9:
            return -1
        value = value * 10 + d
    return value


@njit(cache=True, inline="always")
def _two(text, j):  # type: ignore[no-untyped-def]
    hi = text[j] - 48
    lo = text[j + 1] - 48
    if not (0 <= hi <= 9 and 0 <= lo <= 9):
        return -1
    return hi * 10 + lo


@njit(cache=True, inline="always")
def _local_seconds(text, a, b):  # type: ignore[no-untyped-def]
    """``YYYY-MM-DD HH:MM:SS`` as seconds since 1970-01-01 00:00 wall time, else INVALID_TIME.

    Days from the civil date by Howard Hinnant's ``days_from_civil`` (exact
    integer arithmetic, proleptic Gregorian as ``datetime``).
    """
    if b - a != 19:
        return INVALID_TIME
    for k in (4, 7):
        if text[a + k] != 45:  # '-'
            return INVALID_TIME
    if text[a + 10] != SPACE or text[a + 13] != 58 or text[a + 16] != 58:  # ':'
        return INVALID_TIME
    c1 = _two(text, a)
    c2 = _two(text, a + 2)
    month = _two(text, a + 5)
    day = _two(text, a + 8)
    hour = _two(text, a + 11)
    minute = _two(text, a + 14)
    second = _two(text, a + 17)
    if min(c1, c2, month, day, hour, minute, second) < 0:
        return INVALID_TIME
    year = c1 * 100 + c2
    if not FIRST_YEAR <= year <= LAST_YEAR or not 1 <= month <= 12 or day < 1:
        return INVALID_TIME
    if hour > 23 or minute > 59 or second > 59:
        return INVALID_TIME
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if month == 2:
        last = 29 if leap else 28
    elif month in (4, 6, 9, 11):
        last = 30
    else:
        last = 31
    if day > last:
        return INVALID_TIME
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    mp = (month + 9) % 12
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + hour * 3600 + minute * 60 + second


@njit(cache=True, inline="always")
def _hash(text, a, b):  # type: ignore[no-untyped-def]
    """FNV-1a over the bytes; equal ids hash equally, the wrapper compares bytes on a clash."""
    h = FNV_OFFSET
    for j in range(a, b):
        h = (h ^ np.uint64(text[j])) * FNV_PRIME
    return h


@njit(cache=True)
def mediate_lines(  # type: ignore[no-untyped-def]
    data,
    line_start,
    line_end,
    words,
    word_offsets,
    keep,
    fields,
    out_text,
    out_status,
    out_bounds,
    out_local,
    out_usage,
    out_hash,
):
    """Decide each line ``i`` it is sure of; returns the bytes used in ``out_text``.

    ``words`` / ``word_offsets`` are the dispositions in the slow parser's order,
    ``ANSWERED`` first; ``keep`` (18 bytes, 0 or 1) marks the fields to unquote into
    ``out_text``, at least those read here. ``out_status[i]`` is ``SLOW``, ``BLANK`` or
    ``FIRST_RULE + k`` for disposition ``k``; for every line with 18 fields,
    ``out_hash[i]`` hashes the unquoted uniqueid and ``out_bounds[i]`` locates
    it in ``out_text`` (the repeat count covers skipped lines too). For
    ``ANSWERED`` lines ``out_bounds[i]`` also locates the account
    (``accountcode``, else ``src``) and ``dst``; ``out_local[i]`` is the ``answer`` wall time in seconds and
    ``out_usage[i]`` is ``billsec``. ``fields`` is (18, 2) scratch.
    ``out_text`` needs ``len(data)`` bytes: unquoting only shrinks a line.
    """
    w = 0
    n_words = len(word_offsets) - 1
    for i in range(len(line_start)):
        a = line_start[i]
        b = line_end[i]
        out_status[i] = SLOW
        if _blank(data, a, b):
            out_status[i] = BLANK
            continue
        if b - a > MAX_LINE:
            continue
        end = _tokenize(data, a, b, keep, out_text, w, fields)
        if end < 0:
            continue
        w = end
        out_hash[i] = _hash(out_text, fields[UNIQUEID, 0], fields[UNIQUEID, 1])
        out_bounds[i, UID_S] = fields[UNIQUEID, 0]
        out_bounds[i, UID_E] = fields[UNIQUEID, 1]
        rule = -1
        for k in range(n_words):
            if _same(out_text, fields[DISPOSITION, 0], fields[DISPOSITION, 1], words,
                     word_offsets[k], word_offsets[k + 1]):  # fmt: skip
                rule = k
                break
        if rule < 0:
            continue  # unknown disposition: the slow twin words the reject
        if rule > 0:
            out_status[i] = FIRST_RULE + rule
            continue
        if fields[UNIQUEID, 1] == fields[UNIQUEID, 0]:
            continue
        duration = _digits(out_text, fields[DURATION, 0], fields[DURATION, 1])
        billsec = _digits(out_text, fields[BILLSEC, 0], fields[BILLSEC, 1])
        if duration < 0 or billsec < 0 or billsec > duration:
            continue
        if _local_seconds(out_text, fields[START, 0], fields[START, 1]) == INVALID_TIME:
            continue
        answer = _local_seconds(out_text, fields[ANSWER, 0], fields[ANSWER, 1])
        if answer == INVALID_TIME:
            continue
        account = ACCOUNTCODE if fields[ACCOUNTCODE, 1] > fields[ACCOUNTCODE, 0] else SRC
        if fields[account, 1] == fields[account, 0]:
            continue
        out_bounds[i, ACC_S] = fields[account, 0]
        out_bounds[i, ACC_E] = fields[account, 1]
        out_bounds[i, DST_S] = fields[DST, 0]
        out_bounds[i, DST_E] = fields[DST, 1]
        out_local[i] = answer
        out_usage[i] = billsec
        out_status[i] = FIRST_RULE
    return w


@njit(cache=True)
def gather_values(text, bounds, rows, s, e, out_data, out_offsets):  # type: ignore[no-untyped-def]
    """Pack ``text[bounds[r, s]:bounds[r, e]]`` for each ``r`` of ``rows`` Arrow-style.

    One pass instead of numpy's index arithmetic (``engine.columns.gather``
    builds an index per byte); twin: ``engine.columns.gather``. ``out_offsets``
    has ``len(rows) + 1`` entries, ``out_data`` room for every byte.
    """
    w = 0
    out_offsets[0] = 0
    for k in range(len(rows)):
        r = rows[k]
        for j in range(bounds[r, s], bounds[r, e]):
            out_data[w] = text[j]
            w += 1
        out_offsets[k + 1] = w
    return w


@njit(cache=True)
def local_to_utc(local, wall_changes, offsets, out):  # type: ignore[no-untyped-def]
    """``out[i] = local[i] - offset`` in force at that wall time (the earlier one on a change).

    ``wall_changes[k]`` is the wall time from which ``offsets[k]`` applies,
    reckoned in the larger of the offsets before and after the change: a time
    in a spring-forward gap or a repeated autumn hour keeps the offset before
    the change, as ``zoneinfo`` does for ``fold=0``. Twin:
    ``datetime.replace(tzinfo=zone).astimezone(UTC)``.
    """
    for i in range(len(local)):
        k = np.searchsorted(wall_changes, local[i], side="right") - 1
        out[i] = local[i] - offsets[k]
