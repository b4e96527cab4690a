"""Live coupling against the synthetic plant's motor physics, tick by tick (no network):
healthy residuals are noise-sized; a cooling failure shows in the temperature
residual and not the current's, a current-sensor drift the reverse; flagged or
missing inputs hold and mark; an FMU error stops the asset with its reason."""

from __future__ import annotations

import statistics
import tomllib

import pytest
from cosim_helpers import SYSTEM, builtins

from twinmesh.adapters import Provenance, Quality, Sample
from twinmesh.adapters.synthetic._config import load_config as load_plant_config
from twinmesh.adapters.synthetic._outputs import node_cosim_toml
from twinmesh.adapters.synthetic._plant import AssetSimulator
from twinmesh.node.cosim import BuiltinFmus, Master, load_system
from twinmesh.node.cosim._coupling import AssetCoupling, TagInfo

PLANT = """
[plant]
site = "plant-a"
seed = 7
sample_interval = 0.5
out = "out"

[[asset]]
name = "motor-1"
kind = "motor"

[[asset]]
name = "motor-2"
kind = "motor"
[asset.params]
thermal_time_constant = 120.0
load_mean = 65.0
[[asset.fault]]
id = "cooling"
kind = "cooling_failure"
start = 150
duration = 400
severity = 0.6

[[asset]]
name = "motor-3"
kind = "motor"
[[asset.fault]]
id = "drift"
kind = "sensor_drift"
telemetry = "current"
start = 150
duration = 400
offset = 4.0
ramp = 100
"""
TAGS = {
    "load": TagInfo(unit="%", minimum=0, maximum=150),
    "current": TagInfo(unit="A", minimum=0, maximum=150),
    "speed": TagInfo(unit="rpm", minimum=0, maximum=3600),
    "windingTemperature": TagInfo(unit="°C", minimum=-20, maximum=180),
}
UNITS = {"load": "%", "current": "A", "speed": "rpm", "windingTemperature": "°C"}


@pytest.fixture(scope="module")
def fmus(tmp_path_factory: pytest.TempPathFactory) -> BuiltinFmus:
    return builtins(tmp_path_factory.mktemp("fmus"))


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("plant")
    (d / "plant.toml").write_text(PLANT)
    return load_plant_config(d / "plant.toml")


def _coupling(fmus: BuiltinFmus, plant, entity: str, **kw: object) -> AssetCoupling:  # type: ignore[no-untyped-def]
    cosim = tomllib.loads(node_cosim_toml(plant))["cosim"]["asset"]
    params = next(a["parameters"] for a in cosim if a["entity"] == entity)
    overrides = {tuple(k.split(".", 1)): v for k, v in params.items()}
    overrides.update(kw.pop("extra", {}))  # type: ignore[arg-type]
    system = load_system(SYSTEM, resolve_builtin=fmus.resolve)
    return AssetCoupling(
        entity=entity,
        system=system,
        make_master=lambda values: Master(system, values={**overrides, **values}),
        tags=TAGS,
        **kw,  # type: ignore[arg-type]
    )


def _run(coupling: AssetCoupling, plant, entity: str, ticks: int, tamper=None):  # type: ignore[no-untyped-def]
    asset = next(a for a in plant.assets if a.entity == entity)
    sim = AssetSimulator(asset, seed=plant.seed, time_scale=1.0, ambient=plant.ambient_temperature)
    out: list[Sample] = []
    prov = Provenance(adapter="test", source="sim")
    for _ in range(ticks):
        tick = sim.tick()
        ts = 1_000_000.0 + tick.t
        for name in ("windingTemperature", "current", "speed", "load"):  # outputs before inputs
            if name not in tick.values:
                continue
            quality, value = Quality.GOOD, tick.values[name]
            if tamper is not None:
                changed = tamper(name, tick.t, value)
                if changed is None:
                    continue
                value, quality = changed
            s = Sample(
                entity=entity,
                name=name,
                value=value,
                unit=UNITS[name],
                source_ts=ts,
                received_ts=ts,
                quality=quality,
                provenance=prov,
                sample_id=f"{name}:{ts}",
            )
            out += coupling.offer(s, ts)
    return out


def _series(samples: list[Sample], name: str, t0: float = 0, t1: float = 1e12) -> list[float]:
    return [
        float(s.value) for s in samples if s.name == name and t0 <= s.source_ts - 1_000_000.0 < t1
    ]


def test_healthy_residuals_are_noise_sized_and_carry_lineage(fmus: BuiltinFmus, plant) -> None:  # type: ignore[no-untyped-def]
    entity = "plant-a/line-1/motor-1"
    c = _coupling(fmus, plant, entity)
    out = _run(c, plant, entity, 600)
    assert c.state == "running", c.reason
    cur = _series(out, "current.residual")
    temp = _series(out, "windingTemperature.residual", 60)
    speed = _series(out, "speed.residual")
    # Sensor noise: current 0.1 A (plus 0.3 % load reading noise through the model,
    # ~0.08 A), temperature 0.15 K + 0.002 |T|, speed 0.5 rpm.
    assert abs(statistics.mean(cur)) < 0.03 and statistics.pstdev(cur) < 0.2
    assert abs(statistics.mean(temp)) < 0.1 and statistics.pstdev(temp) < 0.5
    assert abs(statistics.mean(speed)) < 0.1 and statistics.pstdev(speed) < 0.8
    expected = [s for s in out if s.name == "current.expected"]
    assert (
        expected[0].provenance.adapter == "cosim"
        and "motor.toml@1.0.0" in expected[0].provenance.source
    )
    point = c.lineage_at(expected[-1].source_ts)
    assert point and point[0]["inputs"][0]["telemetry"] == "load"
    assert point[0]["inputs"][0]["sample_id"] == f"load:{expected[-1].source_ts}"


def test_cooling_failure_grows_the_temperature_residual_only(fmus: BuiltinFmus, plant) -> None:  # type: ignore[no-untyped-def]
    entity = "plant-a/line-1/motor-2"
    out = _run(_coupling(fmus, plant, entity), plant, entity, 700)
    before = _series(out, "windingTemperature.residual", 50, 150)
    during = _series(out, "windingTemperature.residual", 300, 350)
    assert abs(statistics.mean(before)) < 0.3
    assert statistics.mean(during) > 10  # K: the winding runs far hotter than the model says
    assert statistics.mean(during) > statistics.mean(
        _series(out, "windingTemperature.residual", 200, 250)
    )
    cur = _series(out, "current.residual", 300, 350)
    assert abs(statistics.mean(cur)) < 0.05


def test_current_sensor_drift_grows_the_current_residual_only(fmus: BuiltinFmus, plant) -> None:  # type: ignore[no-untyped-def]
    entity = "plant-a/line-1/motor-3"
    out = _run(_coupling(fmus, plant, entity), plant, entity, 700)
    cur = _series(out, "current.residual", 260, 350)
    assert statistics.mean(cur) == pytest.approx(4.0, abs=0.1)
    temp = _series(out, "windingTemperature.residual", 260, 350)
    assert abs(statistics.mean(temp)) < 0.2


def test_flagged_and_missing_inputs_hold_the_cosimulation_and_mark_it(
    fmus: BuiltinFmus, plant
) -> None:  # type: ignore[no-untyped-def]
    entity = "plant-a/line-1/motor-1"
    c = _coupling(fmus, plant, entity, input_timeout=3.0)

    def tamper(name: str, t: float, value: float):  # type: ignore[no-untyped-def]
        if name == "load" and 100 <= t < 110:
            return 999.0, Quality.OUT_OF_RANGE  # garbage that must not reach the FMUs
        if name == "load" and 200 <= t < 220:
            return None  # the load transmitter is silent
        return value, Quality.GOOD

    out = _run(c, plant, entity, 600, tamper)

    def expected(name: str, t0: float, t1: float) -> list[Sample]:
        return [s for s in out if t0 <= s.source_ts - 1e6 < t1 and s.name == f"{name}.expected"]

    for t0, t1, hole in ((100, 110, 100), (205, 215, 200)):
        for name in ("current", "windingTemperature"):
            held = expected(name, t0, t1)
            assert held and all(s.quality == Quality.HELD for s in held)
            # The co-simulation holds: every value is the one at its hold point
            # (the last good step before the hole), not a model fed 999 % or guesses.
            before = expected(name, 0, hole)[-1]
            assert {float(s.value) for s in held} == {float(before.value)}
            assert before.quality == Quality.GOOD
        # No residual against a model that did not see its inputs.
        assert not [s for s in out if t0 <= s.source_ts - 1e6 < t1 and ".residual" in s.name]
    after = [s for s in out if s.source_ts - 1e6 > 250 and s.name == "current.residual"]
    assert after and all(s.quality == Quality.GOOD for s in after)
    # Resuming bridges the hole with the first good load after it: no jump.
    temp = [float(s.value) for s in expected("windingTemperature", 109, 112)]
    assert max(temp) - min(temp) < 1.0
    assert c.holds == 2 and c.state == "running" and c.held_outputs > 0
    held_point = c.lineage_at(expected("current", 100, 110)[-1].source_ts)[0]
    assert held_point["held"] and "flagged OUT_OF_RANGE" in held_point["held_inputs"]["load"]
    # While held the status names the input and why.
    c2 = _coupling(fmus, plant, entity, input_timeout=3.0)
    _run(c2, plant, entity, 420, tamper)  # 210 s: inside the silence
    assert c2.state == "holding"
    (held_input,) = c2.status()["held_inputs"]
    assert held_input["telemetry"] == "load" and "no load sample" in held_input["why"]
    assert held_input["since"] is not None


def test_an_fmu_error_mid_run_stops_the_asset_and_says_why(fmus: BuiltinFmus, plant) -> None:  # type: ignore[no-untyped-def]
    entity = "plant-a/line-1/motor-1"
    c = _coupling(fmus, plant, entity, extra={("electrical", "max_load"): 75.0})
    out = _run(c, plant, entity, 300)
    assert c.state == "failed" and "outside the model's validity" in c.reason
    assert out  # it ran before the load crossed the bound
    assert _run(c, plant, entity, 10) == []  # and stays stopped


def _commanded_run(fmus: BuiltinFmus, plant, follow: bool) -> list[Sample]:  # type: ignore[no-untyped-def]
    """Motor-1 line-fed for 100 s, then told 1550 rpm (a setSpeedSetpoint command
    executing at home); the drive ramps there with slip compensation."""
    entity = "plant-a/line-1/motor-1"
    c = _coupling(fmus, plant, entity)
    asset = next(a for a in plant.assets if a.entity == entity)
    sim = AssetSimulator(asset, seed=plant.seed, time_scale=1.0, ambient=plant.ambient_temperature)
    out: list[Sample] = []
    prov = Provenance(adapter="test", source="sim")
    for k in range(400):
        if k == 200:  # t = 100 s at 0.5 s a sample
            assert sim.set_setpoint(1550.0)
            if follow:
                assert c.command("setSpeedSetpoint", 1550.0)
                assert not c.command("setSpeedSetpoint", 1550.0)  # nothing changed
        tick = sim.tick()
        ts = 1_000_000.0 + tick.t
        for name in ("windingTemperature", "current", "speed", "load"):
            s = Sample(
                entity=entity,
                name=name,
                value=tick.values[name],
                unit=UNITS[name],
                source_ts=ts,
                received_ts=ts,
                quality=Quality.GOOD,
                provenance=prov,
                sample_id=f"{name}:{ts}",
            )
            out += c.offer(s, ts)
    assert c.state == "running", c.reason
    if follow:
        assert c.status()["commanded"]["setSpeedSetpoint"]["value"] == 1550.0
    return out


def test_a_speed_command_moves_the_expected_speed_with_the_machine(
    fmus: BuiltinFmus, plant
) -> None:  # type: ignore[no-untyped-def]
    out = _commanded_run(fmus, plant, follow=True)
    before = _series(out, "speed.residual", 20, 100)
    after = _series(out, "speed.residual", 130, 200)  # ramp of ~1 s done long before
    expected = _series(out, "speed.expected", 130, 200)
    assert abs(statistics.mean(before)) < 0.3 and abs(statistics.mean(after)) < 0.3
    assert statistics.pstdev(after) < 1.0
    assert abs(statistics.mean(expected) - 1550.0) < 1.0  # slip compensated: the shaft's speed


def test_a_twin_that_ignored_the_command_would_see_a_speed_fault(fmus: BuiltinFmus, plant) -> None:  # type: ignore[no-untyped-def]
    # Why [commands] exists: without it the expected speed stays line-fed and
    # the commanded machine looks like one running ~80 rpm too fast.
    after = _series(_commanded_run(fmus, plant, follow=False), "speed.residual", 130, 200)
    assert statistics.mean(after) > 40.0
