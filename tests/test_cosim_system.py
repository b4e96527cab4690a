"""FMU refusals, system-file checks and the master algorithm, on real FMUs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cosim_helpers import SYSTEM, builtins, model_exchange_only, rewrite, system_text

from twinmesh.node.cosim import (
    BuiltinFmus,
    FmuError,
    FmuStepError,
    Master,
    SystemError_,
    inspect_fmu,
    load_system,
)


@pytest.fixture(scope="module")
def fmus(tmp_path_factory: pytest.TempPathFactory) -> BuiltinFmus:
    return builtins(tmp_path_factory.mktemp("fmus"))


def _refused(path: Path) -> FmuError:
    with pytest.raises(FmuError) as err:
        inspect_fmu(path)
    assert str(path) in str(err.value)
    return err.value


# -- FMU refusals ---------------------------------------------------------------------


def test_a_file_that_is_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "x.fmu"
    p.write_text("not an archive")
    assert _refused(p).rule == "not-a-zip"


def test_a_zip_that_is_not_an_fmu(tmp_path: Path) -> None:
    import zipfile

    p = tmp_path / "x.fmu"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("readme.txt", "hello")
    assert _refused(p).rule == "no-model-description"


def test_an_fmu_for_another_platform(fmus: BuiltinFmus, tmp_path: Path) -> None:
    src = fmus.resolve("motor_thermal")
    p = rewrite(
        src,
        tmp_path / "win.fmu",
        rename={"binaries/linux64/motor_thermal.so": "binaries/win64/motor_thermal.dll"},
        drop=("sources/motor_thermal.c",),
    )
    err = _refused(p)
    assert err.rule == "no-binary-for-platform" and "win64" in err.reason


def test_a_model_exchange_only_fmu(fmus: BuiltinFmus, tmp_path: Path) -> None:
    p = rewrite(fmus.resolve("motor_thermal"), tmp_path / "me.fmu", md=model_exchange_only)
    err = _refused(p)
    assert err.rule == "not-co-simulation" and "modelExchange" in err.reason


def test_a_malformed_model_description(fmus: BuiltinFmus, tmp_path: Path) -> None:
    p = rewrite(fmus.resolve("motor_thermal"), tmp_path / "bad.fmu", md=lambda t: t[: len(t) // 2])
    assert _refused(p).rule == "malformed-model-description"


# -- system files ---------------------------------------------------------------------


def _problems(tmp_path: Path, fmus: BuiltinFmus, text: str) -> list[str]:
    p = tmp_path / "system.toml"
    p.write_text(text)
    with pytest.raises(SystemError_) as err:
        load_system(p, resolve_builtin=fmus.resolve)
    assert str(p) in str(err.value)
    return [f"{x.rule}: {x.message}" for x in err.value.problems]


def test_the_shipped_motor_system_loads_in_dependency_order(fmus: BuiltinFmus) -> None:
    system = load_system(SYSTEM, resolve_builtin=fmus.resolve)
    assert system.order == ("controller", "electrical", "thermal")
    assert system.outputs[("thermal", "windingTemperature")] == "windingTemperature"


def test_unknown_variable_and_fmu(tmp_path: Path, fmus: BuiltinFmus) -> None:
    text = system_text(
        **{
            '"electrical.current -> thermal.current"': '"electrical.current -> thermal.curent",'
            ' "pump.flow -> thermal.ambient"',
        }
    )
    problems = _problems(tmp_path, fmus, text)
    assert any(p.startswith("unknown-variable") and "'curent'" in p for p in problems), problems
    assert any(p.startswith("unknown-fmu") and "'pump'" in p for p in problems), problems


def test_output_wired_to_an_output_and_input_fed_twice(tmp_path: Path, fmus: BuiltinFmus) -> None:
    text = system_text(
        **{
            '"electrical.current -> thermal.current"': '"electrical.current -> thermal.current",'
            ' "electrical.speed -> thermal.windingTemperature"',
            '"thermal.ambient" = 25.0': '"thermal.ambient" = 25.0\n"thermal.current" = "current"',
        }
    )
    problems = _problems(tmp_path, fmus, text)
    assert any(
        p.startswith("causality") and "thermal.windingTemperature is an output" in p
        for p in problems
    ), problems
    assert any(p.startswith("input-fed-twice") and "thermal.current" in p for p in problems), (
        problems
    )


def test_unit_mismatch(tmp_path: Path, fmus: BuiltinFmus) -> None:
    text = system_text(
        **{
            '"electrical.current -> thermal.current"': '"electrical.current -> thermal.ambient"',
            '"thermal.ambient" = 25.0': "",
        }
    )
    (problem,) = _problems(tmp_path, fmus, text)
    assert problem.startswith("unit-mismatch") and "A -> degC" in problem


def test_an_algebraic_loop_is_spelled_out(tmp_path: Path, fmus: BuiltinFmus) -> None:
    # A drive whose output followed its setpoint at the same instant (declared in
    # its ModelStructure) closes a feedthrough cycle through the electrical FMU.
    feedthrough = rewrite(
        fmus.resolve("motor_controller"),
        tmp_path / "ctl.fmu",
        md=lambda t: t.replace(
            # frequency (variable 3) depends on speedSetpoint (variable 1)
            '<Unknown index="3" dependencies=""',
            '<Unknown index="3" dependencies="1"',
        ),
    )
    wiring = {
        '"electrical.current -> thermal.current"': '"electrical.current -> thermal.current",'
        ' "electrical.speed -> controller.speedSetpoint"',
        '"controller.speedSetpoint" = 0.0': "",
        '"controller.speedSetpoint" = "setSpeedSetpoint"': "",
    }
    problems = _problems(
        tmp_path,
        fmus,
        system_text(**wiring, **{'builtin = "motor_controller"': f'path = "{feedthrough}"'}),
    )
    assert problems == [
        "algebraic-loop: a cycle of direct feedthrough: controller.frequency"
        " -> electrical.frequency -> electrical.speed -> controller.speedSetpoint"
        " -> controller.frequency"
    ]
    # The real drive's frequency is a state: the same wiring is no loop, and the
    # Gauss-Seidel order breaks the FMU cycle at that state (the edge delayed by a
    # step is controller.frequency -> electrical.frequency).
    p = tmp_path / "ok.toml"
    p.write_text(system_text(**wiring))
    assert load_system(p, resolve_builtin=fmus.resolve).order == (
        "electrical",
        "controller",
        "thermal",
    )


# -- the master -----------------------------------------------------------------------


def _run(system_path: Path, fmus: BuiltinFmus, loads: list[float]) -> list[dict[str, float]]:
    system = load_system(system_path, resolve_builtin=fmus.resolve)
    out = []
    # The load's start value is the first load, so both orders start consistent.
    with Master(
        system, values={("thermal", "T_start"): 60.0, ("electrical", "load"): loads[0]}
    ) as m:
        for load in loads:
            m.set_input("electrical", "load", load)
            m.step()
            out.append(m.outputs())
    return out


def test_master_is_deterministic_and_gauss_seidel_has_no_delay_along_the_chain(
    fmus: BuiltinFmus, tmp_path: Path
) -> None:
    loads = [60.0 + 20.0 * ((k // 50) % 2) for k in range(400)]
    gs = _run(SYSTEM, fmus, loads)
    assert gs == _run(SYSTEM, fmus, loads)
    jacobi_file = tmp_path / "jacobi.toml"
    jacobi_file.write_text(system_text(**{'algorithm = "gauss-seidel"': 'algorithm = "jacobi"'}))
    jac = _run(jacobi_file, fmus, loads)
    # External inputs reach their FMU at once in both orders; what Jacobi delays
    # by a step is each connection (here electrical.current -> thermal.current).
    assert gs[:50] == jac[:50]
    assert (
        gs[50]["electrical.current"]
        == jac[50]["electrical.current"]
        != gs[49]["electrical.current"]
    )
    assert gs[50]["thermal.windingTemperature"] != jac[50]["thermal.windingTemperature"]


def test_a_failing_step_stops_the_master_with_the_fmus_reason(fmus: BuiltinFmus) -> None:
    system = load_system(SYSTEM, resolve_builtin=fmus.resolve)
    with Master(system, values={("electrical", "max_load"): 50.0}) as m:
        m.set_input("electrical", "load", 40.0)
        m.step()
        m.set_input("electrical", "load", 80.0)
        with pytest.raises(FmuStepError) as err:
            m.step()
    assert "electrical" in str(err.value) or "motor_electrical" in str(err.value)
    assert "outside the model's validity" in str(err.value)


def test_version_skew_across_the_fleet_is_listed_per_fmu() -> None:
    from twinmesh.node.cosim._registry import skew

    v1 = {"name": "motor_thermal", "version": "1.0.0", "sha256": "a" * 64}
    v2 = {"name": "motor_thermal", "version": "2.0.0", "sha256": "b" * 64}
    el = {"name": "motor_electrical", "version": "1.0.0", "sha256": "c" * 64}
    deploys = {
        "plant-a": {"a/l/m1": {"fmus": {"thermal": v1, "electrical": el}}},
        "plant-b": {"b/l/m1": {"fmus": {"thermal": v2, "electrical": el}}},
    }
    assert skew(deploys) == [
        {
            "fmu": "motor_thermal",
            "versions": {
                "1.0.0 (aaaaaaaaaaaa)": ["plant-a:a/l/m1"],
                "2.0.0 (bbbbbbbbbbbb)": ["plant-b:b/l/m1"],
            },
        }
    ]


def test_type_mismatch(tmp_path: Path, fmus: BuiltinFmus) -> None:
    # A thermal FMU whose current input is an Integer: a Real output cannot feed it.
    def integer_current(text: str) -> str:
        head, sep, rest = text.partition('<ScalarVariable name="current"')
        real, _, tail = rest.partition("/>")
        real = real.replace('variability="continuous"', 'variability="discrete"')
        return head + sep + real.split("<Real")[0] + '<Integer start="0"/>' + tail

    p = rewrite(fmus.resolve("motor_thermal"), tmp_path / "int.fmu", md=integer_current)
    text = system_text(**{'builtin = "motor_thermal"': f'path = "{p}"'})
    problems = _problems(tmp_path, fmus, text)
    assert problems[0] == (
        "type-mismatch: connections[1] (electrical.current -> thermal.current): Real -> Integer"
    ), problems


def test_a_commanded_input_needs_a_constant_before_any_command(
    tmp_path: Path, fmus: BuiltinFmus
) -> None:
    text = system_text(**{'"controller.speedSetpoint" = 0.0': ""})
    assert _problems(tmp_path, fmus, text) == [
        "command-input: commands.controller.speedSetpoint: controller.speedSetpoint needs a "
        "constant in [inputs] (its value before any command), found nothing"
    ]
    fed = system_text(
        **{'"controller.speedSetpoint" = 0.0': '"controller.speedSetpoint" = "speed"'}
    )
    assert _problems(tmp_path, fmus, fed) == [
        "command-input: commands.controller.speedSetpoint: controller.speedSetpoint needs a "
        "constant in [inputs] (its value before any command), found 'speed'"
    ]
    named = system_text(**{'= "setSpeedSetpoint"': "= 3"})
    assert _problems(tmp_path, fmus, named) == [
        "bad-value: commands.controller.speedSetpoint: expected a command name, found 3"
    ]
    wrong = system_text(**{'"controller.speedSetpoint" = "set': '"controller.frequency" = "set'})
    assert _problems(tmp_path, fmus, wrong)[0].startswith("causality")
