"""The API's request cycles: groups per partition, one cycle for all, busy partitions apart.

The partitions here are stand-ins that record what was applied and
checkpointed (the scheduling is what is tested; the integration tests run
the same code against a broker).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tariffs
from balances.debit import Debitor
from balances.exceptions import BalanceError, ReservationError, UnknownReservationError
from balances.ledger import Ledger
from balances.model import MAIN, Account
from balances.reservations import (
    INSUFFICIENT_CREDIT,
    UNKNOWN_ACCOUNT,
    AuthorizeRequest,
    CommitRequest,
    Reservations,
)
from balances.store import MemoryStore
from balances.units import load_units
from engine.sessions import Release, Sessions
from tariffs.loader import load_tariff
from tariffs.rating import Rater

PLAN = Path(tariffs.__file__).parent / "samples" / "mobile.toml"
EUR = 10**9


class _Reservations:
    def __init__(self, number: int, log: list[tuple[Any, ...]]) -> None:
        self.number, self.log = number, log

    def release(self, rid: str) -> str:
        if rid.startswith("unknown"):
            raise BalanceError(f"reservation {rid!r} is unknown")
        self.log.append(("apply", self.number, rid))
        return rid


class _Part:
    def __init__(self, number: int, log: list[tuple[Any, ...]]) -> None:
        self.number = number
        self.reservations = _Reservations(number, log)


class _Partitions:
    def __init__(self, fail: set[int] | None = None) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.locks: dict[int, asyncio.Lock] = {}
        self.fail = fail or set()

    def lock(self, number: int) -> asyncio.Lock:
        return self.locks.setdefault(number, asyncio.Lock())

    async def get(self, number: int) -> _Part:
        return _Part(number, self.log)

    async def checkpoint(self, parts: list[_Part]) -> list[Exception | None]:
        await asyncio.sleep(0.001)  # the broker's acknowledgement
        errors: list[Exception | None] = []
        for part in parts:
            if part.number in self.fail:
                errors.append(
                    ConnectionError(f"partition {part.number}: the changelog write failed")
                )
            else:
                errors.append(None)
                self.log.append(("checkpoint", part.number))
        return errors


def _sessions(parts: _Partitions) -> Sessions:
    return Sessions(parts)  # type: ignore[arg-type]


def test_requests_that_wait_together_form_one_group_per_partition() -> None:
    async def run() -> tuple[list[str], list[tuple[Any, ...]]]:
        parts = _Partitions()
        s = _sessions(parts)
        answers = await asyncio.gather(*(s.submit(n % 3, Release(f"r{n}")) for n in range(9)))
        return answers, parts.log

    answers, log = asyncio.run(run())
    assert answers == [f"r{n}" for n in range(9)]
    assert sorted(e for e in log if e[0] == "checkpoint") == [
        ("checkpoint", 0), ("checkpoint", 1), ("checkpoint", 2)
    ]  # fmt: skip
    applied = [e for e in log if e[0] == "apply"]
    assert [e[2] for e in applied if e[1] == 1] == ["r1", "r4", "r7"]  # order kept


def test_a_partition_held_by_a_stream_batch_does_not_hold_up_the_others() -> None:
    async def run() -> list[tuple[Any, ...]]:
        parts = _Partitions()
        s = _sessions(parts)
        await parts.lock(1).acquire()  # a stream batch is being worked on partition 1
        first = asyncio.ensure_future(s.submit(1, Release("p1-a")))
        other = await asyncio.wait_for(s.submit(0, Release("p0-a")), timeout=1)
        assert other == "p0-a"
        later = asyncio.ensure_future(s.submit(1, Release("p1-b")))
        again = await asyncio.wait_for(s.submit(0, Release("p0-b")), timeout=1)
        assert again == "p0-b"
        await asyncio.sleep(0.01)
        assert not first.done()
        assert not later.done()
        parts.lock(1).release()
        assert await asyncio.wait_for(asyncio.gather(first, later), timeout=1) == [
            "p1-a", "p1-b"
        ]  # fmt: skip
        return parts.log

    log = asyncio.run(run())
    on_1 = [e for e in log if e[1] == 1]
    assert on_1 == [
        ("apply", 1, "p1-a"), ("checkpoint", 1), ("apply", 1, "p1-b"), ("checkpoint", 1)
    ]  # fmt: skip


def test_a_group_that_is_not_durable_fails_alone() -> None:
    async def run() -> list[Any]:
        parts = _Partitions(fail={2})
        s = _sessions(parts)
        return await asyncio.gather(
            s.submit(1, Release("ok")),
            s.submit(2, Release("lost")),
            s.submit(1, Release("unknown-1")),
            return_exceptions=True,
        )

    ok, lost, unknown = asyncio.run(run())
    assert ok == "ok"
    assert isinstance(lost, ConnectionError)
    assert "partition 2" in str(lost)
    assert isinstance(unknown, BalanceError)
    assert "unknown-1" in str(unknown)


def test_an_answer_whose_request_was_cancelled_does_not_stop_the_cycle() -> None:
    async def run() -> str:
        parts = _Partitions()
        s = _sessions(parts)
        gone = asyncio.ensure_future(s.submit(0, Release("gone")))
        kept = asyncio.ensure_future(s.submit(0, Release("kept")))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await asyncio.wait_for(kept, timeout=1)

    assert asyncio.run(run()) == "kept"


# -- authorizations of several partitions, priced together ------------------------------
class _Ledgers:
    """Partitions with real ledgers and reservations on one tariff (checkpoints recorded)."""

    def __init__(self) -> None:
        self.rater = Rater(load_tariff(PLAN))
        self.parts: dict[int, Any] = {}
        self.locks: dict[int, asyncio.Lock] = {}
        self.checkpoints: list[int] = []

    def add(self, number: int, account: str, money: int) -> None:
        ledger = Ledger(MemoryStore(), load_units())
        ledger.create_account(
            Account(id=account, tenant="ratewire.demo", currency="EUR",
                    created=datetime(2026, 1, 1, tzinfo=UTC)), []
        )  # fmt: skip
        ledger.adjust(account, MAIN, money, op_id=f"open:{account}")
        part = _Part(number, [])
        part.reservations = Reservations(ledger, Debitor(ledger.state, self.rater))  # type: ignore[assignment]
        self.parts[number] = part

    def lock(self, number: int) -> asyncio.Lock:
        return self.locks.setdefault(number, asyncio.Lock())

    async def get(self, number: int) -> Any:
        return self.parts[number]

    async def checkpoint(self, parts: list[Any]) -> list[Exception | None]:
        await asyncio.sleep(0.001)
        self.checkpoints += [part.number for part in parts]
        return [None] * len(parts)


def _call(account: str, seconds: int) -> AuthorizeRequest:
    start = datetime(2026, 11, 2, 10, tzinfo=UTC)  # a Monday, peak
    return AuthorizeRequest(account=account, category="call", destination="4930123456",
                            requested=seconds, start=start)  # fmt: skip


def test_each_partition_gets_its_grants_and_a_bad_request_fails_alone() -> None:
    async def run(parts: _Ledgers) -> list[Any]:
        s = Sessions(parts)  # type: ignore[arg-type]
        return await asyncio.gather(
            s.submit(0, _call("ann", 60)),
            s.submit(1, _call("ben", 120)),
            s.submit(1, _call("ben", 0)),  # no usage: refused, its neighbours still granted
            s.submit(2, _call("cid", 60)),  # 0.05 does not buy the first minute (0.12)
            s.submit(2, _call("nobody", 60)),
            return_exceptions=True,
        )

    parts = _Ledgers()
    for number, who, money in ((0, "ann", EUR), (1, "ben", EUR), (2, "cid", EUR // 20)):
        parts.add(number, who, money)
    ann, ben, zero, cid, nobody = asyncio.run(run(parts))
    # 0.03 to connect, the first minute whole at 0.09; then 0.0015 a second
    assert (ann.granted, ann.reserved, ann.reason) == (60, {MAIN: 12 * EUR // 100}, "")
    assert (ben.granted, ben.reserved, ben.reason) == (120, {MAIN: 21 * EUR // 100}, "")
    assert isinstance(zero, ReservationError)
    assert "requested usage 0 is not positive" in str(zero)
    assert (cid.granted, cid.reason) == (0, INSUFFICIENT_CREDIT)
    assert (nobody.granted, nobody.reason) == (0, UNKNOWN_ACCOUNT)
    assert sorted(parts.checkpoints) == [0, 1, 2]  # one cycle: one checkpoint per partition


def test_one_cycle_prices_every_partitions_authorizations_in_one_rating_call() -> None:
    parts = _Ledgers()
    for number in range(4):
        parts.add(number, f"acc{number}", EUR)
    rated: list[int] = []  # records per rating call
    rate = parts.rater.rate

    def counted(columns: Any, *rest: Any) -> Any:
        rated.append(len(columns))
        return rate(columns, *rest)

    parts.rater.rate = counted  # type: ignore[method-assign]

    async def run() -> list[Any]:
        s = Sessions(parts)  # type: ignore[arg-type]
        return await asyncio.gather(*(s.submit(n % 4, _call(f"acc{n % 4}", 60)) for n in range(8)))

    grants = asyncio.run(run())
    assert [g.granted for g in grants] == [60] * 8
    assert rated == [8]


def test_a_cycle_frees_before_it_holds_and_answers_in_request_order() -> None:
    """One cycle: an authorization that needs what a commit of the same cycle frees is
    granted (commits and releases go first); answers come back in request order."""
    parts = _Ledgers()
    parts.add(0, "ann", 12 * EUR // 100)  # one minute's hold (0.03 + 0.09) and nothing more

    async def run() -> list[Any]:
        s = Sessions(parts)  # type: ignore[arg-type]
        first = await s.submit(0, _call("ann", 60))
        assert (first.granted, first.reason) == (60, "")
        assert (await s.submit(0, _call("ann", 60))).reason == INSUFFICIENT_CREDIT
        return await asyncio.gather(
            s.submit(0, _call("ann", 60)),  # came first, applied last
            s.submit(0, CommitRequest(first.reservation_id, 0)),  # a call that never started
            s.submit(0, Release("ann~nobody-1")),
            return_exceptions=True,
        )

    grant, charge, release = asyncio.run(run())
    assert (grant.granted, grant.reason) == (60, "")
    assert (charge.actual, charge.paid) == (0, 0)
    assert isinstance(release, UnknownReservationError)
    assert parts.checkpoints == [0, 0, 0]  # three cycles


def test_warm_loads_the_kernels_an_api_request_runs() -> None:
    """In a fresh process (this one has called them already): after ``warm`` the rating,
    authorize and debit kernels are loaded, so the first request does not wait for them."""
    probe = (
        "from pathlib import Path\n"
        "from balances import kernels as bk, reservation_kernels as rk\n"
        "from balances.units import load_units\n"
        "from engine.sessions import warm\n"
        "from tariffs import kernels as tk\n"
        "from tariffs.loader import load_tariff\n"
        "from tariffs.rating import Rater\n"
        "kernels = (tk.rate_kernel, rk.authorize_kernel, bk.debit_kernel)\n"
        "before = [len(k.signatures) for k in kernels]\n"
        f"warm(Rater(load_tariff(Path({str(PLAN)!r}))), load_units())\n"
        "print(before, [len(k.signatures) for k in kernels])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(tariffs.__file__).parent.parent)  # fmt: skip
    assert out.stdout.split("\n")[0] == "[0, 0, 0] [1, 1, 1]"
