"""Usage record models: defaults, checks, tags and subscriber resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE
from engine.records import (
    RECORD_TYPES,
    DataRecord,
    EventRecord,
    Record,
    SmsRecord,
    VoiceRecord,
    resolve_accounts,
)
from engine.rejects import UNKNOWN_SUBSCRIBER, Reject

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DECODER = msgspec.json.Decoder(Record)


def decode(text: str) -> Record:
    record: Record = DECODER.decode(text.encode())
    return record


def error_of(text: str) -> str:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(text)
    return str(info.value)


BASE = '"cdr_id":"c1","tenant":"acme","account":"A1","start":"2025-03-01T12:00:00Z","usage":60'


@pytest.mark.parametrize(
    ("kind", "cls", "category", "code"),
    [
        ("voice", VoiceRecord, "call", KIND_VOICE),
        ("sms", SmsRecord, "sms", KIND_SMS),
        ("data", DataRecord, "data", KIND_DATA),
    ],
)
def test_category_defaults_per_kind(kind: str, cls: type, category: str, code: int) -> None:
    record = decode(f'{{"type":"{kind}",{BASE}}}')
    assert type(record) is cls
    assert record.category == category
    assert record.kind == code
    assert (record.subject, record.origin, record.destination) == ("", "", "")
    assert (record.cell, record.roaming, record.apn, record.reseller) == ("", False, "", "")


def test_event_names_its_category() -> None:
    record = decode(f'{{"type":"event","category":"vod",{BASE}}}')
    assert record == EventRecord(
        cdr_id="c1", tenant="acme", account="A1", category="vod", start=START, usage=60
    )
    assert record.kind == KIND_EVENT
    assert error_of(f'{{"type":"event",{BASE}}}') == "Object missing required field `category`"


def test_a_given_category_overrides_the_default() -> None:
    assert decode(f'{{"type":"voice","category":"conference",{BASE}}}').category == "conference"
    assert error_of(f'{{"type":"voice","category":"",{BASE}}}') == (
        "Expected `str` of length >= 1 - at `$.category`"
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ('"cdr_id":""', "Expected `str` of length >= 1 - at `$.cdr_id`"),
        ('"usage":-1', "Expected `int` >= 0 - at `$.usage`"),
        ('"usage":9223372036854775808', "Expected `int` <= 9223372036854775807 - at `$.usage`"),
        ('"usage":1.5', "Expected `int`, got `float` - at `$.usage`"),
        (
            '"start":"2025-03-01T12:00:00"',
            "Expected `datetime` with a timezone component - at `$.start`",
        ),
        (
            '"account":""',
            "field account: is empty and no subscriber is given to resolve it from",
        ),
    ],
)
def test_field_checks(fields: str, error: str) -> None:
    # Later keys win in msgspec, so appending overrides the valid base value.
    assert error_of(f'{{"type":"voice",{BASE},{fields}}}') == error


def test_subscriber_alone_is_enough() -> None:
    record = decode(f'{{"type":"sms",{BASE},"account":"","subscriber":"447700900123"}}')
    assert (record.account, record.subscriber) == ("", "447700900123")


def test_start_keeps_its_offset_and_is_the_same_instant() -> None:
    record = decode(f'{{"type":"voice",{BASE},"start":"2025-03-01T13:00:00+01:00"}}')
    assert record.start == START
    assert record.start.utcoffset() == timedelta(hours=1)


def test_unknown_fields_are_ignored() -> None:
    record = decode(f'{{"type":"data",{BASE},"qos_class":9}}')
    assert record == DataRecord(cdr_id="c1", tenant="acme", account="A1", start=START, usage=60)


def test_records_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        VoiceRecord("call", cdr_id="c1", tenant="t", account="A", start=START, usage=1)  # type: ignore[misc]
    record = VoiceRecord(cdr_id="c1", tenant="t", account="A", start=START, usage=1)
    with pytest.raises(AttributeError):
        record.usage = 2  # type: ignore[misc]


def test_constructing_without_account_or_subscriber_fails() -> None:
    with pytest.raises(ValueError, match="field account: is empty"):
        VoiceRecord(cdr_id="c1", tenant="t", start=START, usage=1)


def test_encoding_omits_defaults_and_carries_the_tag() -> None:
    record = DataRecord(
        cdr_id="d1", tenant="acme", account="A1", start=START, usage=1500, apn="internet"
    )
    assert msgspec.json.encode(record) == (
        b'{"type":"data","cdr_id":"d1","tenant":"acme","account":"A1",'
        b'"start":"2025-03-01T12:00:00Z","usage":1500,"apn":"internet"}'
    )


def test_tags_and_kinds_line_up() -> None:
    tags = [cls.__struct_config__.tag for cls in RECORD_TYPES]
    assert tags == ["voice", "sms", "data", "event"]
    assert [cls.kind for cls in RECORD_TYPES] == [KIND_VOICE, KIND_SMS, KIND_DATA, KIND_EVENT]


def make(cdr_id: str, account: str = "", subscriber: str = "") -> Record:
    return VoiceRecord(
        cdr_id=cdr_id, tenant="t", account=account, subscriber=subscriber, start=START, usage=1
    )


def test_resolve_accounts_fills_from_the_directory() -> None:
    records = [make("a", account="A1"), make("b", subscriber="4470"), make("c", subscriber="4471")]
    resolved, rejects = resolve_accounts(records, {"4470": "A2"}, source="cdrs[2]@17")
    assert [(r.cdr_id, r.account) for r in resolved] == [("a", "A1"), ("b", "A2")]
    assert resolved[1].subscriber == "4470"
    assert rejects == [
        Reject(
            source="cdrs[2]@17",
            reason=UNKNOWN_SUBSCRIBER,
            message=(
                "record 'c' field subscriber: '4471' maps to no account; add it to the "
                "subscriber directory and replay the reject"
            ),
            raw=msgspec.json.encode(records[2]),
        )
    ]


def test_resolve_accounts_keeps_records_that_name_their_account() -> None:
    records = [make("a", account="A1", subscriber="4470"), make("b", account="A2")]
    resolved, rejects = resolve_accounts(records, {"4470": "OTHER"}, source="f.jsonl:1")
    assert resolved == records
    assert rejects == []


def test_offsets_other_than_utc_compare_as_instants() -> None:
    later = VoiceRecord(
        cdr_id="x",
        tenant="t",
        account="A",
        start=datetime(2025, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5))),
        usage=1,
    )
    assert later.start == START
