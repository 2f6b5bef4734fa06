"""``ratewire worker``'s arguments: counts it refuses before starting anything."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from engine import cli_worker

BASE = ("worker", "--broker", "kafka://127.0.0.1:9092", "--tariffs", "plan.toml",
        "--state", "st")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ratewire")
    cli_worker.add_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_remember_takes_a_whole_number_of_ids() -> None:
    assert parser().parse_args([*BASE, "--remember", "5000"]).remember == 5000


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_remember_refuses_less_than_one_id(bad: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        parser().parse_args([*BASE, "--remember", bad])
    assert exited.value.code == 2
    assert f"--remember: expected a whole number of at least 1, got '{bad}'" in err.getvalue()
