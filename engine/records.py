"""Usage records as they arrive from mediation: one ``msgspec.Struct`` per kind.

A record is a tagged union on the field ``type`` (``"voice"``, ``"sms"``,
``"data"``, ``"event"``). Field checks that msgspec can do in C are declared
with ``Meta`` (``usage >= 0``, a time-zone-aware ``start``, a non-empty
``cdr_id``); checks that span fields live in ``__post_init__`` and raise
``ValueError`` whose text starts with ``field <name>:`` so the decoder can name
the field (see :mod:`engine.wire`).

Defaults the columns need but the wire may omit:

* ``category`` defaults per kind (``call``, ``sms``, ``data``); an event must
  name its own.
* ``subject`` empty means "rate as the account"; the default is applied where
  columns are built (:func:`engine.wire.records_to_columns`), not here, so
  encoding a decoded record gives back what the producer sent.
* ``account`` may be empty when mediation only knows the ``subscriber``
  (IMSI/MSISDN); :func:`resolve_accounts` fills it from a caller-given map.

Records are frozen and built with ``gc=False``: they hold only strings,
integers, booleans and datetimes, so they can never be part of a reference
cycle, and a batch of a million of them costs the garbage collector nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, ClassVar, Final

import msgspec
from msgspec import Meta

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE
from engine.rejects import UNKNOWN_SUBSCRIBER, Reject

MAX_USAGE: Final = 2**63 - 1
"""The largest usage an ``int64`` column can hold."""

NonEmptyStr = Annotated[str, Meta(min_length=1)]
AwareDatetime = Annotated[datetime, Meta(tz=True)]
Usage = Annotated[int, Meta(ge=0, le=MAX_USAGE)]


class UsageRecord(
    msgspec.Struct,
    kw_only=True,
    frozen=True,
    gc=False,
    omit_defaults=True,
    repr_omit_defaults=True,
    tag_field="type",
):
    """Fields every usage record shares; decode one of the subclasses, never this."""

    kind: ClassVar[int]

    cdr_id: NonEmptyStr
    tenant: str
    account: str = ""  # empty: resolve from ``subscriber`` (see resolve_accounts)
    subject: str = ""  # empty: same as account
    category: NonEmptyStr
    origin: str = ""
    destination: str = ""
    start: AwareDatetime
    usage: Usage  # seconds (voice), bytes (data), count (sms, event)
    cell: str = ""
    roaming: bool = False
    apn: str = ""
    reseller: str = ""
    subscriber: str = ""  # IMSI or MSISDN, as mediation knows it

    def __post_init__(self) -> None:
        if not self.account and not self.subscriber:
            msg = "field account: is empty and no subscriber is given to resolve it from"
            raise ValueError(msg)


class VoiceRecord(UsageRecord, tag="voice", frozen=True, kw_only=True):
    """A call; ``usage`` is its duration in seconds."""

    kind: ClassVar[int] = KIND_VOICE
    category: NonEmptyStr = "call"


class SmsRecord(UsageRecord, tag="sms", frozen=True, kw_only=True):
    """Short messages; ``usage`` is how many."""

    kind: ClassVar[int] = KIND_SMS
    category: NonEmptyStr = "sms"


class DataRecord(UsageRecord, tag="data", frozen=True, kw_only=True):
    """A data session (or an interim part of one); ``usage`` is in bytes."""

    kind: ClassVar[int] = KIND_DATA
    category: NonEmptyStr = "data"


class EventRecord(UsageRecord, tag="event", frozen=True, kw_only=True):
    """Any other countable event (a download, an API call); it names its category."""

    kind: ClassVar[int] = KIND_EVENT
    category: NonEmptyStr


Record = VoiceRecord | SmsRecord | DataRecord | EventRecord
RECORD_TYPES: Final = (VoiceRecord, SmsRecord, DataRecord, EventRecord)
"""The record classes in KIND_* order: ``RECORD_TYPES[kind]`` is the class of a kind."""


def resolve_accounts(
    records: Sequence[Record],
    accounts_by_subscriber: Mapping[str, str],
    *,
    source: str,
) -> tuple[list[Record], list[Reject]]:
    """Fill an empty ``account`` from the record's ``subscriber``.

    Records that already name an account pass through unchanged (the common
    case costs one scan). A record whose subscriber maps to no account is
    rejected with reason ``UNKNOWN_SUBSCRIBER``; ``source`` is where the batch
    came from (``topic[partition]@offset`` or ``file:line``) and the reject's
    ``raw`` is the record re-encoded as JSON.
    """
    if all(r.account for r in records):
        return list(records), []
    resolved: list[Record] = []
    rejects: list[Reject] = []
    for record in records:
        if record.account:
            resolved.append(record)
            continue
        account = accounts_by_subscriber.get(record.subscriber)
        if account:
            resolved.append(msgspec.structs.replace(record, account=account))
            continue
        msg = (
            f"record {record.cdr_id!r} field subscriber: {record.subscriber!r} maps to no "
            "account; add it to the subscriber directory and replay the reject"
        )
        rejects.append(
            Reject(
                source=source,
                reason=UNKNOWN_SUBSCRIBER,
                message=msg,
                raw=msgspec.json.encode(record),
            )
        )
    return resolved, rejects
