"""Shared hypothesis strategies and a replica simulator for the CRDT property tests.

The simulator drives k replicas of :class:`ReplicaState` through a workload of
operations (writes with current or stale contexts, resolutions, set, counter,
text, log, label and reported writes) and partial, reordered deliveries of the
deltas between them. Alongside, it keeps an *independent* happens-before
oracle: for every write it records the set of writes (by delta id) that the
writing replica had seen for that key when it read the context it wrote with,
tracked from deliveries alone, never from the CRDT's contexts. Tests compare
the CRDT's final state with what the oracle says it must be.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from hypothesis import settings
from hypothesis import strategies as st

from twinmesh.crdt import (
    CausalContext,
    Delta,
    Dot,
    GrowOnlyLog,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    ReplicaState,
    SingleWriterRegister,
    TextCrdt,
)
from twinmesh.crdt.demo_models import PUMP, PUMP_SCHEMAS

__all__ = [
    "BOTTOMS",
    "ENTITY_IDS",
    "MODEL",
    "REPLICA_IDS",
    "SCHEMAS",
    "Clock",
    "FixedClock",
    "Simulation",
    "SkewedClock",
    "Workload",
    "fresh_replay",
    "join_all",
    "label_workloads",
    "plain_values",
    "scaled",
    "skewed_clocks",
    "workloads",
]

SCHEMAS = PUMP_SCHEMAS
MODEL = PUMP.model
REPLICA_IDS: tuple[str, ...] = ("plant-a", "plant-b", "central", "plant-c", "plant-d")
#: Two twins, homed at different replicas, so home-only rules are exercised both ways.
ENTITY_IDS: tuple[str, ...] = ("plant-a/line-1/pump-7", "plant-b/line-2/pump-3")
SHARED_FIELDS: tuple[str, ...] = (
    "maintenance_date",
    "vibration_limit",
    "lifecycle",
    "owner",
    "value",
)
BASE_MS = 1_780_000_000_000


def scaled(factor: float) -> settings:
    """The loaded profile's settings with ``max_examples`` scaled for a costly test."""
    current = settings.default
    assert current is not None
    return settings(max_examples=max(2, int(current.max_examples * factor)))


# ---------------------------------------------------------------- values


def plain_values(max_leaves: int = 6) -> st.SearchStrategy[Any]:
    """Canonical plain values a field of type ``any`` accepts (finite floats only)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.binary(max_size=8),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=4), inner, max_size=3),
        ),
        max_leaves=max_leaves,
    )


_DATES = st.dates().map(lambda d: d.isoformat()).filter(lambda s: len(s) == 10)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "maintenance_date": _DATES,
    "vibration_limit": st.one_of(
        st.floats(min_value=0.5, max_value=50.0, allow_nan=False), st.integers(1, 50)
    ),
    "lifecycle": st.sampled_from(PUMP.fields["lifecycle"].enum_values),
    "owner": st.sampled_from(("alice", "bob", "carol", "dmitri")),
    "value": plain_values(4),
}
#: Booleans are left out on purpose: see test_crdt_regressions (1 and True collide).
SET_ELEMENTS = st.sampled_from(("bearing", "seal", "critical", 7, 11, b"\x00tag"))


# ---------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class Write:
    """Write a shared field; ``stale`` picks a context captured earlier at that replica."""

    at: int
    entity: int
    field: str
    value: Any
    stale: int | None = None


@dataclass(frozen=True, slots=True)
class Capture:
    """Read a shared field's context now, to write with it later (a stale ETag)."""

    at: int
    entity: int
    field: str


@dataclass(frozen=True, slots=True)
class Resolve:
    """Resolve one of the conflicts this replica shows, with its own context."""

    at: int
    pick: int
    value_pick: int


@dataclass(frozen=True, slots=True)
class SetAdd:
    at: int
    entity: int
    element: Hashable


@dataclass(frozen=True, slots=True)
class SetRemove:
    at: int
    entity: int
    element: Hashable


@dataclass(frozen=True, slots=True)
class Increment:
    at: int
    entity: int
    amount: int


@dataclass(frozen=True, slots=True)
class TextEdit:
    at: int
    entity: int
    position: int
    delete: int
    insert: str


@dataclass(frozen=True, slots=True)
class TextReplace:
    at: int
    entity: int
    content: str


@dataclass(frozen=True, slots=True)
class Append:
    at: int
    entity: int
    event: Any


@dataclass(frozen=True, slots=True)
class Label:
    at: int
    entity: int
    value: str


@dataclass(frozen=True, slots=True)
class Report:
    """Write reported state at the entity's home (the only replica allowed to)."""

    entity: int
    value: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send ``dst`` deltas ``src`` holds and ``dst`` lacks: all, or a random subset,
    in a random order (``seed``), possibly with duplicates."""

    src: int
    dst: int
    seed: int
    everything: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Join ``src``'s whole state into ``dst`` (what a peer below the horizon gets)."""

    src: int
    dst: int


Op: TypeAlias = (
    Write
    | Capture
    | Resolve
    | SetAdd
    | SetRemove
    | Increment
    | TextEdit
    | TextReplace
    | Append
    | Label
    | Report
    | Deliver
    | Snapshot
)


@dataclass(frozen=True, slots=True)
class Workload:
    replicas: int
    ops: tuple[Op, ...]


_AT = st.integers(0, len(REPLICA_IDS) - 1)
# Most traffic on one twin and two fields, so writes collide often enough.
_ENTITY = st.sampled_from((0, 0, 0, 1))
_HOT_FIELDS = st.sampled_from(("owner", "owner", "value", "value", *SHARED_FIELDS))


def _shared_write(stale: bool, blind: bool) -> st.SearchStrategy[Write]:
    if blind:  # one register, mostly blind writes: many concurrent siblings
        return st.builds(
            Write,
            at=_AT,
            entity=st.just(0),
            field=st.just("value"),
            value=st.integers(0, 999),
            stale=st.sampled_from((None, 0, 0, 0, 1)),
        )
    stale_pick = st.one_of(st.none(), st.integers(0, 3)) if stale else st.none()
    return _HOT_FIELDS.flatmap(
        lambda name: st.builds(
            Write,
            at=_AT,
            entity=_ENTITY,
            field=st.just(name),
            value=FIELD_VALUES[name],
            stale=stale_pick,
        )
    )


def _ops(
    *, stale: bool, snapshots: bool, text: bool, shared_only: bool, blind: bool
) -> st.SearchStrategy[Op]:
    deliver = st.builds(
        Deliver,
        src=_AT,
        dst=_AT,
        seed=st.integers(0, 2**16),
        everything=st.booleans(),
    )
    resolve = st.builds(Resolve, at=_AT, pick=st.integers(0, 8), value_pick=st.integers(0, 8))
    choices: list[st.SearchStrategy[Any]] = [
        _shared_write(stale, blind),
        _shared_write(stale, blind),
        _shared_write(stale, blind),
        resolve,
        resolve,
        deliver,
        deliver,
        deliver,
    ]
    if stale:
        choices.append(
            st.builds(Capture, at=_AT, entity=_ENTITY, field=st.sampled_from(SHARED_FIELDS))
        )
    if snapshots:
        choices.append(st.builds(Snapshot, src=_AT, dst=_AT))
    if not shared_only:
        choices += [
            st.builds(SetAdd, at=_AT, entity=_ENTITY, element=SET_ELEMENTS),
            st.builds(SetRemove, at=_AT, entity=_ENTITY, element=SET_ELEMENTS),
            st.builds(Increment, at=_AT, entity=_ENTITY, amount=st.integers(-5, 5)),
            st.builds(
                Append,
                at=_AT,
                entity=_ENTITY,
                event=st.fixed_dictionaries(
                    {"severity": st.sampled_from(("low", "high")), "score": st.integers(0, 99)}
                ),
            ),
            st.builds(Label, at=_AT, entity=_ENTITY, value=st.sampled_from(("P-7", "P7", "x"))),
            st.builds(Report, entity=_ENTITY, value=st.sampled_from(("SN-1", "SN-2", "SN-3"))),
        ]
        if text:
            choices += [
                st.builds(
                    TextEdit,
                    at=_AT,
                    entity=_ENTITY,
                    position=st.integers(0, 40),
                    delete=st.integers(0, 3),
                    insert=st.sampled_from(("", "a", "oil ", "é✓")),
                ),
                st.builds(
                    TextReplace,
                    at=_AT,
                    entity=_ENTITY,
                    content=st.sampled_from(("check seal", "check the seal", "")),
                ),
            ]
    return st.one_of(*choices)


def workloads(
    *,
    min_replicas: int = 2,
    max_replicas: int = 5,
    max_ops: int = 40,
    stale: bool = True,
    snapshots: bool = True,
    text: bool = True,
    shared_only: bool = False,
    blind: bool = False,
) -> st.SearchStrategy[Workload]:
    """Random workloads; the flags leave out stale writes, snapshot joins, text edits
    or everything but shared fields, for the properties that need that. ``blind``
    aims mostly blind writes at one register, piling up many concurrent siblings
    (the large-sibling-set path of the register's join)."""
    return st.builds(
        Workload,
        replicas=st.integers(min_replicas, max_replicas),
        ops=st.lists(
            _ops(
                stale=stale,
                snapshots=snapshots,
                text=text,
                shared_only=shared_only or blind,
                blind=blind,
            ),
            min_size=max_ops // 3,
            max_size=max_ops,
        ).map(tuple),
    )


def label_workloads(max_ops: int = 40) -> st.SearchStrategy[Workload]:
    """Only label writes, deliveries and snapshot joins: every write races or
    follows another, which is what the hybrid clock's causality claim is about."""
    op = st.one_of(
        st.builds(Label, at=_AT, entity=st.just(0), value=st.sampled_from(("P-7", "P7", "x"))),
        st.builds(Deliver, src=_AT, dst=_AT, seed=st.integers(0, 2**16), everything=st.booleans()),
        st.builds(Snapshot, src=_AT, dst=_AT),
    )
    return st.builds(
        Workload,
        replicas=st.integers(2, 5),
        ops=st.lists(op, min_size=4, max_size=max_ops).map(tuple),
    )


# ---------------------------------------------------------------- clocks

Clock: TypeAlias = Callable[[int, int], int]  # (replica index, step) -> wall ms


@dataclass(frozen=True, slots=True)
class FixedClock:
    """Every replica reads the same, steadily advancing wall clock."""

    def __call__(self, replica: int, step: int) -> int:
        return BASE_MS + 1_000 * step


@dataclass(frozen=True, slots=True)
class SkewedClock:
    """Per replica a fixed offset (up to an hour either way) plus, at some steps,
    a jump backwards of up to two hours — NTP steps, a dead RTC battery."""

    offsets: tuple[int, ...]
    seed: int

    def __call__(self, replica: int, step: int) -> int:
        rng = random.Random(self.seed * 1_000_003 + replica * 10_007 + step)
        back = rng.randrange(7_200_000) if rng.random() < 0.3 else 0
        return BASE_MS + 1_000 * step + self.offsets[replica] - back


def skewed_clocks() -> st.SearchStrategy[SkewedClock]:
    return st.builds(
        SkewedClock,
        offsets=st.tuples(*[st.integers(-3_600_000, 3_600_000)] * len(REPLICA_IDS)),
        seed=st.integers(0, 2**16),
    )


# ---------------------------------------------------------------- simulator

OracleKey: TypeAlias = tuple[Any, ...]


@dataclass(slots=True)
class MVWrite:
    id: int
    replica: int
    key: OracleKey
    value: Any
    dot: Dot
    stale: bool
    resolution: bool


@dataclass(slots=True)
class LabelWrite:
    id: int
    replica: int
    key: OracleKey
    value: str
    time: Any


@dataclass(slots=True)
class Simulation:
    """k replicas, the log of every delta made, and the happens-before oracle."""

    k: int
    clock: Clock = field(default_factory=FixedClock)
    replicas: list[ReplicaState] = field(init=False)
    log: list[Delta] = field(init=False, default_factory=list)
    has: list[set[int]] = field(init=False)
    # Oracle: per replica and key, the ids of writes seen (closed under "seen by").
    known: list[dict[OracleKey, frozenset[int]]] = field(init=False)
    past: dict[int, frozenset[int]] = field(init=False, default_factory=dict)
    key_of: dict[int, OracleKey] = field(init=False, default_factory=dict)
    mv_writes: list[MVWrite] = field(init=False, default_factory=list)
    set_ops: dict[int, tuple[str, Hashable]] = field(init=False, default_factory=dict)
    label_writes: list[LabelWrite] = field(init=False, default_factory=list)
    reported: dict[str, list[str]] = field(init=False, default_factory=dict)
    counters: dict[str, int] = field(init=False, default_factory=dict)
    events: dict[str, dict[str, Any]] = field(init=False, default_factory=dict)
    captured: dict[tuple[int, str, str], list[tuple[CausalContext, frozenset[int]]]] = field(
        init=False, default_factory=dict
    )
    refused_resolutions: int = field(init=False, default=0)
    step: int = field(init=False, default=0)
    _appends: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.replicas = [ReplicaState(REPLICA_IDS[i], SCHEMAS) for i in range(self.k)]
        self.has = [set() for _ in range(self.k)]
        self.known = [{} for _ in range(self.k)]
        for index, entity_id in enumerate(ENTITY_IDS):
            home = index % self.k
            self._record(home, self.replicas[home].create(entity_id, MODEL, author="setup"))
            self.reported[entity_id] = []
            self.counters[entity_id] = 0
            self.events[entity_id] = {}
        # Every replica learns of both twins before the workload starts.
        for dst in range(self.k):
            for delta_id in range(len(self.log)):
                if delta_id not in self.has[dst]:
                    self._deliver(dst, delta_id)

    # -- bookkeeping -------------------------------------------------------
    def now(self, replica: int) -> int:
        return self.clock(replica, self.step)

    def _record(
        self,
        replica: int,
        delta: Delta,
        key: OracleKey | None = None,
        past: frozenset[int] | None = None,
    ) -> int:
        delta_id = len(self.log)
        self.log.append(delta)
        self.has[replica].add(delta_id)
        if key is not None:
            assert past is not None
            self.key_of[delta_id] = key
            self.past[delta_id] = past
            mine = self.known[replica]
            mine[key] = mine.get(key, frozenset()) | {delta_id}
        return delta_id

    def _deliver(self, dst: int, delta_id: int) -> None:
        self.replicas[dst].apply(self.log[delta_id], now_ms=self.now(dst))
        self.has[dst].add(delta_id)
        key = self.key_of.get(delta_id)
        if key is not None:
            mine = self.known[dst]
            mine[key] = mine.get(key, frozenset()) | {delta_id} | self.past[delta_id]

    def seen(self, replica: int, key: OracleKey) -> frozenset[int]:
        return self.known[replica].get(key, frozenset())

    # -- running -------------------------------------------------------------
    def run(self, ops: Iterable[Op]) -> Simulation:
        for op in ops:
            self.apply_op(op)
            self.step += 1
        return self

    def apply_op(self, op: Op) -> None:
        if isinstance(op, Deliver | Snapshot):
            src, dst = op.src % self.k, op.dst % self.k
            if src == dst:
                return
            if isinstance(op, Snapshot):
                self.replicas[dst].merge(self.replicas[src], now_ms=self.now(dst))
                self.has[dst] |= self.has[src]
                for key, ids in self.known[src].items():
                    self.known[dst][key] = self.seen(dst, key) | ids
                return
            rng = random.Random(op.seed)
            missing = sorted(self.has[src] - self.has[dst])
            chosen = missing if op.everything else [d for d in missing if rng.random() < 0.5]
            chosen = chosen + [d for d in chosen if rng.random() < 0.2]  # duplicates
            rng.shuffle(chosen)
            for delta_id in chosen:
                self._deliver(dst, delta_id)
            return
        if isinstance(op, Report):
            entity_id = ENTITY_IDS[op.entity]
            home = op.entity % self.k
            self._record(
                home,
                self.replicas[home].write(
                    entity_id, "serial", op.value, author="plc", now_ms=self.now(home)
                ),
            )
            self.reported[entity_id].append(op.value)
            return
        at = op.at % self.k
        replica = self.replicas[at]
        if isinstance(op, Resolve):
            self._resolve(at, op)
            return
        entity_id = ENTITY_IDS[op.entity]
        if isinstance(op, Capture):
            key = ("mv", entity_id, op.field)
            ctx = replica.entity(entity_id).field(op.field)
            assert isinstance(ctx, MVRegister)
            self._captures(at, entity_id, op.field).append((ctx.context(), self.seen(at, key)))
        elif isinstance(op, Write):
            self._write(at, op)
        elif isinstance(op, SetAdd | SetRemove):
            key = ("set", entity_id, op.element)
            past = self.seen(at, key)
            if isinstance(op, SetAdd):
                delta = replica.add(entity_id, "tags", op.element, author="tech")
            else:
                delta = replica.remove(entity_id, "tags", op.element, author="tech")
            delta_id = self._record(at, delta, key, past)
            kind = "add" if isinstance(op, SetAdd) else "remove"
            self.set_ops[delta_id] = (kind, op.element)
        elif isinstance(op, Increment):
            self._record(at, replica.increment(entity_id, "starts", op.amount, author="plc"))
            self.counters[entity_id] += op.amount
        elif isinstance(op, Append):
            self._appends += 1
            event_id = f"{REPLICA_IDS[at]}-{self._appends}"
            self._record(at, replica.append(entity_id, "alerts", event_id, op.event, author="det"))
            self.events[entity_id][event_id] = op.event
        elif isinstance(op, Label):
            key = ("label", entity_id)
            past = self.seen(at, key)
            delta = replica.write(entity_id, "label", op.value, author="op", now_ms=self.now(at))
            delta_id = self._record(at, delta, key, past)
            assert isinstance(delta.state, LWWRegister)
            self.label_writes.append(LabelWrite(delta_id, at, key, op.value, delta.state.time))
        elif isinstance(op, TextEdit):
            text = replica.entity(entity_id).value("notes")
            index = op.position % (len(text) + 1)
            delete = min(op.delete, len(text) - index)
            if delete or op.insert:
                self._record(
                    at,
                    replica.edit_text(
                        entity_id,
                        "notes",
                        index=index,
                        delete=delete,
                        insert=op.insert,
                        author="tech",
                    ),
                )
        else:
            assert isinstance(op, TextReplace)
            self._record(
                at,
                replica.write(entity_id, "notes", op.content, author="tech", now_ms=self.now(at)),
            )

    def _captures(
        self, at: int, entity_id: str, name: str
    ) -> list[tuple[CausalContext, frozenset[int]]]:
        # Index 0 is the empty context: a blind write that read nothing.
        return self.captured.setdefault((at, entity_id, name), [(CausalContext(), frozenset())])

    def _write(self, at: int, op: Write) -> None:
        entity_id = ENTITY_IDS[op.entity]
        key = ("mv", entity_id, op.field)
        context: CausalContext | None
        if op.stale is None:
            context, past = None, self.seen(at, key)
        else:
            options = self._captures(at, entity_id, op.field)
            context, past = options[op.stale % len(options)]
        delta = self.replicas[at].write(
            entity_id, op.field, op.value, author="eng", now_ms=self.now(at), context=context
        )
        self._record_mv(at, key, delta, past, stale=op.stale is not None, resolution=False)

    def _record_mv(
        self,
        at: int,
        key: OracleKey,
        delta: Delta,
        past: frozenset[int],
        *,
        stale: bool,
        resolution: bool,
    ) -> None:
        delta_id = self._record(at, delta, key, past)
        assert isinstance(delta.state, MVRegister)
        (sibling,) = delta.state.siblings.values()
        self.mv_writes.append(
            MVWrite(delta_id, at, key, sibling.value, sibling.dot, stale, resolution)
        )

    def _resolve(self, at: int, op: Resolve) -> None:
        found = self.replicas[at].conflicts()
        if not found:
            return
        conflict = found[op.pick % len(found)]
        value = conflict.siblings[op.value_pick % len(conflict.siblings)].value
        key = ("mv", conflict.entity, conflict.field)
        delta = self.replicas[at].resolve(
            conflict.entity,
            conflict.field,
            value,
            covering=conflict.context,
            author="reviewer",
            now_ms=self.now(at),
        )
        self._record_mv(at, key, delta, self.seen(at, key), stale=False, resolution=True)

    def sync_all(self, seed: int = 0) -> None:
        """Deliver every delta to every replica, each in its own shuffled order."""
        rng = random.Random(seed)
        for dst in range(self.k):
            missing = sorted(set(range(len(self.log))) - self.has[dst])
            rng.shuffle(missing)
            for delta_id in missing:
                self._deliver(dst, delta_id)

    # -- oracle verdicts -------------------------------------------------------
    def mv_keys(self) -> list[OracleKey]:
        return sorted({w.key for w in self.mv_writes})

    def writes_to(self, key: OracleKey) -> list[MVWrite]:
        return [w for w in self.mv_writes if w.key == key]

    def maximal(self, ids: Iterable[int]) -> set[int]:
        """The writes no other write (among ``ids``) had seen: the concurrent frontier."""
        ids = set(ids)
        covered: set[int] = set()
        for write_id in ids:
            covered |= self.past[write_id]
        return ids - covered

    def expected_elements(self, entity_id: str) -> set[Hashable]:
        """Add-wins: an element is in iff some add of it was seen by no later op on it."""
        present: set[Hashable] = set()
        by_element: dict[tuple[type, Hashable], list[int]] = {}
        for delta_id, (_, element) in self.set_ops.items():
            if self.key_of[delta_id][1] == entity_id:
                by_element.setdefault((type(element), element), []).append(delta_id)
        for ids in by_element.values():
            for delta_id in self.maximal(ids):
                kind, element = self.set_ops[delta_id]
                if kind == "add":
                    present.add(element)
        return present


# ---------------------------------------------------------------- field states


def fresh_replay(
    sim: Simulation, seed: int, name: str = "fresh", duplicates: float = 0.3
) -> ReplicaState:
    """A new replica that receives every delta of ``sim`` in a random order, with duplicates."""
    rng = random.Random(seed)
    order = list(range(len(sim.log)))
    order += [d for d in order if rng.random() < duplicates]
    rng.shuffle(order)
    fresh = ReplicaState(name, SCHEMAS)
    for delta_id in order:
        fresh.apply(sim.log[delta_id])
    return fresh


#: The bottom (never written) state of each field CRDT: the identity of join.
BOTTOMS: dict[type, Callable[[], Any]] = {
    MVRegister: MVRegister,
    ORSet: ORSet,
    PNCounter: PNCounter,
    LWWRegister: LWWRegister,
    SingleWriterRegister: SingleWriterRegister,
    GrowOnlyLog: GrowOnlyLog,
    TextCrdt: TextCrdt,
}


def join_all(states: Sequence[Any], bottom: Any) -> Any:
    """``bottom`` joined with each of ``states`` in order."""
    out = bottom
    for s in states:
        out = out.join(s)
    return out
