"""Rated records as JSON lines: the amount and the breakdown that explains it.

One line per rated record::

    {"cdr_id": "c1", "tenant": "t", "account": "a", "category": "call",
     "subject": "a", "destination": "4930123", "start_us": 1762074000000000,
     "usage": 45, "cost": "0.55", "cost_nanos": 550000000, "currency": "EUR",
     "plan": "RP_1", "zone": "DST_DE", "prefix": "49", "connect_fee": "0.1",
     "flags": 0, "spans": [{"destination_rate": "DR_DE", "timing": "*any",
     "rate": "RT_DE", "step": 0, "offset": 0, "usage": 45, "billed": 45,
     "increment": 1, "price": "0.01", "rate_unit": 1, "amount": "0.45"}]}

Written per batch by a compiled byte writer (:mod:`engine.json_kernel`) straight
from the kernel arrays; :meth:`RatedWriter.encode_slow` is its msgspec twin.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from engine.columns import I64, Columns
from engine.json_kernel import rated_lines_kernel
from tariffs.compile import (
    BINDING_DESTINATION,
    BINDING_DRATE,
    BINDING_TIMING,
    DRATE_RATE,
    RATE_STEP_HI,
    RATE_STEP_LO,
    STEP_INCREMENT,
    STEP_PRICE,
    STEP_UNIT,
    CompiledTariff,
)
from tariffs.model import ANY
from tariffs.money import format_amount, format_units
from tariffs.rating import RatedBatch

MEMO_LIMIT = 200_000


class RatedSpan(msgspec.Struct, frozen=True, gc=False):
    destination_rate: str
    timing: str
    rate: str
    step: int
    offset: int
    usage: int
    billed: int
    increment: int
    price: str
    rate_unit: int
    amount: str


class BalanceUse(msgspec.Struct, frozen=True, gc=False):
    balance: str
    unit: str
    delta: int
    after: int


class RatedRecord(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    cdr_id: str
    tenant: str
    account: str
    category: str
    subject: str
    destination: str
    start_us: int
    usage: int
    cost: str
    cost_nanos: int
    currency: str
    plan: str
    zone: str
    prefix: str
    connect_fee: str
    flags: int
    spans: list[RatedSpan]
    charged: str | None = None  # money paid from balances (with --state)
    covered: int | None = None  # usage units paid by bundles
    insufficient_credit: bool | None = None
    balances: list[BalanceUse] | None = None


@dataclass(frozen=True, slots=True)
class Debits:
    """What debiting a batch did, for the rated records (``ratewire rate --state``).

    ``journal_record`` is ascending: the rows of record ``i`` are contiguous.
    """

    paid: I64
    covered: I64
    flags: I64
    currency_scale: int
    journal_record: I64
    balance: list[str]  # per journal row
    unit: list[str]  # per journal row
    delta: I64
    after: I64


_RECORD_KEYS = ("cdr_id", "tenant", "account", "category", "subject", "destination",
                "start_us", "usage", "cost", "cost_nanos")  # fmt: skip
_SPAN_KEYS = ("destination_rate", "timing", "rate", "step", "offset", "usage", "billed",
              "increment", "price", "rate_unit", "amount")  # fmt: skip
STRING_COLUMNS = ("cdr_id", "tenant", "account", "category", "subject", "destination")


def _blob(parts: list[bytes]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), offsets


class JsonTables:
    """A tariff's names and the record's keys, pre-encoded once for the JSON kernel."""

    def __init__(self, c: CompiledTariff) -> None:
        enc = msgspec.json.encode
        keys = [(b"" if i == 0 else b",") + enc(k) + b":" for i, k in enumerate(_RECORD_KEYS)]
        keys.append(b',"currency":' + enc(c.tariff.currency) + b',"plan":')
        keys += [b',"zone":', b',"prefix":', b',"connect_fee":', b',"flags":', b',"spans":[']
        keys += [(b"" if i == 0 else b",") + enc(k) + b":" for i, k in enumerate(_SPAN_KEYS)]
        keys += [b',"charged":', b',"covered":', b',"insufficient_credit":', b',"balances":[']
        keys += [b'{"balance":', b',"unit":', b',"delta":', b',"after":']
        self.keys, self.key_off = _blob(keys)
        self._spare: npt.NDArray[np.uint8] = np.empty(0, dtype=np.uint8)
        names = [*c.plan_names, *c.destination_names, ANY, *c.drate_names, *c.timing_names,
                 *c.rate_names]  # fmt: skip
        self.names, self.name_off = _blob([enc(n) for n in names])
        n_plans, n_dest = len(c.plan_names), len(c.destination_names)
        self.plan_name = np.arange(n_plans, dtype=np.int64)
        dest = c.bindings[:, BINDING_DESTINATION]
        self.zone_name = np.where(dest >= 0, n_plans + dest, n_plans + n_dest)
        drate = c.bindings[:, BINDING_DRATE]
        base = n_plans + n_dest + 1
        timing_base = base + len(c.drate_names)
        rate_base = timing_base + len(c.timing_names)
        self.span_names = np.stack(
            [base + drate, timing_base + c.bindings[:, BINDING_TIMING],
             rate_base + c.drates[drate, DRATE_RATE]], axis=1,
        ).astype(np.int64)  # fmt: skip
        step_no = np.zeros(len(c.steps), dtype=np.int64)
        for lo, hi in c.rates[:, [RATE_STEP_LO, RATE_STEP_HI]].tolist():
            step_no[lo:hi] = np.arange(hi - lo)
        self.step_cols = np.stack(
            [step_no, c.steps[:, STEP_INCREMENT], c.steps[:, STEP_PRICE], c.steps[:, STEP_UNIT]],
            axis=1,
        ).astype(np.int64)

    def encode(
        self,
        columns: Columns,
        rated: RatedBatch,
        rows: npt.NDArray[np.intp],
        debits: Debits | None = None,
    ) -> memoryview:
        cols = [getattr(columns, name) for name in STRING_COLUMNS]
        strings = np.concatenate([col.data for col in cols])
        bases = np.cumsum([0] + [len(col.data) for col in cols[:-1]])
        string_offsets = np.stack(
            [col.offsets + base for col, base in zip(cols, bases, strict=True)]
        )
        string_bytes = len(strings)
        spans = len(rated.sp_binding)
        # An upper bound, never an estimate: the kernel does not check bounds.
        # Strings escape to at most 6 bytes per byte (\u00XX), the prefix once
        # more; a row writes every key once and two tariff names, a span three.
        longest = int(np.diff(self.name_off).max(initial=0))
        row_bytes = 300 + len(self.keys) + 2 * longest
        capacity = len(rows) * row_bytes + spans * (400 + 3 * longest) + 12 * string_bytes
        d = _debit_arrays(debits, len(columns))
        longest_balance = int(np.diff(d[11]).max(initial=0))
        capacity += len(d[5]) * 200 + len(d[8]) * (100 + 2 * longest_balance)
        out = self._buffer(capacity)
        size = rated_lines_kernel(
            rows, strings, string_offsets,
            columns.start_us, columns.usage, rated.cost, rated.connect_fee, rated.flags,
            rated.plan, rated.prefix_len, rated.first_binding, rated.span_start,
            rated.sp_binding, rated.sp_step, rated.sp_offset, rated.sp_usage, rated.sp_billed,
            rated.sp_amount, self.keys, self.key_off, self.names, self.name_off,
            self.plan_name, self.zone_name, self.span_names, self.step_cols,
            d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], out,
        )  # fmt: skip
        return out[:size].data  # a view, no copy: the caller writes it out

    def _buffer(self, capacity: int) -> npt.NDArray[np.uint8]:
        """An output buffer of at least ``capacity`` bytes: the last one, unless a view of it
        is still alive (the caller has not written it out yet).

        A new buffer of tens of MB costs a page fault per 4 KB at its first write:
        measured 2.1 against 0.7 µs per rated record for the kernel on this machine.
        """
        spare = self._spare
        # its references: ``self._spare``, ``spare`` and getrefcount's own; more is a view
        if len(spare) >= capacity and sys.getrefcount(spare) <= 3:
            return spare
        self._spare = np.empty(max(capacity, len(spare)), dtype=np.uint8)
        return self._spare


_NONE = np.zeros(0, dtype=np.int64)


def _debit_arrays(debits: Debits | None, n: int) -> tuple[Any, ...]:
    """The kernel's debit arguments (all empty when there is nothing to show)."""
    if debits is None:
        empty = np.zeros(1, dtype=np.uint8)
        return (False, _NONE, _NONE, _NONE, 9, np.zeros(n + 1, np.int64), _NONE, _NONE, _NONE,
                _NONE, empty, np.zeros(1, np.int64))  # fmt: skip
    j_start = np.searchsorted(debits.journal_record, np.arange(n + 1)).astype(np.int64)
    names = sorted({*debits.balance, *debits.unit})
    where = {name: i for i, name in enumerate(names)}
    blob, offsets = _blob([msgspec.json.encode(name) for name in names])
    j_name = np.array([where[b] for b in debits.balance], dtype=np.int64)
    j_unit = np.array([where[u] for u in debits.unit], dtype=np.int64)
    return (True, debits.paid, debits.covered, debits.flags, debits.currency_scale, j_start,
            j_name, j_unit, debits.delta, debits.after, blob, offsets)  # fmt: skip


class Sink(Protocol):
    """Where a :class:`RatedWriter` writes: a binary file, or :class:`Lines`."""

    def write(self, data: memoryview, /) -> int: ...

    def close(self) -> None: ...


class Lines:
    """A sink that keeps what was written as views of the writer's buffer, no copy.

    The worker's partition ships them to ``rated-cdrs`` before its next batch;
    the writer reuses its buffer only once no view of it is alive.
    """

    def __init__(self) -> None:
        self._parts: list[memoryview] = []

    def write(self, data: memoryview, /) -> int:
        self._parts.append(data)
        return len(data)

    def take(self) -> list[memoryview]:
        """What was written since the last take."""
        parts, self._parts = self._parts, []
        return parts

    def close(self) -> None:
        self._parts = []


class RatedWriter:
    """Append rated records of each batch to a JSON-lines file (or a :class:`Sink`)."""

    def __init__(self, out: Path | BinaryIO | Sink, compiled: CompiledTariff) -> None:
        self._file: BinaryIO | Sink = out.open("wb") if isinstance(out, Path) else out
        self._compiled = compiled
        self._encoder = msgspec.json.Encoder()
        self._amounts: dict[int, str] = {}
        self._spans: dict[tuple[int, ...], RatedSpan] = {}
        self._tables = JsonTables(compiled)

    def _amount(self, nanos: int) -> str:
        text = self._amounts.get(nanos)
        if text is None:
            text = self._amounts[nanos] = format_amount(nanos)
        return text

    def _span(self, key: tuple[int, ...]) -> RatedSpan:
        span = self._spans.get(key)
        if span is None:
            c = self._compiled
            b, s, offset, usage, billed, amount = key
            drate = int(c.bindings[b, BINDING_DRATE])
            rate = int(c.drates[drate, DRATE_RATE])
            step = c.steps[s]
            span = self._spans[key] = RatedSpan(
                destination_rate=c.drate_names[drate],
                timing=c.timing_names[int(c.bindings[b, BINDING_TIMING])],
                rate=c.rate_names[rate],
                step=s - int(c.rates[rate, RATE_STEP_LO]),
                offset=offset,
                usage=usage,
                billed=billed,
                increment=int(step[STEP_INCREMENT]),
                price=self._amount(int(step[STEP_PRICE])),
                rate_unit=int(step[STEP_UNIT]),
                amount=self._amount(amount),
            )
        return span

    def write(self, columns: Columns, rated: RatedBatch, debits: Debits | None = None) -> int:
        """Write the records of ``columns`` that rated without error; return how many."""
        ok = self.rows(rated, debits)
        if len(ok):
            self._file.write(self._tables.encode(columns, rated, ok, debits))
        return len(ok)

    @staticmethod
    def rows(rated: RatedBatch, debits: Debits | None) -> npt.NDArray[np.intp]:
        """Rated records to write: rated, and (with debits) applied to an account.

        A record with an unknown account or seen before is rejected, not written.
        """
        ok = rated.error == 0
        if debits is not None:
            ok &= (debits.flags & ~1) == 0  # only insufficient_credit keeps a record
        return np.flatnonzero(ok)

    def encode_slow(
        self, columns: Columns, rated: RatedBatch, debits: Debits | None = None
    ) -> bytes:
        """The same lines as :meth:`write`, one msgspec Struct per record and span.

        The obviously-correct twin of :func:`engine.json_kernel.rated_lines_kernel`.
        """
        c = self._compiled
        if len(self._spans) > MEMO_LIMIT:  # bounded memory on long runs
            self._spans.clear()
            self._amounts.clear()
        ok = self.rows(rated, debits)
        spans = list(
            zip(
                rated.sp_binding.tolist(),
                rated.sp_step.tolist(),
                rated.sp_offset.tolist(),
                rated.sp_usage.tolist(),
                rated.sp_billed.tolist(),
                rated.sp_amount.tolist(),
                strict=True,
            )
        )
        bounds = rated.span_start.tolist()
        first = rated.first_binding[ok]
        zone_index = c.bindings[first, BINDING_DESTINATION].tolist()
        zones = [c.destination_names[z] if z >= 0 else ANY for z in zone_index]
        plans = [c.plan_names[p] for p in rated.plan[ok].tolist()]
        strings = {
            name: getattr(columns, name).to_list()
            for name in ("cdr_id", "tenant", "account", "category", "subject", "destination")
        }
        prefix_len = rated.prefix_len.tolist()
        starts = columns.start_us.tolist()
        usage = columns.usage.tolist()
        cost = rated.cost.tolist()
        connect = rated.connect_fee.tolist()
        flags = rated.flags.tolist()
        currency = c.tariff.currency
        span = self._span
        amount = self._amount
        records = [
            RatedRecord(
                strings["cdr_id"][i],
                strings["tenant"][i],
                strings["account"][i],
                strings["category"][i],
                strings["subject"][i],
                strings["destination"][i],
                starts[i],
                usage[i],
                amount(cost[i]),
                cost[i],
                currency,
                plans[k],
                zones[k],
                strings["destination"][i].encode()[: prefix_len[i]].decode(),  # a byte length
                amount(connect[i]),
                flags[i],
                [span(spans[j]) for j in range(bounds[i], bounds[i + 1])],
                **self._debit_fields(debits, i),
            )
            for k, i in enumerate(ok.tolist())
        ]
        return self._encoder.encode_lines(records)

    @staticmethod
    def _debit_fields(debits: Debits | None, i: int) -> dict[str, Any]:
        if debits is None:
            return {}
        rows = np.flatnonzero(debits.journal_record == i).tolist()
        return {
            "charged": format_units(int(debits.paid[i]), debits.currency_scale),
            "covered": int(debits.covered[i]),
            "insufficient_credit": bool(debits.flags[i] & 1),
            "balances": [
                BalanceUse(debits.balance[r], debits.unit[r], int(debits.delta[r]),
                           int(debits.after[r]))
                for r in rows
            ],
        }  # fmt: skip

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RatedWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
