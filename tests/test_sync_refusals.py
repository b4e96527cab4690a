"""Every way a SyncEngine refuses input, through the fake link of
``test_sync_protocol``: the refusal is reported with its reason, counted, and
changes neither the state nor the version vector."""

from __future__ import annotations

import random
from dataclasses import replace

import msgpack
import pytest
from test_sync_protocol import T0_MS, Link, _digest_bytes, make_link

from twinmesh.crdt import (
    Delta,
    HybridTime,
    RemoteProtocolError,
    SingleWriterRegister,
    VersionVector,
    encode_deltas,
    state_digest,
)
from twinmesh.crdt.demo_models import PUMP
from twinmesh.sync import (
    BatchRefused,
    Deltas,
    Digest,
    FleetAuthority,
    MemberInfo,
    Outgoing,
    SignedBatch,
    decode_message,
    encode_message,
    members_hash,
    seal_batch_bytes,
)


def _reply_from_a(link: Link) -> Deltas:
    """A's step-2 answer to B's digest, decoded, holding A's batches."""
    if "a/pump-1" not in link["a"].state.entities:
        link.create("a", "a/pump-1")
    link.write("a", "a/pump-1", "maintenance_date", "2026-03-03")
    link.deliver("b", Outgoing(peer="a", address="a", data=_digest_bytes(link["b"])))
    (reply,) = link.take("a")
    message = decode_message(reply.data)
    assert isinstance(message, Deltas) and message.batches
    return message


def _unchanged(link: Link, name: str):  # type: ignore[no-untyped-def]
    engine = link[name]
    before = (state_digest(engine.state), engine.vv)
    return lambda: (state_digest(engine.state), engine.vv) == before


def _refused(link: Link, message: Deltas, kind: str) -> BatchRefused:
    b = link["b"]
    check = _unchanged(link, "b")
    events = b.receive(encode_message(message), now=link.now, peer="a")
    refused = [e for e in events if isinstance(e, BatchRefused)]
    assert refused and refused[0].reason.startswith(kind), events
    assert b.metrics.refusals[kind] >= 1
    assert check()
    return refused[0]


def _signed(link: Link, origin: str, first: int, deltas: list[Delta]) -> SignedBatch:
    payload = encode_deltas(deltas)
    blob = seal_batch_bytes(origin, first, len(deltas), payload)
    return SignedBatch(
        origin=origin,
        first=first,
        last=first + len(deltas) - 1,
        blob=blob,
        signature=link[origin].identity.sign(blob),
    )


def test_bad_signature() -> None:
    link = make_link()
    message = _reply_from_a(link)
    batch = message.batches[0]
    forged = replace(batch, signature=bytes([batch.signature[0] ^ 1]) + batch.signature[1:])
    _refused(link, replace(message, batches=(forged,)), "bad-signature")
    # The genuine batch still applies afterwards: a refusal is not sticky.
    assert link["b"].receive(encode_message(message), now=link.now, peer="a")


def test_batch_signed_by_someone_else() -> None:
    link = make_link(("a", "b", "c"))
    message = _reply_from_a(link)
    batch = message.batches[0]
    by_c = replace(batch, signature=link["c"].identity.sign(batch.blob))
    _refused(link, replace(message, batches=(by_c,)), "bad-signature")


def test_unknown_origin() -> None:
    link = make_link()
    message = _reply_from_a(link)
    stranger = replace(message.batches[0], origin="x")
    _refused(link, replace(message, batches=(stranger,)), "unknown-origin")


def test_sequence_gap() -> None:
    link = make_link()
    message = _reply_from_a(link)  # A holds 1..2, B holds nothing of A
    create = Delta(origin="a", author="t", entity="a/pump-9", model=PUMP.model, home="a")
    later = _signed(link, "a", 3, [create])  # genuinely signed, but starts at 3
    _refused(link, replace(message, batches=(later,)), "sequence-gap")


def test_inflated_claim() -> None:
    """The unsigned claim covers more than the origin signed (an inflated vector)."""
    link = make_link()
    message = _reply_from_a(link)
    batch = message.batches[0]
    inflated = replace(batch, last=batch.last + 5)
    _refused(link, replace(message, batches=(inflated,)), "inflated-claim")


def test_delta_breaking_model_rules() -> None:
    """A signs, correctly, a write of reported state of B's asset: only home writes it."""
    link = make_link()
    link.create("b", "b/pump-1")
    link.exchange("a", "b")
    forged = Delta(
        origin="a",
        author="intruder",
        entity="b/pump-1",
        model=PUMP.model,
        home="b",
        field="serial",
        state=SingleWriterRegister("SN-FORGED", 1, "a", HybridTime(T0_MS, 0)),
    )
    batch = _signed(link, "a", link["a"].vv["a"] + 1, [forged])
    message = Deltas(sender="a", batches=(batch,))
    refused = _refused(link, message, "invalid-delta")
    assert "home" in refused.reason


def test_sender_and_peer_mismatch() -> None:
    link = make_link(("a", "b", "c"))
    message = _reply_from_a(link)
    b = link["b"]
    check = _unchanged(link, "b")
    with pytest.raises(RemoteProtocolError, match="arrived from c"):
        b.receive(encode_message(message), now=link.now, peer="c")
    assert b.metrics.refusals["malformed-message"] == 1 and check()


_CLAIM = [False, 0, False]  # a whole vector, total 0, no resync asked


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00garbage",
        b"\xc1",  # never used in msgpack
        encode_message(Digest(sender="a", vv=VersionVector({"a": 1})))[:-1],
        msgpack.packb(["twinmesh/sync", 99, "digest", "a", [], None, []]),
        # Version 1 sent every member in every digest; we no longer parse it.
        msgpack.packb(["twinmesh/sync", 1, "digest", "a", [], []]),
        # Version 3 had no vector claim (partial, total, resync).
        msgpack.packb(["twinmesh/sync", 3, "digest", "a", [], None, []]),
        msgpack.packb(["twinmesh/sync", 4, "gossip", "a"]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", ["a", -1], None, [], _CLAIM]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", ["a", True], None, [], _CLAIM]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", ["a", 1, "a", 2], None, [], _CLAIM]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", [], None, _CLAIM]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", [], None, []]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", [], None, [], [1, 0, False]]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", [], None, [], [True, -1, False]]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", [], None, [], [True, "1", False]]),
        msgpack.packb(["twinmesh/sync", 4, "digest", "a", [], None, [], [True, 0]]),
    ],
    ids=[
        "empty",
        "garbage",
        "reserved-byte",
        "truncated",
        "future-version",
        "old-version",
        "v3-digest",
        "unknown-kind",
        "negative-vv",
        "bool-in-vv",
        "replica-twice-in-vv",
        "digest-missing-members",
        "digest-missing-claim",
        "claim-partial-not-bool",
        "claim-negative-total",
        "claim-total-not-int",
        "claim-short",
    ],
)
def test_malformed_bytes(data: bytes) -> None:
    link = make_link()
    link.create("b", "b/pump-1")
    b = link["b"]
    check = _unchanged(link, "b")
    with pytest.raises(RemoteProtocolError):
        b.receive(data, now=link.now, peer="a")
    assert b.metrics.refusals["malformed-message"] == 1 and check()


def test_member_not_vouched_by_the_fleet_key() -> None:
    link = make_link()
    b = link["b"]
    rng = random.Random(99)
    other_fleet = FleetAuthority(rng)
    mallory = other_fleet.new_identity("mallory", rng)
    info = MemberInfo(credential=mallory.credential, address="mallory", last_contact=0.0)
    digest = decode_message(_digest_bytes(link["a"]))
    assert isinstance(digest, Digest)
    # A consistent message (the list with its own hash): refused member by member.
    forged = replace(digest, members=(*digest.members, info), members_hash=None)
    b.receive(encode_message(forged), now=0.0, peer="a")
    assert "mallory" not in b.members
    assert b.metrics.refusals["member-not-vouched"] == 1
    # And mallory itself may not talk to the fleet.
    from_mallory = Digest(sender="mallory", vv=digest.vv, members=(info,))
    with pytest.raises(RemoteProtocolError, match="not a member"):
        b.receive(encode_message(from_mallory), now=0.0, peer="mallory")


def test_a_known_member_cannot_change_its_key() -> None:
    link = make_link()
    b = link["b"]
    rng = random.Random(5)
    impostor = link.authority.new_identity("a", rng)  # vouched, but not a's registered key
    info = MemberInfo(credential=impostor.credential, address="a", last_contact=0.0)
    digest = decode_message(_digest_bytes(link["a"]))
    assert isinstance(digest, Digest)
    b.receive(
        encode_message(replace(digest, members=(info,), members_hash=None)), now=0.0, peer="a"
    )
    assert b.members["a"].credential == link["a"].identity.credential
    assert b.metrics.refusals["member-key-mismatch"] == 1


def _raw_digest(link: Link, members_hash: object, members: list[object]) -> bytes:
    a = link["a"]
    flat: list[object] = []
    for r, n in a.vv.items_sorted():
        flat += [r, n]
    return msgpack.packb(  # type: ignore[no-any-return]
        [
            "twinmesh/sync",
            4,
            "digest",
            "a",
            flat,
            members_hash,
            members,
            [False, sum(a.vv.values()), False],
        ],
        use_bin_type=True,
    )


def _member_raw(info: MemberInfo) -> list[object]:
    c = info.credential
    return [c.replica, c.public_key, c.fleet_signature, info.address, info.last_contact]


@pytest.mark.parametrize(
    "case",
    [
        "list-not-matching-hash",
        "replica-twice",
        "list-without-hash",
        "short-hash",
        "hash-not-bytes",
    ],
)
def test_inconsistent_membership_is_refused(case: str) -> None:
    link = make_link(("a", "b", "c"))
    link.create("b", "b/pump-1")
    b = link["b"]
    infos = list(b._member_infos())
    good_hash = members_hash(i.credential for i in infos)
    raw = [_member_raw(i) for i in infos]
    data = {
        # Drop C from the list but keep the hash of the whole set.
        "list-not-matching-hash": lambda: _raw_digest(link, good_hash, raw[:2]),
        "replica-twice": lambda: _raw_digest(link, good_hash, [*raw, raw[0]]),
        "list-without-hash": lambda: _raw_digest(link, None, raw),
        "short-hash": lambda: _raw_digest(link, good_hash[:8], []),
        "hash-not-bytes": lambda: _raw_digest(link, "deadbeef", []),
    }[case]()
    check = _unchanged(link, "b")
    with pytest.raises(RemoteProtocolError, match="members"):
        b.receive(data, now=link.now, peer="a")
    assert b.metrics.refusals["malformed-message"] == 1 and check()
    assert link.take("b") == []


def test_a_hash_without_a_list_is_fine() -> None:
    link = make_link()
    b = link["b"]
    data = _raw_digest(link, b.members_hash, [])
    b.receive(data, now=link.now, peer="a")
    assert not b.metrics.refusals


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"first": True}, "first"),
        ({"last": 0}, "last"),
        ({"origin": ""}, "origin"),
        ({"signature": b"x" * 63}, "signature"),
        ({"blob": "text"}, "blob"),
    ],
)
def test_malformed_batch_fields_are_named(patch: dict[str, object], reason: str) -> None:
    link = make_link()
    message = _reply_from_a(link)
    batch = message.batches[0]
    fields = {
        "origin": batch.origin,
        "first": batch.first,
        "last": batch.last,
        "blob": batch.blob,
        "signature": batch.signature,
    }
    fields.update(patch)
    raw = msgpack.packb(
        [
            "twinmesh/sync",
            4,
            "deltas",
            "a",
            [[fields[k] for k in ("origin", "first", "last", "blob", "signature")]],
            None,
            False,
            None,
            [],
            _CLAIM,
        ],
        use_bin_type=True,
    )
    b = link["b"]
    check = _unchanged(link, "b")
    with pytest.raises(RemoteProtocolError, match=rf"batches\[0\]\.{reason}"):
        b.receive(raw, now=link.now, peer="a")
    assert check()
