"""Minimal reproductions of the bugs the simulator found, so they stay fixed.

Each was first seen as a failing swarm seed (the seed is named); the test
below is the smallest sequence of operations that shows it, without the
simulator.
"""

from __future__ import annotations

from twinmesh.crdt import ReplicaState, TextCrdt, decode_state, encode_state
from twinmesh.crdt.demo_models import PUMP, PUMP_SCHEMAS


def test_a_snapshot_advances_the_hybrid_clock() -> None:
    """Swarm seed 22 (labels checker): a replica that caught up by Snapshot did
    not observe the timestamps it brought in, so its next label write, stamped
    by a slower clock, lost to a write it had already seen — even locally.
    Fixed in ``ReplicaState.merge`` (observes like ``apply`` does)."""
    a = ReplicaState("a", PUMP_SCHEMAS)
    b = ReplicaState("b", PUMP_SCHEMAS)
    a.create("a/pump-1", PUMP.model, author="x")
    a.write("a/pump-1", "label", "from-a", author="x", now_ms=10_000)  # a's clock runs ahead
    b.merge(decode_state(encode_state(a), replica="b", schemas=PUMP_SCHEMAS))
    b.write("a/pump-1", "label", "from-b", author="y", now_ms=5_000)
    assert b.entity("a/pump-1").value("label") == "from-b"


def _merged(*deltas: TextCrdt) -> TextCrdt:
    text = TextCrdt()
    for d in deltas:
        text.merge(d)
    return text


def test_text_merged_in_either_order_encodes_the_same() -> None:
    """Swarm seed 294 (convergence checker: every vector equal, digests not):
    "central" types two tokens in a row while "plant-c" types one at the same
    place. Merged in either order the text is equal, but Yrs left the
    document split into different blocks, so the state bytes (and
    ``state_digest``) differed forever. Fixed in ``TextCrdt.merge``
    (re-encodes through a fresh document)."""
    first = TextCrdt().insert(0, "[c.4]", replica="central")
    second = _merged(first).insert(5, "[c.6]", replica="central")
    concurrent = _merged(first).insert(5, "[p.7]", replica="plant-c")
    one = _merged(first, second, concurrent)
    other = _merged(first, concurrent, second)
    assert one.text() == other.text() == "[c.4][c.6][p.7]"
    assert one.update == other.update
