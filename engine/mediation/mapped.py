"""Any CSV or JSON CDR file to usage records, through a declarative mapping file.

A mapping is a TOML file, decoded with msgspec, that says where each record
field comes from::

    [source]
    format = "csv"             # "csv" or "json"
    delimiter = ","            # csv: one character
    header = false             # csv: the first line names the columns
    header_prefix = ""         # csv: the header line starts with this (CGRateS ":")
    comment = ""               # lines starting with this are skipped (rule "comment")
    json_layout = "lines"      # json: "lines" (an object a line) or "document"
    timezone = "UTC"           # IANA zone for times that carry no offset

    [fields]
    cdr_id = "3"               # csv: a column index, or its name when header = true
    account = "8"              # json: a key path such as "caller.account"
    category = {value = "call"}                           # a constant
    kind = {column = "2", map = {"*voice" = "voice", "*sms" = "sms"}}
    destination = {column = "4", pattern = "0([1-9][0-9]+)", to = "+49\\1"}
    origin = {column = "5", default = ""}                 # absent or empty: the default
    start = {column = "9", format = "%Y-%m-%d %H:%M:%S"}  # or "epoch", "epoch_ms", "iso"
    usage = {column = "11", unit = "s", round = "up"}

    [answered]                 # optional; any other value is skipped ("unanswered")
    column = "12"
    values = ["ANSWERED", "200"]

Fields are those of :class:`~engine.records.UsageRecord` (``cdr_id``,
``account``, ``subject``, ``category``, ``origin``, ``destination``, ``start``,
``usage``, ``cell``, ``roaming``, ``apn``, ``reseller``, ``subscriber``) plus
``kind`` (``voice``, ``sms``, ``data`` or ``event``; ``voice`` when unmapped).
``cdr_id``, ``start``, ``usage`` and ``account`` or ``subscriber`` are
required. The tenant is always the caller's: a file never chooses whom it bills.

A field is a column reference or a table with ``column`` or ``value`` and,
applied in this order: ``default`` (for an absent or empty column), ``pattern``
and ``to`` (when the whole value matches ``pattern`` it becomes ``to``, with
``\\1`` groups; otherwise it stays), ``map`` (a lookup; a value not listed is a
reject). An empty ``category`` leaves the kind's default (``call``, ``sms``,
``data``; an event must name one). ``start.format`` defaults to ``iso``; a strptime pattern without
``%z`` is read in ``source.timezone``. ``usage.unit`` is ``s``, ``ms``, ``us``
or ``ns`` (a time, stored in seconds; Go durations such as ``1m10s`` are read
whatever the unit) or ``1`` (bytes or a count, as is); it defaults to ``s`` for
voice and ``1`` otherwise, and a time unit on a non-voice record is a reject.
``usage.round`` says what a fraction of a second becomes: ``exact`` (the
default: a reject), ``up`` or ``down``.

Every input unit (a CSV line, a JSON line, or an object of a JSON document) is
accounted for in :class:`~engine.mediation.common.Parsed`: a record, a skip by
rule (``blank``, ``comment``, ``header``, ``unanswered``) or a reject at
``file:line`` (``DECODE_ERROR``: not UTF-8, CSV or JSON that does not parse;
``VALIDATION_ERROR``: a missing column or key, a value outside ``map``, a bad
time, a negative or fractional usage, a record that fails its own checks).
A mistake in the mapping raises :class:`~engine.exceptions.UsageInputError`
naming its key, e.g. ``fields.start.format: …``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Final, Literal, NoReturn, cast
from zoneinfo import ZoneInfo

import msgspec

from engine.exceptions import UsageInputError
from engine.mediation.common import (
    BLANK,
    LineError,
    Parsed,
    empty_file_reject,
    line_reject,
    read_bytes,
    split_lines,
    zone,
)
from engine.records import DataRecord, EventRecord, Record, SmsRecord, VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR

COMMENT: Final = "comment"
HEADER: Final = "header"
UNANSWERED: Final = "unanswered"
KINDS: Final[dict[str, type[Record]]] = {
    "voice": VoiceRecord,
    "sms": SmsRecord,
    "data": DataRecord,
    "event": EventRecord,
}
TEXT_FIELDS: Final = (
    "cdr_id",
    "account",
    "subject",
    "category",
    "origin",
    "destination",
    "cell",
    "apn",
    "reseller",
    "subscriber",
)
FIELDS: Final = (*TEXT_FIELDS, "kind", "start", "usage", "roaming")
NS_PER: Final = {
    "h": 3600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "µs": 10**3,
    "ns": 1,
}
TIME_UNITS: Final = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
GO_DURATION: Final = re.compile(r"-?(?:\d+(?:\.\d+)?(?:h|ms|us|µs|ns|m|s))+")
GO_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
BOOLS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

Row = list[str] | dict[str, object]


class Source(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: Literal["csv", "json"]
    delimiter: str = ","
    header: bool = False
    header_prefix: str = ""
    comment: str = ""
    json_layout: Literal["lines", "document"] = "lines"
    timezone: str = "UTC"


class Field(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    column: str | None = None
    value: str | None = None
    default: str | None = None
    pattern: str | None = None
    to: str | None = None
    map: dict[str, str] | None = None
    format: str | None = None
    unit: str | None = None
    round: Literal["exact", "up", "down"] = "exact"


class Answered(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    column: str
    values: list[str]


class Mapping(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A decoded mapping file (see the module docstring); read it with :func:`load_mapping`."""

    source: Source
    fields: dict[str, str | Field]
    answered: Answered | None = None


def load_mapping(path: Path) -> Mapping:
    """Read, decode and validate a mapping file; every mistake names its key."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        msg = f"mediation mapping: cannot read {str(path)!r}: {exc.strerror}"
        raise UsageInputError(msg) from exc
    return decode_mapping(text, name=str(path))


def decode_mapping(text: bytes | str, *, name: str = "mapping") -> Mapping:
    """Decode and validate mapping TOML; ``name`` starts every error message."""
    try:
        raw = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        msg = f"mediation mapping {name}: is not valid TOML ({exc})"
        raise UsageInputError(msg) from exc
    try:
        mapping = msgspec.convert(raw, Mapping)
    except msgspec.ValidationError as exc:
        msg = f"mediation mapping {name}: {_named(exc, raw)}"
        raise UsageInputError(msg) from exc
    _Plan(mapping, name=name, tenant="")
    return mapping


def _named(exc: msgspec.ValidationError, raw: object) -> str:
    """msgspec's ``… - at `$.a.b``` as ``a.b: …``, naming the key of a bad field entry."""
    detail, _, where = str(exc).partition(" - at `$")
    where = where.rstrip("`").lstrip(".")
    fields = raw.get("fields") if isinstance(raw, dict) else None
    if where.startswith("fields[...]") and isinstance(fields, dict):
        for key, value in fields.items():
            try:
                msgspec.convert(value, str | Field)
            except msgspec.ValidationError as inner:
                detail, _, rest = str(inner).partition(" - at `$")
                where = f"fields.{key}{rest.rstrip('`')}"
                break
    return f"{where}: {detail}" if where else detail


@dataclass(frozen=True, slots=True)
class _Spec:
    """Where one field's text comes from and how it is cleaned, compiled."""

    key: str
    column: str | None
    path: tuple[str, ...]
    index: int | None
    value: str | None
    default: str | None
    pattern: re.Pattern[str] | None
    to: str
    map: dict[str, str] | None


class _Plan:
    """A validated mapping for one file; a header line may resolve its column names."""

    def __init__(self, mapping: Mapping, *, name: str, tenant: str) -> None:
        self.name = name
        self.tenant = tenant
        self.source = mapping.source
        self.positions: dict[str, int] = {}
        self.tz = self._zone()
        if len(self.source.delimiter) != 1:
            self._fail("source.delimiter", f"{self.source.delimiter!r} is not one character")
        fields = {
            k: v if isinstance(v, Field) else Field(column=v) for k, v in mapping.fields.items()
        }
        for key in fields:
            if key not in FIELDS:
                self._fail(
                    f"fields.{key}", f"is not a record field; use one of {', '.join(FIELDS)}"
                )
        for key in ("cdr_id", "start", "usage"):
            if key not in fields:
                self._fail(f"fields.{key}", "is required")
        if "account" not in fields and "subscriber" not in fields:
            self._fail("fields.account", "is required (or fields.subscriber)")
        self.specs = {key: self._spec(f"fields.{key}", key, field) for key, field in fields.items()}
        self._check_extras(fields)
        start, usage = fields["start"], fields["usage"]
        self.time_format = start.format or "iso"
        kind = self.specs.get("kind")
        constant_kind = "voice" if kind is None else kind.value
        # None: seconds for a voice line, as is for the others (kind from a column).
        self.unit = usage.unit or (None if constant_kind is None else _unit_for(constant_kind))
        self.round = usage.round
        if self.unit in TIME_UNITS and constant_kind not in ("voice", None):
            self._fail(
                "fields.usage.unit", f"{self.unit!r} is a time, but kind is {constant_kind!r}"
            )
        self.answered: tuple[_Spec, frozenset[str]] | None = None
        if mapping.answered is not None:
            if not mapping.answered.values:
                self._fail("answered.values", "is empty; list the values that mean answered")
            spec = self._spec("answered", "answered", Field(column=mapping.answered.column))
            self.answered = (spec, frozenset(mapping.answered.values))

    def _zone(self) -> ZoneInfo:
        try:
            return zone(self.source.timezone)
        except UsageInputError as exc:
            self._fail("source.timezone", str(exc))

    def _fail(self, key: str, problem: str) -> NoReturn:
        msg = f"mediation mapping {self.name}: {key}: {problem}"
        raise UsageInputError(msg)

    def _check_extras(self, fields: dict[str, Field]) -> None:
        for key, field in fields.items():
            if field.format is not None and key != "start":
                self._fail(f"fields.{key}.format", "only fields.start takes a format")
            if (field.unit is not None or field.round != "exact") and key != "usage":
                self._fail(f"fields.{key}.unit", "only fields.usage takes a unit and a round")
        fmt = fields["start"].format
        if fmt is not None and fmt not in ("epoch", "epoch_ms", "iso") and "%" not in fmt:
            self._fail("fields.start.format", f"{fmt!r} is not epoch, epoch_ms, iso or strptime")
        unit = fields["usage"].unit
        if unit is not None and unit not in TIME_UNITS and unit != "1":
            self._fail("fields.usage.unit", f"{unit!r} is not s, ms, us, ns or 1")
        kind = self.specs.get("kind")
        if kind is not None:
            names = [kind.value] if kind.value is not None else list((kind.map or {}).values())
            for name in names:
                if name not in KINDS:
                    self._fail("fields.kind", f"{name!r} is not voice, sms, data or event")

    def _spec(self, where: str, key: str, field: Field) -> _Spec:
        if (field.column is None) == (field.value is None):
            self._fail(where, "give exactly one of column and value")
        if (field.pattern is None) != (field.to is None):
            self._fail(where, "pattern and to go together")
        pattern = None
        if field.pattern is not None:
            try:
                pattern = re.compile(field.pattern)
            except re.error as exc:
                self._fail(f"{where}.pattern", f"is not a regular expression ({exc})")
        index = None
        if field.column is not None and self.source.format == "csv" and not self.source.header:
            if not field.column.isdigit():
                self._fail(f"{where}.column", f"{field.column!r} is not a column index from 0")
            index = int(field.column)
        path = tuple(field.column.split(".")) if field.column else ()
        if self.source.format == "json" and field.column is not None and not all(path):
            self._fail(f"{where}.column", f"{field.column!r} is not a key path such as 'a.b'")
        return _Spec(
            key=key,
            column=field.column,
            path=path,
            index=index,
            value=field.value,
            default=field.default,
            pattern=pattern,
            to=field.to or "",
            map=field.map,
        )

    def use_header(self, names: list[str]) -> None:
        """Resolve column names against a header line, or :class:`LineError`."""
        specs = [*self.specs.values(), *([self.answered[0]] if self.answered else [])]
        wanted = {s.column for s in specs if s.column is not None}
        missing = sorted(wanted - set(names))
        if missing:
            msg = f"header has no column {', '.join(map(repr, missing))}; fix the mapping or file"
            raise LineError(VALIDATION_ERROR, msg)
        self.positions = {n: i for i, n in reversed(list(enumerate(names)))}

    def text(self, spec: _Spec, row: Row) -> str:
        """One field's cleaned text from ``row``."""
        value = spec.value if spec.value is not None else self._cell(spec, row)
        if not value and spec.default is not None:
            value = spec.default
        if value is None:
            where = f"key {spec.column!r}" if isinstance(row, dict) else f"column {spec.column}"
            raise LineError(VALIDATION_ERROR, f"field {spec.key}: {where} is missing")
        if spec.pattern is not None and (match := spec.pattern.fullmatch(value)):
            value = match.expand(spec.to)
        if spec.map is not None:
            if value not in spec.map:
                msg = f"field {spec.key}: {value!r} is not in the mapping's map"
                raise LineError(VALIDATION_ERROR, msg)
            value = spec.map[value]
        return value

    def _cell(self, spec: _Spec, row: Row) -> str | None:
        if isinstance(row, list):
            index = spec.index if spec.index is not None else self.positions[cast(str, spec.column)]
            return row[index] if index < len(row) else None
        node: object = row
        for part in spec.path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict | list):
            raise LineError(VALIDATION_ERROR, f"field {spec.key}: {spec.column!r} is not a scalar")
        if isinstance(node, bool):
            return "true" if node else "false"
        return None if node is None else str(node)

    def record(self, row: Row) -> Record | str:
        """One row: a record, or the rule that skips it."""
        if self.answered is not None:
            spec, values = self.answered
            if self.text(spec, row) not in values:
                return UNANSWERED
        kind = self.text(self.specs["kind"], row) if "kind" in self.specs else "voice"
        if kind not in KINDS:
            raise LineError(
                VALIDATION_ERROR, f"field kind: {kind!r} is not voice, sms, data, event"
            )
        out: dict[str, object] = {"tenant": self.tenant}
        for key in TEXT_FIELDS:
            if key in self.specs:
                out[key] = self.text(self.specs[key], row)
        if out.get("category") == "":
            del out["category"]  # the kind's own default (call, sms, data) applies
        out["start"] = read_time(self.text(self.specs["start"], row), self.time_format, self.tz)
        unit = self.unit or _unit_for(kind)
        out["usage"] = read_usage(self.text(self.specs["usage"], row), unit, self.round, kind)
        if "roaming" in self.specs:
            flag = self.text(self.specs["roaming"], row)
            if flag.lower() not in BOOLS:
                raise LineError(VALIDATION_ERROR, f"field roaming: {flag!r} is not true or false")
            out["roaming"] = BOOLS[flag.lower()]
        try:
            return msgspec.convert(out, KINDS[kind])
        except msgspec.ValidationError as exc:
            raise LineError(VALIDATION_ERROR, str(exc)) from exc


def _unit_for(kind: str) -> str:
    return "s" if kind == "voice" else "1"


def read_time(value: str, fmt: str, tz: ZoneInfo) -> datetime:
    """``value`` in ``fmt`` (``epoch``, ``epoch_ms``, ``iso`` or strptime) as UTC."""
    try:
        if fmt in ("epoch", "epoch_ms"):
            micros = Decimal(value) * (10**6 if fmt == "epoch" else 10**3)
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
        parsed = (
            datetime.fromisoformat(value) if fmt == "iso" else datetime.strptime(value, fmt)  # noqa: DTZ007 (naive without %z: zoned below)
        )
    except (ValueError, ArithmeticError) as exc:
        msg = f"field start: {value!r} is not a time in format {fmt!r}"
        raise LineError(VALIDATION_ERROR, msg) from exc
    # A wall time in the repeated DST hour takes its first occurrence (fold=0).
    local = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)
    return local.astimezone(UTC)


def read_usage(value: str, unit: str, rounding: str, kind: str) -> int:
    """``value`` in ``unit`` as whole seconds (a time unit) or as is (``1``)."""
    if unit in TIME_UNITS and kind != "voice":
        msg = f"field usage: unit {unit!r} is a time, but the record is {kind}"
        raise LineError(VALIDATION_ERROR, msg)
    try:
        if unit in TIME_UNITS and GO_DURATION.fullmatch(value):
            parts = GO_PART.findall(value)
            nanos = sum((Decimal(n) * NS_PER[u] for n, u in parts), Decimal(0))
            amount = -nanos if value.startswith("-") else nanos
        else:
            amount = Decimal(value) * TIME_UNITS.get(unit, 1)
    except InvalidOperation as exc:
        msg = f"field usage: {value!r} is not a number or a duration such as 1m10s"
        raise LineError(VALIDATION_ERROR, msg) from exc
    if not amount.is_finite():
        raise LineError(VALIDATION_ERROR, f"field usage: {value!r} is not a number")
    if amount < 0:
        raise LineError(VALIDATION_ERROR, f"field usage: {value!r} is negative")
    whole = amount / 10**9 if unit in TIME_UNITS else amount
    if whole != whole.to_integral_value():
        if rounding == "exact":
            msg = f"field usage: {value!r} is not whole; set fields.usage.round to up or down"
            raise LineError(VALIDATION_ERROR, msg)
        whole = whole.to_integral_value(ROUND_CEILING if rounding == "up" else ROUND_FLOOR)
    return int(whole)


def parse_mapped(path: Path, mapping: Mapping, *, tenant: str) -> Parsed:
    """Mediate one CDR file with ``mapping``; see :func:`parse_mapped_bytes`."""
    return parse_mapped_bytes(read_bytes(path), mapping, name=str(path), tenant=tenant)


def parse_mapped_bytes(data: bytes, mapping: Mapping, *, name: str, tenant: str) -> Parsed:
    """Mediate the bytes of a CDR file; ``name`` is the file in reject sources."""
    plan = _Plan(mapping, name=name, tenant=tenant)
    records: list[Record] = []
    parsed = Parsed(records=records)
    if not data:
        parsed.rejects.append(empty_file_reject(name))
        return parsed
    units = _csv_units(data, plan) if plan.source.format == "csv" else _json_units(data, plan)
    for number, raw, unit in units:
        try:
            if isinstance(unit, LineError):
                raise unit
            outcome = unit if isinstance(unit, str) else plan.record(unit)
        except LineError as error:
            parsed.rejects.append(line_reject(name, number, raw, error))
            continue
        if isinstance(outcome, str):
            parsed.skip(outcome)
        else:
            records.append(outcome)
    return parsed


Unit = tuple[int, bytes, "Row | str | LineError"]


def _csv_units(data: bytes, plan: _Plan) -> Iterator[Unit]:
    """``(line, raw, row or skip rule or error)`` for every line of a CSV file."""
    source = plan.source
    header: LineError | bool = not source.header  # True once columns are known
    for number, raw in split_lines(data):
        if not raw.strip():
            yield number, raw, BLANK
        elif source.comment and raw.startswith(source.comment.encode()):
            yield number, raw, COMMENT
        elif header is False:
            try:
                if not raw.startswith(source.header_prefix.encode()):
                    msg = f"header line does not start with {source.header_prefix!r}"
                    raise LineError(VALIDATION_ERROR, msg)
                plan.use_header(_csv_row(raw.removeprefix(source.header_prefix.encode()), plan))
                header = True
                yield number, raw, HEADER
            except LineError as error:
                header = error
                yield number, raw, error
        elif isinstance(header, LineError):
            yield number, raw, LineError(header.reason, f"no usable header ({header.message})")
        else:
            try:
                yield number, raw, _csv_row(raw, plan)
            except LineError as error:
                yield number, raw, error


def _csv_row(raw: bytes, plan: _Plan) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"is not UTF-8 (byte {exc.start}); re-export the CDRs as UTF-8"
        raise LineError(DECODE_ERROR, msg) from exc
    try:
        return next(csv.reader((text,), delimiter=plan.source.delimiter, strict=True))
    except csv.Error as exc:
        msg = f"is not valid CSV ({exc}; an unterminated quote?)"
        raise LineError(DECODE_ERROR, msg) from exc


def _json_units(data: bytes, plan: _Plan) -> Iterator[Unit]:
    if plan.source.json_layout == "document":
        yield from _json_document(data)
        return
    for number, raw in split_lines(data):
        if not raw.strip():
            yield number, raw, BLANK
        elif plan.source.comment and raw.startswith(plan.source.comment.encode()):
            yield number, raw, COMMENT
        else:
            try:
                yield number, raw, _object(msgspec.json.decode(raw))
            except msgspec.DecodeError as exc:
                yield number, raw, LineError(DECODE_ERROR, f"is not valid JSON ({exc})")
            except LineError as error:
                yield number, raw, error


def _object(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise LineError(VALIDATION_ERROR, f"is a JSON {type(value).__name__}, not an object")
    return cast(dict[str, object], value)


def _json_document(data: bytes) -> Iterator[Unit]:
    """One object, objects back to back, or an array of them; each at its first line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield 1, data, LineError(DECODE_ERROR, f"is not UTF-8 (byte {exc.start})")
        return
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    in_array = text.startswith("[", pos)
    pos = _skip_space(text, pos + 1) if in_array else pos
    while pos < len(text):
        line = text.count("\n", 0, pos) + 1
        if in_array and text[pos] == "]" and _skip_space(text, pos + 1) == len(text):
            return
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            msg = f"is not valid JSON ({exc}); the rest of the document is not read"
            yield line, text[pos:].encode(), LineError(DECODE_ERROR, msg)
            return
        try:
            yield line, text[pos:end].encode(), _object(value)
        except LineError as error:
            yield line, text[pos:end].encode(), error
        pos = _skip_space(text, end)
        if in_array and text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif in_array and not text.startswith("]", pos) and pos < len(text):
            msg = "expected ',' or ']' after an array element; the rest is not read"
            yield text.count("\n", 0, pos) + 1, text[pos:].encode(), LineError(DECODE_ERROR, msg)
            return
    if in_array:
        line = text.count("\n") + 1
        yield line, b"", LineError(DECODE_ERROR, "the JSON array is not closed with ]")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
