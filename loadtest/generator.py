"""Seeded sample traffic for the bundled mobile plan: a day of calls, SMS, data, video.

The same seed gives the same records. Columns are drawn with numpy in one go
(account activity is Zipf-skewed, call durations log-normal with a long tail,
a daily curve with a busy hour), then turned into
:class:`~engine.records.UsageRecord` values or a columnar batch. A share of
records goes to numbers no plan prices, so a run shows rejects too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE, Columns, StrColumn
from engine.records import DataRecord, EventRecord, Record, SmsRecord, VoiceRecord

TENANT = "ratewire.demo"
# (prefix, share) of called numbers; "999" is priced by no plan: those records are rejected
DESTINATIONS = (
    ("4930", 0.30), ("4915", 0.20), ("4917", 0.15), ("49800", 0.02), ("49900", 0.01),
    ("33", 0.08), ("44", 0.07), ("1", 0.06), ("86", 0.04), ("234", 0.03), ("999", 0.04),
)  # fmt: skip
# (kind, category, share)
SERVICES = ((KIND_VOICE, "call", 0.45), (KIND_SMS, "sms", 0.25), (KIND_DATA, "data", 0.25),
            (KIND_EVENT, "video", 0.05))  # fmt: skip
# hourly traffic weights of a day: night trough, busy hour at 18:00
DAILY_CURVE = np.array([2, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 11, 10, 10, 10, 11, 12, 14, 12,
                        10, 8, 6, 4], dtype=np.float64)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scenario:
    records: int = 100_000
    accounts: int = 10_000
    day: datetime = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
    seed: int = 2026
    zipf: float = 1.2


def _choice(rng: np.random.Generator, n: int, shares: list[float]) -> np.ndarray:
    p = np.array(shares, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def generate_columns(s: Scenario) -> Columns:
    """``s.records`` records of one day, as columns."""
    rng = np.random.default_rng(s.seed)
    n = s.records
    service = _choice(rng, n, [x[2] for x in SERVICES])
    kind = np.array([x[0] for x in SERVICES], dtype=np.uint8)[service]
    categories = [x[1] for x in SERVICES]
    # Zipf-skewed activity: a few accounts make most of the traffic
    account_no = (rng.zipf(s.zipf, size=n) - 1) % s.accounts
    hour = _choice(rng, n, list(DAILY_CURVE))
    second = hour * 3600 + rng.integers(0, 3600, size=n)
    day_us = int(s.day.timestamp()) * 1_000_000
    start_us = day_us + np.sort(second).astype(np.int64) * 1_000_000
    usage = np.ones(n, dtype=np.int64)
    voice = kind == KIND_VOICE
    usage[voice] = np.minimum(rng.lognormal(4.0, 1.1, size=int(voice.sum())), 4 * 3600).astype(
        np.int64
    )
    data = kind == KIND_DATA
    usage[data] = rng.lognormal(14.5, 1.5, size=int(data.sum())).astype(np.int64)
    prefix = _choice(rng, n, [x[1] for x in DESTINATIONS])
    prefixes = [x[0] for x in DESTINATIONS]
    tails = rng.integers(1_000_000, 9_999_999, size=n).tolist()
    destination = [
        "" if k in (KIND_DATA, KIND_EVENT) else f"{prefixes[p]}{t}"
        for k, p, t in zip(kind.tolist(), prefix.tolist(), tails, strict=True)
    ]
    accounts = [f"acc{a:07d}" for a in account_no.tolist()]
    return Columns(
        kind=kind,
        cdr_id=StrColumn.from_strings([f"{s.seed}-{i:09d}" for i in range(n)]),
        tenant=StrColumn.from_strings([TENANT] * n),
        account=StrColumn.from_strings(accounts),
        category=StrColumn.from_strings([categories[x] for x in service.tolist()]),
        subject=StrColumn.from_strings(accounts),
        destination=StrColumn.from_strings(destination),
        start_us=start_us,
        usage=usage,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RECORD_TYPES: dict[int, type[Record]] = {
    KIND_VOICE: VoiceRecord,
    KIND_SMS: SmsRecord,
    KIND_DATA: DataRecord,
    KIND_EVENT: EventRecord,
}


def columns_to_records(columns: Columns) -> list[Record]:
    """The same traffic as record Structs (for the JSON and MessagePack paths)."""
    cdr_ids = columns.cdr_id.to_list()
    accounts = columns.account.to_list()
    categories = columns.category.to_list()
    destinations = columns.destination.to_list()
    records: list[Record] = []
    for i, (k, us, usage) in enumerate(
        zip(columns.kind.tolist(), columns.start_us.tolist(), columns.usage.tolist(), strict=True)
    ):
        records.append(
            _RECORD_TYPES[k](
                cdr_id=cdr_ids[i],
                tenant=TENANT,
                account=accounts[i],
                category=categories[i],
                destination=destinations[i],
                start=_EPOCH + timedelta(microseconds=us),
                usage=usage,
            )
        )
    return records
