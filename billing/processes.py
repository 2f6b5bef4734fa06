"""A mass run split over processes: spans of accounts drafted in parallel, written here.

Pricing a million accounts is Python work bound to one core. :func:`run_spans`
starts one process per span of accounts (:func:`billing.accounts.split_group`);
each opens the billing store read-only (RocksDB allows readers beside the
writer), drafts its span chunk by chunk exactly as a one-process run does
(:func:`billing.run.chunk_writes`) and sends each chunk's batch here, where
it is written as one write, as in a one-process run. So the crash story is
the same: a chunk's drafts, cycle-closed marks and progress marks land
together or not at all, and running the cycle again finishes what is
missing. A span process never writes, and stops when this process goes
away (its pipe breaks).

The spans read what this run does not change (profiles, events, usage, earlier
invoices and renewal outcomes) and each writes only its own accounts' keys,
so a reader's view from the start of the run is the right one.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import msgspec

from balances.store import RocksStore, WriteBatch
from billing.accounts import Span
from billing.exceptions import BillingError
from billing.run import DraftJob, RunSummary, chunk_writes
from billing.storage import open_store
from engine import collector

_Ops = list[tuple[bytes, bytes | None]]


class _Chunk(msgspec.Struct, array_like=True, tag=True, gc=False):
    ops: _Ops


class _Done(msgspec.Struct, array_like=True, tag=True, gc=False):
    summary: RunSummary


class _Failed(msgspec.Struct, array_like=True, tag=True, gc=False):
    error: str


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Chunk | _Done | _Failed)


def run_spans(
    store: RocksStore, spans: Sequence[Span], job: DraftJob, summary: RunSummary,
    after_chunk: Callable[[int], None] | None = None,
) -> None:  # fmt: skip
    """Draft ``job`` over ``spans``, one process each; write their chunks into ``store``.

    ``summary`` gets every span's counts. ``after_chunk`` is called with a running
    count after each chunk is written (any span's). A span that fails fails the run
    (the others are stopped); what was written stays, and a re-run finishes it.
    """
    context = multiprocessing.get_context("spawn")  # never fork a process holding RocksDB
    running: dict[Connection, tuple[Span, Any]] = {}
    try:
        for span in spans:
            ours, theirs = context.Pipe(duplex=False)
            process = context.Process(target=_draft_span, args=(store.path, job, span, theirs),
                                      name=f"billing-run-{len(running)}", daemon=True)  # fmt: skip
            process.start()
            theirs.close()
            running[ours] = (span, process)
        written = 0
        while running:
            for conn in wait(list(running)):
                assert isinstance(conn, Connection)
                span, process = running[conn]
                message = _receive(conn, span, job.cycle)
                if isinstance(message, _Chunk):
                    store.write(WriteBatch.of(message.ops))
                    if after_chunk is not None:
                        after_chunk(written)
                    written += 1
                    continue
                del running[conn]
                process.join()
                if isinstance(message, _Failed):
                    msg = f"billing run of {job.cycle}, {_name(span)}: {message.error}"
                    raise BillingError(msg)
                summary.add(message.summary)
    finally:
        for conn, (_, process) in running.items():
            process.terminate()
            process.join()
            conn.close()


def _receive(conn: Connection, span: Span, cycle: str) -> _Chunk | _Done | _Failed:
    try:
        raw = conn.recv_bytes()
    except EOFError:
        msg = (
            f"billing run of {cycle}: the process drafting {_name(span)} ended without a"
            " word (killed, or out of memory?); run the cycle again to finish it"
        )
        raise BillingError(msg) from None
    message: _Chunk | _Done | _Failed = _DECODER.decode(raw)
    return message


def _name(span: Span) -> str:
    first, stop = span
    upto = "the last" if stop is None else repr(stop.decode(errors="replace"))
    return f"accounts {first.decode(errors='replace')!r} up to {upto}"


def _draft_span(path: Path, job: DraftJob, span: Span, conn: Connection) -> None:
    """In a span process: every chunk's batch to ``conn``, then the span's summary."""
    try:
        summary = RunSummary(job.cycle)
        with collector.paused(), open_store(path, read_only=True) as store:
            for _, batch in chunk_writes(store, job, summary, span=span):
                conn.send_bytes(_ENCODER.encode(_Chunk(list(batch.operations()))))
        conn.send_bytes(_ENCODER.encode(_Done(summary)))
    except BrokenPipeError:
        return  # the run's process is gone: nothing to tell
    except BaseException as exc:  # told to the run, which fails with it
        text = "".join(traceback.format_exception_only(exc)).strip()
        conn.send_bytes(_ENCODER.encode(_Failed(text)))
        traceback.print_exc()
    finally:
        conn.close()
