"""Entities (twins) as maps of named fields, each field's CRDT fixed by its schema.

An entity joins field by field. Its header — id, model, home — never changes
after creation; every field delta repeats the model and home (interned in a
batch, so it costs a byte or two) so that a delta is self-describing even if it
arrives before the entity's creation did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import msgspec

from ._clocks import CausalContext, Dot
from ._errors import LocalProtocolError
from ._mvregister import MVRegister, Sibling
from ._orset import ORSet
from ._policy import provisional
from ._scalars import GrowOnlyLog, LWWRegister, PNCounter, SingleWriterRegister
from ._schema import EntitySchema, FieldKind, FieldSpec, Policy
from ._text import TextCrdt

__all__ = [
    "FIELD_TYPES",
    "Conflict",
    "Entity",
    "EntityHeader",
    "FieldState",
    "conflicts",
]

FieldState: TypeAlias = (
    MVRegister | SingleWriterRegister | LWWRegister | ORSet | PNCounter | TextCrdt | GrowOnlyLog
)

#: The CRDT class behind each field kind.
FIELD_TYPES: dict[FieldKind, type[FieldState]] = {
    FieldKind.SHARED: MVRegister,
    FieldKind.REPORTED: SingleWriterRegister,
    FieldKind.LABEL: LWWRegister,
    FieldKind.SET: ORSet,
    FieldKind.COUNTER: PNCounter,
    FieldKind.TEXT: TextCrdt,
    FieldKind.LOG: GrowOnlyLog,
}


class EntityHeader(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An entity's identity, fixed at creation (a C-built ``Struct``, like ``Delta``)."""

    id: str
    model: str
    home: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    """A shared field with concurrent siblings, awaiting a person's resolution."""

    entity: str
    field: str
    model: str
    home: str
    siblings: tuple[Sibling, ...]
    provisional: Sibling
    policy: Policy
    context: CausalContext  # hand this back to resolve: it covers every sibling

    @property
    def key(self) -> str:
        return f"{self.entity}#{self.field}"


class Entity:
    __slots__ = ("fields", "header", "schema")

    def __init__(self, header: EntityHeader, schema: EntitySchema) -> None:
        if schema.model != header.model:
            raise LocalProtocolError(
                f"entity {header.id} is a {header.model}, schema given is {schema.model}"
            )
        self.header = header
        self.schema = schema
        self.fields: dict[str, FieldState] = {}

    @property
    def id(self) -> str:
        return self.header.id

    def spec(self, name: str) -> FieldSpec:
        return self.schema.spec(name)

    def field(self, name: str) -> FieldState:
        """The field's current state (an empty CRDT if never written)."""
        state = self.fields.get(name)
        if state is None:
            state = FIELD_TYPES[self.spec(name).kind]()
        return state

    def merge_field(self, name: str, delta: FieldState) -> None:
        expected = FIELD_TYPES[self.spec(name).kind]
        if type(delta) is not expected:
            raise LocalProtocolError(
                f"{self.id}.{name} is a {expected.__name__}, not a {type(delta).__name__}"
            )
        current = self.fields.get(name)
        if current is None:
            self.fields[name] = delta.copy()
        else:
            current.merge(delta)  # type: ignore[arg-type]

    def copy(self) -> Entity:
        new = Entity(self.header, self.schema)
        new.fields = {n: s.copy() for n, s in self.fields.items()}
        return new

    def merge(self, other: Entity) -> None:
        if other.header != self.header:
            raise LocalProtocolError(f"cannot join {self.header} with {other.header}")
        for name, state in other.fields.items():
            self.merge_field(name, state)

    def join(self, other: Entity) -> Entity:
        new = self.copy()
        new.merge(other)
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Entity):
            return self.header == other.header and self.fields == other.fields
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    # Views -------------------------------------------------------------
    def value(self, name: str) -> Any:
        """What a reader sees: a shared field's provisional value, a set's sorted
        members, a counter's total, a text's string, a log's events by id."""
        state = self.field(name)
        if isinstance(state, MVRegister):
            sibs = state.sorted_siblings()
            if not sibs:
                return None
            return provisional(sibs, self.spec(name), self.header.home).value
        if isinstance(state, LWWRegister | SingleWriterRegister):
            return state.value
        if isinstance(state, ORSet):
            return sorted(state.elements(), key=repr)
        if isinstance(state, PNCounter):
            return state.value()
        if isinstance(state, TextCrdt):
            return state.text()
        return dict(state.items())

    def values(self) -> dict[str, Any]:
        return {name: self.value(name) for name in sorted(self.fields)}


def conflicts(entity: Entity) -> list[Conflict]:
    """Every shared field of ``entity`` that holds more than one sibling.

    Derived from state alone, so every replica that has the same state shows
    the same queue.
    """
    found: list[Conflict] = []
    for name in sorted(entity.fields):
        state = entity.fields[name]
        if isinstance(state, MVRegister) and state.is_conflict():
            spec = entity.spec(name)
            sibs = tuple(state.sorted_siblings())
            found.append(
                Conflict(
                    entity=entity.id,
                    field=name,
                    model=entity.header.model,
                    home=entity.header.home,
                    siblings=sibs,
                    provisional=provisional(sibs, spec, entity.header.home),
                    policy=spec.policy,
                    context=state.context(),
                )
            )
    return found


def sibling_dots(conflict: Conflict) -> list[Dot]:
    return [s.dot for s in conflict.siblings]
