"""What-if runs: an asset's system from its current state, with changed inputs or parameters.

A what-if never touches the live co-simulation: it instantiates its own copy
of the system's FMUs (:class:`Master` extracts each FMU into a directory of
its own, so even the shared libraries are separate), runs it in a worker
thread, and is bounded three ways: the horizon (refused above the bound
before anything runs), the thread's CPU time and the wall time (checked every
few hundred steps; a run that hits either stops and says where).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._fmu import FmuStepError
from ._master import Master
from ._system import System

__all__ = ["WhatIfError", "WhatIfRequest", "parse_whatif", "run_whatif"]

_MAX_POINTS = 2000  # trajectory samples returned per output
_MAX_STEPS = 2_000_000


class WhatIfError(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class WhatIfRequest:
    horizon: float
    step: float
    sample_every: float
    inputs: dict[str, tuple[str, float]]  # telemetry -> ("scale"|"offset"|"value", x)
    parameters: dict[tuple[str, str], float]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WhatIfError(
            400, "malformed-body", f"{where}: expected a finite number, found {value!r}"
        )
    return float(value)


def parse_whatif(body: Mapping[str, Any], system: System, *, max_horizon: float) -> WhatIfRequest:
    unknown = sorted(set(body) - {"horizon", "step", "sample_every", "inputs", "parameters"})
    if unknown:
        raise WhatIfError(400, "malformed-body", f"unknown keys: {', '.join(unknown)}")
    if "horizon" not in body:
        raise WhatIfError(400, "malformed-body", "missing 'horizon' (seconds of model time)")
    horizon = _number(body["horizon"], "horizon")
    if not 0 < horizon <= max_horizon:
        raise WhatIfError(
            422,
            "horizon-out-of-bounds",
            f"horizon {horizon:g} s is outside (0, {max_horizon:g}] s, this node's bound"
            " (cosim.whatif_max_horizon)",
        )
    default_step = max(system.step, horizon / 200_000)
    step = _number(body.get("step", default_step), "step")
    if step < system.step or step > horizon:
        raise WhatIfError(
            422, "bad-step", f"step must be between the system's {system.step:g} s and the horizon"
        )
    if horizon / step > _MAX_STEPS:
        raise WhatIfError(
            422,
            "too-many-steps",
            f"{horizon / step:.0f} steps; at most {_MAX_STEPS} (raise 'step')",
        )
    sample_every = _number(body.get("sample_every", max(step, horizon / 200)), "sample_every")
    if sample_every < step or horizon / sample_every > _MAX_POINTS:
        raise WhatIfError(
            422,
            "bad-sample-every",
            f"sample_every must be >= step and give at most {_MAX_POINTS} points",
        )
    bound = {tel for tel in system.inputs.values() if isinstance(tel, str)}
    inputs: dict[str, tuple[str, float]] = {}
    raw_inputs = body.get("inputs", {})
    if not isinstance(raw_inputs, dict):
        raise WhatIfError(400, "malformed-body", "inputs: expected an object")
    for tel, change in raw_inputs.items():
        if tel not in bound:
            raise WhatIfError(
                422,
                "unknown-input",
                f"{tel!r} feeds no FMU of {system.name} (inputs: {sorted(bound)})",
            )
        if not isinstance(change, dict) or len(change) != 1:
            raise WhatIfError(
                400, "malformed-body", f"inputs.{tel}: one of {{scale|offset|value: number}}"
            )
        ((how, x),) = change.items()
        if how not in ("scale", "offset", "value"):
            raise WhatIfError(
                400, "malformed-body", f"inputs.{tel}: {how!r} is not scale/offset/value"
            )
        inputs[tel] = (how, _number(x, f"inputs.{tel}.{how}"))
    params: dict[tuple[str, str], float] = {}
    raw_params = body.get("parameters", {})
    if not isinstance(raw_params, dict):
        raise WhatIfError(400, "malformed-body", "parameters: expected an object")
    for ref, value in raw_params.items():
        fmu, _, var = str(ref).partition(".")
        entry = system.fmus.get(fmu)
        info = entry.info.variables.get(var) if entry else None
        if info is None or info.causality != "parameter":
            raise WhatIfError(
                422, "unknown-parameter", f"{ref!r} is not a parameter of {system.name}"
            )
        params[(fmu, var)] = _number(value, f"parameters.{ref}")
    return WhatIfRequest(
        horizon=horizon, step=step, sample_every=sample_every, inputs=inputs, parameters=params
    )


def run_whatif(
    system: System,
    req: WhatIfRequest,
    *,
    make_master: Callable[[System, dict[tuple[str, str], float], float], Master],
    initial: dict[tuple[str, str], float],
    inputs_now: dict[str, float],
    ranges: Mapping[str, tuple[float | None, float | None]],
    cpu_seconds: float,
    wall_seconds: float,
) -> dict[str, Any]:
    """Run ``req`` from ``initial`` (parameter and input values); a JSON-able answer."""
    values = dict(initial)
    values.update(req.parameters)
    fed: dict[str, float] = {}
    for (fmu, var), tel in system.inputs.items():
        if not isinstance(tel, str):
            continue
        base = inputs_now[tel]
        how, x = req.inputs.get(tel, ("scale", 1.0))
        v = base * x if how == "scale" else base + x if how == "offset" else x
        fed[tel] = v
        values[(fmu, var)] = v
    started_wall = time.monotonic()
    started_cpu = time.thread_time()
    outputs = {tel: fv for fv, tel in system.outputs.items()}
    traj: dict[str, list[float]] = {tel: [] for tel in outputs}
    times: list[float] = []
    stopped = ""
    master = make_master(system, values, req.step)
    try:

        def sample() -> None:
            times.append(round(master.time - master.t0, 9))
            for tel, (fmu, var) in outputs.items():
                traj[tel].append(master.output(fmu, var))

        sample()
        n_steps = round(req.horizon / req.step)
        every = max(1, round(req.sample_every / req.step))
        for k in range(1, n_steps + 1):
            master.step()
            if k % every == 0 or k == n_steps:
                sample()
            if k % 256 == 0:
                if time.thread_time() - started_cpu > cpu_seconds:
                    stopped = (
                        f"CPU bound of {cpu_seconds:g} s reached at model time {master.time:g} s"
                    )
                    break
                if time.monotonic() - started_wall > wall_seconds:
                    stopped = (
                        f"wall bound of {wall_seconds:g} s reached at model time {master.time:g} s"
                    )
                    break
        if stopped and times[-1] != round(master.time - master.t0, 9):
            sample()  # the answer shows how far the run got
    except FmuStepError as exc:
        stopped = str(exc)
    finally:
        master.close()
    leaves: dict[str, Any] = {}
    for tel, ys in traj.items():
        lo, hi = ranges.get(tel, (None, None))
        for t, y in zip(times, ys, strict=True):
            if (lo is not None and y < lo) or (hi is not None and y > hi):
                leaves[tel] = {"at": t, "value": y, "range": [lo, hi]}
                break
    return {
        "system": {"name": system.name, "version": system.version, "sha256": system.sha256},
        "horizon": req.horizon,
        "step": req.step,
        "inputs": fed,
        "parameters": {f"{f}.{v}": x for (f, v), x in req.parameters.items()},
        "complete": not stopped,
        "stopped": stopped or None,
        "time": times,
        "trajectories": traj,
        "final": {tel: ys[-1] for tel, ys in traj.items() if ys},
        "leaves_range": leaves,
        "cpu_seconds": round(time.thread_time() - started_cpu, 4),
        "wall_seconds": round(time.monotonic() - started_wall, 4),
    }
