"""Multi-value register over dotted version vectors, as a delta-state CRDT.

Theory of operation
-------------------
The state is a map dot -> sibling plus a causal context (the set of dots this
register has seen). A write made with the context the writer had observed
produces a delta holding the one new sibling and a context of every dot the
writer observed plus the new dot. Joining keeps a sibling iff the other side
also has it or has never seen its dot (Almeida, Shoker & Baquero, "Delta state
replicated data types", JPDC 2018, the causal join of a DotFun). So a write
removes exactly the siblings its writer had seen; writes that did not see each
other survive side by side — siblings exist if and only if writes were
concurrent, which is what puts them in the review queue.

Dots here are per register: ``(actor, k)`` is the k-th write of ``actor`` to
this register, where the actor is the writing replica in one epoch of its life
(crdt/_clocks.py: a replica restarted after a crash writes as a new actor, so
no dot is ever issued twice). Every write includes its own dot in the context,
so a register's context stays a contiguous vector (the cloud is empty once all
deltas arrived) and never grows with the number of writes — only with the
number of actors that ever wrote it. Siblings are bounded the same way when
writers write with their current context: a replica's new write always covers
its own earlier ones (the property DVVs were invented for, Preguiça et al.,
"Dotted Version Vectors", 2012; Riak's plain vclocks grew 101 siblings there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from ._clocks import CausalContext, Dot, HybridTime, actor_origin
from ._errors import LocalProtocolError

__all__ = ["MVRegister", "Sibling"]

#: Below this many siblings, ``merge`` simply scans them (the common case: one).
_SCAN_UP_TO = 8


class Sibling(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One surviving write: its value, who wrote it where, and when.

    A C-built ``Struct`` (see :class:`~._clocks.Dot`); ``gc=False`` is safe
    because a value is plain data, which cannot refer back to a sibling."""

    value: Any
    dot: Dot
    author: str
    time: HybridTime

    @property
    def origin(self) -> str:
        """The replica that wrote it (its dot names the replica's actor, which
        after a crash carries an epoch: crdt/_clocks.py)."""
        return actor_origin(self.dot.replica) or self.dot.replica


class MVRegister:
    """A multi-value register; see the module docstring."""

    __slots__ = ("ctx", "siblings")

    def __init__(self, siblings: Iterable[Sibling] = (), ctx: CausalContext | None = None) -> None:
        self.siblings: dict[Dot, Sibling] = {s.dot: s for s in siblings}
        self.ctx = ctx if ctx is not None else CausalContext.of(self.siblings)
        for dot in self.siblings:
            if dot not in self.ctx:
                raise LocalProtocolError(f"sibling {dot} is outside the register's context")

    @classmethod
    def adopt(cls, siblings: dict[Dot, Sibling], ctx: CausalContext) -> MVRegister:
        """A register taking ``siblings`` (keyed by their dots) and ``ctx`` as
        they are: the caller has checked every dot lies in ``ctx`` (the batch
        decoder does, while building them)."""
        new = cls.__new__(cls)
        new.siblings = siblings
        new.ctx = ctx
        return new

    # Queries -----------------------------------------------------------
    def values(self) -> list[Any]:
        return [s.value for s in self.sorted_siblings()]

    def sorted_siblings(self) -> list[Sibling]:
        return [self.siblings[d] for d in sorted(self.siblings)]

    def is_conflict(self) -> bool:
        return len(self.siblings) > 1

    def context(self) -> CausalContext:
        """What a reader must hand back to overwrite exactly what it saw (an ETag)."""
        return self.ctx.copy()

    def copy(self) -> MVRegister:
        new = MVRegister.__new__(MVRegister)
        new.siblings = dict(self.siblings)
        new.ctx = self.ctx.copy()
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MVRegister):
            return self.siblings == other.siblings and self.ctx == other.ctx
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MVRegister({self.sorted_siblings()!r}, {self.ctx!r})"

    # Delta mutators ----------------------------------------------------
    def next_dot(self, replica: str) -> Dot:
        return Dot(replica, self.ctx.max_counter(replica) + 1)

    def write(
        self,
        value: Any,
        *,
        replica: str,
        author: str,
        time: HybridTime,
        context: CausalContext | None = None,
    ) -> MVRegister:
        """Return the delta of writing ``value`` at ``replica``.

        ``context`` is what the writer observed (from :meth:`context`); by
        default the register's whole current context, which overwrites every
        sibling — that is also how a resolution is written.
        """
        seen = self.ctx.copy() if context is None else context.copy()
        dot = self.next_dot(replica)
        seen.add(dot)
        return MVRegister([Sibling(value=value, dot=dot, author=author, time=time)], seen)

    # Join --------------------------------------------------------------
    def merge(self, other: MVRegister) -> None:
        """In-place causal join with ``other`` (a delta or a full state)."""
        mine, theirs = self.siblings, other.siblings
        octx, sctx = other.ctx, self.ctx
        # Our siblings that the other side saw and no longer has were overwritten.
        # Many siblings: find them from the other context when that is shorter.
        # (``d in ctx`` is spelled out on the vector and cloud: this runs for
        # every remote write to a shared field.)
        seen = self._seen_by(octx) if len(mine) > _SCAN_UP_TO else None
        if seen is None:
            ovv, ocloud = octx._vv, octx._cloud
            gone = []  # (a loop, not a comprehension: no frame of its own)
            for d in mine:
                if (ovv.get(d.replica, 0) >= d.counter or d in ocloud) and d not in theirs:
                    gone.append(d)
        else:
            gone = [d for d in seen if d not in theirs]
        for d in gone:
            del mine[d]
        svv, scloud = sctx._vv, sctx._cloud
        for d, s in theirs.items():
            if svv.get(d.replica, 0) < d.counter and d not in scloud:
                mine[d] = s
        sctx.update(octx)

    def _seen_by(self, octx: CausalContext) -> list[Dot] | None:
        """Our sibling dots that ``octx`` contains, found by walking ``octx``
        rather than every sibling — or ``None`` if that walk would be longer.

        A small delta joined into a register with many siblings (many replicas
        writing concurrently) then costs O(delta), not O(siblings). Exact: a
        sibling's dot is in our own context (the constructor and ``merge`` keep
        it so), so a sibling ``(r, k)`` that ``octx`` holds either has ``k`` at
        most both ``octx``'s and our greatest counter of ``r``, or is in
        ``octx``'s cloud.
        """
        mine = self.siblings
        budget = len(mine)
        cloud = octx.cloud_dots()
        cost = len(cloud)
        probes: list[tuple[str, int]] = []
        for r, n in octx.vv_entries():
            k = min(n, self.ctx.max_counter(r))
            if k:
                cost += k
                if cost >= budget:
                    return None
                probes.append((r, k))
        found = [d for d in cloud if d in mine]
        for r, k in probes:
            for c in range(1, k + 1):
                dot = Dot(r, c)
                if dot in mine:
                    found.append(dot)
        return found

    def join(self, other: MVRegister) -> MVRegister:
        new = self.copy()
        new.merge(other)
        return new
