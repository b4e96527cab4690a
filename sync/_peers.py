"""What one engine knows about each peer, and the peer's conversation state.

A peer's state is one value from :class:`PeerState`, changed only through
:data:`TRANSITIONS` — a table in the style of h11's ``_state.py`` and aioquic's
``QuicConnectionState``: a (state, input) pair that is not in the table is
an illegal transition, and :func:`transition` raises an error naming both.
What the states mean:

* ``NEW``: a member we have never heard from (eviction counts from when the
  engine started, not from the epoch).
* ``IDLE``: heard from; nothing of ours is outstanding.
* ``AWAITING``: a round's digest of ours is unanswered; past
  ``reply_timeout`` with no word from the peer it is a failure.
* ``BACKING_OFF``: it failed; it is not picked again before ``backoff_until``.
* ``EVICTED``: silent for longer than ``evict_after``; it no longer holds
  compaction back. Any valid message brings it back.

A ``Snapshot`` is a relay's word for many origins' writes (see ``_engine``),
so it is taken only as the answer to a question: each time we tell a peer our
vector (a round's digest, or a reply that carries one) it earns one snapshot
credit, and an accepted snapshot spends one. A snapshot without a credit is the
input ``UNSOLICITED_SNAPSHOT``, which no state accepts. The credit is kept
apart from the state because the answer may come late, reordered behind
other messages, or after we gave up waiting. ``Digest`` and ``Deltas`` are
accepted in every state (signed batches prove themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from twinmesh.crdt import LocalProtocolError, RemoteProtocolError, VersionVector

from ._identity import MemberCredential

__all__ = ["TRANSITIONS", "Member", "PeerInput", "PeerState", "transition"]


class PeerState(StrEnum):
    NEW = "new"
    IDLE = "idle"
    AWAITING = "awaiting"
    BACKING_OFF = "backing-off"
    EVICTED = "evicted"


class PeerInput(StrEnum):
    ASK_ROUND = "ask-round"  # we sent a round's digest (or asked for the next chunk)
    ASK_REPLY = "ask-reply"  # we sent our vector inside a reply
    DIGEST = "digest"  # received
    DELTAS = "deltas"  # received
    SNAPSHOT = "snapshot"  # received, and we had asked
    UNSOLICITED_SNAPSHOT = "unsolicited-snapshot"  # received, and we had not
    TIMEOUT = "timeout"  # no answer and no word by reply_timeout
    LOST = "lost"  # no answer by reply_timeout, but the peer spoke since
    UNREACHABLE = "unreachable"  # the transport failed
    SILENT = "silent"  # not heard from for longer than evict_after
    RESTART = "restart"  # our process restarted: what was outstanding is gone


S, I = PeerState, PeerInput  # noqa: E741  (the table reads as one)
_ALL = tuple(PeerState)
_HEARD = {
    # A digest leaves an outstanding question of ours outstanding; other
    # valid messages answer it. Every valid message clears back-off.
    (s, I.DIGEST): (S.AWAITING if s is S.AWAITING else S.IDLE)
    for s in _ALL
} | {(s, i): S.IDLE for s in _ALL for i in (I.DELTAS, I.SNAPSHOT)}

#: (state, input) -> next state. Anything missing is an illegal transition.
TRANSITIONS: dict[tuple[PeerState, PeerInput], PeerState] = {
    **{(s, I.ASK_ROUND): S.AWAITING for s in _ALL},
    **{(s, I.ASK_REPLY): s for s in _ALL},  # no answer is owed: only a credit
    **_HEARD,
    (S.AWAITING, I.TIMEOUT): S.BACKING_OFF,
    (S.AWAITING, I.LOST): S.IDLE,
    **{(s, I.UNREACHABLE): S.BACKING_OFF for s in _ALL},
    **{(s, I.SILENT): S.EVICTED for s in (S.NEW, S.IDLE, S.BACKING_OFF, S.EVICTED)},
    **{(s, I.RESTART): (s if s in (S.NEW, S.EVICTED) else S.IDLE) for s in _ALL},
}

#: The inputs a peer's message can be; an illegal one is the peer's fault.
_REMOTE = frozenset({I.DIGEST, I.DELTAS, I.SNAPSHOT, I.UNSOLICITED_SNAPSHOT})


def transition(member: Member, event: PeerInput) -> PeerState:
    """Move ``member`` to its next state, or raise naming the state and the input:
    ``RemoteProtocolError`` for a message the peer should not have sent now,
    ``LocalProtocolError`` for our own misuse."""
    new = TRANSITIONS.get((member.state, event))
    if new is None:
        who = member.credential.replica
        if event in _REMOTE:
            raise RemoteProtocolError(
                f"{event.value}: {who} sent a snapshot in state {member.state.value}; "
                "we did not ask for one",
                kind=event.value,
            )
        raise LocalProtocolError(f"peer {who}: no transition from {member.state.value} on {event}")
    member.state = new
    return new


@dataclass(slots=True)
class Member:
    credential: MemberCredential
    address: str
    state: PeerState = PeerState.NEW
    last_contact: float | None = None  # our monotonic clock; None: never heard from
    # What it claimed to hold, entry by entry (mutable, so that a partial
    # vector costs what it carries; see ``_engine``), and the sum of it.
    known: dict[str, int] = field(default_factory=dict)
    known_total: int = 0
    failures: int = 0  # consecutive, for back-off
    backoff_until: float = 0.0  # meaningful in BACKING_OFF
    asked_at: float | None = None  # when we entered AWAITING (for reply_timeout)
    snapshot_credits: int = 0  # questions (our vector told) not yet answered by a snapshot
    # The member-set hash this peer last told us; None: unknown (never told,
    # or it failed since and may have lost its list). Ours differs: send ours.
    their_members_hash: bytes | None = None
    # Our vector as this peer was last told it: our change stamp then (-1:
    # never, or it may have forgotten, so the next vector sent is full), and
    # how many partial vectors it has had since the last full one.
    told_stamp: int = -1
    partials: int = 0
    # Its last partial vector did not add up here: ask it for a full one.
    want_resync: bool = False
    # Origins it may lack from us, as of our change stamp ``pending_stamp``
    # (-1: unknown, scan the whole vector). Between scans only origins that
    # changed here can join it: what it lacks costs what changed.
    pending: set[str] = field(default_factory=set)
    pending_stamp: int = -1

    @property
    def known_vv(self) -> VersionVector:
        """What it claimed to hold, as an immutable vector (a copy)."""
        return VersionVector(self.known)
