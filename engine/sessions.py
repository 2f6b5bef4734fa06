"""Authorize, commit and release from the HTTP API, applied in groups per partition.

A request that changes balances must reach the changelog before it is
answered, and a changelog write is a broker round trip. One write per
request would cap a partition at a few hundred requests a second, so
requests queue and are applied in groups: whatever arrived while the
previous cycle was being written forms the next, one group per partition;
a group's commits are applied in one debit (``commit_many``), and it costs
one changelog write. Under light load a group is one request; under heavy
load groups grow, and so does throughput, while each request waits about
two round trips.

The cycle is the worker's, not each partition's: the groups of all
partitions are applied together, their authorizations priced in one rating
call (``authorize_together``; within a partition, commits go first, then
releases, then authorizations, each kind in the order it came: see
:func:`_apply`), and their changelog writes leave together, in one produce
request. Per-partition cycles, each on its own clock, made more and smaller
groups, and each group's fixed cost (pricing, a produce request, the store
write) came back: measured at 2,000 requests/s, the worker's loop was 89 %
busy with per-partition cycles and 81 % with one cycle, on 4 and on 8
partitions. A partition whose lock is held when a cycle starts (a stream
batch is being worked) is not waited for: its group waits for the lock on
its own, the cycle goes on without it, and that partition's next requests
queue until its group is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from balances.debit import Debitor
from balances.exceptions import BalanceError
from balances.ledger import Ledger
from balances.model import Account
from balances.reservations import (
    AuthorizeRequest,
    CommitRequest,
    Reservations,
    authorize_together,
)
from balances.store import MemoryStore
from balances.units import UnitCatalog
from engine.cost import one_record
from engine.partition import Partition
from engine.partitions import Partitions
from tariffs.rating import Rater


@dataclass(frozen=True, slots=True)
class Release:
    reservation_id: str


Request = AuthorizeRequest | CommitRequest | Release


Waiting = list[tuple[Request, "asyncio.Future[Any]"]]


class Sessions:
    """One queue for all of a worker's partitions, drained a cycle at a time."""

    def __init__(self, partitions: Partitions) -> None:
        self._partitions = partitions
        self._waiting: dict[int, Waiting] = {}
        self._busy: dict[int, asyncio.Task[None]] = {}  # a partition's group being applied
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, number: int, request: Request) -> Any:
        """The answer to ``request`` (a Grant, Charge or Release) once it is durable.

        Raises the :class:`BalanceError` the request got, or the error that
        kept its group from the changelog (then nothing of it was applied).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(number, []).append((request, future))
        self._wake()
        return await future

    def _wake(self) -> None:
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while ready := [n for n in self._waiting if n not in self._busy]:
                free = []
                for number in sorted(ready):
                    if self._partitions.lock(number).locked():  # a stream batch holds it
                        self._start({number: self._waiting.pop(number)})  # not waited for
                    else:
                        free.append(number)
                if free:
                    await self._start({n: self._waiting.pop(n) for n in free})
        finally:
            self._draining = None

    def _start(self, groups: dict[int, Waiting]) -> asyncio.Task[None]:
        task = asyncio.create_task(self._cycle(groups))
        for number in groups:
            self._busy[number] = task
        task.add_done_callback(partial(self._done, list(groups)))
        return task

    def _done(self, numbers: list[int], _: asyncio.Task[None]) -> None:
        for number in numbers:
            del self._busy[number]
        if any(number in self._waiting for number in numbers):  # queued behind a stuck group
            self._wake()

    async def _cycle(self, groups: dict[int, Waiting]) -> None:
        """Apply each partition's group (authorizations priced together), ship, answer."""
        answers: dict[int, list[Any]] = {}
        parts: dict[int, Partition] = {}
        for number, group in groups.items():
            try:
                parts[number] = await self._partitions.get(number)
            except Exception as exc:
                answers[number] = [exc] * len(group)
        async with contextlib.AsyncExitStack() as held:
            for number in sorted(parts):
                await held.enter_async_context(self._partitions.lock(number))
            try:
                answers |= _apply({n: (parts[n], [r for r, _ in groups[n]]) for n in parts})
            except Exception as exc:  # not a refusal but a fault: memory may be half changed
                for number in parts:
                    self._partitions.drop(number)  # reopened from what is durable
                    answers[number] = [exc] * len(groups[number])
                parts = {}
            shipped = await self._partitions.checkpoint(list(parts.values()))
        for number, error in zip(parts, shipped, strict=True):
            if error is not None:  # nothing of the group is durable: all fail
                answers[number] = [error] * len(groups[number])
        for number, group in groups.items():
            for (_, future), answer in zip(group, answers[number], strict=True):
                if future.done():
                    continue  # its request was cancelled (the client went away)
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)


#: the order of kinds within a cycle: what frees held amounts before new holds are priced
KINDS: tuple[type, ...] = (CommitRequest, Release, AuthorizeRequest)


def _apply(groups: dict[int, tuple[Partition, list[Request]]]) -> dict[int, list[Any]]:
    """Each partition's answers or errors, in its requests' order.

    A partition's requests are applied kind by kind (:data:`KINDS`), each kind
    in the order its requests came, and the authorizations of all partitions
    are priced together. A cycle's requests all arrived before any of them was
    answered, so any order is one their clients could have seen; this one costs
    at most one call per kind (in arrival order, a session mix of authorize,
    commit and release made a run, and a call, of nearly every request), and
    commits and releases free what they held before the authorizations.
    """
    answers: dict[int, list[Any]] = {n: [None] * len(qs) for n, (_, qs) in groups.items()}
    for kind in KINDS:
        places = {n: [i for i, q in enumerate(qs) if type(q) is kind]
                  for n, (_, qs) in groups.items()}  # fmt: skip
        asked = {n: [groups[n][1][i] for i in at] for n, at in places.items() if at}
        if kind is AuthorizeRequest:
            done = _authorize({n: (groups[n][0].reservations, cast(list[AuthorizeRequest], qs))
                               for n, qs in asked.items()})  # fmt: skip
        elif kind is CommitRequest:
            done = {n: list(groups[n][0].reservations.commit_many(cast(list[CommitRequest], qs)))
                    for n, qs in asked.items()}  # fmt: skip
        else:
            done = {n: _release(groups[n][0].reservations, cast(list[Release], qs))
                    for n, qs in asked.items()}  # fmt: skip
        for n in asked:
            for i, answer in zip(places[n], done[n], strict=True):
                answers[n][i] = answer
    return answers


def _release(sessions: Reservations, requests: list[Release]) -> list[Any]:
    """Each release's answer or refusal, in order."""
    out: list[Any] = []
    for q in requests:
        try:
            out.append(sessions.release(q.reservation_id))
        except BalanceError as exc:
            out.append(exc)
    return out


def _authorize(
    asks: dict[int, tuple[Reservations, list[AuthorizeRequest]]],
) -> dict[int, list[Any]]:
    """Each partition's grants, priced together; if that is refused, each partition's
    requests are tried on their own (and each alone if its partition's are refused)."""
    try:
        return dict(zip(asks, authorize_together(list(asks.values())), strict=True))
    except BalanceError:
        return {n: _each(res.authorize_many, requests) for n, (res, requests) in asks.items()}


def _each(apply_many: Any, requests: list[Any]) -> list[Any]:
    """``apply_many`` over all; if it refuses the lot, each request alone gets its own answer."""
    try:
        return list(apply_many(requests))
    except BalanceError:
        out: list[Any] = []
        for q in requests:
            try:
                out += apply_many([q])
            except BalanceError as exc:
                out.append(exc)
        return out


def warm(rater: Rater, units: UnitCatalog) -> None:
    """Load the compiled kernels an API request runs, on a scratch ledger in memory.

    numba loads a kernel from its cache at its first call (~0.2 s for these on
    this machine, ~30 ms of it the authorize path): without this, the first
    requests after a worker starts wait for it, and those queued behind them
    too (measured at 2,000 authorize/s: p99 20 ms in the first two seconds
    without, 5 ms with).
    """
    ledger = Ledger(MemoryStore(), units)
    created = datetime(2000, 1, 1, tzinfo=UTC)
    ledger.create_account(Account(id="warm", tenant="", currency=rater.tariff.currency,
                                  created=created))  # fmt: skip
    debitor = Debitor(ledger.state, rater)
    now = datetime.now(UTC)
    ask = AuthorizeRequest(account="warm", category="call", destination="", requested=60,
                           start=now)  # fmt: skip
    Reservations(ledger, debitor).authorize_many([ask])  # the rating and authorize kernels
    usage = one_record(tenant="", category="call", subject="warm", destination="", start=now,
                       usage=60, time_based=True)  # fmt: skip
    debitor.debit(usage, rater.rate(usage))  # the debit kernel (a commit's), whatever is rated
