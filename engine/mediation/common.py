"""What every CDR parser shares: the result type, line errors and small field readers.

A parser accounts for every line: a record, a skip by rule, or a reject with
``file:line``, its reason and raw bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from engine.exceptions import UsageInputError
from engine.records import Record, VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR, Reject

BLANK: Final = "blank"


class Parsed(msgspec.Struct, kw_only=True):
    """What one CDR file gave: records, skipped lines per rule, rejects.

    ``len(records) + sum(skipped.values()) + len(rejects)`` equals the number of
    lines read (one more reject, at ``file:0``, when the file is empty).
    """

    records: list[Record] = msgspec.field(default_factory=list)
    skipped: dict[str, int] = msgspec.field(default_factory=dict)
    rejects: list[Reject] = msgspec.field(default_factory=list)

    @property
    def total(self) -> int:
        """How many input units (lines, documents) this result accounts for."""
        return len(self.records) + sum(self.skipped.values()) + len(self.rejects)

    def skip(self, rule: str) -> None:
        self.skipped[rule] = self.skipped.get(rule, 0) + 1


class LineError(Exception):
    """One line cannot be used; carries the reject reason. Never leaves this package."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; an unknown name is the caller's error, not a reject."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        msg = f"mediation: timezone {name!r} is not an IANA zone name (e.g. 'Europe/Paris')"
        raise UsageInputError(msg) from exc


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"mediation: cannot read CDR file {str(path)!r}: {exc.strerror}"
        raise UsageInputError(msg) from exc


def split_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(line number from 1, line without its end)`` for every physical line."""
    return enumerate(data.splitlines(), start=1)


def empty_file_reject(name: str) -> Reject:
    msg = f"{name}: the file is empty; nothing to mediate (check the switch's CDR writer)"
    return Reject(source=f"{name}:0", reason=DECODE_ERROR, message=msg, raw=b"")


def csv_fields(raw: bytes, expected: int) -> list[str]:
    """The CSV fields of one line, exactly ``expected`` of them, or :class:`LineError`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"is not UTF-8 (byte {exc.start}); re-export the CDRs as UTF-8"
        raise LineError(DECODE_ERROR, msg) from exc
    try:
        fields = next(csv.reader((text,), strict=True))
    except csv.Error as exc:
        msg = f"is not valid CSV ({exc}; an unterminated quote?)"
        raise LineError(DECODE_ERROR, msg) from exc
    if len(fields) != expected:
        msg = f"has {len(fields)} columns, expected {expected}"
        raise LineError(VALIDATION_ERROR, msg)
    return fields


def local_time(value: str, field: str, tz: ZoneInfo) -> datetime:
    """``YYYY-MM-DD HH:MM:SS`` read as wall-clock time in ``tz``."""
    if len(value) != 19 or value[10] != " ":
        msg = f"field {field}: {value!r} is not 'YYYY-MM-DD HH:MM:SS'"
        raise LineError(VALIDATION_ERROR, msg)
    try:
        naive = datetime.fromisoformat(value)
    except ValueError as exc:
        msg = f"field {field}: {value!r} is not a valid time ({exc})"
        raise LineError(VALIDATION_ERROR, msg) from exc
    # An ambiguous wall time (the repeated DST hour) takes its first occurrence
    # (fold=0); records carry UTC so equal instants encode equally downstream.
    return naive.replace(tzinfo=tz).astimezone(UTC)


def seconds(value: str, field: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        msg = f"field {field}: {value!r} is not a whole number of seconds"
        raise LineError(VALIDATION_ERROR, msg) from exc
    if number < 0:
        msg = f"field {field}: {number} is negative"
        raise LineError(VALIDATION_ERROR, msg)
    return number


def voice_record(**fields: object) -> VoiceRecord:
    """Build a record, turning the record's own checks into :class:`LineError`."""
    try:
        return msgspec.convert(fields, VoiceRecord)
    except msgspec.ValidationError as exc:
        raise LineError(VALIDATION_ERROR, str(exc)) from exc


def line_reject(name: str, number: int, raw: bytes, error: LineError) -> Reject:
    return Reject(
        source=f"{name}:{number}",
        reason=error.reason,
        message=f"{name}:{number}: {error.message}",
        raw=raw,
    )
