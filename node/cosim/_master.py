"""The fixed-step co-simulation master: Jacobi and Gauss-Seidel.

Theory of operation
-------------------
FMI co-simulation (FMI 2.0 §4, "FMI for Co-Simulation"; FMI 3.0 §4,
"Co-Simulation") leaves the master algorithm to the importer: each slave
integrates its own equations between *communication points*, and between
them exchanges nothing. The master sets inputs, calls ``doStep(t, h)`` and
reads outputs. Inputs are held constant over the step (zero-order hold: we
never call ``SetRealInputDerivatives``; FMI 2.0 §4.2.3). This master uses a
fixed communication step ``h`` from the system file, so the k-th point is
exactly ``start + k h`` (computed from k, not accumulated, so no drift).

*Jacobi* (FMI 2.0 §4.1, "parallel" execution): every slave steps from
``t_k`` with the inputs routed from everyone's outputs at ``t_k``; all the
doSteps of one macro step are independent and could run in parallel. The
price: every connection delays its signal by one step, so a chain of n
FMUs reacts n steps late, and the coupling error is O(h) per connection.

*Gauss-Seidel* (sequential): slaves step one after another in dependency
order (derived from the connection graph, :mod:`._system`), and each one's
inputs are routed from outputs already advanced to ``t_{k+1}`` where its
upstream has stepped. Signals along the order are not delayed, only those
against it (feedback through a state) are; no parallelism. For a chain of
first-order elements, as in our motor (drive -> electrical -> thermal),
that is the more accurate order at the same step, and the thermal slave
then integrates over [t_k, t_{k+1}] with the current at t_{k+1}, which is
what the synthetic plant's exact-step thermal model does.

Outputs with direct feedthrough (electrical current from load) are read
after their inputs were set, so they are consistent with those inputs at
the point they are read; a cycle of such outputs would need iteration at
each point and is refused at load time (:mod:`._system`).

Determinism: the same system, parameters and input sequence give bit-equal
outputs — the order is fixed, there is no threading and no clock here; the
caller decides when ``step()`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._fmu import FmuStepError, Slave
from ._system import System

__all__ = ["Master", "MasterStats"]


@dataclass(slots=True)
class MasterStats:
    steps: int = 0
    step_seconds: float = 0.0  # CPU (process) time spent in step()
    max_step_seconds: float = 0.0


class _Node:
    __slots__ = (
        "in_names",
        "in_port",
        "name",
        "out_index",
        "out_names",
        "out_port",
        "routes",
        "slave",
    )

    def __init__(self, name: str, slave: Slave) -> None:
        self.name = name
        self.slave = slave
        self.routes: list[tuple[int, int, int, float, float]] = []
        self.in_names: list[str] = []
        self.out_names: list[str] = []
        self.out_index: dict[str, int] = {}
        self.in_port: Any = None
        self.out_port: Any = None


class Master:
    """One running instance of a :class:`System`.

    ``values`` overrides parameters and input start values as
    ``{(fmu, variable): value}``, applied in initialization mode over the
    system file's parameters. :meth:`set_input` feeds an external input (held
    until set again). Call :meth:`step` to advance one communication step.
    """

    def __init__(
        self,
        system: System,
        *,
        values: Mapping[tuple[str, str], float] | None = None,
        start: float | None = None,
        unzip_root: Path | None = None,
        clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.system = system
        self.h = system.step
        self.t0 = system.start if start is None else start
        self.k = 0
        self.stats = MasterStats()
        self._clock = clock
        self._jacobi = system.algorithm == "jacobi"
        overrides = dict(values or {})
        for (fname, var), value in system.inputs.items():
            if not isinstance(value, str):
                overrides.setdefault((fname, var), value)
        self._nodes: list[_Node] = []
        index: dict[str, int] = {}
        try:
            for fname in system.order:
                entry = system.fmus[fname]
                init = dict(entry.parameters)
                init.update({v: x for (f, v), x in overrides.items() if f == fname})
                slave = Slave(
                    entry.info,
                    instance=fname,
                    start_time=self.t0,
                    values=init,
                    unzip_root=unzip_root,
                )
                index[fname] = len(self._nodes)
                self._nodes.append(_Node(fname, slave))
        except BaseException:
            self.close()
            raise
        # Ports: every input fed by a connection or from outside, every output read.
        for node in self._nodes:
            entry = system.fmus[node.name]
            node.in_names = [v for (f, v) in system.inputs if f == node.name] + [
                c.dst_var for c in system.connections if c.dst == node.name
            ]
            node.out_names = [
                v.name for v in entry.info.variables.values() if v.causality == "output"
            ]
            node.out_index = {n: i for i, n in enumerate(node.out_names)}
            node.in_port = node.slave.port(node.in_names) if node.in_names else None
            node.out_port = node.slave.port(node.out_names) if node.out_names else None
        for c in system.connections:
            dst = self._nodes[index[c.dst]]
            src_i = index[c.src]
            dst.routes.append(
                (
                    dst.in_names.index(c.dst_var),
                    src_i,
                    self._nodes[src_i].out_index[c.src_var],
                    c.factor,
                    c.offset,
                )
            )
        self._index = index
        self._external: dict[tuple[str, str], tuple[int, int]] = {}
        for (fname, var), value in system.inputs.items():
            node = self._nodes[index[fname]]
            self._external[(fname, var)] = (index[fname], node.in_names.index(var))
            # Constants (and the start of telemetry-fed inputs) as set at initialisation.
            given = overrides.get((fname, var))
            if given is None:
                given = value if not isinstance(value, str) else node.slave.var(var).start or 0.0
            node.in_port[1][node.in_names.index(var)] = given
        for node in self._nodes:
            if node.out_port is not None:
                node.slave.get_port(node.out_port)
        self._closed = False

    @property
    def time(self) -> float:
        return self.t0 + self.k * self.h

    def set_input(self, fmu: str, var: str, value: float) -> None:
        i, j = self._external[(fmu, var)]
        self._nodes[i].in_port[1][j] = value

    def output(self, fmu: str, var: str) -> float:
        node = self._nodes[self._index[fmu]]
        return float(node.out_port[1][node.out_index[var]])

    def outputs(self) -> dict[str, float]:
        """Every output as ``"fmu.var" -> value`` at the current time."""
        return {
            f"{n.name}.{name}": float(n.out_port[1][i])
            for n in self._nodes
            if n.out_port is not None
            for i, name in enumerate(n.out_names)
        }

    def step(self) -> float:
        """Advance one communication step; returns the new time. Raises FmuStepError."""
        started = self._clock()
        t, h = self.time, self.h
        nodes = self._nodes
        if self._jacobi:
            # Everyone reads the outputs of t_k: snapshot them before anyone steps.
            snapshot = [list(n.out_port[1]) if n.out_port is not None else [] for n in nodes]
            for n in nodes:
                if n.in_port is not None:
                    values = n.in_port[1]
                    for j, src, i, factor, offset in n.routes:
                        values[j] = snapshot[src][i] * factor + offset
                    n.slave.set_port(n.in_port)
            for n in nodes:
                n.slave.do_step(t, h)
            for n in nodes:
                if n.out_port is not None:
                    n.slave.get_port(n.out_port)
        else:
            for n in nodes:
                if n.in_port is not None:
                    values = n.in_port[1]
                    for j, src, i, factor, offset in n.routes:
                        values[j] = nodes[src].out_port[1][i] * factor + offset
                    n.slave.set_port(n.in_port)
                n.slave.do_step(t, h)
                if n.out_port is not None:
                    n.slave.get_port(n.out_port)
        self.k += 1
        spent = self._clock() - started
        s = self.stats
        s.steps += 1
        s.step_seconds += spent
        if spent > s.max_step_seconds:
            s.max_step_seconds = spent
        return self.time

    def run_until(self, t_end: float) -> None:
        """Step while the next communication point is not after ``t_end`` (+ h/1000)."""
        limit = t_end + self.h * 1e-3
        while self.t0 + (self.k + 1) * self.h <= limit:
            self.step()

    def slaves(self) -> dict[str, Slave]:
        return {n.name: n.slave for n in self._nodes}

    def close(self) -> None:
        for n in getattr(self, "_nodes", []):
            n.slave.close()
        self._nodes = []
        self._closed = True

    def __enter__(self) -> Master:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Re-exported for callers that catch step failures from the master.
MasterStepError = FmuStepError
