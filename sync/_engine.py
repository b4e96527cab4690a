"""The sans-IO anti-entropy engine: one per replica.

Theory of operation
-------------------
Delta-state anti-entropy, push-pull (Almeida, Shoker & Baquero, "Delta state
replicated data types", JPDC 2018, §6; the digest exchange of Demers et al.,
"Epidemic algorithms for replicated database maintenance", PODC 1987):

1. Every gossip interval (with jitter) the engine picks ``fanout`` peers
   from a seeded RNG — mostly from a small stable view, sometimes from the
   whole fleet (``VIEW_SIZE``) — skipping peers that failed recently
   (exponential back-off), and sends each a ``Digest`` — its version vector
   and a hash of its member set (the full set only to a peer whose last hash
   differed).
2. A peer answers with ``Deltas``: the signed batches we lack, per origin in
   origin order, plus its own vector.
3. We answer with the batches it lacks. Batches are relayed verbatim, so a
   write reaches every replica transitively with its origin's signature.

Every replica applies an origin's deltas in sequence without gaps, so a
replica's applied set is exactly its version vector. A batch is refused —
with a reason, counted, never applied — if its origin is unknown, its
signature is bad, its unsigned claim is wider than what was signed (an
inflated version vector), it leaves a gap, or any delta in it breaks the
model's rules. A refused batch is simply asked for again later.

Cost per message is what changed, not the fleet (message version 4): a
vector sent to a peer holds only the entries that advanced since we last
told that peer (whole every ``FULL_VECTOR_EVERY`` and after a failure), with
the whole vector's sum as a checksum — a receiver's copy only lags, so equal
sums mean equal vectors, and a mismatch asks for a whole one (``resync``).
What a peer lacks is worked out from the origins it lacked last time plus
those that changed here since (``Member.pending``); the compaction horizon is
kept per origin as counts of live members' values (``_hz``), so compaction
looks only at origins whose horizon or log moved.

Backlogs travel in chunks under ``max_message_bytes``; ``more`` asks the
receiver to continue at once rather than wait for the next round.

Back-off: an unanswered digest (or a transport failure) doubles the wait
before that peer is picked again, from ``backoff_base`` up to ``backoff_max``,
each wait drawn from [½, 1] of its nominal value (seeded jitter, so peers that
failed together do not retry together). It exists so a dead peer neither
takes fanout slots from live ones nor gets a storm of connection attempts;
epidemic spread only needs each round to reach *some* live partner (Demers et
al. 1987: an update reaches all n sites in O(log n) cycles of one random
contact each). Both bounds default to multiples of ``gossip_interval``
because what a wait costs is rounds: a fixed 60 s cap at a 1 s interval left
a plant whose WAN came back deaf for most of a minute (8.6 rounds from heal to
convergence in ``scenarios/wan-split.toml``, 7.7 of them back-off, against a
goal of 4). Any valid message from a peer proves it reachable and clears its
back-off at once; a digest that goes unanswered while the peer is talking to
us is a lost message, not a failure.

Compaction: once every live member is known to hold an origin's deltas up to
``h``, batches wholly below ``h`` are dropped (the state itself is the
snapshot). A member silent for longer than ``evict_after`` stops holding the
horizon back; when it returns and asks for something below the horizon, it
receives a ``Snapshot`` of the whole state and continues from there.

Own writes and crashes (issue 17): ``commit(durable=False)`` keeps a write
home until ``mark_durable`` — no batch and no snapshot carries it before it is
on disk — so a write a crash takes back never left, and its sequence number
is reused by the restarted replica: every origin's sequence stays gap-free,
which digests and ``missing_from`` rely on. What must never be reused is the
write's per-field dot, which a reader's context may hold; those are the
crdt layer's, issued by an epoch-stamped actor (crdt/_clocks.py), and a
replica begins a new epoch after a crash. The engine needs no epoch.

IO-free, in the style of aioquic: ``receive(data, now)``,
``messages_to_send()``, ``next_timer()``, ``handle_timer(now)``. Time is a
float in seconds supplied by the caller; randomness is the ``random.Random``
given at construction.
"""

from __future__ import annotations

import random
from bisect import bisect_right, insort
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from twinmesh.crdt import (
    Delta,
    LocalProtocolError,
    RemoteProtocolError,
    ReplicaState,
    SingleWriterRegister,
    VersionVector,
    decode_deltas,
    decode_state,
    encode_deltas,
    encode_state,
)

from ._identity import Identity, credential_bytes, verify_signature
from ._messages import TOTAL_MASK as _TOTAL_MASK
from ._messages import (
    Deltas,
    Digest,
    MemberInfo,
    Message,
    SignedBatch,
    Snapshot,
    decode_message,
    encode_message,
    members_hash,
    open_batch,
    seal_batch_bytes,
)
from ._peers import TRANSITIONS, Member, PeerInput, PeerState, transition

__all__ = [
    "BatchRefused",
    "BatchStored",
    "Compacted",
    "DeltasApplied",
    "EngineMetrics",
    "Event",
    "JournalEntry",
    "MemberJoined",
    "Outgoing",
    "ProofStored",
    "SnapshotApplied",
    "SnapshotStored",
    "SyncConfig",
    "SyncEngine",
]


#: The default back-off cap, in gossip intervals. Toward a dead peer an engine
#: then retries every reply_timeout + 4..8 rounds (the jittered cap); after a
#: heal the first message crosses as soon as any one of the pairs across the
#: cut retries, in both directions — for one plant cut off from three peers,
#: the soonest of six such timers, typically within a round or two. A fanout
#: slot spent on a dead peer costs one digest, so the cap need not be long to
#: keep back-off's purpose.
BACKOFF_MAX_ROUNDS = 8

#: A peer may answer each question of ours with one snapshot; questions we ask
#: before an answer arrives add up to this many. The cap bounds the work a
#: liar can make us do, not what it can make us believe (every snapshot is
#: checked); it is high because a clogged link delivers a pile of answers at once.
MAX_SNAPSHOT_CREDITS = 64

#: Every this many vectors to a peer, one is sent whole even if the partial
#: ones added up: a bound on how long any drift the checksum missed (a sum
#: wrapping mod 2**64, a peer's bug) could last.
FULL_VECTOR_EVERY = 64

#: Peers are mostly picked from a small, stable "view" of the fleet (as in
#: HyParView's active view, Leitão et al., DSN 2007), and otherwise uniformly
#: from all members (1 pick in ``RANDOM_PICK``; a new pairing costs a whole
#: vector each way, so these are kept rare). A partial vector holds what
#: changed since the last exchange with that peer: with uniform picks out of
#: 500 a pair met every ~125 rounds and every vector went whole; with a view
#: of 8 it meets every few rounds. The uniform picks keep the contact graph
#: an expander across partitions (epidemic spread stays O(log n) rounds), and
#: a view member that fails is replaced by a random member.
VIEW_SIZE = 8
RANDOM_PICK = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncConfig:
    gossip_interval: float = 1.0  # seconds between rounds
    jitter: float = 0.1  # a round starts within ±10 % of the interval
    fanout: int = 2
    max_message_bytes: int = 512 * 1024  # Akka's gossip overflowed 512 kB frames; we chunk below
    max_batch_deltas: int = 1000
    max_batch_bytes: int = 128 * 1024
    reply_timeout: float = 3.0  # no answer to a digest by then: the peer failed
    backoff_base: float | None = None  # first wait, seconds; None: one gossip interval
    backoff_max: float | None = None  # cap, seconds; None: BACKOFF_MAX_ROUNDS intervals
    evict_after: float = 24 * 3600.0  # silent longer: no longer holds compaction back
    compact: bool = True
    keep_journal: bool = False  # an IO driver that persists sets this and drains the journal

    def __post_init__(self) -> None:
        if self.gossip_interval <= 0 or self.fanout < 1 or self.max_batch_deltas < 1:
            raise LocalProtocolError("gossip_interval, fanout and max_batch_deltas must be > 0")
        if not 0 <= self.jitter < 1:
            raise LocalProtocolError("jitter is a fraction in [0, 1)")
        if (self.backoff_base is not None and self.backoff_base <= 0) or (
            self.backoff_max is not None and self.backoff_max <= 0
        ):
            raise LocalProtocolError("backoff_base and backoff_max must be > 0")

    # Resolved here rather than in __post_init__ so that dataclasses.replace()
    # with a new gossip_interval moves relative defaults along with it.
    @property
    def backoff_first(self) -> float:
        """The first wait after a failure, seconds."""
        if self.backoff_base is not None:
            return self.backoff_base
        return self.gossip_interval

    @property
    def backoff_cap(self) -> float:
        """The longest nominal wait, seconds."""
        if self.backoff_max is not None:
            return self.backoff_max
        return BACKOFF_MAX_ROUNDS * self.gossip_interval

    def backoff_delay(self, failures: int) -> float:
        """The nominal wait after ``failures`` consecutive failures (>= 1)."""
        # Cap the exponent: 2 ** failures overflows a float after ~1024 failures
        # (a peer silent for a day or two), which crashed handle_timer.
        doublings = min(max(failures, 1) - 1, 60)
        return min(self.backoff_cap, self.backoff_first * float(2**doublings))


def _refusal(kind: str, detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{kind}: {detail}", kind=kind)


def _last(batch: SignedBatch) -> int:
    return batch.last


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltasApplied:
    sender: str
    origin: str
    first: int
    last: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRefused:
    sender: str
    origin: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotApplied:
    sender: str
    vv: VersionVector


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberJoined:
    replica: str
    address: str


Event = DeltasApplied | BatchRefused | SnapshotApplied | MemberJoined


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStored:
    """Journal: a batch was logged (sealed here, or received and applied).

    ``applied`` are the deltas this replica joined from it (a received batch
    may overlap what we had). An IO driver persists the entry before it
    acknowledges anything that depends on it."""

    batch: SignedBatch
    applied: tuple[Delta, ...]
    local: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotStored:
    """Journal: a snapshot was merged; the whole state should be persisted."""

    vv: VersionVector


@dataclass(frozen=True, slots=True, kw_only=True)
class Compacted:
    """Journal: batches of ``origin`` up to ``floor`` were dropped from the log."""

    origin: str
    floor: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProofStored:
    """Journal: ``batch`` is now the proof kept under ``key`` — ``("head",
    origin)``: the origin's latest batch; ``("reported", entity, field)``: the
    batch that wrote a reported field's current value. Kept through compaction
    so that any replica can prove what a snapshot it serves claims."""

    key: tuple[str, ...]
    batch: SignedBatch


JournalEntry = BatchStored | SnapshotStored | Compacted | ProofStored

_Handler = Callable[[Member, Message, float, int | None], list[Event]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    peer: str
    address: str
    data: bytes


@dataclass(slots=True)
class EngineMetrics:
    rounds: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    deltas_sent: int = 0
    deltas_received: int = 0  # applied
    deltas_duplicate: int = 0
    deltas_refused: int = 0
    snapshots_sent: int = 0
    snapshots_received: int = 0
    snapshots_duplicate: int = 0  # a copy of one taken, arriving without a credit
    refusals: Counter[str] = field(default_factory=Counter)  # by RemoteProtocolError.kind
    # The last few refusals with their reasons (kind, reason), for a driver to log.
    refused: list[tuple[str, str]] = field(default_factory=list)


class SyncEngine:
    """Anti-entropy for one replica; see the module docstring."""

    def __init__(
        self,
        *,
        identity: Identity,
        state: ReplicaState,
        fleet_public_key: bytes,
        seeds: Iterable[MemberInfo] = (),
        address: str = "",
        config: SyncConfig | None = None,
        rng: random.Random,
        now: float,
        verify: Callable[[bytes, bytes, bytes], bool] = verify_signature,
        decode: Callable[[bytes], Sequence[Delta]] = decode_deltas,
    ) -> None:
        # ``verify(public_key, signature, data)`` and ``decode(payload)`` are
        # injectable so a process that hosts many engines (the simulator) can
        # share one memo of these pure functions of the signed bytes instead
        # of repeating them per replica. What depends on this replica's state
        # (sequence, origin, the model's rules) is checked here every time.
        if state.replica != identity.replica:
            raise LocalProtocolError(
                f"state belongs to {state.replica}, identity is {identity.replica}"
            )
        if not identity.credential.verify(fleet_public_key):
            raise LocalProtocolError("our own credential is not signed by the fleet key")
        self.identity = identity
        self.replica = identity.replica
        self.state = state
        self.fleet_public_key = fleet_public_key
        self.address = address
        self.config = config or SyncConfig()
        self.rng = rng
        self._verify = verify
        self._decode = decode
        self.metrics = EngineMetrics()
        self.vv = VersionVector()
        self.log: dict[str, list[SignedBatch]] = {}
        self.floor: dict[str, int] = {}  # deltas <= floor are only in snapshots
        # Proofs kept through compaction (see ProofStored): each origin's latest
        # batch, and the batch behind each reported field's current value.
        self.heads: dict[str, SignedBatch] = {}
        self.reported: dict[tuple[str, str], SignedBatch] = {}
        self._started = now  # eviction of a member never heard from counts from here
        # Our vector's change log: origin -> the stamp of its latest advance,
        # oldest first (a dict keeps insertion order; an advance moves its
        # origin to the end), so "what changed since stamp s" is a walk back
        # from the end that stops at s: O(what changed).
        self._stamp = 0
        self._changed: dict[str, int] = {}
        self._vv_total = 0
        self._vv_plain: dict[str, int] = {}  # self.vv as a plain dict, for the hot loops
        # The incremental horizon: per origin, how many live members (not us,
        # not evicted) are known to hold it up to each value (absent = 0;
        # values no member holds are not keys), so min() of the keys is what
        # every live member holds. Kept up to date as members' vectors move,
        # which costs what moved; compaction then looks only at the origins
        # whose horizon or log changed (``_dirty``).
        self._hz: dict[str, dict[int, int]] = {}
        self._live: set[str] = set()
        self._dirty: set[str] = set()
        self._next_evict_check = now + self.config.evict_after
        self._awaiting: dict[str, None] = {}  # members asked, in the order asked
        self._peer_names: list[str] = []  # sorted, for picking peers
        self._view: list[str] = []  # see VIEW_SIZE; filled on the first round
        self._unsealed: list[Delta] = []
        self._durable_seq = 0  # own deltas up to here are durable and may leave
        self.journal: list[JournalEntry] = []
        self._hints: dict[str, str] = {}  # replica -> address, key not yet known
        self._pinned: dict[str, str] = {}  # replica -> configured address
        self._outbox: list[Outgoing] = []
        self.members: dict[str, Member] = {
            self.replica: Member(credential=identity.credential, address=address)
        }
        for info in seeds:
            self._learn_member(info, now)
        self.members_hash = self._hash_members()
        self._peer_names = sorted(r for r in self.members if r != self.replica)
        # Peers we were seeded with are assumed seeded alike, so the first
        # digests of a fleet that starts together carry no lists (at 100
        # plants those were ~10 kB each). Wrong guesses heal: a peer with
        # another set answers with its own hash (and list), and one that does
        # not know us refuses, which counts as a failure and resets this.
        for member in self.members.values():
            member.their_members_hash = self.members_hash
        self._next_round = now + self._interval()
        # Message dispatch (aioquic's frame handlers): the handler, and the
        # peer-state input the message is; the transition table in ``_peers``
        # says in which states that input is allowed.
        self._dispatch: dict[type, tuple[_Handler, PeerInput]] = {
            Digest: (self._on_digest, PeerInput.DIGEST),
            Deltas: (self._on_deltas, PeerInput.DELTAS),
            Snapshot: (self._on_snapshot, PeerInput.SNAPSHOT),
        }

    # ---------------------------------------------------------------- local

    def commit(self, delta: Delta, *, durable: bool = True) -> int:
        """Record a delta this replica made (already joined into ``state``);
        returns its sequence number, the n of its replica-level dot.

        With ``durable=False`` the delta stays home until :meth:`mark_durable`
        covers it: a write that a crash could still lose must never reach a
        peer, or a restarted replica would reuse its sequence number."""
        if delta.origin != self.replica:
            raise LocalProtocolError(f"{self.replica} cannot commit a delta made at {delta.origin}")
        seq = self.vv[self.replica] + 1
        self._advance(self.replica, seq)
        self._unsealed.append(delta)
        if durable:
            self._durable_seq = seq
        return seq

    def mark_durable(self, seq: int) -> None:
        """Own deltas up to ``seq`` are on disk and may be gossiped."""
        self._durable_seq = max(self._durable_seq, min(seq, self.vv[self.replica]))

    def lose_undurable(self) -> int:
        """Drop our own deltas that :meth:`commit` took with ``durable=False``
        and :meth:`mark_durable` never covered: what a crash inside the commit
        window takes (a node rebuilds its engine from the store instead; the
        simulator, which keeps the engine, calls this). The caller takes the
        writes out of the state. Their sequence numbers are free again — they
        never left (``_seal`` seals durable deltas only) — so the vector stays
        gap-free. Returns how many were dropped."""
        lost = self.vv[self.replica] - self._durable_seq
        if lost <= 0:
            return 0
        del self._unsealed[len(self._unsealed) - lost :]
        entries = self.vv.as_dict()
        entries[self.replica] = self._durable_seq
        self.vv = VersionVector(entries)
        return lost

    def _seal(self) -> None:
        """Sign our durable, not yet logged deltas into batches."""
        first = self.vv[self.replica] - len(self._unsealed) + 1
        ready = max(0, self._durable_seq - first + 1)
        pending = self._unsealed[:ready]
        if not pending:
            return
        self._unsealed = self._unsealed[ready:]
        start = 0
        while start < len(pending):
            end = min(start + self.config.max_batch_deltas, len(pending))
            payload = encode_deltas(pending[start:end])
            while len(payload) > self.config.max_batch_bytes and end - start > 1:
                end = start + (end - start) // 2
                payload = encode_deltas(pending[start:end])
            batch_first = first + start
            blob = seal_batch_bytes(self.replica, batch_first, end - start, payload)
            batch = SignedBatch(
                origin=self.replica,
                first=batch_first,
                last=batch_first + (end - start) - 1,
                blob=blob,
                signature=self.identity.sign(blob),
            )
            self.log.setdefault(self.replica, []).append(batch)
            self._dirty.add(self.replica)
            self._journal(BatchStored(batch=batch, applied=(), local=True))
            self._keep_proofs(batch, pending[start:end])
            start = end

    def _keep_proofs(self, batch: SignedBatch, deltas: Sequence[Delta]) -> None:
        """After ``batch`` was logged and joined: it is its origin's head, and the
        proof of every reported value it wrote that is now current here."""
        self.heads[batch.origin] = batch
        self._journal(ProofStored(key=("head", batch.origin), batch=batch))
        entities = self.state.entities
        for d in deltas:
            if isinstance(d.state, SingleWriterRegister) and d.field is not None:
                current = entities[d.entity].fields.get(d.field)
                if current == d.state:
                    self.reported[(d.entity, d.field)] = batch
                    self._journal(ProofStored(key=("reported", d.entity, d.field), batch=batch))

    def load_durable(
        self,
        *,
        vv: VersionVector,
        batches: Iterable[SignedBatch],
        floor: dict[str, int],
        unsealed: Sequence[Delta],
        proofs: Iterable[tuple[tuple[str, ...], SignedBatch]] = (),
    ) -> None:
        """Restore what a store persisted (the state itself is restored by the
        caller). ``unsealed`` are our own durable deltas not yet in a batch;
        ``batches`` may include proofs below the floor (they stay out of the log)."""
        self._reset_vector(vv)
        self.log = {}
        for batch in sorted(batches, key=lambda b: (b.origin, b.first)):
            if batch.last > floor.get(batch.origin, 0):
                self.log.setdefault(batch.origin, []).append(batch)
        self.floor = dict(floor)
        for key, batch in proofs:
            if key[0] == "head" and len(key) == 2:
                self.heads[key[1]] = batch
            elif key[0] == "reported" and len(key) == 3:
                self.reported[(key[1], key[2])] = batch
        self._unsealed = list(unsealed)
        self._durable_seq = vv[self.replica]
        self._dirty.update(self.log)

    # ---------------------------------------------------------------- our vector

    @property
    def vv_stamp(self) -> int:
        """Grows by one each time an entry of our vector advances."""
        return self._stamp

    def changed_since(self, stamp: int) -> dict[str, int]:
        """The entries of our vector that advanced after ``stamp``, current values."""
        vv = self._vv_plain
        out: dict[str, int] = {}
        for origin, s in reversed(self._changed.items()):
            if s <= stamp:
                break
            out[origin] = vv[origin]
        return out

    def _advance(self, origin: str, n: int) -> None:
        """Our vector's ``origin`` entry moves to ``n`` (if that is forward)."""
        old = self.vv[origin]
        if n <= old:
            return
        self.vv = self.vv.advanced(origin, n)
        self._vv_plain[origin] = n
        self._vv_total += n - old
        self._stamp += 1
        changed = self._changed
        changed.pop(origin, None)
        changed[origin] = self._stamp
        if origin not in self._hz:
            self._hz_origin(origin)
        self._dirty.add(origin)

    def _reset_vector(self, vv: VersionVector) -> None:
        """Our vector is replaced whole (restored from a store): every peer gets
        our full vector next, and what each lacks is worked out afresh."""
        for origin, n in vv.items_sorted():
            self._advance(origin, n)
        if vv != self.vv:  # it went back: no change log describes that
            self.vv = vv
            self._vv_plain = vv.as_dict()
            self._vv_total = sum(vv.values())
            self._stamp += 1
            self._changed = dict.fromkeys(sorted(vv), self._stamp)
            for origin in vv:
                if origin not in self._hz:
                    self._hz_origin(origin)
        for member in self.members.values():
            member.told_stamp = -1
            member.pending_stamp = -1
        self._dirty.update(vv)

    def _vector_for(self, member: Member) -> tuple[VersionVector, bool]:
        """Our vector as we tell it to ``member`` now: (entries, partial)."""
        stamp = member.told_stamp
        partial = stamp >= 0 and member.partials < FULL_VECTOR_EVERY
        member.told_stamp = self._stamp
        if not partial:
            member.partials = 0
            return self.vv, False
        member.partials += 1
        return VersionVector(self.changed_since(stamp)), True

    # ---------------------------------------------------------------- what peers hold

    def _take_vector(
        self, member: Member, vv: VersionVector, *, partial: bool, total: int | None
    ) -> None:
        """``member`` told us its vector: whole, or the entries that changed
        since it last told us (checked against ``total``, the sum of the whole)."""
        known = member.known
        counted = member.credential.replica in self._live
        if not partial:
            # Replaced, not merged: a peer may have come back with less (a
            # fresh data directory), and must then be sent what it lost.
            whole = vv.as_dict()
            if known != whole:
                if counted:
                    get = known.get
                    move = self._hz_move
                    for origin, new in whole.items():
                        old = get(origin, 0)
                        if new != old:
                            move(origin, old, new)
                    for origin, old in known.items():
                        if origin not in whole:
                            move(origin, old, 0)
                member.known = whole
                member.known_total = sum(whole.values())
                member.pending_stamp = -1
            member.want_resync = False
            return
        get = known.get
        move = self._hz_move
        moved = 0
        for origin, n in vv.items():
            old = get(origin, 0)
            if n > old:
                known[origin] = n
                moved += n - old
                if counted:
                    move(origin, old, n)
        member.known_total += moved
        # Equal sums mean equal vectors (ours only lags theirs, entry by
        # entry); a smaller one: a partial vector of theirs was lost or
        # overtaken. A larger one: a reordered older message. Either way ask
        # for the whole vector once; meanwhile what we hold is a safe lower
        # bound of theirs (at worst we send something twice).
        member.want_resync = total is not None and (member.known_total & _TOTAL_MASK) != total

    def _hz_origin(self, origin: str) -> None:
        # Nobody has told us of it yet: every live member holds 0 of it.
        self._hz[origin] = {0: len(self._live)} if self._live else {}

    def _hz_move(self, origin: str, old: int, new: int) -> None:
        """One live member's entry for ``origin`` moved from ``old`` to ``new``."""
        counts = self._hz.get(origin)
        if counts is None:
            self._hz_origin(origin)
            counts = self._hz[origin]
        left = counts[old] - 1
        if left:
            counts[old] = left
        else:
            del counts[old]
            self._dirty.add(origin)  # the horizon may have moved up
        # Equal-value members share one key: in a fleet in step, a handful.
        counts[new] = counts.get(new, 0) + 1

    def _hz_join(self, member: Member) -> None:
        """``member`` counts toward the horizon again (or for the first time)."""
        replica = member.credential.replica
        if replica == self.replica or replica in self._live:
            return
        self._live.add(replica)
        get = member.known.get
        for origin, counts in self._hz.items():
            value = get(origin, 0)
            counts[value] = counts.get(value, 0) + 1

    def _hz_leave(self, member: Member) -> None:
        """``member`` no longer holds compaction back (evicted)."""
        replica = member.credential.replica
        if replica not in self._live:
            return
        self._live.discard(replica)
        get = member.known.get
        for origin, counts in self._hz.items():
            value = get(origin, 0)
            left = counts[value] - 1
            if left:
                counts[value] = left
            else:
                del counts[value]
                self._dirty.add(origin)

    # ---------------------------------------------------------------- timers

    def _interval(self) -> float:
        c = self.config
        return c.gossip_interval * (1 + c.jitter * (2 * self.rng.random() - 1))

    def next_timer(self) -> float:
        return self._next_round

    def handle_timer(self, now: float) -> None:
        if now < self._next_round:
            return
        self._next_round = now + self._interval()
        self.metrics.rounds += 1
        # Only the members we asked can time out: walk those, not the fleet.
        for replica in list(self._awaiting):
            member = self.members[replica]
            since = member.asked_at
            if member.state is not PeerState.AWAITING or since is None:
                del self._awaiting[replica]
                continue
            if now - since < self.config.reply_timeout:
                continue
            del self._awaiting[replica]
            if member.last_contact is not None and member.last_contact > since:
                # It has spoken to us since we asked: our digest or its
                # answer was lost, the peer is not down. No back-off.
                transition(member, PeerInput.LOST)
                member.asked_at = None
            else:
                self._failed(member, now, PeerInput.TIMEOUT)
        if now >= self._next_evict_check:
            self._evict_silent(now)
        if self.config.compact:
            self._compact(now)
        for peer in self._pick_peers(now):
            self.expect_reply(peer, now)
            self._send(peer, self._digest_for(peer))
        for replica, address in sorted(self._hints.items()):
            if replica in self.members:
                del self._hints[replica]
                continue
            # It does not know us yet: introduce ourselves with the full list.
            data = encode_message(
                Digest(
                    sender=self.replica,
                    vv=self.vv,
                    members_hash=self.members_hash,
                    members=self._member_infos(),
                )
            )
            self.metrics.messages_sent += 1
            self.metrics.bytes_sent += len(data)
            self._outbox.append(Outgoing(peer=replica, address=address, data=data))

    def _pickable(self, m: Member, now: float) -> bool:
        return m.state is not PeerState.AWAITING and (
            m.state is not PeerState.BACKING_OFF or m.backoff_until <= now
        )

    def _pick_peers(self, now: float) -> list[str]:
        names = self._peer_names
        members = self.members
        want = self.config.fanout
        rng = self.rng
        chosen: list[str] = []
        if len(names) > 2 * VIEW_SIZE:
            view = self._view
            while len(view) < VIEW_SIZE:
                r = names[rng.randrange(len(names))]
                if r not in view:
                    view.append(r)
            for _ in range(want):
                if rng.randrange(RANDOM_PICK):
                    ready = [r for r in view if r not in chosen and self._pickable(members[r], now)]
                    if ready:
                        chosen.append(ready[rng.randrange(len(ready))])
                        continue
                # A uniform pick: draw from all and skip the few that cannot be
                # picked (uniform over those that can), without walking the fleet.
                for _ in range(4):
                    r = names[rng.randrange(len(names))]
                    if r not in chosen and self._pickable(members[r], now):
                        chosen.append(r)
                        break
            if len(chosen) == want:
                return chosen
        # Few members, or many that cannot be picked (a partition): filter.
        candidates = [r for r in names if r not in chosen and self._pickable(members[r], now)]
        k = min(want - len(chosen), len(candidates))
        return chosen + (rng.sample(candidates, k) if k else [])

    def expect_reply(self, peer: str, now: float) -> None:
        """We sent ``peer`` a digest (a round's, or a request for the next
        chunk) and wait for its answer; it may answer with a snapshot."""
        member = self.members[peer]
        transition(member, PeerInput.ASK_ROUND)
        member.asked_at = now
        self._awaiting[peer] = None
        member.snapshot_credits = min(member.snapshot_credits + 1, MAX_SNAPSHOT_CREDITS)

    def _failed(self, member: Member, now: float, why: PeerInput) -> None:
        transition(member, why)
        member.asked_at = None
        member.failures += 1
        # A peer that was down may come back without the members it had (a
        # node restarted on a fresh data directory): when we next reach it,
        # send the full list rather than trust the hash it last told us.
        member.their_members_hash = None
        member.told_stamp = -1  # nor what we told it of our vector
        replica = member.credential.replica
        if replica in self._view:
            self._view.remove(replica)  # refilled at random on the next round
        delay = self.config.backoff_delay(member.failures)
        member.backoff_until = now + delay * (0.5 + 0.5 * self.rng.random())

    def members_hint(self, replica: str, address: str) -> None:
        """An address for a member we will learn the key of through gossip.

        Config-file peers are only addresses; until a digest from them (or
        about them) carries their fleet-vouched credential, we send them our
        digest so they can introduce themselves."""
        if replica == self.replica:
            return
        # A configured address wins over what the member advertises: the
        # operator may route through a proxy or a NAT the member cannot know.
        self._pinned[replica] = address
        if replica in self.members:
            self.members[replica].address = address
        else:
            self._hints[replica] = address

    def peer_unreachable(self, peer: str, now: float) -> None:
        """The transport could not deliver to ``peer`` (connect failed, timeout)."""
        member = self.members.get(peer)
        if member is not None:
            self._failed(member, now, PeerInput.UNREACHABLE)

    def restart(self, now: float) -> None:
        """Forget everything volatile (what a crash loses); durable state stays:
        the replica state, version vector, logs, sealed and unsealed deltas
        and the membership list."""
        self._outbox.clear()
        for member in self.members.values():
            transition(member, PeerInput.RESTART)
            member.asked_at = None
            # Snapshot credits stay: on a network that holds datagrams (the
            # simulator's clogs) the answer to a question asked before the
            # crash can still arrive, and is still an answer. A node process
            # that restarts builds a new engine, with none.
            member.failures = 0
            member.backoff_until = 0.0
            member.their_members_hash = None
            member.told_stamp = -1
            member.pending_stamp = -1
        self._awaiting.clear()
        self._next_round = now + self._interval()

    # ---------------------------------------------------------------- output

    def messages_to_send(self) -> list[Outgoing]:
        out, self._outbox = self._outbox, []
        return out

    def _send(self, peer: str, message: Message) -> None:
        if not isinstance(message, Digest) and message.digest is not None:
            # We tell the peer our vector in a reply: it may answer with a
            # snapshot. (A digest of ours goes out through expect_reply.)
            member = self.members[peer]
            transition(member, PeerInput.ASK_REPLY)
            member.snapshot_credits = min(member.snapshot_credits + 1, MAX_SNAPSHOT_CREDITS)
        data = encode_message(message)
        self.members[peer].want_resync = False  # asked, if it was in ``message``
        self.metrics.messages_sent += 1
        self.metrics.bytes_sent += len(data)
        self._outbox.append(Outgoing(peer=peer, address=self.members[peer].address, data=data))

    def _member_infos(self) -> tuple[MemberInfo, ...]:
        return tuple(
            MemberInfo(
                credential=m.credential,
                address=m.address,
                last_contact=m.last_contact if m.last_contact is not None else -1.0,
            )
            for _, m in sorted(self.members.items())
        )

    def _members_for(self, peer: str) -> tuple[MemberInfo, ...]:
        """Our full member list if ``peer``'s set may differ from ours, else ()."""
        member = self.members.get(peer)
        if member is not None and member.their_members_hash == self.members_hash:
            return ()
        return self._member_infos()

    def _digest_for(self, peer: str) -> Digest:
        member = self.members[peer]
        vv, partial = self._vector_for(member)
        return Digest(
            sender=self.replica,
            vv=vv,
            members_hash=self.members_hash,
            members=self._members_for(peer),
            partial=partial,
            total=self._vv_total & _TOTAL_MASK,
            resync=member.want_resync,
        )

    def _lacking(self, member: Member) -> list[str]:
        """The origins ``member`` lacks from us as far as we know, sorted: a
        scan of our vector only when its last vector to us was whole;
        otherwise the origins it lacked last time and those that changed here
        since (nothing else can have become lacking: its vector only grows)."""
        get = member.known.get
        vv = self._vv_plain
        if member.pending_stamp < 0:
            lacking = sorted(o for o, n in vv.items() if n > get(o, 0))
        else:
            pending = member.pending
            pending.update(self.changed_since(member.pending_stamp))
            lacking = sorted(o for o in pending if vv[o] > get(o, 0))
        member.pending = set(lacking)
        member.pending_stamp = self._stamp
        return lacking

    def _missing_for(self, *, with_digest: bool, peer: str) -> Message | None:
        """What ``peer`` lacks (as its vectors told us): deltas, or a snapshot."""
        self._seal()
        member = self.members[peer]
        their = member.known.get
        lacking = self._lacking(member)
        floor = self.floor.get
        if any(their(o, 0) < floor(o, 0) for o in lacking):
            if self._durable_seq < self.vv[self.replica]:
                # Our state holds a write of ours that is not on disk yet; a
                # snapshot would hand it out before a crash could take it back
                # (issue 17). The peer asks again next round.
                if not with_digest:
                    return None
                vv, partial = self._vector_for(member)
                return Deltas(
                    sender=self.replica,
                    batches=(),
                    digest=vv,
                    members_hash=self.members_hash,
                    members=self._members_for(peer),
                    partial=partial,
                    total=self._vv_total & _TOTAL_MASK,
                    resync=member.want_resync,
                )
            return self._snapshot(lacking, self.vv if with_digest else None)
        budget = self.config.max_message_bytes - 1024
        chosen: list[SignedBatch] = []
        more = False
        for origin in lacking:
            have = their(origin, 0)
            batches = self.log.get(origin, ())
            # A log's batches ascend by ``last``: skip what the peer has by
            # bisection, not by walking a log the horizon holds long.
            start = bisect_right(batches, have, key=_last)
            for batch in batches[start:]:
                size = len(batch.blob) + 128
                if size > budget and chosen:
                    more = True
                    break
                chosen.append(batch)
                budget -= size
            if more:
                break
        if not chosen and not with_digest and not member.want_resync:
            return None
        self.metrics.deltas_sent += sum(
            b.last - max(b.first - 1, their(b.origin, 0)) for b in chosen
        )
        digest, partial = self._vector_for(member) if with_digest else (None, False)
        return Deltas(
            sender=self.replica,
            batches=tuple(chosen),
            digest=digest,
            more=more,
            members_hash=self.members_hash,
            members=self._members_for(peer),
            partial=partial,
            total=self._vv_total & _TOTAL_MASK,
            resync=member.want_resync,
        )

    def _snapshot(self, lacking: Sequence[str], digest: VersionVector | None) -> Snapshot:
        """The whole state, with the proofs a receiver checks it against."""
        self.metrics.snapshots_sent += 1
        proofs: dict[tuple[str, int], SignedBatch] = {}
        for origin in lacking:
            head = self.heads.get(origin)
            if head is not None:
                proofs[(head.origin, head.first)] = head
        for batch in self.reported.values():
            proofs[(batch.origin, batch.first)] = batch
        return Snapshot(
            sender=self.replica,
            vv=self.vv,
            state=encode_state(self.state),
            # Always our vector, even in a third step: it is the claim the
            # receiver bounds the snapshot's vector by (our earlier digests may
            # be older than what we have applied since).
            digest=self.vv,
            proofs=tuple(proofs[k] for k in sorted(proofs)),
        )

    # ---------------------------------------------------------------- input

    def receive(
        self,
        data: bytes,
        *,
        now: float,
        peer: str | None = None,
        wall_ms: int | None = None,
    ) -> list[Event]:
        """Handle one message. Malformed or unacceptable input raises
        ``RemoteProtocolError`` (its ``kind`` counted, nothing changed);
        refused batches inside a well-formed message are reported as
        ``BatchRefused`` events while the rest apply.

        ``now`` is the driver's monotonic clock (timers, eviction); ``wall_ms``
        its wall clock, which only the hybrid clock reads (Kulkarni et al.
        2014: a received timestamp moves it to max(own, remote, physical));
        without it the hybrid clock still moves past every remote timestamp."""
        self.metrics.messages_received += 1
        self.metrics.bytes_received += len(data)
        try:
            message = decode_message(data, max_bytes=self.config.max_message_bytes * 2 + 65536)
            if peer is not None and message.sender != peer:
                raise RemoteProtocolError(
                    f"message claims to be from {message.sender} but arrived from {peer}"
                )
            events: list[Event] = []
            if isinstance(message, Digest | Deltas):
                events += self._learn_members(message.members, now)
            if message.sender not in self.members:
                raise RemoteProtocolError(f"{message.sender} is not a member of this fleet")
            if message.sender == self.replica:
                raise RemoteProtocolError("message claims to come from ourselves")
        except RemoteProtocolError as exc:
            self._refuse("malformed-message", exc.reason)
            raise
        member = self.members[message.sender]
        handler, event = self._dispatch[type(message)]
        if isinstance(message, Snapshot) and not member.snapshot_credits:
            if all(n <= self.vv[o] for o, n in message.vv.items()):
                # A copy of one we took (the network duplicated it): nothing
                # in it is new, and nothing of it is merged.
                self.metrics.snapshots_duplicate += 1
                return events
            event = PeerInput.UNSOLICITED_SNAPSHOT
        try:
            # The state machine first: an illegal input (a snapshot we did not
            # ask for) changes nothing, not even the back-off.
            before = member.state
            transition(member, event)
            try:
                events += handler(member, message, now, wall_ms)
            except RemoteProtocolError:
                member.state = before  # the message was refused whole
                raise
        except RemoteProtocolError as exc:
            self._refuse(exc.kind, exc.reason)
            raise
        return events

    def _heard(self, member: Member, message: Digest | Deltas | Snapshot, now: float) -> None:
        """A valid message is proof the peer is reachable again: clear the
        back-off now rather than let it run out (the wait after a heal)."""
        member.last_contact = now
        member.failures = 0
        member.backoff_until = 0.0
        if member.credential.replica not in self._live:
            self._hz_join(member)  # back from eviction: it holds compaction back again
        if not isinstance(message, Snapshot):
            if message.members_hash is not None:
                member.their_members_hash = message.members_hash
            if message.resync:
                member.told_stamp = -1  # our next vector to it goes whole

    def _on_digest(
        self, member: Member, message: Message, now: float, wall_ms: int | None
    ) -> list[Event]:
        assert isinstance(message, Digest)
        self._heard(member, message, now)
        self._take_vector(member, message.vv, partial=message.partial, total=message.total)
        reply = self._missing_for(with_digest=True, peer=message.sender)
        if reply is not None:
            self._send(message.sender, reply)
        return []

    def _on_deltas(
        self, member: Member, message: Message, now: float, wall_ms: int | None
    ) -> list[Event]:
        assert isinstance(message, Deltas)
        self._heard(member, message, now)
        member.asked_at = None
        events = self._apply_batches(message.sender, message.batches, wall_ms)
        if message.digest is not None:
            self._take_vector(member, message.digest, partial=message.partial, total=message.total)
            self._answer(member)
        if message.more:
            self.expect_reply(message.sender, now)
            self._send(message.sender, self._digest_for(message.sender))
        return events

    def _on_snapshot(
        self, member: Member, message: Message, now: float, wall_ms: int | None
    ) -> list[Event]:
        assert isinstance(message, Snapshot)
        events = self._apply_snapshot(member, message, wall_ms)
        # Only a snapshot we accept is proof of anything about its sender.
        self._heard(member, message, now)
        member.asked_at = None
        member.snapshot_credits -= 1
        if message.digest is not None:
            self._take_vector(member, message.digest, partial=False, total=None)
            self._answer(member)
        return events

    def _answer(self, member: Member) -> None:
        """The sender told us its vector: send it what it lacks (step 3)."""
        reply = self._missing_for(with_digest=False, peer=member.credential.replica)
        if reply is not None:
            self._send(member.credential.replica, reply)

    def _refuse(self, kind: str, reason: str) -> None:
        self.metrics.refusals[kind] += 1
        refused = self.metrics.refused
        refused.append((kind, reason))
        if len(refused) > 64:
            del refused[:-64]

    def _learn_members(self, infos: Sequence[MemberInfo], now: float) -> list[Event]:
        events: list[Event] = []
        for info in infos:
            event = self._learn_member(info, now)
            if event is not None:
                events.append(event)
        if events:
            self.members_hash = self._hash_members()
        return events

    def _hash_members(self) -> bytes:
        return members_hash(m.credential for m in self.members.values())

    def _learn_member(self, info: MemberInfo, now: float) -> MemberJoined | None:
        cred = info.credential
        known = self.members.get(cred.replica)
        if known is not None:
            if known.credential != cred:
                self._refuse("member-key-mismatch", f"{cred.replica} presents a different key")
            elif info.address and cred.replica != self.replica and not known.address:
                known.address = info.address
            return None
        # Through the injectable verify, so a simulator's memo also serves the
        # N x N credential checks of a fleet starting up (same signed bytes).
        if not self._verify(
            self.fleet_public_key,
            cred.fleet_signature,
            credential_bytes(cred.replica, cred.public_key),
        ):
            self._refuse(
                "member-not-vouched", f"{cred.replica} is not vouched for by the fleet key"
            )
            return None
        address = self._pinned.get(cred.replica) or info.address
        self._hints.pop(cred.replica, None)
        member = Member(credential=cred, address=address)
        self.members[cred.replica] = member
        self._hz_join(member)
        self._next_evict_check = min(
            self._next_evict_check, self._started + self.config.evict_after
        )
        if cred.replica != self.replica:
            insort(self._peer_names, cred.replica)
        return MemberJoined(replica=cred.replica, address=info.address)

    def _apply_batches(
        self, sender: str, batches: Sequence[SignedBatch], wall_ms: int | None
    ) -> list[Event]:
        events: list[Event] = []
        for batch in batches:
            try:
                applied = self._apply_batch(batch, wall_ms)
            except RemoteProtocolError as exc:
                self._refuse(exc.kind, exc.reason)
                self.metrics.deltas_refused += batch.count
                events.append(BatchRefused(sender=sender, origin=batch.origin, reason=exc.reason))
                continue
            if applied is not None:
                events.append(
                    DeltasApplied(
                        sender=sender, origin=batch.origin, first=applied[0], last=applied[1]
                    )
                )
        return events

    def _open_signed(self, batch: SignedBatch) -> tuple[str, int, int, bytes]:
        """Check a batch's signature and its unsigned claim; (origin, first, count, payload)."""
        member = self.members.get(batch.origin)
        if member is None:
            raise _refusal("unknown-origin", f"{batch.origin} is not a member")
        if not self._verify(member.credential.public_key, batch.signature, batch.blob):
            raise _refusal("bad-signature", f"batch {batch.origin}:{batch.first}..{batch.last}")
        origin, first, count, payload = open_batch(batch.blob)
        if origin != batch.origin or first != batch.first or first + count - 1 != batch.last:
            raise _refusal(
                "inflated-claim",
                f"batch claims {batch.origin}:{batch.first}..{batch.last}, "
                f"{origin} signed {origin}:{first}..{first + count - 1}",
            )
        return origin, first, count, payload

    def _signed_deltas(self, batch: SignedBatch) -> Sequence[Delta]:
        origin, _, count, payload = self._open_signed(batch)
        return self._deltas_of(origin, count, payload)

    def _deltas_of(self, origin: str, count: int, payload: bytes) -> Sequence[Delta]:
        deltas = self._decode(payload)
        if len(deltas) != count:
            raise _refusal("malformed-batch", f"signed {count} deltas, holds {len(deltas)}")
        for d in deltas:
            if d.origin != origin:
                raise _refusal("wrong-origin", f"batch of {origin} holds a delta of {d.origin}")
        return deltas

    def _apply_batch(self, batch: SignedBatch, wall_ms: int | None) -> tuple[int, int] | None:
        have = self.vv[batch.origin]
        if batch.last <= have:
            # Nothing in it can be new (by its claim): drop it unopened. A
            # claim that lies low only makes us skip bytes we would not apply
            # anyway; one that lies high is caught by _open_signed. Epidemic
            # push-pull delivers most batches more than once; at 500 plants
            # opening and checking the copies was a third of applying batches.
            self.metrics.deltas_duplicate += batch.count
            return None
        origin, first, count, payload = self._open_signed(batch)
        if batch.first > have + 1:
            raise _refusal(
                "sequence-gap", f"we have {origin} up to {have}, batch starts at {batch.first}"
            )
        deltas = self._deltas_of(origin, count, payload)
        fresh = list(deltas[have + 1 - first :])
        try:
            self.state.apply_many(fresh, now_ms=wall_ms if wall_ms is not None else 0)
        except RemoteProtocolError as exc:
            raise _refusal("invalid-delta", exc.reason) from None
        self.metrics.deltas_duplicate += len(deltas) - len(fresh)
        self.metrics.deltas_received += len(fresh)
        self._advance(origin, batch.last)
        self.log.setdefault(origin, []).append(batch)
        self._journal(BatchStored(batch=batch, applied=tuple(fresh), local=False))
        self._keep_proofs(batch, fresh)
        return (have + 1, batch.last)

    def _apply_snapshot(
        self, member: Member, message: Snapshot, wall_ms: int | None
    ) -> list[Event]:
        """Merge a snapshot we asked for, after checking it like a batch.

        What a relay is trusted for, and what it cannot forge
        ------------------------------------------------------
        A snapshot merges many origins' writes whose batches were compacted
        away, so it cannot carry every write's signature. What it still must
        prove, or we refuse it whole (counted, nothing changed):

        * It answers a question: only a peer we sent our vector to may send
          one (the ``_peers`` transition table); an unsolicited snapshot is
          refused before it is decoded.
        * Its vector reaches no further than its sender's own digest claimed,
          and for every origin it moves us forward on, it carries that
          origin's signed batch ending exactly there (each replica keeps every
          origin's latest batch through compaction for this). So no relay can
          raise an origin's vector or floor beyond what the origin signed, and
          no honest origin can be cut off by an inflated vector.
        * The model's rules (``ReplicaState.check_snapshot``): entity headers
          as we know them, values of the model's types, a reported field
          written only by its home, no write of an origin beyond the
          snapshot's vector, nothing of an origin the snapshot brings nothing
          new of that we have not seen (no invented write below our vector).
        * Every reported (home-only) value it would change is proven by the
          batch its home signed (kept through compaction for the purpose).

        What a relay is still trusted for: in multi-writer fields (shared
        registers, labels, sets, counters, text, logs, fleet-wide entities),
        the content of the writes *we lack* in the range the snapshot moves
        us over. A relay could attribute a value it chose to such a write,
        claim a write was overwritten, or leave one out; it could do all of
        that in its own name too (any member may write these fields), which
        is why the reported state of a physical asset — the one thing only its
        home may say — needs a signature. Snapshots are the exception: they
        go only to a member that was silent for longer than ``evict_after``.
        """
        sender = message.sender
        claimed = (
            member.known_vv if message.digest is None else member.known_vv.merge(message.digest)
        )
        for origin, n in message.vv.items():
            # Where it brings us forward, its vector may not outrun what its
            # sender told us it holds (its digests, or this message's).
            if n > self.vv[origin] and n > claimed[origin]:
                raise _refusal(
                    "snapshot-unclaimed",
                    f"{sender}'s snapshot claims {origin} up to {n}; its digest said "
                    f"{claimed[origin]}",
                )
        heads: dict[str, SignedBatch] = {}
        for batch in message.proofs:
            try:
                self._open_signed(batch)
            except RemoteProtocolError as exc:
                raise _refusal("snapshot-unproven", f"a proof is refused: {exc.reason}") from None
            if batch.last == message.vv[batch.origin]:
                heads[batch.origin] = batch
        for origin, n in message.vv.items():
            if n > self.vv[origin] and origin not in heads:
                raise _refusal(
                    "snapshot-unproven",
                    f"{sender}'s snapshot claims {origin} up to {n} with no batch "
                    f"{origin} signed ending there",
                )
        try:
            snap = decode_state(message.state, replica=self.replica, schemas=self.state.schemas)
        except RemoteProtocolError as exc:
            raise _refusal("invalid-snapshot", exc.reason) from None
        unproven = self.state.check_snapshot(snap, claims=message.vv, have=self.vv)
        reported: dict[tuple[str, str], SignedBatch] = {}
        if unproven:
            writes: dict[tuple[str, str], tuple[Delta, SignedBatch]] = {}
            for batch in message.proofs:
                for d in self._signed_deltas(batch):
                    if d.field is not None and isinstance(d.state, SingleWriterRegister):
                        writes[(d.entity, d.field)] = (d, batch)
            for key in unproven:
                entity = snap.entities[key[0]]
                proof = writes.get(key)
                if (
                    proof is None
                    or proof[0].origin != entity.header.home
                    or proof[0].header != entity.header
                    or proof[0].state != entity.fields[key[1]]
                ):
                    raise _refusal(
                        "snapshot-unproven",
                        f"{key[0]}.{key[1]}: reported state with no batch its home "
                        f"{entity.header.home} signed",
                    )
                reported[key] = proof[1]
        self.state.merge(snap, now_ms=wall_ms if wall_ms is not None else 0)
        self.metrics.snapshots_received += 1
        for origin, head in heads.items():
            if head.last > self.vv[origin]:
                self.heads[origin] = head
                self._journal(ProofStored(key=("head", origin), batch=head))
        for key, batch in reported.items():
            self.reported[key] = batch
            self._journal(ProofStored(key=("reported", *key), batch=batch))
        for origin, n in message.vv.items_sorted():
            self._advance(origin, n)
        for origin, n in message.vv.items():
            if n > self.floor.get(origin, 0):
                self.floor[origin] = n
                self.log[origin] = [b for b in self.log.get(origin, []) if b.last > n]
        self._journal(SnapshotStored(vv=self.vv))
        return [SnapshotApplied(sender=sender, vv=message.vv)]

    # ---------------------------------------------------------------- compaction

    def _silent(self, m: Member, now: float) -> bool:
        # Silence is measured on our monotonic clock from when we last heard
        # from the member, or from our start if we never have: ``now`` is no
        # duration (a wall clock at 1.77e9 s once evicted every member
        # never heard from in the first round).
        heard = m.last_contact if m.last_contact is not None else self._started
        return now - heard > self.config.evict_after

    def _evict_silent(self, now: float) -> None:
        """Members silent for longer than ``evict_after`` stop holding the
        horizon back. A walk of the fleet, but only when the earliest moment
        any member could fall silent has come (not every round)."""
        evict_after = self.config.evict_after
        started = self._started
        soonest = now + evict_after
        for r, m in self.members.items():
            if r == self.replica:
                continue
            if self._silent(m, now):
                if m.state is not PeerState.EVICTED and (m.state, PeerInput.SILENT) in TRANSITIONS:
                    transition(m, PeerInput.SILENT)
                self._hz_leave(m)
            else:
                heard = m.last_contact if m.last_contact is not None else started
                soonest = min(soonest, heard + evict_after)
        self._next_evict_check = soonest

    def horizon(self, now: float) -> VersionVector:
        """Per origin, what every live member is known to hold (worked out
        from scratch: a view, and the reference the incremental one is tested
        against)."""
        entries = self.vv.as_dict()
        for r, m in self.members.items():
            if r == self.replica or self._silent(m, now):
                continue
            get = m.known.get
            for origin, n in entries.items():
                k = get(origin, 0)
                if k < n:
                    entries[origin] = k
        return VersionVector(entries)

    def _horizon_of(self, origin: str) -> int:
        counts = self._hz.get(origin)
        mine = self.vv[origin]
        return min(mine, min(counts)) if counts else mine

    def _compact(self, now: float) -> None:
        # No _seal() here: unsealed deltas are never below the horizon (no peer
        # can have heard of them), and sealing every round while nobody asks
        # would cut a partitioned replica's backlog into one signed batch per
        # round; left unsealed, it goes out in a few large batches when a peer
        # finally asks — about a quarter of the catch-up bytes (bench/sim_bench.py).
        #
        # Only origins whose horizon may have moved up (a value the lowest
        # members held was left behind, a member was evicted) or whose log
        # grew are looked at: a round costs what changed, not origins x
        # members (which at 500 plants was a third of a simulated fleet).
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = set()
        for origin in sorted(dirty):
            batches = self.log.get(origin)
            if not batches:
                continue
            h = self._horizon_of(origin)
            if batches[0].last > h:
                continue
            keep = [b for b in batches if b.last > h]
            dropped = max(b.last for b in batches if b.last <= h)
            self.floor[origin] = max(self.floor.get(origin, 0), dropped)
            self.log[origin] = keep
            self._journal(Compacted(origin=origin, floor=self.floor[origin]))

    # ---------------------------------------------------------------- views

    def lag(self) -> dict[str, tuple[int, int]]:
        """Per peer: (deltas it lacks from us, deltas we lack from it), as last known."""
        out = {}
        for r, m in sorted(self.members.items()):
            if r == self.replica:
                continue
            get = m.known.get
            mine = self._vv_plain.get
            they_lack = sum(max(0, n - get(o, 0)) for o, n in self._vv_plain.items())
            we_lack = sum(max(0, n - mine(o, 0)) for o, n in m.known.items())
            out[r] = (they_lack, we_lack)
        return out

    def last_contact(self) -> dict[str, float | None]:
        return {r: m.last_contact for r, m in sorted(self.members.items()) if r != self.replica}

    def _journal(self, entry: JournalEntry) -> None:
        if self.config.keep_journal:
            self.journal.append(entry)

    def drain_journal(self) -> list[JournalEntry]:
        out, self.journal = self.journal, []
        return out
