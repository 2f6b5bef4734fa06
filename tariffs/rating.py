"""Rate a batch of usage columns: the thin Python wrapper around the kernels.

``Rater(tariff).rate(columns)`` runs guide → start → rate over the whole batch
in three kernel calls and returns a :class:`RatedBatch` of arrays; turning a
record's result into a :class:`~tariffs.rated.Rating` (names, spans) is done
only on demand, for output and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from engine.columns import KIND_VOICE, Columns, StrColumn
from engine.keytable import KeyTable
from tariffs import kernels
from tariffs.compile import (
    BINDING_DESTINATION,
    BINDING_DRATE,
    BINDING_TIMING,
    DRATE_RATE,
    RATE_BASIS,
    RATE_STEP_LO,
    STEP_INCREMENT,
    STEP_PRICE,
    STEP_UNIT,
    CompiledTariff,
    compile_tariff,
)
from tariffs.model import ANY, Tariff
from tariffs.rated import (
    MAX_CALL_SECONDS,
    NO_TIMING_IN_FORCE,
    RATING_PLAN_NOT_FOUND,
    UNAUTHORIZED_DESTINATION,
    USAGE_OUT_OF_RANGE,
    Rating,
    Span,
)

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]

ERROR_CODES = {
    kernels.ERR_PLAN_NOT_FOUND: RATING_PLAN_NOT_FOUND,
    kernels.ERR_UNAUTHORIZED_DESTINATION: UNAUTHORIZED_DESTINATION,
    kernels.ERR_NO_TIMING: NO_TIMING_IN_FORCE,
    kernels.ERR_USAGE_OUT_OF_RANGE: USAGE_OUT_OF_RANGE,
}


@dataclass(frozen=True, slots=True)
class RatedBatch:
    """Kernel output for ``n`` records.

    The spans of record ``i`` are rows ``span_start[i]:span_start[i + 1]`` of the ``sp_*`` arrays.
    """

    compiled: CompiledTariff
    destination: StrColumn
    error: I8  # kernels.OK or an ERR_* code
    plan: I32
    prefix_len: I32
    first_binding: I32
    cost: I64  # nanos, rounded and capped
    subtotal: I64
    connect_fee: I64
    flags: I64
    span_start: I64
    sp_binding: I32
    sp_step: I32
    sp_offset: I64
    sp_usage: I64
    sp_billed: I64
    sp_amount: I64

    def __len__(self) -> int:
        return len(self.error)

    def error_code(self, i: int) -> str | None:
        """The stable error code of record ``i``, or None if it was rated."""
        return ERROR_CODES.get(int(self.error[i]))

    def rating(self, i: int) -> Rating:
        """Record ``i``'s result with names and spans (slow path: output and tests)."""
        c = self.compiled
        first = int(self.first_binding[i])
        destination = int(c.bindings[first, BINDING_DESTINATION])
        spans = []
        for k in range(int(self.span_start[i]), int(self.span_start[i + 1])):
            b, s = int(self.sp_binding[k]), int(self.sp_step[k])
            drate = int(c.bindings[b, BINDING_DRATE])
            rate = int(c.drates[drate, DRATE_RATE])
            step = c.steps[s]
            spans.append(
                Span(
                    destination_rate=c.drate_names[drate],
                    timing=c.timing_names[int(c.bindings[b, BINDING_TIMING])],
                    rate=c.rate_names[rate],
                    step=s - int(c.rates[rate, RATE_STEP_LO]),
                    offset=int(self.sp_offset[k]),
                    usage=int(self.sp_usage[k]),
                    billed=int(self.sp_billed[k]),
                    increment=int(step[STEP_INCREMENT]),
                    price=int(step[STEP_PRICE]),
                    rate_unit=int(step[STEP_UNIT]),
                    amount=int(self.sp_amount[k]),
                )
            )
        return Rating(
            plan=c.plan_names[int(self.plan[i])],
            destination=c.destination_names[destination] if destination >= 0 else ANY,
            prefix=self.destination[i].encode()[: int(self.prefix_len[i])].decode(),  # bytes
            connect_fee=int(self.connect_fee[i]),
            spans=tuple(spans),
            subtotal=int(self.subtotal[i]),
            cost=int(self.cost[i]),
            flags=int(self.flags[i]),
        )


class PeriodCounters:
    """Usage so far per (account, category, month) for volume-tiered rates.

    Keys live in a compiled :class:`~engine.keytable.KeyTable`, usage in an
    array indexed by its items; held in memory by the caller (one ``ratewire
    rate`` run). :class:`PeriodCountersSlow` is its dictionary twin.
    """

    def __init__(self) -> None:
        self._keys = KeyTable()
        self._used = np.zeros(1024, dtype=np.int64)
        self._names: list[tuple[str, str, int]] = []  # each item's key, in item order
        self._touched: list[I64] = []  # items changed since the last drain

    def __len__(self) -> int:
        return len(self._keys)

    def prior(self, columns: Columns, period: I64, tiered: npt.NDArray[np.bool_]) -> I64:
        """Usage before each tiered record (earlier records of the batch included)."""
        out = np.zeros(len(columns), dtype=np.int64)
        rows = np.flatnonzero(tiered)
        if len(rows) == 0:
            return out
        before = len(self._keys)
        items = self._keys.lookup(columns.account, columns.category, period, rows=rows, insert=True)
        if len(self._keys) > len(self._used):
            self._used = np.concatenate([self._used, np.zeros(len(self._keys), np.int64)])
        if len(self._keys) > before:  # new keys, numbered in the order of their first row
            new, first = np.unique(items[rows], return_index=True)
            at = rows[first[new >= before]]
            self._names += zip(columns.account.values_at(at), columns.category.values_at(at),
                               period[at].tolist(), strict=True)  # fmt: skip
        self._touched.append(items[rows])
        kernels.period_prior(rows, items, columns.usage, self._used, out)
        return out

    def drain(self) -> list[tuple[str, str, int, int]]:
        """``(account, category, period, usage)`` of every counter changed since the last drain.

        A caller that persists state stores these with it and :meth:`load` s them
        back, so tiers keep counting across restarts and partition moves.
        """
        if not self._touched:
            return []
        items = np.unique(np.concatenate(self._touched)).tolist()
        self._touched = []
        used = self._used
        return [(*self._names[i], int(used[i])) for i in items]

    def load(self, entries: Sequence[tuple[str, str, int, int]]) -> None:
        """Set counters (as :meth:`drain` gave them); loaded ones are not drained again."""
        if not entries:
            return
        accounts = StrColumn.from_strings([e[0] for e in entries])
        categories = StrColumn.from_strings([e[1] for e in entries])
        periods = np.array([e[2] for e in entries], dtype=np.int64)
        before = len(self._keys)
        items = self._keys.lookup(accounts, categories, periods, insert=True)
        if len(self._keys) > len(self._used):
            self._used = np.concatenate([self._used, np.zeros(len(self._keys), np.int64)])
        fresh = {int(i) for i in items if i >= before}
        for i, entry in sorted(zip(items.tolist(), entries, strict=True)):
            if i in fresh:
                self._names.append(entry[:3])
                fresh.discard(i)
        self._used[items] = np.array([e[3] for e in entries], dtype=np.int64)


@dataclass
class PeriodCountersSlow:
    """The obviously-correct twin of :class:`PeriodCounters`: a dict, one record at a time."""

    used: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def prior(self, columns: Columns, period: I64, tiered: npt.NDArray[np.bool_]) -> I64:
        out = np.zeros(len(columns), dtype=np.int64)
        rows = np.flatnonzero(tiered)
        keys = zip(
            columns.account.values_at(rows),
            columns.category.values_at(rows),
            period[rows].tolist(),
            strict=True,
        )
        for i, usage, key in zip(rows.tolist(), columns.usage[rows].tolist(), keys, strict=True):
            before = self.used.get(key, 0)
            out[i] = before
            self.used[key] = before + usage
        return out


class Rater:
    """Rates batches of :class:`~engine.columns.Columns` against one tariff."""

    def __init__(self, tariff: Tariff) -> None:
        self.compiled = compile_tariff(tariff)
        c = self.compiled
        # per binding, looked up once here (a request of one record would redo it each time):
        # its destination rate's row, and the basis of that rate (record, volume tiers …)
        self.binding_drate: I64 = c.drates[c.bindings[:, BINDING_DRATE]]
        self.binding_basis: I64 = c.rates[self.binding_drate[:, DRATE_RATE], RATE_BASIS]
        self._binding_tiered = self.binding_basis != kernels.BASIS_RECORD
        self._any_tiered = bool((c.rates[:, RATE_BASIS] != kernels.BASIS_RECORD).any())
        # each group's cut of the last few days seen (see kernels.segment)
        width = 2 + 2 * (int(np.diff(c.group_bindings).max(initial=0)) + 1)
        groups = len(c.group_bindings) - 1
        self._day_cache = np.zeros((groups, kernels.DAY_SLOTS, width), dtype=np.int64)
        self._day_cache[:, :, 0] = np.iinfo(np.int64).min

    @property
    def tariff(self) -> Tariff:
        return self.compiled.tariff

    def rate(
        self, columns: Columns, counters: PeriodCounters | PeriodCountersSlow | None = None
    ) -> RatedBatch:
        """Guide and rate every record of ``columns`` (three kernel calls)."""
        c = self.compiled
        n = len(columns)
        group = np.empty(n, dtype=np.int32)
        plan = np.empty(n, dtype=np.int32)
        prefix_len = np.empty(n, dtype=np.int32)
        error = np.zeros(n, dtype=np.int8)
        kernels.guide_kernel(
            columns.tenant.data, columns.tenant.offsets,
            columns.category.data, columns.category.offsets,
            columns.subject.data, columns.subject.offsets,
            columns.destination.data, columns.destination.offsets,
            columns.start_us,
            c.key_trie.symbol, c.key_trie.children, c.node_key, c.node_any_key, c.key_act,
            c.act_time_us, c.act_plan, c.act_fallback, c.fallback_key,
            c.prefix_trie.symbol, c.prefix_trie.children, c.prefix_trie.depth, c.node_group,
            group, plan, prefix_len, error,
        )  # fmt: skip
        too_long = (columns.kind == KIND_VOICE) & (columns.usage > MAX_CALL_SECONDS)
        error[too_long & (error == kernels.OK)] = kernels.ERR_USAGE_OUT_OF_RANGE
        first = np.empty(n, dtype=np.int32)
        first_end = np.empty(n, dtype=np.int64)
        period = np.empty(n, dtype=np.int64)
        kernels.start_kernel(
            columns.start_us, group, error, c.group_bindings, c.group_binding, c.bindings,
            c.b_weight, c.timings, self._day_cache, c.tz_transitions, c.tz_offsets, first,
            first_end, period,
        )  # fmt: skip
        period_usage = self._period_usage(columns, first, error, period, counters)
        return self._rate(columns, group, plan, prefix_len, error, first, first_end, period_usage)

    def _period_usage(
        self,
        columns: Columns,
        first: I32,
        error: I8,
        period: I64,
        counters: PeriodCounters | PeriodCountersSlow | None,
    ) -> I64:
        if not self._any_tiered:
            return np.zeros(len(columns), dtype=np.int64)
        ok = error == kernels.OK
        tiered = ok & self._binding_tiered[np.where(ok, first, 0)]
        if counters is None:
            if not tiered.any():  # no table to build (a request of a few untiered records)
                return np.zeros(len(columns), dtype=np.int64)
            counters = PeriodCounters()
        return counters.prior(columns, period, tiered)

    def _rate(
        self,
        columns: Columns,
        group: I32,
        plan: I32,
        prefix_len: I32,
        error: I8,
        first: I32,
        first_end: I64,
        period_usage: I64,
    ) -> RatedBatch:
        c = self.compiled
        n = len(columns)
        time_based = columns.kind == KIND_VOICE
        out = [np.empty(n, dtype=np.int64) for _ in range(5)]
        capacity = 2 * n + 16
        while True:
            spans_i32 = [np.empty(capacity, dtype=np.int32) for _ in range(2)]
            spans_i64 = [np.empty(capacity, dtype=np.int64) for _ in range(4)]
            err = error.copy()
            used = kernels.rate_kernel(
                time_based, columns.start_us, columns.usage, period_usage, group, first, first_end,
                err,
                c.group_bindings, c.group_binding, c.bindings, c.b_weight, c.timings,
                self._day_cache, c.drates, c.rates, c.steps, c.tz_transitions, c.tz_offsets,
                *out, *spans_i32, *spans_i64,
            )  # fmt: skip
            if used >= 0:
                break
            capacity *= 2  # a batch of very long calls: more spans than records
        cost, subtotal, connect, flags, nspans = out
        span_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(nspans, out=span_start[1:])
        return RatedBatch(
            compiled=c,
            destination=columns.destination,
            error=err,
            plan=plan,
            prefix_len=prefix_len,
            first_binding=first,
            cost=cost,
            subtotal=subtotal,
            connect_fee=connect,
            flags=flags,
            span_start=span_start,
            sp_binding=spans_i32[0][:used],
            sp_step=spans_i32[1][:used],
            sp_offset=spans_i64[0][:used],
            sp_usage=spans_i64[1][:used],
            sp_billed=spans_i64[2][:used],
            sp_amount=spans_i64[3][:used],
        )
