"""Generated traffic onto the wire: Kafka messages, files for ``ratewire rate``, in process.

* :func:`encode_traffic`: ``(partition, key, value, headers)`` messages in
  any shape and format the worker accepts (valid records through
  :func:`engine.produce.messages_of`). Each malformed message is a message
  of its own (raw JSON bytes, whatever ``fmt``: the worker tells JSON from
  MessagePack by the first byte), keyed by the account of the record it was
  made from, so it goes to that account's partition, and placed among the
  others where it fell in the stream. The worker rejects each as one record
  with the reason :meth:`~loadtest.generator.Traffic.malformed_reasons` gives.
* :func:`write_file`: a file ``ratewire rate --in FILE --format FMT`` reads.
  In ``jsonl`` a malformed message is a line; in ``columnar`` a frame of its
  own (rejected whole as ``DECODE_ERROR``); in ``json`` and ``msgpack`` (one
  message: an array) a bad element of the array, so rejected as
  ``VALIDATION_ERROR`` (bytes that are not JSON at all travel as a string
  element). :func:`file_reasons` gives the reasons a file's malformed
  messages get.
* :func:`rate_in_process`: rate the traffic with the engine in this process
  (what ``ratewire rate`` runs), optionally debiting a ledger of the
  scenario's accounts so that resends are rejected as ``DUPLICATE``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

from balances.debit import Debitor
from balances.ledger import Ledger
from balances.model import Account, Balance
from balances.store import MemoryStore
from balances.units import load_units
from engine.columns import I64, Columns, StrColumn
from engine.partitioning import partitions_of
from engine.produce import Outgoing, Shape, messages_of
from engine.rate_file import Batch, RateSummary, StatefulRating, rate_batch, write_frames
from engine.rated_output import RatedWriter
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR
from engine.wire import Format, columns_to_columnar, decode_message_with_rejects, encode_jsonl
from loadtest.exceptions import LoadTestError
from loadtest.generator import Traffic, columns_to_records
from tariffs.loader import load_tariff
from tariffs.rating import PeriodCounters, Rater

FileFormat = Literal["jsonl", "json", "msgpack", "columnar"]
Book = tuple[Sequence[Account], Sequence[Sequence[Balance]]]


def encode_traffic(
    t: Traffic, *, shape: Shape, fmt: Format, partitions: int, size: int = 1000,
    members: list[I64] | None = None,
) -> list[Outgoing]:  # fmt: skip
    """The traffic as messages, in stream order (each partition's in its own order).

    Messages are ordered by their first record's place in the stream, with
    each malformed message where it fell. With ``members``, each message's
    rows of ``t.columns`` are appended to it; a malformed message's entry is
    ``[-1 - k]`` (it is ``t.malformed[k]``).
    """
    rows: list[I64] = []
    valid = messages_of(columns_to_records(t.columns), partitions, shape=shape, size=size,
                        fmt=fmt, members=rows)  # fmt: skip
    accounts = StrColumn.from_strings(t.malformed_accounts)
    homes = partitions_of(accounts, partitions).tolist() if t.malformed else []
    bad: list[Outgoing] = [(int(p), a.encode(), raw, [])
                           for p, a, raw in zip(homes, t.malformed_accounts, t.malformed,
                                                strict=True)]  # fmt: skip
    # where each message goes: by the stream row it starts at, a malformed one first
    at = np.array([int(r[0]) for r in rows] + t.malformed_at.tolist(), dtype=np.int64)
    malformed_first = np.array([1] * len(valid) + [0] * len(bad), dtype=np.int64)
    order = np.lexsort((malformed_first, at)).tolist()
    everything = valid + bad
    if members is not None:
        marks = rows + [np.array([-1 - k], dtype=np.int64) for k in range(len(bad))]
        members += [marks[i] for i in order]
    return [everything[i] for i in order]


def write_file(t: Traffic, path: Path, *, fmt: FileFormat, size: int = 1000) -> int:
    """Write the traffic as ``fmt`` for ``ratewire rate``; returns the records and
    malformed messages written (``read`` of the rate summary)."""
    if fmt == "columnar":
        with path.open("wb") as out:
            write_frames(out, _frames(t, size))
        return t.messages
    if fmt == "jsonl":
        lines = _interleave(t, _json_lines(t.columns), None)
        path.write_bytes(b"\n".join(lines) + b"\n" if lines else b"")
    elif fmt == "json":
        elements = _interleave(t, _json_lines(t.columns), _as_json_element)
        path.write_bytes(b"[" + b",".join(elements) + b"]")
    elif fmt == "msgpack":
        encoder = msgspec.msgpack.Encoder()
        records = [encoder.encode(r) for r in columns_to_records(t.columns)]
        packed = _interleave(t, records, _as_msgpack_element)
        path.write_bytes(encoder.encode([msgspec.Raw(e) for e in packed]))
    else:
        msg = f"write_file: format {fmt!r} is unknown; use jsonl, json, msgpack or columnar"
        raise LoadTestError(msg)
    return t.messages


def file_reasons(t: Traffic, fmt: FileFormat) -> Counter[str]:
    """The reject reasons ``ratewire rate`` gives the malformed messages of a ``fmt`` file."""
    if fmt == "jsonl":
        return t.malformed_reasons()
    reason = DECODE_ERROR if fmt == "columnar" else VALIDATION_ERROR
    return Counter({reason: len(t.malformed)}) if t.malformed else Counter()


def rate_in_process(
    t: Traffic, tariffs: Path, *, accounts: Book | None = None, batch: int = 100_000,
    out: Path | None = None,
) -> RateSummary:  # fmt: skip
    """Rate the traffic as ``ratewire rate`` does, in batches of ``batch`` records.

    With ``accounts`` (e.g. :func:`loadtest.accounts.scenario_accounts`) each
    batch is also debited from an in-memory ledger of them, as ``--state``
    does: resends are rejected as ``DUPLICATE``. Malformed messages are
    decoded as messages (each a reject); rated records go to ``out`` (default:
    discarded). ``seconds`` covers decoding the malformed messages, rating,
    debiting and writing.
    """
    rater = Rater(load_tariff(tariffs))
    state = None
    if accounts is not None:
        ledger = Ledger(MemoryStore(), load_units())
        ledger.create_accounts(*accounts)
        state = StatefulRating(ledger, Debitor(ledger.state, rater))
    summary, counters = RateSummary(), PeriodCounters()
    currency = rater.tariff.currency
    started = time.perf_counter()
    for raw, position in zip(t.malformed, t.malformed_positions.tolist(), strict=True):
        fmt: Format = "json" if raw[:1] in b"{[ \t\r\n" else "msgpack"  # as the worker tells
        decoded = decode_message_with_rejects(raw, fmt, source=f"traffic@{position}")
        summary.read += len(decoded.records) + len(decoded.rejects)
        summary.rejected.update(r.reason for r in decoded.rejects)
    with RatedWriter(out or Path(os.devnull), rater.compiled) as writer:
        for lo in range(0, len(t.columns), batch):
            columns = _slice(t.columns, lo, lo + batch)
            result = rate_batch(rater, Batch(columns, [], None, f"traffic@{t.first}#{lo}+"),
                                counters, writer, state)  # fmt: skip
            summary.read += len(columns)
            summary.rated += result.rated
            summary.rejected.update(r.reason for r in result.rejects)
            summary.charged[currency] = summary.charged.get(currency, 0) + result.charged
            if state is not None and result.debits is not None:
                state.ledger.checkpoint()
                flags = result.debits.flags
                summary.insufficient_credit += int(np.count_nonzero(flags & 1))
                summary.paid_scale = result.debits.currency_scale
                summary.paid += int(result.debits.paid[(flags & ~1) == 0].sum())
    summary.seconds = time.perf_counter() - started
    return summary


# --- helpers ---------------------------------------------------------------------------


def _json_lines(columns: Columns) -> list[bytes]:
    """Each record's JSON (one encoder call, then split at the line ends)."""
    return encode_jsonl(columns_to_records(columns)).splitlines()


def _interleave(
    t: Traffic, entries: list[bytes], convert: Callable[[bytes], bytes] | None
) -> list[bytes]:
    """``entries`` (one per valid record) with the malformed messages where they fell."""
    if not t.malformed:
        return entries
    out: list[bytes] = []
    done = 0
    for at, raw in zip(t.malformed_at.tolist(), t.malformed, strict=True):
        out += entries[done:at]
        out.append(convert(raw) if convert else raw)
        done = at
    return out + entries[done:]


def _as_json_element(raw: bytes) -> bytes:
    """A malformed message as an array element: itself if it is JSON, else a string."""
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return msgspec.json.encode(raw.decode())
    return raw


def _as_msgpack_element(raw: bytes) -> bytes:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        value = raw.decode()
    return msgspec.msgpack.encode(value)


def _frames(t: Traffic, size: int) -> list[bytes]:
    """Columnar frames of at most ``size`` records, cut where a malformed frame goes."""
    frames: list[bytes] = []
    cuts = [*t.malformed_at.tolist(), len(t.columns)]
    done = 0
    for k, cut in enumerate(cuts):
        for lo in range(done, cut, size):
            frames.append(columns_to_columnar(_slice(t.columns, lo, min(lo + size, cut))))
        done = cut
        if k < len(t.malformed):
            frames.append(t.malformed[k])
    return frames


def _slice(c: Columns, lo: int, hi: int) -> Columns:
    """Records ``lo … hi - 1`` (views of the arrays, no copy of the strings)."""
    hi = min(hi, len(c))

    def strings(s: StrColumn) -> StrColumn:
        a, b = int(s.offsets[lo]), int(s.offsets[hi])
        return StrColumn(s.data[a:b], s.offsets[lo : hi + 1] - a)

    return Columns(
        kind=c.kind[lo:hi], cdr_id=strings(c.cdr_id), tenant=strings(c.tenant),
        account=strings(c.account), category=strings(c.category), subject=strings(c.subject),
        destination=strings(c.destination), start_us=c.start_us[lo:hi], usage=c.usage[lo:hi],
    )  # fmt: skip
