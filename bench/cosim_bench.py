"""Co-simulation figures, each beside a reference measured in the same run.

1. Real-time factor of our master stepping the three motor FMUs at 1 kHz
   (Gauss-Seidel, routing, unit conversion) against FMPy stepping the same
   three FMUs bare in a loop (setReal, doStep, getReal; no routing): goal
   >= 0.5 of that ceiling and >= 20x real time.
2. Live coupling of the synthetic plant's two motors at a 10 ms master step:
   CPU seconds per second of plant time (= the share of one core a node spends
   in co-simulation), beside the plant simulator's own CPU for the same ticks.
3. Residuals of a healthy motor over an hour of plant time: mean and 99th
   percentile of |residual| per output against that output's sensor noise.

    python bench/cosim_bench.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import Report, best_of_each

from twinmesh.adapters import Provenance, Quality, Sample
from twinmesh.adapters.synthetic._config import load_config
from twinmesh.adapters.synthetic._outputs import node_cosim_toml
from twinmesh.adapters.synthetic._physics import MotorParams
from twinmesh.adapters.synthetic._plant import AssetSimulator
from twinmesh.node.cosim import BuiltinFmus, Master, inspect_fmu, load_system
from twinmesh.node.cosim._coupling import AssetCoupling, TagInfo
from twinmesh.node.cosim._settings import SHIPPED_SYSTEMS

SYSTEM = SHIPPED_SYSTEMS / "motor.toml"
PLANT = """
[plant]
site = "plant-a"
seed = 3
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
"""
UNITS = {"load": "%", "current": "A", "speed": "rpm", "windingTemperature": "°C"}
TAGS = {n: TagInfo(unit=u) for n, u in UNITS.items()}


def master_rtf(builtins: BuiltinFmus, steps: int, suffix: str = "") -> float:
    """``suffix="@fmi3"``: the same three models built as FMI 3.0 (FMU3Slave path)."""
    import dataclasses

    def resolve(name: str) -> Path:
        return builtins.resolve(name + suffix)

    system = dataclasses.replace(load_system(SYSTEM, resolve_builtin=resolve), step=0.001)
    with Master(system) as m:
        m.set_input("electrical", "load", 70.0)
        t0 = time.perf_counter()
        for _ in range(steps):
            m.step()
        return steps * 0.001 / (time.perf_counter() - t0)


def fmpy_bare_rtf(builtins: BuiltinFmus, steps: int) -> float:
    from fmpy import extract
    from fmpy.fmi2 import FMU2Slave

    slaves = []
    dirs = []
    for name, inputs, outputs in (
        ("motor_controller", ["speedSetpoint"], ["frequency"]),
        ("motor_electrical", ["load", "frequency"], ["speed", "current", "torque"]),
        ("motor_thermal", ["current", "ambient"], ["windingTemperature"]),
    ):
        info = inspect_fmu(builtins.resolve(name))
        d = extract(str(info.path))
        dirs.append(d)
        s = FMU2Slave(guid=info.guid, unzipDirectory=d, modelIdentifier=name, instanceName=name)
        s.instantiate()
        s.setupExperiment(startTime=0.0)
        s.enterInitializationMode()
        s.exitInitializationMode()
        ins = [info.variables[v].vr for v in inputs]
        outs = [info.variables[v].vr for v in outputs]
        start = [info.variables[v].start or 0.0 for v in inputs]
        slaves.append((s, ins, outs, start))
    t = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        for s, ins, outs, start in slaves:
            s.setReal(ins, start)
            s.doStep(t, 0.001)
            s.getReal(outs)
        t += 0.001
    dt = time.perf_counter() - t0
    for s, *_ in slaves:
        s.terminate()
        s.freeInstance()
    return steps * 0.001 / dt


def couple(plant, builtins: BuiltinFmus, entity: str, ticks: int):  # type: ignore[no-untyped-def]
    params = next(
        a["parameters"]
        for a in tomllib.loads(node_cosim_toml(plant))["cosim"]["asset"]
        if a["entity"] == entity
    )
    overrides = {tuple(k.split(".", 1)): v for k, v in params.items()}
    system = load_system(SYSTEM, resolve_builtin=builtins.resolve)  # 10 ms step
    c = AssetCoupling(
        entity=entity,
        system=system,
        make_master=lambda values: Master(
            system, values={**overrides, **values}, clock=time.thread_time
        ),
        tags=TAGS,
    )
    asset = next(a for a in plant.assets if a.entity == entity)
    sim = AssetSimulator(asset, seed=plant.seed, time_scale=1.0, ambient=plant.ambient_temperature)
    prov = Provenance(adapter="bench", source="sim")
    ticks_list = []
    t_plant = time.thread_time()
    for _ in range(ticks):
        ticks_list.append(sim.tick())
    plant_cpu = time.thread_time() - t_plant
    out = []
    t_cpl = time.thread_time()
    for tick in ticks_list:
        ts = 1e9 + tick.t
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
    cpl_cpu = time.thread_time() - t_cpl
    c.close()
    return out, cpl_cpu, plant_cpu, ticks_list[-1].t + 0.5


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    report = Report("cosim")
    with tempfile.TemporaryDirectory() as tmp:
        builtins = BuiltinFmus(Path(tmp) / "fmus")
        builtins.build_all()
        steps = 2000 if args.quick else 20000
        results = {"ours": 0.0, "bare": 0.0, "fmi3": 0.0}

        def ours() -> None:
            results["ours"] = max(results["ours"], master_rtf(builtins, steps))

        def bare() -> None:
            results["bare"] = max(results["bare"], fmpy_bare_rtf(builtins, steps))

        def fmi3() -> None:
            results["fmi3"] = max(results["fmi3"], master_rtf(builtins, steps, "@fmi3"))

        best_of_each(ours, bare, fmi3, repeat=1 if args.quick else 3)
        ratio = results["ours"] / results["bare"]
        report.row(
            "master real-time factor, 3 FMUs at 1 kHz",
            results["ours"],
            "x",
            reference="FMPy bare loop (setReal/doStep/getReal)",
            ref_value=results["bare"],
            ref_unit="x",
            ratio=ratio,
            goal=">= 0.5 of FMPy, >= 20x real time",
            met=ratio >= 0.5 and results["ours"] >= 20,
        )
        report.row(
            "master real-time factor, the 3 FMUs built as FMI 3.0",
            results["fmi3"],
            "x",
            reference="same master, FMI 2.0 builds",
            ref_value=results["ours"],
            ref_unit="x",
            ratio=results["fmi3"] / results["ours"],
            goal=">= 20x real time",
            met=results["fmi3"] >= 20,
        )

        (Path(tmp) / "plant.toml").write_text(PLANT)
        plant = load_config(Path(tmp) / "plant.toml")
        ticks = 240 if args.quick else 7200  # 7200 ticks of 0.5 s: one hour of plant time
        cpu_total, plant_total, span = 0.0, 0.0, 0.0
        residuals: dict[str, list[float]] = {}
        for entity in ("plant-a/line-1/motor-1", "plant-a/line-1/motor-2"):
            out, cpu, plant_cpu, span = couple(plant, builtins, entity, ticks)
            cpu_total += cpu
            plant_total += plant_cpu
            if entity.endswith("motor-1"):
                for s in out:
                    if s.name.endswith(".residual") and s.source_ts - 1e9 > 60:
                        residuals.setdefault(s.name, []).append(float(s.value))
        report.row(
            "live coupling CPU per plant second, 2 motors, 10 ms step",
            cpu_total / span,
            "core",
            reference="the plant simulator's physics, same ticks",
            ref_value=plant_total / span,
            ref_unit="core",
            ratio=(cpu_total / span) / (plant_total / span) if plant_total else None,
            goal="(a share of one core; no goal set)",
        )
        p = MotorParams()
        noise = {
            "current.residual": p.current_noise,
            "speed.residual": p.speed_noise,
            "windingTemperature.residual": p.temperature_noise + 0.002 * 77,
        }
        for name, values in sorted(residuals.items()):
            mean = statistics.mean(values)
            p99 = sorted(abs(v) for v in values)[int(0.99 * (len(values) - 1))]
            report.row(
                f"healthy {name}: mean",
                mean,
                "",
                reference="sensor noise (1 sigma)",
                ref_value=noise[name],
                ratio=abs(mean) / noise[name],
                goal="|mean| well below noise",
                met=abs(mean) < 0.5 * noise[name],
            )
            report.row(
                f"healthy {name}: p99 |residual|",
                p99,
                "",
                reference="sensor noise (1 sigma)",
                ref_value=noise[name],
                ratio=p99 / noise[name],
                goal="noise-sized (<= 4 sigma)",
                met=p99 <= 4 * noise[name],
            )
        report.note(
            f"plant time simulated: {span:.0f} s per motor; residuals from t > 60 s of motor-1;"
            " the load reading's noise (0.3 %) enters the expected current through the model,"
            " so the current residual's spread is that of two noises."
        )
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
