"""Sleeps on a timerfd: never before their time, one at a time, stale expiries ignored."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
import pytest
import uvloop

from loadtest.precise_sleep import PreciseSleep, sleeper
from loadtest.schedule import OpenLoop, plan

T = TypeVar("T")


def on_uvloop(make: Callable[[], Awaitable[T]]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(make())  # type: ignore[arg-type]


def test_sleeps_never_end_before_their_time() -> None:
    # uvloop's own timers are whole milliseconds: sleep(0.0004) rounds to 0 ms and
    # comes back at the next turn of the loop, before its time
    async def run() -> list[int]:
        sleep = PreciseSleep(asyncio.get_running_loop())
        early = []
        try:
            for i in range(300):
                seconds = 0.0001 * (1 + i % 10)  # 0.1 … 1 ms
                due = time.perf_counter_ns() + round(seconds * 1e9)
                await sleep(seconds)
                early.append(max(due - time.perf_counter_ns(), 0))
        finally:
            sleep.close()
        return early

    assert sum(1 for ns in on_uvloop(run) if ns) == 0


def test_a_cancelled_sleeps_expiry_does_not_end_the_next_one() -> None:
    async def run() -> tuple[int, int]:
        sleep = PreciseSleep(asyncio.get_running_loop())
        try:
            first = asyncio.create_task(sleep(0.002))
            await asyncio.sleep(0)  # armed for 2 ms from now
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            time.sleep(0.005)  # the loop held: the 2 ms timer expires, nobody reads it
            due = time.perf_counter_ns() + 30_000_000
            await sleep(0.030)  # the 2 ms expiry (or its stale readiness) must not end it
            return due, time.perf_counter_ns()
        finally:
            sleep.close()

    due, ended = on_uvloop(run)
    assert ended >= due


def test_one_sleeper_at_a_time() -> None:
    async def run() -> None:
        sleep = PreciseSleep(asyncio.get_running_loop())
        try:
            first = asyncio.create_task(sleep(0.01))
            await asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="a sleep is already under way"):
                await sleep(0.01)
            await first  # the first one still ends
        finally:
            sleep.close()

    on_uvloop(run)


def test_a_sleep_of_nothing_returns_and_close_gives_the_timerfd_back() -> None:
    async def run() -> int:
        sleep = PreciseSleep(asyncio.get_running_loop())
        await sleep(0)
        await sleep(-1.0)
        fd = sleep._fd
        sleep.close()
        sleep.close()  # twice is harmless
        return fd

    fd = on_uvloop(run)
    with pytest.raises(OSError, match="Bad file descriptor"):  # closed
        os.fstat(fd)


def test_a_precise_sender_never_sends_before_an_items_time() -> None:
    # one item every 0.25 ms: on the loop's own timers, about half went out early
    async def run() -> np.ndarray:
        sender = OpenLoop(plan(np.ones(400), 4000.0), lambda i: None, precise=True)
        log = await sender.run()
        return log.sent - log.due

    late = on_uvloop(run)
    assert len(late) == 400
    assert late.min() >= 0


def test_sleeper_gives_the_precise_sleep_on_linux() -> None:
    async def run() -> bool:
        sleep, close = sleeper(asyncio.get_running_loop())
        try:
            return isinstance(sleep, PreciseSleep)
        finally:
            close()

    assert on_uvloop(run) is True  # CI and the workers run on Linux
