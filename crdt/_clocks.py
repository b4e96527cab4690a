"""Dots, version vectors, causal contexts and the hybrid logical clock.

Theory of operation
-------------------
A *dot* ``(replica, n)`` names the n-th write made at ``replica``; dots are
never reused, so a dot is the identity of one write everywhere.

Epochs (issue 17). A replica that crashes may lose writes that were joined in
memory but not yet durable; rebuilt from its store, it would count them again
and hand a new write the dot of a lost one, which a reader may already hold in
a context token — and a write back with that token would then remove the new
write as if its writer had seen it. So the dots of shared-field writes are
issued by an *actor*: the replica itself in epoch 0, ``replica~e`` in epoch
``e``, and a replica starts a new epoch (durably, before its first write) each
time it restarts after a crash. A new actor's counters start at 1 and no
earlier incarnation ever used its name, so no dot is issued twice — the vnode
epoch Riak adopted for the same hazard. The replica-level sequence numbers of
the sync protocol are untouched (they stay gap-free: a lost write never left
home, so its sequence number is free to reuse); a register's context grows by
one vector entry per epoch that wrote it, i.e. per crash, not per write.

A *version vector* maps replica -> n and stands for the set of dots
``{(r, 1..n)}``. Comparing two vectors answers happens-before: one is before
the other if it is pointwise <= and not equal; neither before the other means
the histories are concurrent (Fidge 1988; Mattern 1989).

A *causal context* is an arbitrary set of dots kept compactly as a version
vector plus a "dot cloud" of dots that are not (yet) contiguous — the
representation of Almeida, Shoker & Baquero, "Delta state replicated data
types" (JPDC 2018), section 5. It is kept canonical (every dot that extends
the vector's contiguous prefix is folded into it), so equal sets of dots are
equal objects and encode to equal bytes.

The hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", OPODIS
2014) gives LWW registers a timestamp that stays close to wall time but never
goes backwards at a replica and always exceeds every timestamp the replica has
seen, so a skewed or stepped-back clock cannot make a later write lose.
"""

from __future__ import annotations

from collections.abc import Collection, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from enum import StrEnum
from functools import lru_cache

import msgspec

from ._errors import LocalProtocolError

__all__ = [
    "EPOCH_MARK",
    "CausalContext",
    "Dot",
    "HybridClock",
    "HybridTime",
    "Order",
    "VersionVector",
    "actor_origin",
    "epoch_actor",
]

#: Separates a replica from its epoch in an actor's name. Never in a replica
#: id: node names are ``[a-z0-9-]`` and the fleet home is ``*``.
EPOCH_MARK = "~"


def epoch_actor(replica: str, epoch: int) -> str:
    """The actor that issues ``replica``'s dots in ``epoch`` (see the module docstring)."""
    if epoch < 0:
        raise LocalProtocolError(f"epochs count from 0, got {epoch}")
    return replica if epoch == 0 else f"{replica}{EPOCH_MARK}{epoch}"


@lru_cache(maxsize=4096)  # checked per remote shared-field write; bounded against floods
def actor_origin(actor: str) -> str | None:
    """The replica behind ``actor``, or ``None`` if it is not a well-formed
    actor name (an epoch is a positive decimal without leading zeros)."""
    replica, mark, epoch = actor.partition(EPOCH_MARK)
    if not mark:
        return actor
    if not replica or not epoch.isdigit() or epoch[0] == "0" or not epoch.isascii():
        return None
    return replica


class Dot(msgspec.Struct, frozen=True, order=True, gc=False):
    """The identity of one write: the ``counter``-th write made at ``replica``.

    A msgspec ``Struct`` rather than a dataclass: frozen and slotted alike, but
    built, hashed and compared in C — dots are dict keys in every causal join,
    and a frozen dataclass spends ~300 ns in Python per construction and per
    ``__eq__``. ``gc=False``: a dot holds a str and an int, never a cycle.
    """

    replica: str
    counter: int

    def __post_init__(self) -> None:
        if self.counter < 1:
            raise LocalProtocolError(f"dot counters start at 1, got {self.counter}")

    def __str__(self) -> str:
        return f"{self.replica}:{self.counter}"


class Order(StrEnum):
    """How two version vectors (or the histories they summarise) relate."""

    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"


class VersionVector(Mapping[str, int]):
    """An immutable replica -> counter map; absent replicas count as 0.

    Zero entries are never stored, so equal vectors have equal items.
    """

    __slots__ = ("_entries", "_hash")

    def __init__(self, entries: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        items = entries.items() if isinstance(entries, Mapping) else entries
        clean: dict[str, int] = {}
        for replica, counter in items:
            if counter < 0:
                raise LocalProtocolError(f"version vector entry {replica}={counter} is negative")
            if counter:
                clean[replica] = counter
        self._entries = clean
        self._hash: int | None = None

    @classmethod
    def _adopt(cls, entries: dict[str, int]) -> VersionVector:
        """A vector that takes ``entries`` as is: the caller guarantees every
        counter is a positive int and gives the dict up. For the hot paths
        (merge, decoding) where __init__'s checks would only repeat theirs."""
        vv = cls.__new__(cls)
        vv._entries = entries
        vv._hash = None
        return vv

    # Mapping protocol -------------------------------------------------
    # items/keys/values are the dict's own views: the Mapping mixins would
    # call __iter__ and __getitem__ per entry in Python, and the sync engine
    # walks 100-entry vectors several times per message.
    def items(self) -> ItemsView[str, int]:
        return self._entries.items()

    def keys(self) -> KeysView[str]:
        return self._entries.keys()

    def values(self) -> ValuesView[int]:
        return self._entries.values()

    def __getitem__(self, replica: str) -> int:
        return self._entries.get(replica, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, replica: object) -> bool:
        return replica in self._entries

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VersionVector):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._entries.items()))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{r}={n}" for r, n in sorted(self._entries.items()))
        return f"VersionVector({inner})"

    # Causality ---------------------------------------------------------
    def contains(self, dot: Dot) -> bool:
        """True if the write ``dot`` is in the history this vector summarises."""
        return self._entries.get(dot.replica, 0) >= dot.counter

    def compare(self, other: VersionVector) -> Order:
        """Happens-before between the two summarised histories."""
        le = all(n <= other[r] for r, n in self._entries.items())
        ge = all(n <= self[r] for r, n in other._entries.items())
        if le and ge:
            return Order.EQUAL
        if le:
            return Order.BEFORE
        if ge:
            return Order.AFTER
        return Order.CONCURRENT

    def merge(self, other: VersionVector) -> VersionVector:
        """Pointwise maximum: the union of both histories. Returns ``self``
        (vectors are immutable) when ``other`` adds nothing."""
        mine = self._entries
        get = mine.get
        merged: dict[str, int] | None = None
        for r, n in other._entries.items():
            if n > get(r, 0):
                if merged is None:
                    merged = dict(mine)
                merged[r] = n
        return self if merged is None else VersionVector._adopt(merged)

    def advanced(self, replica: str, counter: int) -> VersionVector:
        """``self`` merged with ``{replica: counter}``, without building the latter."""
        if counter <= self._entries.get(replica, 0):
            return self
        merged = dict(self._entries)
        merged[replica] = counter
        return VersionVector._adopt(merged)

    def as_dict(self) -> dict[str, int]:
        """A plain copy of the entries (absent replicas are absent, not 0)."""
        return dict(self._entries)

    def with_dot(self, dot: Dot) -> VersionVector:
        """This vector advanced to include ``dot`` (which must be the next one)."""
        if dot.counter != self[dot.replica] + 1:
            raise LocalProtocolError(f"dot {dot} does not follow {dot.replica}={self[dot.replica]}")
        merged = dict(self._entries)
        merged[dot.replica] = dot.counter
        return VersionVector(merged)

    def missing_from(self, other: VersionVector) -> dict[str, tuple[int, int]]:
        """Per replica, the half-open counter range ``(have, want]`` that ``self``
        lacks relative to ``other`` — what a peer must send us."""
        return {r: (self[r], n) for r, n in sorted(other._entries.items()) if n > self[r]}

    def total(self) -> int:
        return sum(self._entries.values())

    def items_sorted(self) -> list[tuple[str, int]]:
        return sorted(self._entries.items())


class CausalContext:
    """A set of dots: a compact version vector plus a cloud of detached dots.

    Mutable on purpose — it is the hot data structure of every causal join —
    but every public CRDT operation copies before it mutates, so contexts held
    by a delta are never changed underneath it.
    """

    __slots__ = ("_cloud", "_vv")

    def __init__(self, vv: Mapping[str, int] | None = None, cloud: Iterable[Dot] = ()) -> None:
        self._vv: dict[str, int] = {r: n for r, n in (vv or {}).items() if n > 0}
        self._cloud: set[Dot] = set()
        for dot in cloud:
            self.add(dot)

    @classmethod
    def of(cls, dots: Iterable[Dot]) -> CausalContext:
        return cls(None, dots)

    @classmethod
    def adopt(cls, vv: dict[str, int]) -> CausalContext:
        """A context of exactly the vector ``vv``, taken as is: the caller
        guarantees every counter is a positive int and gives the dict up (the
        batch decoder, which has checked both in C)."""
        new = cls.__new__(cls)
        new._vv = vv
        new._cloud = set()
        return new

    def copy(self) -> CausalContext:
        new = CausalContext.__new__(CausalContext)
        new._vv = dict(self._vv)
        new._cloud = set(self._cloud)
        return new

    @property
    def vv(self) -> VersionVector:
        """The contiguous part, as a version vector."""
        return VersionVector(self._vv)

    @property
    def cloud(self) -> frozenset[Dot]:
        return frozenset(self._cloud)

    def __contains__(self, dot: object) -> bool:
        if not isinstance(dot, Dot):
            return False
        return self._vv.get(dot.replica, 0) >= dot.counter or dot in self._cloud

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CausalContext):
            return self._vv == other._vv and self._cloud == other._cloud
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        vv = ", ".join(f"{r}={n}" for r, n in sorted(self._vv.items()))
        cloud = ", ".join(str(d) for d in sorted(self._cloud))
        return f"CausalContext(vv={{{vv}}}, cloud={{{cloud}}})"

    def is_empty(self) -> bool:
        return not self._vv and not self._cloud

    def replicas(self) -> set[str]:
        return set(self._vv) | {d.replica for d in self._cloud}

    def add(self, dot: Dot) -> None:
        """Insert one dot, folding the cloud into the vector where it becomes contiguous."""
        have = self._vv.get(dot.replica, 0)
        if dot.counter <= have:
            return
        if dot.counter == have + 1:
            self._vv[dot.replica] = dot.counter
            self._compact(dot.replica)
        else:
            self._cloud.add(dot)

    def add_vv(self, vv: Mapping[str, int]) -> None:
        """Insert every dot a version vector stands for."""
        for r, n in vv.items():
            if n > self._vv.get(r, 0):
                self._vv[r] = n
                self._compact(r)

    def update(self, other: CausalContext) -> None:
        """In-place union with ``other``."""
        vv = self._vv
        if not self._cloud and not other._cloud:  # the common case: vectors only
            get = vv.get
            for r, n in other._vv.items():
                if n > get(r, 0):
                    vv[r] = n
            return
        cloud = self._cloud
        for r, n in other._vv.items():
            if n > vv.get(r, 0):
                vv[r] = n
                if cloud:
                    self._compact(r)
        for dot in other._cloud:  # ``add``, inlined
            r = dot.replica
            have = vv.get(r, 0)
            if dot.counter <= have:
                continue
            if dot.counter == have + 1:
                vv[r] = dot.counter
                if cloud:
                    self._compact(r)
            else:
                cloud.add(dot)

    def union(self, other: CausalContext) -> CausalContext:
        new = self.copy()
        new.update(other)
        return new

    def _compact(self, replica: str) -> None:
        if not self._cloud:
            return
        n = self._vv.get(replica, 0)
        # Drop cloud dots now covered, then absorb any that have become contiguous.
        stale = [d for d in self._cloud if d.replica == replica and d.counter <= n]
        for d in stale:
            self._cloud.discard(d)
        while Dot(replica, n + 1) in self._cloud:
            self._cloud.discard(Dot(replica, n + 1))
            n += 1
        if n:
            self._vv[replica] = n

    def issubset(self, other: CausalContext) -> bool:
        """True if every dot of ``self`` is in ``other``."""
        for r, n in self._vv.items():
            have = other._vv.get(r, 0)
            if have < n and any(Dot(r, k) not in other._cloud for k in range(have + 1, n + 1)):
                return False
        return all(d in other for d in self._cloud)

    def max_counter(self, replica: str) -> int:
        """The greatest counter of ``replica`` in the set (vector or cloud)."""
        best = self._vv.get(replica, 0)
        for d in self._cloud:
            if d.replica == replica and d.counter > best:
                best = d.counter
        return best

    def vv_entries(self) -> Iterable[tuple[str, int]]:
        """The contiguous part's (replica, counter) pairs, unsorted and uncopied."""
        return self._vv.items()

    def cloud_dots(self) -> Collection[Dot]:
        """The detached dots, uncopied (do not mutate the context while iterating)."""
        return self._cloud

    def vv_items(self) -> list[tuple[str, int]]:
        return sorted(self._vv.items())

    def cloud_sorted(self) -> list[Dot]:
        return sorted(self._cloud)


class HybridTime(msgspec.Struct, frozen=True, order=True, gc=False):
    """A hybrid logical timestamp: wall milliseconds, then a logical counter.

    (A C-built ``Struct`` for the same reason as :class:`Dot`.)"""

    wall_ms: int
    logical: int = 0


class HybridClock:
    """The HLC algorithm of Kulkarni et al. (2014), figure 5, with ``now`` passed in."""

    __slots__ = ("_last",)

    def __init__(self, last: HybridTime | None = None) -> None:
        self._last = last or HybridTime(0, 0)

    @property
    def last(self) -> HybridTime:
        return self._last

    def tick(self, wall_ms: int) -> HybridTime:
        """A timestamp for a local event at physical time ``wall_ms``."""
        last = self._last
        if wall_ms > last.wall_ms:
            self._last = HybridTime(wall_ms, 0)
        else:
            self._last = HybridTime(last.wall_ms, last.logical + 1)
        return self._last

    def observe(self, remote: HybridTime, wall_ms: int) -> None:
        """Advance past a timestamp received from another replica."""
        last = self._last
        wall = max(last.wall_ms, remote.wall_ms, wall_ms)
        if wall == last.wall_ms and wall == remote.wall_ms:
            logical = max(last.logical, remote.logical) + 1
        elif wall == last.wall_ms:
            logical = last.logical + 1
        elif wall == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        self._last = HybridTime(wall, logical)
