"""What-if runs on real FMUs: the answer is the physics' (thermal step response),
the run is a copy that leaves the live master bit-for-bit untouched, and the
bounds (horizon, steps, CPU, wall) stop or refuse a run with the bound named."""

from __future__ import annotations

import dataclasses
import math

import pytest
from cosim_helpers import SYSTEM, builtins

from twinmesh.node.cosim import BuiltinFmus, Master, System, load_system
from twinmesh.node.cosim._whatif import WhatIfError, parse_whatif, run_whatif


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> System:
    fmus: BuiltinFmus = builtins(tmp_path_factory.mktemp("fmus"))
    return load_system(SYSTEM, resolve_builtin=fmus.resolve)


def _make(sys: System, values: dict[tuple[str, str], float], step: float) -> Master:
    return Master(dataclasses.replace(sys, step=step), values=values)


def _run(system: System, body: dict, *, cpu: float = 10.0, wall: float = 20.0) -> dict:  # type: ignore[type-arg]
    req = parse_whatif(body, system, max_horizon=86400.0)
    return run_whatif(
        system,
        req,
        make_master=_make,
        initial={("thermal", "T_start"): 60.0, ("thermal", "tau"): 900.0},
        inputs_now={"load": 70.0},
        ranges={"windingTemperature": (-20.0, 155.0)},
        cpu_seconds=cpu,
        wall_seconds=wall,
    )


def test_load_plus_ten_percent_for_two_hours_is_the_thermal_step_response(system: System) -> None:
    # The thermal FMU steps with the exact solution: any step is exact, take 1 s.
    answer = _run(system, {"horizon": 7200, "step": 1.0, "inputs": {"load": {"scale": 1.1}}})
    assert answer["complete"] and answer["inputs"] == {"load": pytest.approx(77.0)}
    # The plant's motor: I from load (equivalent circuit), T_ss from I^2, first order in tau.
    i_m = 0.35 * 28.5
    current = math.hypot(i_m, math.sqrt(28.5**2 - i_m**2) * 0.77)
    t_ss = 25.0 + 75.0 * (0.3 + 0.7 * (current / 28.5) ** 2)
    for t, temp in zip(answer["time"], answer["trajectories"]["windingTemperature"], strict=True):
        assert temp == pytest.approx(t_ss + (60.0 - t_ss) * math.exp(-t / 900.0), abs=1e-6)
    assert answer["time"][-1] == pytest.approx(7200.0)
    assert answer["leaves_range"] == {}
    hot = _run(system, {"horizon": 7200, "step": 1.0, "parameters": {"thermal.cooling_gain": 3.0}})
    assert hot["leaves_range"]["windingTemperature"]["range"] == [-20.0, 155.0]


def test_a_what_if_leaves_the_live_master_untouched(system: System) -> None:
    def live_run(interrupt: bool) -> list[dict[str, float]]:
        out = []
        with Master(system, values={("thermal", "T_start"): 60.0}) as live:
            for k in range(400):
                live.set_input("electrical", "load", 60.0 + (k % 7))
                live.step()
                out.append(live.outputs())
                if interrupt and k == 200:
                    _run(
                        system,
                        {"horizon": 600, "step": 1.0, "parameters": {"thermal.cooling_gain": 5.0}},
                    )
        return out

    assert live_run(True) == live_run(False)


@pytest.mark.parametrize(("bound", "kw"), [("CPU", {"cpu": 0.02}), ("wall", {"wall": 0.02})])
def test_a_run_that_hits_its_cpu_or_wall_bound_stops_and_says_where(
    system: System, bound: str, kw: dict[str, float]
) -> None:
    answer = _run(system, {"horizon": 20000, "step": 0.01}, **kw)
    assert not answer["complete"]
    assert answer["stopped"].startswith(f"{bound} bound of 0.02 s reached at model time")
    assert 0 < answer["time"][-1] < 20000


@pytest.mark.parametrize(
    ("body", "status", "error", "says"),
    [
        ({"horizon": 1e9}, 422, "horizon-out-of-bounds", "86400"),
        ({"horizon": 86400, "step": 0.01}, 422, "too-many-steps", "at most 2000000"),
        ({"horizon": 60, "parameters": {"thermal.current": 1}}, 422, "unknown-parameter", ""),
        ({"horizon": 60, "inputs": {"speed": {"scale": 2}}}, 422, "unknown-input", "load"),
        ({"horizon": 60, "inputs": {"load": {"times": 2}}}, 400, "malformed-body", "times"),
        ({"horizon": "long"}, 400, "malformed-body", "horizon"),
        ({"horizon": 60, "budget": 1}, 400, "malformed-body", "budget"),
    ],
)
def test_bad_what_ifs_are_refused_before_anything_runs(
    system: System,
    body: dict,
    status: int,
    error: str,
    says: str,  # type: ignore[type-arg]
) -> None:
    with pytest.raises(WhatIfError) as err:
        parse_whatif(body, system, max_horizon=86400.0)
    assert (err.value.status, err.value.error) == (status, error)
    assert says in err.value.reason
