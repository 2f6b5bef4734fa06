"""``make demo``: a day of sample traffic rated against the bundled mobile plan.

Generates the day (seeded), writes it as JSON lines under ``out/demo/``, runs
exactly what ``ratewire rate`` runs, prints its summary, then explains one
call with ``ratewire cost``. The first run also compiles the kernels (numba
caches them, so later runs start at once).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec

from engine.cost import cost
from engine.rate_file import rate_file
from engine.wire import encode_jsonl
from loadtest.generator import Scenario, columns_to_records, generate_columns
from tariffs.loader import load_tariff
from tariffs.rating import Rater

SAMPLE_PLAN = Path(__file__).parents[1] / "tariffs" / "samples" / "mobile.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    say = sys.stdout.write

    scenario = Scenario(records=args.records, accounts=args.accounts)
    day = scenario.day.date().isoformat()
    say(f"1. generating {args.records:,} records of {day} for {args.accounts:,} accounts\n")
    traffic = args.out / "traffic.jsonl"
    traffic.write_bytes(encode_jsonl(columns_to_records(generate_columns(scenario))))
    say(f"   wrote {traffic} ({traffic.stat().st_size / 1e6:.1f} MB)\n\n")

    say(f"2. ratewire rate --tariffs {SAMPLE_PLAN.relative_to(Path.cwd())} --in {traffic}\n")
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
    say(msgspec.json.format(msgspec.json.encode(answer), indent=2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
