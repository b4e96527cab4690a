"""Add-wins observed-remove set (the AWORSet of Almeida, Shoker & Baquero 2018).

Each add tags the element with a fresh dot; a remove covers exactly the dots
of that element the remover had observed. An add concurrent with a remove
carries a dot the remove never saw, so it survives: add wins. The causal join
is the same as the multi-value register's, per element (a DotMap of DotSets).
Dots are per set, so the context stays a compact vector.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from ._clocks import CausalContext, Dot

__all__ = ["ORSet"]


class ORSet:
    __slots__ = ("ctx", "entries")

    def __init__(
        self,
        entries: Mapping[Hashable, Iterable[Dot]] | None = None,
        ctx: CausalContext | None = None,
    ) -> None:
        self.entries: dict[Hashable, set[Dot]] = {
            e: set(ds) for e, ds in (entries or {}).items() if ds
        }
        if ctx is None:
            ctx = CausalContext.of(d for ds in self.entries.values() for d in ds)
        self.ctx = ctx

    def elements(self) -> set[Hashable]:
        return set(self.entries)

    def __contains__(self, element: object) -> bool:
        return element in self.entries

    def copy(self) -> ORSet:
        new = ORSet.__new__(ORSet)
        new.entries = {e: set(ds) for e, ds in self.entries.items()}
        new.ctx = self.ctx.copy()
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ORSet):
            return self.entries == other.entries and self.ctx == other.ctx
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ORSet({self.entries!r}, {self.ctx!r})"

    def _next_dot(self, replica: str) -> Dot:
        return Dot(replica, self.ctx.max_counter(replica) + 1)

    def add(self, element: Hashable, *, replica: str) -> ORSet:
        dot = self._next_dot(replica)
        seen = CausalContext.of(self.entries.get(element, ()))
        seen.add(dot)
        return ORSet({element: [dot]}, seen)

    def remove(self, element: Hashable, *, replica: str) -> ORSet:
        # The remove takes a dot of its own too, so the set's context stays
        # contiguous per replica (no ever-growing dot cloud).
        dot = self._next_dot(replica)
        seen = CausalContext.of(self.entries.get(element, ()))
        seen.add(dot)
        return ORSet({}, seen)

    def merge(self, other: ORSet) -> None:
        octx, sctx = other.ctx, self.ctx
        entries, theirs_of = self.entries, other.entries
        # Our dots the other side saw and no longer holds were removed there.
        # (``d in octx`` spelled out on the vector and cloud, and loops rather
        # than comprehensions: this runs for every remote set delta.)
        ovv, ocloud = octx._vv, octx._cloud
        if ovv or ocloud:
            emptied = []
            for element, mine in entries.items():
                theirs = theirs_of.get(element)
                gone = None
                for d in mine:
                    if (ovv.get(d.replica, 0) >= d.counter or d in ocloud) and (
                        theirs is None or d not in theirs
                    ):
                        if gone is None:
                            gone = [d]
                        else:
                            gone.append(d)
                if gone is not None:
                    mine.difference_update(gone)
                    if not mine:
                        emptied.append(element)
            for element in emptied:
                del entries[element]
        svv, scloud = sctx._vv, sctx._cloud
        for element, theirs in theirs_of.items():
            fresh = None
            for d in theirs:
                if svv.get(d.replica, 0) < d.counter and d not in scloud:
                    if fresh is None:
                        fresh = [d]
                    else:
                        fresh.append(d)
            if fresh is not None:
                held = entries.get(element)
                if held is None:
                    entries[element] = set(fresh)
                else:
                    held.update(fresh)
        sctx.update(octx)

    def join(self, other: ORSet) -> ORSet:
        new = self.copy()
        new.merge(other)
        return new
