"""The wire and disk format: msgpack with a version tag, canonical on output,
checked on input.

Output is canonical: every map is written as a list sorted by key, contexts as
sorted flat lists, values with sorted keys. Equal states therefore encode to
identical bytes and ``state_digest`` (SHA-256 of the encoding) tells replicas
whether they hold the same state.

A batch of deltas interns its strings (replica, entity, model, field and
author names) in one table, so each delta spends a byte or two on them; this
is what keeps a field delta, dot included, well under 64 bytes.

Input is untrusted. ``decode_*`` checks every type, size and nesting level and
builds fresh objects; anything wrong raises ``RemoteProtocolError`` with a
reason, and nothing half-built escapes.

Versions: the state format is 1 (``FORMAT_VERSION``; unchanged, so digests of
equal states agree across code versions). Delta batches are written in format
2 (``DELTAS_VERSION``, ``_batchwire``: kind-first rows, decoded by msgspec into
typed structs with every type, range and length checked in C) and read in 1
or 2: format-1 bodies stay in stores and in relayed signed batches, whose
bytes cannot be rewritten. docs/wire-format.md has both layouts and what an
upgrade needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from ._batchwire import BATCH_FORMAT, decode_batch_v2, encode_batch_v2
from ._clocks import CausalContext, Dot, HybridTime
from ._entity import FIELD_TYPES, Entity, EntityHeader, FieldState
from ._errors import LocalProtocolError, RemoteProtocolError
from ._mvregister import MVRegister, Sibling
from ._orset import ORSet
from ._scalars import GrowOnlyLog, LWWRegister, PNCounter, SingleWriterRegister
from ._schema import MAX_VALUE_BYTES, EntitySchema, FieldKind, check_plain_value
from ._state import Delta, ReplicaState
from ._text import TextCrdt
from ._values import canonical, value_bytes

__all__ = [
    "DELTAS_VERSION",
    "FORMAT_VERSION",
    "DecodeLimits",
    "decode_deltas",
    "decode_state",
    "encode_deltas",
    "encode_field",
    "encode_state",
    "state_digest",
]

#: The state format (snapshots, ``state_digest``): unchanged, so replicas of
#: both code versions still agree on digests of equal states.
FORMAT_VERSION = 1
#: Delta batches are written in format 2 (``_batchwire``) and read in 1 or 2.
DELTAS_VERSION = BATCH_FORMAT
_STATE_TAG = "twinmesh/state"
_DELTAS_TAG = "twinmesh/deltas"
#: How every format-2 batch this code writes begins (fixarray 4, the tag, 2).
_V2_PREFIX = b"\x94" + msgpack.packb(_DELTAS_TAG) + bytes([DELTAS_VERSION])

_KIND_CODES: dict[FieldKind, int] = {
    FieldKind.SHARED: 0,
    FieldKind.REPORTED: 1,
    FieldKind.LABEL: 2,
    FieldKind.SET: 3,
    FieldKind.COUNTER: 4,
    FieldKind.TEXT: 5,
    FieldKind.LOG: 6,
}
_KINDS_BY_CODE = {code: kind for kind, code in _KIND_CODES.items()}
_KIND_OF_TYPE = {cls: kind for kind, cls in FIELD_TYPES.items()}
_U63 = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeLimits:
    """Bounds on untrusted input; a message beyond any of them is refused."""

    max_bytes: int = 64 * 1024 * 1024
    max_items: int = 1_000_000  # any one array or map
    max_string: int = MAX_VALUE_BYTES  # the write path's limit (crdt/_schema.py)
    max_value_bytes: int = MAX_VALUE_BYTES


DEFAULT_LIMITS = DecodeLimits()


# ---------------------------------------------------------------- encoding


Intern = Callable[[str], Any]


def _identity(s: str) -> str:
    return s


def _ctx_out(ctx: CausalContext, s: Intern) -> list[Any]:
    vv: list[Any] = []
    for r, n in ctx.vv_items():
        vv += [s(r), n]
    cloud: list[Any] = []
    for d in ctx.cloud_sorted():
        cloud += [s(d.replica), d.counter]
    return [vv, cloud]


def _time_out(t: HybridTime | None) -> list[int] | None:
    return None if t is None else [t.wall_ms, t.logical]


def encode_field(state: FieldState, s: Intern = _identity) -> Any:
    """The msgpack-ready, canonical form of one field's state."""
    if isinstance(state, MVRegister):
        sibs = [
            [s(x.dot.replica), x.dot.counter, x.value, s(x.author), x.time.wall_ms, x.time.logical]
            for x in state.sorted_siblings()
        ]
        return [_ctx_out(state.ctx, s), sibs]
    if isinstance(state, SingleWriterRegister):
        return [state.value, state.seq, s(state.writer), _time_out(state.time)]
    if isinstance(state, LWWRegister):
        if state.time is None:
            return []
        return [state.value, state.time.wall_ms, state.time.logical, s(state.replica)]
    if isinstance(state, ORSet):
        entries = []
        for element in sorted(state.entries, key=lambda e: value_bytes(e)):
            dots: list[Any] = []
            for d in sorted(state.entries[element]):
                dots += [s(d.replica), d.counter]
            entries.append([element, dots])
        return [_ctx_out(state.ctx, s), entries]
    if isinstance(state, PNCounter):
        pos: list[Any] = []
        for r, n in sorted(state.pos.items()):
            pos += [s(r), n]
        neg: list[Any] = []
        for r, n in sorted(state.neg.items()):
            neg += [s(r), n]
        return [pos, neg]
    if isinstance(state, TextCrdt):
        return state.update
    return [[k, v] for k, v in state.items()]


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def encode_state(state: ReplicaState) -> bytes:
    """The whole replicated state, canonically (the replica's own id is not part of it)."""
    entities = []
    for entity in state:
        fields = [
            [name, _KIND_CODES[_KIND_OF_TYPE[type(f)]], encode_field(f)]
            for name, f in sorted(entity.fields.items())
        ]
        h = entity.header
        entities.append([h.id, h.model, h.home, fields])
    return _pack([_STATE_TAG, FORMAT_VERSION, entities])


def state_digest(state: ReplicaState) -> str:
    """Hex SHA-256 of the canonical encoding: equal digests mean equal state."""
    return hashlib.sha256(encode_state(state)).hexdigest()


def encode_deltas(deltas: Sequence[Delta]) -> bytes:
    """A batch of deltas, with one table for all repeated strings (format 2)."""
    return encode_batch_v2(deltas)


def encode_deltas_v1(deltas: Sequence[Delta]) -> bytes:
    """A batch in format 1, as nodes before format 2 wrote it (stores hold such
    bodies; kept so that tests can make them)."""
    table: dict[str, int] = {}

    def s(text: str) -> int:
        index = table.get(text)
        if index is None:
            index = table[text] = len(table)
        return index

    rows = []
    for d in deltas:
        if d.field is None:
            rows.append([s(d.origin), s(d.author), s(d.entity), s(d.model), s(d.home)])
        else:
            assert d.state is not None
            code = _KIND_CODES[_KIND_OF_TYPE[type(d.state)]]
            rows.append(
                [
                    s(d.origin),
                    s(d.author),
                    s(d.entity),
                    s(d.model),
                    s(d.home),
                    s(d.field),
                    code,
                    encode_field(d.state, s),
                ]
            )
    return _pack([_DELTAS_TAG, FORMAT_VERSION, list(table), rows])


# ---------------------------------------------------------------- decoding


def _fail(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason)


def _unpack(data: Any, limits: DecodeLimits) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise _fail(f"message of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limits.max_string,
            max_bin_len=limits.max_bytes,
            max_array_len=limits.max_items,
            max_map_len=limits.max_items,
            max_ext_len=0,
        )
    except RecursionError:
        raise _fail("msgpack nested too deeply") from None
    except Exception as exc:  # msgpack raises many kinds for malformed input
        raise _fail(f"not valid msgpack: {type(exc).__name__}: {exc}") from None


class _Reader:
    """Typed accessors over decoded msgpack, each failing with a path and reason."""

    __slots__ = ("limits", "strings")

    def __init__(self, limits: DecodeLimits, strings: Sequence[str] | None) -> None:
        self.limits = limits
        self.strings = strings  # None: strings inline; else indices into the table

    def array(self, obj: Any, where: str, *, length: int | None = None) -> list[Any]:
        if not isinstance(obj, list):
            raise _fail(f"{where}: expected an array, got {type(obj).__name__}")
        if length is not None and len(obj) != length:
            raise _fail(f"{where}: expected {length} items, got {len(obj)}")
        return obj

    def integer(self, obj: Any, where: str, *, lo: int = 0, hi: int = _U63) -> int:
        if not isinstance(obj, int) or isinstance(obj, bool):
            raise _fail(f"{where}: expected an integer, got {type(obj).__name__}")
        if not lo <= obj <= hi:
            raise _fail(f"{where}: {obj} is outside {lo}..{hi}")
        return obj

    def text(self, obj: Any, where: str, *, allow_empty: bool = False) -> str:
        if not isinstance(obj, str):
            raise _fail(f"{where}: expected a string, got {type(obj).__name__}")
        if not obj and not allow_empty:
            raise _fail(f"{where}: empty string")
        return obj

    def name(self, obj: Any, where: str, *, allow_empty: bool = False) -> str:
        """A string, inline or as an index into the batch's string table."""
        if self.strings is None:
            return self.text(obj, where, allow_empty=allow_empty)
        index = self.integer(obj, where, hi=len(self.strings) - 1 if self.strings else -1)
        value = self.strings[index]
        if not value and not allow_empty:
            raise _fail(f"{where}: empty string")
        return value

    def value(self, obj: Any, where: str) -> Any:
        try:
            check_plain_value(obj, where=where)
        except LocalProtocolError as exc:
            raise _fail(exc.reason) from None
        if len(value_bytes(obj)) > self.limits.max_value_bytes:
            raise _fail(f"{where}: value larger than {self.limits.max_value_bytes} bytes")
        return canonical(obj)

    def pairs(self, obj: Any, where: str) -> list[tuple[str, int]]:
        flat = self.array(obj, where)
        if len(flat) % 2:
            raise _fail(f"{where}: expected name/counter pairs, got {len(flat)} items")
        out = []
        for i in range(0, len(flat), 2):
            r = self.name(flat[i], f"{where}[{i}]")
            n = self.integer(flat[i + 1], f"{where}[{i + 1}]", lo=1)
            out.append((r, n))
        return out

    def dots(self, obj: Any, where: str) -> list[Dot]:
        return [Dot(r, n) for r, n in self.pairs(obj, where)]

    def ctx(self, obj: Any, where: str) -> CausalContext:
        vv_raw, cloud_raw = self.array(obj, where, length=2)
        vv = self.pairs(vv_raw, f"{where}.vv")
        if len({r for r, _ in vv}) != len(vv):
            raise _fail(f"{where}.vv: a replica appears twice")
        cloud = self.dots(cloud_raw, f"{where}.cloud")
        return CausalContext(dict(vv), cloud)

    def time(self, wall: Any, logical: Any, where: str) -> HybridTime:
        return HybridTime(
            self.integer(wall, f"{where}.wall_ms"),
            self.integer(logical, f"{where}.logical", hi=2**32),
        )


def _decode_field(r: _Reader, kind: FieldKind, obj: Any, where: str) -> FieldState:
    if kind is FieldKind.SHARED:
        ctx_raw, sibs_raw = r.array(obj, where, length=2)
        ctx = r.ctx(ctx_raw, f"{where}.ctx")
        sibs: list[Sibling] = []
        seen: set[Dot] = set()
        for i, raw in enumerate(r.array(sibs_raw, f"{where}.siblings")):
            w = f"{where}.siblings[{i}]"
            rep, counter, value, author, wall, logical = r.array(raw, w, length=6)
            dot = Dot(r.name(rep, f"{w}.replica"), r.integer(counter, f"{w}.counter", lo=1))
            if dot in seen:
                raise _fail(f"{w}: duplicate sibling {dot}")
            if dot not in ctx:
                raise _fail(f"{w}: sibling {dot} is outside the register's context")
            seen.add(dot)
            sibs.append(
                Sibling(
                    value=r.value(value, f"{w}.value"),
                    dot=dot,
                    author=r.name(author, f"{w}.author", allow_empty=True),
                    time=r.time(wall, logical, w),
                )
            )
        return MVRegister(sibs, ctx)
    if kind is FieldKind.REPORTED:
        value, seq, writer, t = r.array(obj, where, length=4)
        if t is None:
            time = None
        else:
            wall, logical = r.array(t, f"{where}.time", length=2)
            time = r.time(wall, logical, where)
        seq_n = r.integer(seq, f"{where}.seq")
        if (seq_n == 0) != (time is None):
            raise _fail(f"{where}: a written register has a time, an empty one has none")
        writer_name = r.name(writer, f"{where}.writer", allow_empty=seq_n == 0)
        if seq_n == 0 and (value is not None or writer_name):
            raise _fail(f"{where}: a register never written holds no value and no writer")
        return SingleWriterRegister(r.value(value, f"{where}.value"), seq_n, writer_name, time)
    if kind is FieldKind.LABEL:
        items = r.array(obj, where)
        if not items:
            return LWWRegister()
        value, wall, logical, replica = r.array(obj, where, length=4)
        return LWWRegister(
            r.value(value, f"{where}.value"),
            r.time(wall, logical, where),
            r.name(replica, f"{where}.replica"),
        )
    if kind is FieldKind.SET:
        ctx_raw, entries_raw = r.array(obj, where, length=2)
        ctx = r.ctx(ctx_raw, f"{where}.ctx")
        entries: dict[Hashable, list[Dot]] = {}
        for i, raw in enumerate(r.array(entries_raw, f"{where}.entries")):
            w = f"{where}.entries[{i}]"
            element, dots_raw = r.array(raw, w, length=2)
            if not isinstance(element, str | int | bytes) or isinstance(element, bool):
                raise _fail(f"{w}: set elements are strings, integers or bytes")
            element = r.value(element, f"{w}.element")
            if element in entries:
                raise _fail(f"{w}: duplicate element {element!r}")
            dots = r.dots(dots_raw, f"{w}.dots")
            if not dots:
                raise _fail(f"{w}: element without dots")
            if len(set(dots)) != len(dots) or any(d not in ctx for d in dots):
                raise _fail(f"{w}: dots repeated or outside the set's context")
            entries[element] = dots
        return ORSet(entries, ctx)
    if kind is FieldKind.COUNTER:
        pos_raw, neg_raw = r.array(obj, where, length=2)
        pos = r.pairs(pos_raw, f"{where}.pos")
        neg = r.pairs(neg_raw, f"{where}.neg")
        if len(dict(pos)) != len(pos) or len(dict(neg)) != len(neg):
            raise _fail(f"{where}: a replica appears twice in a counter")
        return PNCounter(dict(pos), dict(neg))
    if kind is FieldKind.TEXT:
        if not isinstance(obj, bytes):
            raise _fail(f"{where}: a text field is a binary Yrs update")
        return TextCrdt.checked(obj)
    log: dict[str, Any] = {}
    for i, raw in enumerate(r.array(obj, where)):
        w = f"{where}[{i}]"
        key, event = r.array(raw, w, length=2)
        key = r.text(key, f"{w}.key")
        if key in log:
            raise _fail(f"{w}: duplicate event id {key!r}")
        log[key] = r.value(event, f"{w}.event")
    return GrowOnlyLog(log)


def _kind(r: _Reader, code: Any, where: str) -> FieldKind:
    n = r.integer(code, where, hi=max(_KINDS_BY_CODE))
    return _KINDS_BY_CODE[n]


def _check_header(top: Any, tag: str, r: _Reader) -> list[Any]:
    items = r.array(top, "message")
    if len(items) < 2 or items[0] != tag:
        raise _fail(f"message: expected a {tag!r} message")
    if items[1] != FORMAT_VERSION:
        speak = "1" if tag == _STATE_TAG else f"1 and {DELTAS_VERSION}"
        raise _fail(f"message: format version {items[1]!r} is not supported (we speak {speak})")
    return items


def decode_state(
    data: bytes,
    *,
    replica: str,
    schemas: Mapping[str, EntitySchema],
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> ReplicaState:
    """Rebuild a replica state from :func:`encode_state` bytes, checking everything."""
    r = _Reader(limits, None)
    try:
        items = _check_header(_unpack(data, limits), _STATE_TAG, r)
        if len(items) != 3:
            raise _fail("message: a state has 3 parts")
        state = ReplicaState(replica, schemas)
        for i, raw in enumerate(r.array(items[2], "entities")):
            w = f"entities[{i}]"
            eid, model, home, fields_raw = r.array(raw, w, length=4)
            header = EntityHeader(
                id=r.text(eid, f"{w}.id"),
                model=r.text(model, f"{w}.model"),
                home=r.text(home, f"{w}.home"),
            )
            if header.id in state.entities:
                raise _fail(f"{w}: duplicate entity {header.id!r}")
            schema = schemas.get(header.model)
            if schema is None:
                raise _fail(f"{w}: unknown model {header.model!r}")
            entity = Entity(header, schema)
            for j, fraw in enumerate(r.array(fields_raw, f"{w}.fields")):
                fw = f"{w}.fields[{j}]"
                name, code, payload = r.array(fraw, fw, length=3)
                name = r.text(name, f"{fw}.name")
                kind = _kind(r, code, f"{fw}.kind")
                spec = schema.fields.get(name)
                if spec is None or spec.kind is not kind:
                    raise _fail(f"{fw}: model {header.model} has no {kind.value} field {name!r}")
                if name in entity.fields:
                    raise _fail(f"{fw}: duplicate field {name!r}")
                entity.fields[name] = _decode_field(r, kind, payload, fw)
            state.entities[header.id] = entity
        return state
    except RemoteProtocolError:
        raise
    except (LocalProtocolError, ValueError, TypeError) as exc:
        raise _fail(f"state does not decode: {exc}") from None


def decode_deltas(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> list[Delta]:
    """Rebuild a batch from :func:`encode_deltas` bytes, checking everything.

    This checks form, not rules: whether a delta may be joined (its model and
    field exist, its writer may write there) is ``ReplicaState.check``.
    Formats 1 and 2 are read; format 2 is checked in C (``_batchwire``).
    """
    if isinstance(data, bytes | bytearray | memoryview) and data[:18] == _V2_PREFIX:
        if len(data) > limits.max_bytes:
            raise _fail(f"message of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
        return decode_batch_v2(
            data,
            max_items=limits.max_items,
            max_string=limits.max_string,
            max_value_bytes=limits.max_value_bytes,
        )
    r0 = _Reader(limits, None)
    try:
        top = _unpack(data, limits)
        if (
            isinstance(top, list)
            and len(top) >= 2
            and top[0] == _DELTAS_TAG
            and top[1] == DELTAS_VERSION
            and type(top[1]) is int
        ):
            # Format 2 written with a longer header than ours: still format 2.
            return decode_batch_v2(
                bytes(data),
                max_items=limits.max_items,
                max_string=limits.max_string,
                max_value_bytes=limits.max_value_bytes,
            )
        items = _check_header(top, _DELTAS_TAG, r0)
        if len(items) != 4:
            raise _fail("message: a delta batch has 4 parts")
        strings = [
            r0.text(x, f"strings[{i}]", allow_empty=True)
            for i, x in enumerate(r0.array(items[2], "strings"))
        ]
        r = _Reader(limits, strings)
        out: list[Delta] = []
        for i, raw in enumerate(r.array(items[3], "deltas")):
            w = f"deltas[{i}]"
            row = r.array(raw, w)
            if len(row) not in (5, 8):
                raise _fail(f"{w}: expected 5 or 8 items, got {len(row)}")
            origin = r.name(row[0], f"{w}.origin")
            author = r.name(row[1], f"{w}.author", allow_empty=True)
            entity = r.name(row[2], f"{w}.entity")
            model = r.name(row[3], f"{w}.model")
            home = r.name(row[4], f"{w}.home")
            if len(row) == 5:
                out.append(
                    Delta(origin=origin, author=author, entity=entity, model=model, home=home)
                )
                continue
            name = r.name(row[5], f"{w}.field")
            kind = _kind(r, row[6], f"{w}.kind")
            state = _decode_field(r, kind, row[7], f"{w}.state")
            out.append(
                Delta(
                    origin=origin,
                    author=author,
                    entity=entity,
                    model=model,
                    home=home,
                    field=name,
                    state=state,
                )
            )
        return out
    except RemoteProtocolError:
        raise
    except (LocalProtocolError, ValueError, TypeError) as exc:
        raise _fail(f"delta batch does not decode: {exc}") from None
