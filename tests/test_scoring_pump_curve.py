"""The pump curve as a relation (node/scoring/_pump_curve.py).

The readings come from the synthetic plant's own pump physics (a seeded
AssetSimulator, a few seconds of CPU); the relation is pure numpy.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scoring_helpers import healthy_rows

from twinmesh.adapters.synthetic import load_config
from twinmesh.node.scoring._baseline import learn_baseline
from twinmesh.node.scoring._features import FEATURE_SET, roles_of
from twinmesh.node.scoring._pump_curve import PumpCurve, fit_pump_curve, locate_pump_curve

PLANT = """
[plant]
site = "s"
seed = 5
sample_interval = 0.5
time_scale = 1.0
[[asset]]
name = "p1"
kind = "pump"
"""


def _pump_rows(tmp_path, frames: int, seed: int = 5, **params: float):
    path = tmp_path / "plant.toml"
    extra = "".join(f"{k} = {v}\n" for k, v in params.items())
    path.write_text(PLANT + ("[asset.params]\n" + extra if extra else ""))
    return healthy_rows(path, frames, seed)


def _baseline(names, x):
    roles = roles_of(names, FEATURE_SET)
    located = locate_pump_curve(
        names, [roles[n] for n in names], FEATURE_SET.pump_curve, FEATURE_SET.impulsive
    )
    assert located is not None
    return learn_baseline(
        x,
        names,
        [roles[n] for n in names],
        version=1,
        trained_at=0.0,
        reason="warm-up",
        laws=[functools.partial(fit_pump_curve, **located)],
    )


def _window_mean(r: np.ndarray, n: int = 5) -> np.ndarray:
    return np.convolve(r, np.ones(n) / n, "valid")


def test_the_curve_learned_in_one_minute_holds_over_the_drives_whole_cycle(tmp_path) -> None:
    # A drive trimming speed over 420 s and valves over 600 s: the warm-up (60 s)
    # sees a sixth of it; the curve, through the origin, must hold for 40 minutes.
    names, x = _pump_rows(tmp_path, 4800)
    b = _baseline(names, x[:120])
    curves = [r for r in b.relations if isinstance(r, PumpCurve)]
    assert len(curves) == 1
    curve = curves[0]
    assert names[curve.target] == "dischargePressure"
    assert names[curve.inlet] == "suctionPressure"
    # No learned line over the curve's own readings (they would follow the tank).
    assert all(isinstance(r, PumpCurve) for r in b.relations)
    z = b.standardise(x)
    healthy = _window_mean(curve.residual(z[120:]))
    assert np.max(np.abs(healthy)) < 6.0  # the consistency detector's limit
    # The same frames with the discharge transmitter reading 0.4 bar high.
    biased = x.copy()
    biased[:, names.index("dischargePressure")] += 0.4
    drift = _window_mean(curve.residual(b.standardise(biased)[120:]))
    assert np.min(drift) > 6.0


def test_the_signature_is_the_residuals_derivative(tmp_path) -> None:
    names, x = _pump_rows(tmp_path, 200)
    b = _baseline(names, x[:120])
    curve = next(r for r in b.relations if isinstance(r, PumpCurve))
    z = b.standardise(x[150:151])
    for j in (curve.target, curve.inlet, curve.flow, curve.speed):
        dz = np.zeros_like(z)
        dz[0, j] = 1e-4
        numeric = float((curve.residual(z + dz) - curve.residual(z - dz))[0]) / 2e-4
        assert curve.sensitivity(j, z[0]) == pytest.approx(numeric, rel=1e-4)
    assert curve.sensitivity(names.index("bearingTemperature"), z[0]) == 0.0


def test_readings_that_follow_no_curve_are_refused() -> None:
    # A "pressure rise" that does not grow with speed: a constant plus noise.
    rng = np.random.default_rng(3)
    n = 200
    v = 0.9 + 0.1 * np.sin(np.arange(n) / 20.0)
    q = 100.0 + 10.0 * np.sin(np.arange(n) / 7.0)
    rise = 5.0 + rng.normal(0, 0.01, n)
    raw = np.c_[rise, np.zeros(n), q, v]
    center, scale = raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-6)
    got = fit_pump_curve(
        (raw - center) / scale,
        center,
        scale,
        target=0,
        inlet=1,
        flow=2,
        speed=3,
        speed_power=1,
        guards=(),
    )
    assert got is None


def test_the_curve_abstains_while_the_bearing_rings(tmp_path) -> None:
    # The RMS stands in for speed; a bearing's impacts are in it too.
    names, x = _pump_rows(tmp_path, 200)
    b = _baseline(names, x[:120])
    curve = next(r for r in b.relations if isinstance(r, PumpCurve))
    z = b.standardise(x[120:130])
    assert curve.valid(z).all()
    z[3, names.index("vibrationKurtosis")] = 5.0
    assert curve.valid(z).tolist() == [i != 3 for i in range(10)]


def test_a_pump_without_pressures_has_no_curve() -> None:
    names = ["flowRate", "vibrationRms", "bearingTemperature"]
    roles = roles_of(names, FEATURE_SET)
    got = locate_pump_curve(
        names, [roles[n] for n in names], FEATURE_SET.pump_curve, FEATURE_SET.impulsive
    )
    assert got is None


def test_a_pressure_drift_is_a_sensor_fault_naming_every_transmitter_the_curve_ties(
    tmp_path,
) -> None:
    from twinmesh.node.scoring._engine import EngineConfig
    from twinmesh.node.scoring._evaluate import run_stream

    plant = tmp_path / "drift.toml"
    plant.write_text(
        PLANT
        + """
[[asset.fault]]
id = "d"
kind = "sensor_drift"
telemetry = "dischargePressure"
start = 200
ramp = 60
duration = 2000
offset = 0.5
[[asset]]
name = "p2"
kind = "pump"
"""
    )
    run = run_stream(load_config(plant), seed=5, duration=600, engine_config=EngineConfig())
    opens = [e for e in run["events"] if e["type"] == "open"]
    assert not [e for e in opens if e["entity"].endswith("p2")]  # the healthy pump
    p1 = [e for e in opens if e["entity"].endswith("p1")]
    assert p1 and all(e["diagnosis"]["kind"] == "sensor" for e in p1)
    first = p1[0]
    assert first["at"] >= run["start"] + 200
    assert "dischargePressure" in first["key"]
    assert first["diagnosis"]["label"] == "drift"
