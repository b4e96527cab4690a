"""CLI group ``twinmesh chaos``: a scenario file on real node processes.

``twinmesh chaos run scenarios/wan-split.toml [--duration 20] [--seed N]
[--out DIR] [--interval 0.3] [--netns]``

Writes DIR/history.jsonl, DIR/report.json, DIR/report.txt and
DIR/timeline.svg; exits 0 when every checker passed, 1 when one failed,
2 on a bad scenario or option, 3 when --netns was asked for and the
machine cannot make network namespaces (the reason is printed). Where the
kernel lacks sch_netem, --netns still runs — cuts, isolation and crashes at
the kernel — and the report's mapping says which link faults were not applied.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    from twinmesh.sim._scenario import ScenarioError, load_scenario

    backend = None
    if args.netns:
        from ._backends import NetnsBackend
        from ._netns import netns_probe

        probe = netns_probe()
        if not probe.namespaces:
            print(f"twinmesh chaos: --netns skipped: {probe.reason}", file=sys.stderr)
            return 3
        print(f"twinmesh chaos: --netns: {probe.reason}")
        backend = NetnsBackend(netem=probe.netem)
        # SIGTERM as SystemExit, so the finally blocks below tear the namespaces down.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not 2 <= args.duration <= 3600:
        print("twinmesh chaos: --duration must be 2..3600 seconds", file=sys.stderr)
        return 2
    if not 0.05 <= args.interval <= 5:
        print("twinmesh chaos: --interval must be 0.05..5 seconds", file=sys.stderr)
        return 2
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"twinmesh chaos: {exc}", file=sys.stderr)
        return 2
    if len(sc.fleet.plants) > 26:
        print(
            f"twinmesh chaos: {sc.name} has {len(sc.fleet.plants)} plants; a local fleet of "
            "real processes has at most 26",
            file=sys.stderr,
        )
        return 2
    from ..fleet._launch import FleetError
    from ._harness import run_chaos
    from ._report import chaos_json, chaos_svg, chaos_text

    seed = sc.seed if args.seed is None else args.seed
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="twinmesh-chaos-"))
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(
        [
            "twinmesh",
            "chaos",
            "run",
            args.scenario,
            "--seed",
            str(seed),
            "--duration",
            f"{args.duration:g}",
            "--interval",
            f"{args.interval:g}",
            *(["--netns"] if args.netns else []),
        ]
    )
    print(f"twinmesh chaos: {sc.name} on real processes in {out} ...")
    try:
        result = run_chaos(
            sc,
            directory=out / "fleet",
            duration=args.duration,
            seed=seed,
            interval=args.interval,
            max_rate=args.max_rate,
            command=command,
            say=print,
            backend=backend,
        )
    except (ValueError, RuntimeError, FleetError) as exc:
        print(f"twinmesh chaos: {exc}", file=sys.stderr)
        return 2
    finally:
        if backend is not None:
            # Again, synchronously: a SIGTERM or Ctrl-C that cut the run's own
            # teardown short must not leave namespaces or nodes behind.
            backend.down(out / "fleet")
    text = chaos_text(result)
    print(text)
    result.history.save(out / "history.jsonl")
    (out / "report.txt").write_text(text + "\n")
    (out / "report.json").write_text(json.dumps(chaos_json(result), indent=1))
    (out / "timeline.svg").write_text(chaos_svg(result))
    print(
        f"  files        {out}/report.json, history.jsonl, timeline.svg; node logs in {out}/fleet"
    )
    return 0 if result.ok else 1


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "chaos", help="run a scenario file's faults on real node processes and check the history"
    )
    sub = group.add_subparsers(dest="chaos_command", metavar="SUBCOMMAND")
    run = sub.add_parser("run", help="one scenario on a local fleet; history checker; report")
    run.add_argument("scenario", help="a scenario file, e.g. scenarios/wan-split.toml")
    run.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="real seconds of the safety phase; the schedule is scaled to fit (default 20)",
    )
    run.add_argument("--seed", type=int, help="default: the scenario's seed")
    run.add_argument("--out", help="report directory (default: a new temporary one)")
    run.add_argument("--interval", type=float, default=0.3, help="gossip interval, s (0.3)")
    run.add_argument(
        "--max-rate",
        type=float,
        default=4.0,
        help="cap on operations per node per second (default 4)",
    )
    run.add_argument(
        "--netns",
        action="store_true",
        help="network namespaces (kernel cuts; tc netem where the kernel has it) instead of "
        "link proxies (Linux, root)",
    )
    run.set_defaults(handler=_run)
    group.set_defaults(handler=lambda _a: group.print_help() or 2)
