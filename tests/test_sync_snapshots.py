"""Snapshots are checked like batches (issue 10).

A snapshot merges many origins' writes and cannot carry every write's
signature, so the engine bounds what a relay can do with one: it is taken
only in answer to a question we asked, it obeys the model's rules, its vector
reaches no further than its sender's own digest claimed, and it raises no
origin's vector or floor beyond a batch that origin signed. Each test builds
the lie a compromised member would tell and checks it changes nothing.
"""

from __future__ import annotations

import pytest
from test_sync_protocol import T0_MS, Link, _digest_bytes, make_link

from twinmesh.crdt import (
    HybridTime,
    RemoteProtocolError,
    ReplicaState,
    SingleWriterRegister,
    VersionVector,
    encode_state,
    state_digest,
)
from twinmesh.crdt.demo_models import PUMP, PUMP_SCHEMAS
from twinmesh.sync import (
    Outgoing,
    PeerState,
    Snapshot,
    SnapshotApplied,
    SyncConfig,
    decode_message,
    encode_message,
)

BIG = 1_000_000


def _forged_state(entity: str, home: str, serial: str) -> ReplicaState:
    """A state holding ``home``'s reported field with a value of the forger's choosing."""
    forged = ReplicaState(home, PUMP_SCHEMAS)
    forged.create(entity, PUMP.model, author="intruder")
    forged.entities[entity].merge_field(
        "serial", SingleWriterRegister(serial, 50, home, HybridTime(T0_MS, 0))
    )
    return forged


def _fleet() -> Link:
    """a, b and c; b has created its pump and written its serial, a has it."""
    link = make_link(("a", "b", "c"))
    link.create("b", "b/pump-1")
    link.write("b", "b/pump-1", "serial", "SN-REAL")
    link.exchange("a", "b")
    assert link["a"].state.entity("b/pump-1").value("serial") == "SN-REAL"
    return link


def _snapshot_from_c(link: Link, state: ReplicaState, vv: dict[str, int]) -> bytes:
    return encode_message(
        Snapshot(
            sender="c",
            vv=VersionVector(vv),
            state=encode_state(state),
            digest=VersionVector(vv),
        )
    )


def _unchanged(link: Link, name: str):  # type: ignore[no-untyped-def]
    engine = link[name]
    before = (state_digest(engine.state), engine.vv, dict(engine.floor))
    return lambda: (state_digest(engine.state), engine.vv, dict(engine.floor)) == before


def _b_still_heard(link: Link) -> None:
    """b's next real write still reaches a: nobody cut b off."""
    link.write("b", "b/pump-1", "serial", "SN-NEXT")
    link.exchange("a", "b")
    assert link["a"].state.entity("b/pump-1").value("serial") == "SN-NEXT"
    assert link["a"].vv["b"] == link["b"].vv["b"]


def test_an_unsolicited_snapshot_is_refused_with_a_reason_and_counted() -> None:
    """The review's reproduction: c sends a snapshot nobody asked for, carrying
    b's home-only field and claiming b up to a million."""
    link = _fleet()
    a = link["a"]
    check = _unchanged(link, "a")
    data = _snapshot_from_c(link, _forged_state("b/pump-1", "b", "SN-FORGED"), {"b": BIG, "c": 1})
    with pytest.raises(RemoteProtocolError) as info:
        a.receive(data, now=link.now, peer="c")
    assert info.value.kind == "unsolicited-snapshot"
    assert "did not ask" in info.value.reason and "snapshot" in info.value.reason
    assert a.metrics.refusals["unsolicited-snapshot"] == 1
    assert check()
    assert a.state.entity("b/pump-1").value("serial") == "SN-REAL"
    assert a.floor.get("b", 0) == 0
    _b_still_heard(link)


def _ask_c(link: Link) -> None:
    """a sends c a digest: a now awaits c's answer (and would take a snapshot)."""
    a = link["a"]
    a.expect_reply("c", link.now)


def test_a_solicited_snapshot_cannot_inflate_an_origin_beyond_what_it_signed() -> None:
    link = _fleet()
    a = link["a"]
    _ask_c(link)
    # c's own digest claims b up to a million too: the claim is bounded by b's signature.
    link.deliver(
        "c",
        Outgoing(
            peer="a",
            address="a",
            data=encode_message(
                __import__("twinmesh.sync", fromlist=["Digest"]).Digest(
                    sender="c", vv=VersionVector({"b": BIG})
                )
            ),
        ),
    )
    link.take("a")
    check = _unchanged(link, "a")
    honest_copy = link["b"].state.copy("c")
    data = _snapshot_from_c(link, honest_copy, {"b": BIG})
    with pytest.raises(RemoteProtocolError) as info:
        a.receive(data, now=link.now, peer="c")
    assert info.value.kind == "snapshot-unproven"
    assert "b" in info.value.reason
    assert check()
    _b_still_heard(link)


def test_a_solicited_snapshot_cannot_carry_another_homes_reported_state() -> None:
    link = _fleet()
    a = link["a"]
    _ask_c(link)
    check = _unchanged(link, "a")
    # vv within what b signed (2 deltas), but a serial b never wrote.
    data = _snapshot_from_c(link, _forged_state("b/pump-1", "b", "SN-FORGED"), dict(a.vv))
    with pytest.raises(RemoteProtocolError) as info:
        a.receive(data, now=link.now, peer="c")
    assert info.value.kind in {"snapshot-unproven", "invalid-snapshot"}
    assert "serial" in info.value.reason
    assert a.metrics.refusals[info.value.kind] == 1
    assert check()
    _b_still_heard(link)


def test_a_snapshot_vector_beyond_its_senders_digest_is_refused() -> None:
    link = _fleet()
    a = link["a"]
    _ask_c(link)
    check = _unchanged(link, "a")
    data = encode_message(
        Snapshot(
            sender="c",
            vv=VersionVector({"b": 2, "c": 5}),
            state=encode_state(link["b"].state.copy("c")),
            digest=VersionVector({"b": 2}),
        )
    )
    with pytest.raises(RemoteProtocolError) as info:
        a.receive(data, now=link.now, peer="c")
    assert info.value.kind == "snapshot-unclaimed"
    assert check()


def test_a_snapshot_breaking_the_model_rules_is_refused() -> None:
    """A label b never wrote, attributed to b, for a dot beyond b's vector."""
    link = _fleet()
    a = link["a"]
    _ask_c(link)
    forged = link["b"].state.copy("c")
    bstate = ReplicaState("b", PUMP_SCHEMAS)
    bstate.entities = {k: e.copy() for k, e in forged.entities.items()}
    for _ in range(5):
        bstate.write("b/pump-1", "owner", "mallory", author="x", now_ms=T0_MS)
    check = _unchanged(link, "a")
    data = _snapshot_from_c(link, bstate, dict(a.vv))
    with pytest.raises(RemoteProtocolError) as info:
        a.receive(data, now=link.now, peer="c")
    assert info.value.kind == "invalid-snapshot"
    assert check()
    _b_still_heard(link)


def test_an_honest_snapshot_still_catches_a_member_up_and_proves_every_origin() -> None:
    config = SyncConfig(evict_after=5.0)
    link = make_link(("a", "b", "c"), config=config)
    a, b = link["a"], link["b"]
    link.create("a", "a/pump-1")
    link.write("a", "a/pump-1", "serial", "SN-A")
    for _ in range(10):
        link.now += 1.0
        link.exchange("c", "a")  # c keeps up; b is silent and gets evicted
        a.handle_timer(link.now)
        link.take("a")
    assert a.floor.get("a") == 2
    assert a.horizon(link.now)["a"] == 2  # b, silent, no longer holds compaction back
    b.expect_reply("a", link.now)
    link.deliver("b", Outgoing(peer="a", address="a", data=_digest_bytes(b)))
    (reply,) = link.take("a")
    message = decode_message(reply.data)
    assert isinstance(message, Snapshot) and message.proofs
    events = link.deliver("a", reply)
    assert [type(e) for e in events] == [SnapshotApplied]
    assert b.state.entity("a/pump-1").value("serial") == "SN-A"
    assert b.floor["a"] == 2 and b.vv["a"] == 2
    # b can now serve the same snapshot, with the proofs it received.
    assert b.members["a"].state is PeerState.IDLE
