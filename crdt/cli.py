"""CLI group ``twinmesh crdt``."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    for line in run_demo():
        print(line)
    return 0


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("crdt", help="the CRDT core: walkthrough and tools")
    sub = group.add_subparsers(dest="crdt_command", metavar="SUBCOMMAND")
    demo = sub.add_parser("demo", help="two replicas edit while apart, conflict, resolve, converge")
    demo.set_defaults(handler=_demo)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)
