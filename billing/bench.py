"""Measure closing a cycle: the mass run, accept, render and send on a generated population.

    python -m billing.bench --accounts 1000000 [--store DIR] [--keep] [--repeat 3]
                            [--render 2000]

Builds a population (:mod:`billing.population`) in a RocksDB billing store, or
reuses the one in ``--store DIR`` built from the same spec. Each measured run
works on a clone of it (hard links to the table files, as a RocksDB checkpoint
does), so every run starts from the same state. Then:

1. ``run``: :func:`billing.run.run_on` for the cycle, draft invoices for every
   account, no rendering; ``--repeat`` times, each on a fresh clone; median.
2. ``breakdown``: one more run with the run's stages timed (wrappers around
   the functions :func:`run_on` calls; they cost a few µs per account, so this
   run is not the headline), in µs per account, children under parents.
3. ``accept``: :meth:`~billing.invoices.InvoiceStore.issue` of every draft.
4. ``render``: ``--render`` issued invoices, spread over the accounts, to HTML
   and text (:class:`~billing.render.Renderer`), templates compiled first.
5. ``send``: :func:`billing.outbox.send` of the same invoices to an outbox folder.

Prints progress on stderr and one JSON line on stdout. The OS page cache keeps
the clone's files warm: the figures are for a store the machine has read before.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from balances.store import RocksStore
from billing import accounts, invoices, run, search, usage
from billing.catalog import Catalog, load_catalog
from billing.cycles import next_cycle
from billing.invoices import InvoiceStore
from billing.outbox import send
from billing.population import Spec, build
from billing.render import Renderer
from billing.storage import open_store

ACTOR = "bench"


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the store ------------------------------------------------------------------------
def population(folder: Path, spec: Spec, catalog: Catalog) -> tuple[Path, dict[str, Any]]:
    """The population's store folder, built unless ``folder`` holds one of ``spec``."""
    path, manifest = folder / "population", folder / "population.json"
    wanted = asdict(spec)
    if manifest.exists():
        known = json.loads(manifest.read_text())
        if known.get("spec") == wanted and path.is_dir():
            say(f"reusing the population in {path}")
            return path, {**known["report"], "reused": True}
    shutil.rmtree(path, ignore_errors=True)
    manifest.unlink(missing_ok=True)
    say(f"building {spec.accounts:,} accounts in {path}")
    with open_store(path) as store:
        report = build(store, spec, catalog, progress=say).as_dict()
        started = time.perf_counter()
        store.compact()  # every run starts from the same settled store, as after a quiet day
        report["seconds"]["compact"] = round(time.perf_counter() - started, 2)
    manifest.write_text(json.dumps({"spec": wanted, "report": report}))
    say(f"population built in {report['seconds']['total']:.1f} s")
    return path, report


def clone(source: Path, target: Path) -> Path:
    """A copy of a closed RocksDB folder: table files hard-linked (RocksDB never changes
    one in place), the rest (manifest, WAL, options) copied."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.suffix in (".sst", ".blob"):
            os.link(item, target / item.name)
        elif item.is_file():
            shutil.copy2(item, target / item.name)
    return target


# -- timing the run's stages ----------------------------------------------------------
class Tracer:
    """Inclusive wall time per call path of the wrapped functions, and GC pauses."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.times: dict[tuple[str, ...], float] = {}
        self.gc_seconds = 0.0
        self._gc_start = 0.0

    def _add(self, path: tuple[str, ...], seconds: float) -> None:
        self.times[path] = self.times.get(path, 0.0) + seconds

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append(label)
            path = tuple(self.stack)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(path, time.perf_counter() - started)
                self.stack.pop()

        return timed

    def wrap_iter(self, label: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = fn(*args, **kwargs)
            while True:
                self.stack.append(label)
                path = tuple(self.stack)
                started = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self._add(path, time.perf_counter() - started)
                    self.stack.pop()
                yield item

        return timed

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_start

    def tree(self, accounts: int, total: float) -> dict[str, Any]:
        """µs per account: each path inclusive, with what its children leave (``self``)."""

        def node(path: tuple[str, ...]) -> dict[str, Any] | float:
            own = self.times[path]
            children = sorted(
                (p for p in self.times if len(p) == len(path) + 1 and p[: len(path)] == path),
                key=lambda p: -self.times[p],
            )
            us = round(own / accounts * 1e6, 2)
            if not children:
                return us
            out: dict[str, Any] = {"total": us}
            for child in children:
                out[child[-1]] = node(child)
            rest = own - sum(self.times[c] for c in children)
            out["self"] = round(rest / accounts * 1e6, 2)
            return out

        tops = sorted((p for p in self.times if len(p) == 1), key=lambda p: -self.times[p])
        out: dict[str, Any] = {"run_on": round(total / accounts * 1e6, 2)}
        for top in tops:
            out[top[0]] = node(top)
        out["run_on self"] = round((total - sum(self.times[p] for p in tops)) / accounts * 1e6, 2)
        out["gc pauses (within the above)"] = round(self.gc_seconds / accounts * 1e6, 2)
        return out


class _TimedCodec:
    def __init__(self, inner: Any, method: str, timed: Callable[..., Any]) -> None:
        self._inner = inner
        setattr(self, method, timed)


@contextmanager
def traced(tracer: Tracer) -> Iterator[Tracer]:
    """Wrap what :func:`billing.run.run_on` calls (restored on exit)."""
    targets: list[tuple[Any, str, str]] = [
        (run, "_settled", "prepaid renewal outcomes (_settled)"),
        (run, "renewals", "renewals()"),
        (run, "_drafts", "_drafts"),
        (usage, "read_totals", "usage.read_totals"),
        (InvoiceStore, "last_invoices", "InvoiceStore.last_invoices"),
        (InvoiceStore, "previous", "InvoiceStore.previous"),
        (search, "pointers", "search.pointers (idx/last)"),
        (InvoiceStore, "get_many", "InvoiceStore.get_many"),
        (usage, "usage_lines", "usage.usage_lines"),
        (run, "account_charges", "charges.account_charges"),
        (run, "advance_billed_of", "charges.advance_billed_of"),
        (usage, "balances_consumed", "usage.balances_consumed"),
        (usage, "close_cycle", "usage.close_cycle"),
        (InvoiceStore, "put_drafts", "InvoiceStore.put_drafts"),
        (search, "stage_rows", "search.stage_rows (index rows)"),
        (search, "point_last", "search.point_last"),
        (RocksStore, "get_many", "RocksStore.get_many"),
        (RocksStore, "write", "RocksStore.write"),
    ]
    codecs = [
        (invoices, "_INVOICE", "decode", "msgpack decode Invoice"),
        (invoices, "_PREVIOUS", "decode", "msgpack decode Previous"),
        (invoices, "_ENC", "encode", "msgpack encode Invoice"),
        (usage, "_TOTALS", "decode", "msgpack decode UsageTotals"),
    ]
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in targets
             if name in owner.__dict__]  # fmt: skip
    codecs = [c for c in codecs if hasattr(c[0], c[1])]
    saved += [(owner, name, getattr(owner, name)) for owner, name, _, _ in codecs]
    saved.append((accounts, "iter_billing_inputs", accounts.iter_billing_inputs))
    try:
        for owner, name, label in targets:
            if name in owner.__dict__:  # modules change; time what is there
                setattr(owner, name, tracer.wrap(label, getattr(owner, name)))
        for owner, name, method, label in codecs:
            inner = getattr(owner, name)
            wrapped = tracer.wrap(label, getattr(inner, method))
            setattr(owner, name, _TimedCodec(inner, method, wrapped))
        accounts.iter_billing_inputs = tracer.wrap_iter(
            "accounts.iter_billing_inputs (scan + decode)", accounts.iter_billing_inputs
        )
        gc.callbacks.append(tracer.on_gc)
        yield tracer
    finally:
        gc.callbacks.remove(tracer.on_gc)
        for owner, name, value in saved:
            setattr(owner, name, value)


# -- the measurements -----------------------------------------------------------------
def measure_run(
    path: Path, cycle: str, catalog: Catalog, tracer: Tracer | None = None, processes: int = 1
) -> dict[str, Any]:
    before = load()
    with open_store(path) as store:
        started = time.perf_counter()
        if tracer is None:
            summary = run.run_on(store, cycle, catalog=catalog, actor=ACTOR, processes=processes)
        else:
            with traced(tracer):
                summary = run.run_on(store, cycle, catalog=catalog, actor=ACTOR)
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "drafted": summary.drafted,
            "accounts": summary.accounts, "pending": summary.pending,
            "load_before": before, "load_after": load()}  # fmt: skip


def measure_after(path: Path, cycle: str, catalog: Catalog, render: int, outbox: Path
                  ) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    with open_store(path) as store:
        inv = InvoiceStore(store)
        started = time.perf_counter()
        ids = inv.ids(cycle)
        issued = inv.issue(ids, ACTOR, f"{next_cycle(cycle)}-28")
        seconds = time.perf_counter() - started
        out["accept"] = {"invoices": len(issued), "seconds": round(seconds, 2),
                         "invoices_per_s": round(len(issued) / seconds)}  # fmt: skip
        step = max(len(ids) // max(render, 1), 1)
        sample = ids[::step][:render]
        docs = [d for d in inv.get_many(sample) if d is not None]
        renderer = Renderer(decimals=catalog.decimals)
        started = time.perf_counter()
        for doc in {(d.brand, d.language, bool(d.credit_note_for)): d for d in docs}.values():
            renderer.render(doc, "html"), renderer.render(doc, "txt")
        compile_seconds = time.perf_counter() - started
        started = time.perf_counter()
        chars = 0
        for doc in docs:
            chars += len(renderer.render(doc, "html")) + len(renderer.render(doc, "txt"))
        seconds = time.perf_counter() - started
        out["render"] = {"invoices": len(docs), "formats": ["html", "txt"],
                         "seconds": round(seconds, 3), "invoices_per_s": round(len(docs) / seconds),
                         "template_compile_seconds": round(compile_seconds, 3),
                         "mean_chars": chars // max(len(docs), 1)}  # fmt: skip
        started = time.perf_counter()
        summary = send(inv, sample, outbox=outbox, renderer=renderer, actor=ACTOR)
        seconds = time.perf_counter() - started
        out["send"] = {"invoices": summary.sent, "files": len(summary.files),
                       "seconds": round(seconds, 3),
                       "invoices_per_s": round(summary.sent / seconds)}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m billing.bench", description=__doc__.split("\n")[0])
    p.add_argument("--accounts", type=int, default=1_000_000)
    p.add_argument("--cycle", default="2026-11")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--records", type=float, default=5.0, help="mean rated records per account and cycle"
    )
    p.add_argument(
        "--no-history", action="store_true", help="no previous cycle (no previous invoices)"
    )
    p.add_argument(
        "--store", type=Path, help="keep the population here and reuse it when it matches"
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the last run's store (in --store or a temp folder)",
    )
    p.add_argument("--repeat", type=int, default=3, help="measured runs (median)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="processes of the measured runs (the breakdown run uses one)")  # fmt: skip
    p.add_argument("--no-breakdown", action="store_true")
    p.add_argument("--render", type=int, default=2000, help="invoices to render and send (0: none)")
    args = p.parse_args(argv)
    spec = Spec(accounts=args.accounts, cycle=args.cycle, seed=args.seed, records=args.records,
                history=not args.no_history)  # fmt: skip
    catalog = load_catalog()
    folder = args.store or Path(tempfile.mkdtemp(prefix="ratewire-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "work"
    result: dict[str, Any] = {"accounts": args.accounts, "cycle": args.cycle}
    try:
        source, result["population"] = population(folder, spec, catalog)
        runs = []
        for k in range(args.repeat):
            runs.append(measure_run(clone(source, work), args.cycle, catalog,
                                    processes=args.processes))  # fmt: skip
            say(f"run {k + 1}/{args.repeat}: {runs[-1]}")
        if runs:
            seconds = statistics.median(r["seconds"] for r in runs)
            result |= {"drafted": runs[-1]["drafted"], "seconds": seconds,
                       "processes": args.processes,
                       "accounts_per_s": round(args.accounts / seconds), "runs": runs}  # fmt: skip
        if not args.no_breakdown:
            tracer = Tracer()
            traced_run = measure_run(clone(source, work), args.cycle, catalog, tracer)
            result["breakdown_us_per_account"] = tracer.tree(args.accounts, traced_run["seconds"])
            result["breakdown_run_seconds"] = traced_run["seconds"]
            say(f"breakdown run: {traced_run}")
        if args.render:
            if not work.exists():  # nothing drafted yet: an unmeasured run first
                measure_run(clone(source, work), args.cycle, catalog, processes=args.processes)
            result |= measure_after(work, args.cycle, catalog, args.render, folder / "outbox")
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(folder / "outbox", ignore_errors=True)
            if args.store is None:
                shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(result), flush=True)  # what was measured, even when a step failed
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
