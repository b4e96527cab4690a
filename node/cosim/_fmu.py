"""Loading FMUs: inspect an archive, refuse what cannot run here, instantiate slaves.

Theory of operation
-------------------
:func:`inspect_fmu` reads an archive without running anything: it must be a
zip (FMI 2.0 §2.3, FMI 3.0 §2.5: "an FMU is a zip file"), hold a
``modelDescription.xml`` that FMPy parses and validates against the
standard's schema, declare FMI 2.0 or 3.0, offer the *co-simulation*
interface (an FMU that is Model Exchange only needs an integrator on our side,
which we do not have), and carry a binary for this platform
(``binaries/linux64/<id>.so`` in FMI 2.0, ``binaries/x86_64-linux/<id>.so`` in
FMI 3.0). Each refusal is an :class:`FmuError` naming the file and the rule.

:class:`Slave` wraps FMPy's ``FMU2Slave``/``FMU3Slave`` for the life cycle
(instantiate, set parameters, initialization mode, terminate, free) and calls
the FMI functions FMPy bound through ctypes directly for the per-step work
(set inputs, doStep, get outputs) with argument arrays allocated once: the
hot loop then costs three foreign calls per FMU and step and no Python-level
list building. A status above Warning from doStep raises :class:`FmuStepError`
with the messages the FMU logged, so a failing model says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FmuError",
    "FmuInfo",
    "FmuStepError",
    "Slave",
    "VarInfo",
    "inspect_fmu",
    "sha256_file",
]

_OK_STATUS = 1  # fmi2Warning / fmi3Warning: anything above is a failure
_BINARY_DIRS = {"2.0": "linux64", "3.0": "x86_64-linux"}


#: componentEnvironment id -> the message list of the slave it belongs to.
_SINKS: dict[int, list[str]] = {}
_SINK_IDS = itertools.count(1)
_LOGGER: Any = None


def _fmi2_logger() -> Any:
    global _LOGGER
    if _LOGGER is None:
        from fmpy.fmi2 import fmi2CallbackLoggerTYPE

        def log(env: Any, _name: Any, status: int, _category: Any, message: bytes) -> None:
            sink = _SINKS.get(int(env or 0))
            if sink is not None and status > _OK_STATUS and message:
                sink.append(message.decode("utf-8", "replace"))
                del sink[:-20]

        _LOGGER = fmi2CallbackLoggerTYPE(log)
    return _LOGGER


class FmuError(Exception):
    """An FMU we refuse to load; ``rule`` names what it broke."""

    def __init__(self, path: str | Path, rule: str, reason: str) -> None:
        super().__init__(f"{path}: {rule}: {reason}")
        self.path = str(path)
        self.rule = rule
        self.reason = reason


class FmuStepError(Exception):
    """An FMU call returned Error or Fatal during a run."""

    def __init__(self, fmu: str, call: str, status: int, messages: Sequence[str]) -> None:
        label = {2: "discard", 3: "error", 4: "fatal"}.get(status, str(status))
        detail = "; ".join(messages[-3:]) or "the FMU logged no reason"
        super().__init__(f"{fmu}: {call} returned {label}: {detail}")
        self.fmu = fmu
        self.call = call
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class VarInfo:
    name: str
    vr: int
    type: str  # Real/Float64 (numeric, what we couple), or another FMI type
    causality: str
    variability: str
    unit: str | None
    start: float | None
    min: float | None
    max: float | None
    #: Inputs this output depends on at the same instant; None = all (FMI: no list given).
    depends_on: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FmuInfo:
    path: Path
    sha256: str
    name: str  # modelName
    identifier: str  # co-simulation modelIdentifier
    fmi_version: str  # "2.0" or "3.0"
    version: str  # the model's own version attribute ("" if none)
    guid: str
    variables: dict[str, VarInfo]
    #: Unit name -> (base-unit exponents, factor, offset), from UnitDefinitions.
    units: dict[str, tuple[tuple[int, ...], float, float]]
    model_description: Any = field(repr=False, compare=False)

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "identifier": self.identifier,
            "fmi_version": self.fmi_version,
            "version": self.version,
            "guid": self.guid,
            "sha256": self.sha256,
        }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _float(text: Any) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def inspect_fmu(path: Path) -> FmuInfo:
    """Read and check an FMU archive; raises :class:`FmuError` naming the rule it breaks."""
    import fmpy

    path = Path(path)
    if not path.is_file():
        raise FmuError(path, "missing", "no such file")
    if not zipfile.is_zipfile(path):
        raise FmuError(path, "not-a-zip", "an FMU is a zip archive; this file is not one")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise FmuError(path, "not-a-zip", str(exc)) from None
    if "modelDescription.xml" not in names:
        raise FmuError(
            path,
            "no-model-description",
            "a zip, but not an FMU: no modelDescription.xml at its root",
        )
    try:
        md = fmpy.read_model_description(str(path), validate=True)
    except Exception as exc:  # lxml, fmpy.ValidationError, or its own Exception
        text = " ".join(str(exc).split())[:500]
        raise FmuError(path, "malformed-model-description", text or type(exc).__name__) from None
    version = str(md.fmiVersion)
    if version not in _BINARY_DIRS:
        raise FmuError(
            path, "unsupported-fmi-version", f"FMI {version}; this node runs FMI 2.0 and 3.0"
        )
    cs = md.coSimulation
    if cs is None:
        kinds = [k for k in ("modelExchange", "scheduledExecution") if getattr(md, k, None)]
        raise FmuError(
            path,
            "not-co-simulation",
            f"the FMU offers {' and '.join(kinds) or 'no interface'} but not co-simulation;"
            " this node steps FMUs, it does not integrate them",
        )
    identifier = cs.modelIdentifier
    want = f"binaries/{_BINARY_DIRS[version]}/{identifier}.so"
    if want not in names:
        have = sorted(
            {n.split("/")[1] for n in names if n.startswith("binaries/") and "/" in n[9:]}
        )
        has_src = any(n.startswith("sources/") and n.endswith(".c") for n in names)
        raise FmuError(
            path,
            "no-binary-for-platform",
            f"no {want} for this platform (binaries for: {', '.join(have) or 'none'}"
            + (
                "; it carries C sources: build it, e.g. `twinmesh cosim build-fmus`"
                if has_src
                else ""
            )
            + ")",
        )
    variables: dict[str, VarInfo] = {}
    deps: dict[str, tuple[str, ...] | None] = {}
    for unknown in md.outputs:
        d = unknown.dependencies
        deps[unknown.variable.name] = None if d is None else tuple(v.name for v in d)
    for v in md.modelVariables:
        unit = v.unit or (v.declaredType.unit if v.declaredType is not None else None)
        variables[v.name] = VarInfo(
            name=v.name,
            vr=int(v.valueReference),
            type=str(v.type),
            causality=str(v.causality or "local"),
            variability=str(v.variability or "continuous"),
            unit=unit or None,
            start=_float(v.start),
            min=_float(v.min),
            max=_float(v.max),
            depends_on=deps.get(v.name) if v.causality == "output" else None,
        )
    units: dict[str, tuple[tuple[int, ...], float, float]] = {}
    for u in md.unitDefinitions:
        b = u.baseUnit
        if b is None:
            units[u.name] = ((), 1.0, 0.0)
        else:
            exps = (b.kg, b.m, b.s, b.A, b.K, b.mol, b.cd, b.rad)
            units[u.name] = (tuple(int(e) for e in exps), float(b.factor), float(b.offset))
    return FmuInfo(
        path=path,
        sha256=sha256_file(path),
        name=str(md.modelName),
        identifier=identifier,
        fmi_version=version,
        version=str(getattr(md, "version", None) or ""),
        guid=str(md.guid),
        variables=variables,
        units=units,
        model_description=md,
    )


_NUMERIC = {"Real", "Float64", "Float32"}


class Slave:
    """One instance of an FMU, initialised and ready to step.

    ``parameters`` and ``inputs`` (start values) are set in initialization
    mode, by variable name. Use :meth:`close` (or ``with``) to free it and its
    extracted directory.
    """

    def __init__(
        self,
        info: FmuInfo,
        *,
        instance: str,
        start_time: float,
        values: dict[str, float] | None = None,
        unzip_root: Path | None = None,
    ) -> None:
        import fmpy

        self.info = info
        self.instance = instance
        self.messages: list[str] = []
        self._dir = Path(tempfile.mkdtemp(prefix=f"fmu-{info.identifier}-", dir=unzip_root))
        self._freed = False
        try:
            fmpy.extract(str(info.path), unzipdir=str(self._dir))
            self._fmi3 = info.fmi_version == "3.0"
            if self._fmi3:
                from fmpy.fmi3 import FMU3Slave

                self._fmu: Any = FMU3Slave(
                    guid=info.guid,
                    unzipDirectory=str(self._dir),
                    modelIdentifier=info.identifier,
                    instanceName=instance,
                )
                self._log3 = self._make_logger3()
                self._fmu.instantiate(logMessage=self._log3)
                self._fmu.enterInitializationMode(startTime=start_time)
            else:
                from fmpy.fmi2 import FMU2Slave

                self._fmu = FMU2Slave(
                    guid=info.guid,
                    unzipDirectory=str(self._dir),
                    modelIdentifier=info.identifier,
                    instanceName=instance,
                )
                self._callbacks = self._make_callbacks2()
                self._fmu.instantiate(callbacks=self._callbacks)
                self._fmu.setupExperiment(startTime=start_time)
                self._fmu.enterInitializationMode()
            for name, value in (values or {}).items():
                self.set_named(name, value)
            # FMI 3.0 §4.2: instantiated with eventModeUsed = false, exiting
            # Initialization Mode enters Step Mode directly; fmi3EnterStepMode is
            # only legal from Event Mode, which we never ask for.
            self._fmu.exitInitializationMode()
        except FmuStepError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise FmuStepError(info.name, "initialization", 3, [*self.messages, str(exc)]) from None
        f = self._fmu._functions
        prefix = "fmi3" if self._fmi3 else "fmi2"
        self._set = f[f"{prefix}SetFloat64" if self._fmi3 else "fmi2SetReal"]
        self._get = f[f"{prefix}GetFloat64" if self._fmi3 else "fmi2GetReal"]
        self._do_step = f[f"{prefix}DoStep"]
        self._c = self._fmu.component
        if self._fmi3:
            self._flags = [ctypes.c_bool() for _ in range(3)]
            self._last_time = ctypes.c_double()
            self._step_refs = (
                ctypes.byref(self._flags[0]),
                ctypes.byref(self._flags[1]),
                ctypes.byref(self._flags[2]),
                ctypes.byref(self._last_time),
            )

    # -- callbacks: keep the FMU's messages, they are the reason a step fails

    def _make_callbacks2(self) -> Any:
        from fmpy import calloc, free
        from fmpy.fmi2 import (
            fmi2CallbackAllocateMemoryTYPE,
            fmi2CallbackFreeMemoryTYPE,
            fmi2CallbackFunctions,
        )
        from fmpy.logging import addLoggerProxy

        cb = fmi2CallbackFunctions()
        cb.logger = _fmi2_logger()
        cb.allocateMemory = fmi2CallbackAllocateMemoryTYPE(calloc)
        cb.freeMemory = fmi2CallbackFreeMemoryTYPE(free)
        self._sink_id = next(_SINK_IDS)
        _SINKS[self._sink_id] = self.messages
        cb.componentEnvironment = self._sink_id
        # FMPy's C proxy formats the logger's varargs; it keeps one Python logger
        # for all instances, hence the one logger that routes by componentEnvironment.
        addLoggerProxy(ctypes.byref(cb))
        return cb

    def _make_logger3(self) -> Any:
        def log(_env: Any, status: int, _category: Any, message: bytes) -> None:
            if status > _OK_STATUS and message:
                self.messages.append(message.decode("utf-8", "replace"))
                del self.messages[:-20]

        return log

    # -- values

    def var(self, name: str) -> VarInfo:
        try:
            return self.info.variables[name]
        except KeyError:
            raise KeyError(f"{self.info.name} has no variable {name!r}") from None

    def set_named(self, name: str, value: float) -> None:
        v = self.var(name)
        if v.type not in _NUMERIC:
            raise FmuStepError(self.info.name, f"set {name}", 3, [f"{name} is {v.type}, not Real"])
        if self._fmi3:
            self._fmu.setFloat64([v.vr], [float(value)])
        else:
            self._fmu.setReal([v.vr], [float(value)])

    def get_named(self, name: str) -> float:
        v = self.var(name)
        out = self._fmu.getFloat64([v.vr]) if self._fmi3 else self._fmu.getReal([v.vr])
        return float(out[0])

    def port(self, names: Sequence[str]) -> tuple[Any, Any, int]:
        """Preallocated (value references, values, n) for :meth:`set_port` / :meth:`get_port`."""
        vrs = (ctypes.c_uint32 * len(names))(*(self.var(n).vr for n in names))
        return vrs, (ctypes.c_double * len(names))(), len(names)

    def set_port(self, port: tuple[Any, Any, int]) -> None:
        vrs, values, n = port
        status = (
            self._set(self._c, vrs, n, values, n)
            if self._fmi3
            else self._set(self._c, vrs, n, values)
        )
        if status > _OK_STATUS:
            raise FmuStepError(self.info.name, "set inputs", status, self.messages)

    def get_port(self, port: tuple[Any, Any, int]) -> None:
        vrs, values, n = port
        status = (
            self._get(self._c, vrs, n, values, n)
            if self._fmi3
            else self._get(self._c, vrs, n, values)
        )
        if status > _OK_STATUS:
            raise FmuStepError(self.info.name, "get outputs", status, self.messages)

    def do_step(self, t: float, h: float) -> None:
        if self._fmi3:
            status = self._do_step(self._c, t, h, True, *self._step_refs)
        else:
            status = self._do_step(self._c, t, h, 1)
        if status > _OK_STATUS:
            raise FmuStepError(self.info.name, f"doStep(t={t:.6g}, h={h:g})", status, self.messages)

    # -- life cycle

    def close(self) -> None:
        if self._freed:
            return
        self._freed = True
        fmu = getattr(self, "_fmu", None)
        if fmu is not None and getattr(fmu, "component", None):
            with contextlib.suppress(Exception):
                fmu.terminate()
            with contextlib.suppress(Exception):
                fmu.freeInstance()
        _SINKS.pop(getattr(self, "_sink_id", 0), None)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Slave:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
