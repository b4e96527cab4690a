"""Ground truth: which fault was where, when, and what a quality checker should say.

Theory of operation
-------------------
:class:`GroundTruth` holds one record per scheduled fault and watches every
tick the plant publishes. Times are real epoch seconds: a fault planned at
simulated second ``s`` starts at wall time ``start + s / time_scale``, and the
runner publishes tick ``n`` at ``start + n * sample_interval``, so a record's
``start``/``end`` bound exactly the readings the fault touched.

A record's ``status`` moves ``planned`` -> ``active`` -> ``ended`` as ticks pass
the fault's start and end. The final records (:meth:`records` with
``final=True``, written when the run stops) drop faults that never started and
mark a fault still running ``truncated``, with ``end`` clipped to the stop.

``expected_quality`` is what a data-quality checker on the receiving node
should raise for the fault (twinmesh.node.telemetry quality flags/events):

* ``stuck_sensor``: ``STUCK``, on both protocols. Over OPC UA the repeats
  arrive because the twinmesh adapter subscribes with DataChangeTrigger
  STATUS_VALUE_TIMESTAMP (Part 4 §7.22.2): each new source timestamp is a
  reading. (A client on the default STATUS_VALUE trigger would see silence,
  i.e. STALE, instead.) A checker needs its own minimum run (twinmesh: 10
  readings over 60 s) to call a run stuck; ``observed.span`` says how long
  the run was.
* ``dropout``: ``STALE`` (nothing arrives).
* any fault whose affected readings left the model's ExpectedRange:
  ``OUT_OF_RANGE`` — observed, not predicted, so the truth holds even if a
  cooling failure was configured too mild to cross the maximum. While a
  ``cooling_failure`` is planned or active it is listed as intended.
* otherwise ``[]``: a change only a scoring model can catch (bearing wear,
  a drift that stays in range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._config import AssetConfig
from ._faults import Fault, affected_telemetry
from ._models import kind_telemetry
from ._plant import Tick

__all__ = ["GroundTruth"]

_OPCUA_STUCK_NOTE = (
    "over OPC UA the repeats arrive only to a subscription with DataChangeTrigger "
    "STATUS_VALUE_TIMESTAMP (Part 4 §7.22.2, the twinmesh adapter's default); the default "
    "STATUS_VALUE trigger reports a frozen value as silence"
)


@dataclass(slots=True)
class _Observed:
    readings: int = 0  # ticks of the asset inside the fault
    published: int = 0  # affected readings published
    suppressed: int = 0  # affected readings withheld (dropout)
    out_of_range: int = 0  # published affected readings outside the ExpectedRange
    first_out_of_range: float | None = None  # wall time of the first
    first: float | None = None  # wall time of the first tick inside the fault
    last: float | None = None  # ... and of the last


@dataclass(slots=True)
class _Entry:
    asset: AssetConfig
    fault: Fault
    telemetry: tuple[str, ...]
    observed: _Observed
    status: str = "planned"


class GroundTruth:
    """Fault records for ``ground-truth.jsonl``; feed it every published tick."""

    def __init__(self, assets: Sequence[AssetConfig], *, start: float, time_scale: float) -> None:
        self.start = start
        self.time_scale = time_scale
        self._entries: list[_Entry] = []
        self._by_asset: dict[str, list[_Entry]] = {}
        for a in assets:
            for f in a.faults:
                entry = _Entry(
                    asset=a,
                    fault=f,
                    telemetry=affected_telemetry(f, a.kind, a.telemetry),
                    observed=_Observed(),
                )
                self._entries.append(entry)
                self._by_asset.setdefault(a.name, []).append(entry)

    def wall(self, t: float) -> float:
        """Epoch seconds of simulated time ``t``."""
        return self.start + t / self.time_scale

    def observe(self, asset: AssetConfig, tick: Tick, wall: float) -> bool:
        """Account one published tick; True when a fault of the asset started or ended."""
        changed = False
        ranges = kind_telemetry(asset.kind)
        for e in self._by_asset.get(asset.name, ()):
            f = e.fault
            status = "planned" if tick.t < f.start else "active" if tick.t < f.end else "ended"
            if status != e.status:
                e.status, changed = status, True
            if status != "active":
                continue
            o = e.observed
            o.readings += 1
            o.first = wall if o.first is None else o.first
            o.last = wall
            for tag in e.telemetry:
                value = tick.values.get(tag)
                if value is None:
                    o.suppressed += 1
                    continue
                o.published += 1
                if not ranges[tag].contains(value):
                    o.out_of_range += 1
                    if o.first_out_of_range is None:
                        o.first_out_of_range = wall
        return changed

    def records(self, *, final: bool = False, stopped: float | None = None) -> list[dict[str, Any]]:
        """One JSON-ready record per fault; ``final`` drops unstarted ones, clips running ones."""
        out = []
        for e in self._entries:
            status = e.status
            end = self.wall(e.fault.end)
            if final:
                if status == "planned":
                    continue
                if status == "active":
                    status = "truncated"
                    end = min(end, stopped if stopped is not None else end)
            out.append(self._record(e, status, end))
        return out

    def _record(self, e: _Entry, status: str, end: float) -> dict[str, Any]:
        f, a, o = e.fault, e.asset, e.observed
        expected: list[str] = []
        if f.kind == "stuck_sensor":
            expected.append("STUCK")
        elif f.kind == "dropout":
            expected.append("STALE")
        intended = f.kind == "cooling_failure" and status in ("planned", "active")
        if o.out_of_range or intended:
            expected.append("OUT_OF_RANGE")
        ranges = kind_telemetry(a.kind)
        record: dict[str, Any] = {
            "id": f.id,
            "entity": a.entity,
            "model": a.model,
            "asset_kind": a.kind,
            "protocol": a.protocol,
            "kind": f.kind,
            "telemetry": list(e.telemetry),
            "start": round(self.wall(f.start), 6),
            "end": round(end, 6),
            "expected_quality": expected,
            "status": status,
        }
        if f.ramp > 0.0 or f.kind == "sensor_drift":
            ramp = f.ramp if f.ramp > 0.0 else f.duration
            record["ramp_end"] = round(self.wall(f.start + ramp), 6)
        if f.kind in ("bearing_wear", "cooling_failure"):
            record["severity"] = f.severity
        if f.kind == "sensor_drift":
            record["offset"] = f.offset
            record["unit"] = ranges[e.telemetry[0]].unit
        if f.kind == "stuck_sensor" and a.protocol == "opcua":
            record["note"] = _OPCUA_STUCK_NOTE
        if f.kind in ("cooling_failure", "sensor_drift"):
            tag = e.telemetry[0]
            record["range"] = [ranges[tag].minimum, ranges[tag].maximum]
        record["observed"] = {
            "readings": o.readings,
            "published": o.published,
            "suppressed": o.suppressed,
            "out_of_range": o.out_of_range,
            "first_out_of_range": o.first_out_of_range,
            "first": o.first,
            "last": o.last,
            "span": round(o.last - o.first, 6)
            if o.first is not None and o.last is not None
            else 0.0,
        }
        return record
