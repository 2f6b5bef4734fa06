"""``ratewire rate``: rate a file of usage records, batch by batch.

decode (a chunk of lines, a message or a columnar frame) → columns → guide
and rate (three kernel calls) → rated records out, rejects out, counts.
Every record read is either rated or rejected with its reason and position:
``read == rated + rejected`` is part of the summary and checked by tests.

Input formats (``--format``, or by extension): ``jsonl`` (one record per
line), ``json`` / ``msgpack`` (one message: a record or an array of records),
``columnar`` (frames of a 4-byte little-endian length and a
:class:`~engine.wire.ColumnarBatch`; see :func:`write_frames`).
"""

from __future__ import annotations

import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import numpy as np
import numpy.typing as npt

from balances.debit import Debitor
from balances.kernels import FLAG_DUPLICATE, FLAG_UNKNOWN_ACCOUNT
from balances.ledger import Ledger
from engine.columns import Columns
from engine.exceptions import DecodeError, UsageInputError
from engine.rated_output import Debits, RatedWriter
from engine.rejects import Reject, RejectSink
from engine.wire import (
    Decoded,
    decode_columnar,
    decode_jsonl,
    decode_message_with_rejects,
    jsonl_chunks,
)
from engine.wire import records_to_columns as to_columns
from tariffs.money import format_amount, format_units
from tariffs.rating import PeriodCounters, RatedBatch, Rater

_EXTENSIONS = {".jsonl": "jsonl", ".json": "json", ".msgpack": "msgpack", ".mpk": "msgpack",
               ".columnar": "columnar", ".cols": "columnar"}  # fmt: skip
_FRAME = struct.Struct("<I")
CHUNK_BYTES = 1 << 24


@dataclass(frozen=True, slots=True)
class Batch:
    """One unit of work: decoded columns, rejects from decoding, and positions."""

    columns: Columns | None
    rejects: list[Reject]
    locate: Callable[[], Sequence[str]] | None  # source position of each row, on demand
    raw_source: str  # used with the row number when there is no locate
    consumed: int = 0  # bytes of the input read so far (for the progress bar)
    record_bytes: Callable[[int], bytes] | None = None  # a row's own bytes, for its reject


@dataclass
class RateSummary:
    read: int = 0
    rated: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    charged: dict[str, int] = field(default_factory=dict)  # currency -> nanos
    seconds: float = 0.0
    paid: int = 0  # with --state: money paid from balances, in the currency's amount units
    paid_scale: int = -1  # decimals of those amount units (-1: no --state)
    insufficient_credit: int = 0  # with --state: records not fully paid

    @property
    def records_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "rated": self.rated,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "charged": {cur: format_amount(n) for cur, n in sorted(self.charged.items())},
            "paid": {cur: format_units(self.paid, self.paid_scale) for cur in self.charged}
            if self.paid_scale >= 0
            else {},
            "insufficient_credit": self.insufficient_credit,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second),
        }

    def render(self) -> str:
        d = self.to_dict()
        lines = [
            f"read      {d['read']:>12,}",
            f"rated     {d['rated']:>12,}",
            f"rejected  {d['rejected']:>12,}",
        ]
        lines += [f"  {reason:<24} {n:>10,}" for reason, n in d["rejected_by_reason"].items()]
        lines += [f"charged   {amount:>16} {cur}" for cur, amount in d["charged"].items()]
        lines += [f"paid      {amount:>16} {cur}" for cur, amount in d["paid"].items()]
        if self.paid_scale >= 0:
            lines.append(f"insufficient credit {d['insufficient_credit']:>6,}")
        lines.append(f"speed     {d['records_per_second']:>12,} records/s ({d['seconds']} s)")
        return "\n".join(lines) + "\n"


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        msg = f"--in {path}: cannot tell the format from '{path.suffix}'; give --format"
        raise UsageInputError(msg)
    return found


def write_frames(out: BinaryIO, payloads: list[bytes]) -> None:
    """Write columnar batches as length-prefixed frames (the ``columnar`` file format)."""
    for payload in payloads:
        out.write(_FRAME.pack(len(payload)))
        out.write(payload)


def _read_frames(path: Path) -> Iterator[tuple[int, bytes, str]]:
    """(offset, payload, problem) per frame; a truncated tail comes last with its problem."""
    with path.open("rb") as file:
        offset = 0
        while header := file.read(_FRAME.size):
            if len(header) < _FRAME.size:
                yield offset, header, f"truncated frame header ({len(header)} of 4 bytes)"
                return
            (size,) = _FRAME.unpack(header)
            payload = file.read(size)
            if len(payload) < size:
                problem = f"frame of {size} bytes is truncated after {len(payload)}"
                yield offset, header + payload, problem
                return
            yield offset, payload, ""
            offset += _FRAME.size + size


def _rows(decoded: Decoded, source: str) -> Batch:
    columns = to_columns(decoded.records) if decoded.records else None
    return Batch(columns, decoded.rejects, None, source)


def _batches(path: Path, fmt: str) -> Iterator[Batch]:
    if fmt == "jsonl":
        for body, line, read in jsonl_chunks(path, chunk_bytes=CHUNK_BYTES):
            decoded = decode_jsonl(body, source=str(path), first_line=line)
            batch = _rows(decoded, str(path))
            locate = partial(_line_positions, body, line, decoded, str(path))
            yield Batch(batch.columns, batch.rejects, locate, str(path), read)
    elif fmt in ("json", "msgpack"):
        raw = path.read_bytes()
        decoded = decode_message_with_rejects(raw, "json" if fmt == "json" else "msgpack",
                                              source=str(path))  # fmt: skip
        yield _rows(decoded, f"{path}#")
    else:
        for offset, payload, problem in _read_frames(path):
            size = _FRAME.size + len(payload)
            source = f"{path}@{offset}"
            try:
                if problem:  # the tail of a file still being written, or cut short
                    raise DecodeError(f"columnar file: {problem}")  # noqa: EM102
                yield Batch(decode_columnar(payload), [], None, f"{source}#", offset + size)
            except DecodeError as exc:
                reject = Reject(source=source, reason="DECODE_ERROR", message=str(exc), raw=payload)
                yield Batch(None, [reject], None, source)


def _line_positions(body: bytes, first: int, decoded: Decoded, source: str) -> list[str]:
    """``file:line`` of each good record of a JSON-lines chunk (blank and bad lines skipped)."""
    bad = {r.source for r in decoded.rejects}
    positions = []
    for number, line in enumerate(body.split(b"\n"), start=first):
        where = f"{source}:{number}"
        if line.strip() and where not in bad:
            positions.append(where)
    return positions[: len(decoded.records)]


def _rejects(batch: Batch, rows: list[int], codes: list[str]) -> list[Reject]:
    """Rejects for records that decoded but could not be rated or applied."""
    assert batch.columns is not None
    encoder = msgspec.json.Encoder()
    c = batch.columns
    positions = batch.locate() if batch.locate else None
    at = np.array(rows, dtype=np.int64)
    fields = [c.tenant, c.category, c.subject, c.destination, c.cdr_id, c.account]
    values = zip(*(f.values_at(at) for f in fields), strict=True) if rows else iter(())
    rejects = []
    for i, code, (tenant, category, subject, destination, cdr_id, account) in zip(
        rows, codes, values, strict=False
    ):
        where = positions[i] if positions else f"{batch.raw_source}{i}"
        message = (
            f"rate: {code}: {tenant}/{category}/{subject} → {destination or '(any)'} "
            f"(cdr_id {cdr_id}, account {account})"
        )
        raw = (
            batch.record_bytes(i)
            if batch.record_bytes
            else encoder.encode({"cdr_id": cdr_id, "account": account})
        )
        rejects.append(Reject(source=where, reason=code, message=message, raw=raw))
    return rejects


def unratable(batch: Batch, rated: RatedBatch) -> list[Reject]:
    """Rejects for the records of a batch that could not be rated."""
    rows = np.flatnonzero(rated.error).tolist()
    return _rejects(batch, rows, [rated.error_code(i) or "RATING_ERROR" for i in rows])


def unapplied(batch: Batch, rated: RatedBatch, flags: npt.NDArray[np.int64]) -> list[Reject]:
    """Rated records the ledger did not apply: unknown account, or seen before."""
    rows = np.flatnonzero(
        (rated.error == 0) & ((flags & (FLAG_UNKNOWN_ACCOUNT | FLAG_DUPLICATE)) != 0)
    )
    codes = ["UNKNOWN_ACCOUNT" if flags[i] & FLAG_UNKNOWN_ACCOUNT else "DUPLICATE" for i in rows]
    return _rejects(batch, rows.tolist(), codes)


@dataclass(frozen=True, slots=True)
class StatefulRating:
    """What ``--state`` adds: the ledger to debit and the debitor for this tariff."""

    ledger: Ledger
    debitor: Debitor

    def apply(self, columns: Columns, rated: RatedBatch) -> Debits:
        result = self.ledger.debit(self.debitor, columns, rated)
        state, journal = self.ledger.state, result.journal
        units = state.units.units
        unit_rows = state.bal.arrays["unit"][journal.balance].tolist()
        return Debits(
            paid=result.paid,
            covered=result.covered,
            flags=result.flags,
            currency_scale=units[self.debitor.currency].decimals,
            journal_record=journal.record,
            balance=[state.balance_ids[b] for b in journal.balance.tolist()],
            unit=[units[u].name for u in unit_rows],
            delta=journal.delta,
            after=journal.after,
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What rating (and with ``--state`` debiting) one batch gave."""

    rejects: list[Reject]  # unratable records, then records the ledger did not apply
    rated: int  # rated records written
    charged: int  # nanos: the rated cost of the records written
    debits: Debits | None


def rate_batch(
    rater: Rater,
    batch: Batch,
    counters: PeriodCounters,
    writer: RatedWriter,
    state: StatefulRating | None,
) -> BatchResult:
    """Rate a decoded batch, debit it with ``state``, write its rated records.

    The rejects are returned, not written; the caller writes them and then
    checkpoints the ledger (with its own input position).
    """
    assert batch.columns is not None
    rated = rater.rate(batch.columns, counters)
    rejects = unratable(batch, rated) if rated.error.any() else []
    debits = state.apply(batch.columns, rated) if state else None
    if debits is not None:
        rejects += unapplied(batch, rated, debits.flags)
    charged = int(rated.cost[writer.rows(rated, debits)].sum())
    return BatchResult(rejects, writer.write(batch.columns, rated, debits), charged, debits)


def rate_file(
    rater: Rater,
    path: Path,
    *,
    out: Path,
    rejects: Path,
    fmt: str | None = None,
    progress: bool = False,
    state: StatefulRating | None = None,
) -> RateSummary:
    """Rate every record of ``path``; write rated records to ``out`` and rejects to ``rejects``.

    With ``state``, each batch is also debited from the ledger and checkpointed
    (the durability point) before the next one is read; records of unknown
    accounts and records seen before are rejected (``UNKNOWN_ACCOUNT``,
    ``DUPLICATE``) and change nothing.
    """
    if not path.is_file():
        msg = f"--in {path}: no such file"
        raise UsageInputError(msg)
    fmt = detect_format(path, fmt)
    total_bytes = max(path.stat().st_size, 1)
    summary = RateSummary()
    counters = PeriodCounters()
    currency = rater.tariff.currency
    started = time.perf_counter()
    rejects.write_bytes(b"")  # a run's rejects file holds that run's rejects only
    with RejectSink(rejects) as sink, RatedWriter(out, rater.compiled) as writer:
        for batch in _batches(path, fmt):
            sink.write(batch.rejects)
            summary.read += len(batch.rejects)
            if batch.columns is None:
                continue
            result = rate_batch(rater, batch, counters, writer, state)
            sink.write(result.rejects)
            summary.read += len(batch.columns)
            summary.rated += result.rated
            summary.charged[currency] = summary.charged.get(currency, 0) + result.charged
            debits = result.debits
            if state is not None and debits is not None:
                state.ledger.checkpoint()
                summary.insufficient_credit += int(np.count_nonzero(debits.flags & 1))
                summary.paid_scale = debits.currency_scale
                summary.paid += int(debits.paid[(debits.flags & ~1) == 0].sum())
            if progress:
                _progress(summary.read, batch.consumed / total_bytes)
        summary.rejected.update(sink.counts)
    summary.seconds = time.perf_counter() - started
    if progress:
        sys.stderr.write("\n")
    return summary


def _progress(read: int, share: float) -> None:
    width = 30
    done = int(width * min(share, 1.0))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {read:,} records")
    sys.stderr.flush()
