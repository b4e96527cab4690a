"""Epochs (issue 17): a replica restarted after a crash never issues a dot twice.

The pure part of the crash-window fix: a replica rebuilt from what was
durable, in a new epoch, writes shared fields as a new actor
(``epoch_actor``), so a context token read before the crash — covering a
write that died with the process — can neither cover the new write nor pass
for a context of this replica. Peers accept the actor as the origin's own,
and refuse dots that name another replica's actor or a malformed one.
"""

from __future__ import annotations

import pytest

from twinmesh.crdt import (
    CausalContext,
    Delta,
    Dot,
    LocalProtocolError,
    MVRegister,
    RemoteProtocolError,
    ReplicaState,
    actor_origin,
    epoch_actor,
)
from twinmesh.crdt.demo_models import PUMP, PUMP_SCHEMAS

A, B = "plant-a", "plant-b"
ENTITY = "plant-a/p1"


def _replica(epoch: int = 0) -> ReplicaState:
    state = ReplicaState(A, PUMP_SCHEMAS)
    state.epoch = epoch
    return state


def _register(state: ReplicaState) -> MVRegister:
    field = state.entity(ENTITY).fields["owner"]
    assert isinstance(field, MVRegister)
    return field


def test_actor_names() -> None:
    assert epoch_actor(A, 0) == A
    assert epoch_actor(A, 3) == "plant-a~3"
    assert actor_origin("plant-a~3") == A
    assert actor_origin(A) == A
    for bad in ("plant-a~", "plant-a~0", "plant-a~01", "plant-a~x", "~1", "plant-a~1~2"):
        assert actor_origin(bad) is None, bad
    with pytest.raises(LocalProtocolError):
        epoch_actor(A, -1)


def test_a_token_from_before_a_crash_cannot_cover_the_next_write() -> None:
    """The issue's interleaving, in memory: the durable log is replayed into
    a fresh replica; the write that was in flight is not in it."""
    durable: list[Delta] = []
    live = _replica()
    durable.append(live.create(ENTITY, PUMP.model, author="t"))
    durable.append(live.write(ENTITY, "owner", "before", author="t", now_ms=1))
    live.write(ENTITY, "owner", "in-flight", author="t", now_ms=2)  # never durable
    token = _register(live).context()  # handed to a reader
    assert Dot(A, 2) in token

    restarted = _replica(epoch=1)  # the node begins a new epoch after a crash
    restarted.apply_many(durable)
    new = restarted.write(ENTITY, "owner", "acknowledged", author="t", now_ms=3)
    (dot,) = new.state.siblings  # type: ignore[union-attr]
    assert dot == Dot("plant-a~1", 1)
    assert dot not in token
    # The token names a write this replica never made: refused, the client reads again.
    with pytest.raises(LocalProtocolError, match="has not seen"):
        restarted.write(ENTITY, "owner", "written-back", author="t", now_ms=4, context=token)
    assert _register(restarted).values() == ["acknowledged"]
    # A token from before the crash that names only durable writes is a
    # stale read: its write back stands beside the new write.
    old = CausalContext({A: 1})
    restarted.write(ENTITY, "owner", "stale", author="t", now_ms=5, context=old)
    assert sorted(_register(restarted).values()) == ["acknowledged", "stale"]


def test_without_an_epoch_the_write_back_removes_the_acknowledged_write() -> None:
    """What the epoch prevents (the bug, kept as the reason for the rule)."""
    live = _replica()
    durable = [live.create(ENTITY, PUMP.model, author="t")]
    durable.append(live.write(ENTITY, "owner", "before", author="t", now_ms=1))
    live.write(ENTITY, "owner", "in-flight", author="t", now_ms=2)
    token = _register(live).context()
    restarted = _replica(epoch=0)
    restarted.apply_many(durable)
    restarted.write(ENTITY, "owner", "acknowledged", author="t", now_ms=3)
    restarted.write(ENTITY, "owner", "written-back", author="t", now_ms=4, context=token)
    assert _register(restarted).values() == ["written-back"]  # "acknowledged" is gone


def test_peers_accept_an_epoch_actor_as_its_replica_and_refuse_others() -> None:
    a = _replica(epoch=2)
    create = a.create(ENTITY, PUMP.model, author="t")
    write = a.write(ENTITY, "owner", "x", author="t", now_ms=1)
    b = ReplicaState(B, PUMP_SCHEMAS)
    b.apply_many([create, write])
    (sib,) = _register(b).sorted_siblings()
    assert sib.dot.replica == "plant-a~2" and sib.origin == A
    for actor in ("plant-b~1", "plant-a~02", "plant-a~", "plant-ab~1"):
        forged = Delta(
            origin=A,
            author="t",
            entity=ENTITY,
            model=PUMP.model,
            home=A,
            field="owner",
            state=MVRegister().write(
                "y",
                replica=actor,
                author="t",
                time=write.state.siblings[sib.dot].time,  # type: ignore[union-attr]
            ),
        )
        with pytest.raises(RemoteProtocolError, match="was not written by"):
            b.check(forged)


def test_a_snapshot_bounds_an_actors_counters_by_its_replicas_vector() -> None:
    a = _replica(epoch=1)
    a.create(ENTITY, PUMP.model, author="t")
    a.write(ENTITY, "owner", "x", author="t", now_ms=1)
    b = ReplicaState(B, PUMP_SCHEMAS)
    # plant-a made 2 writes: the actor's 1 write lies within the claim.
    assert b.check_snapshot(a, claims={A: 2}, have={}) == []
    a.write(ENTITY, "owner", "y", author="t", now_ms=2)
    a.write(ENTITY, "owner", "z", author="t", now_ms=3)  # plant-a~1:3
    with pytest.raises(RemoteProtocolError, match="beyond the snapshot's vector"):
        b.check_snapshot(a, claims={A: 2}, have={})
