"""Longer chaos runs on real processes: every scenario that fits a laptop.

    python bench/chaos_bench.py                       # 60 s each, seven scenarios
    python bench/chaos_bench.py --duration 120 wan-split one-way
    python bench/chaos_bench.py --quick               # wan-split for 8 s: proves it runs
    python bench/chaos_bench.py --netns               # the same on network namespaces (root)

For each scenario: the checkers' verdict, operations (acknowledged, failed,
unknown and how many of those took effect), and the seconds from the final
heal until every node held one digest, beside the stated bound measured in
the same run's terms (it is computed from the gossip interval) — the ratio
must stay ≤ 1. fleet-50 (51 processes) and long-outage (75 h squeezed into
minutes) are left out by default; name them to run them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [
    "wan-split",
    "one-way",
    "flapping-wan",
    "crash-during-sync",
    "clock-skew",
    "majorities-ring",
    "bridge",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument(
        "scenarios", nargs="*", help="scenario names under scenarios/ (default: seven)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument("--interval", type=float, default=0.3, help="gossip interval, seconds")
    parser.add_argument("--quick", action="store_true", help="wan-split only, 8 s")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument(
        "--netns", action="store_true", help="network namespaces instead of link proxies"
    )
    args = parser.parse_args()
    backend = None
    if args.netns:
        from twinmesh.node.chaos._backends import NetnsBackend
        from twinmesh.node.chaos._netns import netns_probe

        probe = netns_probe()
        if not probe.namespaces:
            print(f"chaos_bench: --netns: {probe.reason}", file=sys.stderr)
            return 3
        print(f"--netns: {probe.reason}")
        backend = NetnsBackend(netem=probe.netem)
    from twinmesh.node.chaos._harness import run_chaos
    from twinmesh.node.chaos._report import chaos_json
    from twinmesh.sim._scenario import load_scenario

    duration = 8.0 if args.quick else args.duration
    names = args.scenarios or (["wan-split"] if args.quick else DEFAULT)
    report = Report("chaos on real processes: convergence after the final heal / its bound")
    rows = []
    head = (
        f"{'scenario':<20} {'verdict':<7} {'acked':>6} {'failed':>6} {'unknown':>7} "
        f"{'took':>5} {'conv s':>7} {'bound s':>7} {'ratio':>6}  goal ≤ 1"
    )
    print(head)
    for name in names:
        sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
        with tempfile.TemporaryDirectory(prefix=f"chaos-bench-{name}-") as tmp:
            result = run_chaos(
                sc,
                directory=Path(tmp) / "fleet",
                duration=duration,
                interval=args.interval,
                command=f"python bench/chaos_bench.py --duration {duration:g} {name}"
                + (" --netns" if args.netns else ""),
                say=lambda _text: None,
                backend=backend,
            )
        data = chaos_json(result)
        fig = data["figures"]
        conv = fig["seconds_after_heal"]
        ratio = None if conv is None else conv / fig["bound_seconds"]
        rows.append({"scenario": name, **data})
        print(
            f"{name:<20} {'PASS' if data['ok'] else 'FAIL':<7} {fig['writes']:>6} "
            f"{fig['unavailable']:>6} {fig['unknown']['total']:>7} "
            f"{fig['unknown']['took_effect']:>5} "
            f"{'-' if conv is None else f'{conv:.2f}':>7} {fig['bound_seconds']:>7.1f} "
            f"{'-' if ratio is None else f'{ratio:.2f}':>6}  "
            f"{'met' if ratio is not None and ratio <= 1 else 'MISSED'}"
        )
        for checker, v in data["checkers"].items():
            for detail in v["details"][:3]:
                print(f"    {checker}: {detail}")
        report.row(
            f"{name}: seconds from final heal to one digest",
            conv,
            "s",
            reference="the stated bound",
            ref_value=fig["bound_seconds"],
            ref_unit="s",
            goal="≤ 1 and every checker passes",
            met=data["ok"] and ratio is not None and ratio <= 1,
        )
    report.print()
    if args.json:
        out = report.as_dict()
        out["runs"] = rows
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
