"""Live coupling of one asset: measured inputs drive its FMUs, outputs become expected values.

Theory of operation
-------------------
An :class:`AssetCoupling` is fed the asset's stored samples in commit order
(:meth:`offer`) and answers with derived samples to store: for every
observation of a telemetry the system predicts (``[outputs]``), its
``<name>.expected`` and ``<name>.residual`` (observed - expected, same unit),
dated with the observation's source time. Pure: no clock, no IO; ``now`` is
given, the master is built by a factory.

*Clock.* Model time runs with the asset's source time: ``tau = (ts - origin)
* time_scale``, ``origin`` being the source time of the observation the
co-simulation starts from. The master steps on its own fixed grid; an
observation at ``ts`` is compared with the outputs at the communication
point nearest to it.

*Start.* From the twin's current state: once every telemetry input has a good
sample and every ``[initial]`` telemetry (the winding temperature) ten good
ones, their mean initialises the FMUs (``T_start``: one reading's noise would
offset a state with a 15-minute time constant for that long), and the master
starts at ``origin``, the newest of those samples.

*Inputs.* A sample describes the interval that ends at it (the plant's
readings are computed that way: the thermal state at tick n integrates the
current of tick n over (n-1, n]), so a step ending at ``tau`` takes the first
input sample at or after ``tau``. The master therefore advances only as far
as every input is known, and observations wait for their inputs.

*Held inputs.* A flagged input sample (Bad, OUT_OF_RANGE, STUCK, unit or type
mismatch, uncertain) or a missing one (none for ``input_timeout`` seconds of
source time while observations keep arriving) is never fed forward: the input
holds its last good value and every output computed while it is held is
stored with the UNCERTAIN flag, the status names the held input, and the
held count shows in /metrics. Observations that would otherwise wait forever
for a missing input are answered as held after ``input_timeout``.

*Failure.* An FMU call that fails stops this asset's co-simulation for good
(state ``failed`` with the FMU's reason); the node goes on.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twinmesh.adapters import Provenance, Quality, Sample
from twinmesh.adapters._sample import new_sample

from ._fmu import FmuStepError
from ._master import Master
from ._system import System

__all__ = ["HELD_FLAGS", "AssetCoupling", "TagInfo"]

#: Input flags that mean "do not feed this value to a model".
HELD_FLAGS = (
    Quality.BAD_STATUS
    | Quality.UNCERTAIN
    | Quality.OUT_OF_RANGE
    | Quality.STUCK
    | Quality.UNIT_MISMATCH
    | Quality.TYPE_MISMATCH
)
#: Observation flags under which a residual means nothing.
_NO_RESIDUAL = Quality.BAD_STATUS | Quality.UNIT_MISMATCH | Quality.TYPE_MISMATCH
#: Observation flags the residual does not inherit: it is still a fair comparison.
_NOT_INHERITED = Quality.OUT_OF_RANGE | Quality.UNIT_CONVERTED

#: DTDL unit symbols (node/telemetry) -> FMI unit names of our FMUs.
UNIT_NAMES = {"A": "A", "°C": "degC", "rpm": "rpm", "%": "%", "Hz": "Hz", "K": "K", "1": "1"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TagInfo:
    unit: str | None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(slots=True)
class _In:
    ts: float
    value: float
    quality: Quality
    sample_id: str


class AssetCoupling:
    def __init__(
        self,
        *,
        entity: str,
        system: System,
        make_master: Callable[[dict[tuple[str, str], float]], Master],
        time_scale: float = 1.0,
        input_timeout: float = 5.0,
        tags: Mapping[str, TagInfo] | None = None,
        lineage_kept: int = 2000,
    ) -> None:
        self.entity = entity
        self.system = system
        self._make_master = make_master
        self.time_scale = time_scale
        self.input_timeout = input_timeout
        self.tags = dict(tags or {})
        self.state = "waiting"
        self.reason = "waiting for the first good sample of every input and initial value"
        self.master: Master | None = None
        self.origin: float | None = None
        #: telemetry -> FMU inputs it feeds
        self.inputs: dict[str, list[tuple[str, str]]] = {}
        for (fmu, var), tel in system.inputs.items():
            if isinstance(tel, str):
                self.inputs.setdefault(tel, []).append((fmu, var))
        #: DTDL command -> FMU inputs its desired value feeds, and the values in force
        self.commanded: dict[str, list[tuple[str, str]]] = {}
        for fv, command in system.commands.items():
            self.commanded.setdefault(command, []).append(fv)
        self.desired: dict[str, float] = {}
        self.outputs: dict[str, tuple[str, str]] = {tel: fv for fv, tel in system.outputs.items()}
        self.initial: dict[str, list[tuple[str, str]]] = {}
        for fv, tel in system.initial.items():
            self.initial.setdefault(tel, []).append(fv)
        self._queues: dict[str, deque[_In]] = {name: deque() for name in self.inputs}
        self._last_good: dict[str, _In] = {}
        #: Per input, its good samples not yet behind the master (bridging a hole).
        self._good: dict[str, deque[_In]] = {name: deque() for name in self.inputs}
        self._held: dict[str, str] = {}  # telemetry input -> why it is held now
        self.held_since: dict[str, float] = {}
        self._pending: list[tuple[float, int, Sample]] = []  # (ts, seq, observation)
        self._seq = 0
        self._latest_initial: dict[str, Sample] = {}
        #: The last few good observations of each initial telemetry: the start state
        #: is their mean, so one noisy reading does not offset a slow state for tau.
        self._recent_initial: dict[str, deque[float]] = {n: deque(maxlen=10) for n in self.initial}
        self._last_used: dict[str, _In | None] = {}
        self._step_src = system.step / time_scale  # source seconds per master step
        self._fmu_hash = hashlib.sha256(
            "".join(e.info.sha256 for e in system.fmus.values()).encode()
        ).hexdigest()
        self.source = f"{system.path.name}@{system.version};fmus={self._fmu_hash[:16]}"
        self._provenance = Provenance(adapter="cosim", source=self.source)
        self.lineage: deque[dict[str, Any]] = deque(maxlen=lineage_kept)
        #: Points not yet handed to the lineage store (the service drains them).
        self.new_lineage: deque[dict[str, Any]] = deque(maxlen=100_000)
        self.last: dict[str, dict[str, Any]] = {}
        self.last_ts: float | None = None
        self.steps = 0
        self.held_outputs = 0
        self.holds = 0
        self.overruns = 0
        self.model_advanced = 0.0
        self.failures = 0
        self._check_units()

    # -- set-up ---------------------------------------------------------------------

    def _check_units(self) -> None:
        problems = []
        for tel, (fmu, var) in self.outputs.items():
            self._same_unit(problems, tel, fmu, var)
        for tel, targets in self.inputs.items():
            for fmu, var in targets:
                self._same_unit(problems, tel, fmu, var)
        if problems:
            self.state = "refused"
            self.reason = "; ".join(problems)

    def _same_unit(self, problems: list[str], tel: str, fmu: str, var: str) -> None:
        tag = self.tags.get(tel)
        if tag is None:
            problems.append(f"{self.entity} has no telemetry {tel!r} (bound to {fmu}.{var})")
            return
        fmu_unit = self.system.fmus[fmu].info.variables[var].unit
        if tag.unit is not None and UNIT_NAMES.get(tag.unit, tag.unit) != fmu_unit:
            problems.append(f"unit-mismatch: {tel} is in {tag.unit}, {fmu}.{var} in {fmu_unit}")

    @property
    def active(self) -> bool:
        return self.state in ("waiting", "running", "holding")

    # -- input ------------------------------------------------------------------------

    def offer(self, sample: Sample, now: float) -> list[Sample]:
        """Take one stored sample of this asset; returns derived samples to store."""
        if (
            not self.active
            or not isinstance(sample.value, int | float)
            or isinstance(sample.value, bool)
        ):
            return []
        name = sample.name
        if name in self._queues:
            self._add_input(name, sample)
        if name in self.initial and not (sample.quality & HELD_FLAGS):
            self._latest_initial[name] = sample
            self._recent_initial[name].append(float(sample.value))
        if name in self.outputs and (self.origin is None or sample.source_ts >= self.origin):
            self._seq += 1
            bisect.insort(self._pending, (sample.source_ts, self._seq, sample))
        if self.master is None and not self._try_start():
            return []
        return self._advance(now)

    def _add_input(self, name: str, sample: Sample) -> None:
        item = _In(
            ts=sample.source_ts,
            value=float(sample.value),
            quality=sample.quality,
            sample_id=sample.sample_id,
        )
        q = self._queues[name]
        if q and item.ts < q[-1].ts:
            index = bisect.bisect([x.ts for x in q], item.ts)
            q.insert(index, item)
        else:
            q.append(item)
        if not (item.quality & HELD_FLAGS):
            g = self._good[name]
            if g and item.ts < g[-1].ts:
                g.insert(bisect.bisect([x.ts for x in g], item.ts), item)
            else:
                g.append(item)
            last = self._last_good.get(name)
            if last is None or item.ts >= last.ts:
                self._last_good[name] = item

    def _try_start(self) -> bool:
        if any(name not in self._last_good for name in self.inputs):
            return False
        if any(len(self._recent_initial[n]) < self._recent_initial[n].maxlen for n in self.initial):
            return False
        origin = max(
            [s.source_ts for s in self._latest_initial.values()]
            + [min(x.ts for x in q if not x.quality & HELD_FLAGS) for q in self._queues.values()]
        )
        values: dict[tuple[str, str], float] = {}
        for name, targets in self.initial.items():
            for fv in targets:
                values[fv] = sum(self._recent_initial[name]) / len(self._recent_initial[name])
        for name, targets in self.inputs.items():
            first = next(
                (x for x in self._queues[name] if x.ts >= origin and not x.quality & HELD_FLAGS),
                self._last_good[name],
            )
            for fv in targets:
                values[fv] = first.value
            self._last_used[name] = first
        for command, value in self.desired.items():
            for fv in self.commanded[command]:
                values[fv] = value
        try:
            self.master = self._make_master(values)
        except FmuStepError as exc:
            self._fail(str(exc))
            return False
        except Exception as exc:  # instantiation of a third-party FMU
            self._fail(f"could not start the co-simulation: {exc}")
            return False
        self.origin = origin
        self.state = "running"
        self.reason = ""
        self._pending = [p for p in self._pending if p[0] >= origin - 1e-9]
        return True

    def command(self, command: str, value: float) -> bool:
        """The home plant told the machine ``command`` = ``value`` (it is executing
        or confirmed): from the next master step the FMU inputs bound to it take
        that value, so the twin expects what the machine was told to do, and a
        machine that does not follow shows as a residual. False if no input of
        this system follows ``command`` or nothing changed."""
        if command not in self.commanded or self.desired.get(command) == value:
            return False
        self.desired[command] = value
        if self.master is not None:
            for fmu, var in self.commanded[command]:
                self.master.set_input(fmu, var, value)
        return True

    # -- stepping ---------------------------------------------------------------------

    def _point_ts(self, k: int) -> float:
        assert self.origin is not None
        return self.origin + k * self._step_src

    def _first_good(self, name: str, t_end: float) -> _In | None:
        """The first good sample of ``name`` at or after ``t_end``, if one has arrived."""
        g = self._good[name]
        eps = self._step_src * 1e-3
        while g and g[0].ts < t_end - eps:
            g.popleft()
        return g[0] if g else None

    def _input_for(self, name: str, t_end: float, newest: float) -> tuple[str, _In | None, str]:
        """How input ``name`` drives the step ending at source time ``t_end``.

        ``("good", sample, "")``: its own sample, good and in time.
        ``("bridge", sample, why)``: its own sample is flagged, or the input was
        silent longer than ``input_timeout`` before it; the first good sample
        after the hole stands in for it (the interval convention, stretched).
        ``("hold", None, why)``: flagged or missing and no good sample yet: the
        co-simulation holds here. ``("wait", None, "")``: not arrived yet.
        ``newest`` is the newest observation's source time.
        """
        q = self._queues[name]
        eps = self._step_src * 1e-3
        while len(q) > 1 and q[0].ts < t_end - eps:
            q.popleft()
        good = self._first_good(name, t_end)  # also keeps that queue short
        if not q or q[-1].ts < t_end - eps:
            if newest - t_end > self.input_timeout:
                return "hold", None, f"no {name} sample since {self._last_seen(name)}"
            return "wait", None, ""
        item = q[0]
        gap = item.ts - t_end
        if not item.quality & HELD_FLAGS and gap <= self.input_timeout:
            return "good", item, ""
        if item.quality & HELD_FLAGS:
            why = f"{name} sample flagged {'|'.join(item.quality.names())}"
        else:
            why = f"no {name} sample for {gap:.1f} s"
        return ("hold", None, why) if good is None else ("bridge", good, why)

    def _advance(self, now: float) -> list[Sample]:
        """Step the master up to each waiting observation and answer it.

        Holding (the issue: missing or flagged inputs hold the co-simulation): a
        step whose input is flagged or missing is not taken until a good sample
        after the hole exists; meanwhile the master stays at its hold point and
        observations are answered with the outputs there, marked HELD, with no
        residual (a comparison with a model that did not see its inputs is not
        one). When a good sample arrives the master bridges the hole with it and
        goes on; outputs are GOOD again from the first step whose own input is.
        """
        out: list[Sample] = []
        m = self.master
        assert m is not None and self.origin is not None
        while self._pending and self.state in ("running", "holding"):
            ts, _, obs = self._pending[0]
            newest = self._pending[-1][0]
            # The communication point nearest to the observation.
            k_target = max(0, round((ts - self.origin) / self._step_src))
            used: dict[str, _In | None] = {}
            step_held: dict[str, str] = {}
            started: dict[str, str] = {}  # every input held at some step of this batch
            blocked = frozen = False
            k_before, cpu_before = m.k, m.stats.step_seconds
            while m.k < k_target:
                t_end = self._point_ts(m.k + 1)
                kinds = {name: self._input_for(name, t_end, newest) for name in self.inputs}
                if any(k == "wait" for k, _, _ in kinds.values()):
                    blocked = True
                    break
                step_held = {n: why for n, (k, _, why) in kinds.items() if k != "good"}
                started.update(step_held)
                if any(k == "hold" for k, _, _ in kinds.values()):
                    frozen = True
                    break
                for name, (_, item, _) in kinds.items():
                    assert item is not None
                    used[name] = item
                    for fmu, var in self.inputs[name]:
                        m.set_input(fmu, var, item.value)
                try:
                    m.step()
                except FmuStepError as exc:
                    self._fail(str(exc))
                    return out
                self.steps += 1
                self.model_advanced += self.system.step
            if m.k > k_before and (
                m.stats.step_seconds - cpu_before > (m.k - k_before) * self._step_src
            ):
                self.overruns += 1  # these steps took longer than the time they cover
            if blocked:
                break  # its inputs are on their way (or are declared missing later)
            if m.k > k_before:
                self._last_used = used
            if m.k > k_before or frozen:
                self._set_held(step_held, started, ts)
            # else: a point already reached: the observation shares its inputs and marks.
            self._pending.pop(0)
            out += self._emit(obs, now, held=bool(self._held), used=self._last_used)
        return out

    def _last_seen(self, name: str) -> str:
        q = self._queues[name]
        return f"{q[-1].ts:.3f}" if q else "the start"

    def _set_held(self, held: dict[str, str], started: dict[str, str], ts: float) -> None:
        """``held``: inputs held at the point reached; ``started``: held on the way there."""
        for name in started:
            if name not in self._held:
                self.holds += 1
                self.held_since.setdefault(name, ts)
        for name in list(self.held_since):
            if name not in held:
                self.held_since.pop(name, None)
        self._held = dict(held)
        if self.state in ("running", "holding"):
            self.state = "holding" if self._held else "running"
            self.reason = "; ".join(f"{n} held: {w}" for n, w in self._held.items())

    def _emit(
        self, obs: Sample, now: float, *, held: bool, used: Mapping[str, _In | None]
    ) -> list[Sample]:
        m = self.master
        assert m is not None
        fmu, var = self.outputs[obs.name]
        expected = m.output(fmu, var)
        quality = Quality.HELD if held else Quality.GOOD
        if held:
            self.held_outputs += 1
        unit = obs.unit
        ts = obs.source_ts
        base = f"cosim:{self._fmu_hash[:12]}:{self.entity}:{obs.name}:{ts!r}"
        out = [
            new_sample(
                self.entity,
                f"{obs.name}.expected",
                expected,
                unit,
                ts,
                now,
                None,
                quality,
                self._provenance,
                base + ":e",
            )
        ]
        residual: float | None = None
        if not held and not (obs.quality & _NO_RESIDUAL):
            residual = float(obs.value) - expected
            rq = quality | (obs.quality & ~_NOT_INHERITED)
            out.append(
                new_sample(
                    self.entity,
                    f"{obs.name}.residual",
                    residual,
                    unit,
                    ts,
                    now,
                    None,
                    rq,
                    self._provenance,
                    base + ":r",
                )
            )
        self.last[obs.name] = {
            "observed": obs.value,
            "expected": expected,
            "residual": residual,
            "source_ts": ts,
            "held": held,
            "observed_quality": list(obs.quality.names()),
        }
        self.last_ts = ts
        point = {
            "source_ts": ts,
            "telemetry": obs.name,
            "model_time": m.time,
            "observation": obs.sample_id,
            "inputs": [
                {
                    "telemetry": n,
                    "sample_id": i.sample_id if i else None,
                    "source_ts": i.ts if i else None,
                    "value": i.value if i else None,
                    "held": n in self._held,
                }
                for n, i in used.items()
            ],
            "held": held,
            "held_inputs": dict(self._held),
        }
        self.lineage.append(point)
        self.new_lineage.append(point)
        return out

    def drain_lineage(self) -> list[dict[str, Any]]:
        points = list(self.new_lineage)
        self.new_lineage.clear()
        return points

    def _fail(self, reason: str) -> None:
        self.state = "failed"
        self.reason = reason
        self.failures += 1
        if self.master is not None:
            self.master.close()
            self.master = None

    def close(self) -> None:
        if self.master is not None:
            self.master.close()
            self.master = None

    # -- reading ------------------------------------------------------------------------

    def lineage_at(self, ts: float | None) -> list[dict[str, Any]]:
        if ts is None:
            return list(self.lineage)[-3:]
        return [x for x in self.lineage if abs(x["source_ts"] - ts) < 1e-6]

    def status(self) -> dict[str, Any]:
        m = self.master
        stats = m.stats if m is not None else None
        cpu = stats.step_seconds if stats else 0.0
        return {
            "entity": self.entity,
            "state": self.state,
            "reason": self.reason,
            "system": self.system.json(),
            "source": self.source,
            "time_scale": self.time_scale,
            "fmus": [{"instance": n, **e.info.json()} for n, e in self.system.fmus.items()],
            "origin": self.origin,
            "last_step": {
                "source_ts": self.last_ts,
                "model_time": m.time if m else None,
                "steps": self.steps,
            },
            "real_time_factor": (self.model_advanced / cpu) if cpu > 0 else None,
            "held_inputs": [
                {"telemetry": n, "why": w, "since": self.held_since.get(n)}
                for n, w in self._held.items()
            ],
            "outputs": self.last,
            "commanded": {
                c: {"inputs": [f"{f}.{v}" for f, v in fvs], "value": self.desired.get(c)}
                for c, fvs in self.commanded.items()
            },
            "counters": {
                "steps": self.steps,
                "held_outputs": self.held_outputs,
                "holds": self.holds,
                "overruns": self.overruns,
                "failures": self.failures,
                "step_cpu_seconds": cpu,
                "max_step_cpu_seconds": stats.max_step_seconds if stats else 0.0,
            },
            "lineage": self.lineage_at(None),
        }
