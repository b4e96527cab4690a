"""``twinmesh demo [--headless] [--duration S] [--dir DIR]`` (see node/demo/_run.py).

Exit status: 0 every step as expected; 1 a step's expectation failed (the
summary says which, and which endpoint a step found missing); 2 the demo
could not start; 130 stopped by Ctrl-C before the script ended.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _demo(args: argparse.Namespace) -> int:
    from ._run import run_demo

    if args.duration is not None and args.duration < 0:
        print("twinmesh demo: --duration must be 0 or more seconds")
        return 2
    start = time.monotonic()

    def say(text: str) -> None:
        # Headless output is a log: each line says when it happened.
        prefix = f"[{time.monotonic() - start:6.1f}s] " if args.headless else ""
        print(prefix + text, flush=True)

    return run_demo(
        Path(args.dir) if args.dir else None,
        say=say,
        headless=args.headless,
        duration=args.duration,
        pace=args.pace,
        alert_timeout=args.alert_timeout,
    )


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the whole story on loopback: plants, physics, a WAN split, a conflict, a review",
        description=(
            "Starts three plant nodes and central ops, each plant fed by a synthetic plant over "
            "OPC UA and MQTT (an embedded broker), prints the dashboards and a viewer sign-in, "
            "and plays a script step by step. Ctrl-C stops everything."
        ),
    )
    demo.add_argument(
        "--headless",
        action="store_true",
        help="run the script and exit with a summary; non-zero if a step's expectation failed",
    )
    demo.add_argument(
        "--duration",
        type=float,
        help="keep everything running this many seconds after the script (default: until "
        "Ctrl-C; with --headless: exit at once)",
    )
    demo.add_argument("--dir", help="working directory (default: a new temporary one)")
    demo.add_argument(
        "--pace", type=float, help="seconds between steps (default 4, 0 with --headless)"
    )
    demo.add_argument(
        "--alert-timeout",
        type=float,
        default=90.0,
        help="how long to wait for the wear alert at plant B (default 90 s)",
    )
    demo.set_defaults(handler=_demo)
