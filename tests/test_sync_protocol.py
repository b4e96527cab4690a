"""Two and three SyncEngines joined by a fake link, one protocol step at a time.

The link is us: every test takes the bytes an engine wants to send
(``messages_to_send``), looks at them (decoded, to name the step) and hands
them to the peer's ``receive`` — or drops, duplicates or corrupts them. The
helpers here are shared with ``test_sync_refusals.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import pairwise

from twinmesh.crdt import ReplicaState, state_digest
from twinmesh.crdt.demo_models import PUMP, PUMP_SCHEMAS
from twinmesh.sync import (
    Deltas,
    DeltasApplied,
    Digest,
    FleetAuthority,
    MemberInfo,
    MemberJoined,
    Outgoing,
    PeerState,
    Snapshot,
    SnapshotApplied,
    SyncConfig,
    SyncEngine,
    decode_message,
    verify_signature,
)

T0_MS = 1_767_225_600_000


@dataclass
class Link:
    """A fleet of engines and a hand-operated network between them."""

    engines: dict[str, SyncEngine]
    authority: FleetAuthority
    rng: random.Random
    now: float = 0.0

    def __getitem__(self, name: str) -> SyncEngine:
        return self.engines[name]

    def take(self, name: str) -> list[Outgoing]:
        return self.engines[name].messages_to_send()

    def deliver(self, src: str, out: Outgoing) -> list[object]:
        return self.engines[out.peer].receive(out.data, now=self.now, peer=src)

    def tick(self, name: str, dt: float = 0.0) -> list[Outgoing]:
        """Advance time, fire ``name``'s gossip round, return what it sends."""
        self.now += dt
        engine = self.engines[name]
        self.now = max(self.now, engine.next_timer())
        engine.handle_timer(self.now)
        return self.take(name)

    def exchange(self, a: str, b: str, *, max_steps: int = 200) -> int:
        """A digest from ``a`` to ``b`` and every reply, until quiet; returns messages."""
        engine = self.engines[a]
        engine.expect_reply(b, self.now)
        pending = [(a, Outgoing(peer=b, address=b, data=_digest_bytes(engine)))]
        count = 0
        while pending and count < max_steps:
            src, out = pending.pop(0)
            self.deliver(src, out)
            count += 1
            pending += [(out.peer, o) for o in self.take(out.peer) if o.peer == src]
        return count

    def write(self, name: str, entity: str, field: str, value: object, ms: int = 0) -> int:
        e = self.engines[name]
        return e.commit(e.state.write(entity, field, value, author="t", now_ms=T0_MS + ms))

    def create(self, name: str, entity: str) -> int:
        e = self.engines[name]
        return e.commit(e.state.create(entity, PUMP.model, author="t"))


def _digest_bytes(engine: SyncEngine) -> bytes:
    from twinmesh.sync import encode_message

    return encode_message(
        Digest(sender=engine.replica, vv=engine.vv, members=engine._member_infos())
    )


def make_link(
    names: tuple[str, ...] = ("a", "b"),
    *,
    config: SyncConfig | None = None,
    verify: object = None,
    seed: int = 1,
) -> Link:
    rng = random.Random(seed)
    authority = FleetAuthority(rng)
    ids = {n: authority.new_identity(n, rng) for n in names}
    seeds = [MemberInfo(credential=ids[n].credential, address=n, last_contact=-1.0) for n in names]
    engines = {}
    for n in names:
        kwargs = {} if verify is None else {"verify": verify}
        engines[n] = SyncEngine(
            identity=ids[n],
            state=ReplicaState(n, PUMP_SCHEMAS),
            fleet_public_key=authority.public_key,
            seeds=seeds,
            address=n,
            config=config or SyncConfig(),
            rng=random.Random(f"{seed}/{n}"),
            now=0.0,
            **kwargs,
        )
    return Link(engines=engines, authority=authority, rng=rng)


def same(*engines: SyncEngine) -> bool:
    digests = {state_digest(e.state) for e in engines}
    return len(digests) == 1 and len({e.vv for e in engines}) == 1


# ------------------------------------------------------------------ the exchange


def test_digest_then_deltas_then_deltas() -> None:
    link = make_link()
    a, b = link["a"], link["b"]
    link.create("a", "a/pump-1")
    link.write("a", "a/pump-1", "maintenance_date", "2026-05-01")
    link.create("b", "b/pump-1")
    link.write("b", "b/pump-1", "label", "feed")

    (digest,) = link.tick("a")
    assert isinstance(decode_message(digest.data), Digest) and digest.peer == "b"

    assert link.deliver("a", digest) == []
    (reply,) = link.take("b")
    step2 = decode_message(reply.data)
    assert isinstance(step2, Deltas) and step2.digest == b.vv
    assert [(x.origin, x.first, x.last) for x in step2.batches] == [("b", 1, 2)]

    events = link.deliver("b", reply)
    assert events == [DeltasApplied(sender="b", origin="b", first=1, last=2)]
    (answer,) = link.take("a")
    step3 = decode_message(answer.data)
    assert isinstance(step3, Deltas) and step3.digest is None
    assert [(x.origin, x.first, x.last) for x in step3.batches] == [("a", 1, 2)]

    assert link.deliver("a", answer) == [DeltasApplied(sender="a", origin="a", first=1, last=2)]
    assert link.take("b") == []  # nothing left to say
    assert same(a, b)
    assert a.members["b"].state is not PeerState.AWAITING


def test_duplicate_delivery_changes_nothing() -> None:
    link = make_link()
    link.create("a", "a/pump-1")
    link.write("a", "a/pump-1", "vibration_limit", 4.5)
    (digest,) = link.tick("b")
    link.deliver("b", digest)
    (reply,) = link.take("a")
    first = link.deliver("a", reply)
    b = link["b"]
    before = (state_digest(b.state), b.vv)
    assert link.deliver("a", reply) == []  # again: nothing applied
    assert (state_digest(b.state), b.vv) == before
    assert b.metrics.deltas_duplicate == 2 and first


def test_chunking_under_a_byte_limit_sets_more() -> None:
    limit = 4096
    config = SyncConfig(max_message_bytes=limit, max_batch_deltas=5)
    link = make_link(config=config)
    a, b = link["a"], link["b"]
    link.create("a", "a/pump-1")
    for i in range(199):
        link.write("a", "a/pump-1", "owner", f"owner-{i:03d}", ms=i)
    link.take("a")
    (digest,) = link.tick("b")
    pending = [("b", digest)]
    chunks = 0
    mores = 0
    while pending:
        src, out = pending.pop(0)
        message = decode_message(out.data)
        assert len(out.data) <= limit, f"a {type(message).__name__} of {len(out.data)} bytes"
        if isinstance(message, Deltas) and message.batches:
            chunks += 1
            mores += message.more
        link.deliver(src, out)
        pending += [(out.peer, o) for o in link.take(out.peer)]
    assert chunks > 3 and mores == chunks - 1  # every chunk but the last says "more"
    assert same(a, b) and b.vv["a"] == 200


def test_relay_keeps_the_origin_signature() -> None:
    """A -> B -> C, C never talks to A: C still checks A's own signature."""
    checked: list[bytes] = []

    def spy(key: bytes, sig: bytes, data: bytes) -> bool:
        checked.append(key)
        return verify_signature(key, sig, data)

    link = make_link(("a", "b", "c"), verify=spy)
    a, b, c = link["a"], link["b"], link["c"]
    link.create("a", "a/pump-1")
    link.write("a", "a/pump-1", "lifecycle", "degraded")
    link.exchange("b", "a")
    checked.clear()
    got: list[object] = []
    # C asks B; only B ever talks to C.
    c.expect_reply("b", link.now)
    link.deliver("c", Outgoing(peer="b", address="b", data=_digest_bytes(c)))
    (reply,) = link.take("b")
    got += link.deliver("b", reply)
    assert DeltasApplied(sender="b", origin="a", first=1, last=2) in got
    assert a.identity.public_key in checked and b.identity.public_key not in checked
    assert c.state.entity("a/pump-1").value("lifecycle") == "degraded"
    assert c.members["a"].last_contact is None  # never heard from A itself
    assert same(a, b, c)


# ------------------------------------------------------------------ failure handling


def test_back_off_after_unanswered_digests() -> None:
    config = SyncConfig(
        gossip_interval=1.0, jitter=0.0, reply_timeout=3.0, backoff_base=1.0, backoff_max=60.0
    )
    link = make_link(config=config)
    a = link["a"]
    sent_at: list[float] = []
    for _ in range(400):
        for out in link.tick("a", 0.0):  # every digest to B is lost
            assert out.peer == "b"
            sent_at.append(link.now)
    member = a.members["b"]
    assert member.failures >= 6
    gaps = [t2 - t1 for t1, t2 in pairwise(sent_at)]
    assert gaps[0] <= 4.0  # first retry right after the timeout
    assert max(gaps) >= 30.0  # later retries wait for the back-off (capped at 60 s)
    assert max(gaps) <= 60.0 + 3.0 + 1.0
    # One answer resets it.
    (digest,) = [o for o in link.tick("b") if o.peer == "a"] or [None]
    assert digest is not None
    link.deliver("b", digest)
    assert member.failures == 0 and member.backoff_until == 0.0


def test_compaction_then_snapshot_catch_up_for_an_evicted_member() -> None:
    config = SyncConfig(evict_after=30.0, gossip_interval=1.0)
    link = make_link(("a", "b", "c"), config=config)
    a, b, c = link["a"], link["b"], link["c"]
    link.create("c", "c/pump-1")
    link.exchange("a", "c")
    link.exchange("b", "c")
    link.create("a", "a/pump-1")
    # C falls silent; A and B keep writing and gossiping for longer than evict_after.
    for i in range(60):
        link.now += 1.0
        link.write("a", "a/pump-1", "owner", f"o{i}", ms=i * 1000)
        link.write("c", "c/pump-1", "label", f"c{i}", ms=i * 1000)
        link.exchange("a", "b")
        a.handle_timer(link.now)
        b.handle_timer(link.now)
        link.take("a")
        link.take("b")
    assert a.floor.get("a", 0) > 0, "A compacted below the horizon C held back"
    assert a.horizon(link.now)["a"] > a.members["c"].known_vv["a"]  # C no longer holds it back
    # C returns and asks A: it is below A's compaction floor, so a Snapshot comes.
    c.expect_reply("a", link.now)
    link.deliver("c", Outgoing(peer="a", address="a", data=_digest_bytes(c)))
    (reply,) = link.take("a")
    message = decode_message(reply.data)
    assert isinstance(message, Snapshot)
    events = link.deliver("a", reply)
    assert [type(e) for e in events] == [SnapshotApplied]
    # C's own backlog goes back to A (as deltas or a snapshot, whichever A needs).
    for out in link.take("c"):
        link.deliver("c", out)
    link.exchange("b", "a")
    link.exchange("c", "b")
    assert same(a, b, c)
    assert c.state.entity("a/pump-1").value("owner") == "o59"
    assert a.state.entity("c/pump-1").value("label") == "c59"


def test_write_after_snapshot_orders_after_what_the_snapshot_carried() -> None:
    """Regression: a replica that caught up by snapshot did not advance its
    hybrid clock, so its next label write (slow clock) lost to one it had seen."""
    config = SyncConfig(evict_after=5.0)
    link = make_link(("a", "b", "c"), config=config)
    a, b = link["a"], link["b"]
    link.create("a", "a/pump-1")
    link.write("a", "a/pump-1", "label", "from-a", ms=3_600_000)  # A's clock: an hour ahead
    for _ in range(10):
        link.now += 1.0
        link.exchange("c", "a")  # C keeps up; B is silent and gets evicted
        a.handle_timer(link.now)
        link.take("a")
    assert a.floor.get("a") == 2  # compacted below what B holds
    b.expect_reply("a", link.now)
    link.deliver("b", Outgoing(peer="a", address="a", data=_digest_bytes(b)))
    (reply,) = link.take("a")
    assert isinstance(decode_message(reply.data), Snapshot)
    link.deliver("a", reply)
    # B writes after seeing A's label, with its own (slower) clock.
    link.write("b", "a/pump-1", "label", "from-b", ms=0)
    assert b.state.entity("a/pump-1").value("label") == "from-b"
    link.exchange("b", "a")
    assert a.state.entity("a/pump-1").value("label") == "from-b"
    assert same(a, b)


def test_back_off_survives_a_peer_silent_for_days() -> None:
    """Regression (found by the long-outage scenario): 2 ** failures overflowed
    a float after ~1024 unanswered digests and crashed handle_timer."""
    link = make_link()
    a = link["a"]
    for _ in range(3000):  # about two days of retries at backoff_max = 60 s
        link.now += 61.0
        a.handle_timer(link.now)
        link.take("a")
    member = a.members["b"]
    assert member.failures > 1100
    assert member.backoff_until - link.now <= a.config.backoff_cap


def test_back_off_defaults_follow_the_gossip_interval() -> None:
    """A cap in seconds meant a minute of deafness at 1 s rounds (wan-split)."""
    from dataclasses import replace

    from twinmesh.sync._engine import BACKOFF_MAX_ROUNDS

    config = SyncConfig(gossip_interval=5.0)
    assert config.backoff_first == 5.0
    assert config.backoff_cap == BACKOFF_MAX_ROUNDS * 5.0
    assert replace(config, gossip_interval=2.0).backoff_cap == BACKOFF_MAX_ROUNDS * 2.0
    explicit = SyncConfig(gossip_interval=5.0, backoff_base=1.0, backoff_max=120.0)
    assert (explicit.backoff_first, explicit.backoff_cap) == (1.0, 120.0)
    delays = [config.backoff_delay(n) for n in range(1, 8)]
    assert delays == sorted(delays) and delays[0] == 5.0 and delays[-1] == config.backoff_cap


def test_a_peer_back_in_touch_is_picked_in_the_next_round() -> None:
    config = SyncConfig(gossip_interval=1.0, jitter=0.0, fanout=1)
    link = make_link(config=config)
    a = link["a"]
    member = a.members["b"]
    for _ in range(100):  # B unreachable: A's back-off toward it grows
        link.tick("a", 1.0)
        if member.failures >= 4 and member.backoff_until > link.now + 2.0:
            break
    assert member.failures >= 4 and member.backoff_until > link.now + 2.0
    (digest,) = link.tick("b")  # B's WAN is back: it gets in touch
    link.deliver("b", digest)
    assert member.failures == 0 and member.backoff_until == 0.0
    link.take("a")
    assert [o.peer for o in link.tick("a", 1.0)] == ["b"]


def test_an_unanswered_digest_from_a_peer_that_talks_to_us_is_no_failure() -> None:
    config = SyncConfig(gossip_interval=1.0, jitter=0.0, reply_timeout=3.0)
    link = make_link(config=config)
    a = link["a"]
    link.tick("a")  # A's digest to B is lost ...
    assert a.members["b"].state is PeerState.AWAITING
    link.now += 1.0
    (digest,) = link.tick("b")  # ... but B keeps talking to A
    link.deliver("b", digest)
    link.take("a")
    for _ in range(4):
        link.tick("a", 1.0)
    assert a.members["b"].failures == 0


# ------------------------------------------------------------------ membership


def test_digests_carry_a_members_hash_and_no_list_between_agreeing_peers() -> None:
    link = make_link(("a", "b", "c"), config=SyncConfig(fanout=1))
    a, b = link["a"], link["b"]
    assert a.members_hash == b.members_hash == link["c"].members_hash
    link.create("a", "a/pump-1")
    (digest,) = link.tick("a")
    message = decode_message(digest.data)
    assert isinstance(message, Digest)
    assert message.members == () and message.members_hash == a.members_hash
    # Compact: the vector and a 16-byte hash, no ~115 bytes per member.
    assert len(digest.data) < 100
    link.deliver("a", digest)
    (reply,) = link.take(digest.peer)
    step2 = decode_message(reply.data)
    assert isinstance(step2, Deltas) and step2.members == ()


def _newcomer(link: Link, name: str) -> SyncEngine:
    identity = link.authority.new_identity(name, link.rng)
    return SyncEngine(
        identity=identity,
        state=ReplicaState(name, PUMP_SCHEMAS),
        fleet_public_key=link.authority.public_key,
        address=name,
        rng=random.Random(name),
        now=link.now,
    )


def test_a_newcomer_introduces_itself_and_learns_the_fleet_by_list() -> None:
    link = make_link(("a", "b"))
    a, b = link["a"], link["b"]
    d = link.engines["d"] = _newcomer(link, "d")
    d.members_hint("a", "a")  # from d's config: an address, no key yet
    (hello,) = link.tick("d")
    message = decode_message(hello.data)
    assert isinstance(message, Digest) and [m.credential.replica for m in message.members] == ["d"]
    events = link.deliver("d", hello)
    assert MemberJoined(replica="d", address="d") in events
    (reply,) = link.take("a")
    step2 = decode_message(reply.data)
    assert isinstance(step2, Deltas)
    assert {m.credential.replica for m in step2.members} == {"a", "b", "d"}
    link.deliver("a", reply)
    assert set(d.members) == {"a", "b", "d"} and d.members_hash == a.members_hash
    # B has not heard of D: A's hash for B is stale, so A's next digest to B
    # carries the list, and B learns D from it.
    a.expect_reply("b", link.now)
    a._send("b", a._digest_for("b"))
    (to_b,) = link.take("a")
    to_b_message = decode_message(to_b.data)
    assert isinstance(to_b_message, Digest) and len(to_b_message.members) == 3
    link.deliver("a", to_b)
    assert "d" in b.members and b.members_hash == a.members_hash
    (back,) = link.take("b")
    assert decode_message(back.data).members == ()  # type: ignore[union-attr]


def test_after_a_failure_the_peer_gets_the_full_list_again() -> None:
    """It may have come back without the members it knew (a fresh data dir)."""
    config = SyncConfig(gossip_interval=1.0, jitter=0.0, reply_timeout=3.0)
    link = make_link(config=config)
    a = link["a"]
    (first,) = link.tick("a")
    assert decode_message(first.data).members == ()  # type: ignore[union-attr]
    for _ in range(40):
        sent = link.tick("a", 1.0)
        if sent:
            break
    assert sent and a.members["b"].failures >= 1
    (again,) = sent
    assert len(decode_message(again.data).members) == 2  # type: ignore[union-attr]
