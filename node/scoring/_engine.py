"""The scoring engine: samples in, scored frames with findings out (pure).

Theory of operation
-------------------
Per asset, the engine goes through two phases:

1. **Warm-up**: the first ``warmup`` frames are collected, not scored. Then the
   feature layout is fixed (the tags the asset reported in most warm-up
   frames, thermal slopes, co-simulation residuals present) and a
   :class:`~._baseline.Baseline` is learned; every detector is fitted on it.
2. **Scoring**: frames are scored in micro-batches (all frames of the asset
   closed since the last :meth:`ScoringEngine.process`): each detector scores
   the batch, and :func:`~._diagnosis.diagnose` turns each frame's scores
   into findings.

*Retraining on measured drift* (and only then, never by calendar): the engine
keeps the standardised values of recent frames that raised no finding. When
their mean has moved by ``drift_limit`` scales on some monitored feature and
the move has settled (the two halves of the window agree), the operating point
changed (a new product, a season) rather than the machine: the baseline is
relearned from those frames, its version bumped and the reason recorded. A
new input series (the co-simulation starting to publish residuals) also
retrains, with that reason. A still-developing fault never retrains: frames
with findings are not collected, and an unsettled trend does not qualify.

Everything takes ``now`` and a seed; no clock, no global RNG.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._baseline import Baseline, LawFit, learn_baseline
from ._consistency import Consistency
from ._detector import Batch, Detector
from ._diagnosis import Finding, diagnose
from ._ewma import Ewma
from ._features import (
    FEATURE_SET,
    CycleMeanRise,
    FeatureSet,
    Frame,
    FrameAssembler,
    SampleRef,
    TrendTracker,
    feature_names,
    roles_of,
)
from ._iforest import IForest
from ._pump_curve import fit_pump_curve, locate_pump_curve
from ._residual import ResidualThreshold
from ._spindle_power import fit_spindle_power, locate_spindle_power
from ._zscore import Cohort, RollingZ

__all__ = ["EngineConfig", "FrameResult", "Retrain", "ScoringEngine"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    warmup: int = 120  # frames
    drift_window: int = 600  # frames of healthy readings compared with the baseline
    drift_limit: float = 2.0  # scales the healthy mean may move before a retrain
    dropout_frames: int = 6  # frames a tag may miss while its siblings report
    stale_after: float = 1.0  # at least this many seconds without any frame ...
    # ... and dropout_frames typical frame intervals: the whole asset dropped out
    detectors: tuple[str, ...] = ("rolling-z", "ewma", "iforest", "consistency", "residual")
    #: A relation between process variables is kept when it explains this share
    #: of the target's warm-up variance. 0.9 dropped the weak speed ~ load, current
    #: relation of a motor, and without it a current drift and a load drift look
    #: alike (measured on a real node: the drift was named on the load transmitter).
    relation_r2: float = 0.7

    def describe(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "drift_window": self.drift_window,
            "drift_limit": self.drift_limit,
            "dropout_frames": self.dropout_frames,
            "stale_after": self.stale_after,
            "detectors": list(self.detectors),
            "relation_r2": self.relation_r2,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrain:
    entity: str
    version: int
    at: float
    reason: str
    frames: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameResult:
    entity: str
    ts: float
    received: float
    seq: int
    findings: tuple[Finding, ...]
    scores: Mapping[str, float]  # detector -> frame score
    refs: Mapping[str, SampleRef]
    model_version: int
    detector_versions: Mapping[str, str]


def _source_ts(stored: Any) -> float:
    return float(stored.sample.source_ts)


def _make(name: str, member: str, cohort: Cohort, *, keep_r2: float = 0.7) -> Detector:
    if name == "rolling-z":
        return RollingZ(member=member, cohort=cohort)
    if name == "ewma":
        return Ewma()
    if name == "iforest":
        return IForest()
    if name == "consistency":
        return Consistency(keep_r2=keep_r2)
    if name == "residual":
        return ResidualThreshold()
    raise ValueError(f"unknown detector {name!r}")


DETECTORS = ("rolling-z", "ewma", "iforest", "consistency", "residual")


@dataclass(slots=True)
class _Asset:
    entity: str
    cohort: str
    warm: list[Frame] = field(default_factory=list)
    baseline: Baseline | None = None
    features: tuple[str, ...] = ()
    detectors: list[Detector] = field(default_factory=list)
    slopes: dict[str, TrendTracker] = field(default_factory=dict)
    trends: dict[str, TrendTracker] = field(default_factory=dict)
    cycle_means: dict[str, CycleMeanRise] = field(default_factory=dict)
    missing: Counter[str] = field(default_factory=Counter)
    pending: list[tuple[Frame, np.ndarray, np.ndarray]] = field(default_factory=list)
    healthy: deque[np.ndarray] = field(default_factory=deque)
    healthy_x: deque[np.ndarray] = field(default_factory=deque)
    last_frame: float = 0.0  # receive time of the newest frame
    last_ts: float = 0.0
    interval: float = 0.0  # running mean of the time between frames (receive time)
    stale: bool = False
    #: Source time the process relations last broke (>= half their limit): the
    #: co-simulation's inputs (a motor's load) may be wrong since then.
    inputs_suspect_at: float = -math.inf
    scored: int = 0
    last_version: int = 0  # newest model version of this asset (restored ones too)


class ScoringEngine:
    """Feed samples with :meth:`add`; call :meth:`process` to score what closed."""

    def __init__(
        self,
        *,
        config: EngineConfig | None = None,
        cohort_of: Callable[[str], str] = lambda entity: "",
        seed: int = 0,
        feature_set: FeatureSet = FEATURE_SET,
        skip: Callable[[str], bool] = lambda entity: False,
    ) -> None:
        self.config = config or EngineConfig()
        self.fs = feature_set
        self.cohort_of = cohort_of
        self.skip = skip
        self.rng = np.random.default_rng(seed)
        self.frames = FrameAssembler(resync=feature_set.residual_resync)
        self.assets: dict[str, _Asset] = {}
        self.cohorts: dict[str, Cohort] = {}
        self.retrains: list[Retrain] = []
        self.samples_seen = 0
        self.frames_scored = 0
        self.newest_scored_ts = 0.0
        #: Optional hook (entity, ts, features, x, level, consistency, findings) for
        #: the evaluation's --trace and for debugging a detector.
        self.trace: Callable[..., None] | None = None

    # -- input -----------------------------------------------------------------------

    def add(
        self,
        *,
        seq: int,
        sample_id: str,
        entity: str,
        name: str,
        value: object,
        source_ts: float,
        received_ts: float,
        quality: int,
    ) -> None:
        self.samples_seen += 1
        closed = self.frames.add(
            seq=seq,
            sample_id=sample_id,
            entity=entity,
            name=name,
            value=value,
            source_ts=source_ts,
            received_ts=received_ts,
            quality=quality,
        )
        for frame in closed:
            self._frame(frame)

    def add_stored(self, stored: Iterable[Any]) -> None:
        """Add ``StoredSample`` s from the telemetry buffer.

        In source-time order within the batch (stable): an OPC UA publish
        response carries each monitored item's queued values together (tag A
        of ticks n..n+k, then tag B of the same ticks), so after a stall of more
        than the assembler's horizon of ticks, buffer order would close frames
        holding only tag A and then call the other tags late: false dropouts
        and lost readings. Measured at 50 Hz on a real node: one 0.4 s stall
        opened a dropout alert on every tag but one of all six motors."""
        for st in sorted(stored, key=_source_ts):
            s = st.sample
            self.add(
                seq=st.seq,
                sample_id=s.sample_id,
                entity=s.entity,
                name=s.name,
                value=s.value,
                source_ts=s.source_ts,
                received_ts=s.received_ts,
                quality=s.quality._value_,
            )

    def flush(self) -> None:
        for frame in self.frames.flush():
            self._frame(frame)

    def _asset(self, entity: str) -> _Asset:
        a = self.assets.get(entity)
        if a is None:
            a = _Asset(entity=entity, cohort=self.cohort_of(entity))
            a.healthy = deque(maxlen=self.config.drift_window)
            a.healthy_x = deque(maxlen=self.config.drift_window)
            self.assets[entity] = a
        return a

    def _frame(self, frame: Frame) -> None:
        if self.skip(frame.entity):
            return
        a = self._asset(frame.entity)
        if a.last_frame and frame.received > a.last_frame:
            gap = frame.received - a.last_frame
            a.interval = (
                gap if not a.interval else 0.95 * a.interval + 0.05 * min(gap, 10 * a.interval)
            )
        a.last_frame = max(a.last_frame, frame.received)
        a.last_ts = max(a.last_ts, frame.ts)
        a.stale = False
        for name, v in list(frame.values.items()):
            if self.fs.role(name) == "thermal":
                tracker = a.slopes.setdefault(name, TrendTracker(self.fs.slope_window))
                frame.values[f"{name}:slope"] = tracker.push(v)[0]
                trend = a.trends.setdefault(name, TrendTracker(self.fs.trend_window))
                slope, t_stat = trend.push(v)
                # The rise over the frames the window holds (fewer than trend_window
                # in the first minutes: slope * trend_window would overstate it).
                frame.values[f"{name}:trend"] = slope * trend.span
                frame.values[f"{name}:trend_t"] = t_stat
                cycle = a.cycle_means.setdefault(name, CycleMeanRise(self.fs.cycle_window))
                rise = cycle.push(frame.ts, v)
                if math.isfinite(rise):  # both windows full
                    frame.values[f"{name}:cycle_rise"] = rise
        for name, v in frame.residuals.items():
            if self.fs.role(name.split(".", 1)[0]) == "thermal":
                # Whether the winding is still drawing away from its model (a lost
                # cooling) or coming back to it (the tail of one already over).
                tracker = a.trends.setdefault(name, TrendTracker(self.fs.trend_window))
                frame.values[f"{name}:trend_t"] = tracker.push(v)[1]
        if a.baseline is None:
            a.warm.append(frame)
            if len(a.warm) >= self.config.warmup:
                self._train(a, a.warm, reason=f"warm-up of {len(a.warm)} frames", at=frame.ts)
                a.warm = []
            return
        side = self.frames.side.get(frame.entity, {})
        if any(n.endswith(".residual") and n not in a.features for n in side):
            # A new input series: relearn with it (collect a fresh warm-up).
            a.baseline = None
            a.warm = [frame]
            self.retrains.append(
                Retrain(
                    entity=a.entity,
                    version=-1,
                    at=frame.ts,
                    frames=0,
                    reason="new input series: "
                    + ", ".join(
                        sorted(n for n in side if n.endswith(".residual") and n not in a.features)
                    ),
                )
            )
            return
        x, valid = self._vector(a, frame)
        a.pending.append((frame, x, valid))

    def _vector(self, a: _Asset, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty(len(a.features))
        valid = np.ones(len(a.features), dtype=bool)
        for i, f in enumerate(a.features):
            v = frame.residuals.get(f) if f.endswith(".residual") else frame.values.get(f)
            if v is None:
                valid[i] = False
                x[i] = np.nan
            else:
                x[i] = v
        return x, valid

    # -- training --------------------------------------------------------------------

    def _train(self, a: _Asset, frames: list[Frame], *, reason: str, at: float) -> None:
        counts: Counter[str] = Counter()
        for fr in frames:
            counts.update(k for k in fr.values if ":" not in k)
        tags = [t for t, n in counts.items() if n >= len(frames) / 2]
        side = self.frames.side.get(a.entity, {})
        a.features = tuple(feature_names(tags, side.keys(), self.fs))
        rows = []
        for fr in frames:
            x, _ = self._vector(a, fr)
            rows.append(x)
        self._fit(a, np.array(rows), reason=reason, at=at)

    def _laws(self, features: Sequence[str], roles: Sequence[str]) -> list[LawFit]:
        """The physical laws this asset's tags make up (fitted in the baseline)."""
        fs = self.fs
        out: list[LawFit] = []
        if fs.pump_curve is not None:
            at = locate_pump_curve(features, roles, fs.pump_curve, fs.impulsive)
            if at is not None:
                out.append(functools.partial(fit_pump_curve, **at))
        if fs.spindle_power is not None:
            at = locate_spindle_power(features, roles, fs.spindle_power, fs.impulsive)
            if at is not None:
                out.append(functools.partial(fit_spindle_power, **at))
        return out

    def _fit(self, a: _Asset, x: np.ndarray, *, reason: str, at: float) -> None:
        roles = roles_of(a.features, self.fs)
        version = a.last_version + 1
        a.last_version = version
        b = learn_baseline(
            x,
            a.features,
            [roles[f] for f in a.features],
            version=version,
            trained_at=at,
            reason=reason,
            min_r2=self.config.relation_r2,
            trend_window=self.fs.trend_window,
            laws=self._laws(a.features, [roles[f] for f in a.features]),
            tonal=[
                i
                for i, f in enumerate(a.features)
                if self.fs.tonal and roles[f] == "vibration" and re.search(self.fs.tonal, f)
            ],
        )
        a.baseline = b
        valid = np.isfinite(x)
        train = Batch(x=x, z=np.where(valid, b.standardise(np.nan_to_num(x)), 0.0), valid=valid)
        cohort = self.cohorts.setdefault(a.cohort, Cohort())
        a.detectors = [
            _make(n, a.entity, cohort, keep_r2=self.config.relation_r2)
            for n in self.config.detectors
        ]
        for d in a.detectors:
            d.fit(b, train, self.rng)
        a.healthy.clear()
        a.healthy_x.clear()
        self.retrains.append(
            Retrain(entity=a.entity, version=version, at=at, reason=reason, frames=len(x))
        )

    # -- scoring ---------------------------------------------------------------------

    def process(self, now: float) -> list[FrameResult]:
        """Score every frame closed since the last call (micro-batches per asset)."""
        out: list[FrameResult] = []
        for a in self.assets.values():
            if a.pending and a.baseline is not None:
                out += self._score(a)
        out += self._sweep(now)
        return out

    def _score(self, a: _Asset) -> list[FrameResult]:
        b = a.baseline
        assert b is not None
        pending, a.pending = a.pending, []
        x = np.array([p[1] for p in pending])
        valid = np.array([p[2] for p in pending])
        z = np.where(valid, b.standardise(np.nan_to_num(x)), 0.0)
        batch = Batch(x=x, z=z, valid=valid)
        results = {d.name: d.score(batch) for d in a.detectors}
        n, f = z.shape
        zero = np.zeros((n, f))
        level_by = {
            k: results[k].contrib if k in results and results[k].contrib is not None else zero
            for k in ("rolling-z", "ewma")
        }
        stacked = np.stack(list(level_by.values()))
        pick = np.argmax(np.abs(stacked), axis=0)
        level = np.take_along_axis(stacked, pick[None], axis=0)[0]
        cons_det = next((d for d in a.detectors if isinstance(d, Consistency)), None)
        cons = results["consistency"].contrib if "consistency" in results else zero
        res = results["residual"].contrib if "residual" in results else zero
        iso = results["iforest"].score if "iforest" in results else np.zeros(n)
        assert cons is not None and res is not None
        versions = {d.name: d.version for d in a.detectors}
        out = []
        tags = {t for t in a.features if ":" not in t and "." not in t}
        roles_v = np.array(b.roles) == "vibration"
        via_vib = {r.target for r in b.relations if any(roles_v[i] for i in r.inputs)}
        warm_t = dict(zip(b.features, b.warmup_trend_t, strict=True)) if b.warmup_trend_t else {}
        for i, (frame, xi, _vi) in enumerate(pending):
            for t in tags:
                if t in frame.values:
                    a.missing.pop(t, None)
                else:
                    a.missing[t] += 1
            findings = diagnose(
                features=a.features,
                roles=b.roles,
                x=np.nan_to_num(xi),
                center=b.center,
                level=level[i],
                level_by={k: v[i] for k, v in level_by.items()},
                consistency=cons[i],
                residual=res[i],
                trust_residuals=self._trust_residuals(a, frame.ts, cons[i]),
                iforest=float(iso[i]),
                hypotheses=(
                    (lambda i=i: cons_det.hypotheses(i, cons[i]))
                    if cons_det is not None
                    else (lambda: [])
                ),
                scale=b.scale,
                stuck=sorted(frame.stuck),
                missing=dict(a.missing),
                via_vibration=via_vib,
                impulsive=self.fs.impulsive,
                speed_lines=self.fs.speed_lines,
                dropout_frames=self.config.dropout_frames,
                trend={
                    t: (
                        frame.values[f"{t}:trend"],
                        frame.values[f"{t}:trend_t"],
                    )
                    for t in tags
                    if f"{t}:trend" in frame.values
                },
                warmup_trend_t=warm_t,
                cycle_rise={
                    t: frame.values[f"{t}:cycle_rise"]
                    for t in tags
                    if f"{t}:cycle_rise" in frame.values
                },
                residual_trend_t={
                    k[: -len(":trend_t")]: v
                    for k, v in frame.values.items()
                    if k.endswith(".residual:trend_t")
                },
            )
            scores = {k: float(v.score[i]) for k, v in results.items()}
            if self.trace is not None:
                self.trace(a.entity, frame.ts, a.features, xi, level[i], cons[i], findings)
            out.append(
                FrameResult(
                    entity=a.entity,
                    ts=frame.ts,
                    received=frame.received,
                    seq=frame.seq,
                    findings=tuple(findings),
                    scores=scores,
                    refs=dict(frame.refs),
                    model_version=b.version,
                    detector_versions=versions,
                )
            )
            if not findings and max(scores.values(), default=0.0) < 0.5:
                a.healthy.append(z[i])
                a.healthy_x.append(xi)
            if (
                cons_det is not None
                and not findings
                and cons_det.beyond(i)
                and max((v for k, v in scores.items() if k != "consistency"), default=0.0) < 0.5
            ):
                # Beyond what the relations were fitted on, healthy by every other
                # detector and below the relations' own limit: the envelope may grow.
                cons_det.keep_healthy(z[i])
        a.scored += n
        self.frames_scored += n
        self.newest_scored_ts = max(self.newest_scored_ts, pending[-1][0].ts)
        if cons_det is not None and cons_det.wants_growth():
            self._grow_envelope(a, cons_det, pending[-1][0].ts)
        self._check_drift(a, pending[-1][0].ts)
        return out

    def _trust_residuals(self, a: _Asset, ts: float, cons: np.ndarray) -> bool:
        """The co-simulation's residuals are evidence only while its inputs are
        believed: a load transmitter reading low makes the thermal FMU expect a
        cooler winding, and the residual then says "hotter than modelled" of a
        healthy motor (heldout-plant-b seed 602: a load drift raised a false
        lost cooling, whose open alert then hid the real one). So not while any
        process relation is at half its limit, nor for ``residual_resync``
        seconds after (the model's state lags its corrected inputs)."""
        if float(np.max(np.abs(cons), initial=0.0)) >= 0.5:
            a.inputs_suspect_at = ts
        return ts - a.inputs_suspect_at >= self.fs.residual_resync

    def _grow_envelope(self, a: _Asset, cons: Consistency, at: float) -> None:
        """The process relations refitted over a wider healthy range: a new model
        version with its reason (see ``Consistency``'s theory of operation)."""
        b = a.baseline
        assert b is not None
        relations, why = cons.grow()
        version = a.last_version + 1
        a.last_version = version
        frames = cons.fitted_rows
        a.baseline = dataclasses.replace(
            b, version=version, relations=relations, reason=why, trained_at=at, frames=frames
        )
        cons.rebase(a.baseline)
        self.retrains.append(
            Retrain(entity=a.entity, version=version, at=at, reason=why, frames=frames)
        )

    def _check_drift(self, a: _Asset, at: float) -> None:
        b = a.baseline
        w = self.config.drift_window
        if b is None or len(a.healthy) < w:
            return
        z = np.array(a.healthy)
        roles = np.array(b.roles)
        mon = b.stationary & (roles != "process")
        if not mon.any():
            return
        mean = np.abs(z[:, mon].mean(axis=0))
        k = int(np.argmax(mean))
        if mean[k] < self.config.drift_limit:
            return
        half = w // 2
        settled = np.abs(z[:half, mon].mean(axis=0) - z[half:, mon].mean(axis=0)) < 1.0
        if not settled[k]:
            return
        feature = [f for f, m in zip(b.features, mon, strict=True) if m][k]
        x = np.array(a.healthy_x)[-max(self.config.warmup, w // 2) :]
        self._fit(
            a,
            x,
            at=at,
            reason=f"input drift: {feature} healthy mean moved {mean[k]:.2f} scales from the"
            f" baseline over {w} frames (settled)",
        )

    def _sweep(self, now: float) -> list[FrameResult]:
        """Whole-asset dropouts: no frame for ``stale_after`` seconds."""
        out = []
        for a in self.assets.values():
            if a.baseline is None or not a.last_frame:
                continue
            limit = max(self.config.dropout_frames * a.interval, self.config.stale_after)
            if now - a.last_frame >= limit:
                # Reported on every sweep while it lasts: the alert stays open until
                # frames come back (then the finding is absent and the alert clears).
                a.stale = True
                f = Finding(
                    key="sensor:dropout:*",
                    kind="sensor",
                    label="dropout",
                    tag=None,
                    score=2.0,
                    confidence=0.9,
                    detectors={"quality": 2.0},
                    evidence={
                        "silent_seconds": round(now - a.last_frame, 3),
                        "note": "no reading of any tag of the asset",
                    },
                )
                out.append(
                    FrameResult(
                        entity=a.entity,
                        ts=now,
                        received=now,
                        seq=0,
                        findings=(f,),
                        scores={},
                        refs={},
                        model_version=a.baseline.version,
                        detector_versions={d.name: d.version for d in a.detectors},
                    )
                )
        return out

    def export(self, entity: str) -> dict[str, Any] | None:
        """The fitted state of ``entity`` (baseline, layout, detectors): an artifact."""
        a = self.assets.get(entity)
        if a is None or a.baseline is None:
            return None
        return {
            "features": a.features,
            "baseline": a.baseline,
            "detectors": a.detectors,
            "cohort": a.cohort,
        }

    def restore(self, entity: str, state: Mapping[str, Any]) -> None:
        """Resume ``entity`` from an artifact: scoring at once, no warm-up."""
        a = self._asset(entity)
        b = state["baseline"]
        a.baseline = b
        a.features = tuple(state["features"])
        a.detectors = list(state["detectors"])
        a.last_version = max(a.last_version, b.version)
        # Frames close as soon as every tag the model knows has arrived.
        self.frames.expected.setdefault(entity, set()).update(
            f for f in a.features if ":" not in f and "." not in f
        )
        cohort = self.cohorts.setdefault(a.cohort, Cohort())
        for d in a.detectors:
            if isinstance(d, RollingZ):
                d.cohort = cohort  # the live cohort, not the pickled snapshot of it
        self.retrains.append(
            Retrain(
                entity=entity,
                version=b.version,
                at=b.trained_at,
                frames=b.frames,
                reason=f"restored model v{b.version} ({b.reason})",
            )
        )

    def continue_after(self, entity: str, version: int) -> None:
        """Number ``entity`` 's next model after ``version`` (an artifact kept on disk
        that this code cannot load: another feature set, or a damaged blob)."""
        a = self._asset(entity)
        a.last_version = max(a.last_version, version)

    def retrain(self, entity: str, *, reason: str, at: float) -> bool:
        """Relearn ``entity`` 's baseline from a fresh warm-up (an operator's request:
        a replaced bearing, a recalibrated transmitter); recorded with its reason."""
        a = self.assets.get(entity)
        if a is None:
            return False
        a.baseline = None
        a.detectors = []
        a.warm = []
        a.pending = []
        a.missing.clear()
        self.retrains.append(
            Retrain(entity=entity, version=-1, at=at, frames=0, reason=f"requested: {reason}")
        )
        return True

    def is_stale(self, entity: str) -> bool:
        a = self.assets.get(entity)
        return bool(a and a.stale)

    def describe(self, entity: str) -> dict[str, Any] | None:
        a = self.assets.get(entity)
        if a is None:
            return None
        return {
            "entity": entity,
            "cohort": a.cohort,
            "phase": "scoring" if a.baseline is not None else "warm-up",
            "warmup_frames": len(a.warm),
            "frames_scored": a.scored,
            "baseline": a.baseline.describe() if a.baseline is not None else None,
            "detectors": [d.describe() for d in a.detectors],
            "retrains": [
                {"version": r.version, "at": r.at, "reason": r.reason, "frames": r.frames}
                for r in self.retrains
                if r.entity == entity
            ],
        }
