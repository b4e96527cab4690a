"""Our motor FMUs, built from C with the system compiler and stepped by FMPy,
against their analytic solutions and against the synthetic plant's physics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from cosim_helpers import builtins

from twinmesh.adapters.synthetic._physics import (
    MotorParams,
    _motor_current,
    _motor_temperature_target,
)
from twinmesh.node.cosim import BuiltinFmus, FmuStepError, Slave, inspect_fmu
from twinmesh.node.cosim.fmus import FMUS, write_source_fmu


@pytest.fixture(scope="module")
def fmus(tmp_path_factory: pytest.TempPathFactory) -> BuiltinFmus:
    return builtins(tmp_path_factory.mktemp("fmus"))


def test_built_fmus_are_fmi2_co_simulation_with_their_declared_structure(fmus: BuiltinFmus) -> None:
    for name in FMUS:
        info = inspect_fmu(fmus.resolve(name))
        assert info.fmi_version == "2.0" and info.identifier == name and info.version
    electrical = inspect_fmu(fmus.resolve("motor_electrical"))
    assert electrical.variables["current"].depends_on == ("load", "frequency")
    assert (
        inspect_fmu(fmus.resolve("motor_thermal")).variables["windingTemperature"].depends_on == ()
    )


def test_rebuilding_gives_the_same_bytes(fmus: BuiltinFmus, tmp_path: Path) -> None:
    again = BuiltinFmus(tmp_path).resolve("motor_thermal")
    assert inspect_fmu(again).sha256 == inspect_fmu(fmus.resolve("motor_thermal")).sha256


def test_a_source_fmu_is_refused_until_built(tmp_path: Path) -> None:
    from twinmesh.node.cosim import FmuError

    src = write_source_fmu(FMUS["motor_thermal"], tmp_path)
    with pytest.raises(FmuError) as err:
        inspect_fmu(src)
    assert err.value.rule == "no-binary-for-platform" and "build" in err.value.reason


@pytest.mark.parametrize("h", [0.5, 7.0])
def test_thermal_step_response_is_the_exact_first_order_solution(
    fmus: BuiltinFmus, h: float
) -> None:
    tau, t0, amb, rise, k, i_rated = 120.0, 40.0, 25.0, 75.0, 0.3, 28.5
    current = 31.0
    t_ss = amb + rise * (k + (1 - k) * (current / i_rated) ** 2)
    info = inspect_fmu(fmus.resolve("motor_thermal"))
    with Slave(info, instance="t", start_time=0.0, values={"tau": tau, "T_start": t0}) as s:
        s.set_named("current", current)
        s.set_named("ambient", amb)
        assert s.get_named("windingTemperature") == t0
        t = 0.0
        for _ in range(int(700 / h)):
            s.do_step(t, h)
            t += h
            want = t_ss + (t0 - t_ss) * math.exp(-t / tau)
            assert s.get_named("windingTemperature") == pytest.approx(want, abs=1e-9)


def test_thermal_agrees_with_the_plant_including_lost_cooling(fmus: BuiltinFmus) -> None:
    p = MotorParams()
    info = inspect_fmu(fmus.resolve("motor_thermal"))
    for gain in (1.0, 10.0):
        with Slave(info, instance="t", start_time=0.0, values={"cooling_gain": gain}) as s:
            current = _motor_current(p, 85.0)
            s.set_named("current", current)
            s.do_step(0.0, 1e6)  # far past tau: the steady state
            want = _motor_temperature_target(p, current, 25.0, gain)
            assert s.get_named("windingTemperature") == pytest.approx(want, rel=1e-12)


def test_electrical_steady_state_current_and_speed_at_load(fmus: BuiltinFmus) -> None:
    p = MotorParams()
    info = inspect_fmu(fmus.resolve("motor_electrical"))
    with Slave(info, instance="e", start_time=0.0) as s:
        for load in (5.0, 40.0, 70.0, 100.0, 110.0):
            s.set_named("load", load)
            # Direct feedthrough: the output follows the input at the same instant.
            assert s.get_named("current") == pytest.approx(_motor_current(p, load), rel=1e-12)
            speed = 120 * 50 / 4 * (1 - p.rated_slip * load / 100)
            assert s.get_named("speed") == pytest.approx(speed, rel=1e-12)
        s.set_named("load", 100.0)
        rated_torque = 15000 / (2 * math.pi * 1500 * (1 - p.rated_slip) / 60)
        assert s.get_named("torque") == pytest.approx(rated_torque, rel=1e-12)
        s.do_step(0.0, 0.01)


def test_controller_ramps_at_its_rate_then_holds(fmus: BuiltinFmus) -> None:
    info = inspect_fmu(fmus.resolve("motor_controller"))
    with Slave(info, instance="c", start_time=0.0, values={"f_start": 0.0, "ramp_rate": 10.0}) as s:
        s.set_named("speedSetpoint", 1500.0)
        t = 0.0
        for _ in range(800):
            s.do_step(t, 0.01)
            t += 0.01
            assert s.get_named("frequency") == pytest.approx(min(10.0 * t, 50.0), abs=1e-9)


def test_a_load_outside_the_models_validity_fails_the_step_with_its_reason(
    fmus: BuiltinFmus,
) -> None:
    info = inspect_fmu(fmus.resolve("motor_electrical"))
    with Slave(info, instance="e", start_time=0.0, values={"max_load": 50.0}) as s:
        s.set_named("load", 45.0)
        s.do_step(0.0, 0.01)
        s.set_named("load", 70.0)
        with pytest.raises(FmuStepError) as err:
            s.do_step(0.01, 0.01)
    assert "outside the model's validity" in str(err.value) and err.value.status == 3


def test_without_a_c_compiler_the_node_says_so_and_couples_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import types

    from twinmesh.node.cosim._service import CosimService
    from twinmesh.node.cosim._settings import SHIPPED_SYSTEMS, CosimAsset, CosimSettings

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr("shutil.which", lambda _name: None)
    settings = CosimSettings(
        fmu_dir=tmp_path / "fmus",
        assets=(CosimAsset(entity="p/l/motor-1", system=SHIPPED_SYSTEMS / "motor.toml"),),
    )
    svc = CosimService(settings, telemetry=types.SimpleNamespace(specs={}), data_dir=tmp_path)
    asyncio.run(svc.open())
    status = svc.status("p/l/motor-1")
    assert status is not None and status["state"] == "unavailable"
    assert "no C compiler" in status["reason"] and "without expected values" in status["reason"]
    assert svc.couplings == {}
    svc.start()  # nothing to run: no task, ingest untouched
    assert svc._task is None
