"""One replica's twin state: every entity it knows, and the mutators that turn
a user's request into a delta.

A mutator checks the request against the schema, builds the delta, joins it
into this replica and returns it for gossip. ``apply`` joins a delta that came
from elsewhere after checking it against the same rules; a delta that breaks
them raises ``RemoteProtocolError`` and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import msgspec

from ._clocks import CausalContext, HybridClock, HybridTime, actor_origin, epoch_actor
from ._entity import FIELD_TYPES, Conflict, Entity, EntityHeader, FieldState, conflicts
from ._errors import LocalProtocolError, RemoteProtocolError
from ._mvregister import MVRegister
from ._orset import ORSet
from ._scalars import GrowOnlyLog, LWWRegister, PNCounter, SingleWriterRegister
from ._schema import EntitySchema, FieldKind, FieldSpec, ValueType, check_plain_value
from ._text import TextCrdt
from ._values import canonical

__all__ = ["FLEET_HOME", "Delta", "ReplicaState"]

# Not bool: Python treats True as 1 (equal and same hash), so a set could not
# tell them apart and replicas holding both would encode differently.
_SET_ELEMENT_TYPES = (str, int, bytes)

#: The home of fleet-wide entities: owned by no replica, creatable by any.
#: Node names are ``[a-z0-9-]`` only, so it cannot be a node's name.
FLEET_HOME = "*"

_isfinite = math.isfinite

_KIND_OF_TYPE: dict[type, FieldKind] = {cls: kind for kind, cls in FIELD_TYPES.items()}


class Delta(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One write, as it travels: who made it, to what, and the field's delta state.

    ``field is None`` creates the entity. ``state`` is never mutated once the
    delta exists. A frozen, keyword-only msgspec ``Struct``: the same contract
    as a frozen slotted dataclass, built in C (~80 ns against ~1 µs), which
    matters because every remote delta is one. ``gc=False``: a delta refers to
    its field state, never the other way round, so it closes no cycle.
    """

    origin: str
    author: str
    entity: str
    model: str
    home: str
    field: str | None = None
    state: FieldState | None = None

    @property
    def header(self) -> EntityHeader:
        return EntityHeader(id=self.entity, model=self.model, home=self.home)


class ReplicaState:
    """The entities one replica holds, keyed by id."""

    __slots__ = ("clock", "entities", "epoch", "replica", "schemas")

    def __init__(
        self,
        replica: str,
        schemas: Mapping[str, EntitySchema],
        clock: HybridClock | None = None,
    ) -> None:
        if not replica:
            raise LocalProtocolError("a replica needs a non-empty id")
        self.replica = replica
        self.schemas = schemas
        self.entities: dict[str, Entity] = {}
        self.clock = clock or HybridClock()
        # This incarnation's epoch: shared-field writes issue their dots as
        # ``epoch_actor(replica, epoch)`` (crdt/_clocks.py, issue 17). The
        # owner of the durable store sets it before the first local write.
        self.epoch = 0

    @property
    def actor(self) -> str:
        """The name this replica's shared-field writes issue their dots under."""
        return epoch_actor(self.replica, self.epoch)

    # Reading -----------------------------------------------------------
    def entity(self, entity_id: str) -> Entity:
        try:
            return self.entities[entity_id]
        except KeyError:
            raise LocalProtocolError(f"no entity {entity_id!r}") from None

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities[k] for k in sorted(self.entities))

    def conflicts(self) -> list[Conflict]:
        return [c for e in self for c in conflicts(e)]

    def schema(self, model: str) -> EntitySchema:
        try:
            return self.schemas[model]
        except KeyError:
            raise LocalProtocolError(f"unknown model {model!r}") from None

    # Local mutators ------------------------------------------------------
    def create(self, entity_id: str, model: str, *, author: str, home: str | None = None) -> Delta:
        """Create an entity whose home is this replica, or a fleet-wide one.

        ``home=FLEET_HOME`` creates an entity no replica owns (a replicated
        model document): any replica may create it, and concurrent creations
        carry the same header, so they join instead of colliding. Such an
        entity can have no reported fields (nobody is home to write them).
        """
        if home is None:
            home = self.replica
        if home not in (self.replica, FLEET_HOME):
            raise LocalProtocolError(
                f"{self.replica} creates entities at home here or fleet-wide, not at {home!r}"
            )
        if entity_id in self.entities:
            raise LocalProtocolError(f"entity {entity_id!r} already exists")
        if not entity_id or len(entity_id) > 256:
            raise LocalProtocolError("entity ids are 1..256 characters")
        check_plain_value(entity_id, where="entity id")
        self.schema(model)
        delta = Delta(origin=self.replica, author=author, entity=entity_id, model=model, home=home)
        self._join(delta)
        return delta

    def _field_delta(self, entity: Entity, name: str, state: FieldState, author: str) -> Delta:
        delta = Delta(
            origin=self.replica,
            author=author,
            entity=entity.id,
            model=entity.header.model,
            home=entity.header.home,
            field=name,
            state=state,
        )
        self._join(delta)
        return delta

    def _prepare(
        self, entity_id: str, name: str, kind: FieldKind | tuple[FieldKind, ...]
    ) -> Entity:
        entity = self.entity(entity_id)
        spec = entity.spec(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if spec.kind not in kinds:
            raise LocalProtocolError(
                f"{entity_id}.{name} is a {spec.kind.value} field; this operation needs "
                + " or ".join(k.value for k in kinds)
            )
        return entity

    def write(
        self,
        entity_id: str,
        name: str,
        value: Any,
        *,
        author: str,
        now_ms: int,
        context: CausalContext | None = None,
    ) -> Delta:
        """Set a register-like field (shared, reported, label) or replace a text.

        ``context`` applies to shared fields: the context the writer read. A
        stale context leaves the siblings it did not see in place — a conflict
        rather than a silent overwrite. ``None`` means "overwrite what is here".
        """
        entity = self._prepare(
            entity_id, name, (FieldKind.SHARED, FieldKind.REPORTED, FieldKind.LABEL, FieldKind.TEXT)
        )
        spec = entity.spec(name)
        value = canonical(value)
        spec.check_value(value, where=f"{entity_id}.{name}")
        state = entity.field(name)
        time = self.clock.tick(now_ms)
        delta_state: FieldState
        if isinstance(state, MVRegister):
            if context is not None and not context.issubset(state.ctx):
                raise LocalProtocolError(
                    f"{entity_id}.{name}: the context {context!r} names writes this replica "
                    "has not seen; read the field here before writing"
                )
            delta_state = state.write(
                value, replica=self.actor, author=author, time=time, context=context
            )
        elif isinstance(state, SingleWriterRegister):
            delta_state = state.write(
                value, replica=self.replica, home=entity.header.home, time=time
            )
        elif isinstance(state, LWWRegister):
            delta_state = state.write(value, replica=self.replica, time=time)
        else:
            assert isinstance(state, TextCrdt)
            delta_state = state.replace(value, replica=self.replica)
        return self._field_delta(entity, name, delta_state, author)

    def resolve(
        self,
        entity_id: str,
        name: str,
        value: Any,
        *,
        covering: CausalContext,
        author: str,
        now_ms: int,
    ) -> Delta:
        """Settle a conflict: a write whose context must cover every sibling."""
        entity = self._prepare(entity_id, name, FieldKind.SHARED)
        state = entity.field(name)
        assert isinstance(state, MVRegister)
        missing = [s.dot for s in state.sorted_siblings() if s.dot not in covering]
        if missing:
            raise LocalProtocolError(
                f"{entity_id}.{name}: the resolution does not cover sibling(s) "
                + ", ".join(str(d) for d in missing)
                + "; read the conflict again and resolve what it shows now"
            )
        return self.write(entity_id, name, value, author=author, now_ms=now_ms, context=covering)

    def add(self, entity_id: str, name: str, element: Hashable, *, author: str) -> Delta:
        entity = self._prepare(entity_id, name, FieldKind.SET)
        _check_element(element, where=f"{entity_id}.{name}")
        state = entity.field(name)
        assert isinstance(state, ORSet)
        return self._field_delta(entity, name, state.add(element, replica=self.replica), author)

    def remove(self, entity_id: str, name: str, element: Hashable, *, author: str) -> Delta:
        entity = self._prepare(entity_id, name, FieldKind.SET)
        state = entity.field(name)
        assert isinstance(state, ORSet)
        return self._field_delta(entity, name, state.remove(element, replica=self.replica), author)

    def increment(self, entity_id: str, name: str, amount: int, *, author: str) -> Delta:
        entity = self._prepare(entity_id, name, FieldKind.COUNTER)
        state = entity.field(name)
        assert isinstance(state, PNCounter)
        return self._field_delta(
            entity, name, state.increment(amount, replica=self.replica), author
        )

    def edit_text(
        self,
        entity_id: str,
        name: str,
        *,
        index: int,
        delete: int = 0,
        insert: str = "",
        author: str,
    ) -> Delta:
        entity = self._prepare(entity_id, name, FieldKind.TEXT)
        state = entity.field(name)
        assert isinstance(state, TextCrdt)
        delta_state = state.delete(index, delete, replica=self.replica) if delete else None
        if delete and insert:
            # One edit, one delta: apply the delete to a scratch copy, then insert.
            assert delta_state is not None
            scratch = state.join(delta_state)
            delta_state = delta_state.join(scratch.insert(index, insert, replica=self.replica))
        elif insert:
            delta_state = state.insert(index, insert, replica=self.replica)
        if delta_state is None:
            raise LocalProtocolError("a text edit must delete or insert something")
        return self._field_delta(entity, name, delta_state, author)

    def append(self, entity_id: str, name: str, key: str, event: Any, *, author: str) -> Delta:
        entity = self._prepare(entity_id, name, FieldKind.LOG)
        if not isinstance(key, str) or not key or len(key) > 256:
            raise LocalProtocolError("log event ids are strings of 1..256 characters")
        check_plain_value(key, where=f"{entity_id}.{name} event id")
        event = canonical(event)
        entity.spec(name).check_value(event, where=f"{entity_id}.{name}[{key}]")
        state = entity.field(name)
        assert isinstance(state, GrowOnlyLog)
        return self._field_delta(entity, name, state.append(key, event), author)

    # Joining ---------------------------------------------------------------
    def apply(self, delta: Delta, *, now_ms: int | None = None) -> None:
        """Join a delta made elsewhere; refuse it whole if it breaks a rule."""
        self.check(delta)
        self._join(delta)
        if now_ms is not None and delta.state is not None:
            seen = _hybrid_time_of(delta.state)
            if seen is not None:
                self.clock.observe(seen, now_ms)

    def apply_many(self, deltas: Sequence[Delta], *, now_ms: int | None = None) -> None:
        """Join a batch atomically: every delta is checked before any is joined,
        so a batch with one bad delta changes nothing."""
        self._check_batch(deltas)
        # ``_join``, ``merge`` of the common kinds and ``_hybrid_time_of``,
        # inlined: this loop runs once per remote delta, and a Python call
        # costs more than the join of a one-sibling register itself.
        latest: HybridTime | None = None
        entities = self.entities
        last_id: str | None = None
        fields: dict[str, FieldState] = {}
        for delta in deltas:
            entity_id = delta.entity
            if entity_id != last_id:  # a batch often holds runs of one entity
                entity = entities.get(entity_id)
                if entity is None:
                    entity = entities[entity_id] = Entity(
                        EntityHeader(id=entity_id, model=delta.model, home=delta.home),
                        self.schemas[delta.model],
                    )
                fields = entity.fields
                last_id = entity_id
            name, state = delta.field, delta.state
            if name is None or state is None:
                continue
            current = fields.get(name)
            t = type(state)
            if t is MVRegister:
                # (No ``assert isinstance`` to narrow types in these loops: it
                # costs a call per delta; ``t`` is the exact type.)
                theirs = state.siblings  # type: ignore[union-attr]
                if current is None:
                    fields[name] = state.copy()
                elif len(theirs) == 1 and len(current.siblings) == 1:  # type: ignore[union-attr]
                    # ``MVRegister.merge`` of one sibling into one, inlined
                    # (the common case: a field written at one place at a time).
                    mine = current.siblings  # type: ignore[union-attr]
                    octx, sctx = state.ctx, current.ctx  # type: ignore[union-attr]
                    ((d, s),) = theirs.items()
                    ((m, _),) = mine.items()
                    svv, scloud = sctx._vv, sctx._cloud
                    if (octx._vv.get(m.replica, 0) >= m.counter or m in octx._cloud) and m != d:
                        del mine[m]
                    if svv.get(d.replica, 0) < d.counter and d not in scloud:
                        mine[d] = s
                    sctx.update(octx)
                else:
                    current.merge(state)  # type: ignore[arg-type]
                for sib in theirs.values():
                    if latest is None or sib.time > latest:
                        latest = sib.time
                continue
            if current is None:
                fields[name] = state.copy()
            else:
                current.merge(state)  # type: ignore[arg-type]
            if t is LWWRegister or t is SingleWriterRegister:
                seen = state.time  # type: ignore[union-attr]
                if seen is not None and (latest is None or seen > latest):
                    latest = seen
        if now_ms is not None and latest is not None:
            self.clock.observe(latest, now_ms)

    def _check_batch(self, deltas: Sequence[Delta]) -> None:
        """``check`` every delta of a batch, and that the batch gives each
        entity one header; raises ``RemoteProtocolError`` for the first bad one.

        The same rules and reasons as ``check`` one by one, with the work that
        depends only on the (model, field) or the entity done once per batch:
        the schema and field spec are looked up once per model and field, an
        entity's header is compared with ours once, and a string value the
        field's type accepted is not checked again (values repeat: enum
        members, dates). Shared fields, the most common kind, are checked
        inline; every other kind goes through ``check``."""
        first_of: dict[str, Delta] = {}
        # model -> field -> (its spec, its CRDT type, the strings it accepted,
        # whether it takes doubles)
        specs: dict[str, dict[str, tuple[FieldSpec, type, set[str], bool]]] = {}
        entities = self.entities
        check = self.check
        for delta in deltas:
            entity_id = delta.entity
            first = first_of.get(entity_id)
            if first is None:
                first_of[entity_id] = delta
                existing = entities.get(entity_id)
                if existing is not None:
                    h = existing.header
                    if h.model != delta.model or h.home != delta.home:
                        check(delta)  # raises, naming both headers
            elif first.model != delta.model or first.home != delta.home:
                if entity_id in entities:
                    check(delta)  # disagrees with ours too: that reason first
                raise RemoteProtocolError(
                    f"batch gives entity {entity_id} two headers: "
                    f"{first.model} at home {first.home} and {delta.model} at home {delta.home}"
                )
            name = delta.field
            state = delta.state
            t = type(state)
            if name is None or t is TextCrdt or t is GrowOnlyLog or t is SingleWriterRegister:
                check(delta)  # the rarer kinds: the rules one delta at a time
                continue
            of_model = specs.get(delta.model)
            if of_model is None:
                of_model = specs[delta.model] = {}
            info = of_model.get(name)
            if info is None:
                schema = self.schemas.get(delta.model)
                spec = None if schema is None else schema.fields.get(name)
                if spec is None or _KIND_OF_TYPE.get(t) is not spec.kind:
                    check(delta)  # raises with the reason
                    raise AssertionError("check passed a delta it must refuse")  # pragma: no cover
                floats = spec.value_type is ValueType.DOUBLE or spec.value_type is ValueType.ANY
                info = of_model[name] = (spec, t, set(), floats)
            elif info[1] is not t:
                check(delta)  # raises: the wrong kind of state for the field
            spec, _, accepted, floats = info
            origin = delta.origin
            # (``t`` is the exact type, so no ``assert isinstance`` to narrow
            # it: that would cost a call per delta.)
            if t is MVRegister:
                for sib in state.siblings.values():  # type: ignore[union-attr]
                    actor = sib.dot.replica
                    if actor != origin and actor_origin(actor) != origin:
                        check(delta)  # raises: not written by the origin (or its epochs)
                    value = sib.value
                    vt = type(value)
                    if not (
                        (vt is float and floats and _isfinite(value))
                        or (vt is str and value in accepted)
                    ):
                        _check_value_memo(delta, spec, value, accepted, floats)
            elif t is PNCounter:
                pos = state.pos  # type: ignore[union-attr]
                if state.neg or len(pos) != 1 or origin not in pos:  # type: ignore[union-attr]
                    check(delta)  # the general rule (raises if it touches others' totals)
            elif t is LWWRegister:
                if state.replica != origin:  # type: ignore[union-attr]
                    check(delta)  # raises: not written by the origin
                _check_value_memo(delta, spec, state.value, accepted, floats)  # type: ignore[union-attr]
            else:
                check(delta)  # a set

    def check(self, delta: Delta) -> None:
        """Raise ``RemoteProtocolError`` if ``delta`` may not be joined here.

        Runs for every remote delta, so the common path builds no strings:
        the place named in an error is formatted only when there is one."""
        schema = self.schemas.get(delta.model)
        if schema is None:
            raise RemoteProtocolError(f"{_where(delta)}: unknown model {delta.model!r}")
        existing = self.entities.get(delta.entity)
        if existing is not None:
            h = existing.header
            if h.model != delta.model or h.home != delta.home:
                raise RemoteProtocolError(
                    f"{_where(delta)}: entity is a {h.model} at home {h.home}, "
                    f"delta says {delta.model} at home {delta.home}"
                )
        if delta.field is None:
            if delta.state is not None:
                raise RemoteProtocolError(f"{_where(delta)}: a creation carries no field state")
            if delta.origin != delta.home and delta.home != FLEET_HOME:
                raise RemoteProtocolError(
                    f"{_where(delta)}: only the home replica {delta.home} creates the entity"
                )
            return
        spec = schema.fields.get(delta.field)
        if spec is None:
            raise RemoteProtocolError(
                f"{_where(delta)}: model {delta.model} has no field {delta.field!r}"
            )
        state = delta.state
        t = type(state)
        # Keyed by the state's type, not by the kind: an enum member hashes in
        # Python, a class in C.
        if _KIND_OF_TYPE.get(t) is not spec.kind:
            expected = FIELD_TYPES[spec.kind]
            raise RemoteProtocolError(
                f"{_where(delta)}.{delta.field}: a {spec.kind.value} field takes a "
                f"{expected.__name__}"
            )
        origin = delta.origin
        try:
            if isinstance(state, MVRegister):
                check_value = spec.check_value
                for sib in state.siblings.values():
                    if sib.dot.replica != origin and actor_origin(sib.dot.replica) != origin:
                        raise RemoteProtocolError(
                            f"{_fwhere(delta)}: sibling {sib.dot} was not written by {origin}"
                        )
                    check_value(sib.value, where="")
            elif isinstance(state, SingleWriterRegister):
                if origin != delta.home or state.writer != delta.home:
                    raise RemoteProtocolError(
                        f"{_fwhere(delta)}: reported state is written only at home "
                        f"{delta.home}, not at {origin}"
                    )
                spec.check_value(state.value, where="")
            elif isinstance(state, LWWRegister):
                if state.replica != origin:
                    raise RemoteProtocolError(f"{_fwhere(delta)}: label not written by {origin}")
                spec.check_value(state.value, where="")
            elif isinstance(state, ORSet):
                for element, dots in state.entries.items():
                    _check_element(element, where="")
                    if any(d.replica != origin for d in dots):
                        raise RemoteProtocolError(f"{_fwhere(delta)}: set add not made by {origin}")
            elif isinstance(state, PNCounter):
                if (set(state.pos) | set(state.neg)) - {origin}:
                    raise RemoteProtocolError(
                        f"{_fwhere(delta)}: counter delta touches totals of other replicas"
                    )
            elif isinstance(state, GrowOnlyLog):
                for key, event in state.entries.items():
                    spec.check_value(event, where=f"[{key}]")
        except LocalProtocolError as exc:
            # The checks above were given an empty place (or just the event id);
            # name the delta and field in front of their reason, as before.
            raise RemoteProtocolError(_fwhere(delta) + exc.reason) from None

    def check_snapshot(
        self, other: ReplicaState, *, claims: Mapping[str, int], have: Mapping[str, int]
    ) -> list[tuple[str, str]]:
        """Check a snapshot's state against the model's rules before :meth:`merge`.

        ``claims`` is the vector the snapshot says it covers, ``have`` ours. A
        snapshot is a relay's word for other origins' writes, so beyond what
        ``check`` asks of a delta it must not contradict what we already hold:
        for an origin it brings nothing new of (``claims[o] <= have[o]``) it may
        carry no write of that origin we have not seen, and no write of any
        origin beyond ``claims``. Raises ``RemoteProtocolError`` (kind
        ``invalid-snapshot``); returns the reported fields whose value the
        merge would change, which the caller must see proven by a batch their
        home signed (a single-writer register's value is the home's alone)."""
        unproven: list[tuple[str, str]] = []

        def bad(reason: str) -> RemoteProtocolError:
            return RemoteProtocolError(f"invalid-snapshot: {reason}", kind="invalid-snapshot")

        def new_of(actor: str) -> bool:
            # A dot's actor carries the epoch of its replica (crdt/_clocks.py);
            # vectors count the replica's writes across all of its epochs.
            replica = actor_origin(actor) or actor
            return claims.get(replica, 0) > have.get(replica, 0)

        for entity_id in sorted(other.entities):
            theirs = other.entities[entity_id]
            header = theirs.header
            mine = self.entities.get(entity_id)
            if mine is not None and mine.header != header:
                raise bad(
                    f"{entity_id} is a {header.model} at home {header.home}; here it is a "
                    f"{mine.header.model} at home {mine.header.home}"
                )
            if mine is None and header.home != FLEET_HOME and not new_of(header.home):
                raise bad(f"{entity_id}: its home {header.home} made no write we lack")
            schema = self.schemas.get(header.model)
            if schema is None:
                raise bad(f"{entity_id}: unknown model {header.model!r}")
            for name, state in sorted(theirs.fields.items()):
                where = f"{entity_id}.{name}"
                spec = schema.fields.get(name)
                if spec is None or type(state) is not FIELD_TYPES[spec.kind]:
                    raise bad(f"{where}: not a field of {header.model}, or of the wrong kind")
                ours = mine.fields.get(name) if mine is not None else None
                try:
                    self._check_snapshot_field(
                        state, ours, header, where, claims=claims, new_of=new_of
                    )
                    if isinstance(state, SingleWriterRegister) and state.seq:
                        spec.check_value(state.value, where=where)
                        if not isinstance(ours, SingleWriterRegister) or ours.join(state) != ours:
                            unproven.append((entity_id, name))
                    elif isinstance(state, MVRegister):
                        for sib in state.siblings.values():
                            spec.check_value(sib.value, where=where)
                    elif isinstance(state, LWWRegister) and state.time is not None:
                        spec.check_value(state.value, where=where)
                    elif isinstance(state, GrowOnlyLog):
                        for key, event in state.entries.items():
                            spec.check_value(event, where=f"{where}[{key}]")
                except LocalProtocolError as exc:
                    raise bad(exc.reason) from None
        return unproven

    @staticmethod
    def _check_snapshot_field(
        state: FieldState,
        ours: FieldState | None,
        header: EntityHeader,
        where: str,
        *,
        claims: Mapping[str, int],
        new_of: Any,
    ) -> None:
        def bad(reason: str) -> RemoteProtocolError:
            return RemoteProtocolError(
                f"invalid-snapshot: {where}: {reason}", kind="invalid-snapshot"
            )

        def dots_ok(ctx_dots: Any, known: CausalContext | None) -> None:
            # Field-level dot counters count one actor's writes to this field,
            # so none exceeds its replica's replica-level count (an actor is
            # the replica in one epoch, and counts only that epoch's writes).
            for dot in ctx_dots:
                if dot.counter > claims.get(actor_origin(dot.replica) or dot.replica, 0):
                    raise bad(f"write {dot} lies beyond the snapshot's vector")
                if not new_of(dot.replica) and (known is None or dot not in known):
                    raise bad(f"write {dot} is one we would have had: {dot.replica} never made it")

        if isinstance(state, MVRegister):
            known = ours.ctx if isinstance(ours, MVRegister) else None
            # Siblings only: a delta's siblings are always its origin's own
            # writes, but its context may cover others' writes transitively, so
            # a context dot proves nothing about the relay's vector.
            dots_ok(state.siblings, known)
            if isinstance(ours, MVRegister):
                for dot, sib in state.siblings.items():
                    mine = ours.siblings.get(dot)
                    if mine is not None and mine != sib:
                        raise bad(f"write {dot} holds another value than the one we have")
        elif isinstance(state, ORSet):
            known = ours.ctx if isinstance(ours, ORSet) else None
            dots_ok([d for ds in state.entries.values() for d in ds], known)
        elif isinstance(state, SingleWriterRegister):
            if state.seq and state.writer != header.home:
                raise bad(f"reported state is written only at home {header.home}")
            if state.seq > claims.get(header.home, 0):
                raise bad(f"reported write #{state.seq} lies beyond the snapshot's vector")
        elif isinstance(state, LWWRegister):
            if state.time is not None:
                if claims.get(state.replica, 0) < 1:
                    raise bad(f"label written by {state.replica}, who made no write")
                if not new_of(state.replica):
                    mine_l = ours if isinstance(ours, LWWRegister) else LWWRegister()
                    if mine_l.join(state) != mine_l:
                        raise bad(f"a label write of {state.replica} we would have had")
        elif isinstance(state, PNCounter):
            mine_c = ours if isinstance(ours, PNCounter) else PNCounter()
            for totals, my_totals in ((state.pos, mine_c.pos), (state.neg, mine_c.neg)):
                for r, n in totals.items():
                    if claims.get(r, 0) < 1:
                        raise bad(f"counter total of {r}, who made no write")
                    if not new_of(r) and n > my_totals.get(r, 0):
                        raise bad(f"counter total of {r} beyond every increment {r} made")

    def _join(self, delta: Delta) -> None:
        # Only for deltas that passed ``check`` or that a mutator here made, so
        # the field's CRDT type is already the schema's (``Entity.merge_field``
        # would check it again).
        entity = self.entities.get(delta.entity)
        if entity is None:
            entity = Entity(delta.header, self.schemas[delta.model])
            self.entities[delta.entity] = entity
        name, state = delta.field, delta.state
        if name is not None and state is not None:
            fields = entity.fields
            current = fields.get(name)
            if current is None:
                fields[name] = state.copy()
            else:
                current.merge(state)  # type: ignore[arg-type]

    def merge(self, other: ReplicaState, *, now_ms: int | None = None) -> None:
        """In-place join with another replica's whole state (a snapshot).

        Like ``apply``, the join advances our hybrid clock past every timestamp
        it brings in; otherwise a replica that caught up by snapshot would stamp
        its next write below a write it has already seen, and lose it."""
        # Check every header first: a snapshot is joined whole or not at all.
        for entity_id, theirs in other.entities.items():
            mine = self.entities.get(entity_id)
            if mine is not None and mine.header != theirs.header:
                raise RemoteProtocolError(
                    f"snapshot has {entity_id} as a {theirs.header.model} at home "
                    f"{theirs.header.home}; here it is a {mine.header.model} at home "
                    f"{mine.header.home}"
                )
        latest: HybridTime | None = None
        for entity_id in sorted(other.entities):
            theirs = other.entities[entity_id]
            mine = self.entities.get(entity_id)
            if mine is None:
                self.entities[entity_id] = theirs.copy()
            else:
                mine.merge(theirs)
            for state in theirs.fields.values():
                seen = _hybrid_time_of(state)
                if seen is not None and (latest is None or seen > latest):
                    latest = seen
        if latest is not None:
            self.clock.observe(latest, now_ms if now_ms is not None else 0)

    def copy(self, replica: str | None = None) -> ReplicaState:
        new = ReplicaState(replica or self.replica, self.schemas, HybridClock(self.clock.last))
        if new.replica == self.replica:
            new.epoch = self.epoch
        new.entities = {k: e.copy() for k, e in self.entities.items()}
        return new

    def join(self, other: ReplicaState) -> ReplicaState:
        new = self.copy()
        new.merge(other)
        return new

    def same_state(self, other: ReplicaState) -> bool:
        return self.entities == other.entities


def _where(delta: Delta) -> str:
    return f"delta from {delta.origin} for {delta.entity}"


def _fwhere(delta: Delta) -> str:
    return f"{_where(delta)}.{delta.field}"


def _check_value_memo(
    delta: Delta, spec: FieldSpec, value: Any, accepted: set[str], floats: bool
) -> None:
    """``spec.check_value`` for a remote value, skipping what is plainly fine
    (a finite float where doubles go) or was already accepted in this batch
    (a string: a str equals only a str, so the memo cannot mix types)."""
    vt = type(value)
    if vt is float:
        if floats and _isfinite(value):
            return
    elif vt is str and value in accepted:
        return
    try:
        spec.check_value(value, where="")
    except LocalProtocolError as exc:
        raise RemoteProtocolError(_fwhere(delta) + exc.reason) from None
    if vt is str:
        accepted.add(value)


def _check_element(element: Any, *, where: str) -> None:
    if not isinstance(element, _SET_ELEMENT_TYPES) or isinstance(element, bool):
        raise LocalProtocolError(
            f"{where}: set elements are strings, integers or bytes, not {element!r}"
        )
    check_plain_value(element, where=where)


def _hybrid_time_of(state: FieldState) -> HybridTime | None:
    t = type(state)
    if t is MVRegister:
        latest = None
        for s in state.siblings.values():  # type: ignore[union-attr]
            if latest is None or s.time > latest:
                latest = s.time
        return latest
    if t is LWWRegister or t is SingleWriterRegister:
        return state.time  # type: ignore[union-attr]
    return None
