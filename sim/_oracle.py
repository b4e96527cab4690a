"""The oracle: what each replica must hold, from the global trace alone.

The oracle never reads a CRDT's contexts, dots or clocks. It keeps its own
list of every acknowledged write (a write is acknowledged once it is
committed at its replica) and, per replica, the vector of writes that
replica has applied — advanced from the engine's ``DeltasApplied`` /
``SnapshotApplied`` events, checked to be gap-free, and cross-checked against
``engine.vv`` after every event (the ``vv-accounting`` checker). From those
two it derives, for any replica at any moment, the expected value of every
field:

* **Shared registers.** A write *covers* every write to the same register
  that was applied at its replica when it was made (for a stale read-then-
  write, when it was read), and transitively what those covered. The
  expected siblings are the applied writes that no applied write covers —
  exactly the concurrent ones (happens-before as in Lamport 1978 / Fidge
  1988, restricted to the register, because the register's state is all a
  reader saw). Covered sets are per-writer prefixes, so each is a small
  vector; a prefix maximum per writer makes any query O(writers).
* **Add-wins sets** (Shapiro et al. 2011, OR-Set): each add or remove of an
  element *observes* the adds present at its replica; an add survives
  unless some applied operation observed it.
* **Counters**: the sum of applied increments. **Logs**: the applied
  entries. **Reported state**: the home's last applied write.
* **Text**: the workload inserts unique tokens at token boundaries and
  deletes whole tokens, so the text must be the surviving tokens, each once.
* **Labels** (LWW on a hybrid clock): the winner must be a write no applied
  label write had already seen — a later write never loses to one its
  writer had applied, whatever the clocks said (Kulkarni et al. 2014).

This is the model-based testing of Jepsen's checkers (Kingsbury) and the
"reference model" of TigerBeetle's VOPR: a deliberately simple, slow,
operation-based model of the same semantics, compared against the real
state-based implementation.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twinmesh.crdt import actor_origin, epoch_actor

__all__ = [
    "Create",
    "Increment",
    "LabelWrite",
    "LogAppend",
    "Op",
    "Oracle",
    "RegisterWrite",
    "ReportedWrite",
    "SetAdd",
    "SetRemove",
    "TextDelete",
    "TextInsert",
    "WriteRecord",
]

Vector = Mapping[str, int]


# ------------------------------------------------------------------ operations


@dataclass(frozen=True, slots=True, kw_only=True)
class Create:
    entity: str
    model: str
    home: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterWrite:
    entity: str
    field: str
    value: Any
    read: Mapping[str, int] | None = None  # applied vector when read (stale writes)
    resolves: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SetAdd:
    entity: str
    field: str
    element: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRemove:
    entity: str
    field: str
    element: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Increment:
    entity: str
    field: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TextInsert:
    entity: str
    field: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelete:
    entity: str
    field: str
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LogAppend:
    entity: str
    field: str
    key: str
    event: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelWrite:
    entity: str
    field: str
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportedWrite:
    entity: str
    field: str
    value: Any


Op = (
    Create
    | RegisterWrite
    | SetAdd
    | SetRemove
    | Increment
    | TextInsert
    | TextDelete
    | LogAppend
    | LabelWrite
    | ReportedWrite
)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecord:
    replica: str
    seq: int
    t: float
    op: Op


# ------------------------------------------------------------------ per-key models


def _join_into(target: dict[str, int], other: Mapping[str, int]) -> None:
    for r, n in other.items():
        if n > target.get(r, 0):
            target[r] = n


@dataclass(slots=True)
class _Series:
    """One writer's operations on one key, in its sequence order."""

    seqs: list[int] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)

    def applied(self, vector: Vector, origin: str) -> int:
        return bisect_right(self.seqs, vector.get(origin, 0))


class _Register:
    """One shared register's writes, per actor (a replica in one epoch of its
    life: crdt/_clocks.py), which is what its dots and contexts count."""

    __slots__ = ("by_origin", "covers", "cum")

    def __init__(self) -> None:
        self.by_origin: dict[str, _Series] = {}
        self.cum: dict[str, list[dict[str, int]]] = {}  # prefix-max of covered sets
        # Each write's own covered set (not the prefix maximum): the pairwise
        # happens-before of two writes, which the conflict-pairs checker needs.
        # A stale write does not cover its writer's own later-read writes, so
        # the prefix maximum would over-approximate a pair's order.
        self.covers: dict[str, list[dict[str, int]]] = {}

    def _state(self, vector: Vector) -> tuple[dict[str, int], dict[str, int]]:
        """(writes applied per writer, writes covered per writer) under ``vector``."""
        applied: dict[str, int] = {}
        covered: dict[str, int] = {}
        for actor, series in self.by_origin.items():
            # Vectors count the replica's writes, whatever epoch made them.
            k = series.applied(vector, actor_origin(actor) or actor)
            if k:
                applied[actor] = k
                _join_into(covered, self.cum[actor][k - 1])
        return applied, covered

    def write(self, origin: str, seq: int, value: Any, read: Vector) -> int:
        """``origin`` is the writing actor; ``seq`` its replica's sequence number."""
        applied, covered = self._state(read)
        _join_into(covered, applied)
        series = self.by_origin.setdefault(origin, _Series())
        cums = self.cum.setdefault(origin, [])
        series.seqs.append(seq)
        series.items.append(value)
        prefix = dict(cums[-1]) if cums else {}
        _join_into(prefix, covered)
        cums.append(prefix)
        self.covers.setdefault(origin, []).append(covered)
        return len(series.seqs)

    def context(self, vector: Vector) -> dict[str, int]:
        """Per writer, the register writes a replica under ``vector`` has seen:
        those applied and those an applied write covered (what its causal
        context must hold, as a contiguous vector)."""
        applied, covered = self._state(vector)
        _join_into(covered, applied)
        return covered

    def happened_before(self, a: tuple[str, int], b: tuple[str, int]) -> bool:
        """Write ``a`` was applied (or covered) where ``b`` was written, before it."""
        covers = self.covers.get(b[0])
        return covers is not None and covers[b[1] - 1].get(a[0], 0) >= a[1]

    def siblings(self, vector: Vector) -> dict[tuple[str, int], Any]:
        applied, covered = self._state(vector)
        out: dict[tuple[str, int], Any] = {}
        for origin, k in applied.items():
            items = self.by_origin[origin].items
            for i in range(covered.get(origin, 0) + 1, k + 1):
                out[(origin, i)] = items[i - 1]
        return out


@dataclass(slots=True)
class _SetOp:
    origin: str
    seq: int
    add: bool
    ident: int
    observed: frozenset[int]


class _Element:
    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[_SetOp] = []

    def present(self, vector: Vector) -> set[int]:
        adds: set[int] = set()
        observed: set[int] = set()
        for op in self.ops:
            if op.seq <= vector.get(op.origin, 0):
                if op.add:
                    adds.add(op.ident)
                observed |= op.observed
        return adds - observed


@dataclass(slots=True)
class _Label:
    origin: str
    seq: int
    value: Any
    seen: Mapping[str, int]


# ------------------------------------------------------------------ the oracle


class Oracle:
    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes = tuple(nodes)
        self.applied: dict[str, dict[str, int]] = {n: {} for n in self.nodes}
        self.total: dict[str, int] = {}
        # Sums of the above, kept as they move, so that lag() is O(1): it was
        # an O(replicas x origins) walk per sample, every gossip interval of
        # the liveness phase (at 500 plants 250k steps per simulated second).
        self._applied_sum: dict[str, int] = dict.fromkeys(self.nodes, 0)
        self._total_sum = 0
        self.writes: list[WriteRecord] = []
        self.problems: list[str] = []  # accounting violations (vv-accounting)
        self.entities: dict[str, tuple[str, str]] = {}  # id -> (model, home)
        self._entity_first: dict[str, dict[str, int]] = {}  # id -> origin -> first seq
        self.registers: dict[tuple[str, str], _Register] = {}
        self.sets: dict[tuple[str, str], dict[Any, _Element]] = {}
        self.counters: dict[tuple[str, str], dict[str, _Series]] = {}
        self.logs: dict[tuple[str, str], dict[str, _Series]] = {}
        self.text_inserts: dict[tuple[str, str], dict[str, _Series]] = {}
        self.text_deletes: dict[tuple[str, str], dict[str, _Series]] = {}
        self.labels: dict[tuple[str, str], list[_Label]] = {}
        self.reported: dict[tuple[str, str], tuple[str, _Series]] = {}
        self.resolutions = 0
        # Per replica, the epoch it writes shared fields in: a restart after a
        # crash begins a new one (crdt/_clocks.py), which the trace tells us.
        self.epochs: dict[str, int] = {}
        self._set_ids = 0
        # origin -> the (entity, field) each of its writes touched, by seq - 1:
        # which keys a DeltasApplied event must have changed at the receiver.
        self.touched: dict[str, list[tuple[str, str | None]]] = {}

    # ------------------------------------------------------------ the trace

    def record(self, replica: str, seq: int, op: Op, t: float) -> WriteRecord:
        """A write acknowledged at ``replica`` with sequence number ``seq``."""
        seen = self.applied[replica]
        if seq != seen.get(replica, 0) + 1:
            self.problems.append(
                f"t={t:.3f}: {replica} committed seq {seq}, "
                f"oracle expected {seen.get(replica, 0) + 1}"
            )
        snapshot = dict(seen)
        entity = op.entity
        if isinstance(op, Create):
            self.entities[entity] = (op.model, op.home)
        first = self._entity_first.setdefault(entity, {})
        first.setdefault(replica, seq)
        if isinstance(op, RegisterWrite):
            reg = self.registers.setdefault((entity, op.field), _Register())
            read = op.read if op.read is not None else snapshot
            reg.write(epoch_actor(replica, self.epochs.get(replica, 0)), seq, op.value, read)
            self.resolutions += op.resolves
        elif isinstance(op, SetAdd | SetRemove):
            elements = self.sets.setdefault((entity, op.field), {})
            element = elements.setdefault(op.element, _Element())
            self._set_ids += 1
            element.ops.append(
                _SetOp(
                    origin=replica,
                    seq=seq,
                    add=isinstance(op, SetAdd),
                    ident=self._set_ids,
                    observed=frozenset(element.present(snapshot)),
                )
            )
        elif isinstance(op, Increment):
            series = self.counters.setdefault((entity, op.field), {}).setdefault(replica, _Series())
            before = series.items[-1] if series.items else 0
            series.seqs.append(seq)
            series.items.append(before + op.amount)
        elif isinstance(op, LogAppend):
            series = self.logs.setdefault((entity, op.field), {}).setdefault(replica, _Series())
            series.seqs.append(seq)
            series.items.append((op.key, op.event))
        elif isinstance(op, TextInsert | TextDelete):
            table = self.text_inserts if isinstance(op, TextInsert) else self.text_deletes
            self.text_inserts.setdefault((entity, op.field), {})
            series = table.setdefault((entity, op.field), {}).setdefault(replica, _Series())
            series.seqs.append(seq)
            series.items.append(op.token)
        elif isinstance(op, LabelWrite):
            self.labels.setdefault((entity, op.field), []).append(
                _Label(origin=replica, seq=seq, value=op.value, seen=snapshot)
            )
        elif isinstance(op, ReportedWrite):
            home, series = self.reported.setdefault((entity, op.field), (replica, _Series()))
            if home != replica:
                self.problems.append(f"reported write to {entity}.{op.field} at {replica}")
            series.seqs.append(seq)
            series.items.append(op.value)
        self._applied_sum[replica] += seq - seen.get(replica, 0)
        seen[replica] = seq
        self._total_sum += seq - self.total.get(replica, 0)
        self.total[replica] = seq
        self.touched.setdefault(replica, []).append(
            (entity, None if isinstance(op, Create) else op.field)
        )
        record = WriteRecord(replica=replica, seq=seq, t=t, op=op)
        self.writes.append(record)
        return record

    def new_epoch(self, replica: str) -> None:
        """``replica`` restarted after a crash: its next shared-field writes
        are a new actor's (``Store.begin_epoch`` in a node)."""
        self.epochs[replica] = self.epochs.get(replica, 0) + 1

    def delivered(self, replica: str, origin: str, first: int, last: int, t: float) -> None:
        """``replica`` reports it applied ``origin``'s writes ``first..last``."""
        have = self.applied[replica].get(origin, 0)
        if first != have + 1 or last < first:
            self.problems.append(
                f"t={t:.3f}: {replica} applied {origin}:{first}..{last} "
                f"holding {origin} up to {have}"
            )
        if last > self.total.get(origin, 0):
            self.problems.append(
                f"t={t:.3f}: {replica} applied {origin}:{first}..{last}, "
                f"but {origin} acknowledged only {self.total.get(origin, 0)} writes"
            )
        if last > have:
            self.applied[replica][origin] = last
            self._applied_sum[replica] += last - have

    def snapshot(self, replica: str, vector: Mapping[str, int], t: float) -> None:
        mine = self.applied[replica]
        for origin, n in vector.items():
            if n > self.total.get(origin, 0):
                self.problems.append(
                    f"t={t:.3f}: snapshot at {replica} claims {origin}:{n}, "
                    f"{origin} acknowledged only {self.total.get(origin, 0)}"
                )
            if n > mine.get(origin, 0):
                self._applied_sum[replica] += n - mine.get(origin, 0)
                mine[origin] = n

    def keys_written(self, origin: str, first: int, last: int) -> set[tuple[str, str | None]]:
        """The (entity, field) keys ``origin``'s writes ``first..last`` touched."""
        return set(self.touched.get(origin, ())[max(first, 1) - 1 : last])

    @staticmethod
    def order(x: Vector, y: Vector) -> str:
        """How the write sets ``x`` and ``y`` stand for relate, by set inclusion
        (each is a gap-free prefix per origin, so a prefix length per origin
        is the whole set): "before", "after", "equal" or "concurrent"."""
        x_in_y = all(n <= y.get(r, 0) for r, n in x.items() if n)
        y_in_x = all(n <= x.get(r, 0) for r, n in y.items() if n)
        if x_in_y and y_in_x:
            return "equal"
        if x_in_y:
            return "before"
        if y_in_x:
            return "after"
        return "concurrent"

    def lag(self, replica: str) -> int:
        """Acknowledged writes ``replica`` has not applied yet."""
        # Every origin a replica applied is in ``total`` (delivered() and
        # snapshot() flag any that is not), so the walk's sum is this.
        return self._total_sum - self._applied_sum[replica]

    # ------------------------------------------------------------ expectations

    def entities_at(self, vector: Vector) -> dict[str, tuple[str, str]]:
        out = {}
        for entity, firsts in self._entity_first.items():
            if any(seq <= vector.get(o, 0) for o, seq in firsts.items()):
                out[entity] = self.entities.get(entity, ("?", "?"))
        return out

    def register_siblings(self, key: tuple[str, str], vector: Vector) -> dict[tuple[str, int], Any]:
        return self.registers[key].siblings(vector)

    def set_elements(self, key: tuple[str, str], vector: Vector) -> set[Any]:
        return {e for e, el in self.sets[key].items() if el.present(vector)}

    def counter(self, key: tuple[str, str], vector: Vector) -> int:
        total = 0
        for origin, series in self.counters[key].items():
            k = series.applied(vector, origin)
            if k:
                total += series.items[k - 1]
        return total

    def log_entries(self, key: tuple[str, str], vector: Vector) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for origin, series in self.logs[key].items():
            for k, event in series.items[: series.applied(vector, origin)]:
                out[k] = event
        return out

    def text_tokens(self, key: tuple[str, str], vector: Vector) -> set[str]:
        inserted: set[str] = set()
        for origin, series in self.text_inserts.get(key, {}).items():
            inserted.update(series.items[: series.applied(vector, origin)])
        for origin, series in self.text_deletes.get(key, {}).items():
            inserted.difference_update(series.items[: series.applied(vector, origin)])
        return inserted

    def label_problem(
        self, key: tuple[str, str], vector: Vector, winner: tuple[str, Any] | None
    ) -> str | None:
        """Why ``winner`` (writer, value) cannot be the label's value, or None."""
        applied = [w for w in self.labels[key] if w.seq <= vector.get(w.origin, 0)]
        if not applied:
            return None if winner is None else f"holds {winner!r} but no label write applied"
        if winner is None:
            return f"is empty after {len(applied)} applied writes"
        candidates = [w for w in applied if (w.origin, w.value) == winner]
        if not candidates:
            return f"holds {winner!r}, which no applied write wrote"
        for c in candidates:
            dominated = [w for w in applied if w is not c and w.seen.get(c.origin, 0) >= c.seq]
            if not dominated:
                return None
        c = candidates[-1]
        by = next(w for w in applied if w is not c and w.seen.get(c.origin, 0) >= c.seq)
        return (
            f"kept {c.origin}:{c.seq} {c.value!r}, though {by.origin}:{by.seq} {by.value!r} "
            f"was written after applying it (a later write lost to an earlier one)"
        )

    def reported_value(self, key: tuple[str, str], vector: Vector) -> tuple[bool, Any]:
        home, series = self.reported[key]
        k = series.applied(vector, home)
        return (k > 0, series.items[k - 1] if k else None)
