"""CLI group ``twinmesh node``: run a node, and read its history."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from twinmesh.crdt import LocalProtocolError

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from ._runner import load, run_node, setup_logging

    setup_logging(args.log_level)
    try:
        config = load(args.config)
    except LocalProtocolError as exc:
        print(f"twinmesh node run: {exc.reason}", file=sys.stderr)
        return 2
    ready = Path(args.ready_file) if args.ready_file else None
    return asyncio.run(run_node(config, ready_file=ready))


def _parse_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def _history(args: argparse.Namespace) -> int:
    from ._runner import history, load

    try:
        config = load(args.config)
        at_ms = _parse_time(args.at) if args.at else 2**62
    except (LocalProtocolError, ValueError) as exc:
        print(f"twinmesh node history: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(history(config, args.entity, at_ms))
    except LookupError as exc:
        print(f"twinmesh node history: {exc.args[0]}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("node", help="run a plant or central ops node")
    sub = group.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    run = sub.add_parser("run", help="run a node until SIGTERM")
    run.add_argument("--config", required=True, help="the node's TOML config")
    run.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log threshold (default: %(default)s)",
    )
    run.add_argument("--ready-file", help="write the node's URLs here once it serves")
    run.set_defaults(handler=_run)
    hist = sub.add_parser("history", help="an entity as it was at a time, rebuilt from the op log")
    hist.add_argument("entity", help="the entity id, e.g. plant-a/line-1/pump-7")
    hist.add_argument(
        "--config", required=True, help="the node's TOML config (its store is read, offline)"
    )
    hist.add_argument("--at", help="ISO 8601 time or epoch milliseconds (default: now)")
    hist.set_defaults(handler=_history)
    group.set_defaults(handler=lambda _a: group.print_help() or 2)
