"""Kamailio / OpenSIPS accounting files turned into :class:`VoiceRecord` values.

Two inputs:

* ``acc`` transaction records, as ``db_flatstore`` writes them
  (``method|from_tag|to_tag|callid|sip_code|sip_reason|time|extras...``) or as an
  exported ``acc`` table (comma separated, quoted, a leading row id): see
  :data:`FLATSTORE` and :data:`DB_EXPORT`. A call is two lines, the INVITE answered
  with 2xx and the BYE, paired on the call-id and the two dialog tags (in either
  order: the tags are swapped when the callee hangs up). ``start`` is the INVITE's
  time (the ACK's when the INVITE carries none, as some set-ups log it) and
  ``usage`` is ``BYE time - start`` rounded **up** to whole seconds.
* ``dialog`` CDRs (acc ``cdr_enable``): one ``key=value;...`` line per call with
  ``start_time``, ``end_time`` and ``duration`` (seconds, microsecond precision);
  ``usage`` is the duration rounded **up** to whole seconds.

Every line read is accounted for in :class:`Parsed`: it is part of a record,
skipped by a named rule (counted in ``skipped``), rejected with its ``file:line``
(``rejects``), or, for ``acc``, an unpaired half of a call (``unpaired``) that a
caller may pass as ``carry`` to the next file. :meth:`Parsed.unaccounted` is 0.

Skip rules: ``blank``, ``ack``, ``cancel``, ``missed`` (INVITE with a non-2xx
final reply: not charged), ``reinvite`` (a second INVITE of a dialog already
open), ``duplicate_bye``, ``other_method`` (REGISTER, MESSAGE, ...).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Final

import msgspec

from engine.mediation.common import LineError
from engine.records import Record, VoiceRecord
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR, Reject

_EPOCH: Final = re.compile(r"\d+(\.\d+)?")
_SIP_CODE: Final = re.compile(r"[1-6]\d\d")
_MICROS: Final = timedelta(microseconds=1)
_FIXED_FIELDS: Final = 7  # method, from_tag, to_tag, callid, sip_code, sip_reason, time


@dataclass(frozen=True, slots=True)
class AccLayout:
    """Where the fields of an ``acc`` line are.

    ``leading`` columns precede ``method`` (an exported table's row id). The
    others index the *extras*, the columns after ``time``; ``None`` leaves the
    record field empty (an empty ``subject`` rates as the account).
    """

    delimiter: str = "|"
    quoted: bool = False  # db_flatstore writes values raw, an SQL export quotes them
    leading: int = 0
    account: int = 1
    subject: int | None = None
    origin: int | None = None
    destination: int | None = 2


FLATSTORE: Final = AccLayout()
"""db_flatstore with ``extra`` = request type, caller, callee (CGRateS' sample set-up)."""

DB_EXPORT: Final = AccLayout(delimiter=",", quoted=True, leading=1, account=0, destination=5)
"""An ``acc`` table exported as CSV: id, the seven fixed columns, then src_user,
from URI, source IP, destination IP, contact, dst_user, ..."""


@dataclass(frozen=True, slots=True)
class DialogKeys:
    """Which ``key=value`` of a dialog CDR line fills which record field."""

    cdr_id: str = "callid"
    account: str = "src_user"
    subject: str | None = None
    origin: str | None = None
    destination: str | None = "dst_user"


class AccEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One INVITE or BYE line of an ``acc`` file, kept until its other half is read."""

    source: str  # file:line
    method: str
    from_tag: str
    to_tag: str
    callid: str
    code: int  # the SIP final reply
    time: datetime | None
    account: str = ""
    subject: str = ""
    origin: str = ""
    destination: str = ""
    raw: bytes = b""

    @property
    def key(self) -> tuple[str, str, str]:
        """The dialog: call-id and the two tags in a fixed order (BYE may swap them)."""
        low, high = sorted((self.from_tag, self.to_tag))
        return self.callid, low, high


@dataclass(frozen=True, slots=True)
class AccParsed:
    """What a file gave: records, and where every other line went."""

    records: list[Record]
    skipped: dict[str, int]  # rule -> lines
    rejects: list[Reject]
    unpaired: list[AccEvent] = field(default_factory=list)  # carry these to the next file
    lines: int = 0  # lines read from the file
    carried_in: int = 0  # unpaired events given as ``carry``
    consumed: int = 0  # lines and carried events that went into records

    def unaccounted(self) -> int:
        """Lines (and carried events) not in a record, a skip, a reject or unpaired: 0."""
        placed = self.consumed + sum(self.skipped.values()) + len(self.rejects)
        return self.lines + self.carried_in - placed - len(self.unpaired)


def parse_time(text: str, timezone: tzinfo) -> datetime:
    """Epoch seconds (``1436454408``, ``1436454408.25``) or an ISO date-time;
    a date-time without an offset is read in ``timezone``."""
    if _EPOCH.fullmatch(text):
        seconds, _, fraction = text.partition(".")
        micros = int((fraction + "000000")[:6])  # sub-microsecond digits are dropped
        return datetime.fromtimestamp(int(seconds), UTC) + timedelta(microseconds=micros)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"{text!r} is neither epoch seconds nor a date-time"
        raise ValueError(msg) from exc
    # a wall time repeated when clocks go back is read as the first one (fold=0)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)


def elapsed(start: datetime, end: datetime) -> timedelta:
    """Real time from ``start`` to ``end``.

    Both are taken to UTC first: Python subtracts two datetimes that share a
    ``tzinfo`` by wall clock, which is an hour off across a DST change.
    """
    return end.astimezone(UTC) - start.astimezone(UTC)


def ceil_seconds(delta: timedelta) -> int:
    """Whole seconds, rounded up: a call of 10.000001 s bills 11 s."""
    micros = delta // _MICROS
    return -(-micros // 1_000_000)


def _split(line: str, layout: AccLayout) -> list[str]:
    if not layout.quoted:
        return line.split(layout.delimiter)
    try:
        return next(csv.reader([line], delimiter=layout.delimiter, strict=True))
    except csv.Error as exc:
        msg = f"cannot split the line: {exc}"
        raise LineError(DECODE_ERROR, msg) from exc


def _extra(extras: Sequence[str], index: int | None) -> str:
    return extras[index] if index is not None and index < len(extras) else ""


def _acc_event(line: str, source: str, layout: AccLayout, timezone: tzinfo) -> AccEvent:
    cols = _split(line, layout)
    if len(cols) < layout.leading + _FIXED_FIELDS:
        msg = (
            f"acc line has {len(cols)} fields, needs at least {layout.leading + _FIXED_FIELDS} "
            "(method|from_tag|to_tag|callid|sip_code|sip_reason|time)"
        )
        raise LineError(DECODE_ERROR, msg)
    method, from_tag, to_tag, callid, code, _reason, stamp = cols[layout.leading :][:7]
    extras = cols[layout.leading + _FIXED_FIELDS :]
    if not method.strip() or not callid.strip():
        msg = "field method or callid: is empty"
        raise LineError(VALIDATION_ERROR, msg)
    if not _SIP_CODE.fullmatch(code):
        msg = f"field sip_code: {code!r} is not a SIP status code"
        raise LineError(VALIDATION_ERROR, msg)
    try:
        time = parse_time(stamp, timezone) if stamp else None
    except ValueError as exc:
        msg = f"field time: {exc}"
        raise LineError(VALIDATION_ERROR, msg) from exc
    return AccEvent(
        source=source,
        method=method.strip().upper(),
        from_tag=from_tag,
        to_tag=to_tag,
        callid=callid,
        code=int(code),
        time=time,
        account=_extra(extras, layout.account),
        subject=_extra(extras, layout.subject),
        origin=_extra(extras, layout.origin),
        destination=_extra(extras, layout.destination),
        raw=line.encode(),
    )


def _rule(event: AccEvent) -> str | None:
    """The skip rule for an event that is not half of a call, or None."""
    if event.method == "INVITE":
        return None if 200 <= event.code < 300 else "missed"  # only an answered INVITE is a call
    if event.method == "BYE":
        return None  # a BYE ends the dialog whatever its reply
    return {"ACK": "ack", "CANCEL": "cancel"}.get(event.method, "other_method")


class _Pairing:
    """The open halves of calls, by dialog, in the order they were read."""

    def __init__(self) -> None:
        self.invites: dict[tuple[str, str, str], AccEvent] = {}
        self.byes: dict[tuple[str, str, str], AccEvent] = {}
        self.ack_times: dict[tuple[str, str, str], datetime] = {}
        self.skipped: dict[str, int] = {}

    def skip(self, rule: str) -> None:
        self.skipped[rule] = self.skipped.get(rule, 0) + 1

    def add(self, event: AccEvent) -> None:
        rule = _rule(event)
        if rule == "ack" and event.time is not None:
            self.ack_times.setdefault(event.key, event.time)
        if rule is not None:
            self.skip(rule)
            return
        halves = self.invites if event.method == "INVITE" else self.byes
        if event.key in halves:
            self.skip("reinvite" if event.method == "INVITE" else "duplicate_bye")
            return
        halves[event.key] = event


def _reject(event: AccEvent, reason: str, message: str) -> Reject:
    return Reject(source=event.source, reason=reason, message=message, raw=event.raw)


def _pair(invite: AccEvent, bye: AccEvent, start: datetime, tenant: str) -> VoiceRecord:
    if bye.time is None:
        msg = f"field time: the BYE at {bye.source} has none"
        raise ValueError(msg)
    usage = ceil_seconds(elapsed(start, bye.time))
    if usage < 0:
        msg = f"field usage: the BYE at {bye.source} is {-usage} s before the call started"
        raise ValueError(msg)
    return VoiceRecord(
        cdr_id=invite.callid,
        tenant=tenant,
        account=invite.account,
        subject=invite.subject,
        origin=invite.origin,
        destination=invite.destination,
        start=start,
        usage=usage,
    )


def parse_acc(
    path: Path,
    *,
    tenant: str,
    layout: AccLayout = FLATSTORE,
    timezone: tzinfo = UTC,
    carry: Iterable[AccEvent] = (),
) -> AccParsed:
    """Pair the INVITEs and BYEs of an ``acc`` file into voice records.

    ``carry`` is the ``unpaired`` of earlier files: a BYE read here completes a
    carried INVITE and the other way round. ``timezone`` applies to times
    without an offset; epoch times are UTC.
    """
    carried = list(carry)
    pairing = _Pairing()
    rejects: list[Reject] = []
    for event in carried:
        pairing.add(event)
    lines = 0
    with path.open(encoding="utf-8", newline="") as file:
        for number, text in enumerate(file, start=1):
            lines += 1
            line = text.rstrip("\r\n")
            if not line.strip():
                pairing.skip("blank")
                continue
            source = f"{path}:{number}"
            try:
                pairing.add(_acc_event(line, source, layout, timezone))
            except LineError as exc:
                rejects.append(
                    Reject(source=source, reason=exc.reason, message=str(exc), raw=line.encode())
                )
    records: list[Record] = []
    unpaired: list[AccEvent] = []
    for key, invite in pairing.invites.items():
        start = invite.time or pairing.ack_times.get(key)
        bye = pairing.byes.pop(key, None)
        if start is None:
            msg = "field time: the INVITE has none and no ACK of its dialog carries one"
            rejects.extend(_reject(e, VALIDATION_ERROR, msg) for e in (invite, bye) if e)
        elif bye is None:
            unpaired.append(msgspec.structs.replace(invite, time=start))
        else:
            try:
                records.append(_pair(invite, bye, start, tenant))
            except ValueError as exc:
                msg = f"call {invite.callid!r}: {exc}"
                rejects.extend(_reject(e, VALIDATION_ERROR, msg) for e in (invite, bye))
    unpaired.extend(pairing.byes.values())
    return AccParsed(
        records=records,
        skipped=pairing.skipped,
        rejects=rejects,
        unpaired=unpaired,
        lines=lines,
        carried_in=len(carried),
        consumed=2 * len(records),
    )


def _pairs(line: str) -> dict[str, str]:
    """``key=value;key=value``; a syslog prefix before the first key is dropped."""
    values: dict[str, str] = {}
    for part in line.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            values[key.split()[-1] if key.split() else ""] = value.strip()
    return values


def _dialog_record(line: str, keys: DialogKeys, tenant: str, timezone: tzinfo) -> VoiceRecord:
    values = _pairs(line)
    for required in ("start_time", "end_time", "duration", keys.cdr_id):
        if not values.get(required):
            msg = f"field {required}: is missing or empty"
            raise ValueError(msg)
    try:
        duration = Decimal(values["duration"])
    except InvalidOperation as exc:
        msg = f"field duration: {values['duration']!r} is not a number of seconds"
        raise ValueError(msg) from exc
    if not duration.is_finite() or duration < 0:
        msg = f"field duration: {values['duration']!r} is not a non-negative number of seconds"
        raise ValueError(msg)
    start = parse_time(values["start_time"], timezone)
    end = parse_time(values["end_time"], timezone)
    if elapsed(start, end) < timedelta(0):
        msg = f"field end_time: {values['end_time']!r} is before start_time"
        raise ValueError(msg)

    def pick(key: str | None) -> str:
        return values.get(key, "") if key else ""

    return VoiceRecord(
        cdr_id=values[keys.cdr_id],
        tenant=tenant,
        account=pick(keys.account),
        subject=pick(keys.subject),
        origin=pick(keys.origin),
        destination=pick(keys.destination),
        start=start,
        usage=int(duration.to_integral_value(rounding=ROUND_CEILING)),
    )


def parse_dialog_cdrs(
    path: Path,
    *,
    tenant: str,
    keys: DialogKeys = DialogKeys(),
    timezone: tzinfo = UTC,
) -> AccParsed:
    """One voice record per dialog CDR line; ``usage`` is ``duration`` rounded up."""
    records: list[Record] = []
    rejects: list[Reject] = []
    skipped: dict[str, int] = {}
    lines = 0
    with path.open(encoding="utf-8", newline="") as file:
        for number, text in enumerate(file, start=1):
            lines += 1
            line = text.rstrip("\r\n")
            if not line.strip():
                skipped["blank"] = skipped.get("blank", 0) + 1
                continue
            try:
                records.append(_dialog_record(line, keys, tenant, timezone))
            except ValueError as exc:
                rejects.append(
                    Reject(
                        source=f"{path}:{number}",
                        reason=VALIDATION_ERROR,
                        message=f"dialog CDR {exc}",
                        raw=line.encode(),
                    )
                )
    return AccParsed(
        records=records, skipped=skipped, rejects=rejects, lines=lines, consumed=len(records)
    )
