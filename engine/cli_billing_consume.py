"""``ratewire billing consume``: run the invoicing consumer (Faust on uvloop).

    ratewire billing consume --broker kafka://H:P --billing DIR [--web-port N]
                             [--until-idle SECONDS] [--partitions N] [--catalog F]

Reads ``rated-cdrs`` and ``billing-events`` into the billing store at
``--billing`` (a RocksDB folder, created if missing; Faust keeps its own
files beside it in ``DIR.faust``), creating ``billing-events`` and
``billing-rejected`` unless they exist, and serves invoice search and runs
over HTTP until SIGTERM / Ctrl-C, or until nothing arrived for
``--until-idle`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from engine.topics import DEFAULT_PARTITIONS

TOKEN_ENV = "RATEWIRE_API_TOKEN"


def add_consume_parser(actions: Any) -> None:
    """Add ``consume`` to the ``billing`` sub-commands (``actions`` = its subparsers)."""
    p = actions.add_parser("consume", help="accumulate rated usage and billing events")
    p.add_argument(
        "--broker",
        default=os.environ.get("RATEWIRE_BROKER", "kafka://127.0.0.1:9092"),
        help="kafka://host:port (default: $RATEWIRE_BROKER or kafka://127.0.0.1:9092)",
    )
    p.add_argument("--billing", required=True, type=Path, help="billing store (RocksDB folder)")
    p.add_argument("--web-host", default="127.0.0.1")
    p.add_argument("--web-port", type=int, default=6070)
    p.add_argument(
        "--api-token",
        default=os.environ.get(TOKEN_ENV, ""),
        help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV})",
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        help="partitions of billing-events (and rated-cdrs) when created here",
    )
    p.add_argument("--until-idle", type=float, help="stop after SECONDS without a message")
    p.add_argument("--batch-events", type=int, default=64, help="messages per batch at most")
    p.add_argument("--batch-ms", type=float, default=50.0, help="wait this long to fill a batch")
    p.add_argument(
        "--remember",
        type=int,
        default=2_000_000,
        help="cdr_ids remembered (x2 generations) to recognise a resent chunk",
    )
    p.add_argument("--catalog", type=Path, help="product catalog for runs (default: the sample)")
    p.add_argument("--session-timeout", type=float, default=6.0)
    p.add_argument("--log-level", default="info")


def main(args: argparse.Namespace) -> int:
    import uvloop  # here, not at the top: other commands start without Faust

    from billing.consumer import REJECTED, ConsumerConfig, build_app
    from engine.broker import ensure_topics
    from engine.faust_app import serve
    from engine.topics import BILLING_EVENTS, RATED

    config = ConsumerConfig(
        broker=args.broker, billing=args.billing, partitions=args.partitions,
        web_host=args.web_host, web_port=args.web_port, api_token=args.api_token,
        batch_events=args.batch_events, batch_seconds=args.batch_ms / 1000,
        remember=args.remember, session_timeout=args.session_timeout,
        until_idle=args.until_idle, catalog=args.catalog,
    )  # fmt: skip
    args.billing.mkdir(parents=True, exist_ok=True)
    ensure_topics(config.bootstrap, {RATED: config.partitions,
                                     BILLING_EVENTS: config.partitions, REJECTED: 1})  # fmt: skip
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    runtime = build_app(config)
    try:
        serve(runtime.app, args.log_level)
    finally:
        runtime.billing.store.close()
    return 0


def _standalone(argv: list[str] | None = None) -> int:
    """``python -m engine.cli_billing_consume consume …`` (the same as ``ratewire billing
    consume``; for tests and for running before the main CLI lists it)."""
    parser = argparse.ArgumentParser(prog="ratewire billing")
    add_consume_parser(parser.add_subparsers(dest="action", required=True))
    return main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(_standalone())
