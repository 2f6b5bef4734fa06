"""``ratewire ingest``: switch CDR files, or a spool folder, mediated and rated.

Three forms::

    ratewire ingest --format F FILE... --tenant T --tariffs P --out R --rejects J
    ratewire ingest --watch DIR --format F --tenant T --tariffs P --out R --rejects J [--once]
    ratewire ingest --summary DIR [--day YYYY-MM-DD]

With files, ``--out`` and ``--rejects`` hold this run's output only (as with
``ratewire rate``). With ``--watch`` they are appended to, cycle after cycle,
since a spool is a stream. ``--watch`` without ``--once`` polls every second
until SIGINT or SIGTERM, finishing the file at hand first.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import msgspec
from aiokafka.errors import KafkaError

from balances.ledger import open_ledger
from engine.exceptions import UsageInputError
from engine.ingest import (
    FORMATS,
    MAX_FILE_BYTES,
    FileSummary,
    Ingestor,
    Mediation,
    Spool,
    daily_summary,
    unpaired_rejects,
)
from engine.mediation.common import zone
from engine.rate_file import StatefulRating
from engine.rated_output import RatedWriter
from engine.records import Record
from engine.rejects import RejectSink
from tariffs.loader import load_tariff
from tariffs.rating import Rater

POLL_SECONDS = 1.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("ingest", help="mediate and rate switch CDR files or a spool")
    parser.add_argument("files", nargs="*", type=Path, help="CDR files, in the order to read")
    parser.add_argument("--format", choices=FORMATS, help="the switch's CDR format")
    parser.add_argument("--tenant", help="tenant of every record")
    parser.add_argument("--timezone", default="UTC", help="zone of local times in the CDRs")
    parser.add_argument("--tariffs", type=Path, help="native plan (.toml) or CGRateS folder")
    parser.add_argument("--currency", help="currency of an imported CGRateS plan")
    parser.add_argument("--plan-timezone", help="time zone of an imported CGRateS plan")
    parser.add_argument("--out", type=Path, help="rated records (.jsonl)")
    parser.add_argument("--broker", help="kafka://host:port: send the records to topic cdrs "
                        "for the workers to rate, instead of rating here")  # fmt: skip
    parser.add_argument("--rejects", type=Path, help="rejected lines and records (.jsonl)")
    parser.add_argument("--state", type=Path, help="balances store (RocksDB folder) to debit")
    parser.add_argument("--units", type=Path, help="unit catalog (default: the sample units)")
    parser.add_argument("--loyalty", type=Path, help="loyalty rules: points earned with --state")
    parser.add_argument("--watch", type=Path, help="spool folder to ingest complete files from")
    parser.add_argument("--once", action="store_true", help="with --watch: one pass, then exit")
    parser.add_argument("--summary", type=Path, help="spool folder: daily summary from its ledger")
    parser.add_argument("--day", help="with --summary: only this UTC day (YYYY-MM-DD)")
    parser.add_argument("--max-file-size", type=_size, default=MAX_FILE_BYTES,
                        help="refuse larger files (512M, 2G; 0: no limit; default 1G)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON")


def _size(text: str) -> int:
    """``512M``, ``2G``, ``1048576``: a size in bytes (argparse type)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, scale = (
        (text[:-1], units[text[-1].upper()]) if text[-1:].upper() in units else (text, 1)
    )
    try:
        value = int(float(number) * scale)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"--max-file-size: {text!r} is not a size such as 512M, 2G or 0"
        raise argparse.ArgumentTypeError(msg)
    return value


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The command's answer as JSON-ready data (the caller prints it)."""
    if args.summary is not None:
        return {"days": daily_summary(args.summary, args.day)}
    _require(args)
    if args.watch is not None and args.files:
        msg = "give either FILE... or --watch DIR, not both"
        raise UsageInputError(msg)
    if args.watch is None and not args.files:
        msg = "give CDR files, --watch DIR or --summary DIR"
        raise UsageInputError(msg)
    zone(args.timezone)  # a bad zone is the command's error, not every file's
    mediation = Mediation(args.format, args.tenant, args.timezone, max_bytes=args.max_file_size)
    if args.broker:
        return _to_broker(args, mediation)
    with ExitStack() as stack:
        rater = Rater(load_tariff(args.tariffs, currency=args.currency,
                                  timezone=args.plan_timezone))  # fmt: skip
        state = _state(args, rater, stack)
        if args.watch is not None:

            @contextmanager
            def cycle() -> Iterator[Ingestor]:
                with (
                    _appending(args.out) as out,
                    RejectSink(args.rejects) as sink,
                    RatedWriter(out, rater.compiled) as writer,
                ):
                    yield Ingestor(rater, mediation, writer, sink, state)

            return _watch(args, cycle, mediation)
        args.rejects.write_bytes(b"")  # this run's rejects only, as ``ratewire rate``
        sink = stack.enter_context(RejectSink(args.rejects))
        writer = stack.enter_context(RatedWriter(args.out, rater.compiled))
        ingestor = Ingestor(rater, mediation, writer, sink, state)
        files = [_ingest_file(ingestor, path) for path in args.files]
        return _answer(files, mediation, sink)


def _to_broker(args: argparse.Namespace, mediation: Mediation) -> dict[str, Any]:
    """Mediate here, rate in the workers: each file's records go to ``cdrs`` once parsed."""
    from engine.broker import bootstrap_of
    from engine.produce import send_records

    bootstrap = bootstrap_of(args.broker)

    def send(records: list[Record]) -> int:
        try:
            return asyncio.run(send_records(bootstrap, records))
        except KafkaError as exc:
            msg = f"ingest --broker {args.broker}: {exc}"
            raise UsageInputError(msg) from exc

    @contextmanager
    def cycle() -> Iterator[Ingestor]:
        with RejectSink(args.rejects) as sink:
            yield Ingestor(None, mediation, None, sink, send=send)

    if args.watch is not None:
        return _watch(args, cycle, mediation)
    args.rejects.write_bytes(b"")
    with cycle() as ingestor:
        files = [ingestor.ingest(path) for path in args.files]
        return _answer(files, mediation, ingestor.sink)


def _require(args: argparse.Namespace) -> None:
    needed = ("format", "tenant", "rejects") if args.broker else (
        "format", "tenant", "tariffs", "out", "rejects")  # fmt: skip
    missing = [f"--{n}" for n in needed if getattr(args, n) is None]
    if missing:
        msg = f"missing {', '.join(missing)} (needed to ingest; --summary DIR needs none)"
        raise UsageInputError(msg)


def _state(args: argparse.Namespace, rater: Rater, stack: ExitStack) -> StatefulRating | None:
    if args.state is None:
        return None
    from balances.debit import Debitor
    from balances.loyalty import load_loyalty

    ledger = open_ledger(args.state, args.units)
    stack.callback(ledger.close)
    earn = load_loyalty(ledger.state.units, args.loyalty).earn if args.loyalty else {}
    return StatefulRating(ledger, Debitor(ledger.state, rater, earn))


def _ingest_file(ingestor: Ingestor, path: Path) -> FileSummary:
    summary = ingestor.ingest(path)
    if ingestor.state is not None and summary.status == "failed":
        ingestor.state.ledger.checkpoint()
    return summary


def _answer(files: list[FileSummary], mediation: Mediation, sink: RejectSink) -> dict[str, Any]:
    """Per-file and total counts; the halves of calls still open are reported and rejected."""
    left = list(mediation.carry)
    sink.write(unpaired_rejects(left))
    total = FileSummary(file="total", status="")
    for summary in files:
        total.add(summary)
    return {
        "files": [f.to_dict() for f in files],
        "total": {**total.to_dict(), "files": len(files)},
        "balanced": all(f.balanced() for f in files) and total.balanced(),
        "unpaired_at_end": [
            {"source": e.source, "method": e.method, "callid": e.callid} for e in left
        ],
    }


def _watch(
    args: argparse.Namespace, cycle: Callable[[], AbstractContextManager[Ingestor]],
    mediation: Mediation,
) -> dict[str, Any]:  # fmt: skip
    """Poll the spool (one ``cycle`` per pass) until ``--once`` or a signal."""
    spool = Spool.open(args.watch)
    stop = threading.Event()
    files: list[FileSummary] = []
    with _stop_on_signals(stop):
        while True:
            with cycle() as ingestor:
                files += spool.once(ingestor, lambda: datetime.now(UTC))
            if args.once or stop.is_set() or stop.wait(POLL_SECONDS):
                break
    with RejectSink(args.rejects) as sink:
        return _answer(files, mediation, sink)


@contextmanager
def _appending(out: Path) -> Iterator[Path]:
    """A scratch file for one cycle's rated records, appended to ``out`` afterwards."""
    scratch = out.with_name(f".{out.name}.cycle")
    try:
        yield scratch
    finally:
        with out.open("ab") as target:
            target.write(scratch.read_bytes() if scratch.exists() else b"")
        scratch.unlink(missing_ok=True)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` (the current file is finished) instead of killing."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def render(answer: dict[str, Any]) -> str:
    """The answer as a table for people."""
    if "days" in answer:
        rows = [f"{d['day']} {d['source']:<16} files {d['files']:>4}  lines {d['lines']:>8}  "
                f"rated {d['rated']:>8}  skipped {d['skipped']:>6}  rejected {d['rejected']:>6}  "
                + " ".join(f"{a} {c}" for c, a in d["charged"].items())
                for d in answer["days"]]  # fmt: skip
        return "\n".join(rows or ["no files in the ledger for that day"]) + "\n"
    lines = []
    for f in [*answer["files"], answer["total"]]:
        lines.append(
            f"{f['file']} [{f['status'] or 'all'}]: lines {f['lines']}, parsed {f['parsed']}, "
            f"skipped {f['skipped']} {f['skipped_by_rule']}, rejected {f['rejected']} "
            f"{f['rejected_by_reason']}, rated {f['rated']}, rating rejected "
            f"{f['rating_rejected']} {f['rating_rejected_by_reason']}, unpaired {f['unpaired']}, "
            f"charged " + " ".join(f"{a} {c}" for c, a in f["charged"].items())
        )
    lines += [f"unpaired at end: {u['source']} {u['method']} {u['callid']}"
              for u in answer["unpaired_at_end"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    """Run and print (a table, or JSON with ``--json``); errors propagate to the CLI."""
    answer = run(args)
    if args.json:
        sys.stdout.write(msgspec.json.encode(answer).decode() + "\n")
    else:
        sys.stdout.write(render(answer))
    return 0
