"""Scheduled faults: what each does to the machine or its readings (pure).

Theory of operation
-------------------
A :class:`Fault` is active on ``[start, start + duration)`` in simulated
seconds since the run started. Its *level* rises linearly from 0 to 1 over
``ramp`` seconds (0: at once) and stays at 1 until the end; at the end the
fault is over (the bearing replaced, the fan repaired, the sensor fixed).

Two families act at different places, as on a real plant:

* **Physical** faults change the machine, so every reading that depends on the
  affected part moves, consistently, through the physics in :mod:`._physics`:
  ``bearing_wear`` (bearing impacts: vibration RMS, kurtosis and the bearing
  band rise; pump bearings also run hotter) and ``cooling_failure``
  (the cooling capacity falls by ``severity``; the temperature drifts up
  towards a steady state that, with the defaults, lies far above the model's
  maximum, so the reading crosses it within the fault).
* **Sensor** faults change one tag's *readings* and leave the machine alone:
  ``sensor_drift`` adds an offset growing linearly to ``offset`` over the ramp
  (default: the whole fault); ``stuck_sensor`` repeats the last value published
  before the fault exactly; ``dropout`` publishes nothing for one tag, or for
  the whole asset when no telemetry is named.

:func:`apply_sensor_faults` is the only place readings are altered; it takes
and returns the stuck values it holds, so it stays a pure function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ._physics import Conditions

__all__ = [
    "FAULT_KINDS",
    "PHYSICAL_FAULTS",
    "SENSOR_FAULTS",
    "THERMAL_TAG",
    "VIBRATION_TAGS",
    "Fault",
    "FaultKind",
    "affected_telemetry",
    "apply_sensor_faults",
    "conditions_at",
]

FaultKind = Literal["bearing_wear", "cooling_failure", "sensor_drift", "stuck_sensor", "dropout"]
PHYSICAL_FAULTS: tuple[str, ...] = ("bearing_wear", "cooling_failure")
SENSOR_FAULTS: tuple[str, ...] = ("sensor_drift", "stuck_sensor", "dropout")
FAULT_KINDS: tuple[str, ...] = PHYSICAL_FAULTS + SENSOR_FAULTS

VIBRATION_TAGS: tuple[str, ...] = (
    "vibrationRms",
    "vibrationKurtosis",
    "vibrationBand1x",
    "vibrationBand2x",
    "vibrationBandBearing",
)
#: The temperature a cooling failure drives, per machine kind.
THERMAL_TAG: Mapping[str, str] = {
    "motor": "windingTemperature",
    "pump": "bearingTemperature",
    "cnc": "spindleTemperature",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One scheduled fault on one asset; times in simulated seconds from the start."""

    id: str
    kind: FaultKind
    start: float
    duration: float
    ramp: float = 0.0
    telemetry: str | None = None  # the tag, for sensor faults (dropout: None = all)
    severity: float = 1.0  # bearing_wear: final wear 0..1; cooling_failure: cooling lost 0..<1
    offset: float = 0.0  # sensor_drift: offset reached at the end of the ramp

    @property
    def end(self) -> float:
        return self.start + self.duration

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def level(self, t: float) -> float:
        """0 before and after the fault; within it, ramps 0 -> 1 over ``ramp`` seconds."""
        if not self.active(t):
            return 0.0
        if self.ramp <= 0.0:
            return 1.0
        return min((t - self.start) / self.ramp, 1.0)


def affected_telemetry(fault: Fault, kind: str, all_tags: Sequence[str]) -> tuple[str, ...]:
    """The tags whose readings a fault changes (or suppresses), for the ground truth."""
    if fault.kind == "bearing_wear":
        tags = VIBRATION_TAGS + (("bearingTemperature",) if kind == "pump" else ())
        return tuple(t for t in all_tags if t in tags)
    if fault.kind == "cooling_failure":
        return (THERMAL_TAG[kind],)
    if fault.telemetry is None:
        return tuple(all_tags)
    return (fault.telemetry,)


def conditions_at(faults: Iterable[Fault], t: float) -> Conditions:
    """The physical fault levels at simulated time ``t``; overlapping faults take the worst."""
    wear = 0.0
    cooling = 0.0
    for f in faults:
        if f.kind == "bearing_wear":
            wear = max(wear, f.severity * f.level(t))
        elif f.kind == "cooling_failure":
            cooling = max(cooling, f.severity * f.level(t))
    return Conditions(bearing_wear=wear, cooling_loss=cooling)


def apply_sensor_faults(
    faults: Iterable[Fault],
    readings: Mapping[str, float],
    *,
    t: float,
    last: Mapping[str, float],
    held: Mapping[str, float],
) -> tuple[dict[str, float], dict[str, float]]:
    """Readings as the sensors report them, and the stuck values now held (by fault id).

    ``last`` is the value of each tag published last (before this reading), so a
    sensor sticks at exactly what it showed when it froze. Order matters and is
    that of the physical chain: drift happens in the transmitter, a stuck value
    is frozen after it, and a dropout loses whatever was there.
    """
    out = dict(readings)
    now_held: dict[str, float] = {}
    active = [f for f in faults if f.active(t)]
    for f in active:
        if f.kind == "sensor_drift" and f.telemetry in out:
            ramp = f.ramp if f.ramp > 0.0 else f.duration
            out[f.telemetry] += f.offset * min((t - f.start) / ramp, 1.0)
    for f in active:
        if f.kind == "stuck_sensor" and f.telemetry in out:
            value = held.get(f.id)
            if value is None:
                value = last.get(f.telemetry, out[f.telemetry])
            now_held[f.id] = value
            out[f.telemetry] = value
    for f in active:
        if f.kind == "dropout":
            if f.telemetry is None:
                out.clear()
            else:
                out.pop(f.telemetry, None)
    return out, now_held
