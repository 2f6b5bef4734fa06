"""Seeded traffic of a scenario: usage records, resends and malformed messages.

A scenario's traffic is an endless stream of messages at positions 0, 1, 2, …
(``records`` of them per simulated day). :func:`generate_traffic` gives any
slice of it; slices cut anywhere and joined give exactly the whole
(:func:`join_traffic`). Each position is one of:

* an **original** record: its content is drawn from the scenario (service,
  account by Zipf-skewed activity, start time on the daily curve, log-normal
  call duration or data volume, called number from the destination groups)
  and its ``cdr_id`` is ``<seed>-<position>``;
* a **resend** (share ``duplicates``): an earlier original repeated byte for
  byte, chosen among the ``resend_window`` positions before it. Only records
  that rate are resent (never one to an unpriced number), so a ledger that
  remembers ``cdr_id``\\ s rejects exactly the resends as ``DUPLICATE``. If no
  such original is near (the stream's first positions), the position stays
  an original;
* a **malformed** message (share ``malformed``): an original's record broken
  in one of :data:`~loadtest.scenario.MALFORMED_KINDS` (truncated JSON, usage
  as a string, negative usage, no account, …), kept as raw bytes.

Roles and resend targets are drawn per position from a counter-based hash
(SplitMix64 of the seed, a stream number and the position), so they do not
depend on where a slice starts. Record content comes from the scenario's
``layout``:

* ``day`` draws each simulated day with one numpy generator (seeded by
  ``seed`` for day 0, by ``[seed, day]`` after), in the order the original
  generator drew it, so ``Scenario(records=…, accounts=…)`` gives the same
  records as it always did. A slice costs the days it touches.
* ``stream`` draws each field of each position from the counter-based hash:
  a slice costs its own size only (use it for long runs). Start times are
  stratified: position ``j`` of a day falls at quantile ``(j + u) / records``
  of the daily curve, so records come in time order and the curve holds
  exactly; activity is a bounded Zipf over the accounts.

Strings are built with numpy (a constant prefix and a zero-padded number per
record), without a Python string per record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt

from engine.columns import (
    I64,
    KIND_DATA,
    KIND_SMS,
    KIND_VOICE,
    Columns,
    StrColumn,
    concat,
)
from engine.records import RECORD_TYPES, Record
from loadtest.exceptions import LoadTestError
from loadtest.scenario import (
    DAILY_CURVE,
    DESTINATIONS,
    MALFORMED_KINDS,
    SERVICES,
    TENANT,
    LogNormal,
    Scenario,
)

__all__ = [
    "DAILY_CURVE", "DESTINATIONS", "LOOKBACK", "SERVICES", "TENANT", "Scenario", "Traffic",
    "columns_to_records", "generate_columns", "generate_traffic", "join_traffic",
]  # fmt: skip

F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
ORIGINAL, RESEND, MALFORMED = 0, 1, 2
LOOKBACK: Final = 64  # how far before its target a resend looks for a record that rates
DAY_US: Final = 86_400 * 1_000_000
# one hash stream per decision, so that each is independent of the others
(_ROLE, _LAG, _BAD_KIND, _CUT, _SERVICE, _ACCOUNT, _TIME, _CALL_A, _CALL_B, _DATA_A, _DATA_B,
 _PREFIX, _TAIL) = range(1, 14)  # fmt: skip
_POW10: Final = 10 ** np.arange(19, dtype=np.int64)
_POW10.setflags(write=False)
_FOUR_DIGITS: Final = np.frombuffer(
    b"".join(b"%04d" % i for i in range(10_000)), dtype=np.uint8
).reshape(10_000, 4)  # read-only: a view of bytes
_MASK64: Final = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Traffic:
    """Positions ``first … first + size - 1`` of a scenario's stream.

    ``columns`` holds the valid records in stream order (resends included,
    ``resent`` marks them); ``positions`` is each one's stream position and
    ``sources`` the position of the original it repeats (its own for an
    original). A resend whose original came before ``first`` is a duplicate
    only to a ledger that saw the earlier slice: :attr:`duplicates_in_slice`
    counts the others.
    ``malformed`` holds each malformed message's raw JSON bytes, with its
    kind, position and the account of the record it was made from (a
    producer's key). ``intended`` counts the original records per category,
    ``groups`` the originals per destination group (calls and SMS), and
    ``unpriced`` the originals no plan prices (expected ``UNAUTHORIZED_DESTINATION``).
    """

    first: int
    size: int
    columns: Columns
    positions: I64
    sources: I64
    resent: Bools
    malformed: list[bytes]
    malformed_kinds: list[str]
    malformed_positions: I64
    malformed_accounts: list[str]
    duplicates: int
    intended: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    unpriced: int = 0

    @property
    def malformed_at(self) -> I64:
        """For each malformed message, how many valid records come before it."""
        return np.searchsorted(self.positions, self.malformed_positions).astype(np.int64)

    @property
    def duplicates_in_slice(self) -> int:
        """Resends whose original is in this slice (all of them for a slice from 0)."""
        return int(np.count_nonzero(self.resent & (self.sources >= self.first)))

    @property
    def messages(self) -> int:
        """Valid records and malformed messages (one record or message per position)."""
        return len(self.columns) + len(self.malformed)

    def malformed_reasons(self) -> Counter[str]:
        """The reject reason of each malformed message sent as a message or JSON line."""
        return Counter(MALFORMED_KINDS[k] for k in self.malformed_kinds)


def generate_columns(s: Scenario) -> Columns:
    """The valid records of the scenario's first ``s.records`` positions (its first day)."""
    return generate_traffic(s).columns


def generate_traffic(s: Scenario, n: int | None = None, *, first: int = 0) -> Traffic:
    """Positions ``first … first + n - 1`` of the scenario's stream (``n``: one day)."""
    n = s.records if n is None else n
    if n < 0 or first < 0:
        msg = f"generate_traffic: n ({n}) and first ({first}) must be >= 0"
        raise LoadTestError(msg)
    if n and not s.records:
        msg = f"scenario {s.name!r}: records (per day) is 0, so it has no traffic to generate"
        raise LoadTestError(msg)
    lo = max(first - s.resend_window - LOOKBACK, 0) if s.duplicates > 0 else first
    hi = first + n
    draw = _draw(s, lo, hi)
    role = _roles(s, np.arange(lo, hi, dtype=np.int64))
    source, role = _resends(s, draw, role, lo, first)
    own = np.arange(first - lo, hi - lo, dtype=np.int64)  # window rows of this slice
    valid = own[role[own] != MALFORMED]
    bad = own[role[own] == MALFORMED]
    originals = valid[role[valid] == ORIGINAL]
    resent = role[valid] == RESEND
    broken = _columns(s, draw, bad, bad + lo)
    kinds, messages = _malformed(s, broken, bad + lo)
    return Traffic(
        first=first, size=n,
        columns=_columns(s, draw, source[valid], source[valid] + lo),
        positions=valid + lo, sources=source[valid] + lo, resent=resent,
        malformed=messages, malformed_kinds=kinds, malformed_positions=bad + lo,
        malformed_accounts=broken.account.to_list(), duplicates=int(resent.sum()),
        **_intended(s, draw, originals),
    )  # fmt: skip


def join_traffic(parts: Sequence[Traffic]) -> Traffic:
    """Consecutive slices of one stream as one slice."""
    if not parts:
        msg = "join_traffic: no slices to join"
        raise LoadTestError(msg)
    for a, b in pairwise(parts):
        if b.first != a.first + a.size:
            end = a.first + a.size
            msg = f"join_traffic: the slice at {b.first} does not follow the one ending at {end}"
            raise LoadTestError(msg)

    def summed(name: str) -> dict[str, int]:
        total: Counter[str] = Counter()
        for p in parts:
            total.update(getattr(p, name))
        return dict(total)

    return Traffic(
        first=parts[0].first, size=sum(p.size for p in parts),
        columns=concat([p.columns for p in parts]),
        positions=np.concatenate([p.positions for p in parts]),
        sources=np.concatenate([p.sources for p in parts]),
        resent=np.concatenate([p.resent for p in parts]),
        malformed=[m for p in parts for m in p.malformed],
        malformed_kinds=[k for p in parts for k in p.malformed_kinds],
        malformed_positions=np.concatenate([p.malformed_positions for p in parts]),
        malformed_accounts=[a for p in parts for a in p.malformed_accounts],
        duplicates=sum(p.duplicates for p in parts), intended=summed("intended"),
        groups=summed("groups"), unpriced=sum(p.unpriced for p in parts),
    )  # fmt: skip


# --- what each position holds ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Draw:
    """Content drawn for a window of positions (indexes into the scenario's tables)."""

    service: I64
    account: I64
    start_us: I64
    usage: I64
    prefix: I64  # index into Scenario.called (drawn for every record, used by calls and SMS)
    tail: I64  # the digits after the prefix


def _draw(s: Scenario, lo: int, hi: int) -> _Draw:
    if s.layout == "stream":
        return _stream_draw(s, np.arange(lo, hi, dtype=np.int64))
    if lo == hi:
        return _take(_day_draw(s, 0, 0), np.zeros(0, dtype=np.int64))
    first_day, last_day = lo // s.records, (hi - 1) // s.records
    days = [_day_draw(s, d, s.records) for d in range(first_day, last_day + 1)]
    joined = _Draw(*(np.concatenate(parts) for parts in zip(*(_fields(d) for d in days),
                                                            strict=True)))  # fmt: skip
    return _take(joined, np.arange(lo, hi, dtype=np.int64) - first_day * s.records)


def _fields(d: _Draw) -> list[I64]:
    return [getattr(d, f.name) for f in fields(d)]


def _take(d: _Draw, rows: I64) -> _Draw:
    return _Draw(*(a[rows] for a in _fields(d)))


def _day_draw(s: Scenario, day: int, n: int) -> _Draw:
    """Day ``day`` drawn whole, in the historical generator's order (layout ``day``)."""
    rng = np.random.default_rng(s.seed if day == 0 else [s.seed, day])
    service = _choice(rng, n, [x.share for x in s.services])
    kind = _kinds(s)[service]
    account = (rng.zipf(s.zipf, size=n) - 1) % s.accounts
    hour = _choice(rng, n, list(s.daily_curve))
    second = hour * 3600 + rng.integers(0, 3600, size=n)
    start_us = _day_us(s) + day * DAY_US + np.sort(second).astype(np.int64) * 1_000_000
    usage = np.ones(n, dtype=np.int64)
    for wanted, dist in ((KIND_VOICE, s.calls), (KIND_DATA, s.sessions)):
        rows = kind == wanted
        usage[rows] = _capped(rng.lognormal(dist.mu, dist.sigma, size=int(rows.sum())), dist)
    called = s.called
    prefix = _choice(rng, n, [x[1] for x in called])
    digits = np.array([s.destinations[g].digits for _, _, g in called], dtype=np.int64)
    if len(set(digits.tolist())) == 1:
        d = int(digits[0])
        tail = rng.integers(10 ** (d - 1), 10**d - 1, size=n)
    else:
        tail = rng.integers(_POW10[digits[prefix] - 1], _POW10[digits[prefix]] - 1)
    return _Draw(service, account, start_us, usage, prefix, tail)


def _stream_draw(s: Scenario, positions: I64) -> _Draw:
    """Each position's content from its own hashed uniforms (layout ``stream``)."""
    n = len(positions)
    service = _pick(_uniform(s.seed, _SERVICE, positions), [x.share for x in s.services])
    kind = _kinds(s)[service]
    ranks = np.arange(1, s.accounts + 1, dtype=np.float64) ** -s.zipf  # bounded Zipf
    account = _pick(_uniform(s.seed, _ACCOUNT, positions), ranks)
    day, j = np.divmod(positions, s.records)
    quantile = (j + _uniform(s.seed, _TIME, positions)) / s.records
    curve = np.concatenate([[0.0], np.cumsum(s.daily_curve)]) / sum(s.daily_curve)
    second = np.floor(np.interp(quantile, curve, np.arange(25) * 3600.0)).astype(np.int64)
    start_us = _day_us(s) + day * DAY_US + np.minimum(second, 86_399) * 1_000_000
    usage = np.ones(n, dtype=np.int64)
    for wanted, dist, a, b in ((KIND_VOICE, s.calls, _CALL_A, _CALL_B),
                               (KIND_DATA, s.sessions, _DATA_A, _DATA_B)):  # fmt: skip
        at = positions[kind == wanted]
        z = _normal(_uniform(s.seed, a, at), _uniform(s.seed, b, at))
        usage[kind == wanted] = _capped(np.exp(dist.mu + dist.sigma * z), dist)
    called = s.called
    prefix = _pick(_uniform(s.seed, _PREFIX, positions), [x[1] for x in called])
    digits = np.array([s.destinations[g].digits for _, _, g in called], dtype=np.int64)[prefix]
    low, high = _POW10[digits - 1], _POW10[digits] - 1
    tail = low + (_uniform(s.seed, _TAIL, positions) * (high - low)).astype(np.int64)
    return _Draw(service, account, start_us, usage, prefix, tail)


def _roles(s: Scenario, positions: I64) -> npt.NDArray[np.uint8]:
    if s.malformed == 0 and s.duplicates == 0:
        return np.zeros(len(positions), dtype=np.uint8)
    u = _uniform(s.seed, _ROLE, positions)
    resend = np.where(u < s.malformed + s.duplicates, RESEND, ORIGINAL)
    return np.where(u < s.malformed, MALFORMED, resend).astype(np.uint8)


def _resends(
    s: Scenario, d: _Draw, role: npt.NDArray[np.uint8], lo: int, first: int
) -> tuple[I64, npt.NDArray[np.uint8]]:
    """Each window row's source row (a resend's original) and the roles as they turn out.

    A resend at position p repeats the last original at or before
    ``p - lag`` (lag uniform in 1 … resend_window) that rates, if it is no
    more than LOOKBACK positions before; otherwise p is an original itself.
    Only roles as drawn are looked at, so the answer never depends on ``lo``.
    """
    source = np.arange(len(role), dtype=np.int64)
    resends = np.flatnonzero(role == RESEND)
    resends = resends[resends >= first - lo]
    if not len(resends):
        return source, role
    rates = (role == ORIGINAL) & ~_unpriced(s, d)
    last = np.maximum.accumulate(np.where(rates, source, -1))
    lag = 1 + (_uniform(s.seed, _LAG, resends + lo) * s.resend_window).astype(np.int64)
    target = resends - lag
    found = np.where(target >= 0, last[np.maximum(target, 0)], -1)
    ok = (found >= 0) & (found >= target - LOOKBACK)
    source[resends[ok]] = found[ok]
    role = role.copy()
    role[resends[~ok]] = ORIGINAL
    return source, role


def _unpriced(s: Scenario, d: _Draw) -> Bools:
    """Records no plan prices: calls or SMS to a group that is unpriced for their category."""
    table = np.array([[x.category in s.destinations[g].unpriced_for for _, _, g in s.called]
                      for x in s.services], dtype=np.bool_)  # fmt: skip
    kind = _kinds(s)[d.service]
    unpriced: Bools = table[d.service, d.prefix] & ((kind == KIND_VOICE) | (kind == KIND_SMS))
    return unpriced


def _intended(s: Scenario, d: _Draw, originals: I64) -> dict[str, Any]:
    services = np.bincount(d.service[originals], minlength=len(s.services)).tolist()
    kind = _kinds(s)[d.service[originals]]
    with_number = originals[(kind == KIND_VOICE) | (kind == KIND_SMS)]
    group_of = np.array([g for _, _, g in s.called], dtype=np.int64)
    groups = np.bincount(group_of[d.prefix[with_number]], minlength=len(s.destinations)).tolist()
    return {
        "intended": {x.category: c for x, c in zip(s.services, services, strict=True)},
        "groups": {g.name: c for g, c in zip(s.destinations, groups, strict=True)},
        "unpriced": int(_unpriced(s, _take(d, originals)).sum()),
    }


# --- records and messages ----------------------------------------------------------


def _columns(s: Scenario, d: _Draw, rows: I64, cdr_numbers: I64) -> Columns:
    """The records of window ``rows`` (cdr_id numbered by ``cdr_numbers``) as Columns."""
    service = d.service[rows]
    kind = _kinds(s)[service]
    account = _numbered(b"acc", d.account[rows], 7)
    called = np.flatnonzero((kind == KIND_VOICE) | (kind == KIND_SMS))
    prefix = d.prefix[rows][called]
    digits = np.array([s.destinations[g].digits for _, _, g in s.called], dtype=np.int64)
    width = np.array([len(p) for p, _, _ in s.called], dtype=np.int64) + digits
    head = np.array([int(p) for p, _, _ in s.called], dtype=np.int64)
    number = head[prefix] * _POW10[digits[prefix]] + d.tail[rows][called]
    return Columns(
        kind=kind,
        cdr_id=_numbered(f"{s.seed}-".encode(), cdr_numbers, 9),
        tenant=_numbered(s.tenant.encode(), np.zeros(len(rows), dtype=np.int64), 0),
        account=account,
        category=StrColumn.from_strings([x.category for x in s.services]).take(service),
        subject=account,
        destination=_spread(_numbered(b"", number, width[prefix]), called, len(rows)),
        start_us=d.start_us[rows],
        usage=d.usage[rows],
    )


def _malformed(s: Scenario, c: Columns, positions: I64) -> tuple[list[str], list[bytes]]:
    """Each record of ``c`` broken in a kind drawn for its position."""
    if not len(positions):
        return [], []
    which = _uniform(s.seed, _BAD_KIND, positions) * len(s.malformed_kinds)
    kinds = [s.malformed_kinds[i] for i in which.astype(np.int64).tolist()]
    cuts = _uniform(s.seed, _CUT, positions).tolist()
    records = columns_to_records(c)
    return kinds, [_break(r, k, u) for r, k, u in zip(records, kinds, cuts, strict=True)]


def _break(record: Record, kind: str, u: float) -> bytes:
    whole = msgspec.json.encode(record)
    if kind == "truncated":  # any proper prefix of a JSON object is malformed
        return whole[: 1 + int(u * (len(whole) - 2))]
    fields_ = msgspec.to_builtins(record)
    if kind == "not_json":
        return ("{" + ", ".join(f"{k}={v}" for k, v in fields_.items()) + "}").encode()
    if kind == "wrong_type":
        fields_["usage"] = str(fields_["usage"])
    elif kind == "negative_usage":
        fields_["usage"] = -1 - fields_["usage"]
    elif kind == "missing_account":
        del fields_["account"]
    elif kind == "missing_cdr_id":
        del fields_["cdr_id"]
    elif kind == "unknown_type":
        fields_["type"] = "fax"
    elif kind == "naive_start":
        fields_["start"] = record.start.replace(tzinfo=None).isoformat()
    return msgspec.json.encode(fields_)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RECORD_TYPES: dict[int, type[Record]] = {cls.kind: cls for cls in RECORD_TYPES}


def columns_to_records(columns: Columns) -> list[Record]:
    """The same traffic as record Structs (for the JSON and MessagePack paths)."""
    cdr_ids = columns.cdr_id.to_list()
    tenants = columns.tenant.to_list()
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
                tenant=tenants[i],
                account=accounts[i],
                category=categories[i],
                destination=destinations[i],
                start=_EPOCH + timedelta(microseconds=us),
                usage=usage,
            )
        )
    return records


# --- numpy helpers ------------------------------------------------------------------


def _kinds(s: Scenario) -> npt.NDArray[np.uint8]:
    return np.array([x.kind for x in s.services], dtype=np.uint8)


def _day_us(s: Scenario) -> int:
    return int(s.day.timestamp()) * 1_000_000


def _choice(rng: np.random.Generator, n: int, shares: list[float]) -> I64:
    p = np.array(shares, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _pick(u: F64, weights: Sequence[float] | F64) -> I64:
    """Indexes drawn by weight: the inverse of the weights' distribution at ``u``."""
    cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
    index: I64 = np.searchsorted(cumulative, u * cumulative[-1], side="right").astype(np.int64)
    return np.minimum(index, len(cumulative) - 1)


def _capped(values: F64, dist: LogNormal) -> I64:
    return (values if dist.cap is None else np.minimum(values, dist.cap)).astype(np.int64)


def _normal(u: F64, v: F64) -> F64:
    """Standard normal values from two uniforms (Box–Muller; ``1 - u`` is never 0)."""
    return np.sqrt(-2.0 * np.log1p(-u)) * np.cos(2.0 * np.pi * v)


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijection that scrambles bits."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(seed: int, stream: int, positions: I64) -> F64:
    """A uniform in [0, 1) per position of hash stream ``stream``: SplitMix64's output
    for a state started at a key of (seed, stream) and advanced ``position`` steps."""
    key = _mix(np.array([(seed * 0x9E3779B97F4A7C15 + stream) & _MASK64], dtype=np.uint64))
    state = positions.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + key
    return (_mix(state) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _numbered(prefix: bytes, values: I64, width: int | I64) -> StrColumn:
    """``prefix`` and each value in decimal, zero-padded to ``width`` digits (at least).

    One numpy block per distinct width: a (rows, bytes) matrix written where
    its rows go. Digits come four at a time from a table of "0000" … "9999"
    (one division per four digits, not one per digit).
    """
    n = len(values)
    widths = np.maximum(np.searchsorted(_POW10, values, side="right"), width).astype(np.int64)
    lengths = len(prefix) + widths
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    head = np.frombuffer(prefix, dtype=np.uint8)
    present = np.flatnonzero(np.bincount(widths)).tolist() if n else []
    for w in present:
        rows = np.flatnonzero(widths == w) if len(present) > 1 else np.arange(n)
        block = np.empty((len(rows), len(prefix) + w), dtype=np.uint8)
        block[:, : len(prefix)] = head
        block[:, len(prefix) :] = _digits(values[rows], w)
        if len(present) == 1:
            data = block.ravel()
        else:
            data[offsets[rows, None] + np.arange(len(prefix) + w)] = block
    return StrColumn(data, offsets)


def _digits(values: I64, width: int) -> npt.NDArray[np.uint8]:
    """The last ``width`` decimal digits of each value, as ASCII: a (n, width) matrix."""
    groups = -(-width // 4)
    out = np.empty((len(values), groups * 4), dtype=np.uint8)
    rest = values
    for g in range(groups - 1, -1, -1):
        rest, four = np.divmod(rest, 10_000)
        out[:, 4 * g : 4 * g + 4] = _FOUR_DIGITS[four]
    return out[:, groups * 4 - width :]


def _spread(column: StrColumn, rows: I64, n: int) -> StrColumn:
    """``column``'s values at ``rows`` (increasing) of ``n`` values, the others empty."""
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = np.diff(column.offsets)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return StrColumn(column.data, offsets)
