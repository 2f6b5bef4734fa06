"""``ratewire cost``: price one usage query and explain it.

Parses the query, builds a one-record batch and sends it through the same
compiled path as a file or a stream, so the answer is exactly what a rated
record would carry.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np

from engine.columns import KIND_DATA, KIND_EVENT, KIND_SMS, KIND_VOICE, Columns, StrColumn
from engine.exceptions import UsageInputError
from engine.records import MAX_USAGE
from tariffs.money import format_amount
from tariffs.rated import Rating
from tariffs.rating import Rater

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", re.ASCII)
_VOICE_CATEGORIES = frozenset({"call", "voice"})
_KINDS = {"sms": KIND_SMS, "data": KIND_DATA}


@lru_cache(maxsize=1024)  # the API parses the same few usages thousands of times a second
def parse_usage(text: str) -> tuple[int, bool]:
    """``"45s"``, ``"10m45s"``, ``"1h"`` → (seconds, True); ``"2048"`` → (2048, False)."""
    text = text.strip()
    if text.isascii() and text.isdigit():  # not "²", which isdigit() but int() refuses
        return _bounded(text, int(text)), False
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        msg = (
            f"--usage {text!r}: expected a duration like 45s, 10m45s, 1h or a unit count like 2048"
        )
        raise UsageInputError(msg)
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return _bounded(text, hours * 3600 + minutes * 60 + seconds), True


def _bounded(text: str, usage: int) -> int:
    if usage > MAX_USAGE:
        msg = f"--usage {text!r}: more than the {MAX_USAGE} units a record can hold"
        raise UsageInputError(msg)
    return usage


def parse_start(text: str) -> datetime:
    """An ISO 8601 instant with an offset (``Z`` allowed)."""
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        msg = f"--start {text!r}: expected an ISO 8601 instant such as 2026-11-02T09:00:00Z"
        raise UsageInputError(msg) from None
    if start.tzinfo is None:
        msg = f"--start {text!r}: give a time zone offset (e.g. Z or +01:00)"
        raise UsageInputError(msg)
    return start


def one_record(
    *, tenant: str, category: str, subject: str, destination: str, start: datetime, usage: int,
    time_based: bool,
) -> Columns:  # fmt: skip
    """A batch of one record, as the file and stream paths build them."""
    kind = (
        KIND_VOICE
        if time_based or category in _VOICE_CATEGORIES
        else _KINDS.get(category, KIND_EVENT)
    )
    start_us = int(start.timestamp()) * 1_000_000 + start.microsecond

    def col(value: str) -> StrColumn:
        return StrColumn.from_strings([value])

    return Columns(
        kind=np.array([kind], dtype=np.uint8),
        cdr_id=col("query"),
        tenant=col(tenant),
        account=col(subject),
        category=col(category),
        subject=col(subject),
        destination=col(destination),
        start_us=np.array([start_us], dtype=np.int64),
        usage=np.array([usage], dtype=np.int64),
    )


def breakdown(rating: Rating) -> dict[str, Any]:
    """A rating as JSON-ready data, money as decimal strings."""
    return {
        "plan": rating.plan,
        "destination": rating.destination,
        "prefix": rating.prefix,
        "connect_fee": format_amount(rating.connect_fee),
        "subtotal": format_amount(rating.subtotal),
        "flags": flag_names(rating.flags),
        "spans": [
            {
                "destination_rate": s.destination_rate,
                "timing": s.timing,
                "rate": s.rate,
                "step": s.step,
                "offset": s.offset,
                "usage": s.usage,
                "billed": s.billed,
                "increment": s.increment,
                "increments": s.billed // s.increment,
                "price": format_amount(s.price),
                "rate_unit": s.rate_unit,
                "amount": format_amount(s.amount),
            }
            for s in rating.spans
        ],
    }


def flag_names(flags: int) -> list[str]:
    names = []
    if flags & 1:
        names.append("max_cost_capped")
    if flags & 2:
        names.append("max_cost_disconnect")
    return names


def cost(
    rater: Rater, *, tenant: str, category: str, subject: str, destination: str, start: str,
    usage: str,
) -> dict[str, Any]:  # fmt: skip
    """The ``cost`` answer: ``{"cost", "currency", "breakdown"}`` or ``{"error", "message"}``."""
    amount, time_based = parse_usage(usage)
    instant = parse_start(start)
    batch = rater.rate(
        one_record(
            tenant=tenant, category=category, subject=subject, destination=destination,
            start=instant, usage=amount, time_based=time_based,
        )
    )  # fmt: skip
    code = batch.error_code(0)
    if code is not None:
        where = f"{tenant}/{category}/{subject} → {destination or '(any)'} at {start}"
        return {"error": code, "message": f"cost: {code.lower().replace('_', ' ')}: {where}"}
    rating = batch.rating(0)
    return {
        "cost": format_amount(rating.cost),
        "currency": rater.tariff.currency,
        "breakdown": breakdown(rating),
    }
