"""Kamailio accounts real calls placed by SIPp; ``ratewire ingest`` rates what it wrote.

Kamailio (Debian ``kamailio``) runs in the foreground on 127.0.0.1 as a
record-routing proxy whose acc module writes db_flatstore files, one per
process (``tests/fixtures/kamailio/kamailio.cfg``). SIPp (Debian
``sip-tester``) is the callee (``uas.xml``: answers, or 486 for the call marked
busy) and the caller (``uac.xml``: the :data:`CALLS`, all at once). Every
socket is on 127.0.0.1, every port a free one, every file under ``tmp_path``.

The calls happen now, so each record's expected cost is the reference rater's
(:func:`tariffs.reference.rate_reference`) for that record's own start and usage.
acc writes whole epoch seconds, so a call's usage is its talk time or one more.

Without the two programs the test is skipped, except in CI (``CI`` set), where
it fails: ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from engine.cli import EXIT_OK, main
from engine.rejects import read_rejects
from tariffs.loader import load_tariff
from tariffs.money import format_amount
from tariffs.reference import rate_reference

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kamailio"
PLAN = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
TENANT = "ratewire.demo"
LOOPBACK = "127.0.0.1"
PACKAGES = {"kamailio": "kamailio", "sipp": "sip-tester"}  # program -> Debian package
STARTUP_SECONDS = 10.0
CALLS_SECONDS = 40.0  # the caller gives up (-timeout) after 30 s
STOP_SECONDS = 5.0
POLL_SECONDS = 0.05
LOG_LINES = 30


class Call(NamedTuple):
    caller: str  # From user: the account
    callee: str  # the dialled number: the destination
    talk: int  # seconds from the ACK to the BYE
    answered: bool  # False: the callee rejects it (486 Busy Here)


CALLS = (
    Call("2001", "4930123456", 2, answered=True),  # German fixed
    Call("acme-gmbh", "4915112345", 4, answered=True),  # German mobile, acme's own plan
    Call("2003", "4930987654", 6, answered=True),
    Call("2001", "4916012345", 0, answered=False),  # busy: accounted, not charged
)
ANSWERED = [c for c in CALLS if c.answered]


def _program(name: str) -> str:
    """The program's path; without it the test fails (`make test` installs it as root)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        why = f"{name} is not installed (Debian package {PACKAGES[name]})"
        pytest.fail(f"{why}: run `make test` as root, or install it", pytrace=False)
    return path


def _free_udp_ports(count: int) -> list[int]:
    """Distinct UDP ports free on 127.0.0.1 (held together while chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                 for _ in range(count)]  # fmt: skip
        for sock in socks:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return f"--- last lines of {log}:\n" + "\n".join(lines[-LOG_LINES:])


def _exit_status(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    """The child's exit code (-signal if killed) once it exits within ``seconds``.

    Waits without reaping: until :func:`_stop` reaps it, its pid, which is also
    its process group's id, stays taken and cannot name anyone else's process.
    """
    deadline = time.monotonic() + seconds
    while True:
        done = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if done is not None:
            return done.si_status if done.si_code == os.CLD_EXITED else -done.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_SECONDS)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child, then SIGKILL to its process group (Kamailio's workers
    are in it), then reap it."""
    if _exit_status(proc, 0) is None:
        os.kill(proc.pid, signal.SIGTERM)
        _exit_status(proc, STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind; none if it shut down
    proc.wait()


@contextlib.contextmanager
def _running(args: list[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``args`` as a child in a process group of its own, stopped by :func:`_stop`."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            yield proc
        finally:
            _stop(proc)


def _wait_for(
    ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    """Poll ``ready()`` until true; fail if ``proc`` exits or STARTUP_SECONDS pass."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        code = _exit_status(proc, 0)
        if code is not None:
            pytest.fail(f"{what} exited with {code} while starting\n{_tail(log)}")
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} not ready after {STARTUP_SECONDS} s\n{_tail(log)}")
        time.sleep(POLL_SECONDS)


def _answers_probe(port: int, token: str) -> bool:
    """Kamailio on ``port`` answers an OPTIONS with ``200 <token>`` (its own config's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(0.2)
        local = sock.getsockname()[1]
        probe = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK-probe-{uuid.uuid4().hex}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag=probe\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\n"
            f"Call-ID: probe-{token}@{LOOPBACK}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(probe.encode(), (LOOPBACK, port))
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            return False
        return reply.startswith(f"SIP/2.0 200 {token}\r\n".encode())


def _bound(port: int) -> bool:
    """A socket listens on 127.0.0.1:``port`` (UDP), read from /proc/net/udp.

    Read rather than tried with a bind of our own, which could take the port
    from under the program starting on it.
    """
    address = int.from_bytes(socket.inet_aton(LOOPBACK), sys.byteorder)
    local = f"{address:08X}:{port:04X}"
    rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(row.split()[1] == local for row in rows)


def _acc_lines(acc_dir: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in acc_dir.glob("acc_*.log"))


def _config(path: Path, **values: str) -> None:
    """The fixture config with its ``@NAME@`` markers replaced."""
    text = (FIXTURES / "kamailio.cfg").read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    assert not left, f"kamailio.cfg markers without a value: {left}"
    path.write_text(text)


def _place_calls(tmp_path: Path, acc_dir: Path) -> tuple[datetime, datetime]:
    """Run Kamailio, the callee and the caller until every call is over and
    accounted; return when the calls were placed and when they were over."""
    kamailio, sipp = _program("kamailio"), _program("sipp")
    sip_port, uas_port, uac_port = _free_udp_ports(3)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    token = f"ratewire-{uuid.uuid4().hex}"
    config = tmp_path / "kamailio.cfg"
    _config(config, SIP_PORT=str(sip_port), UAS_PORT=str(uas_port), ACC_DIR=str(acc_dir),
            PROBE_TOKEN=token)  # fmt: skip
    calls = tmp_path / "calls.csv"
    calls.write_text("SEQUENTIAL\n" + "".join(
        f"{c.caller};{c.callee};{c.talk * 1000};{'answer' if c.answered else 'busy'}\n"
        for c in CALLS))  # fmt: skip
    # -bind_local and -ci keep SIPp's SIP, media and control sockets on 127.0.0.1
    sipp_common = ["-i", LOOPBACK, "-bind_local", "-ci", LOOPBACK, "-m", str(len(CALLS)),
                   "-nostdin", "-timeout", "30s", "-timeout_error", "-trace_err"]  # fmt: skip
    logs = {name: tmp_path / f"{name}.log" for name in ("kamailio", "uas", "uac")}
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(_running(
            [kamailio, "-f", str(config), "-DD", "-E", "-Y", str(run_dir), "-w", str(run_dir),
             "-P", str(run_dir / "kamailio.pid"), "-m", "32", "-M", "8"],
            logs["kamailio"], tmp_path))  # fmt: skip
        _wait_for(lambda: _answers_probe(sip_port, token), proxy, logs["kamailio"], "kamailio")
        uas = stack.enter_context(_running(
            [sipp, "-sf", str(FIXTURES / "uas.xml"), "-p", str(uas_port), *sipp_common,
             "-error_file", str(tmp_path / "uas_errors.log")],
            logs["uas"], tmp_path))  # fmt: skip
        _wait_for(lambda: _bound(uas_port), uas, logs["uas"], "sipp (callee)")
        placed = datetime.now(UTC)
        uac = stack.enter_context(_running(
            [sipp, f"{LOOPBACK}:{sip_port}", "-sf", str(FIXTURES / "uac.xml"),
             "-inf", str(calls), "-p", str(uac_port), "-l", str(len(CALLS)), "-r", "10",
             *sipp_common, "-error_file", str(tmp_path / "uac_errors.log")],
            logs["uac"], tmp_path))  # fmt: skip
        for proc, name, seconds in ((uac, "uac", CALLS_SECONDS), (uas, "uas", STOP_SECONDS)):
            code = _exit_status(proc, seconds)
            ended = f"ended with {code}" if code is not None else f"still on after {seconds} s"
            errors = _tail(tmp_path / f"{name}_errors.log")  # -trace_err: unexpected messages
            assert code == 0, f"sipp ({name}) {ended}\n{_tail(logs[name])}\n{errors}"
        over = datetime.now(UTC)
        # acc writes a line as it relays the final reply, just after the caller may
        # have read it: wait for them all (an INVITE per call, a BYE per answer)
        deadline = time.monotonic() + STOP_SECONDS
        while _acc_lines(acc_dir) < len(CALLS) + len(ANSWERED) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
    return placed, over


def test_kamailio_accounts_sipp_calls_that_ingest_rates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acc_dir = tmp_path / "acc"
    acc_dir.mkdir()
    placed, over = _place_calls(tmp_path, acc_dir)
    files = sorted(acc_dir.glob("acc_*.log"))  # one per Kamailio process that wrote
    rated_path, rejects_path = tmp_path / "rated.jsonl", tmp_path / "rejects.jsonl"
    code = main(["ingest", "--format", "kamailio-acc", *map(str, files), "--tenant", TENANT,
                 "--timezone", "UTC", "--tariffs", str(PLAN), "--out", str(rated_path),
                 "--rejects", str(rejects_path), "--json"])  # fmt: skip
    answer = json.loads(capsys.readouterr().out)
    acc = "\n".join(p.read_text() for p in files)
    assert code == EXIT_OK, answer
    total = answer["total"]
    # every line accounted for: an INVITE per call, a BYE per answered call
    assert answer["balanced"] is True, answer
    assert total["lines"] == len(CALLS) + len(ANSWERED), acc
    assert total["skipped_by_rule"] == {"missed": len(CALLS) - len(ANSWERED)}, acc
    assert (total["rejected"], total["rating_rejected"]) == (0, 0), answer
    assert answer["unpaired_at_end"] == [], acc
    assert list(read_rejects(rejects_path)) == []
    # one rated record per answered call, none for the busy one
    assert total["rated"] == len(ANSWERED)
    rated = {r["destination"]: r for r in map(json.loads, rated_path.read_text().splitlines())}
    assert sorted(rated) == sorted(c.callee for c in ANSWERED), acc
    tariff = load_tariff(PLAN)
    charged = 0
    for call in ANSWERED:
        record = rated[call.callee]
        start = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=record["start_us"])
        assert record["account"] == call.caller
        assert placed.replace(microsecond=0) <= start <= over, (placed, record, over)
        assert call.talk <= record["usage"] <= call.talk + 1, (call, record)
        expected = rate_reference(tariff, tenant=TENANT, category="call", subject=call.caller,
                                  destination=call.callee, start=start, usage=record["usage"],
                                  time_based=True)  # fmt: skip
        assert (record["plan"], record["cost_nanos"], record["cost"]) == (
            expected.plan, expected.cost, format_amount(expected.cost)), (call, record)  # fmt: skip
        charged += expected.cost
    assert total["charged"] == {"EUR": format_amount(charged)}
