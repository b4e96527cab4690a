"""The simulator's per-run event budget (sim/_budget.py).

A livelocked core (two engines re-requesting a batch neither holds) makes
the virtual clock crawl; the budget turns that into a liveness failure that
names what spun, instead of a run killed from outside by a timeout.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from twinmesh.sim._budget import event_budget
from twinmesh.sim._loop import EventLoop
from twinmesh.sim._mutate import MUTANTS, Run, run_mutants
from twinmesh.sim._runner import Simulation
from twinmesh.sim._scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCEN = ROOT / "scenarios"


def test_the_loop_stops_at_its_budget_even_when_time_stands_still() -> None:
    loop = EventLoop()
    calls = []

    def spin() -> None:  # reschedules itself at the same instant: time never moves
        calls.append(loop.now)
        loop.after(0.0, spin)

    loop.at(1.0, spin)
    assert loop.run_until(10.0, max_processed=500) is False
    assert loop.processed == 500 and len(calls) == 500
    assert loop.now == 1.0  # not advanced to the end: the budget, not time, stopped it
    assert loop.run_until(10.0, max_processed=500) is False and loop.processed == 500


def test_the_budget_follows_the_scenario_not_a_constant() -> None:
    sc = load_scenario(SCEN / "wan-split.toml")
    base = event_budget(sc)
    longer = event_budget(replace(sc, duration=2 * sc.duration))
    faster = event_budget(replace(sc, sync=replace(sc.sync, gossip_interval=0.5)))
    assert longer.events > base.events and faster.events > base.events
    assert base.nodes == len(sc.fleet.nodes) and base.span == sc.duration + sc.liveness.timeout
    assert base.events == 4 * base.estimate
    assert base.explain().startswith(f"4 x ({base.nodes} nodes x {base.rounds} rounds")


@pytest.mark.parametrize("name", ["crash-during-sync", "majorities-ring", None], ids=str)
def test_honest_runs_use_a_small_part_of_their_budget(name: str | None) -> None:
    if name is None:
        from twinmesh.sim._swarm import default_swarm_scenario

        sim = Simulation(default_swarm_scenario(), 3, swarm=True)
    else:
        sc = load_scenario(SCEN / f"{name}.toml")
        sim = Simulation(sc.scaled(sc.quick_scale), sc.seed)
    result = sim.run()
    assert result.ok, [v for v in result.verdicts if not v.ok]
    # Full-scale scenario files use at most 7.4 % (measured); quick ones ~3 %.
    assert result.events < 0.1 * result.event_budget, (result.events, result.event_budget)
    assert sim.spun is None


@pytest.mark.slow
def test_the_restart_mutant_is_killed_by_the_liveness_checker(tmp_path: Path) -> None:
    # crash-during-sync with a shorter liveness timeout, so the budget (and the test) is small.
    text = (SCEN / "crash-during-sync.toml").read_text()
    text = text.replace('timeout = "20m"', 'timeout = "3m"')
    scenario = tmp_path / "crash-during-sync-short.toml"
    scenario.write_text(text)
    plan = [Run(scenario=str(scenario), seed=19, scale=0.1, swarm=False)]
    chosen = [m for m in MUTANTS if m.name == "engine-restart-loses-unsealed"]
    baseline, result = run_mutants(chosen, plan, root=ROOT, timeout=300.0)
    assert baseline.kills == 0, baseline
    assert result.killed and result.error is None, result  # by checkers, not a timeout
    assert "liveness" in result.by and "convergence" in result.by, result
