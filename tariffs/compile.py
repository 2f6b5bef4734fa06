"""Compile a :class:`~tariffs.model.Tariff` into flat arrays for the kernels.

Names become indices; prefixes and profile keys become byte tries; timings
become bit masks. The compiled form is immutable and built once per tariff
load. Index ``0`` of the timing table is the always-in-force timing ``*any``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tariffs.model import (
    ANY,
    Basis,
    DestinationRate,
    MaxCostStrategy,
    Rate,
    Rounding,
    Tariff,
    Timing,
)
from tariffs.timezones import offset_table

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]

YEAR_BASE = 1900  # timing year masks cover 1900..2155
# column numbers of the kernel tables (kept in step with tariffs.kernels)
BINDING_DRATE, BINDING_TIMING, BINDING_DESTINATION = 0, 1, 2
TIMING_MONTHS, TIMING_MONTH_DAYS, TIMING_WEEKDAYS, TIMING_START, TIMING_YEARS = 0, 1, 2, 3, 4
DRATE_RATE, DRATE_ROUNDING, DRATE_DECIMALS, DRATE_MAX_COST, DRATE_STRATEGY = 0, 1, 2, 3, 4
RATE_CONNECT, RATE_BASIS, RATE_STEP_LO, RATE_STEP_HI = 0, 1, 2, 3
STEP_GROUP_START, STEP_PRICE, STEP_UNIT, STEP_INCREMENT = 0, 1, 2, 3

KEY_SEPARATOR = 0  # byte between tenant, category and subject in a profile key

ROUNDING_CODES = {Rounding.UP: 0, Rounding.DOWN: 1, Rounding.HALF_UP: 2, Rounding.HALF_EVEN: 3}
STRATEGY_CODES = {MaxCostStrategy.NONE: 0, MaxCostStrategy.CAP: 1, MaxCostStrategy.DISCONNECT: 2}
BASIS_CODES = {Basis.RECORD: 0, Basis.GRADUATED: 1, Basis.VOLUME: 2}


@dataclass(frozen=True, slots=True)
class Trie:
    """A byte trie: ``children[node, symbol[byte]]`` is the next node or -1."""

    symbol: I32  # 256 entries: byte -> column, -1 for a byte no key uses
    children: I32  # (nodes, columns)
    depth: I32  # length of the prefix a node stands for


def build_trie(keys: list[bytes]) -> tuple[Trie, list[int]]:
    """A trie holding ``keys``; also returns each key's end node."""
    alphabet = sorted({b for key in keys for b in key})
    symbol = np.full(256, -1, dtype=np.int32)
    symbol[alphabet] = np.arange(len(alphabet), dtype=np.int32)
    rows: list[list[int]] = [[-1] * max(len(alphabet), 1)]
    depth = [0]
    ends = []
    for key in keys:
        node = 0
        for byte in key:
            col = int(symbol[byte])
            if rows[node][col] < 0:
                rows[node][col] = len(rows)
                rows.append([-1] * len(alphabet))
                depth.append(depth[node] + 1)
            node = rows[node][col]
        ends.append(node)
    return Trie(symbol, np.array(rows, dtype=np.int32), np.array(depth, dtype=np.int32)), ends


def trie_walk(trie: Trie, key: bytes) -> int:
    """The node ``key`` ends at (it must be in the trie)."""
    node = 0
    for byte in key:
        node = int(trie.children[node, trie.symbol[byte]])
    return node


def _mask(values: tuple[int, ...], *, sunday_as_7: bool = False) -> int:
    bits = 0
    for v in values:
        bits |= 1 << (7 if sunday_as_7 and v == 0 else v)
    return bits


def profile_key(tenant: str, category: str, subject: str) -> bytes:
    sep = bytes([KEY_SEPARATOR])
    return sep.join((tenant.encode(), category.encode(), subject.encode()))


@dataclass(frozen=True, slots=True)
class CompiledTariff:
    """Everything the guide and rating kernels read, as arrays.

    The ``*_names`` tuples turn indices back into the tariff's ids for the
    breakdown of a rated record.
    """

    tariff: Tariff
    # profiles: key trie -> key; key -> activations; activation -> plan, fallbacks
    key_trie: Trie
    node_key: I32  # per key-trie node: key index or -1
    node_any_key: I32  # per key-trie node ending "tenant NUL category NUL": the *any key or -1
    key_act: I64  # per key: [start, end) into the activation arrays (n_keys + 1)
    act_time_us: I64  # activation instant, UTC microseconds, ascending per key
    act_plan: I32
    act_fallback: I64  # per activation: [start, end) into fallback_key (n_acts + 1)
    fallback_key: I32  # key index of each fallback subject, -1 if it has no profile
    # destinations: prefix trie; (node, plan) -> binding group
    prefix_trie: Trie
    node_group: I32  # (prefix nodes, plans): group index or -1
    group_bindings: I64  # per group: [start, end) into group_binding (n_groups + 1)
    group_binding: I32  # binding indices, in plan order
    # bindings: one row each — BINDING_* columns; weights apart (floats)
    bindings: I64
    b_weight: F64
    # timings: one row each — TIMING_* columns; row 0 is *any
    timings: I64
    # destination rates, rates and rate steps: one row each — DRATE_*, RATE_*, STEP_* columns
    drates: I64
    rates: I64
    steps: I64
    # time zone
    tz_transitions: I64
    tz_offsets: I64
    # names for breakdowns
    plan_names: tuple[str, ...]
    destination_names: tuple[str, ...]
    timing_names: tuple[str, ...]
    drate_names: tuple[str, ...]
    rate_names: tuple[str, ...]


def _timing_row(t: Timing) -> list[int]:
    """TIMING_* columns: masks (0 = any), start, and a 256-year mask from 1900 in 4 words."""
    years = [0, 0, 0, 0]
    for y in t.years:
        years[(y - YEAR_BASE) // 64] |= 1 << ((y - YEAR_BASE) % 64)
    row = [_mask(t.months), _mask(t.month_days), _mask(t.weekdays, sunday_as_7=True), t.start]
    # numpy int64 cells: keep the top bit's value by wrapping into the signed range
    return row + [w - (1 << 64) if w >= 1 << 63 else w for w in years]


def _drate_row(d: DestinationRate, rate_index: dict[str, int]) -> tuple[int, ...]:
    return (
        rate_index[d.rate],
        ROUNDING_CODES[d.rounding],
        d.decimals,
        d.max_cost,
        STRATEGY_CODES[d.max_cost_strategy],
    )


def _rate_rows(rates: list[Rate]) -> list[tuple[int, int, int, int]]:
    rows, first = [], 0
    for r in rates:
        rows.append((r.connect_fee, BASIS_CODES[r.basis], first, first + len(r.steps)))
        first += len(r.steps)
    return rows


def _ranges(lengths: list[int]) -> I64:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def compile_tariff(tariff: Tariff) -> CompiledTariff:
    """Build the kernel tables for ``tariff`` (already checked by the loader)."""
    plan_names = tuple(tariff.plans)
    plan_index = {name: i for i, name in enumerate(plan_names)}
    destination_names = tuple(tariff.destinations)
    destination_index = {name: i for i, name in enumerate(destination_names)}
    drate_names = tuple(tariff.destination_rates)
    drate_index = {name: i for i, name in enumerate(drate_names)}
    rate_names = tuple(tariff.rates)
    rate_index = {name: i for i, name in enumerate(rate_names)}
    timings: list[Timing] = [Timing(id=ANY)] + [t for k, t in tariff.timings.items() if k != ANY]
    timing_names = tuple(t.id for t in timings)
    timing_index = {name: i for i, name in enumerate(timing_names)}

    # -- profiles -------------------------------------------------------------
    keys: dict[tuple[str, str, str], int] = {}
    for p in tariff.profiles:
        keys.setdefault((p.tenant, p.category, p.subject), len(keys))
    key_list = list(keys)
    key_trie, key_ends = build_trie([profile_key(*k) for k in key_list])
    node_key = np.full(len(key_trie.depth), -1, dtype=np.int32)
    node_key[key_ends] = np.arange(len(key_list), dtype=np.int32)
    node_any_key = np.full(len(key_trie.depth), -1, dtype=np.int32)
    for (tenant, category, subject), k in keys.items():
        if subject == ANY:
            node_any_key[trie_walk(key_trie, profile_key(tenant, category, ""))] = k
    by_key: list[list[tuple[int, int, tuple[int, ...]]]] = [[] for _ in key_list]
    for p in tariff.profiles:
        fallbacks = tuple(keys.get((p.tenant, p.category, s), -1) for s in p.fallback_subjects)
        act_us = int(p.activation.timestamp()) * 1_000_000 + p.activation.microsecond
        by_key[keys[(p.tenant, p.category, p.subject)]].append(
            (act_us, plan_index[p.plan], fallbacks)
        )
    acts = [a for entries in by_key for a in sorted(entries, key=lambda e: e[0])]

    # -- bindings and destination groups --------------------------------------
    b_drate: list[int] = []
    b_timing: list[int] = []
    b_weight: list[float] = []
    b_destination: list[int] = []
    groups: dict[tuple[str, int], list[int]] = {}  # (prefix, plan) -> bindings
    for plan_no, plan in enumerate(tariff.plans.values()):
        for binding in plan.bindings:
            drate = tariff.destination_rates[binding.destination_rate]
            b = len(b_drate)
            b_drate.append(drate_index[drate.id])
            b_timing.append(timing_index[binding.timing])
            b_weight.append(binding.weight)
            if drate.destination == ANY:
                b_destination.append(-1)
                groups.setdefault(("", plan_no), []).append(b)
                continue
            b_destination.append(destination_index[drate.destination])
            for prefix in tariff.destinations[drate.destination]:
                groups.setdefault((prefix, plan_no), []).append(b)
    prefixes = sorted({prefix for prefix, _ in groups})
    prefix_trie, prefix_ends = build_trie([p.encode() for p in prefixes])
    prefix_node = dict(zip(prefixes, prefix_ends, strict=True))
    node_group = np.full((len(prefix_trie.depth), len(plan_names)), -1, dtype=np.int32)
    group_members: list[list[int]] = []
    for (prefix, plan_no), members in groups.items():
        node_group[prefix_node[prefix], plan_no] = len(group_members)
        group_members.append(sorted(set(members)))

    # -- rates --------------------------------------------------------------------
    steps = [s for r in tariff.rates.values() for s in r.steps]
    drates = list(tariff.destination_rates.values())
    rates = list(tariff.rates.values())
    zone_transitions, zone_offsets = offset_table(tariff.timezone)
    return CompiledTariff(
        tariff=tariff,
        key_trie=key_trie,
        node_key=node_key,
        node_any_key=node_any_key,
        key_act=_ranges([len(e) for e in by_key]),
        act_time_us=np.array([a[0] for a in acts], dtype=np.int64),
        act_plan=np.array([a[1] for a in acts], dtype=np.int32),
        act_fallback=_ranges([len(a[2]) for a in acts]),
        fallback_key=np.array([k for a in acts for k in a[2]], dtype=np.int32),
        prefix_trie=prefix_trie,
        node_group=node_group,
        group_bindings=_ranges([len(m) for m in group_members]),
        group_binding=np.array([b for m in group_members for b in m], dtype=np.int32),
        bindings=np.array(
            list(zip(b_drate, b_timing, b_destination, strict=True)), np.int64
        ).reshape(-1, 3),
        b_weight=np.array(b_weight, dtype=np.float64),
        timings=np.array([_timing_row(t) for t in timings], dtype=np.int64),
        drates=np.array([_drate_row(d, rate_index) for d in drates], np.int64).reshape(-1, 5),
        rates=np.array(_rate_rows(rates), dtype=np.int64).reshape(-1, 4),
        steps=np.array(
            [(s.group_start, s.price, s.rate_unit, s.increment) for s in steps], np.int64
        ).reshape(-1, 4),
        tz_transitions=zone_transitions,
        tz_offsets=zone_offsets,
        plan_names=plan_names,
        destination_names=destination_names,
        timing_names=timing_names,
        drate_names=drate_names,
        rate_names=rate_names,
    )
