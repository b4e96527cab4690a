"""A system description: the FMUs of one asset class, their parameters and connections.

Theory of operation
-------------------
A system file is TOML (a small cousin of SSP, the Modelica Association's
System Structure and Parameterization standard, which says the same things
in XML)::

    [system]
    name = "induction-motor"
    version = "1.0.0"
    step = 0.01                 # s, the master's fixed communication step
    start = 0.0
    stop = 3600.0               # default horizon of an offline run
    algorithm = "gauss-seidel"  # or "jacobi"

    [fmu.electrical]
    builtin = "motor_electrical"     # one of ours (node/cosim/fmus), or
    # path = "electrical.fmu"        # relative to this file
    parameters = { rated_current = 28.5 }

    connections = ["controller.frequency -> electrical.frequency", ...]

    [inputs]     # FMU input <- the asset's telemetry name, or a constant
    "electrical.load" = "load"
    "thermal.ambient" = 25.0
    [outputs]    # FMU output -> the telemetry it predicts (its expected value)
    "thermal.windingTemperature" = "windingTemperature"
    [initial]    # parameter <- the asset's telemetry at the start (its current state)
    "thermal.T_start" = "windingTemperature"
    [commands]   # FMU input <- the desired value of the asset's DTDL command, once
                 # one is executing or confirmed at home; its [inputs] constant before
    "controller.speedSetpoint" = "setSpeedSetpoint"

:func:`load_system` checks everything before anything runs and reports every
problem at once, each naming its rule: unknown FMU or variable, causality
(a connection runs from an output to an input; parameters are parameters),
an input fed twice, type and unit mismatches (units must be equal, or
convertible through the FMUs' declared ``BaseUnit`` factor and offset, FMI 2.0
§2.2.2), and algebraic loops. A loop is a cycle in the graph whose nodes are
variables and whose edges are connections (output -> input) plus each FMU's
direct feedthrough (input -> output, from ``ModelStructure/Outputs``
dependencies; an output without a dependency list depends on every input,
FMI 2.0 §2.2.8). A fixed-step master without iteration cannot solve such a
cycle, so it is refused with the cycle spelled out.

The Gauss-Seidel order is derived here too: FMUs sorted topologically by
their connections (ties by declaration order, so the order is deterministic).
Connections leaving an output without feedthrough (a state) may close a cycle
of FMUs; those are the edges dropped to break it, so they are the ones
delayed by a step.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._fmu import FmuError, FmuInfo, VarInfo, inspect_fmu

__all__ = [
    "ALGORITHMS",
    "Connection",
    "FmuEntry",
    "System",
    "SystemError_",
    "SystemProblem",
    "load_system",
]

ALGORITHMS = ("gauss-seidel", "jacobi")
_ARROW = re.compile(r"^\s*([A-Za-z_][\w-]*)\.([^\s.][^\s]*)\s*->\s*([A-Za-z_][\w-]*)\.([^\s]+)\s*$")
_NUMERIC = {"Real", "Float64", "Float32"}
_SYSTEM_KEYS = {"name", "version", "description", "step", "start", "stop", "algorithm"}
_FMU_KEYS = {"builtin", "path", "parameters", "sha256"}
_TOP_KEYS = {"system", "fmu", "connections", "inputs", "outputs", "initial", "commands"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemProblem:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


class SystemError_(Exception):
    """A system file we refuse, with every problem found."""

    def __init__(self, path: str | Path, problems: list[SystemProblem]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class FmuEntry:
    name: str
    info: FmuInfo
    builtin: str | None
    parameters: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    src: str
    src_var: str
    dst: str
    dst_var: str
    factor: float = 1.0  # dst = src * factor + offset (unit conversion)
    offset: float = 0.0

    def __str__(self) -> str:
        return f"{self.src}.{self.src_var} -> {self.dst}.{self.dst_var}"


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    path: Path
    sha256: str  # of the system file's bytes
    name: str
    version: str
    description: str
    step: float
    start: float
    stop: float
    algorithm: str
    fmus: dict[str, FmuEntry]  # declaration order
    connections: tuple[Connection, ...]
    order: tuple[str, ...]  # Gauss-Seidel order
    inputs: dict[tuple[str, str], str | float]
    outputs: dict[tuple[str, str], str]
    initial: dict[tuple[str, str], str]
    #: FMU input -> the DTDL command whose desired value feeds it (a commanded
    #: setpoint: the twin expects what the machine was told to do).
    commands: dict[tuple[str, str], str] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default=())

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "sha256": self.sha256,
            "step": self.step,
            "start": self.start,
            "stop": self.stop,
            "algorithm": self.algorithm,
            "order": list(self.order),
            "fmus": {
                n: {**e.info.json(), "builtin": e.builtin, "parameters": e.parameters}
                for n, e in self.fmus.items()
            },
            "connections": [str(c) for c in self.connections],
            "commands": {f"{f}.{v}": c for (f, v), c in self.commands.items()},
        }


def _unit_conversion(src: FmuInfo, su: str, dst: FmuInfo, du: str) -> tuple[float, float] | None:
    """(factor, offset) turning a value in ``su`` into ``du``; None if not convertible."""
    a, b = src.units.get(su), dst.units.get(du)
    if a is None or b is None or a[0] != b[0]:
        return None
    # base = f_a * x + o_a; y = (base - o_b) / f_b
    fa, oa = a[1], a[2]
    fb, ob = b[1], b[2]
    return fa / fb, (oa - ob) / fb


def load_system(
    path: Path,
    *,
    resolve_builtin: Callable[[str], Path] | None = None,
    text: str | None = None,
) -> System:
    """Parse and check a system file; raises :class:`SystemError_` with every problem."""
    path = Path(path)
    problems: list[SystemProblem] = []

    def bad(rule: str, message: str) -> None:
        problems.append(SystemProblem(rule=rule, message=message))

    try:
        raw_text = path.read_text() if text is None else text
    except OSError as exc:
        raise SystemError_(
            path, [SystemProblem(rule="unreadable", message=str(exc.strerror))]
        ) from None
    try:
        raw = tomllib.loads(raw_text)
    except tomllib.TOMLDecodeError as exc:
        raise SystemError_(path, [SystemProblem(rule="not-toml", message=str(exc))]) from None
    for key in sorted(set(raw) - _TOP_KEYS):
        bad(
            "unknown-key", f"{key}: not a system file key (expected {', '.join(sorted(_TOP_KEYS))})"
        )
    sysraw = raw.get("system", {})
    if not isinstance(sysraw, dict):
        raise SystemError_(
            path, [SystemProblem(rule="bad-value", message="[system] must be a table")]
        )
    for key in sorted(set(sysraw) - _SYSTEM_KEYS):
        bad("unknown-key", f"system.{key}: not a [system] key")

    def num(table: dict[str, Any], key: str, default: float, where: str) -> float:
        v = table.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            bad("bad-value", f"{where}.{key}: expected a number, found {v!r}")
            return default
        return float(v)

    def text_of(table: dict[str, Any], key: str, default: str, where: str) -> str:
        v = table.get(key, default)
        if not isinstance(v, str):
            bad("bad-value", f"{where}.{key}: expected a string, found {v!r}")
            return default
        return v

    name = text_of(sysraw, "name", path.stem, "system")
    version = text_of(sysraw, "version", "0", "system")
    description = text_of(sysraw, "description", "", "system")
    step = num(sysraw, "step", 0.01, "system")
    start = num(sysraw, "start", 0.0, "system")
    stop = num(sysraw, "stop", 3600.0, "system")
    algorithm = text_of(sysraw, "algorithm", "gauss-seidel", "system")
    if not step > 0:
        bad("bad-value", f"system.step: must be > 0 s, found {step}")
    if not stop > start:
        bad("bad-value", f"system.stop ({stop}) must be after system.start ({start})")
    if algorithm not in ALGORITHMS:
        bad(
            "bad-value",
            f"system.algorithm: expected one of {', '.join(ALGORITHMS)}, found {algorithm!r}",
        )

    # -- FMUs
    fmus: dict[str, FmuEntry] = {}
    fmu_tables = raw.get("fmu", {})
    if not isinstance(fmu_tables, dict) or not fmu_tables:
        bad("no-fmus", "a system needs at least one [fmu.<name>] table")
        fmu_tables = {}
    for fname, table in fmu_tables.items():
        where = f"fmu.{fname}"
        if not re.fullmatch(r"[A-Za-z_][\w-]*", fname):
            bad("bad-value", f"{where}: FMU names are letters, digits, '_' and '-'")
            continue
        if not isinstance(table, dict):
            bad("bad-value", f"{where}: expected a table")
            continue
        for key in sorted(set(table) - _FMU_KEYS):
            bad("unknown-key", f"{where}.{key}: not an FMU key ({', '.join(sorted(_FMU_KEYS))})")
        builtin, fpath = table.get("builtin"), table.get("path")
        if (builtin is None) == (fpath is None):
            bad("bad-value", f"{where}: give exactly one of 'builtin' or 'path'")
            continue
        try:
            if builtin is not None:
                if not isinstance(builtin, str) or resolve_builtin is None:
                    bad("unknown-fmu", f"{where}.builtin: {builtin!r} is not available here")
                    continue
                fmu_path = resolve_builtin(builtin)
            else:
                if not isinstance(fpath, str):
                    bad("bad-value", f"{where}.path: expected a string")
                    continue
                p = Path(fpath)
                fmu_path = p if p.is_absolute() else (path.parent / p)
            info = inspect_fmu(fmu_path)
        except FmuError as exc:
            bad("fmu-refused", f"{where}: {exc}")
            continue
        except (KeyError, LookupError, RuntimeError) as exc:
            bad("fmu-refused", f"{where}: {exc}")
            continue
        want_hash = table.get("sha256")
        if want_hash is not None and want_hash != info.sha256:
            bad(
                "hash-mismatch",
                f"{where}: {fmu_path} has sha256 {info.sha256}, the file pins {want_hash}",
            )
            continue
        params: dict[str, float] = {}
        ptable = table.get("parameters", {})
        if not isinstance(ptable, dict):
            bad("bad-value", f"{where}.parameters: expected a table")
            ptable = {}
        for pname, value in ptable.items():
            var = info.variables.get(pname)
            if var is None:
                bad(
                    "unknown-variable",
                    f"{where}.parameters.{pname}: {info.name} has no such variable",
                )
                continue
            if var.causality != "parameter":
                bad(
                    "causality",
                    f"{where}.parameters.{pname}: {pname} is an {var.causality}, not a parameter",
                )
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                bad(
                    "type-mismatch",
                    f"{where}.parameters.{pname}: expected a number, found {value!r}",
                )
                continue
            if var.type not in _NUMERIC:
                bad("type-mismatch", f"{where}.parameters.{pname}: {pname} is {var.type}, not Real")
                continue
            params[pname] = float(value)
        fmus[fname] = FmuEntry(
            name=fname,
            info=info,
            builtin=builtin if isinstance(builtin, str) else None,
            parameters=params,
        )

    def lookup(ref: str, where: str) -> tuple[str, VarInfo] | None:
        fname, dot, vname = ref.partition(".")
        if not dot:
            bad("bad-value", f"{where}: {ref!r} is not FMU.VARIABLE")
            return None
        if fname not in fmus:
            if fname not in fmu_tables:
                bad("unknown-fmu", f"{where}: no FMU {fname!r} in this system")
            return None
        var = fmus[fname].info.variables.get(vname)
        if var is None:
            bad(
                "unknown-variable",
                f"{where}: {fmus[fname].info.name} ({fname}) has no variable {vname!r}",
            )
            return None
        return fname, var

    # -- connections
    connections: list[Connection] = []
    fed: dict[tuple[str, str], str] = {}
    conn_raw = raw.get("connections", [])
    if not isinstance(conn_raw, list):
        bad("bad-value", 'connections: expected an array of "fmu.output -> fmu.input" strings')
        conn_raw = []
    for i, text_c in enumerate(conn_raw):
        where = f"connections[{i}]"
        m = _ARROW.match(text_c) if isinstance(text_c, str) else None
        if m is None:
            bad("bad-value", f'{where}: expected "fmu.output -> fmu.input", found {text_c!r}')
            continue
        s = lookup(f"{m.group(1)}.{m.group(2)}", f"{where} ({text_c})")
        d = lookup(f"{m.group(3)}.{m.group(4)}", f"{where} ({text_c})")
        if s is None or d is None:
            continue
        (sf, sv), (df, dv) = s, d
        ok = True
        if sv.causality != "output":
            bad(
                "causality",
                f"{where} ({text_c}): {sf}.{sv.name} is an {sv.causality};"
                " a connection starts at an output",
            )
            ok = False
        if dv.causality != "input":
            bad(
                "causality",
                f"{where} ({text_c}): {df}.{dv.name} is an {dv.causality};"
                " a connection ends at an input",
            )
            ok = False
        if sf == df:
            bad("causality", f"{where} ({text_c}): an FMU wired to itself")
            ok = False
        key = (df, dv.name)
        if key in fed:
            bad(
                "input-fed-twice",
                f"{where} ({text_c}): {df}.{dv.name} is already fed by {fed[key]}",
            )
            ok = False
        numeric = sv.type in _NUMERIC and dv.type in _NUMERIC
        if not numeric and sv.type != dv.type:
            bad("type-mismatch", f"{where} ({text_c}): {sv.type} -> {dv.type}")
            ok = False
        factor, offset = 1.0, 0.0
        if sv.unit != dv.unit:
            conv = (
                _unit_conversion(fmus[sf].info, sv.unit, fmus[df].info, dv.unit)
                if sv.unit and dv.unit
                else None
            )
            if conv is None:
                bad(
                    "unit-mismatch",
                    f"{where} ({text_c}): {sv.unit or 'no unit'} -> {dv.unit or 'no unit'},"
                    " and the FMUs declare no conversion between them",
                )
                ok = False
            else:
                factor, offset = conv
        if ok:
            fed[key] = text_c
            connections.append(
                Connection(
                    src=sf, src_var=sv.name, dst=df, dst_var=dv.name, factor=factor, offset=offset
                )
            )

    # -- bindings to the asset
    inputs: dict[tuple[str, str], str | float] = {}
    outputs: dict[tuple[str, str], str] = {}
    initial: dict[tuple[str, str], str] = {}
    for section, want, target in (
        ("inputs", "input", inputs),
        ("outputs", "output", outputs),
        ("initial", "parameter", initial),
    ):
        table = raw.get(section, {})
        if not isinstance(table, dict):
            bad("bad-value", f"[{section}] must be a table")
            continue
        for ref, value in table.items():
            where = f"{section}.{ref}"
            found = lookup(ref, where)
            if found is None:
                continue
            fname, var = found
            if var.causality != want:
                bad("causality", f"{where}: {ref} is an {var.causality}; [{section}] takes {want}s")
                continue
            if section == "inputs":
                if (fname, var.name) in fed:
                    bad(
                        "input-fed-twice",
                        f"{where}: {ref} is already fed by {fed[(fname, var.name)]}",
                    )
                    continue
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    bad("bad-value", f"{where}: a telemetry name or a number, found {value!r}")
                    continue
                target[(fname, var.name)] = value if isinstance(value, str) else float(value)
                fed[(fname, var.name)] = f"[inputs] {value!r}"
            else:
                if not isinstance(value, str):
                    bad("bad-value", f"{where}: expected a telemetry name, found {value!r}")
                    continue
                target[(fname, var.name)] = value

    commands: dict[tuple[str, str], str] = {}
    table = raw.get("commands", {})
    if not isinstance(table, dict):
        bad("bad-value", "[commands] must be a table")
        table = {}
    for ref, value in table.items():
        where = f"commands.{ref}"
        found = lookup(ref, where)
        if found is None:
            continue
        fname, var = found
        if var.causality != "input":
            bad("causality", f"{where}: {ref} is an {var.causality}; [commands] takes inputs")
            continue
        if not isinstance(value, str) or not value:
            bad("bad-value", f"{where}: expected a command name, found {value!r}")
            continue
        constant = inputs.get((fname, var.name))
        if constant is None or isinstance(constant, str):
            # The value before any command, and what a node without commands
            # runs on; an input fed by telemetry cannot also follow a command.
            bad(
                "command-input",
                f"{where}: {ref} needs a constant in [inputs] (its value before any "
                f"command), found {'nothing' if constant is None else repr(constant)}",
            )
            continue
        commands[(fname, var.name)] = value

    loop = _algebraic_loop(fmus, connections)
    if loop:
        bad("algebraic-loop", "a cycle of direct feedthrough: " + " -> ".join(loop))
    if problems:
        raise SystemError_(path, problems)
    return System(
        path=path,
        sha256=hashlib.sha256(raw_text.encode()).hexdigest(),
        name=name,
        version=version,
        description=description,
        step=step,
        start=start,
        stop=stop,
        algorithm=algorithm,
        fmus=fmus,
        connections=tuple(connections),
        order=gauss_seidel_order(fmus, connections),
        inputs=inputs,
        outputs=outputs,
        initial=initial,
        commands=commands,
    )


def _feedthrough(info: FmuInfo, out: VarInfo) -> tuple[str, ...]:
    if out.depends_on is not None:
        return out.depends_on
    return tuple(v.name for v in info.variables.values() if v.causality == "input")


def _algebraic_loop(fmus: dict[str, FmuEntry], connections: list[Connection]) -> list[str]:
    """One cycle of direct feedthrough as ["a.y", "b.u", "b.y", "a.u", "a.y"], or []."""
    edges: dict[str, list[str]] = {}
    for c in connections:
        edges.setdefault(f"{c.src}.{c.src_var}", []).append(f"{c.dst}.{c.dst_var}")
    for fname, entry in fmus.items():
        for var in entry.info.variables.values():
            if var.causality == "output":
                for u in _feedthrough(entry.info, var):
                    edges.setdefault(f"{fname}.{u}", []).append(f"{fname}.{var.name}")
    # Iterative DFS with colours; the first back edge found closes the cycle.
    white, grey, black = 0, 1, 2
    colour: dict[str, int] = {}
    for root in sorted(edges):
        if colour.get(root, white) != white:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = grey
        while stack:
            node, i = stack[-1]
            succ = edges.get(node, [])
            if i < len(succ):
                stack[-1] = (node, i + 1)
                nxt = succ[i]
                c = colour.get(nxt, white)
                if c == grey:
                    return [*path[path.index(nxt) :], nxt]
                if c == white:
                    colour[nxt] = grey
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return []


def gauss_seidel_order(fmus: dict[str, FmuEntry], connections: list[Connection]) -> tuple[str, ...]:
    """FMUs in dependency order (Kahn's algorithm, ties by declaration order).

    Edges from outputs without feedthrough (states) are dropped first when the
    FMU graph has a cycle: their delay by one step costs the least accuracy.
    """
    names = list(fmus)
    rank = {n: i for i, n in enumerate(names)}

    def kahn(conns: list[Connection]) -> list[str] | None:
        succ: dict[str, set[str]] = {n: set() for n in names}
        indeg = dict.fromkeys(names, 0)
        for c in conns:
            if c.dst not in succ[c.src]:
                succ[c.src].add(c.dst)
                indeg[c.dst] += 1
        ready = sorted((n for n in names if indeg[n] == 0), key=rank.__getitem__)
        out: list[str] = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for m in sorted(succ[n], key=rank.__getitem__):
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
                    ready.sort(key=rank.__getitem__)
        return out if len(out) == len(names) else None

    order = kahn(connections)
    if order is None:
        direct = [
            c
            for c in connections
            if _feedthrough(fmus[c.src].info, fmus[c.src].info.variables[c.src_var])
        ]
        order = kahn(direct) or names
    return tuple(order)
