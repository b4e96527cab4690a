"""Partial version vectors (message version 4) and the incremental horizon.

A vector sent to a peer carries only what changed since we last told it, with
the whole vector's sum; these tests drop, reorder and duplicate messages and
check that a receiver notices when its copy no longer adds up, that the
sender then sends a whole vector, and that the horizon kept incrementally
always equals the one worked out from scratch (``SyncEngine.horizon``)."""

from __future__ import annotations

import random

import pytest
from test_sync_protocol import make_link, same

from twinmesh.sync import Digest, SyncConfig, decode_message, encode_message


def _decoded(out: list) -> list:  # type: ignore[type-arg]
    return [(o.peer, decode_message(o.data)) for o in out]


def _settle(link, names: tuple[str, ...], rounds: int = 30) -> None:  # type: ignore[no-untyped-def]
    """Gossip rounds with every message delivered, until quiet."""
    for _ in range(rounds):
        for n in names:
            queue = [(n, o) for o in link.tick(n, 0.4)]
            while queue:
                src, out = queue.pop(0)
                link.deliver(src, out)
                queue += [(out.peer, o) for o in link.take(out.peer)]


def test_after_the_first_exchange_a_vector_carries_only_what_changed() -> None:
    names = ("a", "b", "c", "d")
    link = make_link(names)
    for n in names:
        link.create(n, f"{n}/pump-1")
    _settle(link, names)
    assert same(*(link[n] for n in names))
    a = link["a"]
    link.write("c", "c/pump-1", "label", "x")
    _settle(link, ("c",), rounds=3)
    # a's next digest to a peer it has spoken with carries only c's entry
    # (if a has c's write yet) or nothing, and the whole vector's sum.
    sent = []
    for _ in range(5):
        sent += [m for _, m in _decoded(link.tick("a", 1.0)) if isinstance(m, Digest)]
    partial = [m for m in sent if m.partial]
    assert partial, sent
    for m in partial:
        assert set(m.vv) <= {"c", "a"} and m.total == sum(a.vv.values())


def test_a_lost_partial_vector_is_noticed_and_a_whole_one_follows() -> None:
    names = ("a", "b")
    link = make_link(names)
    link.create("a", "a/pump-1")
    link.create("b", "b/pump-1")
    _settle(link, names, rounds=5)
    a, b = link["a"], link["b"]
    # b writes and a takes it: a's entry for b moves after a last told b.
    link.write("b", "b/pump-1", "label", "one")
    link.exchange("b", "a")
    assert a.vv["b"] == b.vv["b"] > b.members["a"].known["b"]
    # a's partial digest saying so is lost on the way.
    lost = a._digest_for("b")
    assert lost.partial and dict(lost.vv) == {"b": a.vv["b"]}
    # a writes; its next partial vector carries only its own entry, so it
    # does not add up at b (b's copy lags by the lost entry).
    link.write("a", "a/pump-1", "label", "two")
    nxt = a._digest_for("b")
    assert dict(nxt.vv) == {"a": a.vv["a"]}
    assert nxt.partial and nxt.total == sum(a.vv.values())
    # b's copy is still a safe lower bound...
    a.expect_reply("b", link.now)
    b.receive(encode_message(nxt), now=link.now, peer="a")
    assert b.members["a"].want_resync is False  # asked for, in the reply just sent
    replies = _decoded(link.take("b"))
    assert replies and all(m.resync for _, m in replies), replies
    assert b.members["a"].known["a"] == a.vv["a"]
    assert b.members["a"].known["b"] < a.vv["b"]
    # ... and once the reply reaches a, a's next vector to b is whole.
    for _, m in replies:
        a.receive(encode_message(m), now=link.now, peer="b")
    whole = a._digest_for("b")
    assert not whole.partial and whole.vv == a.vv
    link.take("a")
    _settle(link, names, rounds=10)
    assert same(a, b)
    assert b.members["a"].known == dict(a.vv)


def test_a_reordered_older_vector_only_costs_a_resync() -> None:
    names = ("a", "b")
    link = make_link(names)
    link.create("a", "a/pump-1")
    _settle(link, names, rounds=5)
    a, b = link["a"], link["b"]
    link.write("a", "a/pump-1", "label", "one")
    older = a._digest_for("b")
    link.write("a", "a/pump-1", "label", "two")
    newer = a._digest_for("b")
    b.receive(encode_message(newer), now=link.now, peer="a")
    link.take("b")
    b.receive(encode_message(older), now=link.now, peer="a")  # arrives late
    assert b.members["a"].known["a"] == a.vv["a"]  # never moves back on a partial
    link.take("b")
    _settle(link, names, rounds=10)
    assert same(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_the_incremental_horizon_is_the_walked_one(seed: int) -> None:
    """Random writes, random drops/duplicates/reordering, a member falling
    silent past evict_after and coming back: after every step every engine's
    incremental horizon equals the from-scratch walk, and compaction never
    drops a batch above it."""
    names = ("a", "b", "c", "d", "e")
    config = SyncConfig(evict_after=30.0, reply_timeout=2.0)
    link = make_link(names, config=config, seed=seed)
    rng = random.Random(seed)
    for n in names:
        link.create(n, f"{n}/pump-1")
    silent: str | None = None
    inflight: list[tuple[str, object]] = []
    ticked = dict.fromkeys(names, 0.0)  # when each engine's timer last ran
    for step in range(300):
        if step % 60 == 10:
            silent = rng.choice(names)
        elif step % 60 == 50:
            silent = None
        n = rng.choice(names)
        if rng.random() < 0.3 and n != silent:
            link.write(n, f"{n}/pump-1", "label", f"{n}{step}")
        if n != silent:
            inflight += [(n, o) for o in link.tick(n, rng.uniform(0.1, 1.5))]
            ticked[n] = link.now
        else:
            link.now += rng.uniform(0.1, 1.5)
        rng.shuffle(inflight)
        keep = []
        for src, out in inflight:
            r = rng.random()
            if out.peer == silent or src == silent or r < 0.15:  # type: ignore[attr-defined]
                continue  # lost
            if r < 0.25:
                keep.append((src, out))  # late
                continue
            link.deliver(src, out)  # type: ignore[arg-type]
            if r > 0.95:
                link.deliver(src, out)  # type: ignore[arg-type]  # duplicated
            keep += [(out.peer, o) for o in link.take(out.peer)]  # type: ignore[attr-defined]
        inflight = keep
        for e in link.engines.values():
            # Eviction is decided when the engine's timer runs: as of then,
            # exactly the members not silent (or heard from since) count.
            live = {
                r
                for r, m in e.members.items()
                if r != e.replica and not e._silent(m, max(ticked[e.replica], 0.0))
            }
            assert e._live == live, (step, e.replica)
            walked = e.horizon(ticked[e.replica])
            for origin in e.vv:
                assert e._horizon_of(origin) == walked[origin], (step, e.replica, origin)
            for origin, batches in e.log.items():
                if batches:
                    assert batches[0].last > e.floor.get(origin, 0)
    _settle(link, names, rounds=40)
    assert same(*link.engines.values())
