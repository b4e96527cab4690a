"""Synthetic plant physics: vibration analysis, machine models, healthy ranges, determinism."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from twinmesh.adapters.synthetic import (
    AssetSimulator,
    CncParams,
    Conditions,
    MotorParams,
    PumpParams,
    VibrationSource,
    VibrationSpec,
    bpfo_hz,
    cnc_init,
    cnc_step,
    kind_telemetry,
    measure,
    motor_init,
    motor_step,
    parse_config,
    taylor_tool_life,
)
from twinmesh.adapters.synthetic._physics import pump_operating_point
from twinmesh.adapters.synthetic._vibration import measure_waveform

SPEC = VibrationSpec()


def _plant(*assets: dict, seed: int = 7, interval: float = 1.0) -> list[AssetSimulator]:
    raw = {"plant": {"site": "plant-a", "seed": seed, "sample_interval": interval}}
    config = parse_config({**raw, "asset": list(assets)}, base=Path("."))
    return [
        AssetSimulator(a, seed=config.seed, time_scale=1.0, ambient=25.0) for a in config.assets
    ]


# -- vibration -------------------------------------------------------------------------------


def test_bpfo_of_a_6205_bearing() -> None:
    # SKF 6205: 9 balls of 7.94 mm on a 39.04 mm pitch circle -> BPFO = 3.585 x shaft speed.
    assert bpfo_hz(1.0, balls=9, ratio=7.94 / 39.04, contact_angle=0.0) == pytest.approx(
        3.585, abs=1e-3
    )


def test_a_pure_line_reads_its_rms_amplitude() -> None:
    # 24 Hz is a whole number of cycles in 0.5 s: no leakage, RMS = peak / sqrt(2).
    spec = VibrationSpec(noise=0.0)
    t = np.arange(spec.samples) / spec.sample_rate
    wave = 2.0 * np.sin(2 * math.pi * 24.0 * t)
    f = measure_waveform(wave, spec, running_hz=24.0)
    assert f.band_1x == pytest.approx(2.0 / math.sqrt(2), rel=1e-6)
    assert f.rms == pytest.approx(2.0 / math.sqrt(2), rel=1e-6)
    assert f.band_2x < 1e-9 and f.band_bearing < 1e-9


def test_a_line_between_bins_is_caught_by_the_line_band() -> None:
    spec = VibrationSpec(noise=0.0)
    t = np.arange(spec.samples) / spec.sample_rate
    wave = 1.0 * np.sin(2 * math.pi * 24.53 * t + 0.4)  # between the 24 and 26 Hz bins
    f = measure_waveform(wave, spec, running_hz=24.53)
    assert f.band_1x == pytest.approx(1.0 / math.sqrt(2), rel=0.05)


def test_healthy_noise_has_kurtosis_three_and_impacts_raise_it() -> None:
    rng = np.random.default_rng(1)
    healthy = VibrationSource(running_hz=24.5, unbalance=1.4, misalignment=0.5, bpfo=82.7)
    worn = dataclasses.replace(healthy, impact=10.0)
    k_healthy = [measure(healthy, SPEC, t0=i * 0.5, rng=rng).kurtosis for i in range(40)]
    k_worn = [measure(worn, SPEC, t0=i * 0.5, rng=rng).kurtosis for i in range(40)]
    assert 2.8 < float(np.mean(k_healthy)) < 3.2  # Gaussian noise in the bearing band
    assert float(np.mean(k_worn)) > 5.0
    assert min(k_worn) > max(k_healthy)


def test_bearing_impacts_raise_rms_and_the_bearing_band() -> None:
    rng = np.random.default_rng(2)
    healthy = VibrationSource(running_hz=24.5, unbalance=1.4, misalignment=0.5, bpfo=82.7)
    h = measure(healthy, SPEC, t0=0.0, rng=rng)
    w = measure(dataclasses.replace(healthy, impact=30.0, defect_line=2.0), SPEC, t0=0.0, rng=rng)
    assert h.rms < 1.4  # ISO 10816-3 group 2 zone A
    assert w.rms > 4.5  # zone D
    assert w.band_bearing > 10 * h.band_bearing
    assert w.band_1x == pytest.approx(h.band_1x, rel=0.2)  # unbalance did not change


# -- machines ---------------------------------------------------------------------------------


def test_pump_operating_point_follows_the_affinity_laws() -> None:
    p = PumpParams()
    q1, h1 = pump_operating_point(p, speed_ratio=1.0, demand=1.0)
    assert q1 == pytest.approx(p.rated_flow) and h1 == pytest.approx(p.rated_head)
    for s in (0.6, 0.8, 0.9):
        q, h = pump_operating_point(p, speed_ratio=s, demand=1.3)
        q0, h0 = pump_operating_point(p, speed_ratio=1.0, demand=1.3)
        assert q == pytest.approx(s * q0)  # Q ~ n
        assert h == pytest.approx(s * s * h0)  # H ~ n^2
    # Throttling (more system resistance) trades flow for head.
    q_open, h_open = pump_operating_point(p, speed_ratio=1.0, demand=0.8)
    q_shut, h_shut = pump_operating_point(p, speed_ratio=1.0, demand=1.5)
    assert q_shut < q_open and h_shut > h_open


def test_motor_current_and_slip_follow_load() -> None:
    p = MotorParams()
    rng = np.random.default_rng(3)
    state = motor_init(p, ambient=25.0)
    loads, currents, speeds = [], [], []
    for n in range(600):
        state, r = motor_step(p, state, Conditions(), t=n * 1.0, dt=1.0, ambient=25.0, rng=rng)
        loads.append(r["load"])
        currents.append(r["current"])
        speeds.append(r["speed"])
    assert np.corrcoef(loads, currents)[0, 1] > 0.95
    assert np.corrcoef(loads, speeds)[0, 1] < -0.95  # more load, more slip
    assert max(speeds) < 1500.0  # below synchronous speed, 4 poles at 50 Hz


def test_motor_winding_follows_a_first_order_thermal_model() -> None:
    steady = MotorParams(load_swing=0.0, load_noise=0.0, temperature_noise=0.0)
    rng = np.random.default_rng(4)
    state = motor_init(steady, ambient=25.0)
    start = state.winding_temperature
    assert 60.0 < start < 100.0  # warm at 70 % load, far below class F's 155 °C
    for n in range(100):
        state, _ = motor_step(steady, state, Conditions(), t=n, dt=1.0, ambient=25.0, rng=rng)
    assert state.winding_temperature == pytest.approx(start)  # already at steady state
    # Lose 75 % of the cooling: R_th and tau grow 4x; after one new time constant the
    # rise towards the new steady state is 1 - 1/e of the way.
    lost = Conditions(cooling_loss=0.75)
    tau = steady.thermal_time_constant * 4
    state2 = state
    for n in range(40):  # the exact step is good for any dt
        state2, _ = motor_step(steady, state2, lost, t=n, dt=tau / 40, ambient=25.0, rng=rng)
    target = 25.0 + 4 * (start - 25.0)
    expected = target + (start - target) * math.exp(-1.0)
    assert state2.winding_temperature == pytest.approx(expected, rel=1e-6)


def test_taylor_tool_life_and_tool_changes() -> None:
    p = CncParams()
    # V T^n = C: doubling the cutting speed divides the life by 2^(1/n) = 16 for n = 0.25.
    assert taylor_tool_life(p, 3000.0) / taylor_tool_life(p, 6000.0) == pytest.approx(16.0)
    short = CncParams(taylor_constant=200.0)  # tool life ~ 37 s of roughing at 6000 rpm
    rng = np.random.default_rng(5)
    state = cnc_init(short, ambient=22.0)
    wear, changes = [], []
    for n in range(500):
        state, _ = cnc_step(short, state, Conditions(), t=n * 0.5, dt=0.5, ambient=22.0, rng=rng)
        wear.append(state.tool_wear)
        changes.append(state.tool_changes)
    assert changes[-1] >= 2
    assert max(wear) <= short.wear_limit
    assert min(wear) >= short.new_tool_wear
    # Between changes, wear only grows (per cut); a change resets it to a fresh edge.
    for a, b, ca, cb in zip(wear, wear[1:], changes, changes[1:], strict=False):
        assert b >= a if ca == cb else b == short.new_tool_wear


def test_cnc_spindle_follows_the_part_program() -> None:
    (cnc,) = _plant({"name": "cnc-1", "kind": "cnc"}, interval=0.5)
    speeds = [cnc.tick().true_values["spindleSpeed"] for _ in range(230)]  # one 115 s cycle
    assert max(speeds) == pytest.approx(10000.0, rel=0.01)  # finishing
    assert min(speeds) < 10.0  # stopped to load and unload
    assert any(abs(s - 6000.0) < 60 for s in speeds)  # roughing


# -- the whole plant -----------------------------------------------------------------------------


def test_healthy_readings_are_inside_the_model_ranges_and_complete() -> None:
    sims = _plant(
        {"name": "motor-1", "kind": "motor"},
        {"name": "pump-1", "kind": "pump"},
        {"name": "cnc-1", "kind": "cnc"},
        interval=3.0,
    )
    for sim in sims:
        ranges = kind_telemetry(sim.asset.kind)
        seen: dict[str, list[float]] = {tag: [] for tag in ranges}
        for _ in range(800):  # 40 simulated minutes
            tick = sim.tick()
            assert set(tick.values) == set(ranges)  # every model telemetry, every tick
            for tag, value in tick.values.items():
                assert math.isfinite(value)
                assert ranges[tag].contains(value), (sim.asset.name, tag, value)
                seen[tag].append(value)
        for tag, values in seen.items():
            # Measurement noise: consecutive readings never repeat exactly.
            assert all(a != b for a, b in itertools.pairwise(values)), tag


def test_same_seed_same_readings_and_assets_are_independent() -> None:
    motor = {"name": "motor-1", "kind": "motor"}
    pump = {"name": "pump-1", "kind": "pump"}
    a = _plant(motor, pump, seed=11)
    b = _plant(pump, motor, seed=11)  # other order, same assets
    c = _plant(motor, seed=12)
    runs_a = {s.asset.name: [dict(s.tick().values) for _ in range(50)] for s in a}
    runs_b = {s.asset.name: [dict(s.tick().values) for _ in range(50)] for s in b}
    run_c = [dict(c[0].tick().values) for _ in range(50)]
    assert runs_a == runs_b
    assert runs_a["motor-1"] != run_c
