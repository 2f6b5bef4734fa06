"""The open-loop scheduler: items go out on plan, and a slow system shows as latency."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from loadtest.histogram import Latency
from loadtest.schedule import YIELD_EVERY, OpenLoop, SendLog, plan

N = 100
INTERVAL = 0.010  # the plan: 100 items a second
SERVICE = 0.020  # the fake consumer: one item at a time, 20 ms each (half the rate)


def test_plan_is_records_before_over_rate() -> None:
    assert plan([1, 1, 1], 2.0).tolist() == [0.0, 0.5, 1.0]
    # a message is due when its first record is
    assert plan([1000, 1000, 500, 1], 1000.0).tolist() == [0.0, 1.0, 2.0, 2.5]


def test_plan_refuses_a_rate_of_zero() -> None:
    with pytest.raises(ValueError, match="rate must be above 0"):
        plan([1], 0)


async def _against_slow_consumer() -> tuple[list[float], OpenLoop, float]:
    """Send N items open loop to an in-process server slower than the plan's interval."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    latencies: list[float] = []
    start = time.perf_counter() + 0.05
    offsets = plan(np.ones(N), 1 / INTERVAL)

    async def server() -> None:
        for _ in range(N):
            i = await queue.get()
            await asyncio.sleep(SERVICE)
            latencies.append(time.perf_counter() - (start + offsets[i]))  # from the intended time

    serving = asyncio.create_task(server())
    sender = OpenLoop(offsets, queue.put_nowait)
    await sender.run(start)
    await serving
    return latencies, sender, start


def test_a_slow_consumer_shows_as_growing_latency_not_fewer_sends() -> None:
    latencies, sender, start = asyncio.run(_against_slow_consumer())
    assert sender.log is not None
    # the sender kept to the plan: every item went out within a few ms of its time ...
    assert sender.log.count == N
    assert sender.log.behind_summary()["p99"] < 15
    assert sender.log.sent[-1] - start == pytest.approx((N - 1) * INTERVAL, abs=0.03)
    # ... so the queue grew by SERVICE - INTERVAL per item and latency with it: item i
    # waits about i * (SERVICE - INTERVAL) + SERVICE, up to ~1 s, although serving
    # one item takes 20 ms (what a closed-loop tester would have reported)
    hist = Latency()
    hist.record_many(np.array(latencies) * 1e6)
    backlog = (N - 1) * (SERVICE - INTERVAL)
    assert hist.value_at(99) / 1e6 >= 0.85 * backlog
    assert hist.value_at(99) / 1e6 > 20 * SERVICE
    assert hist.value_at(50) / 1e6 >= 0.85 * backlog / 2
    first, last = np.mean(latencies[:10]), np.mean(latencies[-10:])
    assert last - first >= 0.85 * (N - 10) * (SERVICE - INTERVAL)


class FakeClock:
    """Time that moves only when the sender sleeps or a send costs time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def test_a_blocking_send_puts_the_sender_behind_and_the_log_says_so() -> None:
    clock = FakeClock()
    cost = 2 * INTERVAL  # each send blocks twice the interval (a full producer buffer)

    async def send(i: int) -> None:
        clock.now += cost

    sender = OpenLoop(plan(np.ones(N), 1 / INTERVAL), send, clock=clock, sleep=clock.sleep)
    log = asyncio.run(sender.run(0.0))
    # item i went out at i * cost, not i * INTERVAL: behind by i * (cost - INTERVAL)
    assert log.sent.tolist() == pytest.approx([i * cost for i in range(N)])
    assert log.behind().tolist() == pytest.approx([i * (cost - INTERVAL) for i in range(N)])
    assert log.behind_summary()["max"] == pytest.approx((N - 1) * (cost - INTERVAL) * 1000)


def test_catching_up_still_lets_other_tasks_run() -> None:
    clock = FakeClock()
    n = 3 * YIELD_EVERY
    sender = OpenLoop(np.zeros(n), lambda i: None, clock=clock, sleep=clock.sleep)
    log = asyncio.run(sender.run(0.0))
    assert log.count == n
    assert clock.sleeps == 2  # a zero sleep after each YIELD_EVERY items sent back to back


def test_stop_sends_nothing_more() -> None:
    clock = FakeClock()
    sender = OpenLoop(plan(np.ones(10), 10.0), lambda i: None, clock=clock, sleep=clock.sleep)

    def send(i: int) -> None:
        if i == 3:
            sender.stop()

    sender.send = send
    log = asyncio.run(sender.run(0.0))
    assert log.count == 4
    assert np.isnan(log.sent[4:]).all()


def test_achieved_rate_ignores_big_items_on_a_second_s_edge_but_not_falling_behind() -> None:
    # 1,000-record batches due every 1/3 s (3,000 records/s), each sent 1 ms early or late
    offsets = plan(np.full(12, 1000), 3000.0)
    jitter = np.where(np.arange(12) % 2 == 0, -0.001, 0.001)
    on_time = SendLog(start=0.0, due=offsets, sent=offsets + jitter)
    assert on_time.achieved(1, 4, np.full(12, 1000.0)) == pytest.approx(3000, rel=0.01)
    # a sender that falls further behind with every item reaches only about half of it
    slow = SendLog(start=0.0, due=offsets, sent=2 * offsets)
    assert slow.achieved(1, 4, np.full(12, 1000.0)) == pytest.approx(9000 / 5.67, rel=0.01)
    assert slow.achieved(5, 4) == 0.0
