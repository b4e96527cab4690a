"""Delta batches on the wire, format 2: typed msgpack checked in C by msgspec.

Theory of operation
-------------------
Format 1 (``_codec``) decoded a batch into plain lists with ``msgpack`` and
then checked every item in Python: a call and an ``isinstance`` per name,
counter and pair — two thirds of a remote apply's time went there. Format 2
puts the kind first in every row, so that each row is a *tagged array* and the
whole batch has a static type: ``msgspec`` decodes the bytes straight into
typed rows and checks, in compiled code, every type, every integer's range
(string indices ≥ 0, counters ≥ 1, wall time and logical counter in range),
every array's length (rows, contexts, siblings against ``DecodeLimits``), that
rows have exactly their fields, and that strings are valid UTF-8. What is left
for Python is what a type cannot say: a string index falls inside the batch's
table, names that must not be empty are not, a context names no replica
twice, siblings lie inside their context — checked while the CRDT objects are
built, once per object, with no per-field helper calls on the common path.

Layout (every name is an index into the batch's string table; a vector is
two parallel arrays, names then counters, so that msgspec can type both and
the dict is built by ``zip`` in C; dots and counter totals are [name, n] pairs)::

    ["twinmesh/deltas", 2, [string, ...], [row, ...]]
    creation  [7, origin, author, entity, model, home]
    shared    [0, origin, author, entity, model, home, field,
               [replica, ...], [n, ...] (vector), [[replica, n], ...] (cloud),
               [[replica, n, value, author, wall_ms, logical], ...] (siblings by dot)]
    reported  [1, ..., field, value, seq, writer, wall_ms | nil, logical]
    label     [2, ..., field, value, wall_ms | nil, logical, replica]
    set       [3, ..., field, [replica, ...], [n, ...], cloud,
               [[element, [[replica, n], ...]], ...]]
    counter   [4, ..., field, [[replica, n], ...] (pos), [[replica, n], ...] (neg)]
    text      [5, ..., field, yrs_update]
    log       [6, ..., field, [[event_id, event], ...]]

Output stays canonical (sorted contexts, siblings, set entries, counters and
log ids; values with sorted keys; every string interned once in order of first
use), so equal batches encode to identical bytes.

Upgrading: a node with this code reads formats 1 and 2 (stores written before
keep format-1 bodies, and signed batches relayed from them stay format 1) and
writes format 2. A node without it refuses a format-2 batch with
``RemoteProtocolError("... format version 2 is not supported ...")`` and
catches up once upgraded (the writer keeps every batch), so a fleet upgrades
all its nodes; no data is lost in the meantime, only delayed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Annotated, Any, Literal

import msgpack
import msgspec

from ._clocks import CausalContext, Dot, HybridTime
from ._errors import LocalProtocolError, RemoteProtocolError
from ._mvregister import MVRegister, Sibling
from ._orset import ORSet
from ._scalars import GrowOnlyLog, LWWRegister, PNCounter, SingleWriterRegister
from ._schema import check_plain_value
from ._state import Delta
from ._text import TextCrdt
from ._values import canonical, value_bytes

__all__ = ["BATCH_FORMAT", "decode_batch_v2", "encode_batch_v2"]

BATCH_FORMAT = 2
DELTAS_TAG = "twinmesh/deltas"
CREATE_CODE = 7
_U63 = 2**63 - 1
_Meta = msgspec.Meta

# ---------------------------------------------------------------- encoding


def _vector_out(
    items: list[tuple[str, int]], s: Callable[[str], int]
) -> tuple[list[int], list[int]]:
    return [s(r) for r, _ in items], [n for _, n in items]


def _pairs_out(items: Any, s: Callable[[str], int]) -> list[list[int]]:
    return [[s(r), n] for r, n in items]


def _dots(dots: Any, s: Callable[[str], int]) -> list[list[int]]:
    return [[s(d.replica), d.counter] for d in sorted(dots)]


def encode_batch_v2(deltas: Any) -> bytes:
    """A batch of deltas in format 2 (see the module docstring)."""
    table: dict[str, int] = {}

    def s(text: str) -> int:
        index = table.get(text)
        if index is None:
            index = table[text] = len(table)
        return index

    rows: list[Any] = []
    for d in deltas:
        head = [s(d.origin), s(d.author), s(d.entity), s(d.model), s(d.home)]
        state = d.state
        if d.field is None:
            rows.append([CREATE_CODE, *head])
            continue
        head.append(s(d.field))
        t = type(state)
        if t is MVRegister:
            ctx = state.ctx
            sibs = [
                [
                    s(x.dot.replica),
                    x.dot.counter,
                    x.value,
                    s(x.author),
                    x.time.wall_ms,
                    x.time.logical,
                ]
                for x in state.sorted_siblings()
            ]
            reps, ns = _vector_out(ctx.vv_items(), s)
            rows.append([0, *head, reps, ns, _dots(ctx.cloud_dots(), s), sibs])
        elif t is SingleWriterRegister:
            tm = state.time
            rows.append(
                [
                    1,
                    *head,
                    state.value,
                    state.seq,
                    s(state.writer),
                    None if tm is None else tm.wall_ms,
                    0 if tm is None else tm.logical,
                ]
            )
        elif t is LWWRegister:
            tm = state.time
            rows.append(
                [
                    2,
                    *head,
                    state.value,
                    None if tm is None else tm.wall_ms,
                    0 if tm is None else tm.logical,
                    s(state.replica),
                ]
            )
        elif t is ORSet:
            ctx = state.ctx
            entries = [
                [element, _dots(state.entries[element], s)]
                for element in sorted(state.entries, key=value_bytes)
            ]
            reps, ns = _vector_out(ctx.vv_items(), s)
            rows.append([3, *head, reps, ns, _dots(ctx.cloud_dots(), s), entries])
        elif t is PNCounter:
            pos, neg = sorted(state.pos.items()), sorted(state.neg.items())
            rows.append([4, *head, _pairs_out(pos, s), _pairs_out(neg, s)])
        elif t is TextCrdt:
            rows.append([5, *head, state.update])
        else:
            rows.append([6, *head, [[k, v] for k, v in state.items()]])
    return msgpack.packb(  # type: ignore[no-any-return]
        [DELTAS_TAG, BATCH_FORMAT, list(table), rows], use_bin_type=True
    )


# ---------------------------------------------------------------- the typed schema


class _Schema:
    """The row types and the decoder for one set of limits (built once, cached)."""

    __slots__ = ("counter", "create", "decoder", "label", "log", "reported", "set", "shared")

    def __init__(self, max_items: int, max_string: int) -> None:
        name = Annotated[int, _Meta(ge=0, le=max_items)]
        counter = Annotated[int, _Meta(ge=1, le=_U63)]
        natural = Annotated[int, _Meta(ge=0, le=_U63)]
        logical = Annotated[int, _Meta(ge=0, le=2**32)]
        many = _Meta(max_length=max_items)
        names = Annotated[list[name], many]
        counters = Annotated[list[counter], many]
        pairs = Annotated[list[tuple[name, counter]], many]
        text = Annotated[str, _Meta(max_length=max_string)]
        cfg: dict[str, Any] = {"array_like": True, "forbid_unknown_fields": True, "gc": False}
        head = [("origin", name), ("author", name), ("entity", name), ("model", name)]
        head.append(("home", name))
        fhead = [*head, ("field", name)]
        ctx = [("vv_names", names), ("vv_counters", counters), ("cloud", pairs)]

        def struct(label: str, fields: list[tuple[str, Any]], **extra: Any) -> Any:
            return msgspec.defstruct(f"_{label}", fields, **cfg, **extra)

        sib = struct(
            "Sibling",
            [
                ("replica", name),
                ("counter", counter),
                ("value", Any),
                ("author", name),
                ("wall", natural),
                ("logical", logical),
            ],
        )
        # (msgspec allows one str-like type per union, so a set element's
        # str | int | bytes is checked in Python, on the less travelled path.)
        entry = struct("SetEntry", [("element", Any), ("dots", pairs)])
        event = struct(
            "LogEntry",
            [("key", Annotated[str, _Meta(min_length=1, max_length=max_string)]), ("event", Any)],
        )
        self.create = struct("Create", head, tag=CREATE_CODE)
        self.shared = struct(
            "Shared",
            [*fhead, *ctx, ("sibs", Annotated[list[sib], many])],  # type: ignore[valid-type]
            tag=0,
        )
        self.reported = struct(
            "Reported",
            [
                *fhead,
                ("value", Any),
                ("seq", natural),
                ("writer", name),
                ("wall", natural | None),
                ("logical", logical),
            ],
            tag=1,
        )
        self.label = struct(
            "Label",
            [
                *fhead,
                ("value", Any),
                ("wall", natural | None),
                ("logical", logical),
                ("replica", name),
            ],
            tag=2,
        )
        self.set = struct(
            "Set",
            [*fhead, *ctx, ("entries", Annotated[list[entry], many])],  # type: ignore[valid-type]
            tag=3,
        )
        self.counter = struct("Counter", [*fhead, ("pos", pairs), ("neg", pairs)], tag=4)
        text_row = struct("Text", [*fhead, ("update", bytes)], tag=5)
        self.log = struct(
            "Log",
            [*fhead, ("entries", Annotated[list[event], many])],  # type: ignore[valid-type]
            tag=6,
        )
        rows = (
            (self.create | self.shared | self.reported | self.label | self.set | self.counter)
            | text_row
            | self.log
        )
        batch = struct(
            "Batch",
            [
                ("tag", Literal["twinmesh/deltas"]),
                ("version", Literal[2]),
                ("strings", Annotated[list[text], many]),
                ("rows", Annotated[list[rows], many]),  # type: ignore[valid-type]
            ],
        )
        self.decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(batch)


@lru_cache(maxsize=8)
def _schema(max_items: int, max_string: int) -> _Schema:
    return _Schema(max_items, max_string)


# ---------------------------------------------------------------- decoding


def _fail(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason)


def _value_slow(value: Any, where: str, max_bytes: int) -> Any:
    try:
        check_plain_value(value, where=where)
    except LocalProtocolError as exc:
        raise _fail(exc.reason) from None
    if len(value_bytes(value)) > max_bytes:
        raise _fail(f"{where}: value larger than {max_bytes} bytes")
    return canonical(value)


def _vector(row: Any, names: list[str | None], where: str) -> dict[str, int]:
    """A vector's parallel arrays as a dict: names non-empty, each once, same length."""
    reps, ns = row.vv_names, row.vv_counters
    vv: dict[Any, int] = dict(zip(map(names.__getitem__, reps), ns, strict=False))
    if len(vv) != len(reps) or len(reps) != len(ns) or None in vv:
        if len(reps) != len(ns):
            raise _fail(f"{where}.vv: {len(reps)} names, {len(ns)} counters")
        if None in vv:
            raise _fail(f"{where}.vv: empty replica name")
        raise _fail(f"{where}.vv: a replica appears twice")
    return vv


def _pair_dict(pairs: list[tuple[int, int]], names: list[str | None], where: str) -> dict[str, int]:
    out: dict[Any, int] = {names[r]: n for r, n in pairs}
    if None in out:
        raise _fail(f"{where}: empty replica name")
    if len(out) != len(pairs):
        raise _fail(f"{where}: a replica appears twice")
    return out


def _dot_list(pairs: list[tuple[int, int]], names: list[str | None], where: str) -> list[Dot]:
    out = []
    for r, n in pairs:
        rep = names[r]
        if rep is None:
            raise _fail(f"{where}: empty replica name")
        out.append(Dot(rep, n))
    return out


def _context_of(
    row: Any, names: list[str | None], where: Callable[[], str]
) -> tuple[CausalContext, dict[str, int], set[Dot]]:
    """A row's causal context (and its vector and cloud, for the caller's
    membership tests): names non-empty and each once in the vector, kept
    canonical whatever the sender wrote."""
    reps, ns = row.vv_names, row.vv_counters
    if len(reps) == 1 and len(ns) == 1:  # the common case: one writer
        r0 = names[reps[0]]
        if r0 is None:
            raise _fail(f"{where()}.ctx.vv: empty replica name")
        vv: dict[Any, int] = {r0: ns[0]}
    else:
        vv = dict(zip(map(names.__getitem__, reps), ns, strict=False))
        if len(vv) != len(reps) or len(reps) != len(ns) or None in vv:
            _vector(row, names, f"{where()}.ctx")  # raises with the reason
    ctx = _new(CausalContext)
    ctx._vv = vv
    cloud: set[Dot] = set()
    ctx._cloud = cloud
    if row.cloud:
        get = vv.get
        for r, n in row.cloud:
            rep = names[r]
            if rep is None:
                raise _fail(f"{where()}.ctx.cloud: empty replica name")
            dot = Dot(rep, n)
            if n <= get(rep, 0) + 1:
                # Not canonical (a dot the vector covers or extends): let the
                # context fold every dot, as the constructor does.
                ctx = CausalContext(vv, _dot_list(row.cloud, names, f"{where()}.ctx.cloud"))
                return ctx, ctx._vv, ctx._cloud
            cloud.add(dot)
    return ctx, vv, cloud


_new = object.__new__


def decode_batch_v2(
    data: bytes, *, max_items: int, max_string: int, max_value_bytes: int
) -> list[Delta]:
    """Decode and check a format-2 batch; raises ``RemoteProtocolError`` with a reason."""
    schema = _schema(max_items, max_string)
    try:
        batch = schema.decoder.decode(data)
    except RecursionError:
        raise _fail("msgpack nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise _fail(f"delta batch: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _fail(f"not valid msgpack: {exc}") from None
    strings: list[str] = batch.strings
    names: list[str | None] = [x or None for x in strings]  # None: empty, refused as a name
    shared_t, create_t, counter_t, label_t = (
        schema.shared,
        schema.create,
        schema.counter,
        schema.label,
    )
    set_t = schema.set
    small_str = (max_value_bytes - 8) // 4  # a str this short is within the size limit
    isfinite = math.isfinite
    out: list[Delta] = []
    append = out.append
    i = -1

    def where() -> str:  # the place, for an error message (built only for one)
        return f"deltas[{i}].state"

    try:
        for row in batch.rows:
            i += 1
            t = type(row)
            origin = names[row.origin]
            entity = names[row.entity]
            model = names[row.model]
            home = names[row.home]
            author = strings[row.author]
            if t is create_t:
                if origin is None or entity is None or model is None or home is None:
                    raise _fail(f"deltas[{i}]: empty origin, entity, model or home")
                append(Delta(origin=origin, author=author, entity=entity, model=model, home=home))
                continue
            field = names[row.field]
            if origin is None or entity is None or model is None or home is None or field is None:
                raise _fail(f"deltas[{i}]: empty origin, entity, model, home or field name")
            state: Any
            if t is shared_t:
                # The hot path, inlined: the vector, the register, its siblings.
                reps, ns = row.vv_names, row.vv_counters
                if len(reps) == 1 and len(ns) == 1 and not row.cloud:
                    # ``_context_of``'s common case, inlined: one writer, no cloud.
                    r0 = names[reps[0]]
                    if r0 is None:
                        raise _fail(f"{where()}.ctx.vv: empty replica name")
                    cvv: dict[Any, int] = {r0: ns[0]}
                    cloud: set[Dot] = set()
                    ctx = _new(CausalContext)
                    ctx._vv = cvv
                    ctx._cloud = cloud
                else:
                    ctx, cvv, cloud = _context_of(row, names, where)
                sibs: dict[Dot, Sibling] = {}
                for s in row.sibs:
                    rep = names[s.replica]
                    if rep is None:
                        raise _fail(f"deltas[{i}].state.siblings: empty replica name")
                    dot = Dot(rep, s.counter)
                    if cvv.get(rep, 0) < s.counter and dot not in cloud:
                        raise _fail(
                            f"deltas[{i}].state.siblings: sibling {dot} is outside "
                            "the register's context"
                        )
                    if dot in sibs:
                        raise _fail(f"deltas[{i}].state.siblings: duplicate sibling {dot}")
                    value = s.value
                    vt = type(value)
                    if not (
                        (vt is str and len(value) <= small_str)
                        or (vt is float and isfinite(value))
                        or vt is int
                        or value is None
                        or vt is bool
                    ):
                        value = _value_slow(
                            value, f"deltas[{i}].state.siblings.value", max_value_bytes
                        )
                    sibs[dot] = Sibling(
                        value=value,
                        dot=dot,
                        author=strings[s.author],
                        time=HybridTime(s.wall, s.logical),
                    )
                state = _new(MVRegister)
                state.siblings = sibs
                state.ctx = ctx
            elif t is counter_t:
                pos, neg = row.pos, row.neg
                if len(pos) == 1 and not neg:  # the common case: one increment
                    ((r, n),) = pos
                    rep = names[r]
                    if rep is None:
                        raise _fail(f"{where()}.pos: empty replica name")
                    totals, negs = {rep: n}, {}
                else:
                    totals = _pair_dict(pos, names, f"{where()}.pos")
                    negs = _pair_dict(neg, names, f"{where()}.neg")
                state = _new(PNCounter)
                state.pos = totals
                state.neg = negs
            elif t is label_t:
                wall = row.wall
                replica = strings[row.replica]
                value = row.value
                if wall is None:
                    if row.logical:
                        raise _fail(f"{where()}: a logical counter without a wall time")
                    if value is not None or replica:
                        raise _fail(
                            f"{where()}: a label never written holds no value and no replica"
                        )
                    state = LWWRegister()
                else:
                    if not replica:
                        raise _fail(f"{where()}.replica: empty string")
                    if not _scalar_ok(value, small_str):
                        value = _value_slow(value, f"{where()}.value", max_value_bytes)
                    state = _new(LWWRegister)
                    state.value = value
                    state.time = HybridTime(wall, row.logical)
                    state.replica = replica
            elif t is set_t:
                state = _decode_set(row, names, where, small_str, max_value_bytes)
            else:
                state = _decode_other(schema, row, names, strings, i, max_value_bytes)
            append(
                Delta(
                    origin=origin,
                    author=author,
                    entity=entity,
                    model=model,
                    home=home,
                    field=field,
                    state=state,
                )
            )
    except IndexError:
        raise _fail(
            f"deltas[{i}]: a string index is outside the batch's table of {len(strings)}"
        ) from None
    return out


def _decode_set(
    row: Any, names: list[str | None], where: Callable[[], str], small: int, max_value_bytes: int
) -> ORSet:
    ctx, vv, cloud = _context_of(row, names, where)
    get = vv.get
    entries: dict[Hashable, set[Dot]] = {}
    for j, e in enumerate(row.entries):
        element = e.element
        et = type(element)
        if et is not str and et is not int and et is not bytes:
            raise _fail(f"{where()}.entries[{j}]: set elements are strings, integers or bytes")
        if not _scalar_ok(element, small):
            element = _value_slow(element, f"{where()}.entries[{j}].element", max_value_bytes)
        if element in entries:
            raise _fail(f"{where()}.entries[{j}]: duplicate element {element!r}")
        if not e.dots:
            raise _fail(f"{where()}.entries[{j}]: element without dots")
        dots: set[Dot] = set()
        for r, n in e.dots:
            rep = names[r]
            if rep is None:
                raise _fail(f"{where()}.entries[{j}].dots: empty replica name")
            dot = Dot(rep, n)
            if dot in dots or (get(rep, 0) < n and dot not in cloud):
                raise _fail(f"{where()}.entries[{j}]: dots repeated or outside the set's context")
            dots.add(dot)
        entries[element] = dots
    orset = _new(ORSet)
    orset.entries, orset.ctx = entries, ctx
    return orset


def _time(wall: int | None, logical: int, where: Callable[[], str]) -> HybridTime | None:
    if wall is None:
        if logical:
            raise _fail(f"{where()}: a logical counter without a wall time")
        return None
    return HybridTime(wall, logical)


def _scalar_ok(value: Any, small: int) -> bool:
    """True for a value that is plain and within the size limit without
    looking further: None, bool, an int (msgpack holds 64 bits), a finite
    float, a str or bytes short enough."""
    t = type(value)
    if t is str or t is bytes:
        return len(value) <= small
    return t is int or value is None or t is bool or (t is float and math.isfinite(value))


def _decode_other(
    schema: _Schema,
    row: Any,
    names: list[str | None],
    strings: list[str],
    i: int,
    max_value_bytes: int,
) -> Any:
    """Every kind but shared (which ``decode_batch_v2`` inlines)."""
    t = type(row)
    small = (max_value_bytes - 8) // 4

    def w() -> str:  # the place, for an error message
        return f"deltas[{i}].state"

    if t is schema.reported:
        time = _time(row.wall, row.logical, w)
        seq = row.seq
        if (seq == 0) != (time is None):
            raise _fail(f"{w()}: a written register has a time, an empty one has none")
        writer = strings[row.writer]
        if seq and not writer:
            raise _fail(f"{w()}.writer: empty string")
        if seq == 0 and (row.value is not None or writer):
            raise _fail(f"{w()}: a register never written holds no value and no writer")
        value = row.value
        if not _scalar_ok(value, small):
            value = _value_slow(value, f"{w()}.value", max_value_bytes)
        return SingleWriterRegister(value, seq, writer, time)
    if t is schema.log:
        log: dict[str, Any] = {}
        for j, e in enumerate(row.entries):
            if e.key in log:
                raise _fail(f"{w()}[{j}]: duplicate event id {e.key!r}")
            log[e.key] = _value_slow(e.event, f"{w()}[{j}].event", max_value_bytes)
        return GrowOnlyLog(log)
    try:  # the text
        return TextCrdt.checked(row.update)
    except LocalProtocolError as exc:
        raise _fail(exc.reason) from None
