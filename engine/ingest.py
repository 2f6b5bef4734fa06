"""``ratewire ingest``: switch CDR files → mediation → rating, with a spool folder.

Each file is parsed by its format's parser (:mod:`engine.mediation`), its
records are rated exactly as ``ratewire rate`` rates a batch (the pieces of
:mod:`engine.rate_file`, one batch per file), and every line is accounted for::

    lines + carried_in = parsed_lines + skipped + rejected + unpaired
    parsed             = rated + sent + rating_rejected

(``sent``: with ``--broker`` the records go to topic ``cdrs`` and the workers
rate them; ``rated`` is then 0.)

``parsed_lines`` equals ``parsed`` except for ``kamailio-acc``, where a call is
two lines (INVITE and BYE) and unpaired halves are carried from file to file.
For the other formats ``carried_in`` and ``unpaired`` are 0, so
``lines = parsed + skipped + rejected``. An empty file counts one line, its
``file:0`` reject. A file that cannot be read at all (missing, not UTF-8 for
the Kamailio parsers) counts one line, rejected ``FILE_ERROR`` at ``file:0``,
and is ``failed``; the other files go on.

Spool mode (:func:`spool_once`): complete files of a folder are ingested in
name order, moved to ``done/`` or ``failed/``, and written to a ledger of
processed files (``.ratewire-ledger.jsonl``) so that the same bytes dropped
again (same sha256) are not charged twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from engine.columns import Columns
from engine.exceptions import DecodeError, UsageInputError
from engine.mediation import asterisk, asterisk_fast, freeswitch, kamailio
from engine.mediation.common import Parsed, zone
from engine.rate_file import Batch, StatefulRating, rate_batch
from engine.rated_output import RatedWriter
from engine.records import Record
from engine.rejects import DECODE_ERROR, VALIDATION_ERROR, Reject, RejectSink
from engine.wire import records_to_columns
from tariffs.money import format_amount, parse_amount
from tariffs.rating import PeriodCounters, Rater

FORMATS: Final = ("asterisk", "freeswitch-json", "freeswitch-csv", "kamailio-acc",
                  "kamailio-dialog")  # fmt: skip
FILE_ERROR: Final = "FILE_ERROR"
FILE_TOO_LARGE: Final = "FILE_TOO_LARGE"
# A file is parsed whole in memory (columns take ~4x its size): above this it is
# refused with a clear error, the other files go on. ``--max-file-size`` changes it.
MAX_FILE_BYTES: Final = 1 << 30
LEDGER_NAME: Final = ".ratewire-ledger.jsonl"
STATE_KEY: Final = b"ingest/sha256/"  # + hex digest: the file's entry, written with its debits
_INCOMPLETE_SUFFIXES: Final = (".tmp", ".part")
_MARKER: Final = ".done"


@dataclass
class FileSummary:
    """What one file gave, from lines read to money charged."""

    file: str
    status: str = "done"  # done | failed | duplicate
    lines: int = 0
    carried_in: int = 0
    parsed: int = 0
    parsed_lines: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # parser rejects by reason
    unpaired: int = 0
    rated: int = 0
    sent: int = 0  # records produced to a broker (``--broker``): the workers rate them
    rating_rejected: dict[str, int] = field(default_factory=dict)
    charged: dict[str, int] = field(default_factory=dict)  # currency -> nanos
    error: str = ""

    def balanced(self) -> bool:
        """Both identities of the module docstring hold."""
        placed = self.parsed_lines + sum(self.skipped.values()) + sum(self.rejected.values())
        return (
            self.lines + self.carried_in == placed + self.unpaired
            and self.parsed == self.rated + self.sent + sum(self.rating_rejected.values())
        )

    def add(self, other: FileSummary) -> None:
        """Fold ``other`` into this total."""
        for name in ("lines", "carried_in", "parsed", "parsed_lines", "unpaired", "rated", "sent"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.skipped, other.skipped), (self.rejected, other.rejected),
                             (self.rating_rejected, other.rating_rejected),
                             (self.charged, other.charged)):  # fmt: skip
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "status": self.status,
            "lines": self.lines,
            "carried_in": self.carried_in,
            "parsed": self.parsed,
            "parsed_lines": self.parsed_lines,
            "skipped": sum(self.skipped.values()),
            "skipped_by_rule": dict(sorted(self.skipped.items())),
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "unpaired": self.unpaired,
            "rated": self.rated,
            "sent": self.sent,
            "rating_rejected": sum(self.rating_rejected.values()),
            "rating_rejected_by_reason": dict(sorted(self.rating_rejected.items())),
            "charged": {cur: format_amount(n) for cur, n in sorted(self.charged.items())},
            **({"error": self.error} if self.error else {}),
        }


class _Mediated(msgspec.Struct, kw_only=True):
    """A parser's result in one shape, whatever the format."""

    records: list[Record]
    skipped: dict[str, int]
    rejects: list[Reject]
    lines: int
    parsed_lines: int
    carried_in: int = 0
    unpaired: list[kamailio.AccEvent] = msgspec.field(default_factory=list)
    columns: Columns | None = None  # the records as columns (the fast paths), else None

    @property
    def parsed(self) -> int:
        return len(self.columns) if self.columns is not None else len(self.records)


@dataclass(frozen=True, slots=True)
class Mediation:
    """Which parser, for whom, in which zone; ``carry`` holds unpaired ``acc`` halves."""

    fmt: str
    tenant: str
    timezone: str = "UTC"
    carry: list[kamailio.AccEvent] = field(default_factory=list)
    max_bytes: int = MAX_FILE_BYTES  # 0: no limit

    def parse(self, path: Path, *, columnar: bool = False) -> _Mediated:
        """Parse ``path``; :class:`UsageInputError` when it cannot be read at all.

        With ``columnar``, a format with a compiled parser (``asterisk``) gives
        its records as columns only (``records`` stays empty). A file over
        ``max_bytes`` is refused before a byte of it is read
        (:class:`FileTooLargeError`).
        """
        try:
            self._check_size(path)
            if columnar and self.fmt == "asterisk":
                fast = asterisk_fast.parse_master_csv_columns(
                    path, tenant=self.tenant, timezone=self.timezone
                )
                return _Mediated(records=[], skipped=fast.skipped, rejects=fast.rejects,
                                 lines=fast.lines, parsed_lines=len(fast.columns),
                                 columns=fast.columns)  # fmt: skip
            return self._parse(path)
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"ingest: cannot read {str(path)!r}: {exc}"
            raise UsageInputError(msg) from exc

    def _check_size(self, path: Path) -> None:
        size = path.stat().st_size
        if self.max_bytes and size > self.max_bytes:
            msg = (
                f"ingest: {str(path)!r} is {_gib(size)}, over the {_gib(self.max_bytes)} "
                "limit (--max-file-size); have the switch rotate its CDR files more often, "
                "split this one at line ends (split -C), or raise the limit"
            )
            raise FileTooLargeError(msg)

    def _parse(self, path: Path) -> _Mediated:
        if self.fmt.startswith("kamailio"):
            tz = zone(self.timezone)
            if self.fmt == "kamailio-dialog":
                acc = kamailio.parse_dialog_cdrs(path, tenant=self.tenant, timezone=tz)
            else:
                acc = kamailio.parse_acc(path, tenant=self.tenant, timezone=tz, carry=self.carry)
                self.carry[:] = acc.unpaired
            return _Mediated(records=acc.records, skipped=acc.skipped,
                             rejects=acc.rejects,
                             lines=acc.lines, parsed_lines=acc.consumed,
                             carried_in=acc.carried_in, unpaired=acc.unpaired)  # fmt: skip
        parse = {
            "asterisk": asterisk.parse_master_csv,
            "freeswitch-json": freeswitch.parse_json_cdr,
            "freeswitch-csv": freeswitch.parse_cdr_csv,
        }[self.fmt]
        parsed: Parsed = parse(path, tenant=self.tenant, timezone=self.timezone)
        return _Mediated(records=parsed.records, skipped=parsed.skipped, rejects=parsed.rejects,
                         lines=parsed.total, parsed_lines=len(parsed.records))  # fmt: skip


class FileTooLargeError(UsageInputError):
    """A CDR file over the ingest size limit: refused whole, the other files go on."""

    code = FILE_TOO_LARGE


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.2f} GiB"


@dataclass
class Ingestor:
    """Rates files one after the other into one rated file and one rejects sink.

    With ``state``, a file's debits and its ``extra`` keys are checkpointed in
    one atomic write: a file is charged completely or not at all.
    """

    rater: Rater | None  # None with ``send``
    mediation: Mediation
    writer: RatedWriter | None  # None with ``send``
    sink: RejectSink
    state: StatefulRating | None = None
    counters: PeriodCounters = field(default_factory=PeriodCounters)
    # ``--broker``: records go to topic ``cdrs`` (rated by the workers) instead
    send: Callable[[list[Record]], int] | None = None

    def ingest(self, path: Path, extra: dict[bytes, bytes] | None = None) -> FileSummary:
        summary = FileSummary(file=str(path))
        try:
            mediated = self.mediation.parse(path, columnar=self.send is None)
        except UsageInputError as exc:
            summary.status, summary.error, summary.lines = "failed", str(exc), 1
            reason = (
                FILE_TOO_LARGE
                if isinstance(exc, FileTooLargeError)
                else DECODE_ERROR
                if isinstance(exc.__cause__, UnicodeDecodeError)
                else FILE_ERROR
            )
            reject = Reject(source=f"{path}:0", reason=reason, message=str(exc), raw=b"")
            summary.rejected = _count(self._write_rejects([reject]))
            return summary
        summary.lines, summary.carried_in = mediated.lines, mediated.carried_in
        summary.parsed, summary.parsed_lines = mediated.parsed, mediated.parsed_lines
        summary.skipped, summary.unpaired = dict(mediated.skipped), len(mediated.unpaired)
        summary.rejected = _count(self._write_rejects(mediated.rejects))
        if mediated.columns is not None:
            self._rate_columns(mediated.columns, str(path), summary, extra)
        else:
            self._rate(mediated.records, str(path), summary, extra)
        return summary

    def _write_rejects(self, rejects: list[Reject]) -> list[Reject]:
        self.sink.write(rejects)
        return rejects

    def _rate(
        self,
        records: list[Record],
        name: str,
        summary: FileSummary,
        extra: dict[bytes, bytes] | None,
    ) -> None:
        """Rate as ``rate_file`` rates one batch; rejects are at ``file#index``."""
        keep = [i for i, r in enumerate(records) if r.account and r.cdr_id]
        kept = set(keep)
        bad = [_unusable(r, f"{name}#{i}") for i, r in enumerate(records) if i not in kept]
        if self.send is not None:
            summary.sent = self.send([records[i] for i in keep]) if keep else 0
            summary.rating_rejected = _count(self._write_rejects(bad))
            return
        assert self.rater is not None
        assert self.writer is not None
        currency = self.rater.tariff.currency
        if keep:
            try:
                columns = records_to_columns([records[i] for i in keep])
            except DecodeError as exc:
                bad += [_unusable(records[i], f"{name}#{i}", str(exc)) for i in keep]
                keep = []
        if keep:
            batch = Batch(columns, [], lambda: [f"{name}#{i}" for i in keep], name)
            result = rate_batch(self.rater, batch, self.counters, self.writer, self.state)
            bad += result.rejects
            summary.rated = result.rated
            summary.charged[currency] = result.charged
        if self.state is not None:
            self.state.ledger.checkpoint(extra)
        summary.rating_rejected = _count(self._write_rejects(bad))
        summary.charged.setdefault(currency, 0)

    def _rate_columns(
        self,
        columns: Columns,
        name: str,
        summary: FileSummary,
        extra: dict[bytes, bytes] | None,
    ) -> None:
        """:meth:`_rate` for a parser that gives columns (every row has account and cdr_id)."""
        assert self.rater is not None
        assert self.writer is not None
        currency = self.rater.tariff.currency
        bad: list[Reject] = []
        if len(columns):
            n = len(columns)
            batch = Batch(columns, [], lambda: [f"{name}#{i}" for i in range(n)], name)
            result = rate_batch(self.rater, batch, self.counters, self.writer, self.state)
            bad = result.rejects
            summary.rated = result.rated
            summary.charged[currency] = result.charged
        if self.state is not None:
            self.state.ledger.checkpoint(extra)
        summary.rating_rejected = _count(self._write_rejects(bad))
        summary.charged.setdefault(currency, 0)


def _unusable(record: Record, source: str, why: str = "") -> Reject:
    why = why or ("no account" if not record.account else "no cdr_id")
    message = f"ingest: {source}: cannot be rated: {why} (cdr_id {record.cdr_id!r})"
    raw = msgspec.json.encode({"cdr_id": record.cdr_id, "account": record.account})
    return Reject(source=source, reason=VALIDATION_ERROR, message=message, raw=raw)


def _count(rejects: Iterable[Reject]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reject in rejects:
        counts[reject.reason] = counts.get(reject.reason, 0) + 1
    return counts


def unpaired_rejects(events: Iterable[kamailio.AccEvent]) -> list[Reject]:
    """The halves still open when a run ends, as rejects for the operator to see."""
    return [
        Reject(
            source=e.source,
            reason="UNPAIRED",
            message=f"{e.source}: {e.method} of call {e.callid!r} has no other half",
            raw=e.raw,
        )
        for e in events
    ]


# --- spool folder --------------------------------------------------------------------------


class LedgerEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One processed spool file, one line of ``.ratewire-ledger.jsonl``."""

    name: str
    format: str
    status: str  # done | failed | duplicate
    size: int
    sha256: str
    at: str  # ISO 8601, UTC
    summary: dict[str, Any] = msgspec.field(default_factory=dict)


def complete_files(folder: Path) -> list[Path]:
    """Files of ``folder`` ready to ingest, in name order.

    A file is complete when it has a final name (not hidden, not ``.tmp`` or
    ``.part``: it was renamed into place) or when a ``NAME.done`` marker exists.
    """
    names = {p.name for p in folder.iterdir() if p.is_file()}
    ready = []
    for name in sorted(names):
        if name.endswith(_MARKER) and name[: -len(_MARKER)] in names:
            continue  # a marker, not data
        provisional = name.startswith(".") or name.endswith(_INCOMPLETE_SUFFIXES)
        if not provisional or f"{name}{_MARKER}" in names:
            ready.append(folder / name)
    return ready


def read_ledger(folder: Path) -> Iterator[LedgerEntry]:
    path = folder / LEDGER_NAME
    if not path.exists():
        return
    decoder = msgspec.json.Decoder(LedgerEntry)
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except msgspec.DecodeError as exc:
                msg = f"ingest: {path}:{number}: not a ledger entry ({exc}); repair or remove it"
                raise UsageInputError(msg) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _move(path: Path, to: Path) -> None:
    """Move ``path`` (and its ``.done`` marker) into folder ``to``, never overwriting."""
    to.mkdir(exist_ok=True)
    target, n = to / path.name, 0
    while target.exists():
        n += 1
        target = to / f"{path.name}.{n}"
    path.rename(target)
    path.with_name(path.name + _MARKER).unlink(missing_ok=True)


@dataclass
class Spool:
    """A spool folder: what was processed (by sha256) and where files go."""

    folder: Path
    charged: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, folder: Path) -> Spool:
        if not folder.is_dir():
            msg = f"--watch {folder}: no such folder"
            raise UsageInputError(msg)
        return cls(folder, {e.sha256 for e in read_ledger(folder) if e.status == "done"})

    def record(self, entry: LedgerEntry) -> None:
        with (self.folder / LEDGER_NAME).open("ab") as file:
            file.write(msgspec.json.encode(entry) + b"\n")
            file.flush()
        if entry.status == "done":
            self.charged.add(entry.sha256)

    def once(self, ingestor: Ingestor, now: Callable[[], datetime]) -> list[FileSummary]:
        """Ingest every complete file once; return their summaries in order."""
        return [self._one(path, ingestor, now) for path in complete_files(self.folder)]

    def _one(self, path: Path, ingestor: Ingestor, now: Callable[[], datetime]) -> FileSummary:
        try:
            size, sha = path.stat().st_size, _sha256(path)
        except OSError:
            size, sha = 0, ""
        key = STATE_KEY + sha.encode()
        state = ingestor.state
        seen = sha in self.charged or (state is not None and state.ledger.get(key) is not None)
        if sha and seen:
            summary = FileSummary(file=str(path), status="duplicate")
        else:
            entry = LedgerEntry(name=path.name, format=ingestor.mediation.fmt, status="done",
                                size=size, sha256=sha, at=now().isoformat())  # fmt: skip
            summary = ingestor.ingest(path, {key: msgspec.json.encode(entry)} if sha else None)
        at = now().isoformat()
        self.record(LedgerEntry(name=path.name, format=ingestor.mediation.fmt,
                                status=summary.status, size=size, sha256=sha, at=at,
                                summary=summary.to_dict()))  # fmt: skip
        _move(path, self.folder / ("failed" if summary.status == "failed" else "done"))
        return summary


def daily_summary(folder: Path, day: str | None = None) -> list[dict[str, Any]]:
    """Per day (UTC) and source format: files, lines, rated, skipped, rejected, amounts."""
    days: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in read_ledger(folder):
        when = datetime.fromisoformat(entry.at).astimezone(UTC).date().isoformat()
        if day is not None and when != day:
            continue
        row = days.setdefault((when, entry.format), {
            "day": when, "source": entry.format, "files": 0, "duplicates": 0, "failed": 0,
            "lines": 0, "rated": 0, "skipped": 0, "rejected": 0, "charged": {},
        })  # fmt: skip
        s = entry.summary
        row["files"] += 1
        row["duplicates"] += entry.status == "duplicate"
        row["failed"] += entry.status == "failed"
        row["lines"] += s.get("lines", 0)
        row["rated"] += s.get("rated", 0)
        row["skipped"] += s.get("skipped", 0)
        row["rejected"] += s.get("rejected", 0) + s.get("rating_rejected", 0)
        where = f"{folder / LEDGER_NAME}: {entry.name}"
        for cur, amount in s.get("charged", {}).items():
            row["charged"][cur] = row["charged"].get(cur, 0) + parse_amount(amount, where)
    for row in days.values():
        row["charged"] = {c: format_amount(n) for c, n in sorted(row["charged"].items())}
    return [days[k] for k in sorted(days)]


__all__ = ["FORMATS", "FileSummary", "Ingestor", "Mediation", "Spool", "complete_files",
           "daily_summary"]  # fmt: skip
