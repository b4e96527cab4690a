"""FMI 3.0 on real FMUs: our motor models built as FMI 3.0 co-simulation FMUs
(same C model, fmi3_slave.h around it), loaded through FMPy's FMU3Slave by our
loader, stepped against the analytic solution, run in one system beside FMI 2.0
FMUs, and FMI 3.0 archives refused by the same rules as FMI 2.0 ones."""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import pytest
from cosim_helpers import SYSTEM, builtins, rewrite, system_text

from twinmesh.node.cosim import (
    BuiltinFmus,
    FmuError,
    FmuStepError,
    Master,
    Slave,
    inspect_fmu,
    load_system,
)
from twinmesh.node.cosim.fmus import FMUS, write_source_fmu


@pytest.fixture(scope="module")
def fmus(tmp_path_factory: pytest.TempPathFactory) -> BuiltinFmus:
    b = builtins(tmp_path_factory.mktemp("fmus"))
    for name in FMUS:
        b.resolve(f"{name}@fmi3")
    return b


def _refused(path: Path) -> FmuError:
    with pytest.raises(FmuError) as err:
        inspect_fmu(path)
    assert str(path) in str(err.value)
    return err.value


def test_fmi3_builds_declare_the_same_structure_as_the_fmi2_ones(fmus: BuiltinFmus) -> None:
    for name in FMUS:
        three, two = inspect_fmu(fmus.resolve(f"{name}@fmi3")), inspect_fmu(fmus.resolve(name))
        assert three.fmi_version == "3.0" and two.fmi_version == "2.0"
        assert three.identifier == two.identifier == name and three.version == two.version
        assert three.guid != two.guid and three.sha256 != two.sha256
        with zipfile.ZipFile(three.path) as z:
            names = set(z.namelist())
        assert f"binaries/x86_64-linux/{name}.so" in names
        assert "sources/buildDescription.xml" in names
        for var, v2 in two.variables.items():
            v3 = three.variables[var]
            assert (v3.type, v3.causality, v3.unit, v3.vr, v3.start, v3.depends_on) == (
                "Float64",
                v2.causality,
                v2.unit,
                v2.vr,
                v2.start,
                v2.depends_on,
            )
        assert three.variables["time"].causality == "independent"
        assert three.units == {**two.units, "s": ((0, 0, 1, 0, 0, 0, 0, 0), 1.0, 0.0)}


@pytest.mark.parametrize("h", [0.5, 7.0])
def test_fmi3_thermal_step_response_is_the_exact_first_order_solution(
    fmus: BuiltinFmus, h: float
) -> None:
    tau, t0, amb, current = 120.0, 40.0, 25.0, 31.0
    t_ss = amb + 75.0 * (0.3 + 0.7 * (current / 28.5) ** 2)
    info = inspect_fmu(fmus.resolve("motor_thermal@fmi3"))
    with Slave(info, instance="t", start_time=0.0, values={"tau": tau, "T_start": t0}) as s:
        s.set_named("current", current)
        s.set_named("ambient", amb)
        assert s.get_named("windingTemperature") == t0
        port = s.port(["windingTemperature", "time"])
        t = 0.0
        for _ in range(int(700 / h)):
            s.do_step(t, h)  # the hot path: fmi3DoStep through ctypes
            t += h
            s.get_port(port)
            want = t_ss + (t0 - t_ss) * math.exp(-t / tau)
            assert port[1][0] == pytest.approx(want, abs=1e-9)
            assert port[1][1] == pytest.approx(t)  # the independent variable


def test_fmi3_electrical_steady_state_and_controller_ramp(fmus: BuiltinFmus) -> None:
    from twinmesh.adapters.synthetic._physics import MotorParams, _motor_current

    p = MotorParams()
    with Slave(inspect_fmu(fmus.resolve("motor_electrical@fmi3")), instance="e", start_time=0) as s:
        for load in (5.0, 70.0, 110.0):
            s.set_named("load", load)
            assert s.get_named("current") == pytest.approx(_motor_current(p, load), rel=1e-12)
    info = inspect_fmu(fmus.resolve("motor_controller@fmi3"))
    with Slave(info, instance="c", start_time=0.0, values={"f_start": 0.0}) as s:
        t = 0.0
        for _ in range(600):
            s.do_step(t, 0.01)
            t += 0.01
            assert s.get_named("frequency") == pytest.approx(min(10.0 * t, 50.0), abs=1e-9)


def test_fmi3_step_error_carries_the_message_the_fmu_logged(fmus: BuiltinFmus) -> None:
    info = inspect_fmu(fmus.resolve("motor_electrical@fmi3"))
    with Slave(info, instance="e", start_time=0.0, values={"max_load": 50.0}) as s:
        s.set_named("load", 45.0)
        s.do_step(0.0, 0.01)
        s.set_named("load", 70.0)
        with pytest.raises(FmuStepError) as err:
            s.do_step(0.01, 0.01)
    assert err.value.status == 3 and "outside the model's validity [0, 50]" in str(err.value)


def test_a_system_mixing_fmi3_and_fmi2_fmus_gives_the_all_fmi2_results(
    fmus: BuiltinFmus, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed.toml"
    mixed.write_text(
        system_text(
            **{
                'builtin = "motor_controller"': 'builtin = "motor_controller@fmi3"',
                'builtin = "motor_thermal"': 'builtin = "motor_thermal@fmi3"',
            }
        )
    )
    loads = [60.0 + 20.0 * ((k // 50) % 2) for k in range(300)]
    runs = []
    for path in (SYSTEM, mixed):
        system = load_system(path, resolve_builtin=fmus.resolve)
        out = []
        with Master(system, values={("thermal", "T_start"): 60.0}) as m:
            for load in loads:
                m.set_input("electrical", "load", load)
                m.step()
                out.append(m.outputs())
        runs.append((system, out))
    (two, out2), (mix, out3) = runs
    versions = {n: e.info.fmi_version for n, e in mix.fmus.items()}
    assert versions == {"controller": "3.0", "electrical": "2.0", "thermal": "3.0"}
    assert mix.order == two.order
    # The same C model behind either API: bit-equal trajectories.
    assert out3 == out2
    assert out3[-1]["thermal.windingTemperature"] != out3[0]["thermal.windingTemperature"]


def test_a_failing_fmi3_step_stops_a_mixed_master_with_the_reason(
    fmus: BuiltinFmus, tmp_path: Path
) -> None:
    p = tmp_path / "s.toml"
    p.write_text(
        system_text(**{'builtin = "motor_electrical"': 'builtin = "motor_electrical@fmi3"'})
    )
    system = load_system(p, resolve_builtin=fmus.resolve)
    with Master(system, values={("electrical", "max_load"): 50.0}) as m:
        m.set_input("electrical", "load", 80.0)
        with pytest.raises(FmuStepError) as err:
            m.step()
    assert "outside the model's validity" in str(err.value)


# -- FMI 3.0 archives refused by rule ----------------------------------------------------


def test_fmi3_with_its_binary_in_the_fmi2_platform_directory(
    fmus: BuiltinFmus, tmp_path: Path
) -> None:
    src = fmus.resolve("motor_thermal@fmi3")
    p = rewrite(
        src,
        tmp_path / "old-layout.fmu",
        rename={"binaries/x86_64-linux/motor_thermal.so": "binaries/linux64/motor_thermal.so"},
        drop=("sources/motor_thermal.c",),
    )
    err = _refused(p)
    assert err.rule == "no-binary-for-platform"
    assert "binaries/x86_64-linux/motor_thermal.so" in err.reason and "linux64" in err.reason


def test_fmi3_for_another_platform(fmus: BuiltinFmus, tmp_path: Path) -> None:
    p = rewrite(
        fmus.resolve("motor_thermal@fmi3"),
        tmp_path / "win.fmu",
        rename={
            "binaries/x86_64-linux/motor_thermal.so": "binaries/x86_64-windows/motor_thermal.dll"
        },
    )
    err = _refused(p)
    assert err.rule == "no-binary-for-platform" and "x86_64-windows" in err.reason
    assert "build" in err.reason  # it carries its C sources


@pytest.mark.parametrize("interface", ["ModelExchange", "ScheduledExecution"])
def test_fmi3_without_co_simulation(fmus: BuiltinFmus, tmp_path: Path, interface: str) -> None:
    def swap(text: str) -> str:
        return re.sub(r'<CoSimulation (modelIdentifier="\w+")[^>]*/>', rf"<{interface} \1/>", text)

    p = rewrite(fmus.resolve("motor_thermal@fmi3"), tmp_path / "x.fmu", md=swap)
    err = _refused(p)
    kind = interface[0].lower() + interface[1:]
    assert err.rule == "not-co-simulation" and kind in err.reason


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda t: re.sub(r"\s*<Float64 name=\"time\"[^>]*/>", "", t), "independent"),
        (
            lambda t: t.replace('valueReference="0"', 'valueReference="2"', 1),
            "same value reference",
        ),
        (lambda t: t[: len(t) // 2], ""),
    ],
    ids=["no-independent-variable", "duplicate-value-reference", "truncated"],
)
def test_malformed_fmi3_model_descriptions(
    fmus: BuiltinFmus, tmp_path: Path, edit, says: str
) -> None:  # type: ignore[no-untyped-def]
    p = rewrite(fmus.resolve("motor_thermal@fmi3"), tmp_path / "bad.fmu", md=edit)
    err = _refused(p)
    assert err.rule == "malformed-model-description" and says in err.reason


def test_an_fmi3_source_fmu_is_refused_until_built(tmp_path: Path) -> None:
    src = write_source_fmu(FMUS["motor_thermal"], tmp_path, fmi_version="3.0")
    err = _refused(src)
    assert err.rule == "no-binary-for-platform" and "build" in err.reason


def test_an_fmi3_binary_refuses_a_model_description_that_is_not_its_own(
    fmus: BuiltinFmus, tmp_path: Path
) -> None:
    # The loader passes the archive's instantiationToken; our binary checks it
    # (FMI 3.0 §2.3.1) and says why through the log callback.
    p = rewrite(
        fmus.resolve("motor_thermal@fmi3"),
        tmp_path / "token.fmu",
        md=lambda t: re.sub(r'instantiationToken="[^"]+"', 'instantiationToken="{other}"', t),
    )
    info = inspect_fmu(p)
    with pytest.raises(FmuStepError) as err:
        Slave(info, instance="t", start_time=0.0)
    assert err.value.call == "initialization"
    assert "instantiationToken does not match" in str(err.value)
