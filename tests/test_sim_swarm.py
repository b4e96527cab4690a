"""A bounded swarm: small fleets, short runs, each seed drawing its own faults.

240 seeds of one simulated minute each, in chunks so pytest-xdist can spread
them over cores. A failure prints its report, with the command that
reproduces it.
"""

from __future__ import annotations

import pytest

from twinmesh.sim import default_swarm_scenario, run_scenario, text_report

SEEDS = 240
CHUNK = 30
SCALE = 0.5


@pytest.mark.parametrize("start", range(1, SEEDS + 1, CHUNK))
def test_swarm_chunk(start: int) -> None:
    scenario = default_swarm_scenario().scaled(SCALE)
    failures = []
    for seed in range(start, start + CHUNK):
        command = f"twinmesh sim swarm --seeds 1 --start {seed} --scale {SCALE}"
        result = run_scenario(scenario, seed, swarm=True, command=command)
        if not result.ok:
            failures.append(text_report(result))
    assert not failures, "\n\n".join(failures)


def test_swarm_draws_differ_per_seed() -> None:
    from twinmesh.sim import Simulation

    base = default_swarm_scenario()
    draws = {repr(Simulation(base, seed, swarm=True).swarm_draw) for seed in range(1, 21)}
    assert len(draws) == 20
