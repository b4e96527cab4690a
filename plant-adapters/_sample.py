"""One telemetry reading as it enters a node, and its data-quality flags.

A :class:`Sample` carries three clocks because they answer different questions:

* ``source_ts``   when the device says the value was measured (OPC UA
  SourceTimestamp, Part 4 §7.7.3; the ``timestamp`` of an MQTT JSON payload);
* ``server_ts``   when an OPC UA server last saw it (ServerTimestamp) — ``None``
  for protocols that have no such clock;
* ``received_ts`` when this node received it (our wall clock, injected).

All three are float seconds since the Unix epoch, UTC. When a payload has no
source timestamp the adapter uses ``received_ts`` and sets
:attr:`Quality.NO_SOURCE_TIME`, so nobody mistakes our clock for the device's.

``sample_id`` is a stable identity used for deduplication in the telemetry
buffer: the same reading delivered twice (MQTT QoS 1 redelivery, an OPC UA
initial value re-sent after a re-subscribe) gets the same id and is stored
once. It is derived from the source address plus a native id when the
protocol has one, else from source timestamp and value (:func:`make_sample_id`).
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, replace

__all__ = [
    "Provenance",
    "Quality",
    "Sample",
    "Value",
    "make_sample_id",
]

#: Telemetry values: numbers, booleans (digital inputs) and short strings (states).
Value = float | int | bool | str


class Quality(enum.Flag):
    """Data-quality flags on a sample. ``GOOD`` (no bit set) means nothing was noticed.

    Flags are additive: a sample can be both ``UNIT_CONVERTED`` and
    ``OUT_OF_RANGE``. The numeric values are stored in SQLite, so existing bits
    must never be renumbered; add new ones at the end.
    """

    GOOD = 0
    #: The source said the value is bad (OPC UA severity Bad, MQTT ``"quality": "bad"``).
    BAD_STATUS = enum.auto()
    #: The source said the value is uncertain (OPC UA severity Uncertain).
    UNCERTAIN = enum.auto()
    #: Outside the model's ``minimum``/``maximum`` after unit normalisation.
    OUT_OF_RANGE = enum.auto()
    #: The value was converted from the source's unit to the model's unit.
    UNIT_CONVERTED = enum.auto()
    #: Same tag and source timestamp as an earlier sample but a different reading.
    DUPLICATE = enum.auto()
    #: Source timestamp older than the newest already seen for the tag.
    OUT_OF_ORDER = enum.auto()
    #: Source timestamp ahead of the receiving clock by more than the tolerance.
    FUTURE_TIMESTAMP = enum.auto()
    #: Part of a run of identical values on a tag that is expected to vary.
    STUCK = enum.auto()
    #: The source unit is unknown or of another dimension; the value is kept as sent.
    UNIT_MISMATCH = enum.auto()
    #: The payload had no source timestamp; ``source_ts`` is the receive time.
    NO_SOURCE_TIME = enum.auto()
    #: A numeric tag received a non-numeric value (or the reverse); kept as sent.
    TYPE_MISMATCH = enum.auto()

    def names(self) -> tuple[str, ...]:
        """The names of the set bits, lowest first (``()`` for GOOD)."""
        return tuple(f.name for f in Quality if f.value and f in self and f.name is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where a sample came from: the adapter instance and the address inside the source."""

    adapter: str  # adapter instance name, e.g. "mqtt-plant-a"
    source: str  # MQTT topic, OPC UA node id ("ns=2;s=Pump7.Vibration"), register, ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One telemetry reading for one twin field."""

    entity: str  # twin path, e.g. "plant-a/line-1/pump-7"
    name: str  # telemetry name in the entity's model, e.g. "vibration_rms"
    value: Value
    unit: str | None
    source_ts: float
    received_ts: float
    server_ts: float | None = None
    quality: Quality = Quality.GOOD
    provenance: Provenance
    sample_id: str

    @property
    def tag(self) -> tuple[str, str]:
        """The (entity, telemetry name) pair that quality state is kept per."""
        return (self.entity, self.name)

    def flagged(
        self,
        flags: Quality,
        *,
        value: Value | None = None,
        unit: str | None = None,
    ) -> Sample:
        """A copy with ``flags`` added and optionally a converted value/unit (id unchanged)."""
        return replace(
            self,
            quality=self.quality | flags,
            value=self.value if value is None else value,
            unit=self.unit if unit is None else unit,
        )


def _value_token(value: Value) -> str:
    # Type-tagged so that 1, 1.0, True and "1" never collide; floats by repr,
    # which round-trips exactly (and spells nan/inf distinctly).
    if isinstance(value, bool):
        return f"b:{int(value)}"
    if isinstance(value, int):
        return f"i:{value}"
    if isinstance(value, float):
        return f"f:{value!r}" if math.isfinite(value) else f"f:{value}"
    return f"s:{value}"


def make_sample_id(
    adapter_kind: str,
    source: str,
    *,
    native_id: str | None = None,
    source_ts: float | None = None,
    value: Value | None = None,
) -> str:
    """A stable 128-bit hex id for a reading.

    With a ``native_id`` (an id the protocol or device assigned) the id is
    ``hash(kind, source, native_id)``; otherwise ``hash(kind, source,
    source_ts, value)``. The adapter *kind* (``"mqtt"``, ``"opcua"``), not the
    instance name, goes in, so two adapter instances reading the same source
    dedupe against each other.
    """
    if native_id is not None:
        key = f"{adapter_kind}\x1f{source}\x1fid\x1f{native_id}"
    else:
        if source_ts is None or value is None:
            raise ValueError("make_sample_id needs native_id, or source_ts and value")
        key = f"{adapter_kind}\x1f{source}\x1fts\x1f{source_ts!r}\x1f{_value_token(value)}"
    return hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()
