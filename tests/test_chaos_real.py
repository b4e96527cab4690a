"""``twinmesh chaos run`` on real node processes: two short scenarios.

wan-split (a plant cut off while it and central edit the same fields, then
another plant) and crash-during-sync (kill -9 of three nodes in the middle
of a catch-up, restart from their stores). Each runs the CLI as a user
would, with its schedule squeezed into a few seconds; every checker must
pass, and the report must carry the simulator report's fields. Longer runs
are a bench command (docs/chaos.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twinmesh.sim._report import result_json
from twinmesh.sim._runner import run_scenario
from twinmesh.sim._scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def _sim_keys() -> tuple[set[str], set[str]]:
    sc = load_scenario(ROOT / "scenarios" / "one-way.toml").scaled(0.02)
    data = result_json(run_scenario(sc, sc.seed))
    return set(data), set(data["figures"])


@pytest.mark.parametrize(
    ("scenario", "crashes"), [("wan-split", 0), ("crash-during-sync", 3)], ids=str
)
def test_chaos_run_passes_on_real_processes(tmp_path: Path, scenario: str, crashes: int) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinmesh",
            "chaos",
            "run",
            str(ROOT / "scenarios" / f"{scenario}.toml"),
            "--duration",
            "8",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "real" and report["ok"]
    assert all(v["ok"] and v["checks"] > 0 for v in report["checkers"].values()), report
    figures = report["figures"]
    assert figures["converged"] and figures["seconds_after_heal"] <= figures["bound_seconds"]
    assert figures["writes_by_kind"].get("write", 0) > 10
    assert len(report["crashes"]) == crashes
    # The simulator report's fields, so one reader serves both.
    top, figs = _sim_keys()
    shared_top = {"scenario", "seed", "scale", "ok", "checkers", "figures", "faults"}
    shared_top |= {"crashes", "connectivity", "converged_at", "command", "trace_hash"}
    assert shared_top <= top and shared_top <= set(report)
    for name in ("writes", "writes_by_kind", "unavailable", "converged", "conflicts_at_heal"):
        assert name in figs and name in figures
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(history) == report["figures"]["events"]
    svg = (out / "timeline.svg").read_text()
    assert svg.startswith("<svg") and "final heal" in svg
    # Nothing left running: every node (including restarted ones) and the proxy.
    fleet = json.loads((out / "fleet" / "fleet.json").read_text())
    for pid in [n["pid"] for n in fleet["nodes"]] + [fleet["proxy"]["pid"]]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
