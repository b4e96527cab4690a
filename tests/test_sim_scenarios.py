"""Every scenario file under scenarios/, run with its own fixed seed and its
quick schedule: every checker must pass and the fleet must converge."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from twinmesh.sim import load_scenario, run_scenario, text_report

SCENARIOS = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.toml"))
REQUIRED = {
    "wan-split",
    "flapping-wan",
    "majorities-ring",
    "bridge",
    "one-way",
    "long-outage",
    "crash-during-sync",
    "clock-skew",
    "fleet-50",
}


def test_the_required_scenarios_exist() -> None:
    assert {p.stem for p in SCENARIOS} >= REQUIRED
    for path in SCENARIOS:
        assert load_scenario(path).name == path.stem


# fleet-500's quick schedule still simulates 501 replicas (~1.5 GB, a minute
# or two of wall on a shared core): slow; fleet-50 runs the same code paths
# in the default selection.
SLOW = {"fleet-500"}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW else p for p in SCENARIOS],
    ids=[p.stem for p in SCENARIOS],
)
def test_scenario_passes_every_checker(path: Path) -> None:
    scenario = load_scenario(path)
    result = run_scenario(
        scenario.scaled(scenario.quick_scale), scenario.seed, command=f"{path} --quick"
    )
    report = text_report(result)
    print(report)
    assert result.ok, report
    assert result.converged and result.final_digest
    assert result.writes > len(scenario.fleet.plants) * scenario.fleet.assets_per_plant
    assert result.rounds_after_heal is not None and result.rounds_after_heal <= result.round_bound
    assert result.round_goal == math.ceil(math.log2(len(result.nodes))) + 2
    if scenario.faults:
        assert result.faults, "the scenario's faults never fired"


def test_wan_split_produces_and_flags_the_concurrent_maintenance_dates() -> None:
    scenario = load_scenario(
        Path(__file__).resolve().parent.parent / "scenarios" / "wan-split.toml"
    )
    result = run_scenario(scenario.scaled(scenario.quick_scale), scenario.seed)
    assert result.ok
    # Both sides edited plant-a's dates while split: the conflicts were flagged
    # (the oracle checked exactly which) and reviewers resolved some of them.
    assert result.resolutions >= 1
    isolated = [s for _, s in result.status["plant-a"]]
    assert "isolated" in isolated


def test_long_outage_catches_up_by_snapshot() -> None:
    scenario = load_scenario(
        Path(__file__).resolve().parent.parent / "scenarios" / "long-outage.toml"
    )
    result = run_scenario(scenario.scaled(scenario.quick_scale), scenario.seed)
    assert result.ok
    assert result.snapshots >= 1  # the evicted plant got the others' compacted writes by snapshot
