"""Features: telemetry samples grouped into frames, then into feature vectors (pure).

Theory of operation
-------------------
A device reports every tag of one reading with the same source timestamp, so
the natural unit to score is a **frame**: the values of one asset at one
source time. :class:`FrameAssembler` builds frames incrementally from samples
in buffer order (the buffer's consumer cursor gives that order). A frame is
closed as soon as every tag the asset is known to report has arrived (no
waiting: this keeps sample-to-alert latency at one commit), or when a sample
with a later source time arrives (a tag dropped out), or by :meth:`flush`.
Samples older than the open frame, or flagged out of order, are late and only
counted: scoring is causal.

Co-simulation series ``<name>.expected`` / ``<name>.residual`` (written by node/cosim)
arrive after the observed reading; the newest residual per tag is carried into
the next frames as a feature (lineage records its source time).

A :class:`FeatureSet` is a versioned definition: which tags play which role
(*vibration* condition indicators, *thermal* tags, *process* variables), and
which derived features exist (the least-squares slope of each thermal tag over
a trailing window). Changing the definition changes the version, and the
version goes into every scored event's lineage.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from twinmesh.adapters import Quality

from ._pump_curve import PumpCurveTags
from ._spindle_power import SpindlePowerTags

__all__ = [
    "FEATURE_SET",
    "CycleMeanRise",
    "FeatureSet",
    "Frame",
    "FrameAssembler",
    "SampleRef",
    "TrendTracker",
    "tag_role",
]

#: Quality bits (twinmesh.adapters.Quality) that make a value unusable for scoring.
_UNUSABLE = (
    Quality.BAD_STATUS
    | Quality.DUPLICATE
    | Quality.OUT_OF_ORDER
    | Quality.UNIT_MISMATCH
    | Quality.TYPE_MISMATCH
).value
_LATE = Quality.OUT_OF_ORDER.value
_STUCK = Quality.STUCK.value
_OUT_OF_RANGE = Quality.OUT_OF_RANGE.value
_HELD = Quality.HELD.value
_HORIZON = 16  # open frames per asset before the oldest closes incomplete ...
_HORIZON_S = 1.0  # ... and at least this much newer source time: at 50 Hz, 16 frames
# are 0.3 s, less than one publish delayed by a busy server or a GC pause


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureSet:
    """A versioned definition of the features computed per asset."""

    #: fs-2: baselines record each temperature's warm-up trend t; artifacts of
    #: fs-1 lack it, so a node upgraded onto an old data directory warms up anew.
    #: fs-3: physical laws among the relations (a pump's curve, a spindle's
    #: vibration power). fs-4: the cycle-mean rise of each temperature.
    version: str = "fs-4"
    vibration: str = r"(?i)vibration"  # name pattern of vibration condition indicators
    thermal: str = r"(?i)temperature"  # name pattern of temperatures
    #: Vibration indicators of bearing damage (impulsive): kurtosis, bearing band.
    impulsive: str = r"(?i)kurtosis|bearing"
    #: Tonal vibration lines that follow running speed (e.g. r"(?i)1x|2x") may be
    #: inputs of the process relations, measuring a speed the asset does not
    #: report. Off by default: on the CNC centre's stepped program they made the
    #: relations alarm at transients (measured: 2 false alerts in 0.47 asset-days)
    #: and still did not catch a drifting spindle speed.
    tonal: str | None = None
    #: Vibration lines at multiples of the running speed (forces that grow with
    #: speed squared): when they all rise by one factor with nothing impulsive,
    #: the machine runs faster, and diagnosis raises no vibration finding.
    speed_lines: str | None = r"(?i)1x|2x"
    #: Which tags make up a centrifugal pump's curve (outlet and inlet pressure,
    #: flow, speed or a reading that grows with speed squared); None: no curve.
    pump_curve: PumpCurveTags | None = field(default_factory=PumpCurveTags)
    #: Which tags make up a cutting spindle's vibration power (load, speed, RMS).
    spindle_power: SpindlePowerTags | None = field(default_factory=SpindlePowerTags)
    slope_window: int = 20  # frames in the trailing slope of a thermal tag
    #: Seconds after the co-simulation last held (an input stuck or missing, so
    #: the FMUs integrated a guess) before its residuals are evidence again: the
    #: model's state needs a thermal time constant or so to follow the machine
    #: again (heldout-plant-c seed 302: a load stuck for 120 s left the winding
    #: model 4.9 K cold, a false lost cooling 2 s after the stuck value cleared).
    #: The engine applies the same wait after the process relations last broke:
    #: a drifting input transmitter misleads the FMUs as much as a stuck one.
    residual_resync: float = 600.0
    #: Frames in the long trend of a thermal tag (with its t statistic): a lost
    #: cooling heats a large machine slowly (a pump bearing whose time constant
    #: grew to 40 min rises ~0.02 K a frame, under the short slope's noise) but
    #: steadily, which only a long window tells from noise.
    trend_window: int = 120
    #: Seconds over which a temperature is averaged to take out its duty cycle;
    #: diagnosis compares the latest such mean with the one before it. Longer
    #: than a machining program (1-2 min) so a cycle averages out; a load cycle
    #: longer than this does not, which is why only a temperature no thermal
    #: model explains is judged by it (see diagnose).
    cycle_window: float = 150.0

    def role(self, name: str) -> str:
        if re.search(self.vibration, name):
            return "vibration"
        if re.search(self.thermal, name):
            return "thermal"
        return "process"

    def describe(self) -> dict[str, object]:
        return {
            "version": self.version,
            "roles": {
                "vibration": self.vibration,
                "thermal": self.thermal,
                "impulsive": self.impulsive,
                "tonal": self.tonal,
                "speed_lines": self.speed_lines,
            },
            "pump_curve": (
                {
                    "outlet": self.pump_curve.outlet,
                    "inlet": self.pump_curve.inlet,
                    "flow": self.pump_curve.flow,
                    "speed": self.pump_curve.speed,
                    "speed_squared": self.pump_curve.speed_squared,
                }
                if self.pump_curve is not None
                else None
            ),
            "spindle_power": (
                {
                    "load": self.spindle_power.load,
                    "speed": self.spindle_power.speed,
                    "rms": self.spindle_power.rms,
                }
                if self.spindle_power is not None
                else None
            ),
            "derived": {
                "slope": f"least squares over {self.slope_window} frames (thermal)",
                "trend": f"least squares and t statistic over {self.trend_window} frames"
                " (thermal; diagnosis only)",
                "cycle_rise": f"mean over the last {self.cycle_window:g} s minus the mean"
                " over the one before (thermal; diagnosis only)",
            },
        }


FEATURE_SET = FeatureSet()


def tag_role(name: str, fs: FeatureSet = FEATURE_SET) -> str:
    return fs.role(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleRef:
    """Where a value came from: enough for lineage."""

    sample_id: str
    name: str
    source_ts: float
    received_ts: float


@dataclass(slots=True, kw_only=True)
class Frame:
    """One asset's readings at one source time."""

    entity: str
    ts: float  # source time
    values: dict[str, float] = field(default_factory=dict)
    refs: dict[str, SampleRef] = field(default_factory=dict)
    stuck: set[str] = field(default_factory=set)  # tags flagged STUCK in this frame
    out_of_range: set[str] = field(default_factory=set)
    received: float = 0.0  # newest receive time of its samples (for latency)
    seq: int = 0  # newest buffer seq in the frame
    #: The newest co-simulation residual per series when the frame closed. Kept
    #: on the frame, not read at scoring time: warm-up frames are turned into
    #: rows only when the warm-up ends, and each must carry its own residual.
    residuals: dict[str, float] = field(default_factory=dict)


class FrameAssembler:
    """Samples (in buffer order) -> closed frames. Feed with :meth:`add`."""

    def __init__(self, *, resync: float = FEATURE_SET.residual_resync) -> None:
        self._open: dict[str, dict[float, Frame]] = {}
        self._done: dict[str, float] = {}  # source time of the newest closed frame
        self.expected: dict[str, set[str]] = {}  # entity -> tags seen in its frames
        self.side: dict[str, dict[str, tuple[float, SampleRef]]] = {}  # cosim series
        self.held_at: dict[str, float] = {}  # entity -> newest source time the cosim held
        self.resync = resync  # see FeatureSet.residual_resync
        self.late = 0

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
    ) -> list[Frame]:
        """Add one sample; returns the frames it closed, oldest first."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return []
        v = float(value)
        ref = SampleRef(
            sample_id=sample_id, name=name, source_ts=source_ts, received_ts=received_ts
        )
        if "." in name:  # <tag>.residual / <tag>.expected from the co-simulation
            if quality & _HELD:
                self.held_at[entity] = max(self.held_at.get(entity, -math.inf), source_ts)
            elif math.isfinite(v):
                self.side.setdefault(entity, {})[name] = (v, ref)
            return []
        if quality & _UNUSABLE or not math.isfinite(v):
            if quality & _LATE:
                self.late += 1
            return []
        # Adapters deliver in batches that may interleave ticks (tag A of ticks n..n+2,
        # then tag B of the same ticks), so several frames per asset stay open and
        # close oldest first: when complete, or when _HORIZON newer ones are open.
        frames = self._open.setdefault(entity, {})
        done = self._done.get(entity, -math.inf)
        if source_ts <= done + 1e-6:
            self.late += 1
            return []
        key = round(source_ts, 6)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = Frame(entity=entity, ts=source_ts)
        frame.values[name] = v
        frame.refs[name] = ref
        frame.received = max(frame.received, received_ts)
        frame.seq = max(frame.seq, seq)
        if quality & _STUCK:
            frame.stuck.add(name)
        if quality & _OUT_OF_RANGE:
            frame.out_of_range.add(name)
        known = self.expected.get(entity)
        out: list[Frame] = []
        while frames:
            oldest = min(frames)
            complete = known is not None and known <= frames[oldest].values.keys()
            if not complete and (len(frames) <= _HORIZON or max(frames) - oldest < _HORIZON_S):
                break
            out.append(self._close(entity, oldest))
        return out

    def _close(self, entity: str, key: float) -> Frame:
        frame = self._open[entity].pop(key)
        self._done[entity] = frame.ts
        known = self.expected.setdefault(entity, set())
        known.update(frame.values)
        if frame.ts - self.held_at.get(entity, -math.inf) >= self.resync:
            frame.residuals = {
                n: v for n, (v, _) in self.side.get(entity, {}).items() if n.endswith(".residual")
            }
        return frame

    def flush(self, entity: str | None = None) -> list[Frame]:
        """Close open frames (all, or one entity's): the stream paused."""
        names = [entity] if entity is not None else sorted(self._open)
        return [self._close(e, k) for e in names for k in sorted(self._open.get(e, {}))]

    def forget_tag(self, entity: str, name: str) -> None:
        """A tag stopped reporting: frames close without waiting for it."""
        self.expected.get(entity, set()).discard(name)


class TrendTracker:
    """Least-squares slope over a trailing window and its t statistic, O(1) per push.

    Serves both the short slope feature of a thermal tag and its long trend.

    Running sums of y, y^2 and i*y over the window (index 0 = oldest), shifted
    on each push; the slope's standard error is the textbook
    sqrt(SSR / (n - 2) / Sxx) (Draper & Smith, *Applied Regression Analysis*,
    3rd ed., §1.4). The sums are rebuilt from the window every ``window``
    pushes so rounding cannot accumulate.
    """

    __slots__ = ("_pushes", "_s", "_si", "_ss", "_ys", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self._ys: deque[float] = deque()
        self._s = self._ss = self._si = 0.0
        self._pushes = 0

    def push(self, y: float) -> tuple[float, float]:
        """Add a value; (slope per frame, t statistic of the slope)."""
        ys = self._ys
        if len(ys) == self.window:
            old = ys.popleft()
            self._s -= old
            self._ss -= old * old
            # Every remaining index moves down by one: sum(i*y) loses sum(y).
            self._si -= self._s
        self._si += len(ys) * y
        ys.append(y)
        self._s += y
        self._ss += y * y
        self._pushes += 1
        if self._pushes % self.window == 0:
            self._s = sum(ys)
            self._ss = sum(v * v for v in ys)
            self._si = sum(i * v for i, v in enumerate(ys))
        n = len(ys)
        if n < 3:
            return 0.0, 0.0
        xm = (n - 1) / 2.0
        sxx = n * (n * n - 1) / 12.0
        sxy = self._si - xm * self._s
        syy = self._ss - self._s * self._s / n
        slope = sxy / sxx
        ssr = max(syy - slope * sxy, 0.0)
        se = math.sqrt(ssr / (n - 2) / sxx)
        t = slope / se if se > 0.0 else (math.copysign(1e6, slope) if slope else 0.0)
        return slope, t

    @property
    def span(self) -> int:
        """Frames between the oldest and newest value held: slope * span is the rise."""
        return max(len(self._ys) - 1, 0)


class CycleMeanRise:
    """How much a reading's mean over the last ``seconds`` exceeds the mean before it.

    Two adjoining windows in time, each with a running sum: a value moves from
    the recent window to the older one when it is ``seconds`` old and leaves
    when it is twice that, so a push is O(1) amortised. Averaging over a window
    longer than a duty cycle takes the cycle out: what is left is the heating
    the cycle does not explain (a healthy CNC spindle on a 115 s program rose
    at most 1.0 warm-up scales between adjoining 150 s means over four plants
    and five seeds; a cooling failure of severity 0.7, 5-6 scales).
    """

    __slots__ = ("_older", "_older_sum", "_pushes", "_recent", "_recent_sum", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._recent: deque[tuple[float, float]] = deque()
        self._older: deque[tuple[float, float]] = deque()
        self._recent_sum = self._older_sum = 0.0
        self._pushes = 0

    def push(self, ts: float, y: float) -> float:
        """Add a value at ``ts``; the rise of the mean, NaN until both windows are full."""
        recent, older = self._recent, self._older
        if recent and ts < recent[-1][0]:
            return math.nan  # out of order (a replay): not a time series step
        recent.append((ts, y))
        self._recent_sum += y
        while recent and recent[0][0] <= ts - self.seconds:
            moved = recent.popleft()
            self._recent_sum -= moved[1]
            older.append(moved)
            self._older_sum += moved[1]
        while older and older[0][0] <= ts - 2.0 * self.seconds:
            self._older_sum -= older.popleft()[1]
        self._pushes += 1
        if self._pushes % 4096 == 0:  # rebuild the sums so rounding cannot accumulate
            self._recent_sum = math.fsum(v for _, v in recent)
            self._older_sum = math.fsum(v for _, v in older)
        # Full: the older window reaches back (nearly) its whole length. Gaps in
        # the stream make a window hold fewer values, not a shorter span.
        if not older or older[0][0] > ts - 1.9 * self.seconds:
            return math.nan
        return self._recent_sum / len(recent) - self._older_sum / len(older)


def feature_names(tags: Iterable[str], side: Iterable[str], fs: FeatureSet) -> list[str]:
    """The feature vector's layout for an asset reporting ``tags`` (+ cosim residuals)."""
    out: list[str] = []
    for t in sorted(tags):
        out.append(t)
        if fs.role(t) == "thermal":
            out.append(f"{t}:slope")
    out += sorted(s for s in side if s.endswith(".residual"))
    return out


def base_tag(feature: str) -> str:
    """The telemetry name a feature derives from."""
    return feature.split(":", 1)[0].split(".", 1)[0]


def roles_of(features: Sequence[str], fs: FeatureSet) -> Mapping[str, str]:
    out = {}
    for f in features:
        if f.endswith(".residual"):
            out[f] = "residual"
        elif f.endswith(":slope"):
            out[f] = "slope"
        else:
            out[f] = fs.role(f)
    return out


__all__ += ["base_tag", "feature_names", "roles_of"]
