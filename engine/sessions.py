"""Authorize, commit and release from the HTTP API, applied in groups per partition.

A request that changes balances must reach the changelog before it is
answered, and a changelog write is a broker round trip. One write per
request would cap a partition at a few hundred requests a second, so
requests queue per partition and are applied together: whatever arrived
while the previous group was being written forms the next group, its
authorizations are priced in one rating call (``authorize_many``), its
commits in one debit (``commit_many``), and the group costs one changelog
write. Under light load a group is one request; under heavy load the group
grows, and so does throughput, while each request waits at most about two
round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from balances.exceptions import BalanceError
from balances.reservations import AuthorizeRequest, CommitRequest
from engine.partition import Partition
from engine.partitions import Partitions


@dataclass(frozen=True, slots=True)
class Release:
    reservation_id: str


Request = AuthorizeRequest | CommitRequest | Release


@dataclass
class _Queue:
    waiting: list[tuple[Request, asyncio.Future[Any]]] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None


class Sessions:
    """The queues of one worker's partitions."""

    def __init__(self, partitions: Partitions) -> None:
        self._partitions = partitions
        self._queues: dict[int, _Queue] = {}

    async def submit(self, number: int, request: Request) -> Any:
        """The answer to ``request`` (a Grant, Charge or Release) once it is durable.

        Raises the :class:`BalanceError` the request got, or the error that
        kept its group from the changelog (then nothing of it was applied).
        """
        queue = self._queues.setdefault(number, _Queue())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue.waiting.append((request, future))
        if queue.draining is None:
            queue.draining = asyncio.create_task(self._drain(number, queue))
        return await future

    async def _drain(self, number: int, queue: _Queue) -> None:
        try:
            while queue.waiting:
                group, queue.waiting = queue.waiting, []
                requests = [r for r, _ in group]
                try:
                    part = await self._partitions.get(number)
                    async with self._partitions.lock(number):
                        answers = _apply(part, requests)
                        await self._partitions.checkpoint(part)
                except Exception as exc:  # nothing of the group is durable: all fail
                    answers = [exc] * len(group)
                for (_, future), answer in zip(group, answers, strict=True):
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            queue.draining = None


def _apply(part: Partition, requests: Sequence[Request]) -> list[Any]:
    """Each request's answer or error, requests applied in order (runs of a kind together)."""
    answers: list[Any] = []
    sessions = part.reservations
    for kind, run in groupby(requests, key=type):
        same = list(run)
        if kind is AuthorizeRequest:
            answers += _each(sessions.authorize_many, same)
        elif kind is CommitRequest:
            answers += sessions.commit_many(same)  # type: ignore[arg-type]
        else:
            for q in same:
                try:
                    answers.append(sessions.release(q.reservation_id))  # type: ignore[union-attr]
                except BalanceError as exc:
                    answers.append(exc)
    return answers


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
