"""MessagePack arrays of usage records straight to :class:`~engine.columns.Columns`.

The checked wrapper around :mod:`engine.msgpack_kernels`: it reads the array
header, sizes the output arrays, runs the decode kernel (one pass over the
bytes, no Python object per record) and copies the string columns out of the
message. For every message it accepts, the result is exactly
``records_to_columns(decode_message_with_rejects(raw, "msgpack", ...).records)``,
its slow twin.

It declines (returns ``None``) whatever is unusual: not an array of at least
one map, a malformed or truncated message, trailing bytes, any record msgspec
would reject, a duplicate key, an empty ``account`` (to be resolved from the
subscriber), a ``start`` that is not a timestamp extension, and the rest
listed in :mod:`engine.msgpack_kernels`. The caller then takes the msgspec
path, which finds and names the bad records; the fast path never rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec
import numpy as np

from engine import msgpack_kernels as k
from engine.columns import I64, U8, Columns, StrColumn
from engine.records import RECORD_TYPES

# The smallest record the kernel can accept: a fixmap header, then fixstr keys with
# "type": "sms" (9 bytes), "cdr_id": 1 character (9), "tenant": "" (8), "account": 1
# character (10), "start": fixext 4 (12) and "usage": a fixint (7). An array header
# claiming more records than the message can hold is declined before allocating.
MIN_RECORD_BYTES: Final = 56


@dataclass(frozen=True, slots=True)
class RecordArray:
    """The records of one message as columns, and where each record's bytes are.

    Record ``i`` is ``raw[bounds[i]:bounds[i + 1]]``: its whole map, which
    msgspec decodes on its own as a :data:`~engine.records.Record`.
    ``bounds`` has ``len(columns) + 1`` values; ``bounds[0]`` is the end of the
    array header and ``bounds[-1] == len(raw)``.
    """

    columns: Columns
    bounds: I64


def _default_categories() -> tuple[bytes, I64]:
    """Each kind's default category (from the Struct definitions) as one byte string and
    (start, length) pairs into it; a kind without a default (event) gets an empty one."""
    names: list[bytes] = []
    for cls in RECORD_TYPES:
        field = next(f for f in msgspec.structs.fields(cls) if f.name == "category")
        names.append(field.default.encode() if isinstance(field.default, str) else b"")
    lengths = np.array([len(name) for name in names], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    return b"".join(names), np.stack([starts, lengths], axis=1)


_CATEGORY_BYTES, _CATEGORY_SPANS = _default_categories()
# What follows the message in the kernels' buffer: the default categories (so one
# buffer holds every string a column takes), then the padding the word reads need.
_TAIL: Final = _CATEGORY_BYTES + bytes(k.PAD)


def _array_header(raw: bytes) -> tuple[int, int] | None:
    """(element count, first element's offset) of a fixarray, array 16 or array 32."""
    if not raw:
        return None
    head = raw[0]
    if 0x90 <= head <= 0x9F:
        return head & 0x0F, 1
    if head == 0xDC and len(raw) >= 3:
        return int.from_bytes(raw[1:3], "big"), 3
    if head == 0xDD and len(raw) >= 5:
        return int.from_bytes(raw[1:5], "big"), 5
    return None


def decode_record_array(raw: bytes) -> RecordArray | None:
    """A MessagePack array of records as columns and record bounds, or ``None`` to decline.

    Declines (see the module docstring) unless the message is a plain, valid
    array of at least one record the kernel fully understands; decode a
    declined message with :func:`engine.wire.decode_message_with_rejects`.
    """
    header = _array_header(raw)
    if header is None:
        return None
    n, first = header
    if n == 0 or n > (len(raw) - first) // MIN_RECORD_BYTES:
        return None  # empty, or a count the bytes cannot hold
    buffer = np.frombuffer(raw + _TAIL, dtype=np.uint8)
    defaults = _CATEGORY_SPANS + np.array([len(raw), 0], dtype=np.int64)
    bounds = np.empty(n + 1, dtype=np.int64)
    spans = np.empty((2, k.N_SPANS, n), dtype=np.int64)  # [start | length, column, record]
    kind = np.empty(n, dtype=np.uint8)
    start_us = np.empty(n, dtype=np.int64)
    usage = np.empty(n, dtype=np.int64)
    decoded = k.decode_records(
        buffer, len(raw), first, defaults, bounds, spans, kind, start_us, usage
    )
    if decoded != n:
        return None
    offsets = np.empty((k.N_SPANS, n + 1), dtype=np.int64)
    joined = np.empty(int(spans[1].sum()) + k.PAD, dtype=np.uint8)
    if k.gather_spans(buffer, spans, offsets, joined) < 0:
        return None  # not reached: the decode kernel's spans lie inside the buffer
    strings = _split(joined, offsets)
    columns = Columns(
        kind=kind,
        cdr_id=strings[k.CDR_ID],
        tenant=strings[k.TENANT],
        account=strings[k.ACCOUNT],
        category=strings[k.CATEGORY],
        subject=strings[k.SUBJECT],
        destination=strings[k.DESTINATION],
        start_us=start_us,
        usage=usage,
    )
    return RecordArray(columns, bounds)


def _split(joined: U8, offsets: I64) -> list[StrColumn]:
    """Columns stored one after another in ``joined`` as StrColumns (views of it)."""
    columns = []
    base = 0
    for row in offsets:
        end = base + int(row[-1])
        columns.append(StrColumn(joined[base:end], row))
        base = end
    return columns
