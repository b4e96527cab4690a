"""The state-based CRDTs that need no causal context.

* ``PNCounter``: per replica, the totals of increments and decrements; join is
  the pointwise maximum (Shapiro et al., "A comprehensive study of CRDTs",
  INRIA RR-7506, 2011, §3.1.3). A delta carries the writer's new totals.
* ``LWWRegister``: the value with the greatest (hybrid time, replica) wins.
  The hybrid clock keeps a replica's later write later even if its wall clock
  steps back (Kulkarni et al. 2014).
* ``SingleWriterRegister``: only the entity's home replica writes, so its
  writes are totally ordered by their sequence number; join keeps the highest.
  Refusing writes from elsewhere is the entity's job (it knows the home).
* ``GrowOnlyLog``: a map event id -> event; join is union. Event ids are unique
  by construction (the writer's replica and a counter, or a UUID); should two
  events ever share an id, the smaller canonical encoding wins so that join
  stays commutative whatever the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._clocks import HybridTime
from ._errors import LocalProtocolError
from ._values import value_bytes

__all__ = ["GrowOnlyLog", "LWWRegister", "PNCounter", "SingleWriterRegister"]


class PNCounter:
    __slots__ = ("neg", "pos")

    def __init__(
        self, pos: Mapping[str, int] | None = None, neg: Mapping[str, int] | None = None
    ) -> None:
        self.pos: dict[str, int] = {r: n for r, n in (pos or {}).items() if n}
        self.neg: dict[str, int] = {r: n for r, n in (neg or {}).items() if n}

    def value(self) -> int:
        return sum(self.pos.values()) - sum(self.neg.values())

    def increment(self, amount: int, *, replica: str) -> PNCounter:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise LocalProtocolError(f"counter increments are integers, got {amount!r}")
        if amount >= 0:
            return PNCounter({replica: self.pos.get(replica, 0) + amount}, {})
        return PNCounter({}, {replica: self.neg.get(replica, 0) - amount})

    def copy(self) -> PNCounter:
        return PNCounter(self.pos, self.neg)

    def merge(self, other: PNCounter) -> None:
        mine = self.pos
        for r, n in other.pos.items():
            if n > mine.get(r, 0):
                mine[r] = n
        if other.neg:
            mine = self.neg
            for r, n in other.neg.items():
                if n > mine.get(r, 0):
                    mine[r] = n

    def join(self, other: PNCounter) -> PNCounter:
        new = self.copy()
        new.merge(other)
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PNCounter):
            return self.pos == other.pos and self.neg == other.neg
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PNCounter(pos={self.pos!r}, neg={self.neg!r})"


class LWWRegister:
    __slots__ = ("replica", "time", "value")

    def __init__(
        self, value: Any = None, time: HybridTime | None = None, replica: str = ""
    ) -> None:
        self.value = value
        self.time = time  # None: never written
        self.replica = replica

    def _key(self) -> tuple[HybridTime, str, bytes]:
        assert self.time is not None
        return (self.time, self.replica, value_bytes(self.value))

    def write(self, value: Any, *, replica: str, time: HybridTime) -> LWWRegister:
        return LWWRegister(value, time, replica)

    def copy(self) -> LWWRegister:
        return LWWRegister(self.value, self.time, self.replica)

    def merge(self, other: LWWRegister) -> None:
        theirs, mine = other.time, self.time
        if theirs is None:
            return
        # ``other._key() > self._key()``, with the value's encoding built only
        # on a tie of time and replica (every remote label write comes here).
        if (
            mine is None
            or theirs > mine
            or (
                theirs == mine
                and (
                    other.replica > self.replica
                    or (other.replica == self.replica and other._key() > self._key())
                )
            )
        ):
            self.value, self.time, self.replica = other.value, theirs, other.replica

    def join(self, other: LWWRegister) -> LWWRegister:
        new = self.copy()
        new.merge(other)
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LWWRegister):
            return (self.value, self.time, self.replica) == (
                other.value,
                other.time,
                other.replica,
            ) and type(self.value) is type(other.value)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LWWRegister({self.value!r}, {self.time!r}, {self.replica!r})"


class SingleWriterRegister:
    __slots__ = ("seq", "time", "value", "writer")

    def __init__(
        self,
        value: Any = None,
        seq: int = 0,
        writer: str = "",
        time: HybridTime | None = None,
    ) -> None:
        self.value = value
        self.seq = seq  # 0: never written
        self.writer = writer
        self.time = time

    def write(
        self, value: Any, *, replica: str, home: str, time: HybridTime
    ) -> SingleWriterRegister:
        if replica != home:
            raise LocalProtocolError(
                f"only the home replica {home!r} may write reported state; {replica!r} may not"
            )
        return SingleWriterRegister(value, self.seq + 1, replica, time)

    def copy(self) -> SingleWriterRegister:
        return SingleWriterRegister(self.value, self.seq, self.writer, self.time)

    def _key(self) -> tuple[int, bytes]:
        return (self.seq, value_bytes([self.value, self.writer]))

    def merge(self, other: SingleWriterRegister) -> None:
        # ``other._key() > self._key()``, encoding values only on a tie of seq.
        if other.seq and (
            not self.seq
            or other.seq > self.seq
            or (other.seq == self.seq and other._key() > self._key())
        ):
            self.value, self.seq, self.writer, self.time = (
                other.value,
                other.seq,
                other.writer,
                other.time,
            )

    def join(self, other: SingleWriterRegister) -> SingleWriterRegister:
        new = self.copy()
        new.merge(other)
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SingleWriterRegister):
            return (self.value, self.seq, self.writer, self.time) == (
                other.value,
                other.seq,
                other.writer,
                other.time,
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SingleWriterRegister({self.value!r}, seq={self.seq}, writer={self.writer!r})"


class GrowOnlyLog:
    __slots__ = ("entries",)

    def __init__(self, entries: Mapping[str, Any] | None = None) -> None:
        self.entries: dict[str, Any] = dict(entries or {})

    def append(self, key: str, event: Any) -> GrowOnlyLog:
        if key in self.entries:
            raise LocalProtocolError(f"log already holds an event with id {key!r}")
        return GrowOnlyLog({key: event})

    def copy(self) -> GrowOnlyLog:
        return GrowOnlyLog(self.entries)

    def merge(self, other: GrowOnlyLog) -> None:
        mine = self.entries
        for key, event in other.entries.items():
            # Compare encodings, not values: 1 == 1.0 == True in Python, yet
            # they encode differently, and the digest must not depend on order.
            if key not in mine or value_bytes(event) < value_bytes(mine[key]):
                mine[key] = event

    def join(self, other: GrowOnlyLog) -> GrowOnlyLog:
        new = self.copy()
        new.merge(other)
        return new

    def items(self) -> list[tuple[str, Any]]:
        return sorted(self.entries.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GrowOnlyLog):
            return self.entries == other.entries
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GrowOnlyLog({self.entries!r})"
