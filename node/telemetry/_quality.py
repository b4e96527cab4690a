"""Data-quality checks on incoming samples (pure: no IO, no clock, no globals).

Theory of operation
-------------------
:class:`QualityChecker` sees every sample once, in arrival order, before the
sample is stored. ``check(sample, now)`` returns the sample with flags added
(and its value converted to the model's unit) plus any events; ``sweep(now)``
returns events that depend on *absence* of samples. ``now`` is the caller's
clock, so the same code runs on a virtual clock in the simulator and tests.

Nothing is dropped: a questionable reading is stored with a flag that says
what is wrong; conditions that are not about one sample become
:class:`QualityEvent` s. Per tag (entity, telemetry name) it keeps:

* the newest source timestamp seen -> ``OUT_OF_ORDER`` for older ones,
  ``DUPLICATE`` for a *different* reading at the same instant. An exact
  redelivery (same ``sample_id``) is neither: the buffer stores it once, and
  it must not count twice towards a stuck run either;
* ``FUTURE_TIMESTAMP`` when the source clock is ahead of ``now`` by more than
  a tolerance; such a timestamp does not advance the newest one, otherwise
  one bad device clock would make every later good sample "out of order";
* the current run of identical values -> ``STUCK`` once a tag whose spec says
  it should vary repeats one value ``stuck_count`` times over at least
  ``stuck_window`` seconds (a frozen transmitter, a PLC holding its last
  value after losing a card);
* the last arrival -> a ``STALE`` event after ``stale_factor`` x the expected
  interval without a sample, and ``STALE_CLEARED`` when samples resume; and
  a hole that long in *source* time between two in-order readings that
  arrived together (a dropout while this node was down) -> the same pair of
  events, dated in source time.

Units are normalised to the model's unit through a conversion table (affine:
``si = value * scale + offset``); a conversion sets ``UNIT_CONVERTED``, an
unknown or incompatible unit sets ``UNIT_MISMATCH`` and keeps the value as
sent. Range checks run on the converted value against the model's
``minimum``/``maximum`` (DTDL v3 semantic bounds are passed in as a
:class:`TagSpec`, so this module does not depend on the DTDL parser).
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from twinmesh.adapters import Quality, Sample, Value

__all__ = [
    "UNITS",
    "CheckResult",
    "EventKind",
    "QualityChecker",
    "QualityConfig",
    "QualityEvent",
    "TagSpec",
    "UnitError",
    "convert",
    "unit_dimension",
]

_F_SCALE = 5.0 / 9.0

# unit -> (dimension, scale, offset) with  si_value = value * scale + offset.
# Spellings are matched exactly: "mW" and "MW" differ by 10^9, so no case folding.
UNITS: Mapping[str, tuple[str, float, float]] = {
    # temperature, SI kelvin
    "K": ("temperature", 1.0, 0.0),
    "°C": ("temperature", 1.0, 273.15),
    "degC": ("temperature", 1.0, 273.15),
    "C": ("temperature", 1.0, 273.15),
    "Cel": ("temperature", 1.0, 273.15),  # UCUM
    "°F": ("temperature", _F_SCALE, 273.15 - 32.0 * _F_SCALE),
    "degF": ("temperature", _F_SCALE, 273.15 - 32.0 * _F_SCALE),
    "F": ("temperature", _F_SCALE, 273.15 - 32.0 * _F_SCALE),
    "[degF]": ("temperature", _F_SCALE, 273.15 - 32.0 * _F_SCALE),  # UCUM
    # pressure, SI pascal
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 1e2, 0.0),
    "kPa": ("pressure", 1e3, 0.0),
    "MPa": ("pressure", 1e6, 0.0),
    "mbar": ("pressure", 1e2, 0.0),
    "bar": ("pressure", 1e5, 0.0),
    "psi": ("pressure", 6894.757293168361, 0.0),  # lbf/in², NIST SP 811
    "[psi]": ("pressure", 6894.757293168361, 0.0),
    "atm": ("pressure", 101325.0, 0.0),
    # frequency and rotational speed, SI hertz (1 rpm = 1/60 Hz)
    "Hz": ("frequency", 1.0, 0.0),
    "kHz": ("frequency", 1e3, 0.0),
    "rpm": ("frequency", 1.0 / 60.0, 0.0),
    "RPM": ("frequency", 1.0 / 60.0, 0.0),
    "r/min": ("frequency", 1.0 / 60.0, 0.0),
    "1/min": ("frequency", 1.0 / 60.0, 0.0),
    # velocity (vibration velocity is usually mm/s or in/s), SI m/s
    "m/s": ("velocity", 1.0, 0.0),
    "mm/s": ("velocity", 1e-3, 0.0),
    "in/s": ("velocity", 0.0254, 0.0),
    "ips": ("velocity", 0.0254, 0.0),
    "ft/s": ("velocity", 0.3048, 0.0),
    "km/h": ("velocity", 1.0 / 3.6, 0.0),
    # length / displacement, SI metre
    "m": ("length", 1.0, 0.0),
    "cm": ("length", 1e-2, 0.0),
    "mm": ("length", 1e-3, 0.0),
    "µm": ("length", 1e-6, 0.0),
    "um": ("length", 1e-6, 0.0),
    "in": ("length", 0.0254, 0.0),
    "ft": ("length", 0.3048, 0.0),
    # acceleration; plant vibration "g" is standard gravity, never gram
    "m/s2": ("acceleration", 1.0, 0.0),
    "m/s^2": ("acceleration", 1.0, 0.0),
    "m/s²": ("acceleration", 1.0, 0.0),
    "g": ("acceleration", 9.80665, 0.0),
    "gn": ("acceleration", 9.80665, 0.0),
    # volumetric flow, SI m³/s
    "m3/s": ("flow", 1.0, 0.0),
    "m3/h": ("flow", 1.0 / 3600.0, 0.0),
    "m³/h": ("flow", 1.0 / 3600.0, 0.0),
    "L/s": ("flow", 1e-3, 0.0),
    "L/min": ("flow", 1e-3 / 60.0, 0.0),
    "l/min": ("flow", 1e-3 / 60.0, 0.0),
    "gpm": ("flow", 3.785411784e-3 / 60.0, 0.0),  # US gallon
    # power, SI watt
    "W": ("power", 1.0, 0.0),
    "kW": ("power", 1e3, 0.0),
    "MW": ("power", 1e6, 0.0),
    "hp": ("power", 745.6998715822702, 0.0),  # mechanical horsepower
    # energy, SI joule
    "J": ("energy", 1.0, 0.0),
    "kJ": ("energy", 1e3, 0.0),
    "Wh": ("energy", 3.6e3, 0.0),
    "kWh": ("energy", 3.6e6, 0.0),
    "MWh": ("energy", 3.6e9, 0.0),
    # electrical
    "A": ("current", 1.0, 0.0),
    "mA": ("current", 1e-3, 0.0),
    "V": ("voltage", 1.0, 0.0),
    "mV": ("voltage", 1e-3, 0.0),
    "kV": ("voltage", 1e3, 0.0),
    # torque, mass, time
    "N·m": ("torque", 1.0, 0.0),
    "N.m": ("torque", 1.0, 0.0),
    "Nm": ("torque", 1.0, 0.0),
    "kg": ("mass", 1.0, 0.0),
    "t": ("mass", 1e3, 0.0),
    "s": ("time", 1.0, 0.0),
    "ms": ("time", 1e-3, 0.0),
    "min": ("time", 60.0, 0.0),
    "h": ("time", 3600.0, 0.0),
    # dimensionless ratios
    "1": ("ratio", 1.0, 0.0),
    "%": ("ratio", 1e-2, 0.0),
    "ppm": ("ratio", 1e-6, 0.0),
}


class UnitError(ValueError):
    """A unit is unknown, or two units measure different things."""


def unit_dimension(unit: str) -> str | None:
    """The dimension of ``unit`` ("pressure", ...), or ``None`` if unknown."""
    entry = UNITS.get(unit.strip())
    return entry[0] if entry else None


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``. Raises :class:`UnitError`."""
    src = UNITS.get(from_unit.strip())
    dst = UNITS.get(to_unit.strip())
    if src is None:
        raise UnitError(f"unknown unit {from_unit!r}")
    if dst is None:
        raise UnitError(f"unknown unit {to_unit!r}")
    if src[0] != dst[0]:
        raise UnitError(f"{from_unit!r} is {src[0]}, {to_unit!r} is {dst[0]}")
    if src[1:] == dst[1:]:
        return value
    return (value * src[1] + src[2] - dst[2]) / dst[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class TagSpec:
    """What the model says about one telemetry field.

    ``unit``: the model's unit; samples are converted to it. ``minimum`` /
    ``maximum``: the physically plausible range in that unit.
    ``expected_interval``: seconds between samples in normal operation (enables
    stale detection). ``varies``: the signal should never hold a value for long
    (enables stuck detection; leave False for setpoints and states).
    """

    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    expected_interval: float | None = None
    varies: bool = False

    @property
    def numeric(self) -> bool:
        return self.unit is not None or self.minimum is not None or self.maximum is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityConfig:
    future_tolerance: float = 5.0  # seconds a source clock may run ahead of ours
    stale_factor: float = 3.0  # STALE after this many expected intervals of silence
    stuck_count: int = 10  # identical values in a row ...
    stuck_window: float = 60.0  # ... spanning at least this many seconds of source time
    recent_ids: int = 64  # per tag, to recognise exact redeliveries


class EventKind(enum.Enum):
    STALE = "stale"
    STALE_CLEARED = "stale-cleared"
    STUCK = "stuck"
    STUCK_CLEARED = "stuck-cleared"
    #: A modelled tag no adapter mapping binds: not expected, so never STALE (_bound.py).
    UNMAPPED = "unmapped"


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityEvent:
    """A condition about a tag rather than one sample."""

    kind: EventKind
    entity: str
    name: str
    at: float  # the ``now`` (or source time, for stuck runs) the event was raised at
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    sample: Sample
    events: tuple[QualityEvent, ...] = ()
    redelivery: bool = False  # same sample_id as a recent sample of the tag


@dataclass(slots=True)
class _TagState:
    newest_ts: float | None = None
    ids_at_newest: set[str] = field(default_factory=set)
    recent_ids: deque[str] = field(default_factory=deque)
    recent_set: set[str] = field(default_factory=set)
    run_value: Value | None = None
    run_count: int = 0
    run_start_ts: float = 0.0
    stuck: bool = False
    last_seen: float | None = None  # ``now`` of the last arrival
    stale: bool = False


class QualityChecker:
    """Flags samples and raises events; holds per-tag state in memory."""

    def __init__(
        self,
        specs: Mapping[tuple[str, str], TagSpec] | None = None,
        config: QualityConfig | None = None,
    ) -> None:
        self._specs: dict[tuple[str, str], TagSpec] = dict(specs or {})
        self._config = config or QualityConfig()
        self._tags: dict[tuple[str, str], _TagState] = {}
        self._epoch: float | None = None  # first ``now``: silence is measured from here
        self.flag_counts: Counter[str] = Counter()
        self.event_counts: Counter[str] = Counter()
        self.redeliveries = 0

    def set_spec(self, entity: str, name: str, spec: TagSpec) -> None:
        """Install or replace a tag's spec (models can change while running)."""
        self._specs[(entity, name)] = spec

    def prime(self, samples: Iterable[Sample]) -> None:
        """Seed per-tag state from stored samples (e.g. the newest per tag after a restart).

        Without this a restarted node would accept an older timestamp as in
        order and restart stuck runs from zero.
        """
        for s in samples:
            st = self._tags.setdefault(s.tag, _TagState())
            if st.newest_ts is None or s.source_ts > st.newest_ts:
                st.newest_ts = s.source_ts
                st.ids_at_newest = {s.sample_id}
                st.run_value, st.run_count, st.run_start_ts = s.value, 1, s.source_ts
            self._remember(st, s.sample_id)

    # -- per sample ----------------------------------------------------------------

    def check(self, sample: Sample, now: float) -> CheckResult:
        events: list[QualityEvent] = []
        out, redelivery = self._check(sample, now, events)
        if redelivery:
            return CheckResult(sample=out, redelivery=True)
        return CheckResult(sample=out, events=tuple(events))

    def _check(self, sample: Sample, now: float, events: list[QualityEvent]) -> tuple[Sample, bool]:
        """:meth:`check` without the result object: appends the events to ``events``
        and returns the sample as stored and whether it was a redelivery.

        This runs once per sample a node takes in, so the common case (in order,
        unit and range fine, nothing flagged) does no enum arithmetic and
        allocates nothing but the id bookkeeping.
        """
        if self._epoch is None:
            self._epoch = now
        cfg = self._config
        sample_id = sample.sample_id
        tag = (sample.entity, sample.name)
        st = self._tags.get(tag)
        if st is None:
            st = self._tags[tag] = _TagState()
        spec = self._specs.get(tag)
        value, unit, flags = _stateless(sample, spec)
        if sample_id in st.recent_set:
            # An exact redelivery: the buffer keeps the first copy. It gets the
            # stateless checks (in case the first copy never committed) but must
            # not move the tag's order or stuck state a second time.
            self.redeliveries += 1
            out = sample.flagged(flags, value=value, unit=unit) if flags._value_ else sample
            return out, True

        ts = sample.source_ts
        in_order = False
        if ts > now + cfg.future_tolerance:
            flags |= Quality.FUTURE_TIMESTAMP
        elif st.newest_ts is not None and ts < st.newest_ts:
            flags |= Quality.OUT_OF_ORDER
        elif st.newest_ts is not None and ts == st.newest_ts:
            flags |= Quality.DUPLICATE  # a different reading (id) for the same instant
            st.ids_at_newest.add(sample_id)
        else:
            previous = st.newest_ts
            st.newest_ts = ts
            st.ids_at_newest = {sample_id}
            in_order = True
            if (
                previous is not None
                and spec is not None
                and spec.expected_interval
                and not st.stale
                # _gap_events' own test, here to skip the call when there is no gap
                # (as "not <=", like there, so a NaN gap behaves the same).
                and not ts - previous <= cfg.stale_factor * spec.expected_interval
            ):
                events += self._gap_events(sample, previous, spec.expected_interval)

        # Stuck runs are judged on in-order readings only: a late or duplicate
        # sample says nothing about whether the sensor is still moving.
        if in_order:
            if st.run_count and value == st.run_value and type(value) is type(st.run_value):
                st.run_count += 1
            else:
                if st.stuck:
                    events.append(
                        self._event(
                            EventKind.STUCK_CLEARED,
                            sample,
                            ts,
                            f"value changed after {st.run_count} identical readings",
                        )
                    )
                st.run_value, st.run_count, st.run_start_ts, st.stuck = value, 1, ts, False
            if (
                spec is not None
                and spec.varies
                and st.run_count >= cfg.stuck_count
                and ts - st.run_start_ts >= cfg.stuck_window
            ):
                flags |= Quality.STUCK
                if not st.stuck:
                    st.stuck = True
                    events.append(
                        self._event(
                            EventKind.STUCK,
                            sample,
                            ts,
                            f"{st.run_count} identical readings ({value!r}) over "
                            f"{ts - st.run_start_ts:.1f} s",
                        )
                    )
        elif st.stuck and value == st.run_value:
            flags |= Quality.STUCK

        if st.stale:
            gap = now - (st.last_seen if st.last_seen is not None else self._epoch)
            events.append(
                self._event(
                    EventKind.STALE_CLEARED, sample, now, f"samples resumed after {gap:.1f} s"
                )
            )
            st.stale = False
        st.last_seen = now
        # _remember, inlined: the id is known not to be in recent_set (checked above).
        st.recent_ids.append(sample_id)
        st.recent_set.add(sample_id)
        if len(st.recent_ids) > cfg.recent_ids:
            st.recent_set.discard(st.recent_ids.popleft())

        if flags._value_:  # any bit set; Flag.__bool__ is a Python-level call
            for name in flags.names():
                self.flag_counts[name] += 1
            return sample.flagged(flags, value=value, unit=unit), False
        if value is not sample.value or unit != sample.unit:
            return sample.flagged(flags, value=value, unit=unit), False
        return sample, False

    def check_batch(
        self, samples: Sequence[Sample], now: float
    ) -> tuple[list[Sample], list[QualityEvent]]:
        """Check a batch in order; redeliveries pass through unflagged (the buffer drops them)."""
        out: list[Sample] = []
        events: list[QualityEvent] = []
        check = self._check
        for s in samples:
            out.append(check(s, now, events)[0])
        return out, events

    # -- absence ---------------------------------------------------------------------

    def sweep(self, now: float) -> list[QualityEvent]:
        """``STALE`` events for tags silent for ``stale_factor`` x their expected interval.

        Tags with a spec that were never seen count their silence from the first
        ``now`` this checker was given. Each silence raises one event.
        """
        if self._epoch is None:
            self._epoch = now
        events: list[QualityEvent] = []
        for tag, spec in self._specs.items():
            if not spec.expected_interval:
                continue
            st = self._tags.setdefault(tag, _TagState())
            if st.stale:
                continue
            since = st.last_seen if st.last_seen is not None else self._epoch
            limit = self._config.stale_factor * spec.expected_interval
            if now - since > limit:
                st.stale = True
                detail = (
                    f"no sample for {now - since:.1f} s (expected every "
                    f"{spec.expected_interval:g} s, limit {limit:g} s)"
                )
                ev = QualityEvent(
                    kind=EventKind.STALE, entity=tag[0], name=tag[1], at=now, detail=detail
                )
                self.event_counts[ev.kind.value] += 1
                events.append(ev)
        return events

    # -- internals -------------------------------------------------------------------

    def _gap_events(self, sample: Sample, previous: float, interval: float) -> list[QualityEvent]:
        """STALE + STALE_CLEARED for a hole in *source* time that nobody saw live.

        The sweep judges silence by arrival, so it cannot see a dropout that
        happened while this node was down (or while a backlog was queued at the
        broker): the readings on either side arrive back to back. The hole is
        still in the source timestamps, and the event is dated where the tag
        went stale in source time.
        """
        limit = self._config.stale_factor * interval
        gap = sample.source_ts - previous
        if gap <= limit:
            return []
        return [
            self._event(
                EventKind.STALE,
                sample,
                previous + limit,
                f"no reading for {gap:.1f} s of source time (expected every {interval:g} s,"
                f" limit {limit:g} s); seen after the fact",
            ),
            self._event(
                EventKind.STALE_CLEARED,
                sample,
                sample.source_ts,
                f"readings resumed after a {gap:.1f} s hole in source time",
            ),
        ]

    def _event(self, kind: EventKind, sample: Sample, at: float, detail: str) -> QualityEvent:
        self.event_counts[kind.value] += 1
        return QualityEvent(kind=kind, entity=sample.entity, name=sample.name, at=at, detail=detail)

    def _remember(self, st: _TagState, sample_id: str) -> None:
        if sample_id in st.recent_set:
            return
        st.recent_ids.append(sample_id)
        st.recent_set.add(sample_id)
        if len(st.recent_ids) > self._config.recent_ids:
            st.recent_set.discard(st.recent_ids.popleft())


def _stateless(sample: Sample, spec: TagSpec | None) -> tuple[Value, str | None, Quality]:
    """Unit normalisation and range check: what depends on the sample and spec alone."""
    if spec is None:
        return sample.value, sample.unit, Quality.GOOD
    value = sample.value
    if (type(value) is float or type(value) is int) and spec.unit is not None:
        # The common case by the shortest road: a number (bool excluded by the
        # exact type test) already in the model's unit, finite and in range. Gives
        # exactly what _normalise and the range check below give then; anything
        # else (a bound of NaN included) takes the long road.
        unit = sample.unit
        if unit is None or unit.strip() == spec.unit:
            lo, hi = spec.minimum, spec.maximum
            if math.isfinite(value) and (lo is None or value >= lo) and (hi is None or value <= hi):
                return value, spec.unit, Quality.GOOD
    value, unit, flags = _normalise(sample.value, sample.unit, spec)
    if isinstance(value, int | float) and not isinstance(value, bool):
        too_low = spec.minimum is not None and value < spec.minimum
        too_high = spec.maximum is not None and value > spec.maximum
        # NaN is how a Bad reading without a value is stored (the source already
        # said it is bad): calling it out of range would report one fault twice.
        no_value = math.isnan(value) and Quality.BAD_STATUS in sample.quality
        if too_low or too_high or (not math.isfinite(value) and not no_value):
            flags |= Quality.OUT_OF_RANGE
    return value, unit, flags


def _normalise(value: Value, unit: str | None, spec: TagSpec) -> tuple[Value, str | None, Quality]:
    """Convert to the model's unit; flag what could not be."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if spec.numeric and not is_number:
        return value, unit, Quality.TYPE_MISMATCH
    if spec.unit is None or not is_number:
        return value, unit, Quality.GOOD
    if unit is None or unit.strip() == spec.unit:
        # A payload without a unit is taken to be in the model's unit.
        return value, spec.unit, Quality.GOOD
    src, dst = UNITS.get(unit.strip()), UNITS.get(spec.unit)
    if src is not None and src == dst:
        return value, spec.unit, Quality.GOOD  # another spelling of the same unit
    try:
        converted = convert(float(value), unit, spec.unit)
    except UnitError:
        return value, unit, Quality.UNIT_MISMATCH
    return converted, spec.unit, Quality.UNIT_CONVERTED
