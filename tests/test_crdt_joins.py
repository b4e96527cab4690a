"""Join-semilattice laws for every CRDT type, whole entities and whole replicas.

Join must be commutative, associative and idempotent — on states that can
actually occur. States are drawn from random workloads: each replica's state
of a field mid-run (after partial, reordered delivery), and the join of a
random subset of that field's deltas in a random order. Equality is checked
both with ``==`` and with the canonical encoding, because digests compare
bytes: two states that are ``==`` but encode differently would make replicas
gossip forever.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from crdt_strategies import (
    BOTTOMS,
    ENTITY_IDS,
    FixedClock,
    Simulation,
    Workload,
    join_all,
    scaled,
    workloads,
)
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.crdt import (
    Entity,
    GrowOnlyLog,
    LWWRegister,
    MVRegister,
    ORSet,
    PNCounter,
    ReplicaState,
    SingleWriterRegister,
    TextCrdt,
    encode_field,
    encode_state,
)
from twinmesh.crdt._codec import _pack

#: One field of the demo pump per CRDT type.
FIELD_OF_TYPE: dict[type, str] = {
    MVRegister: "value",
    ORSet: "tags",
    PNCounter: "starts",
    LWWRegister: "label",
    SingleWriterRegister: "serial",
    GrowOnlyLog: "alerts",
    TextCrdt: "notes",
}


def _field_states(sim: Simulation, name: str, seed: int, count: int = 3) -> list[Any]:
    """Reachable states of one field: replicas' current states and joins of
    random subsets of the field's deltas (any subset is a valid delta-state)."""
    rng = random.Random(seed)
    entity_id = ENTITY_IDS[0]
    kind = type(sim.replicas[0].entity(entity_id).field(name))
    deltas = [d.state for d in sim.log if d.entity == entity_id and d.field == name]
    pool = [r.entity(entity_id).field(name) for r in sim.replicas]
    for _ in range(count):
        subset = [d for d in deltas if rng.random() < 0.5]
        rng.shuffle(subset)
        pool.append(join_all(subset, BOTTOMS[kind]()))
    return [rng.choice(pool) for _ in range(count)]


def _same(x: Any, y: Any, encode: Callable[[Any], Any]) -> None:
    assert x == y
    assert _pack(encode(x)) == _pack(encode(y))


@pytest.mark.parametrize("kind", list(FIELD_OF_TYPE), ids=lambda t: t.__name__)
@scaled(0.5)
@given(workload=workloads(max_replicas=4, max_ops=30), seed=st.integers(0, 2**32 - 1))
def test_field_join_is_commutative_associative_idempotent(
    kind: type, workload: Workload, seed: int
) -> None:
    """a⊔b = b⊔a, (a⊔b)⊔c = a⊔(b⊔c), a⊔a = a for each field CRDT, by value and
    by canonical bytes; and a join leaves both of its operands unchanged."""
    sim = Simulation(workload.replicas, FixedClock()).run(workload.ops)
    states = _field_states(sim, FIELD_OF_TYPE[kind], seed)
    assert all(type(s) is kind for s in states)
    a, b, c = states
    before = [_pack(encode_field(s)) for s in (a, b, c)]
    _same(a.join(b), b.join(a), encode_field)
    _same(a.join(b).join(c), a.join(b.join(c)), encode_field)
    _same(a.join(a), a, encode_field)
    _same(a.join(b).join(b), a.join(b), encode_field)
    assert [_pack(encode_field(s)) for s in (a, b, c)] == before


def _entities(sim: Simulation) -> list[Entity]:
    return [r.entity(ENTITY_IDS[0]) for r in sim.replicas]


@scaled(0.75)
@given(
    workload=workloads(min_replicas=3, max_replicas=5),
    picks=st.lists(st.integers(0, 4), min_size=3, max_size=3),
)
def test_entity_join_is_commutative_associative_idempotent(
    workload: Workload, picks: list[int]
) -> None:
    """Entities join field by field, so the laws lift: checked on the same twin
    as held by three replicas after partial delivery."""
    sim = Simulation(workload.replicas, FixedClock()).run(workload.ops)
    entities = _entities(sim)
    a, b, c = (entities[p % len(entities)] for p in picks)
    encode = _entity_bytes
    _same(a.join(b), b.join(a), encode)
    _same(a.join(b).join(c), a.join(b.join(c)), encode)
    _same(a.join(a), a, encode)
    _same(a.join(b).join(a), a.join(b), encode)


def _entity_bytes(entity: Entity) -> Any:
    return [[name, encode_field(f)] for name, f in sorted(entity.fields.items())]


def _same_replica(x: ReplicaState, y: ReplicaState) -> None:
    assert x.same_state(y)
    assert encode_state(x) == encode_state(y)


@scaled(0.75)
@given(
    workload=workloads(min_replicas=3, max_replicas=5),
    picks=st.lists(st.integers(0, 4), min_size=3, max_size=3),
)
def test_replica_state_join_is_commutative_associative_idempotent(
    workload: Workload, picks: list[int]
) -> None:
    """Whole replica states (what a snapshot transfer joins) obey the laws too,
    compared by ``same_state`` and by ``encode_state`` bytes."""
    sim = Simulation(workload.replicas, FixedClock()).run(workload.ops)
    a, b, c = (sim.replicas[p % sim.k] for p in picks)
    before = [encode_state(s) for s in (a, b, c)]
    _same_replica(a.join(b), b.join(a))
    _same_replica(a.join(b).join(c), a.join(b.join(c)))
    _same_replica(a.join(a), a)
    _same_replica(a.join(b).join(a), a.join(b))
    assert [encode_state(s) for s in (a, b, c)] == before
