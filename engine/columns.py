"""A batch of usage records as columns: what the guide and rating kernels read.

Strings are kept Arrow-style: one ``uint8`` buffer with every value's UTF-8
bytes back to back and an ``int64`` offsets array of length ``n + 1`` (value
``i`` is ``data[offsets[i]:offsets[i + 1]]``). Numba kernels walk them without
creating a Python string per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import accumulate, pairwise
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

KIND_VOICE = 0
KIND_SMS = 1
KIND_DATA = 2
KIND_EVENT = 3
KIND_NAMES = ("voice", "sms", "data", "event")

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
SMALL = 64  # up to this many values, from_strings sums lengths in Python (3 vs 5-7 µs)


@dataclass(frozen=True, slots=True)
class StrColumn:
    data: U8
    offsets: I64  # length n + 1, offsets[0] == 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return bytes(self.data[self.offsets[i] : self.offsets[i + 1]]).decode()

    def to_list(self) -> list[str]:
        """Every value as a Python string (slow path: output, errors, tests)."""
        raw = self.data.tobytes()
        bounds = self.offsets.tolist()
        return [raw[a:b].decode() for a, b in pairwise(bounds)]

    def values_at(self, index: I64) -> list[str]:
        """The values at ``index`` as Python strings (one buffer copy, then slices)."""
        raw = self.data.tobytes()
        starts = self.offsets[index].tolist()
        ends = self.offsets[index + 1].tolist()
        return [raw[a:b].decode() for a, b in zip(starts, ends, strict=True)]

    @classmethod
    def from_strings(cls, values: list[str]) -> StrColumn:
        """Pack Python strings (one join and one encode, no per-value numpy work)."""
        encoded = [v.encode() for v in values]
        if len(values) <= SMALL:  # an API request's few values: numpy's fixed costs dominate
            offsets = np.array([0, *accumulate(map(len, encoded))], dtype=np.int64)
        else:
            offsets = np.zeros(len(values) + 1, dtype=np.int64)
            np.cumsum(
                np.fromiter(map(len, encoded), dtype=np.int64, count=len(values)), out=offsets[1:]
            )
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return cls(data, offsets)

    def take(self, index: npt.NDArray[np.integer[Any]]) -> StrColumn:
        """The values at ``index``, in that order (numpy only, no Python string per value)."""
        starts = self.offsets[index]
        return gather(self.data, starts, self.offsets[np.asarray(index) + 1] - starts)


class StrPack(msgspec.Struct, array_like=True, frozen=True):
    """A string column as stored: UTF-8 bytes back to back and int64 offsets."""

    data: bytes
    offsets: bytes

    @classmethod
    def of(cls, column: StrColumn) -> StrPack:
        return cls(column.data.tobytes(), column.offsets.astype("<i8").tobytes())

    def column(self) -> StrColumn:
        data = np.frombuffer(self.data, dtype=np.uint8)
        return StrColumn(data, np.frombuffer(self.offsets, dtype="<i8").astype(np.int64))


def concat_strings(parts: Sequence[StrColumn]) -> StrColumn:
    """The values of ``parts`` one after another."""
    if len(parts) == 1:
        return parts[0]
    sizes = np.array([len(p.data) for p in parts], dtype=np.int64)
    shift = np.repeat(np.concatenate([[0], np.cumsum(sizes)[:-1]]), [len(p) for p in parts])
    offsets = np.concatenate([[0], np.concatenate([p.offsets[1:] for p in parts]) + shift])
    return StrColumn(np.concatenate([p.data for p in parts]), offsets.astype(np.int64))


def gather(data: U8, starts: I64, lengths: I64) -> StrColumn:
    """The values ``data[starts[i] : starts[i] + lengths[i]]`` as a new StrColumn."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # each output byte's source index: its value's start, plus its place in the value
    shift = np.repeat(starts - offsets[:-1], lengths)
    return StrColumn(data[shift + np.arange(offsets[-1])], offsets)


@dataclass(frozen=True, slots=True)
class Columns:
    """``n`` usage records, one array per field, all the same length."""

    kind: U8  # KIND_*
    cdr_id: StrColumn
    tenant: StrColumn
    account: StrColumn
    category: StrColumn
    subject: StrColumn
    destination: StrColumn
    start_us: I64  # UTC epoch microseconds
    usage: I64  # seconds (voice), bytes (data), count (sms, event)

    def __len__(self) -> int:
        return len(self.kind)


def concat(parts: Sequence[Columns]) -> Columns:
    """The records of ``parts`` one after another, as one batch."""
    if len(parts) == 1:
        return parts[0]
    joined: dict[str, Any] = {}
    for f in fields(Columns):
        values = [getattr(p, f.name) for p in parts]
        joined[f.name] = (
            concat_strings(values) if isinstance(values[0], StrColumn) else np.concatenate(values)
        )
    return Columns(**joined)
