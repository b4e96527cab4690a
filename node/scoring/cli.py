"""``twinmesh score evaluate``: the detection-quality table for a plant file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _evaluate(args: argparse.Namespace) -> int:
    from ._evaluate import main_evaluate

    print(
        main_evaluate(
            Path(args.config),
            seeds=args.seeds,
            variants=args.variants,
            duration=args.duration,
            tail=args.tail,
            as_json=args.json,
            first_seed=args.first_seed,
        )
    )
    return 0


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("score", help="anomaly scoring: evaluate detectors on a plant")
    sub = group.add_subparsers(dest="score_command", metavar="SUBCOMMAND")
    ev = sub.add_parser(
        "evaluate",
        help="recall, lead time, false alerts per healthy asset-day and sensor labelling,"
        " per fault type, over seeds (and altered copies of the plant)",
    )
    ev.add_argument("--config", required=True, help="plant.toml of the synthetic plant")
    ev.add_argument("--seeds", type=int, default=3, help="seeds per plant file (default 3)")
    ev.add_argument("--first-seed", type=int, default=1, help="the first seed (default 1)")
    ev.add_argument(
        "--variants",
        type=int,
        default=2,
        help="altered copies of the plant written to a temp dir (default 2)",
    )
    ev.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stream seconds per run (default: last fault end + --tail)",
    )
    ev.add_argument(
        "--tail",
        type=float,
        default=1800.0,
        help="healthy seconds after the last fault (default 1800)",
    )
    ev.add_argument("--json", action="store_true", help="print the table as JSON")
    ev.set_defaults(handler=_evaluate)
    group.set_defaults(handler=lambda a: group.print_help() or 2)
