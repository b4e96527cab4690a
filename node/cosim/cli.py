"""CLI group ``twinmesh cosim``: build our FMUs, run a what-if against a node."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _build(args: argparse.Namespace) -> int:
    from .fmus import FMUS, CompilerMissing, build_fmu, find_compiler, write_source_fmu

    out = Path(args.out)
    try:
        cc = find_compiler()
    except CompilerMissing as exc:
        print(f"twinmesh cosim build-fmus: {exc}", file=sys.stderr)
        return 2
    out = out / f"fmi{args.fmi[0]}" if args.fmi != "2.0" else out
    for spec in FMUS.values():
        src = write_source_fmu(spec, out, fmi_version=args.fmi)
        path = build_fmu(spec, out, compiler=cc, fmi_version=args.fmi)
        print(f"{path}  (FMI {args.fmi}; source FMU: {src})")
    return 0


def _whatif(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"horizon": args.horizon}
    inputs: dict[str, Any] = {}
    for item in args.input or []:
        name, _, rest = item.partition("=")
        how, _, value = rest.partition(":")
        if not name or how not in ("scale", "offset", "value"):
            print(f"--input {item!r}: expected NAME=scale|offset|value:NUMBER", file=sys.stderr)
            return 2
        inputs[name] = {how: float(value)}
    params = {}
    for item in args.param or []:
        name, _, value = item.partition("=")
        try:
            params[name] = float(value)
        except ValueError:
            print(f"--param {item!r}: expected FMU.VARIABLE=NUMBER", file=sys.stderr)
            return 2
    if inputs:
        body["inputs"] = inputs
    if params:
        body["parameters"] = params
    from ..client import ApiError, NodeClient

    # A what-if runs for up to its wall-time bound on the node: wait that long.
    client = NodeClient(args.api, args.token, timeout=120.0)
    path = f"/v1/assets/{urllib.parse.quote(args.entity, safe='/')}/whatif"
    try:
        result = client.call("POST", path, body)
    except ApiError as exc:
        print(f"twinmesh cosim whatif: {exc.reason}", file=sys.stderr)
        return 1
    if args.full:
        print(json.dumps(result, indent=2))
    else:
        summary = {k: result[k] for k in ("entity", "horizon", "inputs", "complete", "stopped")}
        summary["final"] = result["final"]
        summary["leaves_range"] = result["leaves_range"]
        print(json.dumps(summary, indent=2))
    return 0


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("cosim", help="FMU co-simulation: build our FMUs, what-if runs")
    sub = group.add_subparsers(dest="cosim_command", metavar="SUBCOMMAND")
    build = sub.add_parser(
        "build-fmus", help="build the motor FMUs from C (needs a C compiler, not the internet)"
    )
    build.add_argument("--out", default="fmus", help="directory for the .fmu files")
    build.add_argument(
        "--fmi",
        choices=("2.0", "3.0"),
        default="2.0",
        help="FMI version to build (3.0 goes to OUT/fmi3/); the model sources are the same",
    )
    build.set_defaults(handler=_build)
    w = sub.add_parser("whatif", help="run an asset's system from its current state (on a copy)")
    w.add_argument("entity", help="the asset twin, e.g. plant-a/line-1/motor-1")
    w.add_argument("--api", required=True, help="the node's API URL, e.g. http://127.0.0.1:8401")
    w.add_argument("--token", required=True, help="an operator token")
    w.add_argument("--horizon", type=float, required=True, help="seconds of model time")
    w.add_argument(
        "--input", action="append", help="NAME=scale|offset|value:NUMBER, e.g. load=scale:1.1"
    )
    w.add_argument("--param", action="append", help="FMU.VAR=NUMBER, e.g. thermal.cooling_gain=2")
    w.add_argument("--full", action="store_true", help="print the trajectories too")
    w.set_defaults(handler=_whatif)
    group.set_defaults(handler=lambda _a: group.print_help() or 2)
