"""Wire formats for usage records: decode at the edge, encode for producers.

Three shapes reach the engine:

* **Messages** (JSON or MessagePack): one record, or an array of records.
  :func:`decode_message_with_rejects` decodes the whole message in one call;
  only when that fails does it split the array into raw elements and decode
  each one, so every bad record is found and the good ones are kept.
* **JSON-lines files**: one record per line, decoded in one call per chunk
  (:func:`decode_jsonl`, :func:`read_jsonl`), falling back line by line to
  name each bad line as ``file:line``.
* **Columnar batches** (:class:`ColumnarBatch`, MessagePack): one packed
  little-endian array per field and Arrow-style string buffers, turned into
  :class:`~engine.columns.Columns` without a Python object per record.

:func:`records_to_columns` is the rows → columns stage for the first two.

Decoders are built once, at import, and shared: a msgspec ``Decoder`` holds no
state between calls.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import msgspec
import numpy as np

from engine.columns import I64, KIND_EVENT, KIND_NAMES, Columns, StrColumn, gather
from engine.exceptions import DecodeError
from engine.records import MAX_USAGE, RECORD_TYPES, Record
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR, Reject

Format = Literal["json", "msgpack"]
# msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8;
# a bare ValueError for a timestamp past year 9999 ("year 10000 is out of range"), and
# RecursionError for values nested ~1,000 deep: each is one bad record, never a crash.
DecodeFailure = msgspec.DecodeError | ValueError | RecursionError
_DECODE_FAILURES: Final = (msgspec.DecodeError, ValueError, RecursionError)


class Decoded(NamedTuple):
    """What one message or file chunk gave: the good records and the rejects."""

    records: list[Record]
    rejects: list[Reject]


# --- messages -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Codec:
    label: str
    batch: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]  # list[Record] | Record
    one: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]  # Record
    elements: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]  # list[Raw]
    anything: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]
    encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder
    array_heads: frozenset[int]  # first bytes that open an array (after JSON whitespace)


_JSON_RECORD: Final = msgspec.json.Decoder(Record)
_JSON: Final = _Codec(
    label="JSON",
    batch=msgspec.json.Decoder(list[Record] | Record),
    one=_JSON_RECORD,
    elements=msgspec.json.Decoder(list[msgspec.Raw]),
    anything=msgspec.json.Decoder(),
    encoder=msgspec.json.Encoder(),
    array_heads=frozenset(b"["),
)
_MSGPACK: Final = _Codec(
    label="MessagePack",
    batch=msgspec.msgpack.Decoder(list[Record] | Record),
    one=msgspec.msgpack.Decoder(Record),
    elements=msgspec.msgpack.Decoder(list[msgspec.Raw]),
    anything=msgspec.msgpack.Decoder(),
    encoder=msgspec.msgpack.Encoder(),
    array_heads=frozenset([*range(0x90, 0xA0), 0xDC, 0xDD]),  # fixarray, array 16, array 32
)
_JSON_LINES: Final = msgspec.json.Encoder()


def _codec(fmt: Format) -> _Codec:
    if fmt == "json":
        return _JSON
    if fmt == "msgpack":
        return _MSGPACK
    msg = f"wire format {fmt!r} is unknown; use 'json' or 'msgpack'"
    raise ValueError(msg)


def decode_message(raw: bytes, fmt: Format, *, source: str = "message") -> list[Record]:
    """Decode one message (a record or an array of records); all or nothing.

    Raises :class:`~engine.exceptions.DecodeError` naming the first bad record
    and field, and how many more were bad.
    """
    try:
        decoded = _codec(fmt).batch.decode(raw)
    except _DECODE_FAILURES:
        pass
    else:
        return decoded if isinstance(decoded, list) else [decoded]
    records, rejects = decode_message_with_rejects(raw, fmt, source=source)
    if not rejects:  # not expected: the one-call decode failed, so some record is bad
        return records
    more = f" (and {len(rejects) - 1} more bad records)" if len(rejects) > 1 else ""
    msg = f"{source}: {rejects[0].message}{more}"
    raise DecodeError(msg)


def decode_message_with_rejects(raw: bytes, fmt: Format, *, source: str) -> Decoded:
    """Decode one message, keeping the good records and rejecting each bad one.

    ``source`` is the message's position (``topic[partition]@offset``); each
    reject carries it, the record's index in the message and the record's own
    bytes. A message that cannot be split into records at all (malformed,
    truncated, empty, neither an object nor an array) is one reject holding the
    whole message.
    """
    codec = _codec(fmt)
    try:
        decoded = codec.batch.decode(raw)
    except _DECODE_FAILURES as exc:
        return _salvage(raw, codec, source, exc)
    return Decoded(decoded if isinstance(decoded, list) else [decoded], [])


def _salvage(raw: bytes, codec: _Codec, source: str, exc: DecodeFailure) -> Decoded:
    """The slow path: find every bad record of a message that failed to decode."""
    head = raw.lstrip()[:1] if codec is _JSON else raw[:1]
    if not head:
        whole = _whole_message(source, DECODE_ERROR, "message is empty", raw)
        return Decoded([], [whole])
    if head[0] not in codec.array_heads:
        if isinstance(exc, msgspec.ValidationError) and " - at `$" in str(exc):
            return Decoded([], [_reject(exc, codec, raw, source, index=0)])  # one bad record
        reason = VALIDATION_ERROR if isinstance(exc, msgspec.ValidationError) else DECODE_ERROR
        message = _describe(exc, "message", codec=codec)
        if reason == DECODE_ERROR:
            message = _malformed(codec, exc)
        return Decoded([], [_whole_message(source, reason, message, raw)])
    try:
        elements = codec.elements.decode(raw)
    except _DECODE_FAILURES as split_exc:
        message = _malformed(codec, split_exc)
        return Decoded([], [_whole_message(source, DECODE_ERROR, message, raw)])
    records: list[Record] = []
    rejects: list[Reject] = []
    for index, element in enumerate(elements):
        try:
            records.append(codec.one.decode(element))
        except _DECODE_FAILURES as element_exc:
            rejects.append(_reject(element_exc, codec, bytes(element), source, index=index))
    return Decoded(records, rejects)


def _malformed(codec: _Codec, exc: DecodeFailure) -> str:
    text = _text(exc).removeprefix("MessagePack data is malformed: ")
    return f"message is not valid {codec.label}: {text.removeprefix('JSON is malformed: ')}"


def _whole_message(source: str, reason: str, message: str, raw: bytes) -> Reject:
    return Reject(source=source, reason=reason, message=message, raw=raw)


def _reject(
    exc: DecodeFailure, codec: _Codec, raw: bytes, source: str, *, index: int | None
) -> Reject:
    where = f"record {index}" if index is not None else source
    reason = VALIDATION_ERROR if isinstance(exc, msgspec.ValidationError) else DECODE_ERROR
    message = _describe(exc, where, raw=raw, codec=codec)
    return Reject(source=source, reason=reason, message=message, raw=raw, index=index)


_AT = re.compile(r"(?P<text>.*) - at `\$(?P<path>[^`]*)`", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<field>\w+)`")
_OWN_FIELD = re.compile(r"field (?P<field>\w+): (?P<text>.*)", re.DOTALL)
_NOT_RECORD = re.compile(r"Expected `(?P<shape>object \| array|object)`, got `(?P<got>\w+)`")
_TAGS: Final = ", ".join(repr(t.__struct_config__.tag) for t in RECORD_TYPES)


def _describe(
    exc: DecodeFailure, where: str, *, raw: bytes = b"", codec: _Codec | None = None
) -> str:
    """msgspec's error reworded as ``<where> field <name>: <what>``.

    msgspec says ``Expected `int` >= 0 - at `$.usage```; this gives
    ``record 12 field usage: Expected `int` >= 0, got -3``. With the record
    ``codec``, the offending value is looked up in ``raw`` when msgspec's text
    does not show it, and shape errors are worded in terms of records.
    """
    text, field = _text(exc), ""
    if at := _AT.fullmatch(text):
        text, path = at["text"], at["path"]
        field = path[1:] if path.startswith(".") else path
    if missing := _MISSING.fullmatch(text):
        field, text = missing["field"], "is required but missing"
    elif own := _OWN_FIELD.fullmatch(text):  # raised by a record's __post_init__
        field, text = own["field"], own["text"]
    elif codec is None:
        pass
    elif (shape := _NOT_RECORD.fullmatch(text)) and not field:
        wanted = "a record (an object)"
        if shape["shape"] != "object":
            wanted += " or an array of records"
        text = f"expected {wanted}, got `{shape['got']}`"
    elif field == "type" and text.startswith("Invalid value"):
        text += f"; expected one of {_TAGS}"
    elif field and raw and ", got " not in text:
        text += _offending_value(raw, field, codec)
    return f"{where} field {field}: {text}" if field else f"{where}: {text}"


def _text(exc: DecodeFailure) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"a string is not valid UTF-8 ({exc.reason})"
    return str(exc)


def _offending_value(raw: bytes, field: str, codec: _Codec) -> str:
    try:
        value = codec.anything.decode(raw)
    except _DECODE_FAILURES:
        return ""
    if not isinstance(value, dict) or field not in value:
        return ""
    shown = msgspec.json.encode(value[field], enc_hook=repr).decode()
    return f", got {shown[:80]}"


# --- JSON lines ---------------------------------------------------------------


def decode_jsonl(raw: bytes, *, source: str, first_line: int = 1) -> Decoded:
    """Decode JSON lines (one record per line; blank lines are skipped).

    One decoder call for the whole buffer; only if that fails is each line
    decoded on its own, so each bad line is rejected as ``source:line``
    (``first_line`` is the number of the buffer's first line in the file).
    """
    try:
        return Decoded(_JSON_RECORD.decode_lines(raw), [])
    except _DECODE_FAILURES:
        pass
    records: list[Record] = []
    rejects: list[Reject] = []
    for number, line in enumerate(raw.split(b"\n"), start=first_line):
        if not line.strip():
            continue
        try:
            records.append(_JSON.one.decode(line))
        except _DECODE_FAILURES as exc:
            rejects.append(_reject(exc, _JSON, line, f"{source}:{number}", index=None))
    return Decoded(records, rejects)


def jsonl_chunks(path: Path, *, chunk_bytes: int = 1 << 24) -> Iterator[tuple[bytes, int, int]]:
    """A JSON-lines file in chunks of about ``chunk_bytes`` cut at line ends:
    (bytes, number of their first line, bytes of the file read so far)."""
    line, tail, read = 1, b"", 0
    with path.open("rb") as file:
        while chunk := file.read(chunk_bytes):
            read += len(chunk)
            buffer = tail + chunk
            cut = buffer.rfind(b"\n") + 1
            body, tail = buffer[:cut], buffer[cut:]
            if body:
                yield body, line, read
                line += body.count(b"\n")
    if tail:
        yield tail, line, read


def read_jsonl(path: Path, *, chunk_bytes: int = 1 << 24) -> Iterator[Decoded]:
    """Decode a JSON-lines file in chunks of about ``chunk_bytes``, cut at line ends."""
    for body, line, _ in jsonl_chunks(path, chunk_bytes=chunk_bytes):
        yield decode_jsonl(body, source=str(path), first_line=line)


# --- encoders for producers and tests -----------------------------------------


def encode_record(record: Record, fmt: Format) -> bytes:
    """One record as a message of its own."""
    return _codec(fmt).encoder.encode(record)


def decode_record(raw: bytes, fmt: Format) -> Record:
    """One record's own bytes, e.g. an element cut out of an array message."""
    record: Record = _codec(fmt).one.decode(raw)
    return record


def encode_records(records: Sequence[Record], fmt: Format) -> bytes:
    """Records as one batch message (an array)."""
    return _codec(fmt).encoder.encode(records)


def encode_jsonl(records: Iterable[Record]) -> bytes:
    """Records as JSON lines, each line ending in ``\\n``."""
    return _JSON_LINES.encode_lines(records)


# --- rows → columns -----------------------------------------------------------

_KIND_OF: Final[dict[type, int]] = {cls: cls.kind for cls in RECORD_TYPES}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
# float64 seconds → microseconds is exact below 2**51 µs (see _epoch_us).
_EXACT_FLOAT_SECONDS: Final = 2.0**51 / 1e6


def records_to_columns(records: Sequence[Record]) -> Columns:
    """Records (rows) as :class:`Columns`, with ``subject`` defaulted to the account.

    One list comprehension per field and one join per string column; no
    per-record numpy work. Raises :class:`DecodeError` for what the columns
    cannot hold: an empty ``account`` (resolve it first with
    :func:`engine.records.resolve_accounts`), an empty ``cdr_id``, a negative
    ``usage`` or a naive ``start`` (possible only for records built in Python;
    decoded ones were checked by msgspec).
    """
    n = len(records)
    kind = np.fromiter(map(_KIND_OF.__getitem__, map(type, records)), np.uint8, count=n)
    cdr_id = _pack("cdr_id", [r.cdr_id for r in records])
    account = _pack("account", [r.account for r in records])
    _require_values("cdr_id", cdr_id)
    _require_values("account", account, hint="resolve it from the subscriber first")
    return Columns(
        kind=kind,
        cdr_id=cdr_id,
        tenant=_pack("tenant", [r.tenant for r in records]),
        account=account,
        category=_pack("category", [r.category for r in records]),
        subject=_fill_empty(_pack("subject", [r.subject for r in records]), account),
        destination=_pack("destination", [r.destination for r in records]),
        start_us=_epoch_us([r.start for r in records]),
        usage=_usage(records),
    )


def _usage(records: Sequence[Record]) -> I64:
    try:
        usage = np.fromiter(map(operator.attrgetter("usage"), records), np.int64, len(records))
    except OverflowError:  # a value beyond int64, only possible for records built in Python
        usage = None
    if usage is None or (len(usage) and usage.min() < 0):
        index = next(i for i, r in enumerate(records) if not 0 <= r.usage <= MAX_USAGE)
        value = records[index].usage
        msg = f"record {index} field usage: Expected `int` in 0..{MAX_USAGE}, got {value}"
        raise DecodeError(msg)
    return usage


def _pack(field: str, values: list[str]) -> StrColumn:
    """Strings as a StrColumn: one join, one encode, offsets found by numpy.

    Joining with NUL and locating the separators in the encoded bytes is about
    twice as fast as encoding each value to measure its length; a value that
    itself holds a NUL takes the per-value path.
    """
    n = len(values)
    try:
        buffer = np.frombuffer("\x00".join(values).encode(), dtype=np.uint8)
    except UnicodeEncodeError as exc:
        index = next(i for i, v in enumerate(values) if not _encodable(v))
        msg = f"record {index} field {field}: is not valid Unicode ({exc.reason})"
        raise DecodeError(msg) from exc
    separators = np.flatnonzero(buffer == 0)
    if len(separators) != max(n - 1, 0):
        return StrColumn.from_strings(values)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:n] = separators - np.arange(n - 1)
    offsets[n] = len(buffer) - max(n - 1, 0)
    return StrColumn(buffer[buffer != 0], offsets)


def _encodable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _require_values(field: str, column: StrColumn, *, hint: str = "") -> None:
    empty = np.flatnonzero(np.diff(column.offsets) == 0)
    if len(empty):
        msg = f"record {empty[0]} field {field}: is empty"
        raise DecodeError(f"{msg}; {hint}" if hint else msg)


def _epoch_us(starts: list[datetime]) -> I64:
    """Aware datetimes as UTC epoch microseconds, exactly.

    ``datetime.timestamp()`` is ``microseconds / 10**6`` correctly rounded, and
    multiplying back by ``1e6`` adds one more rounding: the error is below
    ``us * 2**-52``, under half a microsecond while ``|us| < 2**51`` (until
    2041-05), so ``rint`` recovers the exact integer. Outside that range, exact
    integer timedelta arithmetic (a third slower) is used instead.
    """
    n = len(starts)
    if None in set(map(operator.attrgetter("tzinfo"), starts)):
        index = next(i for i, s in enumerate(starts) if s.tzinfo is None)
        msg = f"record {index} field start: Expected `datetime` with a timezone component"
        raise DecodeError(msg)
    seconds = np.fromiter(map(datetime.timestamp, starts), np.float64, count=n)
    if n == 0 or np.abs(seconds).max() < _EXACT_FLOAT_SECONDS:
        return np.rint(seconds * 1e6).astype(np.int64)
    deltas = map(operator.sub, starts, repeat(_EPOCH))
    return np.fromiter(map(operator.floordiv, deltas, repeat(_ONE_US)), np.int64, count=n)


def _fill_empty(column: StrColumn, fallback: StrColumn) -> StrColumn:
    """``column`` with each empty value replaced by ``fallback``'s value at that index."""
    lengths = np.diff(column.offsets)
    empty = lengths == 0
    if not empty.any():
        return column
    if empty.all():
        return fallback
    starts = np.where(empty, fallback.offsets[:-1] + len(column.data), column.offsets[:-1])
    lengths = np.where(empty, np.diff(fallback.offsets), lengths)
    return gather(np.concatenate([column.data, fallback.data]), starts, lengths)


# --- columnar batches -----------------------------------------------------------


class StrBuffers(msgspec.Struct, array_like=True, frozen=True):
    """A string column on the wire: UTF-8 values back to back, and their offsets."""

    data: bytes
    offsets: bytes  # n + 1 little-endian int32, offsets[0] == 0


class ColumnarBatch(
    msgspec.Struct, kw_only=True, frozen=True, tag_field="format", tag="ratewire.columns.v1"
):
    """``n`` records as packed arrays (MessagePack); see :func:`columnar_to_columns`.

    Strings travel Arrow-style (measured: decoding 1 M strings this way takes
    ~1 ms against ~115 ms for a ``list[str]`` packed afterwards). Offsets are
    int32 (each string field of a batch holds at most 2 GiB), which makes a
    batch about a quarter smaller than int64 offsets would.
    """

    kind: bytes  # n uint8, KIND_*
    cdr_id: StrBuffers
    tenant: StrBuffers
    account: StrBuffers
    category: StrBuffers  # empty: the kind's default (an event must name one)
    subject: StrBuffers  # empty: same as account
    destination: StrBuffers
    start_us: bytes  # n little-endian int64, UTC epoch microseconds
    usage: bytes  # n little-endian int64, >= 0


_COLUMNAR_DECODER: Final = msgspec.msgpack.Decoder(ColumnarBatch)
_COLUMNAR_ENCODER: Final = msgspec.msgpack.Encoder()
_STRING_FIELDS: Final = ("cdr_id", "tenant", "account", "category", "subject", "destination")
_DEFAULT_CATEGORIES: Final = StrColumn.from_strings(["call", "sms", "data", ""])
_INT32_MAX: Final = 2**31 - 1


def decode_columnar(raw: bytes) -> Columns:
    """A MessagePack :class:`ColumnarBatch` message as validated :class:`Columns`.

    The numeric arrays are read-only views of the message's bytes (no copy).
    """
    try:
        batch = _COLUMNAR_DECODER.decode(raw)
    except _DECODE_FAILURES as exc:
        msg = _describe(exc, "columnar batch")
        raise DecodeError(msg) from exc
    return columnar_to_columns(batch)


def columnar_to_columns(batch: ColumnarBatch) -> Columns:
    """Check a columnar batch and return it as Columns; all or nothing.

    Checks (vectorized): every array holds ``n`` values, string offsets start at
    0, never go back and end at the data's length, strings are UTF-8 and split on
    character boundaries, ``kind`` is a KIND_*, ``usage >= 0``, ``cdr_id`` and
    ``account`` are not empty, an event names its category. Raises
    :class:`DecodeError` naming the first offending record and field.
    """
    n = len(batch.kind)
    kind = np.frombuffer(batch.kind, dtype=np.uint8)
    _first_bad("kind", kind >= len(KIND_NAMES), f"is not a kind (0..{len(KIND_NAMES) - 1})", kind)
    start_us = _int64s("start_us", batch.start_us, n)
    usage = _int64s("usage", batch.usage, n)
    _first_bad("usage", usage < 0, "Expected `int` >= 0", usage)
    strings = {name: _strings(name, getattr(batch, name), n) for name in _STRING_FIELDS}
    for name in ("cdr_id", "account"):
        lengths = np.diff(strings[name].offsets)
        _first_bad(name, lengths == 0, "is empty")
    categories = strings["category"]
    missing = (np.diff(categories.offsets) == 0) & (kind == KIND_EVENT)
    _first_bad("category", missing, "is empty; an event must name its category")
    defaults = gather(
        _DEFAULT_CATEGORIES.data,
        _DEFAULT_CATEGORIES.offsets[kind],
        np.diff(_DEFAULT_CATEGORIES.offsets)[kind],
    )
    return Columns(
        kind=kind,
        cdr_id=strings["cdr_id"],
        tenant=strings["tenant"],
        account=strings["account"],
        category=_fill_empty(categories, defaults),
        subject=_fill_empty(strings["subject"], strings["account"]),
        destination=strings["destination"],
        start_us=start_us,
        usage=usage,
    )


def _first_bad(
    field: str, bad: np.ndarray[Any, Any], what: str, got: np.ndarray[Any, Any] | None = None
) -> None:
    if bad.any():
        index = int(np.argmax(bad))
        shown = "" if got is None else f", got {got[index]}"
        msg = f"columnar batch record {index} field {field}: {what}{shown}"
        raise DecodeError(msg)


def _int64s(field: str, buffer: bytes, n: int) -> I64:
    if len(buffer) != 8 * n:
        msg = f"columnar batch field {field}: holds {len(buffer)} bytes, expected {8 * n} (n = {n})"
        raise DecodeError(msg)
    return np.frombuffer(buffer, dtype="<i8").astype(np.int64, copy=False)


def _strings(field: str, buffers: StrBuffers, n: int) -> StrColumn:
    if len(buffers.offsets) != 4 * (n + 1):
        count = len(buffers.offsets) / 4
        msg = f"columnar batch field {field}: holds {count:g} offsets, expected n + 1 = {n + 1}"
        raise DecodeError(msg)
    offsets = np.frombuffer(buffers.offsets, dtype="<i4").astype(np.int64)
    data = np.frombuffer(buffers.data, dtype=np.uint8)
    if offsets[0] != 0 or offsets[-1] != len(data):
        msg = (
            f"columnar batch field {field}: offsets run from {offsets[0]} to {offsets[-1]}, "
            f"expected 0 to {len(data)} (the data's length)"
        )
        raise DecodeError(msg)
    lengths = np.diff(offsets)
    _first_bad(field, lengths < 0, "offsets go backwards (a negative length)", lengths)
    if not buffers.data.isascii():
        _check_utf8(field, buffers.data, data, offsets)
    return StrColumn(data, offsets)


def _check_utf8(field: str, raw: bytes, data: np.ndarray[Any, Any], offsets: I64) -> None:
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        index = int(np.searchsorted(offsets, exc.start, side="right")) - 1
        msg = f"columnar batch record {index} field {field}: is not valid UTF-8 ({exc.reason})"
        raise DecodeError(msg) from exc
    starts = offsets[:-1][np.diff(offsets) > 0]
    # A value may not start on a UTF-8 continuation byte (0b10xxxxxx).
    split = (data[starts] & 0xC0) == 0x80
    if split.any():
        index = int(np.searchsorted(offsets, starts[np.argmax(split)], side="right")) - 1
        msg = f"columnar batch record {index} field {field}: starts inside a UTF-8 character"
        raise DecodeError(msg)


def columns_to_columnar(columns: Columns) -> bytes:
    """Columns as a MessagePack :class:`ColumnarBatch` message (for producers)."""
    strings = {name: _buffers(name, getattr(columns, name)) for name in _STRING_FIELDS}
    batch = ColumnarBatch(
        kind=columns.kind.astype(np.uint8, copy=False).tobytes(),
        start_us=columns.start_us.astype("<i8", copy=False).tobytes(),
        usage=columns.usage.astype("<i8", copy=False).tobytes(),
        **strings,
    )
    return _COLUMNAR_ENCODER.encode(batch)


def _buffers(field: str, column: StrColumn) -> StrBuffers:
    if len(column.data) > _INT32_MAX:
        msg = f"field {field}: {len(column.data)} bytes is too much for one columnar batch"
        raise ValueError(msg + "; split the columns into smaller batches")
    return StrBuffers(column.data.tobytes(), column.offsets.astype("<i4").tobytes())
