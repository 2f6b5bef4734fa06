"""Sleeps that end on time, for the open-loop sender: a timerfd on the event loop.

uvloop (libuv) keeps its timers in whole milliseconds: ``asyncio.sleep(0.0004)``
rounds to 0 ms and returns at the next turn of the loop, ``sleep(0.0006)`` to
1 ms, and the loop's clock is itself read in milliseconds. Measured at 2,000
requests/s, the sender went out between 0.8 ms early and 1.2 ms late (p0 and
p99 of send time minus due time), and every request is timed from its due
time: a tester's own timer moved the latencies it reported by up to a
millisecond either way, against a target of a few milliseconds.

:class:`PreciseSleep` arms a Linux timerfd at the absolute due time
(``CLOCK_MONOTONIC``, the clock of :func:`time.perf_counter` on Linux) and
waits for it to become readable on the loop: the wake-up comes within tens of
microseconds, never before the due time. Where there is no timerfd (not
Linux), :func:`sleeper` gives plain :func:`asyncio.sleep`.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

Sleep = Callable[[float], Awaitable[Any]]

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc() -> Any | None:
    """libc with ``timerfd_create`` / ``timerfd_settime``, if this system has them, and
    if ``perf_counter`` reads the clock they are armed on."""
    if "CLOCK_MONOTONIC" not in time.get_clock_info("perf_counter").implementation:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.timerfd_settime.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p
        ]  # fmt: skip
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class PreciseSleep:
    """``await sleep(seconds)`` on ``loop``, ending within tens of µs after its time.

    One sleeper at a time (the sender awaits each sleep before the next);
    :meth:`close` gives the timerfd back. A sleep that is cancelled leaves its
    timer armed: the expiry that comes later finds no sleeper, or finds the
    next sleep not yet due, and is ignored.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if _LIBC is None:
            msg = "no timerfd on this system: use sleeper(), which falls back to asyncio.sleep"
            raise OSError(msg)
        self._libc = _LIBC
        fd = _LIBC.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self._fd, self._loop = fd, loop
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0  # ns of CLOCK_MONOTONIC
        self._spec = _Itimerspec()
        loop.add_reader(fd, self._fired)

    async def __call__(self, seconds: float) -> None:
        if self._waiter is not None:
            msg = "PreciseSleep: a sleep is already under way (one sleeper at a time)"
            raise RuntimeError(msg)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        self._deadline = deadline = time.perf_counter_ns() + round(float(seconds) * 1e9)
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(deadline, 1_000_000_000)
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None):
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count: read to make the fd quiet again
        except BlockingIOError:
            return  # re-armed since it became readable: the count was reset
        waiter = self._waiter
        if waiter is None or waiter.done() or time.perf_counter_ns() < self._deadline:
            return  # an expiry of a cancelled sleep
        waiter.set_result(None)

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1


def sleeper(loop: asyncio.AbstractEventLoop) -> tuple[Sleep, Callable[[], None]]:
    """A sleep for ``loop`` and what gives it back: :class:`PreciseSleep` where the
    system has a timerfd, else :func:`asyncio.sleep` (and nothing to give back)."""
    if _LIBC is None:
        return asyncio.sleep, lambda: None
    precise = PreciseSleep(loop)
    return precise, precise.close
