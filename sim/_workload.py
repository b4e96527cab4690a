"""Clients of the fleet: writes of every field kind at random replicas.

Each replica gets a Poisson stream of operations (plants at ``rate``,
central at ``central_rate``); each operation picks its kind from the
scenario's mix and runs against that replica's state the way a user of the
node's API would: read what is there, then write. Every acknowledged write
goes to the oracle with what it did — never with the CRDT's own contexts.
"Contested" fields are written on a timer by several named replicas, which
is how a scenario makes two plants edit one maintenance date while split.

Text edits keep the notes checkable: every insert is a unique bracketed
token placed at a token boundary, every delete removes one whole token, so
the merged text must be the surviving tokens, each exactly once.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twinmesh.crdt import (
    Delta,
    LocalProtocolError,
    MVRegister,
    ReplicaState,
    ValueType,
)
from twinmesh.crdt.demo_models import PUMP

from ._loop import EventLoop
from ._oracle import (
    Create,
    Increment,
    LabelWrite,
    LogAppend,
    Op,
    RegisterWrite,
    ReportedWrite,
    SetAdd,
    SetRemove,
    TextDelete,
    TextInsert,
)
from ._scenario import OP_KINDS, SHARED_FIELDS, ContestedSpec, FleetSpec, WorkloadSpec

__all__ = ["TOKEN_RE", "Workload", "WorkloadHost", "WorkloadStats"]

TOKEN_RE = re.compile(r"\[([^\[\]]+)\]")
_PEOPLE = ("ana", "olaf", "rita", "kofi", "mei", "jon")


class WorkloadHost(Protocol):
    """What the workload needs from the simulation."""

    def state_of(self, node: str) -> ReplicaState | None:
        """The replica's state, or None while it is down."""

    def applied_of(self, node: str) -> dict[str, int]:
        """The oracle's vector of writes applied at ``node`` (a copy)."""

    def wall_ms(self, node: str) -> int:
        """The replica's (possibly skewed) wall clock."""

    def commit(self, node: str, delta: Delta, op: Op) -> None:
        """Commit a local write at ``node`` and tell the oracle."""

    def violation(self, checker: str, message: str) -> None:
        """Report something a checker must fail on."""

    def checked(self, checker: str) -> None:
        """Count one check a checker made."""


@dataclass(slots=True)
class WorkloadStats:
    attempted: Counter[str] = field(default_factory=Counter)
    acknowledged: Counter[str] = field(default_factory=Counter)
    unavailable: int = 0  # the replica was down
    refused: Counter[str] = field(default_factory=Counter)  # refused locally (expected)


@dataclass(slots=True)
class _Pending:
    """A read whose write comes after the client's think time."""

    node: str
    entity: str
    field: str
    value: Any
    context: Any
    read: dict[str, int]


class Workload:
    def __init__(
        self,
        *,
        spec: WorkloadSpec,
        fleet: FleetSpec,
        rng: random.Random,
        loop: EventLoop,
        host: WorkloadHost,
    ) -> None:
        self.spec = spec
        self.fleet = fleet
        self.rng = rng
        self.loop = loop
        self.host = host
        self.stats = WorkloadStats()
        self.active = False
        self.end = 0.0
        self._kinds = [k for k in OP_KINDS if spec.mix.get(k, 0) > 0]
        self._cum: list[float] = []
        acc = 0.0
        for k in self._kinds:
            acc += spec.mix[k]
            self._cum.append(acc)
        self._counter = 0
        self._ops: dict[str, Callable[[str, ReplicaState], None]] = {
            "shared": self._shared,
            "stale": self._stale,
            "resolve": self._resolve,
            "add": self._add,
            "remove": self._remove,
            "counter": self._counter_op,
            "text": self._text,
            "log": self._log,
            "label": self._label,
            "reported": self._reported,
            "foreign_reported": self._foreign_reported,
        }

    # ------------------------------------------------------------ schedule

    def bootstrap(self) -> None:
        """Each plant creates its assets (home = that plant) at time zero."""
        for plant in self.fleet.plants:
            state = self.host.state_of(plant)
            assert state is not None
            for asset in self.fleet.assets(plant):
                delta = state.create(asset, PUMP.model, author="installer")
                self.host.commit(plant, delta, Create(entity=asset, model=PUMP.model, home=plant))
                self.stats.acknowledged["create"] += 1

    def start(self, end: float) -> None:
        self.active = True
        self.end = end
        now = self.loop.now
        for node in self.fleet.nodes:
            rate = self.spec.central_rate if node == self.fleet.central else self.spec.rate
            if rate > 0 and self._kinds:
                self.loop.at(now + self.rng.expovariate(rate), self._tick, node, rate)
        for spec in self.spec.contested:
            for writer in spec.writers:
                first = max(now, spec.start) + self.rng.uniform(0.0, spec.every)
                self.loop.at(first, self._contested, writer, spec)

    def stop(self) -> None:
        self.active = False

    def _tick(self, node: str, rate: float) -> None:
        if not self.active or self.loop.now >= self.end:
            return
        kind = self.rng.choices(self._kinds, cum_weights=self._cum)[0]
        self.stats.attempted[kind] += 1
        state = self.host.state_of(node)
        if state is None:
            self.stats.unavailable += 1
        else:
            self._ops[kind](node, state)
        self.loop.at(self.loop.now + self.rng.expovariate(rate), self._tick, node, rate)

    def _contested(self, node: str, spec: ContestedSpec) -> None:
        now = self.loop.now
        if not self.active or now >= self.end or (spec.until is not None and now >= spec.until):
            return
        self.stats.attempted["contested"] += 1
        state = self.host.state_of(node)
        if state is None:
            self.stats.unavailable += 1
        elif spec.asset in state.entities:
            value = self._value(spec.field)
            self._do(
                node,
                "contested",
                lambda: state.write(
                    spec.asset,
                    spec.field,
                    value,
                    author=self._author(),
                    now_ms=self.host.wall_ms(node),
                ),
                RegisterWrite(entity=spec.asset, field=spec.field, value=value),
            )
        self.loop.at(now + spec.every * self.rng.uniform(0.8, 1.2), self._contested, node, spec)

    # ------------------------------------------------------------ helpers

    def _do(self, node: str, kind: str, make: Callable[[], Delta], op: Op) -> None:
        try:
            delta = make()
        except LocalProtocolError as exc:
            # A local refusal is an error the client sees; nothing was acknowledged.
            self.stats.refused[kind] += 1
            self.host.violation(
                "local-writes", f"{node}: {kind} refused unexpectedly: {exc.reason}"
            )
            return
        self.host.commit(node, delta, op)
        self.stats.acknowledged[kind] += 1

    def _author(self) -> str:
        return self.rng.choice(_PEOPLE)

    def _entity(self, state: ReplicaState) -> str | None:
        # Dict order is insertion order, which the deterministic run fixes.
        ids = list(state.entities)
        return self.rng.choice(ids) if ids else None

    def _value(self, name: str) -> Any:
        spec = PUMP.fields[name]
        rng = self.rng
        vt = spec.value_type
        if vt is ValueType.DATE:
            return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if vt is ValueType.DOUBLE:
            return round(rng.uniform(2.0, 12.0), 1)
        if vt is ValueType.ENUM:
            return rng.choice(spec.enum_values)
        if vt is ValueType.STRING:
            return rng.choice(_PEOPLE)
        return rng.randint(0, 1000)

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    # ------------------------------------------------------------ operations

    def _shared(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        name = self.rng.choice(SHARED_FIELDS)
        value = self._value(name)
        self._do(
            node,
            "shared",
            lambda: state.write(
                entity, name, value, author=self._author(), now_ms=self.host.wall_ms(node)
            ),
            RegisterWrite(entity=entity, field=name, value=value),
        )

    def _stale(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        name = self.rng.choice(SHARED_FIELDS)
        register = state.entity(entity).field(name)
        assert isinstance(register, MVRegister)
        pending = _Pending(
            node=node,
            entity=entity,
            field=name,
            value=self._value(name),
            context=register.context(),
            read=self.host.applied_of(node),
        )
        delay = self.rng.uniform(0.0, self.spec.think_time)
        self.loop.at(self.loop.now + delay, self._stale_write, pending)

    def _stale_write(self, p: _Pending) -> None:
        if not self.active:
            return
        state = self.host.state_of(p.node)
        if state is None:
            self.stats.unavailable += 1
            return
        self._do(
            p.node,
            "stale",
            lambda: state.write(
                p.entity,
                p.field,
                p.value,
                author=self._author(),
                now_ms=self.host.wall_ms(p.node),
                context=p.context,
            ),
            RegisterWrite(entity=p.entity, field=p.field, value=p.value, read=p.read),
        )

    def _resolve(self, node: str, state: ReplicaState) -> None:
        conflicts = state.conflicts()
        if not conflicts:
            self._shared(node, state)
            return
        c = self.rng.choice(conflicts)
        value = self.rng.choice([c.provisional.value, *(s.value for s in c.siblings)])
        self._do(
            node,
            "resolve",
            lambda: state.resolve(
                c.entity,
                c.field,
                value,
                covering=c.context,
                author="reviewer",
                now_ms=self.host.wall_ms(node),
            ),
            RegisterWrite(entity=c.entity, field=c.field, value=value, resolves=True),
        )

    def _add(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        tag = self.rng.choice(self.spec.tags)
        self._do(
            node,
            "add",
            lambda: state.add(entity, "tags", tag, author=self._author()),
            SetAdd(entity=entity, field="tags", element=tag),
        )

    def _remove(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        present = sorted(state.entity(entity).value("tags"))
        tag = self.rng.choice(present) if present else self.rng.choice(self.spec.tags)
        self._do(
            node,
            "remove",
            lambda: state.remove(entity, "tags", tag, author=self._author()),
            SetRemove(entity=entity, field="tags", element=tag),
        )

    def _counter_op(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        amount = self.rng.choice((-2, -1, 1, 1, 2, 3, 5))
        self._do(
            node,
            "counter",
            lambda: state.increment(entity, "starts", amount, author=self._author()),
            Increment(entity=entity, field="starts", amount=amount),
        )

    def _text(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        text = state.entity(entity).value("notes") or ""
        tokens = TOKEN_RE.findall(text)
        if "".join(f"[{t}]" for t in tokens) != text:
            self.host.violation(
                "text", f"{node}: {entity}.notes is not whole tokens: {text[:80]!r}"
            )
            return
        if tokens and self.rng.random() < 0.3:
            token = self.rng.choice(tokens)
            index = text.index(f"[{token}]")
            self._do(
                node,
                "text",
                lambda: state.edit_text(
                    entity, "notes", index=index, delete=len(token) + 2, author=self._author()
                ),
                TextDelete(entity=entity, field="notes", token=token),
            )
            return
        bounds = [0]
        for t in tokens:
            bounds.append(bounds[-1] + len(t) + 2)
        index = self.rng.choice(bounds)
        token = f"{node}.{self._next()}"
        self._do(
            node,
            "text",
            lambda: state.edit_text(
                entity, "notes", index=index, insert=f"[{token}]", author=self._author()
            ),
            TextInsert(entity=entity, field="notes", token=token),
        )

    def _log(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        key = f"{node}:{self._next()}"
        event = {
            "level": self.rng.choice(("info", "warn", "alarm")),
            "code": self.rng.randint(100, 999),
        }
        self._do(
            node,
            "log",
            lambda: state.append(entity, "alerts", key, event, author=self._author()),
            LogAppend(entity=entity, field="alerts", key=key, event=event),
        )

    def _label(self, node: str, state: ReplicaState) -> None:
        entity = self._entity(state)
        if entity is None:
            return
        value = f"{self.rng.choice(('Pump', 'Feed pump', 'P'))} {self.rng.randint(1, 99)}"
        self._do(
            node,
            "label",
            lambda: state.write(
                entity, "label", value, author=self._author(), now_ms=self.host.wall_ms(node)
            ),
            LabelWrite(entity=entity, field="label", value=value),
        )

    def _reported(self, node: str, state: ReplicaState) -> None:
        own = (
            [a for a in self.fleet.assets(node) if a in state.entities]
            if node in self.fleet.plants
            else []
        )
        if not own:
            self._foreign_reported(node, state)
            return
        entity = self.rng.choice(own)
        value = f"SN-{self.rng.randint(10000, 99999)}"
        self._do(
            node,
            "reported",
            lambda: state.write(
                entity, "serial", value, author="plc", now_ms=self.host.wall_ms(node)
            ),
            ReportedWrite(entity=entity, field="serial", value=value),
        )

    def _foreign_reported(self, node: str, state: ReplicaState) -> None:
        foreign = [e for e, ent in state.entities.items() if ent.header.home != node]
        if not foreign:
            return
        entity = self.rng.choice(foreign)
        self.host.checked("reported-home-only")
        try:
            state.write(
                entity, "serial", "SN-FORGED", author="intruder", now_ms=self.host.wall_ms(node)
            )
        except LocalProtocolError:
            self.stats.refused["foreign_reported"] += 1
            return
        self.host.violation(
            "reported-home-only",
            f"{node} wrote reported state of {entity} whose home is "
            f"{state.entities[entity].header.home}",
        )
