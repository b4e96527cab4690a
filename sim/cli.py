"""CLI group ``twinmesh sim``: run a scenario, or a swarm of seeds.

``twinmesh sim run scenarios/wan-split.toml --seed 7 [--json FILE] [--plot FILE]``
``twinmesh sim swarm --seeds 500 [--scenario FILE] [--start N] [--jobs 2]``
``twinmesh sim mutate [--only NAME ...] [--swarm-seeds 20] [--jobs 2]`` (sim/_mutate.py)

The exit status is non-zero when any checker fails; every failure prints the
exact command that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _scenario(path: str | None, *, quick: bool, scale: float | None) -> Any:
    from ._scenario import load_scenario
    from ._swarm import default_swarm_scenario

    sc = default_swarm_scenario() if path is None else load_scenario(path)
    factor = scale if scale is not None else (sc.quick_scale if quick else 1.0)
    return sc.scaled(factor)


def _flags(args: argparse.Namespace) -> list[str]:
    out = []
    if args.scale is not None:
        out += ["--scale", repr(args.scale)]
    elif args.quick:
        out.append("--quick")
    if args.no_verify_cache:
        out.append("--no-verify-cache")
    return out


def _run(args: argparse.Namespace) -> int:
    from ._report import result_json, svg_timeline, text_report
    from ._runner import run_scenario
    from ._scenario import ScenarioError

    try:
        sc = _scenario(args.scenario, quick=args.quick, scale=args.scale)
    except ScenarioError as exc:
        print(f"twinmesh sim: {exc}", file=sys.stderr)
        return 2
    seed = sc.seed if args.seed is None else args.seed
    argv = ["twinmesh", "sim", "run", args.scenario, "--seed", str(seed), *_flags(args)]
    if args.swarm:
        argv.append("--swarm")
    command = shlex.join(argv)
    result = run_scenario(
        sc, seed, swarm=args.swarm, verify_cache=not args.no_verify_cache, command=command
    )
    print(text_report(result, verbose=args.verbose))
    status = 0 if result.ok else 1
    data = result_json(result)
    if args.twice:
        again = run_scenario(
            sc, seed, swarm=args.swarm, verify_cache=not args.no_verify_cache, command=command
        )
        same = again.trace_hash == result.trace_hash
        verdict = "identical" if same else "DIFFERENT"
        print(f"  determinism  second run trace {again.trace_hash[:16]}: {verdict}")
        data["checkers"]["determinism"] = {
            "ok": same,
            "checks": 1,
            "failures": int(not same),
            "details": [] if same else [f"second run gave {again.trace_hash}"],
            "description": "the same seed gives the same trace hash",
        }
        if not same:
            status = 1
            print(f"  reproduce    {command} --twice")
    if args.json:
        Path(args.json).write_text(
            json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
    if args.plot:
        Path(args.plot).write_text(svg_timeline(result), encoding="utf-8")
    return status


def _swarm_one(job: tuple[str | None, bool, float | None, int, bool, str]) -> dict[str, Any]:
    path, quick, scale, seed, verify_cache, command = job
    from ._report import result_json, text_report
    from ._runner import run_scenario

    sc = _scenario(path, quick=quick, scale=scale)
    result = run_scenario(sc, seed, swarm=True, verify_cache=verify_cache, command=command)
    return {
        "seed": seed,
        "ok": result.ok,
        "trace_hash": result.trace_hash,
        "rounds_after_heal": result.rounds_after_heal,
        "simulated": result.safety_seconds + result.liveness_seconds,
        "writes": result.writes,
        "failed": [v.name for v in result.verdicts if not v.ok],
        "report": "" if result.ok else text_report(result),
        "json": None if result.ok else result_json(result),
    }


def _swarm(args: argparse.Namespace) -> int:
    from ._scenario import ScenarioError

    try:
        _scenario(args.scenario, quick=args.quick, scale=args.scale)
    except ScenarioError as exc:
        print(f"twinmesh sim: {exc}", file=sys.stderr)
        return 2
    jobs = []
    for seed in range(args.start, args.start + args.seeds):
        argv = ["twinmesh", "sim", "swarm", "--seeds", "1", "--start", str(seed)]
        if args.scenario:
            argv += ["--scenario", args.scenario]
        command = shlex.join([*argv, *_flags(args)])
        jobs.append(
            (args.scenario, args.quick, args.scale, seed, not args.no_verify_cache, command)
        )
    wall0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(_swarm_one, jobs, chunksize=4))
    else:
        results = [_swarm_one(j) for j in jobs]
    wall = time.perf_counter() - wall0
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print(r["report"])
        print()
    rounds = sorted(r["rounds_after_heal"] for r in results if r["rounds_after_heal"] is not None)
    simulated = sum(r["simulated"] for r in results)
    median = rounds[len(rounds) // 2] if rounds else float("nan")
    last = args.start + len(results) - 1
    print(
        f"twinmesh sim swarm: {len(results)} seeds ({args.start}..{last}), "
        f"{len(results) - len(failed)} passed, {len(failed)} failed; "
        f"{simulated / 3600:.1f} simulated hours in {wall:.1f} s wall; "
        f"rounds after heal median {median:.1f}, max {rounds[-1] if rounds else float('nan'):.1f}"
    )
    for r in failed:
        print(f"  FAIL seed {r['seed']}: {', '.join(r['failed'])}")
    if args.json:
        summary = {
            "seeds": len(results),
            "start": args.start,
            "passed": len(results) - len(failed),
            "failed": [r["seed"] for r in failed],
            "wall_seconds": round(wall, 3),
            "runs": [{k: v for k, v in r.items() if k not in ("report",)} for r in results],
        }
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 1 if failed else 0


def _verdict(r: Any) -> str:
    if r.name == "(unmutated)":
        return "baseline FAILS" if r.kills else "baseline ok"
    return "killed" if r.killed else "SURVIVED"


def _mutate(args: argparse.Namespace) -> int:
    from ._mutate import MUTANTS, MutantError, default_plan, format_table, run_mutants, source_root

    if args.list:
        for m in MUTANTS:
            print(f"{m.name:<36} {m.file:<20} {m.bug}")
        return 0
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        print(f"twinmesh sim mutate: no mutant named {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    try:
        root = source_root()
        plan = default_plan(
            root,
            scenarios=args.scenario or None,
            swarm_seeds=args.swarm_seeds,
            swarm_start=args.swarm_start,
            swarm_scale=args.swarm_scale,
        )
        if args.no_scenarios:
            plan = [r for r in plan if r.scenario is None]
        results = run_mutants(
            chosen,
            plan,
            root=root,
            jobs=args.jobs,
            stop_at_kill=not args.all_runs,
            timeout=args.timeout,
            progress=lambda r: print(f"  {r.name}: {_verdict(r)}", file=sys.stderr),
        )
    except MutantError as exc:
        print(f"twinmesh sim mutate: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.json:
        from dataclasses import asdict

        Path(args.json).write_text(
            json.dumps([asdict(r) for r in results], indent=2) + "\n", encoding="utf-8"
        )
    baseline_ok = not results[0].kills
    survivors = [r for r in results[1:] if not r.killed]
    return 0 if baseline_ok and not survivors else 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick", action="store_true", help="shrink the schedule by the scenario's quick_scale"
    )
    p.add_argument("--scale", type=float, default=None, help="shrink the schedule by this factor")
    p.add_argument(
        "--no-verify-cache",
        action="store_true",
        help="verify every signature and decode every batch at every replica "
        "(no process-wide memo)",
    )


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "sim", help="deterministic partition simulator: scenarios and swarms"
    )
    sub = group.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    run = sub.add_parser("run", help="run one scenario file with one seed")
    run.add_argument("scenario", help="a scenario TOML file (see scenarios/)")
    run.add_argument("--seed", type=int, default=None, help="master seed (default: the file's)")
    run.add_argument("--json", metavar="FILE", help="write the machine-readable report here")
    run.add_argument("--plot", metavar="FILE", help="write an SVG timeline here")
    run.add_argument(
        "--swarm", action="store_true", help="also draw faults from the seed (swarm mode)"
    )
    run.add_argument("--twice", action="store_true", help="run again and compare trace hashes")
    run.add_argument("--verbose", action="store_true", help="list every fault")
    _common(run)
    run.set_defaults(handler=_run)
    swarm = sub.add_parser("swarm", help="many seeds, each drawing its own faults")
    swarm.add_argument("--seeds", type=int, default=100, help="how many seeds")
    swarm.add_argument("--start", type=int, default=1, help="first seed")
    swarm.add_argument(
        "--scenario", default=None, help="base scenario (default: a small built-in one)"
    )
    swarm.add_argument("--jobs", type=int, default=1, help="worker processes")
    swarm.add_argument("--json", metavar="FILE", help="write a summary here")
    _common(swarm)
    swarm.set_defaults(handler=_swarm)
    mutate = sub.add_parser(
        "mutate",
        help="apply each hand-written core mutant to a copy of the tree and run the "
        "scenarios and swarm: which mutants the checkers kill",
    )
    mutate.add_argument("--only", nargs="+", metavar="NAME", help="these mutants (see --list)")
    mutate.add_argument("--list", action="store_true", help="list the mutants and exit")
    mutate.add_argument(
        "--scenario", action="append", metavar="FILE", help="scenario files (default: all)"
    )
    mutate.add_argument("--no-scenarios", action="store_true", help="run only the swarm")
    mutate.add_argument("--swarm-seeds", type=int, default=100, help="swarm seeds per mutant")
    mutate.add_argument("--swarm-start", type=int, default=1, help="first swarm seed")
    mutate.add_argument("--swarm-scale", type=float, default=1.0, help="swarm schedule factor")
    mutate.add_argument(
        "--all-runs", action="store_true", help="run the whole plan even after a kill"
    )
    mutate.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    mutate.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per mutant (default: 5x the unmutated plan's, at least 30)",
    )
    mutate.add_argument("--json", metavar="FILE", help="write the results here")
    mutate.set_defaults(handler=_mutate)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)
