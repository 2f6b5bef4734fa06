"""Asterisk ``cdr_csv`` (``Master.csv``) to :class:`~engine.records.VoiceRecord`.

``cdr_csv`` writes one line per CDR, 18 columns, no header::

    accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,
    start,answer,end,duration,billsec,disposition,amaflags,uniqueid,userfield

Every physical line is accounted for in the :class:`Parsed` result:

* ``ANSWERED`` gives one record: account ``accountcode`` (or ``src``), subject
  the account, origin ``src``, destination ``dst``, start the ``answer`` time in
  the caller's ``timezone`` (converted to UTC), usage ``billsec``, ``cdr_id`` the ``uniqueid``
  (its n-th repeat in the same file gets ``#n``, so ids stay unique and stable);
* ``NO ANSWER``, ``BUSY``, ``FAILED``, ``CONGESTION`` and blank lines are
  skipped, counted per rule (``no_answer``, ``busy``, ``failed``,
  ``congestion``, ``blank``);
* anything else is a :class:`~engine.rejects.Reject` at ``file:line``:
  ``DECODE_ERROR`` for bytes that are not UTF-8 or CSV that does not parse
  (unterminated quote), ``VALIDATION_ERROR`` for a wrong column count, a bad
  time, a negative or inconsistent ``billsec``, an unknown disposition or no
  account. An empty file gives one ``DECODE_ERROR`` reject at ``file:0``.

Each line is parsed on its own (``csv`` with ``strict=True``), so an
unterminated quote costs that line only and never swallows the rest of the file.

The shared pieces (:class:`Parsed`, line splitting, local times) live in
:mod:`engine.mediation.common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from engine.mediation.common import (
    BLANK,
    LineError,
    Parsed,
    csv_fields,
    empty_file_reject,
    line_reject,
    local_time,
    read_bytes,
    seconds,
    split_lines,
    voice_record,
    zone,
)
from engine.records import VoiceRecord
from engine.rejects import VALIDATION_ERROR

COLUMNS: Final = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
)
SKIPPED_DISPOSITIONS: Final = {
    "NO ANSWER": "no_answer",
    "BUSY": "busy",
    "FAILED": "failed",
    "CONGESTION": "congestion",
}


def parse_master_csv(path: Path, *, tenant: str, timezone: str = "UTC") -> Parsed:
    """Read an Asterisk ``Master.csv``; see :func:`parse_master_csv_bytes`."""
    return parse_master_csv_bytes(
        read_bytes(path), name=str(path), tenant=tenant, timezone=timezone
    )


def parse_master_csv_bytes(data: bytes, *, name: str, tenant: str, timezone: str = "UTC") -> Parsed:
    """Mediate the bytes of a ``Master.csv``; ``name`` is the file in reject sources."""
    tz = zone(timezone)
    parsed = Parsed()
    if not data:
        parsed.rejects.append(empty_file_reject(name))
        return parsed
    seen: dict[str, int] = {}
    for number, raw in split_lines(data):
        if not raw.strip():
            parsed.skip(BLANK)
            continue
        try:
            outcome = line_outcome(raw, tenant=tenant, tz=tz, seen=seen)
        except LineError as error:
            parsed.rejects.append(line_reject(name, number, raw, error))
            continue
        if isinstance(outcome, str):
            parsed.skip(outcome)
        else:
            parsed.records.append(outcome)
    return parsed


def line_outcome(
    raw: bytes, *, tenant: str, tz: ZoneInfo, seen: dict[str, int]
) -> VoiceRecord | str:
    """One line: a record, or the rule that skips it."""
    f = dict(zip(COLUMNS, csv_fields(raw, len(COLUMNS)), strict=True))
    uniqueid = f["uniqueid"]
    # Count the repeat before anything can fail, so ids do not depend on other rejects.
    repeat = seen.get(uniqueid, 0) + 1
    seen[uniqueid] = repeat
    disposition = f["disposition"]
    if disposition in SKIPPED_DISPOSITIONS:
        return SKIPPED_DISPOSITIONS[disposition]
    if disposition != "ANSWERED":
        msg = f"field disposition: {disposition!r} is not ANSWERED, NO ANSWER, BUSY, FAILED"
        raise LineError(VALIDATION_ERROR, msg)
    if not uniqueid:
        raise LineError(VALIDATION_ERROR, "field uniqueid: is empty")
    duration = seconds(f["duration"], "duration")
    billsec = seconds(f["billsec"], "billsec")
    if billsec > duration:
        msg = f"field billsec: {billsec} is more than duration {duration}"
        raise LineError(VALIDATION_ERROR, msg)
    local_time(f["start"], "start", tz)
    answer = local_time(f["answer"], "answer", tz)
    account = f["accountcode"] or f["src"]
    if not account:
        raise LineError(VALIDATION_ERROR, "field account: accountcode and src are both empty")
    return voice_record(
        cdr_id=uniqueid if repeat == 1 else f"{uniqueid}#{repeat}",
        tenant=tenant,
        account=account,
        subject=account,
        category="call",
        origin=f["src"],
        destination=f["dst"],
        start=answer,
        usage=billsec,
    )
