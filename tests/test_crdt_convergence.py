"""Convergence and causality of whole replicas, checked against an independent oracle.

Random workloads run on 2-5 replicas with partial, reordered, duplicated
delivery (see ``crdt_strategies.Simulation``). The oracle records, for every
write, which writes its replica had seen for that key when it read the context
it wrote with — from deliveries, never from the CRDT's contexts — so "siblings
iff concurrent" is checked against happens-before itself, not against the
implementation's idea of it.
"""

from __future__ import annotations

import random

import pytest
from crdt_strategies import (
    ENTITY_IDS,
    REPLICA_IDS,
    SCHEMAS,
    Clock,
    FixedClock,
    Simulation,
    SkewedClock,
    Workload,
    fresh_replay,
    label_workloads,
    scaled,
    skewed_clocks,
    workloads,
)
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.crdt import (
    CausalContext,
    Dot,
    LocalProtocolError,
    LWWRegister,
    MVRegister,
    ORSet,
    ReplicaState,
    decode_deltas,
    encode_deltas,
    state_digest,
)

SEEDS = st.integers(0, 2**32 - 1)


def _run(workload: Workload, clock: Clock | None = None) -> Simulation:
    return Simulation(workload.replicas, clock or FixedClock()).run(workload.ops)


def _register(state: ReplicaState, entity_id: str, name: str) -> MVRegister:
    reg = state.entity(entity_id).field(name)
    assert isinstance(reg, MVRegister)
    return reg


def _sibling_ids(sim: Simulation, state: ReplicaState, key: tuple[object, ...]) -> set[int]:
    by_dot = {w.dot: w.id for w in sim.writes_to(key)}
    _, entity_id, name = key
    return {by_dot[d] for d in _register(state, str(entity_id), str(name)).siblings}


# ---------------------------------------------------------------- law 2


@scaled(1.5)
@given(workloads(), SEEDS)
def test_replicas_that_receive_the_same_deltas_end_byte_identical(
    workload: Workload, seed: int
) -> None:
    """Delivery order, duplicates and the route a delta took (direct, relayed, in a
    snapshot, or through the wire codec) must not matter: once every replica has
    every delta, all states are equal and encode to the same bytes (same digest).
    This is what lets anti-entropy compare digests instead of states."""
    sim = _run(workload)
    sim.sync_all(seed)
    reference = sim.replicas[0]
    digest = state_digest(reference)
    for replica in sim.replicas[1:]:
        assert replica.same_state(reference)
        assert state_digest(replica) == digest
    for n in range(2):
        fresh = fresh_replay(sim, seed + n, name=f"fresh-{n}")
        assert fresh.same_state(reference)
        assert state_digest(fresh) == digest
    # Through the wire: shuffled batches of random sizes, one batch sent twice.
    rng = random.Random(seed)
    order = list(range(len(sim.log)))
    rng.shuffle(order)
    wired = ReplicaState("wired", SCHEMAS)
    batches: list[list[int]] = []
    while order:
        size = rng.randint(1, 6)
        batches.append(order[:size])
        order = order[size:]
    if batches:
        batches.append(rng.choice(batches))
    for batch in batches:
        for delta in decode_deltas(encode_deltas([sim.log[i] for i in batch])):
            wired.apply(delta)
    assert state_digest(wired) == digest


# ---------------------------------------------------------------- laws 3 and 4


def _assert_siblings_are_the_oracles_frontier(sim: Simulation, seed: int) -> None:
    """At every replica, mid-run: the siblings are the writes it holds that no
    write it holds had seen. After full sync: the oracle's maximal writes."""
    for index, replica in enumerate(sim.replicas):
        for key in sim.mv_keys():
            held = {w.id for w in sim.writes_to(key)} & sim.has[index]
            covered: set[int] = set()
            for delta_id in sim.has[index]:
                if sim.key_of.get(delta_id) == key:
                    covered |= sim.past[delta_id]
            assert _sibling_ids(sim, replica, key) == held - covered, (REPLICA_IDS[index], key)
    sim.sync_all(seed)
    for key in sim.mv_keys():
        expected = sim.maximal(w.id for w in sim.writes_to(key))
        for replica in sim.replicas:
            assert _sibling_ids(sim, replica, key) == expected, key


@scaled(1.5)
@given(workloads(text=False), SEEDS)
def test_siblings_are_exactly_the_writes_no_other_write_had_seen(
    workload: Workload, seed: int
) -> None:
    """A register shows siblings iff writes were concurrent: the surviving
    siblings are exactly the oracle's maximal writes (seen by no other write),
    for writes with the current context, with stale contexts, and resolutions."""
    _assert_siblings_are_the_oracles_frontier(_run(workload), seed)


@given(workloads(blind=True, max_ops=60), SEEDS)
def test_siblings_match_the_oracle_when_many_writes_are_blind(
    workload: Workload, seed: int
) -> None:
    """The same law on one register hammered with blind (empty-context) and
    stale writes: dozens of concurrent siblings, some later covered by a
    partially informed write — the register's join for large sibling sets."""
    _assert_siblings_are_the_oracles_frontier(_run(workload), seed)


@scaled(1.5)
@given(workloads(text=False), SEEDS)
def test_no_acknowledged_write_is_lost(workload: Workload, seed: int) -> None:
    """Every write to a shared field is either still a sibling or in the causal
    past of a surviving sibling (the oracle's seen-set of that sibling's write),
    and its dot is in the register's context — nothing disappears unseen."""
    sim = _run(workload)
    sim.sync_all(seed)
    state = sim.replicas[0]
    for key in sim.mv_keys():
        _, entity_id, name = key
        reg = _register(state, str(entity_id), str(name))
        surviving = _sibling_ids(sim, state, key)
        assert surviving, key
        for write in sim.writes_to(key):
            assert write.dot in reg.ctx
            assert write.id in surviving or any(write.id in sim.past[s] for s in surviving), (
                f"write {write.dot} to {key} is neither a sibling nor seen by one"
            )
            if write.id in surviving:
                assert reg.siblings[write.dot].value == write.value


@given(workloads(text=False), SEEDS)
def test_conflict_queue_is_the_fields_with_concurrent_writes_on_every_replica(
    workload: Workload, seed: int
) -> None:
    """The review queue is derived from state: after sync every replica lists
    the same conflicts (same siblings, same provisional value), and a field is
    listed iff the oracle says more than one write is maximal."""
    sim = _run(workload)
    sim.sync_all(seed)
    expected = {
        (key[1], key[2])
        for key in sim.mv_keys()
        if len(sim.maximal(w.id for w in sim.writes_to(key))) > 1
    }
    queues = [
        [(c.entity, c.field, c.siblings, c.provisional) for c in r.conflicts()]
        for r in sim.replicas
    ]
    assert all(q == queues[0] for q in queues)
    assert {(c[0], c[1]) for c in queues[0]} == expected


# ---------------------------------------------------------------- law 5


@scaled(0.75)
@given(workloads(text=False), SEEDS, st.data())
def test_resolution_closes_the_conflict_on_every_replica(
    workload: Workload, seed: int, data: st.DataObject
) -> None:
    """A resolution written with the conflict's context covers every sibling, so
    once gossiped no replica shows the conflict and all read the chosen value."""
    sim = _run(workload)
    sim.sync_all(seed)
    chosen: dict[tuple[str, str], object] = {}
    for conflict in sim.replicas[0].conflicts():
        at = data.draw(st.integers(0, sim.k - 1), label="resolver")
        local = next(
            c
            for c in sim.replicas[at].conflicts()
            if (c.entity, c.field) == (conflict.entity, conflict.field)
        )
        value = data.draw(st.sampled_from([s.value for s in local.siblings]), label="value")
        delta = sim.replicas[at].resolve(
            local.entity, local.field, value, covering=local.context, author="rev", now_ms=0
        )
        sim.log.append(delta)
        sim.has[at].add(len(sim.log) - 1)
        chosen[(local.entity, local.field)] = value
    sim.sync_all(seed + 1)
    for replica in sim.replicas:
        assert replica.conflicts() == []
        for (entity_id, name), value in chosen.items():
            assert _register(replica, entity_id, name).values() == [value]


@scaled(0.75)
@given(workloads(text=False), SEEDS, st.data())
def test_resolution_not_covering_every_sibling_is_refused(
    workload: Workload, seed: int, data: st.DataObject
) -> None:
    """A resolution must cover every sibling it replaces: leaving out any one
    sibling's dot raises LocalProtocolError and changes nothing."""
    sim = _run(workload)
    sim.sync_all(seed)
    replica = sim.replicas[0]
    for conflict in replica.conflicts():
        dropped = data.draw(st.sampled_from([s.dot for s in conflict.siblings]), label="drop")
        dots = [Dot(r, k) for r, top in conflict.context.vv_items() for k in range(1, top + 1)]
        partial = CausalContext.of(
            d for d in dots + conflict.context.cloud_sorted() if d != dropped
        )
        before = state_digest(replica)
        with pytest.raises(LocalProtocolError, match="does not cover"):
            replica.resolve(
                conflict.entity,
                conflict.field,
                conflict.siblings[0].value,
                covering=partial,
                author="rev",
                now_ms=0,
            )
        assert state_digest(replica) == before


def test_resolution_read_before_a_new_concurrent_write_is_refused() -> None:
    """A reviewer who read the conflict, then a new concurrent sibling arrived:
    the old context no longer covers the conflict, so the resolution is refused
    (the reviewer must look again) rather than silently dropping the new write."""
    a, b, c = (ReplicaState(n, SCHEMAS) for n in ("a", "b", "c"))
    entity_id, model = ENTITY_IDS[0], next(iter(SCHEMAS))
    create = a.create(entity_id, model, author="x")
    for r in (b, c):
        r.apply(create)
    a.write(entity_id, "owner", "alice", author="x", now_ms=1)
    a.apply(b.write(entity_id, "owner", "bob", author="x", now_ms=1))
    (conflict,) = a.conflicts()
    dc = c.write(entity_id, "owner", "carol", author="x", now_ms=1)
    a.apply(dc)
    before = state_digest(a)
    with pytest.raises(LocalProtocolError, match="c:1"):
        a.resolve(entity_id, "owner", "alice", covering=conflict.context, author="r", now_ms=2)
    assert state_digest(a) == before
    (fresh,) = a.conflicts()
    a.resolve(entity_id, "owner", "alice", covering=fresh.context, author="r", now_ms=2)
    assert a.conflicts() == []


def test_two_reviewers_resolving_concurrently_leave_their_resolutions_as_siblings() -> None:
    """Resolutions are ordinary writes: two made without seeing each other are
    concurrent, so exactly those two remain (the old siblings stay closed)."""
    a, b = ReplicaState("a", SCHEMAS), ReplicaState("b", SCHEMAS)
    entity_id, model = ENTITY_IDS[0], next(iter(SCHEMAS))
    b.apply(a.create(entity_id, model, author="x"))
    da = a.write(entity_id, "owner", "alice", author="x", now_ms=1)
    db = b.write(entity_id, "owner", "bob", author="x", now_ms=1)
    a.apply(db)
    b.apply(da)
    ra = a.resolve(
        entity_id, "owner", "alice", covering=a.conflicts()[0].context, author="r1", now_ms=2
    )
    rb = b.resolve(
        entity_id, "owner", "bob", covering=b.conflicts()[0].context, author="r2", now_ms=2
    )
    a.apply(rb)
    b.apply(ra)
    for r in (a, b):
        reg = _register(r, entity_id, "owner")
        assert sorted(reg.siblings) == [Dot("a", 2), Dot("b", 2)]
    assert state_digest(a) == state_digest(b)


# ---------------------------------------------------------------- law 6


def _causal_projection(sim: Simulation) -> dict[str, object]:
    """Everything about the final state that must not depend on wall clocks."""
    state = sim.replicas[0]
    out: dict[str, object] = {}
    for entity in state:
        for name, field_state in sorted(entity.fields.items()):
            where = f"{entity.id}#{name}"
            if isinstance(field_state, MVRegister):
                out[where] = sorted(
                    (d, s.value.__repr__()) for d, s in field_state.siblings.items()
                )
            elif isinstance(field_state, ORSet):
                out[where] = sorted(map(repr, field_state.elements()))
            elif not isinstance(field_state, LWWRegister):
                out[where] = repr(entity.value(name))
    out["conflicts"] = [(c.key, [s.dot for s in c.siblings]) for c in state.conflicts()]
    return out


@given(workloads(text=False), skewed_clocks(), SEEDS)
def test_clock_skew_changes_no_causal_verdict(
    workload: Workload, clock: SkewedClock, seed: int
) -> None:
    """Causality comes from contexts, never from wall time: the same workload run
    with replica clocks skewed by up to an hour and jumping back by up to two
    yields the same siblings (by dot), set members, counters, logs, reported
    values and conflict queue as with perfect clocks."""
    straight = _run(workload)
    skewed = _run(workload, clock)
    straight.sync_all(seed)
    skewed.sync_all(seed)
    assert _causal_projection(straight) == _causal_projection(skewed)


@scaled(1.5)
@given(label_workloads(), skewed_clocks(), SEEDS)
def test_hybrid_clock_keeps_later_label_writes_on_top_despite_skew(
    workload: Workload, clock: SkewedClock, seed: int
) -> None:
    """With skewed, back-stepping wall clocks, a replica's later label write
    carries a greater hybrid timestamp than its earlier ones, and the LWW winner
    is a write no other write had seen (so a write never loses to one it
    overwrote). Deliveries and snapshot joins pass ``now_ms`` so the clock
    observes what it joins."""
    sim = _run(workload, clock)
    sim.sync_all(seed)
    for entity_id in ENTITY_IDS:
        writes = [w for w in sim.label_writes if w.key == ("label", entity_id)]
        for replica in range(sim.k):
            times = [w.time for w in writes if w.replica == replica]
            assert times == sorted(times) and len(set(times)) == len(times)
        final = sim.replicas[0].entity(entity_id).field("label")
        assert isinstance(final, LWWRegister)
        if not writes:
            assert final.time is None
            continue
        (winner,) = [
            w for w in writes if w.time == final.time and REPLICA_IDS[w.replica] == final.replica
        ]
        assert winner.value == final.value
        assert winner.id in sim.maximal(w.id for w in writes)


def test_label_write_after_wall_clock_steps_back_still_wins() -> None:
    """The HLC unit case: the second write's wall clock is an hour behind the
    first's (and its value sorts first), yet it wins at every replica,
    whatever the join order."""
    a, b = ReplicaState("a", SCHEMAS), ReplicaState("b", SCHEMAS)
    entity_id, model = ENTITY_IDS[0], next(iter(SCHEMAS))
    b.apply(a.create(entity_id, model, author="x"))
    first = a.write(entity_id, "label", "zulu", author="x", now_ms=10_000_000)
    second = a.write(entity_id, "label", "alpha", author="x", now_ms=10_000_000 - 3_600_000)
    b.apply(second)
    b.apply(first)
    assert a.entity(entity_id).value("label") == b.entity(entity_id).value("label") == "alpha"


@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(("a", "b", "c"))), min_size=1),
    SEEDS,
)
def test_a_replicas_last_label_write_wins_whatever_its_wall_clock_did(
    writes: list[tuple[int, str]], seed: int
) -> None:
    """One replica writes a label many times while its wall clock wanders
    (backwards, standing still): after each write it reads its own value, and a
    replica receiving all the deltas in any order ends on the last one."""
    writer, reader = ReplicaState("a", SCHEMAS), ReplicaState("b", SCHEMAS)
    entity_id, model = ENTITY_IDS[0], next(iter(SCHEMAS))
    reader.apply(writer.create(entity_id, model, author="x"))
    deltas = []
    for wall, value in writes:
        deltas.append(writer.write(entity_id, "label", value, author="x", now_ms=wall))
        assert writer.entity(entity_id).value("label") == value
    random.Random(seed).shuffle(deltas)
    for delta in deltas:
        reader.apply(delta)
    assert reader.entity(entity_id).value("label") == writes[-1][1]


# ---------------------------------------------------------------- law 7


@given(
    st.integers(2, 5),
    st.lists(st.integers(0, 4), min_size=1, max_size=60),
    SEEDS,
)
def test_siblings_bounded_by_concurrent_writers_not_by_writes(
    k: int, writers: list[int], seed: int
) -> None:
    """During a partition each replica writes many times with its current
    context; after healing there is at most one sibling per replica (its last
    write), never one per write — and the context stays a plain vector."""
    sim = Simulation(k)
    entity_id = ENTITY_IDS[0]
    last: dict[int, object] = {}
    for n, at in enumerate(writers):
        at %= k
        sim._record(
            at,
            sim.replicas[at].write(entity_id, "value", n, author="eng", now_ms=n),
        )
        last[at] = n
    sim.sync_all(seed)
    for replica in sim.replicas:
        reg = _register(replica, entity_id, "value")
        assert len(reg.siblings) == len(last) <= k
        assert {s.origin: s.value for s in reg.siblings.values()} == {
            REPLICA_IDS[r]: v for r, v in last.items()
        }
        assert not reg.ctx.cloud


@given(workloads(stale=False, text=False), SEEDS)
def test_current_context_writes_leave_at_most_one_sibling_per_replica(
    workload: Workload, seed: int
) -> None:
    """With only current-context writes (and resolutions), a replica's write
    always covers its own earlier ones, so siblings never exceed the number of
    replicas that wrote concurrently."""
    sim = _run(workload)
    sim.sync_all(seed)
    for key in sim.mv_keys():
        _, entity_id, name = key
        reg = _register(sim.replicas[0], str(entity_id), str(name))
        origins = [s.origin for s in reg.siblings.values()]
        assert len(origins) == len(set(origins)) <= sim.k


def test_many_blind_writes_make_many_siblings_and_one_resolution_closes_them() -> None:
    """Blind writes (empty context) are all concurrent with each other, so each
    survives — more siblings than replicas — and the fast merge path for large
    sibling sets must agree with the oracle; one resolution closes them all."""
    sim = Simulation(3)
    entity_id = ENTITY_IDS[0]
    key = ("mv", entity_id, "value")
    for n in range(30):
        at = n % 3
        delta = sim.replicas[at].write(
            entity_id, "value", n, author="eng", now_ms=n, context=CausalContext()
        )
        sim._record_mv(at, key, delta, frozenset(), stale=True, resolution=False)
        if n % 7 == 0:
            sim.sync_all(n)
    sim.sync_all(99)
    for replica in sim.replicas:
        assert len(_register(replica, entity_id, "value").siblings) == 30
    (conflict,) = sim.replicas[1].conflicts()
    delta = sim.replicas[1].resolve(
        entity_id, "value", -1, covering=conflict.context, author="rev", now_ms=0
    )
    for replica in (sim.replicas[0], sim.replicas[2]):
        replica.apply(delta)
    for replica in sim.replicas:
        assert _register(replica, entity_id, "value").values() == [-1]


# ---------------------------------------------------------------- other field kinds


@given(workloads(), SEEDS)
def test_other_field_kinds_match_their_oracles(workload: Workload, seed: int) -> None:
    """After sync: set members are the adds no later op on that element had seen
    (add wins), counters hold the sum of increments, logs every appended event,
    reported state the home's last write, and text is the same everywhere."""
    sim = _run(workload)
    sim.sync_all(seed)
    texts = set()
    for replica in sim.replicas:
        for entity_id in ENTITY_IDS:
            entity = replica.entity(entity_id)
            tags = entity.field("tags")
            assert isinstance(tags, ORSet)
            assert tags.elements() == sim.expected_elements(entity_id)
            assert entity.value("starts") == sim.counters[entity_id]
            assert entity.value("alerts") == sim.events[entity_id]
            reports = sim.reported[entity_id]
            assert entity.value("serial") == (reports[-1] if reports else None)
            texts.add((entity_id, entity.value("notes")))
    assert len(texts) == len(ENTITY_IDS)
