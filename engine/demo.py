"""``make demo``: a day of sample traffic rated against the bundled mobile plan.

Generates the day (seeded), writes it as JSON lines under ``out/demo/``, runs
exactly what ``ratewire rate`` runs, prints its summary, explains one call
with ``ratewire cost``, then rates the day again against accounts with
bundles and credit (``--state``) and shows balances before and after, and
finally streams the same day through a real broker and a ``ratewire worker``
(:mod:`engine.demo_stream`; ``RATEWIRE_BROKER`` picks the broker). The first
run also compiles the kernels (numba caches them: later runs start at once).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from balances.debit import Debitor
from balances.ledger import Ledger, open_ledger
from balances.model import Measure
from engine.cost import cost
from engine.demo_billing import billing_step
from engine.demo_stream import stream_step
from engine.rate_file import StatefulRating, rate_file
from engine.wire import encode_jsonl
from loadtest.accounts import account_id, scenario_accounts
from loadtest.generator import Scenario, columns_to_records, generate_columns
from tariffs.loader import load_tariff
from tariffs.money import format_units
from tariffs.rating import Rater

SAMPLE_PLAN = Path(__file__).parents[1] / "tariffs" / "samples" / "mobile.toml"
WATCHED = (0, 150, 4321)  # accounts shown before and after: the busiest, then quieter ones


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument(
        "--stream-records", type=int, help="records step 7 streams (default: all; 0: skip step 7)"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    say = sys.stdout.write

    scenario = Scenario(records=args.records, accounts=args.accounts)
    day = scenario.day.date().isoformat()
    say(f"1. generating {args.records:,} records of {day} for {args.accounts:,} accounts\n")
    traffic = args.out / "traffic.jsonl"
    records = columns_to_records(generate_columns(scenario))
    traffic.write_bytes(encode_jsonl(records))
    say(f"   wrote {traffic} ({traffic.stat().st_size / 1e6:.1f} MB)\n\n")

    say(f"2. ratewire rate --tariffs tariffs/samples/mobile.toml --in {traffic}\n")
    started = time.perf_counter()
    rater = Rater(load_tariff(SAMPLE_PLAN))
    summary = rate_file(
        rater, traffic, out=args.out / "rated.jsonl", rejects=args.out / "rejects.jsonl"
    )
    say(summary.render())
    say(f"   (this run, kernel compilation included: {time.perf_counter() - started:.1f} s)\n\n")

    say("3. one rated record, as written to rated.jsonl:\n")
    with (args.out / "rated.jsonl").open("rb") as rated:
        first = msgspec.json.decode(rated.readline())
    say(msgspec.json.format(msgspec.json.encode(first), indent=2).decode() + "\n\n")

    query = {
        "tenant": "ratewire.demo",
        "category": "call",
        "subject": "acc0000001",
        "destination": "4930123456",
        "start": "2026-11-02T18:59:00+01:00",
        "usage": "3m",
    }
    say("4. ratewire cost (a 3-minute call crossing 19:00, peak → off-peak):\n")
    answer = cost(rater, **query)
    say(msgspec.json.format(msgspec.json.encode(answer), indent=2).decode() + "\n\n")

    watched = [account_id(i) for i in WATCHED if i < args.accounts]
    _with_balances(rater, scenario, traffic, args.out, watched, say)
    say("\n")
    billing_step(args.out, scenario, say)
    if args.stream_records == 0:
        return 0
    say("\n")
    return stream_step(args.out, say, scenario, records[: args.stream_records], watched)


def _with_balances(
    rater: Rater, scenario: Scenario, traffic: Path, out: Path, watched: list[str],
    say: Callable[[str], object],
) -> None:  # fmt: skip
    """Step 5: the same day debited from balances (``ratewire rate --state``)."""
    state = out / "state"
    shutil.rmtree(state, ignore_errors=True)
    ledger = open_ledger(state)
    accounts, bundles = scenario_accounts(scenario)
    ledger.create_accounts(accounts, bundles)
    ledger.checkpoint()
    say(f"5. {len(accounts):,} accounts (every third postpaid), each with 30 free national "
        "minutes, 1 GB of data and 5 EUR of credit;\n"
        f"   ratewire rate … --state {state}\n")  # fmt: skip
    before = {a: _amounts(ledger, a) for a in watched}
    summary = rate_file(
        rater, traffic, out=out / "rated-state.jsonl", rejects=out / "rejects-state.jsonl",
        state=StatefulRating(ledger, Debitor(ledger.state, rater)),
    )  # fmt: skip
    say(summary.render())
    for account in watched:
        say(f"   {account}: {before[account]}  →  {_amounts(ledger, account)}\n")
    ledger.close()


def _amounts(ledger: Ledger, account: str) -> str:
    units = ledger.state.units
    parts = []
    for b in ledger.balances(account):
        unit = units[b.unit]
        scale = unit.decimals if unit.measure is Measure.MONEY else 0
        parts.append(f"{b.id}={format_units(b.amount, scale)}")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
