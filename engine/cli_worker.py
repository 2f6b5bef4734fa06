"""``ratewire worker``: run the streaming worker (Faust on uvloop) against a Kafka broker.

Creates the topics it needs (``cdrs``, ``accounts``, ``rated-cdrs``,
``cdrs-rejected``, ``alerts``, the state changelog) with ``--partitions``
partitions unless they exist, then consumes until SIGTERM / Ctrl-C.
Start more workers with the same ``--broker`` and their own ``--state``
folder and web port: they share the partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from engine.cli_common import tariff_args, whole_number
from engine.topics import DEFAULT_PARTITIONS

MIN_CHANGELOG_BYTES = 4096  # a message must hold a key, a piece of a value and the framing

TOKEN_ENV = "RATEWIRE_API_TOKEN"


def add_parser(commands: Any) -> None:
    p = commands.add_parser("worker", help="rate topic cdrs and serve the balance API")
    p.add_argument(
        "--broker",
        default=os.environ.get("RATEWIRE_BROKER", "kafka://127.0.0.1:9092"),
        help="kafka://host:port (default: $RATEWIRE_BROKER or kafka://127.0.0.1:9092)",
    )
    tariff_args(p)
    p.add_argument("--units", type=Path, help="unit catalog (default: the sample units)")
    p.add_argument("--state", required=True, type=Path, help="folder for partition state (RocksDB)")
    p.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        help="partitions of each keyed topic (created if missing)",
    )
    p.add_argument("--web-host", default="127.0.0.1")
    p.add_argument("--web-port", type=int, default=6066)
    p.add_argument(
        "--api-token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV})",
    )
    p.add_argument("--batch-events", type=int, default=2_000, help="messages per batch at most")
    p.add_argument("--batch-ms", type=float, default=20.0, help="wait this long to fill a batch")
    p.add_argument(
        "--remember",
        type=whole_number,
        default=2_000_000,
        help="cdr_ids remembered per partition (x2 generations) to catch resends",
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=4 << 20,
        help="larger messages are rejected (MESSAGE_TOO_LARGE)",
    )
    p.add_argument(
        "--changelog-message-bytes",
        type=_changelog_bytes,
        help="largest state changelog message; keep it under the broker's message.max.bytes"
        " (default 900,000: under Kafka's default 1 MiB)",
    )
    p.add_argument(
        "--alert",
        action="append",
        default=[],
        metavar="REASON:COUNT/SECONDS",
        help="alert when rejects reach COUNT in SECONDS (repeatable; '*' any reason)",
    )
    p.add_argument(
        "--session-timeout",
        type=float,
        default=6.0,
        help="seconds before a silent worker's partitions move to the others (a first group"
        " join waits about half of it)",
    )
    p.add_argument("--log-level", default="info")  # fmt: skip


def _changelog_bytes(text: str) -> int:
    value = int(text)
    if value < MIN_CHANGELOG_BYTES:
        msg = f"{value} is too small: at least {MIN_CHANGELOG_BYTES:,} bytes"
        raise argparse.ArgumentTypeError(msg)
    return value


def main(args: argparse.Namespace) -> int:
    import uvloop  # here, not at the top: other commands start without Faust

    from balances.units import load_units
    from engine.alerts import DEFAULT_RULES, parse_rule
    from engine.broker import ensure_topics
    from engine.changelog import MAX_BYTES
    from engine.faust_app import serve
    from engine.topics import all_topics
    from engine.worker import WorkerConfig, build_app
    from tariffs.loader import load_tariff
    from tariffs.rating import Rater

    config = WorkerConfig(
        broker=args.broker, state=args.state, partitions=args.partitions,
        web_host=args.web_host, web_port=args.web_port, api_token=args.api_token,
        batch_events=args.batch_events, batch_seconds=args.batch_ms / 1000,
        remember=args.remember, max_message_bytes=args.max_message_bytes,
        changelog_message_bytes=args.changelog_message_bytes or MAX_BYTES,
        alert_rules=tuple(parse_rule(t) for t in args.alert) or DEFAULT_RULES,
        session_timeout=args.session_timeout,
    )  # fmt: skip
    tariff = load_tariff(args.tariffs, currency=args.currency, timezone=args.timezone)
    units = load_units(args.units) if args.units else load_units()
    args.state.mkdir(parents=True, exist_ok=True)
    ensure_topics(config.bootstrap, all_topics(config.partitions))
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    runtime = build_app(config, Rater(tariff), units)
    serve(runtime.app, args.log_level)
    return 0
