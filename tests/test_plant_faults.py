"""Fault signatures of the synthetic plant, each against a healthy twin of the same asset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twinmesh.adapters.synthetic import EXAMPLE_CONFIG as EXAMPLE
from twinmesh.adapters.synthetic import (
    AssetSimulator,
    Fault,
    GroundTruth,
    Tick,
    apply_sensor_faults,
    conditions_at,
    kind_telemetry,
    load_config,
    parse_config,
)


def _sim(asset: dict[str, Any], *, interval: float = 1.0, seed: int = 3) -> AssetSimulator:
    raw = {"plant": {"site": "plant-a", "seed": seed, "sample_interval": interval}}
    (a,) = parse_config({**raw, "asset": [asset]}, base=Path(".")).assets
    return AssetSimulator(a, seed=seed, time_scale=1.0, ambient=25.0)


def _run(sim: AssetSimulator, ticks: int) -> list[Tick]:
    return [sim.tick() for _ in range(ticks)]


def _series(ticks: list[Tick], tag: str, lo: float, hi: float) -> np.ndarray:
    return np.array([t.values[tag] for t in ticks if lo <= t.t < hi and tag in t.values])


def test_fault_levels_ramp_and_end() -> None:
    f = Fault(id="f", kind="bearing_wear", start=10.0, duration=20.0, ramp=10.0, severity=0.5)
    assert [f.level(t) for t in (9.9, 10.0, 15.0, 20.0, 29.9, 30.0)] == [0, 0, 0.5, 1, 1, 0]
    assert conditions_at([f], 25.0).bearing_wear == 0.5
    cool = Fault(id="c", kind="cooling_failure", start=0.0, duration=5.0, severity=0.75)
    assert conditions_at([f, cool], 1.0).thermal_gain == pytest.approx(4.0)


def test_sensor_faults_apply_in_order_and_hold_exact_values() -> None:
    faults = [
        Fault(id="d", kind="sensor_drift", start=0.0, duration=10.0, telemetry="a", offset=2.0),
        Fault(id="s", kind="stuck_sensor", start=5.0, duration=10.0, telemetry="b"),
        Fault(id="x", kind="dropout", start=8.0, duration=1.0, telemetry="c"),
    ]
    readings = {"a": 1.0, "b": 7.0, "c": 3.0}
    out, held = apply_sensor_faults(faults, readings, t=5.0, last={"b": 6.25}, held={})
    assert out == {"a": 2.0, "b": 6.25, "c": 3.0}  # half the drift; b frozen at its last value
    assert held == {"s": 6.25}
    out, held = apply_sensor_faults(faults, readings, t=8.0, last={"b": 6.25}, held=held)
    assert out == {"a": 2.6, "b": 6.25}  # c dropped out
    out, held = apply_sensor_faults(faults, readings, t=20.0, last={}, held=held)
    assert out == readings and held == {}  # all over


def test_bearing_wear_raises_kurtosis_rms_and_the_bearing_band() -> None:
    fault = {"kind": "bearing_wear", "start": 60, "ramp": 60, "duration": 200}
    sim = _sim({"name": "motor-1", "kind": "motor", "fault": [fault]})
    ticks = _run(sim, 240)
    before = {tag: _series(ticks, tag, 0, 60) for tag in ("vibrationKurtosis", "vibrationRms")}
    worn = {tag: _series(ticks, tag, 120, 240) for tag in ("vibrationKurtosis", "vibrationRms")}
    assert 2.7 < before["vibrationKurtosis"].mean() < 3.3
    assert worn["vibrationKurtosis"].min() > before["vibrationKurtosis"].max()
    assert worn["vibrationRms"].mean() > 4.5 > 1.4 > before["vibrationRms"].mean()
    band = _series(ticks, "vibrationBandBearing", 0, 60).mean()
    assert _series(ticks, "vibrationBandBearing", 120, 240).mean() > 10 * band
    # Kurtosis moves first: impacts are impulsive long before they carry much energy.
    early = _series(ticks, "vibrationKurtosis", 66, 72)
    assert early.min() > 4.5
    assert _series(ticks, "vibrationRms", 66, 72).mean() < 2.8  # still ISO zone B


def test_pump_bearing_wear_also_heats_the_bearing() -> None:
    fault = {"kind": "bearing_wear", "start": 0, "duration": 4000}
    healthy = _run(_sim({"name": "pump-1", "kind": "pump"}, interval=20.0), 150)
    worn = _run(_sim({"name": "pump-1", "kind": "pump", "fault": [fault]}, interval=20.0), 150)
    t_h = _series(healthy, "bearingTemperature", 2400, 3000).mean()
    t_w = _series(worn, "bearingTemperature", 2400, 3000).mean()
    assert t_w > t_h + 5.0


def test_the_example_cooling_failure_crosses_the_model_maximum_within_the_fault() -> None:
    config = load_config(EXAMPLE)
    motor = next(a for a in config.assets if a.name == "motor-2")
    (fault,) = [f for f in motor.faults if f.kind == "cooling_failure"]
    sim = AssetSimulator(motor, seed=config.seed, time_scale=1.0, ambient=25.0)
    ticks = _run(sim, int((fault.end + 30) / motor.sample_interval))
    maximum = kind_telemetry("motor")["windingTemperature"].maximum
    before = _series(ticks, "windingTemperature", 0, fault.start)
    during = _series(ticks, "windingTemperature", fault.start, fault.end)
    assert before.max() < maximum - 60
    assert during.max() > maximum
    crossing = next(
        t.t for t in ticks if t.t >= fault.start and t.values["windingTemperature"] > maximum
    )
    assert crossing < fault.end - 60  # well inside the fault, and a drift, not a jump
    assert np.all(np.diff(during[:: int(10 / motor.sample_interval)]) > 0)


def test_sensor_drift_adds_a_growing_offset_to_one_tag() -> None:
    drift = {"kind": "sensor_drift", "telemetry": "current", "start": 20, "duration": 100}
    drift["offset"] = 5.0
    ticks = _run(_sim({"name": "motor-1", "kind": "motor", "fault": [drift]}), 140)
    errors = [(t.t, t.values["current"] - t.true_values["current"]) for t in ticks]
    assert all(e == 0.0 for t, e in errors if t < 20 or t >= 120)
    inside = [(t, e) for t, e in errors if 20 <= t < 120]
    assert [e for _, e in inside] == pytest.approx([5.0 * (t - 20) / 100 for t, _ in inside])
    for t in ticks:  # nothing else is touched
        assert {k: v for k, v in t.values.items() if k != "current"} == {
            k: v for k, v in t.true_values.items() if k != "current"
        }


def test_stuck_sensor_repeats_its_last_value_exactly() -> None:
    stuck = {"kind": "stuck_sensor", "telemetry": "flowRate", "start": 30, "duration": 90}
    ticks = _run(_sim({"name": "pump-1", "kind": "pump", "fault": [stuck]}), 150)
    last_good = ticks[29].values["flowRate"]
    frozen = [t.values["flowRate"] for t in ticks if 30 <= t.t < 120]
    assert len(frozen) == 90 and set(frozen) == {last_good}
    after = [t.values["flowRate"] for t in ticks if t.t >= 120]
    assert len(set(after)) == len(after)  # moving again
    pressures = [t.values["dischargePressure"] for t in ticks if 30 <= t.t < 120]
    assert len(set(pressures)) == len(pressures)  # the machine did not stop


def test_dropout_publishes_nothing_for_a_tag_or_the_whole_asset() -> None:
    faults = [
        {"kind": "dropout", "telemetry": "spindleTemperature", "start": 10, "duration": 5},
        {"kind": "dropout", "start": 20, "duration": 5},
    ]
    ticks = _run(_sim({"name": "cnc-1", "kind": "cnc", "fault": faults}), 30)
    tags = set(kind_telemetry("cnc"))
    for t in ticks:
        if 10 <= t.t < 15:
            assert set(t.values) == tags - {"spindleTemperature"}
        elif 20 <= t.t < 25:
            assert dict(t.values) == {}
        else:
            assert set(t.values) == tags
        assert set(t.true_values) == tags  # the machine keeps running


def test_time_scale_runs_physics_faster_and_truth_keeps_wall_times() -> None:
    raw = {"plant": {"site": "plant-a", "sample_interval": 0.5, "time_scale": 10.0}}
    fault = {"id": "drop", "kind": "dropout", "telemetry": "load", "start": 100, "duration": 50}
    config = parse_config({**raw, "asset": [{"name": "m", "kind": "motor", "fault": [fault]}]},
                          base=Path("."))  # fmt: skip
    (asset,) = config.assets
    sim = AssetSimulator(asset, seed=0, time_scale=config.time_scale, ambient=25.0)
    truth = GroundTruth(config.assets, start=1000.0, time_scale=config.time_scale)
    for _ in range(40):
        tick = sim.tick()
        truth.observe(asset, tick, 1000.0 + tick.n * asset.sample_interval)
        assert tick.t == tick.n * 5.0  # 0.5 wall seconds = 5 simulated seconds
        assert ("load" in tick.values) == (not 100 <= tick.t < 150)
    (record,) = truth.records(final=True, stopped=1020.0)
    # Simulated 100..150 s are wall 10..15 s after the start.
    assert (record["start"], record["end"], record["status"]) == (1010.0, 1015.0, "ended")
    assert record["observed"]["readings"] == 10 and record["observed"]["suppressed"] == 10
