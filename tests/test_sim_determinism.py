"""Same seed, same trace hash — also across processes with different hash
seeds, which catches iteration over hash-ordered sets leaking into a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from twinmesh.sim import default_swarm_scenario, load_scenario, run_scenario

ROOT = Path(__file__).resolve().parent.parent
WAN_SPLIT = ROOT / "scenarios" / "wan-split.toml"


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    scenario = load_scenario(WAN_SPLIT).scaled(0.03)
    first = run_scenario(scenario, 7)
    again = run_scenario(scenario, 7)
    other = run_scenario(scenario, 8)
    assert first.trace_hash == again.trace_hash
    assert first.trace_events == again.trace_events
    assert first.final_digest == again.final_digest
    assert other.trace_hash != first.trace_hash


def test_swarm_seed_is_deterministic() -> None:
    base = default_swarm_scenario().scaled(0.5)
    assert (
        run_scenario(base, 42, swarm=True).trace_hash
        == run_scenario(base, 42, swarm=True).trace_hash
    )


def test_same_trace_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    hashes = set()
    for hash_seed in ("0", "12345"):
        out = tmp_path / f"run-{hash_seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "twinmesh",
                "sim",
                "run",
                str(WAN_SPLIT),
                "--seed",
                "7",
                "--scale",
                "0.03",
                "--json",
                str(out),
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        hashes.add(json.loads(out.read_text())["trace_hash"])
    in_process = run_scenario(load_scenario(WAN_SPLIT).scaled(0.03), 7).trace_hash
    assert hashes == {in_process}
