"""FreeSWITCH CDRs to :class:`~engine.records.VoiceRecord`.

Two writers are supported:

* ``mod_json_cdr``: one JSON document per call (:func:`parse_json_cdr`). The
  account is the first non-empty of ``accountcode``, ``user_name``, the caller
  profile's ``username``, ``caller_id_number`` (variable, then caller profile)
  and ``sip_from_user``; the destination is ``destination_number`` (variable,
  then caller profile), else ``sip_req_user``; the start is ``answer_epoch``
  (UTC), else ``answer_stamp`` in ``timezone``; usage is ``billsec``; ``cdr_id``
  is ``uuid``. Values are URL-decoded (``encode-values``, on by default).
  A document is one unit: its source is ``file:1``.
* ``mod_cdr_csv`` with the ``example`` template (:func:`parse_cdr_csv`), 15
  columns, no header::

      caller_id_name,caller_id_number,destination_number,context,start_stamp,
      answer_stamp,end_stamp,duration,billsec,hangup_cause,uuid,bleg_uuid,
      accountcode,read_codec,write_codec

  The account is ``accountcode``, else ``caller_id_number``; the start is
  ``answer_stamp`` in ``timezone``.

Legs: FreeSWITCH sets ``bleg_uuid`` on the A (originating) leg, naming the B
leg it bridged to. A CSV line whose ``uuid`` another line of the same file
names as its ``bleg_uuid`` is a B leg and is skipped by rule ``b_leg``, so a
call is billed once, on its A leg. A JSON document whose caller profile has an
``originator`` (only B legs have one) is skipped the same way.

Unanswered calls (``billsec`` 0, or no answer time) are skipped by rule
``unanswered``; blank lines by rule ``blank``. Everything else that cannot be
used is a :class:`~engine.rejects.Reject` at ``file:line``, as in
:mod:`engine.mediation.asterisk`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Final
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import msgspec

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
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR

CSV_COLUMNS: Final = (
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "uuid",
    "bleg_uuid",
    "accountcode",
    "read_codec",
    "write_codec",
)
B_LEG: Final = "b_leg"
UNANSWERED: Final = "unanswered"


# --- mod_cdr_csv -------------------------------------------------------------


def parse_cdr_csv(path: Path, *, tenant: str, timezone: str = "UTC") -> Parsed:
    """Read a ``mod_cdr_csv`` ``example``-template file; see :func:`parse_cdr_csv_bytes`."""
    return parse_cdr_csv_bytes(read_bytes(path), name=str(path), tenant=tenant, timezone=timezone)


def parse_cdr_csv_bytes(data: bytes, *, name: str, tenant: str, timezone: str = "UTC") -> Parsed:
    """Mediate ``mod_cdr_csv`` bytes; ``name`` is the file in reject sources.

    Two passes: the first splits every line and collects the ``bleg_uuid``
    values (from every line with the right column count, even one rejected
    later, so a B leg is never billed because its A leg was malformed).
    """
    tz = zone(timezone)
    parsed = Parsed()
    if not data:
        parsed.rejects.append(empty_file_reject(name))
        return parsed
    rows: list[tuple[int, bytes, dict[str, str] | LineError | None]] = []
    b_legs: set[str] = set()
    for number, raw in split_lines(data):
        if not raw.strip():
            rows.append((number, raw, None))
            continue
        try:
            row = dict(zip(CSV_COLUMNS, csv_fields(raw, len(CSV_COLUMNS)), strict=True))
        except LineError as error:
            rows.append((number, raw, error))
            continue
        if row["bleg_uuid"]:
            b_legs.add(row["bleg_uuid"])
        rows.append((number, raw, row))
    for number, raw, outcome in rows:
        if outcome is None:
            parsed.skip(BLANK)
            continue
        try:
            if isinstance(outcome, LineError):
                raise outcome
            result = _csv_row(outcome, tenant=tenant, tz=tz, b_legs=b_legs)
        except LineError as error:
            parsed.rejects.append(line_reject(name, number, raw, error))
            continue
        if isinstance(result, str):
            parsed.skip(result)
        else:
            parsed.records.append(result)
    return parsed


def _csv_row(
    row: dict[str, str], *, tenant: str, tz: ZoneInfo, b_legs: set[str]
) -> VoiceRecord | str:
    uuid = row["uuid"]
    if not uuid:
        raise LineError(VALIDATION_ERROR, "field uuid: is empty")
    if uuid in b_legs:
        return B_LEG
    duration = seconds(row["duration"], "duration")
    billsec = seconds(row["billsec"], "billsec")
    if billsec == 0:
        return UNANSWERED
    if billsec > duration:
        msg = f"field billsec: {billsec} is more than duration {duration}"
        raise LineError(VALIDATION_ERROR, msg)
    if not row["answer_stamp"]:
        msg = f"field answer_stamp: is empty but billsec is {billsec}"
        raise LineError(VALIDATION_ERROR, msg)
    answer = local_time(row["answer_stamp"], "answer_stamp", tz)
    account = row["accountcode"] or row["caller_id_number"]
    if not account:
        msg = "field account: accountcode and caller_id_number are both empty"
        raise LineError(VALIDATION_ERROR, msg)
    return voice_record(
        cdr_id=uuid,
        tenant=tenant,
        account=account,
        subject=account,
        category="call",
        origin=row["caller_id_number"],
        destination=row["destination_number"],
        start=answer,
        usage=billsec,
    )


# --- mod_json_cdr ------------------------------------------------------------


class _Profile(msgspec.Struct):
    username: str = ""
    caller_id_number: str = ""
    destination_number: str = ""
    # Only a B leg's profile has one; kept raw (empty when absent), never decoded.
    originator: msgspec.Raw = msgspec.Raw()


class _Flow(msgspec.Struct):
    caller_profile: _Profile = msgspec.field(default_factory=_Profile)


class _Document(msgspec.Struct):
    variables: dict[str, str]
    # Newest profile first; older FreeSWITCH writes one object instead of a list.
    callflow: list[_Flow] | _Flow = msgspec.field(default_factory=list)


_JSON_DECODER: Final = msgspec.json.Decoder(_Document)


def parse_json_cdr(path: Path, *, tenant: str, timezone: str = "UTC") -> Parsed:
    """Read one ``mod_json_cdr`` file; see :func:`parse_json_cdr_bytes`."""
    return parse_json_cdr_bytes(read_bytes(path), name=str(path), tenant=tenant, timezone=timezone)


def parse_json_cdr_bytes(data: bytes, *, name: str, tenant: str, timezone: str = "UTC") -> Parsed:
    """Mediate one ``mod_json_cdr`` document: one record, one skip or one reject."""
    tz = zone(timezone)
    parsed = Parsed()
    if not data.strip():
        parsed.rejects.append(empty_file_reject(name))
        return parsed
    try:
        try:
            document = _JSON_DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise LineError(VALIDATION_ERROR, f"is not a mod_json_cdr document: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise LineError(DECODE_ERROR, f"is not JSON: {exc}") from exc
        result = _document(document, tenant=tenant, tz=tz)
    except LineError as error:
        parsed.rejects.append(line_reject(name, 1, data, error))
        return parsed
    if isinstance(result, str):
        parsed.skip(result)
    else:
        parsed.records.append(result)
    return parsed


def _document(document: _Document, *, tenant: str, tz: ZoneInfo) -> VoiceRecord | str:
    variables = {key: unquote(value) for key, value in document.variables.items()}
    flows = document.callflow if isinstance(document.callflow, list) else [document.callflow]
    profile = flows[0].caller_profile if flows else _Profile()
    if len(profile.originator):
        return B_LEG
    uuid = variables.get("uuid", "")
    if not uuid:
        raise LineError(VALIDATION_ERROR, "field variables.uuid: is missing or empty")
    billsec = seconds(variables.get("billsec", "0"), "variables.billsec")
    answer_epoch = seconds(variables.get("answer_epoch", "0"), "variables.answer_epoch")
    answer_stamp = variables.get("answer_stamp", "")
    if billsec == 0 or (answer_epoch == 0 and not answer_stamp):
        return UNANSWERED
    if answer_epoch:
        start = datetime.fromtimestamp(answer_epoch, UTC)
    else:
        start = local_time(answer_stamp, "variables.answer_stamp", tz)
    caller = variables.get("caller_id_number") or unquote(profile.caller_id_number)
    account = _first(
        variables.get("accountcode"),
        variables.get("user_name"),
        unquote(profile.username),
        caller,
        variables.get("sip_from_user"),
    )
    if not account:
        msg = "field account: no accountcode, user_name, username or caller_id_number"
        raise LineError(VALIDATION_ERROR, msg)
    destination = _first(
        variables.get("destination_number"),
        unquote(profile.destination_number),
        variables.get("sip_req_user"),
    )
    return voice_record(
        cdr_id=uuid,
        tenant=tenant,
        account=account,
        subject=account,
        category="call",
        origin=caller,
        destination=destination,
        start=start,
        usage=billsec,
    )


def _first(*values: str | None) -> str:
    return next((value for value in values if value), "")
