"""The Byzantine relay: a fleet member that lies in snapshots and digests.

A member's credential is genuine and its engine honest inside, but while the
fault is on, what it sends is joined by lies a compromised plant could tell
(the boundary ``SyncEngine._apply_snapshot`` documents):

* ``forged-reported``: a snapshot in which another home's reported field holds
  a value of the liar's choosing, at a sequence far ahead, its vector honest;
* ``inflated-vector``: a snapshot claiming another origin far beyond what that
  origin signed (which would cut the origin off if believed);
* ``invented-write``: a snapshot holding a shared-register write attributed to
  another origin beyond its vector;
* ``inflated-digest``: a digest claiming every origin far ahead.

Lies are sent alongside the liar's real messages (so the liar keeps taking
part), to the same peers, chosen from the fault PRNG. The receivers must
refuse each snapshot lie; the ordinary checkers then show that no forged
value is visible anywhere and no honest origin's vector ran ahead of the
oracle (it would have cut that origin off).
"""

from __future__ import annotations

import random

from twinmesh.crdt import (
    Dot,
    HybridTime,
    MVRegister,
    Sibling,
    SingleWriterRegister,
    VersionVector,
    encode_state,
)
from twinmesh.sync import Digest, Snapshot, SyncEngine, encode_message

__all__ = ["LIES", "lie"]

LIES = ("forged-reported", "inflated-vector", "invented-write", "inflated-digest")
AHEAD = 1_000_000
FORGED = "FORGED-BY-RELAY"


def lie(engine: SyncEngine, rng: random.Random) -> tuple[str, bytes] | None:
    """One lie from ``engine``'s replica, or None if it has nothing to lie about yet."""
    kind = rng.choice(LIES)
    me = engine.replica
    if kind == "inflated-digest":
        vv = VersionVector({o: n + AHEAD for o, n in engine.vv.items()})
        return kind, encode_message(Digest(sender=me, vv=vv, members_hash=engine.members_hash))
    state = engine.state.copy()
    others = [e for e in state if e.header.home not in (me, "*")]
    if not others:
        return None
    entity = rng.choice(others)
    home = entity.header.home
    vv = engine.vv
    if kind == "forged-reported":
        names = [n for n, f in entity.fields.items() if isinstance(f, SingleWriterRegister)]
        if not names:
            return None
        name = rng.choice(names)
        current = entity.fields[name]
        assert isinstance(current, SingleWriterRegister)
        entity.fields[name] = SingleWriterRegister(
            FORGED, current.seq + 1, home, HybridTime(2**40, 0)
        )
    elif kind == "inflated-vector":
        vv = vv.advanced(home, vv[home] + AHEAD)
    else:
        names = [n for n, f in entity.fields.items() if isinstance(f, MVRegister)]
        if not names:
            return None
        name = rng.choice(names)
        reg = entity.fields[name]
        assert isinstance(reg, MVRegister)
        dot = Dot(home, vv[home] + AHEAD)
        forged = MVRegister(
            [Sibling(value=FORGED, dot=dot, author="mallory", time=HybridTime(2**40, 0))]
        )
        entity.fields[name] = reg.join(forged)
    proofs = tuple(engine.heads[o] for o in sorted(engine.heads))
    message = Snapshot(sender=me, vv=vv, state=encode_state(state), digest=vv, proofs=proofs)
    return kind, encode_message(message)
