"""Step 6 of ``make demo``: the streaming worker end to end, on a real broker.

Without ``RATEWIRE_BROKER`` it starts the embedded Tansu broker (memory
storage, its log under the demo's folder); with
``RATEWIRE_BROKER=kafka://host:port`` it uses that broker, which must not
hold an earlier run's accounts. It starts one ``ratewire worker``,
provisions the scenario's accounts on topic ``accounts``, sends the day's
records (those of steps 1–5, so the balances after equal step 5's) as
MessagePack batches and then the first records again (the resend a
mediation system makes after a timeout), reads ``rated-cdrs`` and
``cdrs-rejected`` until every record is accounted for, and shows counts,
speed, and balances before and after as the worker's API answers them. The
worker and the broker are stopped whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.broker import EmbeddedBroker, bootstrap_of, ensure_topics, free_port
from engine.exceptions import RatewireError
from engine.records import Record
from engine.topics import all_topics
from engine.worker_process import WorkerProcess, wait_accounts
from loadtest import kafka
from loadtest.accounts import scenario_accounts
from loadtest.generator import Scenario

BROKER_ENV = "RATEWIRE_BROKER"
TOKEN_ENV = "RATEWIRE_API_TOKEN"  # the worker inherits it; its API then wants the token
PLAN = Path(__file__).parents[1] / "tariffs" / "samples" / "mobile.toml"
PARTITIONS = 4
BATCH = 1_000  # records per message
RESEND = 5_000  # records sent a second time
ACCOUNTS_SECONDS = 60.0
COLLECT_SECONDS = 60.0
Say = Callable[[str], object]


def stream_step(
    out: Path, say: Say, scenario: Scenario, records: Sequence[Record], watched: Sequence[str]
) -> int:
    """Step 6: ``records`` through a worker; the exit code (1: unusable broker, records lost).

    ``scenario`` gives the accounts to provision; ``watched`` the accounts
    whose balances are shown before and after.
    """
    url = os.environ.get(BROKER_ENV, "")
    broker = None if url else EmbeddedBroker(log_path=out / "broker.log")
    worker: WorkerProcess | None = None
    say(f"7. streaming the day through a Kafka broker and one ratewire worker ({PARTITIONS} "
        "partitions)\n")  # fmt: skip
    try:
        if broker is not None:
            url = broker.start().url
            say(f"   embedded Tansu broker at {broker.bootstrap} (log: {broker.log_path})\n")
        else:
            say(f"   broker {url} (from ${BROKER_ENV})\n")
        bootstrap = bootstrap_of(url)
        ensure_topics(bootstrap, all_topics(PARTITIONS))
        worker = _start_worker(out, url, say)
        return _run(worker, bootstrap, scenario, records, watched, say)
    except RatewireError as exc:  # BrokerError, WorkerProcessError: say it and stop
        say(f"   {exc}\n   skipping the streaming step\n")
        return 1
    finally:
        code = None if worker is None else worker.stop()
        if broker is not None:
            broker.stop()
        if worker is not None:
            what = "and the embedded broker" if broker is not None else f"(broker {url} left as is)"
            say(f"   stopped the worker (exit code {code}) {what}\n")


def _start_worker(out: Path, url: str, say: Say) -> WorkerProcess:
    state, log = out / "stream-state", out / "worker.log"
    shutil.rmtree(state, ignore_errors=True)
    log.unlink(missing_ok=True)
    worker = WorkerProcess(url, state, free_port(), tariffs=PLAN, log=log,
                           args=("--partitions", str(PARTITIONS)))  # fmt: skip
    started = time.perf_counter()
    assigned = worker.start().wait_assigned()
    say(f"   ratewire worker --state {state} --web-port {worker.web_port}: partitions "
        f"{assigned} after {time.perf_counter() - started:.1f} s (log: {log})\n")  # fmt: skip
    return worker


def _run(
    worker: WorkerProcess, bootstrap: str, scenario: Scenario, records: Sequence[Record],
    watched: Sequence[str], say: Say,
) -> int:  # fmt: skip
    accounts, balances = scenario_accounts(scenario)
    ids = [a.id for a in accounts]
    asyncio.run(kafka.provision(bootstrap, accounts, balances, PARTITIONS))
    created, existing = wait_accounts([worker], len(ids), ACCOUNTS_SECONDS)
    if existing:
        say(f"   the broker holds {existing:,} of these accounts already, and an "
            "earlier run's output that would mix with this one's: delete the topics "
            f"{', '.join(all_topics(PARTITIONS))} or use an empty broker\n")  # fmt: skip
        return 1
    say(f"   {created:,} accounts created from topic accounts\n")
    before = {a: _balances(worker, a) for a in watched}

    messages = kafka.messages_of(records, PARTITIONS, size=BATCH)
    resent = kafka.messages_of(records[:RESEND], PARTITIONS, size=BATCH)
    say(f"   sending {len(records):,} records in {len(messages)} MessagePack batches, then the "
        f"first {RESEND:,} again (a mediation resend)\n")  # fmt: skip
    sent = len(records) + RESEND
    got, seconds = asyncio.run(_send_and_collect(bootstrap, messages + resent, sent))
    say(_render(got, sent, seconds))
    for account in watched:
        say(f"   {account}: {before[account]}  →  {_balances(worker, account)}\n")
    return 0 if got.total == sent and got.rated_lines == len(got.rated) else 1


async def _send_and_collect(
    bootstrap: str, messages: list[kafka.Outgoing], expected: int
) -> tuple[kafka.Collected, float]:
    """What the worker wrote, and the seconds from the first send to the last output read."""
    started = time.perf_counter()
    await kafka.produce(bootstrap, messages)
    got = await kafka.collect(bootstrap, expected, timeout=COLLECT_SECONDS)
    return got, time.perf_counter() - started


def _render(got: kafka.Collected, sent: int, seconds: float) -> str:
    rejected = dict(got.rejected)
    duplicates = rejected.pop("DUPLICATE", 0)
    lines = [
        f"records in                  {sent:>10,}",
        f"rated                       {len(got.rated):>10,}",
        f"rejected                    {sum(rejected.values()):>10,}",
        *(f"  {reason:<26}{n:>10,}" for reason, n in sorted(rejected.items())),
        f"duplicates caught           {duplicates:>10,}  (resent records rated the first time)",
    ]
    if got.total < sent:
        lines.append(f"MISSING                     {sent - got.total:>10,}  "
                     f"(not seen in {COLLECT_SECONDS:g} s)")  # fmt: skip
    if got.rated_lines != len(got.rated):
        lines.append(f"RATED TWICE                 {got.rated_lines - len(got.rated):>10,}")
    lines.append(f"speed                       {got.total / seconds:>10,.0f} records/s end to end "
                 f"({seconds:.1f} s from the first send to the last output read)")  # fmt: skip
    return "\n".join(lines) + "\n"


def _balances(worker: WorkerProcess, account: str) -> str:
    """The account's balances as its API shows them (``id=amount …``); empty if unknown."""
    request = urllib.request.Request(f"{worker.url}/accounts/{account}/balances")
    if token := os.environ.get(TOKEN_ENV):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            body = json.loads(answer.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""
    return " ".join(f"{b['id']}={b['amount']}" for b in body["balances"])
