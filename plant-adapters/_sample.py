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

Hot path: every reading a node takes in is built, identified, checked and
stored once, so adapters use :func:`new_sample` (the same object, without the
frozen dataclass's per-field ``object.__setattr__``) and :class:`SampleIds`
(the same ids as :func:`make_sample_id`, with the per-source prefix hashed once).
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, fields

__all__ = [
    "Provenance",
    "Quality",
    "Sample",
    "SampleIds",
    "Value",
    "make_sample_id",
    "new_sample",
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
    #: A derived value (co-simulation expected value) computed while one of the
    #: model's inputs was held, missing or flagged: the model did not see it.
    HELD = enum.auto()

    def names(self) -> tuple[str, ...]:
        """The names of the set bits, lowest first (``()`` for GOOD)."""
        # Memoised per value: counting flags calls this per stored sample, and
        # Flag iteration and membership are Python-level enum code.
        value = self._value_
        names = _QUALITY_NAMES.get(value)
        if names is None:
            names = tuple(f.name for f in Quality if f.value and f in self and f.name is not None)
            _QUALITY_NAMES[value] = names
        return names


#: Quality value -> its names(); at most 2**bits entries.
_QUALITY_NAMES: dict[int, tuple[str, ...]] = {}


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
        return new_sample(
            self.entity,
            self.name,
            self.value if value is None else value,
            self.unit if unit is None else unit,
            self.source_ts,
            self.received_ts,
            self.server_ts,
            self.quality | flags,
            self.provenance,
            self.sample_id,
        )


_FIELDS = (
    "entity",
    "name",
    "value",
    "unit",
    "source_ts",
    "received_ts",
    "server_ts",
    "quality",
    "provenance",
    "sample_id",
)
# new_sample must set every slot, or a sample built with it would lack one.
if tuple(f.name for f in fields(Sample)) != _FIELDS:  # pragma: no cover - a guard for editors
    raise RuntimeError("Sample's fields changed: update _FIELDS and new_sample()")
(
    _set_entity,
    _set_name,
    _set_value,
    _set_unit,
    _set_source_ts,
    _set_received_ts,
    _set_server_ts,
    _set_quality,
    _set_provenance,
    _set_sample_id,
) = (getattr(Sample, f).__set__ for f in _FIELDS)
_new = object.__new__


def new_sample(
    entity: str,
    name: str,
    value: Value,
    unit: str | None,
    source_ts: float,
    received_ts: float,
    server_ts: float | None,
    quality: Quality,
    provenance: Provenance,
    sample_id: str,
    /,
) -> Sample:
    """``Sample(...)`` with every field given positionally, in declaration order.

    The result is the same frozen object. A frozen dataclass's ``__init__``
    assigns each field through ``object.__setattr__`` (looked up and called
    per field, ~4x the cost here); this sets the slots through their
    descriptors directly. Sample has no ``__post_init__``, so nothing is skipped.
    """
    s = _new(Sample)
    _set_entity(s, entity)
    _set_name(s, name)
    _set_value(s, value)
    _set_unit(s, unit)
    _set_source_ts(s, source_ts)
    _set_received_ts(s, received_ts)
    _set_server_ts(s, server_ts)
    _set_quality(s, quality)
    _set_provenance(s, provenance)
    _set_sample_id(s, sample_id)
    return s


def _value_token(value: Value) -> str:
    # Type-tagged so that 1, 1.0, True and "1" never collide; floats by repr,
    # which round-trips exactly (and spells nan/inf distinctly).
    if type(value) is float:  # the common case first; subclasses take the chain below
        return f"f:{value!r}" if math.isfinite(value) else f"f:{value}"
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


class SampleIds:
    """:func:`make_sample_id` for one (adapter kind, source), byte for byte, faster.

    Ids are stored and deduplicate redeliveries across restarts, so they must
    never change; only the work does. BLAKE2b is a streaming hash: hashing the
    constant ``kind␟source␟ts␟`` prefix once and copying that state per reading
    gives the digest of the whole key, without formatting, encoding and
    hashing the prefix again for every sample.
    """

    __slots__ = ("_by_native", "_by_reading")

    def __init__(self, adapter_kind: str, source: str) -> None:
        head = f"{adapter_kind}\x1f{source}\x1f"
        self._by_native = hashlib.blake2b(f"{head}id\x1f".encode(), digest_size=16)
        self._by_reading = hashlib.blake2b(f"{head}ts\x1f".encode(), digest_size=16)

    def reading(self, source_ts: float, value: Value) -> str:
        """``make_sample_id(kind, source, source_ts=source_ts, value=value)``."""
        if source_ts is None or value is None:
            raise ValueError("make_sample_id needs native_id, or source_ts and value")
        if type(value) is float and math.isfinite(value):  # _value_token's common case
            tail = f"{source_ts!r}\x1ff:{value!r}"
        else:
            tail = f"{source_ts!r}\x1f{_value_token(value)}"
        h = self._by_reading.copy()
        h.update(tail.encode())
        return h.hexdigest()

    def native(self, native_id: str) -> str:
        """``make_sample_id(kind, source, native_id=native_id)``."""
        h = self._by_native.copy()
        h.update(f"{native_id}".encode())
        return h.hexdigest()
